//! Binary-protocol commands that name a prepared statement, as far as a
//! proxy that maps statement ids needs them: reading and replacing the
//! statement id, and reading or adding the parameter types of
//! COM_STMT_EXECUTE and COM_STMT_BULK_EXECUTE.
//!
//! Clients send parameter types only with "new params bound" (sysbench:
//! on a statement's first execute only). When a statement is prepared
//! again on another backend connection, its first execute there must carry
//! the types, so the proxy remembers them and adds them back.

use crate::command::Command;
use crate::ProtocolError;

/// COM_STMT_BULK_EXECUTE flag: parameter types follow.
pub const BULK_SEND_TYPES: u16 = 128;

/// The statement id that names "the statement this session prepared
/// last" (MariaDB's `LAST_STMT_ID`): libmariadb's direct execute sends
/// COM_STMT_PREPARE and a COM_STMT_EXECUTE with this id in one write,
/// before it knows the id the prepare will return. Every command that
/// names a statement accepts it; it names nothing after a prepare failed
/// or the last statement was closed.
pub const LAST_PREPARED: u32 = u32::MAX;

/// Byte range of the statement id in every statement command.
const ID: std::ops::Range<usize> = 1..5;

/// The statement id a statement command names.
pub fn statement_id(payload: &[u8]) -> Option<u32> {
    let b = payload.get(ID.start..)?.first_chunk::<4>()?;
    Some(u32::from_le_bytes(*b))
}

/// Replaces the statement id a statement command (or a prepare-OK packet)
/// names. Returns false when the payload is too short to hold one.
pub fn set_statement_id(payload: &mut [u8], id: u32) -> bool {
    match payload.get_mut(ID) {
        Some(slot) => {
            slot.copy_from_slice(&id.to_le_bytes());
            true
        }
        None => false,
    }
}

/// COM_STMT_EXECUTE flag: open a read-only cursor (the only cursor flag
/// MariaDB acts on).
pub const CURSOR_TYPE_READ_ONLY: u8 = 1;

/// Whether a COM_STMT_EXECUTE asks for a cursor: only then may its result
/// end after the column definitions, its rows left for COM_STMT_FETCH.
pub fn requests_cursor(payload: &[u8]) -> bool {
    payload.first() == Some(&(Command::StmtExecute as u8))
        && payload
            .get(5)
            .is_some_and(|flags| flags & CURSOR_TYPE_READ_ONLY != 0)
}

/// Where the parameter types of an execute sit, if it has any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypesLayout {
    /// Offset of the "new params bound" byte (COM_STMT_EXECUTE) or of the
    /// bulk flags (COM_STMT_BULK_EXECUTE).
    pub flag_at: usize,
    /// Offset where the types are, or would be inserted.
    pub types_at: usize,
    /// Whether the types are present.
    pub present: bool,
}

/// Finds the parameter types of a COM_STMT_EXECUTE or
/// COM_STMT_BULK_EXECUTE with `params` parameters.
pub fn types_layout(payload: &[u8], params: u16) -> Result<Option<TypesLayout>, ProtocolError> {
    if params == 0 {
        return Ok(None);
    }
    let bad = || ProtocolError::malformed("statement execute");
    match payload.first().and_then(|b| Command::from_byte(*b)) {
        Some(Command::StmtExecute) => {
            // id(4) flags(1) iterations(4) null-bitmap((n+7)/8) bound(1)
            let flag_at = 1 + 4 + 1 + 4 + usize::from(params).div_ceil(8);
            let bound = *payload.get(flag_at).ok_or_else(bad)?;
            Ok(Some(TypesLayout {
                flag_at,
                types_at: flag_at + 1,
                present: bound == 1,
            }))
        }
        Some(Command::StmtBulkExecute) => {
            // id(4) flags(2)
            let flag_at = 5;
            let flags = payload.get(5..).and_then(|b| b.first_chunk::<2>());
            let flags = u16::from_le_bytes(*flags.ok_or_else(bad)?);
            Ok(Some(TypesLayout {
                flag_at,
                types_at: 7,
                present: flags & BULK_SEND_TYPES != 0,
            }))
        }
        _ => Ok(None),
    }
}

