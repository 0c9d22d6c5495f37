//! Turning what the server reports in OK packets (session tracking) into
//! changes of a [`SessionState`].

use torpor_protocol::session_track::SessionChange;

use crate::state::{Baseline, SessionState};

/// What one OK packet said besides variable and schema values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Something without a tracker of its own changed: user variables,
    /// temporary tables, prepared statements. The statement's text says
    /// which ([`crate::classify`]).
    pub untracked_change: bool,
    /// The transaction state flags, when reported (e.g. `T___W___`).
    pub transaction_state: Option<String>,
    /// A change kind this code does not know: the state can no longer be
    /// reproduced with confidence.
    pub unknown_change: bool,
}

impl SessionState {
    /// Applies the session-state changes of one OK packet.
    pub fn apply_changes(
        &mut self,
        changes: &[SessionChange<'_>],
        baseline: &Baseline,
    ) -> Observed {
        let mut observed = Observed::default();
        for change in changes {
            match change {
                SessionChange::SystemVariable { name, value } => {
                    let name = String::from_utf8_lossy(name);
                    let value = String::from_utf8_lossy(value);
                    self.set_variable(baseline, &name, &value);
                }
                SessionChange::Schema(schema) => {
                    self.schema =
                        (!schema.is_empty()).then(|| String::from_utf8_lossy(schema).into_owned());
                }
                SessionChange::StateChanged => observed.untracked_change = true,
                SessionChange::TransactionCharacteristics(text) => {
                    self.next_transaction =
                        (!text.is_empty()).then(|| String::from_utf8_lossy(text).into_owned());
                }
                SessionChange::TransactionState(flags) => {
                    observed.transaction_state = Some(String::from_utf8_lossy(flags).into_owned());
                }
                SessionChange::Gtids(_) => {}
                SessionChange::Unknown { .. } => observed.unknown_change = true,
            }
        }
        observed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::VarKind;

    #[test]
    fn changes_update_the_state() {
        let mut baseline = Baseline::default();
        baseline.variables.insert(
            "sql_mode".into(),
            ("STRICT_TRANS_TABLES".into(), VarKind::Text),
        );
        let mut state = SessionState::default();
        let observed = state.apply_changes(
            &[
                SessionChange::SystemVariable {
                    name: b"sql_mode",
                    value: b"ANSI",
                },
                SessionChange::Schema(b"shop"),
                SessionChange::StateChanged,
                SessionChange::TransactionCharacteristics(b"SET TRANSACTION READ ONLY;"),
                SessionChange::TransactionState(b"________"),
            ],
            &baseline,
        );
        assert_eq!(
            state.variables.get("sql_mode").map(String::as_str),
            Some("ANSI")
        );
        assert_eq!(state.schema.as_deref(), Some("shop"));
        assert_eq!(
            state.next_transaction.as_deref(),
            Some("SET TRANSACTION READ ONLY;")
        );
        assert!(observed.untracked_change);
        assert_eq!(observed.transaction_state.as_deref(), Some("________"));
        state.apply_changes(
            &[
                SessionChange::SystemVariable {
                    name: b"sql_mode",
                    value: b"STRICT_TRANS_TABLES",
                },
                SessionChange::TransactionCharacteristics(b""),
            ],
            &baseline,
        );
        assert!(state.variables.is_empty(), "back to the baseline");
        assert_eq!(state.next_transaction, None);
        let observed =
            state.apply_changes(&[SessionChange::Unknown { kind: 9, data: b"" }], &baseline);
        assert!(observed.unknown_change);
    }
}
