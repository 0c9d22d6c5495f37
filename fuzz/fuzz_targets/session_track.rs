//! OK packets in full with their session-state changes, and what Torpor
//! does with the changes: captures them into a session's state, filters
//! them for a client, and diffs the state it gets.
//!
//! Input: a capabilities byte (torpor_fuzz::caps), then an OK packet's
//! payload.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use torpor_protocol::packets::ServerStatus;
use torpor_protocol::session_track::{encode_changes, parse_changes, OkPacket, SessionChange};
use torpor_protocol::Capabilities;
use torpor_replay::state::{Baseline, SessionState, VarKind};
use torpor_replay::tracking::ClientTracking;

fuzz_target!(|data: &[u8]| {
    let Some((&caps, payload)) = data.split_first() else {
        return;
    };
    let caps = torpor_fuzz::caps(caps);
    let tracked = caps.contains(Capabilities::CLIENT_SESSION_TRACK);

    // A raw block on its own, as the tests feed it.
    if let Ok(changes) = parse_changes(payload) {
        round_trip_changes(&changes);
        capture(&changes);
    }

    let Ok(ok) = OkPacket::parse(payload, caps) else {
        return;
    };
    assert!(ok.info.len() + ok.session_state.len() <= payload.len());
    let mut wire = BytesMut::new();
    ok.encode_for(caps, &mut wire);
    let back = OkPacket::parse(&wire, caps).expect("an encoded OK packet decodes");
    let mut expected = ok.clone();
    if !tracked {
        expected.status.0 &= !ServerStatus::SESSION_STATE_CHANGED;
    }
    if !expected.status.has(ServerStatus::SESSION_STATE_CHANGED) {
        expected.session_state = &[];
    }
    assert_eq!(back, expected);

    // Torpor rewrites the block for clients that track less than it does.
    if let Ok(changes) = ok.changes() {
        round_trip_changes(&changes);
        capture(&changes);
        let kept: Vec<SessionChange<'_>> = changes
            .iter()
            .filter(|c| ClientTracking::default().keeps(c))
            .cloned()
            .collect();
        let mut block = BytesMut::new();
        encode_changes(&kept, &mut block);
        let mut filtered = BytesMut::new();
        ok.encode_with_state(Capabilities::CLIENT_SESSION_TRACK, &block, &mut filtered);
        let again = OkPacket::parse(&filtered, Capabilities::CLIENT_SESSION_TRACK)
            .expect("a rewritten OK packet decodes");
        assert_eq!(again.changes().map(|c| c.to_vec()), Ok(kept));
    }
});

/// Changes encode to a block that decodes to the same changes.
fn round_trip_changes(changes: &[SessionChange<'_>]) {
    let mut block = BytesMut::new();
    encode_changes(changes, &mut block);
    let back = parse_changes(&block).expect("encoded changes decode");
    assert_eq!(&back[..], changes);
}

/// Captures the changes into a session state, and asks for the
/// statements that bring a fresh connection to it.
fn capture(changes: &[SessionChange<'_>]) {
    let mut baseline = Baseline::default();
    baseline
        .variables
        .insert("autocommit".into(), ("ON".into(), VarKind::Text));
    baseline.variables.insert(
        "sql_mode".into(),
        ("STRICT_TRANS_TABLES".into(), VarKind::Text),
    );
    baseline
        .variables
        .insert("wait_timeout".into(), ("28800".into(), VarKind::Number));
    let mut state = SessionState::default();
    let _observed = state.apply_changes(changes, &baseline);
    let fresh = SessionState::default();
    match state.diff_from(&fresh, &baseline) {
        Ok(statements) => {
            if state == fresh {
                assert!(statements.is_empty());
            }
        }
        Err(_unreachable) => {}
    }
    let _ = fresh.diff_from(&state, &baseline);
}
