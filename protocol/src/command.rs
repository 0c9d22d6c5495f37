//! The commands a client may send, and what kind of reply ends each.

/// A command byte: the first byte of a command packet (sequence id 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Command {
    /// COM_SLEEP: internal to servers; they answer with an error.
    Sleep = 0x00,
    /// COM_QUIT: no reply; the server closes the connection.
    Quit = 0x01,
    /// COM_INIT_DB: OK or ERR.
    InitDb = 0x02,
    /// COM_QUERY: OK, ERR, LOCAL INFILE request, or result sets.
    Query = 0x03,
    /// COM_FIELD_LIST: column definitions ended by EOF, or ERR.
    FieldList = 0x04,
    /// COM_CREATE_DB: OK or ERR.
    CreateDb = 0x05,
    /// COM_DROP_DB: OK or ERR.
    DropDb = 0x06,
    /// COM_REFRESH: OK or ERR.
    Refresh = 0x07,
    /// COM_SHUTDOWN: EOF or ERR.
    Shutdown = 0x08,
    /// COM_STATISTICS: one packet of text.
    Statistics = 0x09,
    /// COM_PROCESS_INFO: a result set, or ERR.
    ProcessInfo = 0x0a,
    /// COM_CONNECT: internal; ERR.
    Connect = 0x0b,
    /// COM_PROCESS_KILL: OK or ERR.
    ProcessKill = 0x0c,
    /// COM_DEBUG: EOF or ERR.
    Debug = 0x0d,
    /// COM_PING: OK.
    Ping = 0x0e,
    /// COM_TIME: internal; ERR.
    Time = 0x0f,
    /// COM_DELAYED_INSERT: internal; ERR.
    DelayedInsert = 0x10,
    /// COM_CHANGE_USER: an authentication exchange ending in OK or ERR.
    ChangeUser = 0x11,
    /// COM_BINLOG_DUMP: a replication stream.
    BinlogDump = 0x12,
    /// COM_TABLE_DUMP: internal; ERR.
    TableDump = 0x13,
    /// COM_CONNECT_OUT: internal; ERR.
    ConnectOut = 0x14,
    /// COM_REGISTER_SLAVE: OK or ERR.
    RegisterSlave = 0x15,
    /// COM_STMT_PREPARE: prepare-OK with parameter and column definitions,
    /// or ERR.
    StmtPrepare = 0x16,
    /// COM_STMT_EXECUTE: OK, ERR, or binary result sets (or a cursor).
    StmtExecute = 0x17,
    /// COM_STMT_SEND_LONG_DATA: no reply.
    StmtSendLongData = 0x18,
    /// COM_STMT_CLOSE: no reply.
    StmtClose = 0x19,
    /// COM_STMT_RESET: OK or ERR.
    StmtReset = 0x1a,
    /// COM_SET_OPTION: EOF or ERR.
    SetOption = 0x1b,
    /// COM_STMT_FETCH: rows from a cursor ended by EOF, or ERR.
    StmtFetch = 0x1c,
    /// COM_DAEMON: internal; ERR.
    Daemon = 0x1d,
    /// COM_BINLOG_DUMP_GTID: a replication stream.
    BinlogDumpGtid = 0x1e,
    /// COM_RESET_CONNECTION: OK or ERR.
    ResetConnection = 0x1f,
    /// MariaDB COM_STMT_BULK_EXECUTE: like COM_STMT_EXECUTE.
    StmtBulkExecute = 0xfa,
}

/// What kind of reply a command gets, as far as finding its end goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// No reply at all.
    None,
    /// Exactly one packet (OK, ERR, EOF, or COM_STATISTICS' text).
    Single,
    /// OK, ERR, LOCAL INFILE request, or one or more result sets.
    Results,
    /// Column definitions ended by EOF, or ERR (COM_FIELD_LIST).
    FieldList,
    /// Prepare-OK followed by parameter and column definitions, or ERR.
    Prepare,
    /// Rows ended by EOF, or ERR (COM_STMT_FETCH).
    Fetch,
    /// An authentication exchange: the proxy handles it itself.
    Authentication,
    /// A replication stream: not supported through Torpor.
    Replication,
}

