//! Length-encoded integers and strings.
//!
//! `mysql_common` has these too, but behind its `ParseBuf` types; the
//! reply tracker needs a bare "read one from this slice" on its hot path.

use bytes::{BufMut, BytesMut};

/// Reads a length-encoded integer from the start of `buf`: the value and
/// how many bytes it took. `None` when `buf` is too short or starts with a
/// byte that is not a valid length prefix (0xFB is SQL NULL in a row,
/// 0xFF an error marker).
#[inline]
pub fn read_int(buf: &[u8]) -> Option<(u64, usize)> {
    let (&first, rest) = buf.split_first()?;
    let width = match first {
        0..=0xFA => return Some((u64::from(first), 1)),
        0xFC => 2,
        0xFD => 3,
        0xFE => 8,
        _ => return None,
    };
    let bytes = rest.get(..width)?;
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate() {
        value |= u64::from(*b) << (8 * i);
    }
    Some((value, 1 + width))
}

/// Reads a length-encoded string: its bytes and how many bytes it took in
/// all. `None` when `buf` is too short.
pub fn read_bytes(buf: &[u8]) -> Option<(&[u8], usize)> {
    let (len, at) = read_int(buf)?;
    let len = usize::try_from(len).ok()?;
    let end = at.checked_add(len)?;
    Some((buf.get(at..end)?, end))
}

/// Appends `value` as a length-encoded integer.
pub fn put_int(dst: &mut BytesMut, value: u64) {
    match value {
        0..=0xFA => dst.put_u8(value as u8),
        0xFB..=0xFFFF => {
            dst.put_u8(0xFC);
            dst.put_u16_le(value as u16);
        }
        0x1_0000..=0xFF_FFFF => {
            dst.put_u8(0xFD);
            dst.put_uint_le(value, 3);
        }
        _ => {
            dst.put_u8(0xFE);
            dst.put_u64_le(value);
        }
    }
}

/// Appends `bytes` as a length-encoded string.
pub fn put_bytes(dst: &mut BytesMut, bytes: &[u8]) {
    put_int(dst, bytes.len() as u64);
    dst.put_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fixtures() {
        assert_eq!(read_int(&[0x02]), Some((2, 1)));
        assert_eq!(read_int(&[0xFC, 0x34, 0x12]), Some((0x1234, 3)));
        assert_eq!(read_int(&[0xFD, 1, 2, 3]), Some((0x030201, 4)));
        assert_eq!(read_int(&[0xFE, 1, 0, 0, 0, 0, 0, 0, 0]), Some((1, 9)));
        assert_eq!(read_int(&[0xFB]), None);
        assert_eq!(read_int(&[0xFF]), None);
        assert_eq!(read_int(&[0xFC, 1]), None);
        assert_eq!(read_bytes(b"\x03defxyz"), Some((&b"def"[..], 4)));
        assert_eq!(read_bytes(b"\x05de"), None);
    }

    proptest! {
        #[test]
        fn int_round_trip(value in any::<u64>()) {
            let mut buf = BytesMut::new();
            put_int(&mut buf, value);
            prop_assert_eq!(read_int(&buf), Some((value, buf.len())));
        }

        #[test]
        fn bytes_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut buf = BytesMut::new();
            put_bytes(&mut buf, &bytes);
            prop_assert_eq!(read_bytes(&buf), Some((&bytes[..], buf.len())));
        }

        #[test]
        fn read_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = read_int(&bytes);
            let _ = read_bytes(&bytes);
        }
    }
}
