//! Moving whole packets from one connection to another as they arrive,
//! for payloads Torpor does not look into: commands larger than the
//! buffering limit (looked at for their command byte and statement id
//! only), and LOCAL INFILE data.
//!
//! A command that reaches the backend's `max_allowed_packet` is refused
//! as MariaDB refuses it, and where: when the header of the packet that
//! brings it there arrives (the command so far plus that packet's length
//! at or past the limit), with ERR 1153 (08S01) at the sequence id after
//! that packet's, and the connection closes. Torpor answers in its place
//! (`Session::too_large`): nothing of it goes to the backend when it is
//! the first packet, and a multi-packet command refused half-way leaves
//! its backend connection mid-command, so it is closed with the session.

use std::io;
use std::time::Duration;

use torpor_protocol::command::Command;
use torpor_protocol::frame::{PacketHeader, HEADER_LEN, MAX_PAYLOAD};
use torpor_protocol::{stmt, ProtocolError};

use super::be;
use super::commands::{client_protocol, Follow, Session, STREAM_HEAD};
use super::model::NumericVariable;
use super::statements::BackendStatements;
use super::transaction::JournalNote;
use super::Failure;
use crate::error::SessionError;
use crate::net::Conn;

/// Which side failed during a relay.
#[derive(Debug)]
pub enum RelayError {
    /// Reading from the source failed or it closed (`None`: it closed).
    From(Option<io::Error>),
    /// Writing to the destination failed.
    To(io::Error),
    /// The packet with this header was refused (see [`Relayed::Refuse`]).
    Refused(PacketHeader),
}

/// What a relay does with a packet, told its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relayed {
    /// Forward it; more follow.
    More,
    /// Forward it; it is the last.
    Last,
    /// Forward none of it: the relay ends with [`RelayError::Refused`].
    Refuse,
}

/// Forwards packets from `from` to `to`, starting at a packet boundary of
/// `from`'s buffer, until the packet `next` calls the last has gone
/// through whole. Bytes after that packet stay in `from`'s buffer. A wait
/// of more than `read_limit` for `from`'s next bytes fails it
/// (`From(TimedOut)`): half a command must not hold `to` forever.
pub async fn relay_packets(
    from: &mut Conn,
    to: &mut Conn,
    read_limit: Duration,
    mut next: impl FnMut(PacketHeader) -> Relayed,
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
            match next(header) {
                Relayed::Refuse => {
                    // What came before it goes; it stays in the buffer.
                    to.forward_from(&mut from.rbuf, n)
                        .await
                        .map_err(RelayError::To)?;
                    return Err(RelayError::Refused(header));
                }
                relayed => last_seen = relayed == Relayed::Last,
            }
            n += HEADER_LEN;
            body_left = header.len;
        }
        to.forward_from(&mut from.rbuf, n)
            .await
            .map_err(RelayError::To)?;
        if finished {
            return Ok(());
        }
        let want = body_left.clamp(HEADER_LEN, 1 << 20);
        match from.read_more_within(want, read_limit).await {
            Ok(0) => return Err(RelayError::From(None)),
            Ok(_) => {}
            Err(e) => return Err(RelayError::From(Some(e))),
        }
    }
}

/// MariaDB's smallest `max_allowed_packet`: a packet shorter than this is
/// never too large.
const SMALLEST_MAX_ALLOWED_PACKET: usize = 1024;

/// ERR 1153 "Got a packet bigger than 'max_allowed_packet' bytes" (08S01),
/// at the sequence id after the refused packet's, ending the session.
fn packet_too_large(size: usize, limit: Option<usize>, refused: PacketHeader) -> Failure {
    Failure {
        error: SessionError::ClientProtocol(ProtocolError::TooLarge {
            size,
            limit: limit.unwrap_or(size),
        }),
        reply_seq: Some(refused.seq.wrapping_add(1)),
    }
}

