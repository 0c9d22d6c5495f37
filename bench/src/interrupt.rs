//! Ctrl-C and SIGTERM: the first one asks the suite to stop (measurements
//! end early, the report covers what was done, spawned processes are
//! stopped on the way out); a second one exits at once.
//!
//! Spawned children die with us even then: they are started with
//! `PR_SET_PDEATHSIG`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use signal_hook::consts::{SIGINT, SIGTERM};

/// A shared "please stop" flag, set by a signal.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Registers SIGINT and SIGTERM handlers that set the flag; when it is
    /// already set, the signal terminates the process instead.
    pub fn install() -> anyhow::Result<Stop> {
        let stop = Stop::default();
        for signal in [SIGINT, SIGTERM] {
            // Order matters: the conditional shutdown sees the flag as it
            // was before this signal, so only a second signal exits.
            signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&stop.0))
                .context("installing the signal handler")?;
            signal_hook::flag::register(signal, Arc::clone(&stop.0))
                .context("installing the signal handler")?;
        }
        Ok(stop)
    }

    /// Whether a stop was asked for.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
