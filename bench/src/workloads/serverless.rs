//! Torpor's serverless behaviour: the first query after the service was
//! suspended or parked, and the stall a steady client sees while the
//! service is resized or relocated.
//!
//! Each needs Torpor's admin API to suspend, park, resize or relocate on
//! demand. That API does not exist yet, so these report "not available"
//! with the reason, on every target, in every output. They never make a
//! number up: a figure here will always be a measured one.

use super::{Outcome, WorkloadKind};
use crate::targets::Target;

/// Why the serverless workloads cannot run on a Torpor target today.
pub const NO_ADMIN_API: &str =
    "needs Torpor's admin API (suspend, park, resize, relocate), which does not exist yet";

/// Why they do not apply to other targets.
pub const NOT_TORPOR: &str = "not a Torpor target";

/// The outcome of a serverless workload on `target`.
pub fn run(kind: WorkloadKind, target: &Target) -> Outcome {
    debug_assert!(matches!(
        kind,
        WorkloadKind::WakeAfterSuspend
            | WorkloadKind::WakeAfterPark
            | WorkloadKind::ResizeStall
            | WorkloadKind::RelocateStall
    ));
    if target.is_torpor() {
        Outcome::NotAvailable(NO_ADMIN_API.to_string())
    } else {
        Outcome::NotAvailable(NOT_TORPOR.to_string())
    }
}
