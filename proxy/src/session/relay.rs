//! Moving whole packets from one connection to another as they arrive,
//! for payloads Torpor does not look into: commands larger than the
//! buffering limit (looked at for their command byte and statement id
//! only), and LOCAL INFILE data.

use std::io;
use std::time::Duration;

use torpor_protocol::command::Command;
use torpor_protocol::frame::{PacketHeader, HEADER_LEN, MAX_PAYLOAD};
use torpor_protocol::{stmt, ProtocolError};

use super::be;
use super::commands::{client_protocol, Follow, Session, STREAM_HEAD};
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
}

/// Forwards packets from `from` to `to`, starting at a packet boundary of
/// `from`'s buffer, until a packet for which `is_last` says yes has gone
/// through whole. Bytes after that packet stay in `from`'s buffer. A wait
/// of more than `read_limit` for `from`'s next bytes fails it
/// (`From(TimedOut)`): half a command must not hold `to` forever.
pub async fn relay_packets(
    from: &mut Conn,
    to: &mut Conn,
    read_limit: Duration,
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
        match from.read_more_within(want, read_limit).await {
            Ok(0) => return Err(RelayError::From(None)),
            Ok(_) => {}
            Err(e) => return Err(RelayError::From(Some(e))),
        }
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
                let Some(id) = stmt::statement_id(head) else {
                    return Err(client_protocol(ProtocolError::malformed(command.name()), 1));
                };
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
        let read_limit = self.shared.settings().net_read_timeout;
        let result = relay_packets(&mut self.client, &mut be!(self).conn, read_limit, |h| {
            h.len < MAX_PAYLOAD
        })
        .await;
        self.relay_result(result).map(|()| None)
    }

    /// What a relay from the client to the backend ended with. A client
    /// that stalled past `net_read_timeout` is closed (reset, as MariaDB
    /// closes a connection it gave up on); its backend connection, caught
    /// mid-command, goes with the failed session, never to the pool.
    pub(super) fn relay_result(&mut self, result: Result<(), RelayError>) -> Result<(), Failure> {
        match result {
            Ok(()) => Ok(()),
            Err(RelayError::From(None)) => Err(SessionError::ClientGone.into()),
            Err(RelayError::From(Some(e))) if e.kind() == io::ErrorKind::TimedOut => {
                Err(self.stalled())
            }
            Err(RelayError::From(Some(e))) => Err(SessionError::client_io(e).into()),
            Err(RelayError::To(e)) => Err(self.backend_lost(e)),
        }
    }
}
