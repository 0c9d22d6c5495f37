//! Finding where a command's reply ends.
//!
//! [`ReplyTracker`] is fed the reply's packets in order, each as its header
//! and the head of its payload, and says after each one whether the reply
//! goes on, has ended, or waits for the client (LOCAL INFILE). It never
//! needs a row's contents: a proxy can stream rows of any size through and
//! look only at the first bytes of each packet.
//!
//! The rules, as MariaDB 10.11 sends them (fixtures in the tests below
//! were captured from it):
//!
//! - A result starts with OK, ERR, a LOCAL INFILE request (0xFB) or a
//!   column count. Under MARIADB_CLIENT_CACHE_METADATA the column count is
//!   followed, in the same packet, by a "metadata follows" byte; when it is
//!   0 no column definitions come.
//! - Without CLIENT_DEPRECATE_EOF an EOF packet follows the column
//!   definitions (also when they were left out). With it, none does.
//! - Rows end with a packet that starts with 0xFE and is shorter than
//!   0xFFFFFF bytes (a row that starts with 0xFE holds a string of more
//!   than 16 MiB, so its packet is always a full one), or with ERR.
//! - A cursor: the metadata is followed by the terminator at once, with
//!   SERVER_STATUS_CURSOR_EXISTS set; the rows come with COM_STMT_FETCH.
//!   Only a COM_STMT_EXECUTE that asked for a cursor gets one
//!   ([`ReplyTracker::with_cursor_requested`]): a stored procedure that
//!   opened a cursor of its own sets the same flag on the EOF of a result
//!   whose rows do follow (text and binary protocol alike).
//! - SERVER_MORE_RESULTS_EXISTS on an OK or on a terminator means another
//!   result follows (multi-statements, CALL and its trailing OK), in the
//!   reply to a command that can have results (COM_QUERY, COM_STMT_EXECUTE):
//!   COM_FIELD_LIST and COM_STMT_FETCH replies end at their terminator
//!   whatever it says.
//! - Under MARIADB_CLIENT_PROGRESS an ERR with code 0xFFFF is a progress
//!   report and ends nothing.
//! - A payload of 0xFFFFFF bytes continues in the next packet, whose head
//!   is data and must not be read as a packet type.

use crate::caps::Capabilities;
use crate::command::ReplyKind;
use crate::frame::{PacketHeader, HEADER_LEN, MAX_PAYLOAD};
use crate::lenenc;
use crate::packets::{
    eof_status, ok_status, terminator_status, ServerStatus, EOF_HEADER, ERR_HEADER,
    LOCAL_INFILE_HEADER, OK_HEADER, PROGRESS_REPORT_CODE,
};
use crate::ProtocolError;

/// How many bytes of a packet's payload the tracker may look at; callers
/// give it the whole payload or at least this many bytes of it.
pub const HEAD_LEN: usize = 32;

/// What the tracker says about the packet it was just given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The reply goes on.
    More,
    /// The reply has ended with this packet.
    Done(Ending),
    /// The server asked for a local file (LOAD DATA LOCAL INFILE): the
    /// client now sends the file's packets and an empty packet, after which
    /// the reply goes on.
    LocalInfile,
}

/// How a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// With an OK or EOF packet; its status flags.
    Status(ServerStatus),
    /// With an ERR packet.
    Error,
    /// With a packet that carries no status (COM_STATISTICS).
    Other,
}

/// What the packet the tracker was last given was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PacketClass {
    /// An OK packet (header 0x00), or an OK that ends a result set
    /// (header 0xFE under CLIENT_DEPRECATE_EOF): it may carry session
    /// state changes.
    Ok(ServerStatus),
    /// A classic EOF packet.
    Eof(ServerStatus),
    /// An ERR packet (not a progress report).
    Err,
    /// A COM_STMT_PREPARE reply's first packet.
    PrepareOk,
    /// A row of a result set (the first packet of one, when it is
    /// continued).
    Row,
    /// Anything else: column count or definition, continuation,
    /// progress report, LOCAL INFILE request, COM_STATISTICS text.
    #[default]
    Other,
}

