//! Moving whole packets from one connection to another as they arrive,
//! for payloads Torpor does not look into: commands larger than the
//! buffering limit, and LOCAL INFILE data.

use std::io;

use torpor_protocol::frame::{PacketHeader, HEADER_LEN};

use crate::net::Conn;

/// Which side failed during a relay.
#[derive(Debug)]
pub enum RelayError {
    /// Reading from the source failed or it closed (`None`: it closed).
    From(Option<io::Error>),
    /// Writing to the destination failed.
    To(io::Error),
}

/// Forwards packets from `from` to `to`, starting at a packet boundary of
/// `from`'s buffer, until a packet for which `is_last` says yes has gone
/// through whole. Bytes after that packet stay in `from`'s buffer.
pub async fn relay_packets(
    from: &mut Conn,
    to: &mut Conn,
    mut is_last: impl FnMut(PacketHeader) -> bool,
) -> Result<(), RelayError> {
    let mut body_left = 0usize;
    let mut last_seen = false;
    loop {
        let mut n = 0;
        let mut finished = false;
        loop {
            if body_left > 0 {
                let take = body_left.min(from.rbuf.len() - n);
                n += take;
                body_left -= take;
                if body_left > 0 {
                    break;
                }
            }
            if last_seen {
                finished = true;
                break;
            }
            let Some(header) = PacketHeader::parse(&from.rbuf[n..]) else {
                break;
            };
            n += HEADER_LEN;
            body_left = header.len;
            last_seen = is_last(header);
        }
        to.forward_from(&mut from.rbuf, n)
            .await
            .map_err(RelayError::To)?;
        if finished {
            return Ok(());
        }
        let want = body_left.clamp(HEADER_LEN, 1 << 20);
        match from.read_more(want).await {
            Ok(0) => return Err(RelayError::From(None)),
            Ok(_) => {}
            Err(e) => return Err(RelayError::From(Some(e))),
        }
    }
}
