//! Handshake fixtures captured from MariaDB 10.11.19 and its `mariadb`
//! client (libmariadb 3.3) logging in as `app` / `secret` to schema `test`.

use super::*;
use crate::auth::StoredPassword;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

const GREETING: &str = "0a352e352e352d31302e31312e31392d4d6172696144422d302b64656231327531000a000000377a274e33542e2700fef7080200ff81150000000000001d000000763f765527602f69465f2c5c006d7973716c5f6e61746976655f70617373776f726400";
const RESPONSE: &str = "8ca2bf000000100021000000000000000000000000000000000000001d00000061707000149607a8a9c33beb6fe860006ee1e9db0d5624338e74657374006d7973716c5f6e61746976655f70617373776f7264007e035f6f73054c696e75780c5f636c69656e745f6e616d650a6c69626d617269616462045f70696404373936320f5f636c69656e745f76657273696f6e06332e332e3230095f706c6174666f726d067838365f36340c70726f6772616d5f6e616d65056d7973716c0c5f7365727665725f686f7374093132372e302e302e31";

#[test]
fn greeting_fixture_round_trips() {
    let wire = hex(GREETING);
    let greeting = Greeting::parse(&wire).unwrap();
    assert_eq!(greeting.server_version, b"5.5.5-10.11.19-MariaDB-0+deb12u1");
    assert_eq!(greeting.connection_id, 10);
    assert_eq!(greeting.seed.len(), 20);
    assert_eq!(greeting.auth_plugin, b"mysql_native_password");
    assert!(!greeting.capabilities.contains(Capabilities::CLIENT_MYSQL));
    assert!(greeting
        .capabilities
        .contains(Capabilities::MARIADB_CLIENT_CACHE_METADATA));
    assert!(greeting
        .capabilities
        .contains(Capabilities::CLIENT_DEPRECATE_EOF));
    let mut back = BytesMut::new();
    greeting.encode(&mut back);
    assert_eq!(&back[..], &wire[..]);
}

#[test]
fn response_fixture_round_trips_and_verifies() {
    let greeting = Greeting::parse(&hex(GREETING)).unwrap();
    let wire = hex(RESPONSE);
    let ClientHello::Response(response) = ClientHello::parse(&wire).unwrap() else {
        panic!("not a response");
    };
    assert_eq!(response.user, b"app");
    assert_eq!(response.database.as_deref(), Some(&b"test"[..]));
    assert_eq!(
        response.auth_plugin.as_deref(),
        Some(&b"mysql_native_password"[..])
    );
    assert_eq!(response.collation, 33);
    assert!(response
        .capabilities
        .contains(Capabilities::MARIADB_CLIENT_CACHE_METADATA));
    assert!(response
        .attributes
        .pairs()
        .any(|(k, v)| k == b"_client_name" && v == b"libmariadb"));
    let proven =
        StoredPassword::from_plaintext("secret").verify(&greeting.seed, &response.auth_response);
    assert!(proven.is_some(), "the captured login must verify");
    assert!(StoredPassword::from_plaintext("other")
        .verify(&greeting.seed, &response.auth_response)
        .is_none());
    let mut back = BytesMut::new();
    response.encode(&mut back);
    assert_eq!(&back[..], &wire[..]);
}

#[test]
fn ssl_request_is_recognised() {
    let mut wire = BytesMut::new();
    wire.put_u32_le((Capabilities::CLIENT_SSL | Capabilities::CLIENT_PROTOCOL_41).mysql_bits());
    wire.put_u32_le(1 << 24);
    wire.put_u8(45);
    wire.put_bytes(0, 23);
    assert_eq!(wire.len(), SSL_REQUEST_LEN);
    assert!(matches!(
        ClientHello::parse(&wire),
        Ok(ClientHello::SslRequest { .. })
    ));
}

#[test]
fn auth_switch_round_trip() {
    let switch = AuthSwitch {
        plugin: b"mysql_native_password".to_vec(),
        data: b"abcdefghijklmnopqrst".to_vec(),
    };
    let mut wire = BytesMut::new();
    switch.encode(&mut wire);
    assert!(is_auth_switch(&wire));
    assert_eq!(
        wire.last(),
        Some(&0),
        "seed is NUL-terminated like MariaDB's"
    );
    assert_eq!(AuthSwitch::parse(&wire).unwrap(), switch);
}

