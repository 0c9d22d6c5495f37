//! Giving freed memory back to the system after a burst of connections.
//!
//! Torpor runs on glibc's malloc. What a thread frees stays in that
//! thread's arena for reuse; free pages in the middle of an arena go back
//! to the system only when asked (`malloc_trim`). So after 10,000 clients
//! connect and leave, their sessions' memory (tasks, session structs,
//! buffers beyond the pools' bounds) is free but still resident, and RSS
//! stays at its peak. Worker 0's housekeeping looks at the number of live
//! sessions once a second ([`BurstTrim`]) and trims when many closed
//! since the highest count it saw.
//!
//! Why a trim after bursts and not another allocator: glibc's is the one
//! the latency figures were taken on, it needs no new dependency, and a
//! trim costs nothing on the query path. `malloc_trim` walks each arena
//! under that arena's lock (a few milliseconds for hundreds of MiB), so
//! it runs only after a burst, not on a timer.

/// Sessions that must have closed since the highest count seen before
/// the allocator is asked to give memory back.
pub const TRIM_AFTER: usize = 256;

/// Decides when to trim, from the number of live sessions sampled once a
/// second: after [`TRIM_AFTER`] or more closed since the peak. The peak
/// then starts again from the count now.
#[derive(Debug, Default)]
pub struct BurstTrim {
    peak: usize,
}

impl BurstTrim {
    /// Records `live` sessions; `true` when the allocator should give
    /// memory back now.
    pub fn observe(&mut self, live: usize) -> bool {
        if live >= self.peak {
            self.peak = live;
            return false;
        }
        if self.peak - live >= TRIM_AFTER {
            self.peak = live;
            return true;
        }
        false
    }
}

/// Asks the allocator to give free pages back to the system (glibc only;
/// elsewhere nothing).
pub fn give_back_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists,
    // under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_after_a_burst_closes_and_not_while_it_grows() {
        let mut trim = BurstTrim::default();
        // Samples of live sessions, one a second, and whether to trim.
        let samples = [
            (0, false),
            (5_000, false),
            (10_000, false),
            (9_900, false), // a few left: not yet
            (9_700, true),  // 300 closed since the peak
            (9_700, false), // nothing new
            (9_500, false), // 200 since the last trim
            (100, true),    // the burst is gone
            (0, false),     // under TRIM_AFTER since
            (2_000, false), // a new burst
            (2_000 - TRIM_AFTER, true),
        ];
        for (i, (live, want)) in samples.into_iter().enumerate() {
            assert_eq!(trim.observe(live), want, "sample {i}: {live} live");
        }
    }

    #[test]
    fn giving_back_is_harmless_at_any_time() {
        let held: Vec<Vec<u8>> = (0..1000).map(|i| vec![i as u8; 4096]).collect();
        drop(held);
        give_back_free_memory();
    }
}
