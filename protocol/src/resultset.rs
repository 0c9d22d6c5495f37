//! Reading text-protocol rows, for the few result sets the proxy asks
//! for itself (a backend's variable defaults, a session's user
//! variables). Client result sets are never decoded.

use crate::lenenc;
use crate::ProtocolError;

/// The values of one text-protocol row: `None` for SQL NULL.
pub fn text_row(payload: &[u8], columns: usize) -> Result<Vec<Option<&[u8]>>, ProtocolError> {
    let mut values = Vec::with_capacity(columns);
    let mut rest = payload;
    for _ in 0..columns {
        if let Some(tail) = rest.strip_prefix(&[0xFB]) {
            values.push(None);
            rest = tail;
            continue;
        }
        let (value, used) = lenenc::read_bytes(rest).ok_or(ProtocolError::malformed("text row"))?;
        values.push(Some(value));
        rest = rest
            .get(used..)
            .ok_or(ProtocolError::malformed("text row"))?;
    }
    if !rest.is_empty() {
        return Err(ProtocolError::malformed("text row"));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_with_nulls() {
        assert_eq!(
            text_row(b"\x011\xfb", 2).unwrap(),
            vec![Some(&b"1"[..]), None]
        );
        assert_eq!(text_row(b"\x00", 1).unwrap(), vec![Some(&b""[..])]);
        assert!(text_row(b"\x05ab", 1).is_err());
        assert!(text_row(b"\x011\x012", 1).is_err(), "extra bytes");
    }
}
