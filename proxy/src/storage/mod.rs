//! Storage that grows: a managed service's datadir on a volume of its
//! own, watched and grown online as it fills.
//!
//! - [`policy`]: when to grow and to what size — a pure function of the
//!   volume's use and the service's `[services.storage]`.
//! - [`volume`]: the volume itself, an XFS image file on a loop device
//!   mounted where the datadir lives: made, found again after a restart,
//!   grown while mounted, released.
//! - [`usage`]: how full a mounted filesystem is (`statvfs`).
//! - [`watch`]: one service's storage as its driver holds it: samples,
//!   grows at the threshold, counts, and where no volume can be made
//!   (not root, no loop devices) only watches and says so once.

pub mod policy;
pub mod usage;
pub mod volume;
pub mod watch;

pub use watch::{StorageView, Watch};
