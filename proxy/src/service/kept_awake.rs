//! What keeps an active service from suspending, counted by kind.

use super::Service;
use crate::registry::{PinnedSession, Registry};

/// What keeps an active service from suspending: backend connections
/// lent out, to sessions pinned to theirs (an open transaction first
/// among the reasons) or to queries running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptAwake {
    /// Sessions with an open transaction.
    pub open_transactions: usize,
    /// Sessions pinned to their backend connection, for any reason
    /// (open transactions included).
    pub pinned_sessions: usize,
    /// Connections lent to no pinned session: queries in flight.
    pub queries_running: usize,
    /// The session pinned longest, if any.
    pub oldest: Option<PinnedSession>,
}

impl KeptAwake {
    /// What `lent` connections and the service's `pinned` sessions (as
    /// [`Registry::pins_of`] lists them, longest first) amount to; `None`
    /// when nothing is lent or pinned.
    pub fn of(lent: usize, pinned: Vec<PinnedSession>) -> Option<KeptAwake> {
        if lent == 0 && pinned.is_empty() {
            return None;
        }
        Some(KeptAwake {
            open_transactions: pinned.iter().filter(|p| p.in_transaction()).count(),
            pinned_sessions: pinned.len(),
            queries_running: lent.saturating_sub(pinned.len()),
            oldest: pinned.into_iter().next(),
        })
    }

    /// Of `service`, now.
    pub fn now(service: &Service, registry: &Registry) -> Option<KeptAwake> {
        KeptAwake::of(service.lent(), registry.pins_of(service.index))
    }

    /// In words, for the log.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} session(s) in an open transaction, {} pinned for other reasons, {} query(ies) running",
            self.open_transactions,
            self.pinned_sessions - self.open_transactions,
            self.queries_running
        );
        if let Some(oldest) = &self.oldest {
            text.push_str(&format!(
                "; longest: session {} ({}) for {} s",
                oldest.session,
                oldest.reasons.join(", "),
                oldest.pinned_for.as_secs()
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::KeptAwake;
    use crate::registry::PinnedSession;
    use std::time::Duration;

    #[test]
    fn what_keeps_a_service_awake_is_counted_by_kind() {
        assert_eq!(KeptAwake::of(0, Vec::new()), None);
        let pinned = |session, reasons: &[&'static str], secs| PinnedSession {
            session,
            reasons: reasons.to_vec(),
            pinned_for: Duration::from_secs(secs),
        };
        let awake = KeptAwake::of(
            4,
            vec![
                pinned(7, &["transaction"], 90),
                pinned(8, &["temporary-table"], 30),
            ],
        )
        .expect("kept awake");
        assert_eq!(
            (
                awake.open_transactions,
                awake.pinned_sessions,
                awake.queries_running
            ),
            (1, 2, 2)
        );
        let text = awake.describe();
        assert!(
            text.starts_with("1 session(s) in an open transaction, 1 pinned for other reasons, 2 query(ies) running")
                && text.ends_with("longest: session 7 (transaction) for 90 s"),
            "{text}"
        );
    }
}
