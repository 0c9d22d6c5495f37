//! Prepared-statement packets: the prepare-OK, and the statement ids and
//! parameter types of COM_STMT_* commands that Torpor reads and rewrites.
//!
//! Input: the parameter count (two bytes, little-endian), then the
//! payload (a prepare-OK or a statement command).

#![no_main]

use libfuzzer_sys::fuzz_target;
use torpor_protocol::command;
use torpor_protocol::reply::PrepareOk;
use torpor_protocol::stmt::{
    param_types, requests_cursor, set_statement_id, statement_id, types_layout, with_param_types,
};

fuzz_target!(|data: &[u8]| {
    let Some((params, payload)) = data.split_first_chunk::<2>() else {
        return;
    };
    let params = u16::from_le_bytes(*params);

    if let Ok(ok) = PrepareOk::parse(payload) {
        assert_eq!(statement_id(payload), Some(ok.statement_id));
    }

    let id = statement_id(payload);
    assert_eq!(id, command::statement_id(payload));
    let mut renamed = payload.to_vec();
    assert_eq!(set_statement_id(&mut renamed, 0xdead_beef), id.is_some());
    if id.is_some() {
        assert_eq!(statement_id(&renamed), Some(0xdead_beef));
        assert_eq!(renamed[..1], payload[..1]);
        assert_eq!(renamed[5..], payload[5..]);
    }
    let _ = requests_cursor(payload);

    let layout = types_layout(payload, params);
    let types = param_types(payload, params);
    if let Ok(Some(layout)) = layout {
        assert!(layout.flag_at < payload.len());
        assert!(layout.types_at <= payload.len());
    }
    if let Ok(Some(types)) = types {
        assert_eq!(types.len(), 2 * usize::from(params));
    }
    // Types added to an execute that had none are found there after.
    let wanted: Vec<u8> = (0..2 * usize::from(params)).map(|i| i as u8).collect();
    if let Ok(Some(with)) = with_param_types(payload, params, &wanted) {
        assert_eq!(
            types,
            Ok(None),
            "types are added only where there were none"
        );
        assert_eq!(with.len(), payload.len() + wanted.len());
        assert_eq!(param_types(&with, params), Ok(Some(&wanted[..])));
        assert_eq!(statement_id(&with), id);
    }
});