/// A COM_STMT_PREPARE reply's first packet, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepareOk {
    /// The statement id the server assigned.
    pub statement_id: u32,
    /// Number of result columns.
    pub columns: u16,
    /// Number of parameters.
    pub params: u16,
    /// Warning count.
    pub warnings: u16,
}

impl PrepareOk {
    /// Decodes a prepare-OK packet.
    pub fn parse(payload: &[u8]) -> Result<PrepareOk, ProtocolError> {
        match payload {
            [OK_HEADER, s0, s1, s2, s3, c0, c1, p0, p1, _, w0, w1, ..] => Ok(PrepareOk {
                statement_id: u32::from_le_bytes([*s0, *s1, *s2, *s3]),
                columns: u16::from_le_bytes([*c0, *c1]),
                params: u16::from_le_bytes([*p0, *p1]),
                warnings: u16::from_le_bytes([*w0, *w1]),
            }),
            // Servers older than 4.1.? left out the warning count.
            [OK_HEADER, s0, s1, s2, s3, c0, c1, p0, p1, ..] => Ok(PrepareOk {
                statement_id: u32::from_le_bytes([*s0, *s1, *s2, *s3]),
                columns: u16::from_le_bytes([*c0, *c1]),
                params: u16::from_le_bytes([*p0, *p1]),
                warnings: 0,
            }),
            _ => Err(ProtocolError::malformed("prepare OK packet")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The first packet of a result: OK, ERR, LOCAL INFILE or column count.
    ResultStart,
    /// Column definitions still to come.
    Columns(u64),
    /// The EOF after the column definitions (no CLIENT_DEPRECATE_EOF).
    ColumnsEof,
    /// Rows, until a terminator.
    Rows,
    /// One packet, whatever it is.
    Single,
    /// COM_FIELD_LIST: column definitions until a terminator.
    FieldList,
    /// The first packet of a COM_STMT_PREPARE reply.
    PrepareStart,
    /// Parameter definitions still to come, then `columns` columns.
    PrepareParams { params: u16, columns: u16 },
    /// The EOF after parameter definitions.
    PrepareParamsEof { columns: u16 },
    /// Column definitions of a prepared statement still to come.
    PrepareColumns(u16),
    /// The EOF after a prepared statement's column definitions.
    PrepareColumnsEof,
    /// The reply has ended.
    Finished,
}

/// Follows one command's reply packet by packet. See the module docs.
#[derive(Debug, Clone)]
pub struct ReplyTracker {
    state: State,
    caps: Capabilities,
    /// The previous packet was a full one: this packet continues its
    /// payload and is not looked at.
    continuation: bool,
    /// The prepare-OK of a COM_STMT_PREPARE reply, once seen.
    prepare_ok: Option<PrepareOk>,
    /// What the last packet was.
    last: PacketClass,
    /// The command asked for a cursor: SERVER_STATUS_CURSOR_EXISTS after
    /// the column definitions means the rows come with COM_STMT_FETCH.
    cursor_requested: bool,
    /// The reply may hold several results ([`ReplyKind::Results`]): a
    /// terminator with SERVER_MORE_RESULTS_EXISTS is followed by another.
    multi_results: bool,
    /// Results ended so far (an OK, or a result set's terminator),
    /// saturating.
    results: u8,
    /// What the last result leaves in `ROW_COUNT()`: an OK's affected
    /// rows, -1 after a result set.
    last_row_count: i64,
    /// Rows of the last result set.
    rows: u64,
}

impl ReplyTracker {
    /// A tracker for a reply of `kind` on a connection that negotiated
    /// `caps`. `None` for kinds that are not plain replies (no reply,
    /// authentication, replication).
    pub fn new(kind: ReplyKind, caps: Capabilities) -> Option<ReplyTracker> {
        let state = match kind {
            ReplyKind::Results => State::ResultStart,
            ReplyKind::Single => State::Single,
            ReplyKind::FieldList => State::FieldList,
            ReplyKind::Prepare => State::PrepareStart,
            ReplyKind::Fetch => State::Rows,
            ReplyKind::None | ReplyKind::Authentication | ReplyKind::Replication => return None,
        };
        Some(ReplyTracker {
            state,
            caps,
            continuation: false,
            prepare_ok: None,
            last: PacketClass::Other,
            cursor_requested: false,
            multi_results: kind == ReplyKind::Results,
            results: 0,
            last_row_count: -1,
            rows: 0,
        })
    }

    /// The same tracker for a command that asked for a cursor when
    /// `requested` (a COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY:
    /// [`crate::stmt::requests_cursor`]). Without it, a column-definition
    /// EOF with SERVER_STATUS_CURSOR_EXISTS is followed by rows.
    pub fn with_cursor_requested(mut self, requested: bool) -> ReplyTracker {
        self.cursor_requested = requested;
        self
    }

    /// Whether the command asked for a cursor
    /// ([`ReplyTracker::with_cursor_requested`]).
    pub fn cursor_requested(&self) -> bool {
        self.cursor_requested
    }

    /// Whether the reply has ended.
    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    /// What the packet last given to [`ReplyTracker::on_packet`] was.
    pub fn last_packet(&self) -> PacketClass {
        self.last
    }

    /// What `ROW_COUNT()` reads on the connection after this reply, when
    /// it answered one statement (COM_QUERY, COM_STMT_EXECUTE) and ended:
    /// its OK's affected rows, -1 after a result set or an error (MariaDB,
    /// checked against the server). `None` while the reply goes on, and
    /// for a reply of several results (a multi-statement text, a `CALL`),
    /// whose last statement's count depends on what it was.
    pub fn row_count(&self) -> Option<i64> {
        match (self.state, self.results) {
            (State::Finished, 0) => Some(-1),
            (State::Finished, 1) if self.last != PacketClass::Err => Some(self.last_row_count),
            _ => None,
        }
    }

    /// How many rows the reply's result set held, when the reply ended
    /// and was one result set (no OK, error or second result): what
    /// `FOUND_ROWS()` reads after a `SELECT` without
    /// `SQL_CALC_FOUND_ROWS`.
    pub fn result_rows(&self) -> Option<u64> {
        let one_result_set = self.results == 1 && self.last_row_count == -1;
        (self.state == State::Finished && one_result_set && self.last != PacketClass::Err)
            .then_some(self.rows)
    }

    /// The decoded prepare-OK, once a COM_STMT_PREPARE reply has given it.
    pub fn prepare_ok(&self) -> Option<PrepareOk> {
        self.prepare_ok
    }

    /// Takes the next packet of the reply: its header and its payload, or
    /// at least the first [`HEAD_LEN`] bytes of the payload.
    pub fn on_packet(&mut self, header: PacketHeader, head: &[u8]) -> Result<Step, ProtocolError> {
        let before = self.state;
        let continued = self.continuation;
        let step = self.step(header, head)?;
        self.last = if continued {
            PacketClass::Other
        } else {
            self.classify(before, header, head)
        };
        Ok(step)
    }

    /// Takes the row that starts `buf`, when a whole one does, and returns
    /// its header: what [`ReplyTracker::on_packet`] would do with it, in
    /// a few comparisons. `None` leaves the tracker as it was, for
    /// anything else: no rows expected now, a packet not all in `buf`, one
    /// that ends the rows (a terminator, an ERR), a full packet (a row of
    /// 16 MiB or more, continued in the next one) or an empty one.
    ///
    /// Rows are most of a large result, and each needs only its first
    /// byte looked at; the whole step of `on_packet` cost about as much
    /// again as the rest of a row's way through the proxy (callgrind).
    #[inline]
    pub fn take_row(&mut self, buf: &[u8]) -> Option<PacketHeader> {
        if self.state != State::Rows || self.continuation {
            return None;
        }
        let header = PacketHeader::parse(buf)?;
        let first = *buf.get(HEADER_LEN..header.total_len())?.first()?;
        if header.is_continued() || first == EOF_HEADER || first == ERR_HEADER {
            return None;
        }
        self.last = PacketClass::Row;
        self.rows += 1;
        Some(header)
    }

    /// What a packet just taken in state `before` was.
    fn classify(&self, before: State, header: PacketHeader, head: &[u8]) -> PacketClass {
        match head.first() {
            Some(&ERR_HEADER) if !self.is_progress_report(head) => PacketClass::Err,
            Some(&ERR_HEADER) => PacketClass::Other,
            Some(&OK_HEADER) if before == State::PrepareStart => PacketClass::PrepareOk,
            Some(&OK_HEADER) if matches!(before, State::ResultStart | State::Single) => {
                ok_status(head).map_or(PacketClass::Other, PacketClass::Ok)
            }
            Some(&EOF_HEADER) if header.len < MAX_PAYLOAD && before != State::ResultStart => {
                let terminator = matches!(before, State::Rows | State::FieldList | State::Single);
                if terminator && self.deprecate_eof() {
                    ok_status(head).map_or(PacketClass::Other, PacketClass::Ok)
                } else {
                    eof_status(head).map_or(PacketClass::Other, PacketClass::Eof)
                }
            }
            _ if before == State::Rows => PacketClass::Row,
            _ => PacketClass::Other,
        }
    }

    fn step(&mut self, header: PacketHeader, head: &[u8]) -> Result<Step, ProtocolError> {
        if self.state == State::Finished {
            return Err(ProtocolError::Unexpected {
                what: "packet after the end of a reply",
            });
        }
        let continued = std::mem::replace(&mut self.continuation, header.is_continued());
        if continued {
            return Ok(Step::More);
        }
        let first = head.first().copied();
        // No row, column definition or status packet starts with 0xFF, and
        // COM_STATISTICS' text does not either: 0xFF is always ERR.
        if first == Some(ERR_HEADER) {
            if self.is_progress_report(head) {
                return Ok(Step::More);
            }
            return Ok(self.finish(Ending::Error));
        }
        match self.state {
            State::ResultStart => self.result_start(header, head),
            State::Columns(left) => {
                self.state = match left {
                    1 => self.after_columns(),
                    _ => State::Columns(left - 1),
                };
                Ok(Step::More)
            }
            State::ColumnsEof => {
                let status = eof_status(head)?;
                if self.cursor_requested && status.has(ServerStatus::CURSOR_EXISTS) {
                    Ok(self.end_of_result(status))
                } else {
                    self.state = State::Rows;
                    Ok(Step::More)
                }
            }
            State::Rows | State::FieldList => {
                if first == Some(EOF_HEADER) && header.len < MAX_PAYLOAD {
                    let status = terminator_status(head, self.caps)?;
                    Ok(self.end_of_result(status))
                } else {
                    // A row (or its first packet, when it is continued).
                    self.rows += 1;
                    Ok(Step::More)
                }
            }
            State::Single => {
                let ending = match first {
                    Some(OK_HEADER) => Ending::Status(ok_status(head)?),
                    Some(EOF_HEADER) => Ending::Status(terminator_status(head, self.caps)?),
                    _ => Ending::Other,
                };
                Ok(self.finish(ending))
            }
            State::PrepareStart => {
                let ok = PrepareOk::parse(head)?;
                self.prepare_ok = Some(ok);
                self.state = match (ok.params, ok.columns) {
                    (0, 0) => return Ok(self.finish(Ending::Status(ServerStatus::default()))),
                    (0, columns) => State::PrepareColumns(columns),
                    (params, columns) => State::PrepareParams { params, columns },
                };
                Ok(Step::More)
            }
            State::PrepareParams { params, columns } => {
                self.state = if params > 1 {
                    State::PrepareParams {
                        params: params - 1,
                        columns,
                    }
                } else if !self.deprecate_eof() {
                    State::PrepareParamsEof { columns }
                } else if columns > 0 {
                    State::PrepareColumns(columns)
                } else {
                    return Ok(self.finish(Ending::Status(ServerStatus::default())));
                };
                Ok(Step::More)
            }
            State::PrepareParamsEof { columns } => {
                let status = eof_status(head)?;
                if columns > 0 {
                    self.state = State::PrepareColumns(columns);
                    Ok(Step::More)
                } else {
                    Ok(self.finish(Ending::Status(status)))
                }
            }
            State::PrepareColumns(left) => {
                self.state = if left > 1 {
                    State::PrepareColumns(left - 1)
                } else if !self.deprecate_eof() {
                    State::PrepareColumnsEof
                } else {
                    return Ok(self.finish(Ending::Status(ServerStatus::default())));
                };
                Ok(Step::More)
            }
            State::PrepareColumnsEof => {
                let status = eof_status(head)?;
                Ok(self.finish(Ending::Status(status)))
            }
            State::Finished => unreachable!("checked above"),
        }
    }

    fn deprecate_eof(&self) -> bool {
        self.caps.contains(Capabilities::CLIENT_DEPRECATE_EOF)
    }

    fn is_progress_report(&self, head: &[u8]) -> bool {
        self.caps.contains(Capabilities::MARIADB_CLIENT_PROGRESS)
            && head.get(1..3) == Some(&PROGRESS_REPORT_CODE.to_le_bytes()[..])
    }

    fn finish(&mut self, ending: Ending) -> Step {
        self.state = State::Finished;
        Step::Done(ending)
    }

    /// After an OK or a result set's terminator: another result, or the end.
    fn end_of_result(&mut self, status: ServerStatus) -> Step {
        self.results = self.results.saturating_add(1);
        if self.multi_results && status.has(ServerStatus::MORE_RESULTS_EXISTS) {
            self.state = State::ResultStart;
            Step::More
        } else {
            self.finish(Ending::Status(status))
        }
    }

    fn after_columns(&self) -> State {
        if self.deprecate_eof() {
            State::Rows
        } else {
            State::ColumnsEof
        }
    }

    fn result_start(&mut self, header: PacketHeader, head: &[u8]) -> Result<Step, ProtocolError> {
        match head.first() {
            None => Err(ProtocolError::malformed("empty reply packet")),
            Some(&OK_HEADER) => {
                let status = ok_status(head)?;
                // `ok_status` read the affected rows' field already.
                let affected = head
                    .get(1..)
                    .and_then(lenenc::read_int)
                    .map_or(0, |(n, _)| n);
                self.last_row_count = i64::try_from(affected).unwrap_or(i64::MAX);
                Ok(self.end_of_result(status))
            }
            Some(&LOCAL_INFILE_HEADER) => {
                // The server's answer to the file is an OK or ERR, which may
                // announce more results: a new result start.
                Ok(Step::LocalInfile)
            }
            Some(&EOF_HEADER) if header.len < 9 => Err(ProtocolError::Unexpected {
                what: "EOF packet at the start of a result",
            }),
            Some(_) => {
                let (count, used) =
                    lenenc::read_int(head).ok_or(ProtocolError::malformed("column count"))?;
                if count == 0 {
                    return Err(ProtocolError::malformed("column count"));
                }
                self.last_row_count = -1;
                self.rows = 0;
                let metadata_follows = if self
                    .caps
                    .contains(Capabilities::MARIADB_CLIENT_CACHE_METADATA)
                {
                    match head.get(used) {
                        Some(0) => false,
                        Some(1) => true,
                        _ => return Err(ProtocolError::malformed("metadata-follows flag")),
                    }
                } else {
                    true
                };
                self.state = if metadata_follows {
                    State::Columns(count)
                } else {
                    self.after_columns()
                };
                Ok(Step::More)
            }
        }
    }
}

#[cfg(test)]
mod tests;
