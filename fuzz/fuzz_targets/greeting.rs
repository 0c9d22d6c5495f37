//! The server greeting (Initial Handshake v10): decoded, encoded, decoded.
//!
//! Input: the greeting's payload.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use torpor_protocol::handshake::Greeting;
use torpor_protocol::Capabilities;

fuzz_target!(|data: &[u8]| {
    let Ok(greeting) = Greeting::parse(data) else {
        return;
    };
    let mut wire = BytesMut::new();
    greeting.encode(&mut wire);
    let back = Greeting::parse(&wire).expect("an encoded greeting decodes");
    // What a client reads from the greeting survives the trip.
    assert_eq!(back.server_version, greeting.server_version);
    assert_eq!(back.connection_id, greeting.connection_id);
    assert_eq!(back.capabilities, greeting.capabilities);
    assert_eq!(back.collation, greeting.collation);
    assert_eq!(back.status, greeting.status);
    // The seed's length goes in one byte: past 254 bytes the plugin name
    // is read from where the seed ends (Torpor's seeds are 20 bytes).
    if greeting.seed.len() <= 254 {
        assert_eq!(back.auth_plugin, greeting.auth_plugin);
    }
    // A 20-byte seed (what native passwords use, and what Torpor sends)
    // comes back as it was. Other lengths are normalized: the second part
    // is padded to 12 bytes, and without CLIENT_PLUGIN_AUTH no length says
    // how long a longer one is.
    if greeting
        .capabilities
        .contains(Capabilities::CLIENT_SECURE_CONNECTION)
        && greeting.seed.len() == 20
    {
        assert_eq!(back.seed, greeting.seed);
    }
    // And from there on, decoding and encoding are inverses.
    let mut again = BytesMut::new();
    back.encode(&mut again);
    assert_eq!(Greeting::parse(&again).as_ref(), Ok(&back));
});
