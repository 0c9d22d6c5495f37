//! What session tracking a client asked for.
//!
//! Torpor turns every tracker on for its backend connections, to follow
//! the session's state. A client still gets exactly what its own
//! `session_track_*` settings would have given it from MariaDB directly:
//! the server's defaults, or what the client set. [`ClientTracking`] says
//! which reported changes it keeps.

use std::sync::Arc;

use torpor_protocol::session_track::SessionChange;

/// The four `session_track_*` settings of a client session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTracking {
    /// `session_track_system_variables`: names (lower case), or `*`.
    /// Shared: every session starts with the server's list, and most
    /// keep it, so a held session costs no copy of it.
    pub system_variables: Arc<[String]>,
    /// `session_track_schema`.
    pub schema: bool,
    /// `session_track_state_change`.
    pub state_change: bool,
    /// `session_track_transaction_info`: OFF, STATE or CHARACTERISTICS.
    pub transaction_info: TransactionInfo,
}

/// `session_track_transaction_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionInfo {
    /// Nothing.
    Off,
    /// Transaction state flags.
    State,
    /// Flags and characteristics.
    Characteristics,
}

/// The names of the settings, lower case.
pub const SETTINGS: [&str; 4] = [
    "session_track_system_variables",
    "session_track_schema",
    "session_track_state_change",
    "session_track_transaction_info",
];

fn on(value: &str) -> bool {
    matches!(value.to_ascii_uppercase().as_str(), "ON" | "1" | "TRUE")
}

impl Default for ClientTracking {
    /// MariaDB 10.11's defaults.
    fn default() -> Self {
        ClientTracking {
            system_variables: [
                "autocommit",
                "character_set_client",
                "character_set_connection",
                "character_set_results",
                "time_zone",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            schema: true,
            state_change: false,
            transaction_info: TransactionInfo::Off,
        }
    }
}

impl ClientTracking {
    /// Takes one setting's new value; false when `name` is not one.
    pub fn set(&mut self, name: &str, value: &str) -> bool {
        match name.to_ascii_lowercase().as_str() {
            "session_track_system_variables" => {
                self.system_variables = value
                    .split(',')
                    .map(|v| v.trim().to_ascii_lowercase())
                    .filter(|v| !v.is_empty())
                    .collect();
            }
            "session_track_schema" => self.schema = on(value),
            "session_track_state_change" => self.state_change = on(value),
            "session_track_transaction_info" => {
                self.transaction_info = match value.to_ascii_uppercase().as_str() {
                    "STATE" | "1" => TransactionInfo::State,
                    "CHARACTERISTICS" | "2" => TransactionInfo::Characteristics,
                    _ => TransactionInfo::Off,
                }
            }
            _ => return false,
        }
        true
    }

    /// Whether the client is told about `change`.
    pub fn keeps(&self, change: &SessionChange<'_>) -> bool {
        match change {
            SessionChange::SystemVariable { name, .. } => self
                .system_variables
                .iter()
                .any(|v| v == "*" || v.as_bytes().eq_ignore_ascii_case(name)),
            SessionChange::Schema(_) => self.schema,
            SessionChange::StateChanged => self.state_change,
            SessionChange::TransactionState(_) => self.transaction_info != TransactionInfo::Off,
            SessionChange::TransactionCharacteristics(_) => {
                self.transaction_info == TransactionInfo::Characteristics
            }
            SessionChange::Gtids(_) | SessionChange::Unknown { .. } => true,
        }
    }

    /// Whether the client keeps everything (Torpor's own settings): then
    /// OK packets need no filtering.
    pub fn keeps_all(&self) -> bool {
        self.system_variables.iter().any(|v| v == "*")
            && self.schema
            && self.state_change
            && self.transaction_info == TransactionInfo::Characteristics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_keep_what_mariadb_reports_by_default() {
        let tracking = ClientTracking::default();
        assert!(tracking.keeps(&SessionChange::SystemVariable {
            name: b"autocommit",
            value: b"OFF"
        }));
        assert!(!tracking.keeps(&SessionChange::SystemVariable {
            name: b"sql_mode",
            value: b"ANSI"
        }));
        assert!(tracking.keeps(&SessionChange::Schema(b"test")));
        assert!(!tracking.keeps(&SessionChange::StateChanged));
        assert!(!tracking.keeps(&SessionChange::TransactionState(b"T_______")));
        assert!(!tracking.keeps_all());
    }

    #[test]
    fn settings_change_what_is_kept() {
        let mut tracking = ClientTracking::default();
        assert!(tracking.set("SESSION_TRACK_SYSTEM_VARIABLES", "*"));
        assert!(tracking.set("session_track_state_change", "ON"));
        assert!(tracking.set("session_track_transaction_info", "CHARACTERISTICS"));
        assert!(!tracking.set("sql_mode", "ANSI"));
        assert!(tracking.keeps_all());
        assert!(tracking.keeps(&SessionChange::SystemVariable {
            name: b"sql_mode",
            value: b"ANSI"
        }));
    }
}