/// The parameter types (two bytes each) an execute carries, if any.
pub fn param_types(payload: &[u8], params: u16) -> Result<Option<&[u8]>, ProtocolError> {
    match types_layout(payload, params)? {
        Some(layout) if layout.present => {
            let end = layout.types_at + 2 * usize::from(params);
            let types = payload
                .get(layout.types_at..end)
                .ok_or(ProtocolError::malformed("statement execute"))?;
            Ok(Some(types))
        }
        _ => Ok(None),
    }
}

/// An execute that carries `types`: the payload itself when it already
/// has types, else a copy with them added and its flag set.
pub fn with_param_types(
    payload: &[u8],
    params: u16,
    types: &[u8],
) -> Result<Option<Vec<u8>>, ProtocolError> {
    let Some(layout) = types_layout(payload, params)? else {
        return Ok(None);
    };
    if layout.present || types.len() != 2 * usize::from(params) {
        return Ok(None);
    }
    // `types_layout` found the flag byte(s) before `types_at`, so both
    // are inside the payload; checked all the same.
    let bad = || ProtocolError::malformed("statement execute");
    let (before, after) = payload.split_at_checked(layout.types_at).ok_or_else(bad)?;
    let mut out = Vec::with_capacity(payload.len() + types.len());
    out.extend_from_slice(before);
    out.extend_from_slice(types);
    out.extend_from_slice(after);
    if payload.first() == Some(&(Command::StmtExecute as u8)) {
        *out.get_mut(layout.flag_at).ok_or_else(bad)? = 1;
    } else {
        let slot = out
            .get_mut(layout.flag_at..)
            .and_then(|b| b.first_chunk_mut::<2>())
            .ok_or_else(bad)?;
        *slot = (u16::from_le_bytes(*slot) | BULK_SEND_TYPES).to_le_bytes();
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// COM_STMT_EXECUTE of a statement with two parameters, as sysbench
    /// sends it the first time (types bound) and afterwards (not bound).
    fn execute(id: u32, bound: bool) -> Vec<u8> {
        let mut p = vec![0x17];
        p.extend_from_slice(&id.to_le_bytes());
        p.push(0); // flags
        p.extend_from_slice(&1u32.to_le_bytes());
        p.push(0); // null bitmap
        p.push(u8::from(bound));
        if bound {
            p.extend_from_slice(&[0x03, 0x00, 0x08, 0x00]);
        }
        p.extend_from_slice(&7i32.to_le_bytes());
        p.extend_from_slice(&9i64.to_le_bytes());
        p
    }

    #[test]
    fn ids_are_read_and_replaced() {
        let mut p = execute(5, true);
        assert_eq!(statement_id(&p), Some(5));
        assert!(set_statement_id(&mut p, 77));
        assert_eq!(statement_id(&p), Some(77));
        assert!(!set_statement_id(&mut [0x19, 1], 3));
    }

    #[test]
    fn types_are_kept_and_added_back() {
        let first = execute(1, true);
        let types = param_types(&first, 2).unwrap().unwrap().to_vec();
        assert_eq!(types, vec![0x03, 0x00, 0x08, 0x00]);
        let later = execute(1, false);
        assert_eq!(param_types(&later, 2).unwrap(), None);
        let fixed = with_param_types(&later, 2, &types).unwrap().unwrap();
        assert_eq!(
            fixed, first,
            "adding the types gives the first execute back"
        );
        assert_eq!(
            with_param_types(&first, 2, &types).unwrap(),
            None,
            "already there"
        );
    }

    #[test]
    fn bulk_execute_types() {
        let mut bulk = vec![0xfa];
        bulk.extend_from_slice(&3u32.to_le_bytes());
        bulk.extend_from_slice(&0u16.to_le_bytes());
        bulk.extend_from_slice(&[0, 1, 2, 3]);
        let fixed = with_param_types(&bulk, 1, &[0x03, 0x00]).unwrap().unwrap();
        assert_eq!(&fixed[5..7], &BULK_SEND_TYPES.to_le_bytes());
        assert_eq!(param_types(&fixed, 1).unwrap(), Some(&[0x03, 0x00][..]));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40), params in any::<u16>()) {
            let _ = statement_id(&bytes);
            let _ = param_types(&bytes, params);
            let _ = with_param_types(&bytes, params, &[0u8; 4]);
        }
    }
}
