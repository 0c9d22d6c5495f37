//! The client's first packet (HandshakeResponse41 or SSLRequest), and the
//! native-password check made with its auth response.
//!
//! Input: the packet's payload.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use torpor_protocol::auth::{ProvenPassword, StoredPassword};
use torpor_protocol::handshake::ClientHello;
use torpor_protocol::Capabilities;

/// The seed of the captured greeting the seeds answer.
const SEED: &[u8; 20] = b"7z'N3T.'v?vU'`/iF_,\\";

fuzz_target!(|data: &[u8]| {
    // The stored hash is text from the configuration or the backend.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = StoredPassword::from_hash_text(text);
    }
    let Ok(hello) = ClientHello::parse(data) else {
        return;
    };
    let ClientHello::Response(response) = hello else {
        return;
    };
    // Any response is checked without a panic, and a right one gives a
    // password that answers the seed the same way.
    let stored = StoredPassword::from_plaintext("secret");
    if let Some(proven) = stored.verify(SEED, &response.auth_response) {
        assert_eq!(proven.respond(SEED), response.auth_response);
    }
    assert_eq!(
        StoredPassword::Empty.verify(SEED, &response.auth_response),
        response
            .auth_response
            .is_empty()
            .then_some(ProvenPassword::Empty)
    );

    let caps = response.capabilities;
    if !caps.contains(Capabilities::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA)
        && !caps.contains(Capabilities::CLIENT_SECURE_CONNECTION)
    {
        // The encoder writes the auth response with a length in front, the
        // 4.1 way; a client without either flag NUL-terminates it, and
        // Torpor never speaks to one (it offers both).
        return;
    }
    let mut wire = BytesMut::new();
    response.encode(&mut wire);
    let Ok(ClientHello::Response(back)) = ClientHello::parse(&wire) else {
        panic!("an encoded handshake response decodes as one");
    };
    assert_eq!(back.capabilities, response.capabilities);
    assert_eq!(back.max_packet_size, response.max_packet_size);
    assert_eq!(back.collation, response.collation);
    assert_eq!(back.user, response.user);
    if caps.contains(Capabilities::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA)
        || caps.contains(Capabilities::CLIENT_SECURE_CONNECTION)
            && response.auth_response.len() <= 255
    {
        assert_eq!(back.auth_response, response.auth_response);
    }
    if caps.contains(Capabilities::CLIENT_CONNECT_ATTRS) {
        assert_eq!(back.attributes, response.attributes);
    }
    let mut again = BytesMut::new();
    back.encode(&mut again);
    assert_eq!(again, wire, "encoding is a fixed point");
});
