//! COM_CHANGE_USER and the auth switch request: decoded, encoded, decoded.
//!
//! Input: a capabilities byte (torpor_fuzz::caps), then the payload.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use torpor_protocol::handshake::{is_auth_switch, AuthSwitch, ChangeUser};
use torpor_protocol::Capabilities;

fuzz_target!(|data: &[u8]| {
    let Some((&caps, payload)) = data.split_first() else {
        return;
    };
    let caps = torpor_fuzz::caps(caps);

    if let Ok(switch) = AuthSwitch::parse(payload) {
        assert!(is_auth_switch(payload));
        let mut wire = BytesMut::new();
        switch.encode(&mut wire);
        assert_eq!(AuthSwitch::parse(&wire), Ok(switch));
    }

    let Ok(change) = ChangeUser::parse(payload, caps) else {
        return;
    };
    if !caps.contains(Capabilities::CLIENT_SECURE_CONNECTION) {
        // The encoder writes the auth response with a length byte, the
        // 4.1 way; Torpor always negotiates CLIENT_SECURE_CONNECTION.
        return;
    }
    let mut wire = BytesMut::new();
    change.encode(&mut wire, caps);
    let back = ChangeUser::parse(&wire, caps).expect("an encoded COM_CHANGE_USER decodes");
    assert_eq!(back.user, change.user);
    assert_eq!(back.database, change.database);
    assert_eq!(back.collation, change.collation);
    if change.auth_response.len() <= 255 {
        assert_eq!(back.auth_response, change.auth_response);
    }
    if change.collation.is_some() && caps.contains(Capabilities::CLIENT_CONNECT_ATTRS) {
        assert_eq!(back.attributes, change.attributes);
    }
    let mut again = BytesMut::new();
    back.encode(&mut again, caps);
    assert_eq!(again, wire, "encoding is a fixed point");
});
