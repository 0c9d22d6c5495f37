//! When a volume grows, and to what size. Pure: the watcher
//! ([`super::watch`]) feeds it samples, tests feed it tables.

use crate::config::storage::StorageConfig;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// The share of a volume of `size` bytes that may be used before it
/// grows. Small volumes grow early, because a step is large next to them
/// and a burst of writes fills them fast; big ones late, because 5 % of
/// a terabyte is still a lot of headroom.
pub fn threshold(size: u64) -> f64 {
    if size < 100 * GIB {
        0.60
    } else if size <= 500 * GIB {
        0.80
    } else {
        0.95
    }
}

/// What to do about a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Under its threshold: nothing.
    Keep,
    /// Past its threshold: grow to this many bytes.
    Grow(u64),
    /// Past its threshold, but already at its maximum.
    AtMax,
}

/// What a volume should do under `config`, whose filesystem has `used`
/// of its `size` bytes in use and whose image is `volume` bytes. The
/// threshold is the filesystem's (what the data can fill); steps and the
/// maximum are the image's (what the operator sized): the two differ by
/// the filesystem's own log and metadata, 64 MiB and more on XFS. A grow
/// adds one step, capped at the maximum.
pub fn decide(used: u64, size: u64, volume: u64, config: &StorageConfig) -> Decision {
    if size == 0 || (used as f64) < threshold(size) * size as f64 {
        return Decision::Keep;
    }
    let max = config.max_mib.saturating_mul(MIB);
    if volume >= max {
        return Decision::AtMax;
    }
    let next = volume
        .saturating_add(config.step_mib.saturating_mul(MIB))
        .min(max);
    Decision::Grow(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> StorageConfig {
        StorageConfig {
            initial_mib: 320,
            step_mib: 256,
            max_mib: 832,
        }
    }

    #[test]
    fn thresholds_follow_the_size() {
        assert_eq!(threshold(320 * MIB), 0.60);
        assert_eq!(threshold(100 * GIB - 1), 0.60);
        assert_eq!(threshold(100 * GIB), 0.80);
        assert_eq!(threshold(500 * GIB), 0.80);
        assert_eq!(threshold(500 * GIB + 1), 0.95);
    }

    #[test]
    fn grows_by_a_step_past_the_threshold_up_to_the_maximum() {
        let cases = [
            // used MiB, filesystem MiB, image MiB, decision
            (100, 320, 320, Decision::Keep),
            (191, 320, 320, Decision::Keep),
            (192, 320, 320, Decision::Grow(576 * MIB)),
            (400, 576, 576, Decision::Grow(832 * MIB)),
            (300, 832, 832, Decision::Keep),
            (600, 832, 832, Decision::AtMax),
            // A step past the maximum stops at it.
            (700, 1000, 1000, Decision::AtMax),
            // XFS's log: the filesystem is smaller than its image, and
            // the image decides the step and the maximum.
            (154, 256, 320, Decision::Grow(576 * MIB)),
            (500, 768, 832, Decision::AtMax),
        ];
        for (used, size, volume, expected) in cases {
            assert_eq!(
                decide(used * MIB, size * MIB, volume * MIB, &config()),
                expected,
                "{used} of {size} MiB on {volume} MiB"
            );
        }
        let uneven = StorageConfig {
            max_mib: 700,
            ..config()
        };
        assert_eq!(
            decide(400 * MIB, 576 * MIB, 576 * MIB, &uneven),
            Decision::Grow(700 * MIB)
        );
    }

    #[test]
    fn big_volumes_wait_longer() {
        let big = StorageConfig {
            initial_mib: 200 * 1024,
            step_mib: 50 * 1024,
            max_mib: 1024 * 1024,
        };
        let at = |used: u64, size: u64| decide(used * GIB, size * GIB, size * GIB, &big);
        assert_eq!(at(150, 200), Decision::Keep);
        assert_eq!(at(161, 200), Decision::Grow(250 * GIB));
        assert_eq!(at(900, 1024), Decision::Keep);
        assert_eq!(at(980, 1024), Decision::AtMax);
    }
}