#[test]
fn change_user_round_trip() {
    let caps = Capabilities::CLIENT_SECURE_CONNECTION
        | Capabilities::CLIENT_PLUGIN_AUTH
        | Capabilities::CLIENT_CONNECT_ATTRS
        | Capabilities::CLIENT_PROTOCOL_41;
    let change = ChangeUser {
        user: b"app".to_vec(),
        auth_response: vec![7; 20],
        database: b"test".to_vec(),
        collation: Some(224),
        auth_plugin: Some(b"mysql_native_password".to_vec()),
        attributes: PackedAttributes::pack(&[(b"_client_name".to_vec(), b"x".to_vec())]),
    };
    let mut wire = BytesMut::new();
    change.encode(&mut wire, caps);
    assert_eq!(ChangeUser::parse(&wire, caps).unwrap(), change);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), caps in any::<u64>()) {
            let _ = Greeting::parse(&bytes);
            let _ = ClientHello::parse(&bytes);
            let _ = AuthSwitch::parse(&bytes);
            let _ = ChangeUser::parse(&bytes, Capabilities(caps));
        }

        #[test]
        fn packed_attributes_unpack_to_what_was_packed(
            attributes in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..10), proptest::collection::vec(any::<u8>(), 0..300)), 0..8),
        ) {
            prop_assert_eq!(PackedAttributes::pack(&attributes).unpack(), attributes);
        }

        #[test]
        fn attributes_are_kept_as_sent_and_read_back_pair_by_pair(
            attributes in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..10), proptest::collection::vec(any::<u8>(), 0..300)), 0..8),
            cut in any::<proptest::sample::Index>(),
        ) {
            let packed = PackedAttributes::pack(&attributes);
            let parsed = PackedAttributes::parse(packed.as_wire()).unwrap();
            prop_assert_eq!(parsed.as_wire(), packed.as_wire());
            let pairs: Vec<(&[u8], &[u8])> = parsed.pairs().collect();
            let expected: Vec<(&[u8], &[u8])> =
                attributes.iter().map(|(k, v)| (&k[..], &v[..])).collect();
            prop_assert_eq!(pairs, expected);
            // A block cut inside a pair is refused, never kept.
            let wire = packed.as_wire();
            if !wire.is_empty() {
                let short = &wire[..cut.index(wire.len())];
                let whole_pairs = PackedAttributes::parse(short).is_ok();
                // Where whole pairs end: the packings of each prefix.
                let boundary = (0..=attributes.len())
                    .any(|n| PackedAttributes::pack(&attributes[..n]).as_wire().len() == short.len());
                prop_assert_eq!(whole_pairs, boundary);
            }
        }

        #[test]
        fn response_round_trip(
            user in proptest::collection::vec(1u8..=255, 0..20),
            response in proptest::collection::vec(any::<u8>(), 0..40),
            database in proptest::option::of(proptest::collection::vec(1u8..=255, 0..20)),
            attributes in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..10), proptest::collection::vec(any::<u8>(), 0..300)), 0..4),
            collation in any::<u8>(),
        ) {
            let mut caps = Capabilities::CLIENT_PROTOCOL_41
                | Capabilities::CLIENT_SECURE_CONNECTION
                | Capabilities::CLIENT_PLUGIN_AUTH
                | Capabilities::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
                | Capabilities::CLIENT_CONNECT_ATTRS
                | Capabilities::MARIADB_CLIENT_CACHE_METADATA;
            if database.is_some() {
                caps = caps | Capabilities::CLIENT_CONNECT_WITH_DB;
            }
            let original = HandshakeResponse {
                capabilities: caps,
                max_packet_size: 1 << 30,
                collation,
                user,
                auth_response: response,
                database,
                auth_plugin: Some(b"mysql_native_password".to_vec()),
                attributes: PackedAttributes::pack(&attributes),
            };
            let mut wire = BytesMut::new();
            original.encode(&mut wire);
            prop_assert_eq!(ClientHello::parse(&wire).unwrap(), ClientHello::Response(original));
        }
    }
}