impl Command {
    /// The command for a command byte; `None` for bytes no server knows.
    pub fn from_byte(byte: u8) -> Option<Command> {
        use Command::*;
        Some(match byte {
            0x00 => Sleep,
            0x01 => Quit,
            0x02 => InitDb,
            0x03 => Query,
            0x04 => FieldList,
            0x05 => CreateDb,
            0x06 => DropDb,
            0x07 => Refresh,
            0x08 => Shutdown,
            0x09 => Statistics,
            0x0a => ProcessInfo,
            0x0b => Connect,
            0x0c => ProcessKill,
            0x0d => Debug,
            0x0e => Ping,
            0x0f => Time,
            0x10 => DelayedInsert,
            0x11 => ChangeUser,
            0x12 => BinlogDump,
            0x13 => TableDump,
            0x14 => ConnectOut,
            0x15 => RegisterSlave,
            0x16 => StmtPrepare,
            0x17 => StmtExecute,
            0x18 => StmtSendLongData,
            0x19 => StmtClose,
            0x1a => StmtReset,
            0x1b => SetOption,
            0x1c => StmtFetch,
            0x1d => Daemon,
            0x1e => BinlogDumpGtid,
            0x1f => ResetConnection,
            0xfa => StmtBulkExecute,
            _ => return None,
        })
    }

    /// Which reply ends this command.
    pub fn reply_kind(self) -> ReplyKind {
        use Command::*;
        match self {
            Quit | StmtSendLongData | StmtClose => ReplyKind::None,
            Query | StmtExecute | StmtBulkExecute | ProcessInfo => ReplyKind::Results,
            FieldList => ReplyKind::FieldList,
            StmtPrepare => ReplyKind::Prepare,
            StmtFetch => ReplyKind::Fetch,
            ChangeUser => ReplyKind::Authentication,
            BinlogDump | BinlogDumpGtid | RegisterSlave => ReplyKind::Replication,
            Sleep | InitDb | CreateDb | DropDb | Refresh | Shutdown | Statistics | Connect
            | ProcessKill | Debug | Ping | Time | DelayedInsert | TableDump | ConnectOut
            | StmtReset | SetOption | Daemon | ResetConnection => ReplyKind::Single,
        }
    }

    /// The protocol's name for the command, for logs and errors.
    pub fn name(self) -> &'static str {
        use Command::*;
        match self {
            Sleep => "COM_SLEEP",
            Quit => "COM_QUIT",
            InitDb => "COM_INIT_DB",
            Query => "COM_QUERY",
            FieldList => "COM_FIELD_LIST",
            CreateDb => "COM_CREATE_DB",
            DropDb => "COM_DROP_DB",
            Refresh => "COM_REFRESH",
            Shutdown => "COM_SHUTDOWN",
            Statistics => "COM_STATISTICS",
            ProcessInfo => "COM_PROCESS_INFO",
            Connect => "COM_CONNECT",
            ProcessKill => "COM_PROCESS_KILL",
            Debug => "COM_DEBUG",
            Ping => "COM_PING",
            Time => "COM_TIME",
            DelayedInsert => "COM_DELAYED_INSERT",
            ChangeUser => "COM_CHANGE_USER",
            BinlogDump => "COM_BINLOG_DUMP",
            TableDump => "COM_TABLE_DUMP",
            ConnectOut => "COM_CONNECT_OUT",
            RegisterSlave => "COM_REGISTER_SLAVE",
            StmtPrepare => "COM_STMT_PREPARE",
            StmtExecute => "COM_STMT_EXECUTE",
            StmtSendLongData => "COM_STMT_SEND_LONG_DATA",
            StmtClose => "COM_STMT_CLOSE",
            StmtReset => "COM_STMT_RESET",
            SetOption => "COM_SET_OPTION",
            StmtFetch => "COM_STMT_FETCH",
            Daemon => "COM_DAEMON",
            BinlogDumpGtid => "COM_BINLOG_DUMP_GTID",
            ResetConnection => "COM_RESET_CONNECTION",
            StmtBulkExecute => "COM_STMT_BULK_EXECUTE",
        }
    }
}

/// Reads the 4-byte little-endian statement id that COM_STMT_EXECUTE,
/// _FETCH, _CLOSE, _RESET, _SEND_LONG_DATA and _BULK_EXECUTE carry after
/// the command byte.
pub fn statement_id(payload: &[u8]) -> Option<u32> {
    let bytes = payload.get(1..)?.first_chunk::<4>()?;
    Some(u32::from_le_bytes(*bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_byte_round_trips() {
        for byte in 0..=255u8 {
            if let Some(command) = Command::from_byte(byte) {
                assert_eq!(command as u8, byte, "{}", command.name());
            }
        }
        assert_eq!(Command::from_byte(0x20), None);
        assert_eq!(Command::from_byte(0xfe), None, "COM_MULTI is not offered");
    }

    #[test]
    fn replies() {
        assert_eq!(Command::StmtClose.reply_kind(), ReplyKind::None);
        assert_eq!(Command::Query.reply_kind(), ReplyKind::Results);
        assert_eq!(Command::SetOption.reply_kind(), ReplyKind::Single);
        assert_eq!(statement_id(b"\x19\x01\x00\x00\x00"), Some(1));
        assert_eq!(statement_id(b"\x19\x01"), None);
    }
}