impl Session {
    /// Streams the command at the front of the client's buffer, whose
    /// packets are too large to buffer. Returns the client statement id
    /// to prepare first, when the command names one this backend
    /// connection does not have.
    pub(super) async fn stream_command(&mut self) -> Result<Option<u32>, Failure> {
        let head = &self.client.rbuf[HEADER_LEN..HEADER_LEN + STREAM_HEAD];
        let command = Command::from_byte(head[0]);
        match command {
            Some(Command::Query) => {
                self.expect_reply(Command::Query, Follow::Plain, JournalNote::Unrecorded)
            }
            Some(Command::StmtPrepare) => {
                // Its text is too large to keep for preparing it again
                // elsewhere: the session stays on this connection.
                self.model.pin_unknown();
                self.expect_reply(
                    Command::StmtPrepare,
                    Follow::Prepare { sql: Vec::new() },
                    JournalNote::Neutral,
                );
            }
            Some(
                command @ (Command::StmtExecute
                | Command::StmtBulkExecute
                | Command::StmtSendLongData),
            ) => {
                let Some(named) = stmt::statement_id(head) else {
                    return Err(client_protocol(ProtocolError::malformed(command.name()), 1));
                };
                // 0xFFFFFFFF (a direct execute) names the statement last
                // prepared, whose prepare-OK is in by now (see dispatch).
                let id = self.statements.resolve(named);
                let skey = BackendStatements::key(self.guard.id, id);
                if self.statements.get(id).is_none() {
                    return Err(Failure {
                        error: SessionError::ClientProtocol(ProtocolError::Unexpected {
                            what: "oversized command for an unknown statement",
                        }),
                        reply_seq: Some(1),
                    });
                }
                let sql = self
                    .statements
                    .get(id)
                    .map(|s| s.sql.clone())
                    .unwrap_or_default();
                let found = be!(self).statements.lookup(skey);
                let found = found.or_else(|| {
                    self.backend
                        .as_mut()
                        .and_then(|b| b.statements.share(skey, &sql))
                });
                let Some(backend_id) = found else {
                    return Ok(Some(id));
                };
                // An execute this large cannot have parameter types added
                // on the way; it goes as the client sent it.
                match command {
                    Command::StmtSendLongData => self.model.long_data_sent(id),
                    _ => {
                        let facts = super::model::execute_facts(&sql);
                        let follow = Follow::Execute { id, facts };
                        self.expect_reply(command, follow, JournalNote::Unrecorded)
                    }
                }
                let start = HEADER_LEN;
                stmt::set_statement_id(
                    &mut self.client.rbuf[start..start + STREAM_HEAD],
                    backend_id,
                );
            }
            _ => {
                return Err(client_protocol(
                    ProtocolError::Unexpected {
                        what: "oversized packet that is not a query or statement command",
                    },
                    1,
                ))
            }
        }
        let read_limit = self.settings.load().net_read_timeout;
        let max = self.max_allowed_packet();
        let mut so_far = 0usize;
        let result = relay_packets(&mut self.client, &mut be!(self).conn, read_limit, |h| {
            so_far = so_far.saturating_add(h.len);
            if max.is_some_and(|max| so_far >= max) {
                Relayed::Refuse
            } else if h.len < MAX_PAYLOAD {
                Relayed::Last
            } else {
                Relayed::More
            }
        })
        .await;
        if let Err(RelayError::Refused(header)) = result {
            return Err(packet_too_large(so_far, max, header));
        }
        self.relay_result(result).map(|()| None)
    }

    /// The backend's `max_allowed_packet` for this session, when known.
    pub(super) fn max_allowed_packet(&self) -> Option<usize> {
        let max = self.model.number(NumericVariable::MaxAllowedPacket)?;
        usize::try_from(max).ok()
    }

    /// MariaDB's refusal of the command at the front of the client's
    /// buffer, when its first packet alone reaches `max_allowed_packet`
    /// (checked as soon as the header is in, before anything is sent or
    /// a backend connection borrowed).
    pub(super) fn too_large(&self, header: PacketHeader) -> Option<Failure> {
        if header.len < SMALLEST_MAX_ALLOWED_PACKET {
            return None;
        }
        let max = self.max_allowed_packet();
        max.is_some_and(|max| header.len >= max)
            .then(|| packet_too_large(header.len, max, header))
    }

    /// What a relay from the client to the backend ended with. A client
    /// that stalled past `net_read_timeout` is closed (reset, as MariaDB
    /// closes a connection it gave up on); its backend connection, caught
    /// mid-command, goes with the failed session, never to the pool.
    pub(super) fn relay_result(&mut self, result: Result<(), RelayError>) -> Result<(), Failure> {
        match result {
            Err(RelayError::Refused(header)) => Err(packet_too_large(header.len, None, header)),
            Ok(()) => Ok(()),
            Err(RelayError::From(None)) => Err(SessionError::ClientGone.into()),
            Err(RelayError::From(Some(e))) if e.kind() == io::ErrorKind::TimedOut => {
                Err(self.stalled())
            }
            Err(RelayError::From(Some(e))) => Err(SessionError::client_io(e).into()),
            // Not a plain disconnect: the client may still be sending
            // what was being relayed, so no command of its can be
            // answered on its own (session::cut leaves it alone).
            Err(RelayError::To(e)) => Err(self.backend_lost(std::io::Error::other(e))),
        }
    }
}
