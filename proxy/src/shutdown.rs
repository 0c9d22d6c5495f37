//! Graceful shutdown: one trigger (SIGTERM, SIGINT, or a handle) that every
//! worker and session can wait on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use event_listener::Event;

/// Shared by the signal thread, the workers and their sessions.
#[derive(Debug, Default)]
pub struct Shutdown {
    stopping: AtomicBool,
    event: Event,
}

impl Shutdown {
    /// A new, untriggered shutdown.
    pub fn new() -> Arc<Shutdown> {
        Arc::new(Shutdown::default())
    }

    /// Starts the shutdown; idempotent.
    pub fn trigger(&self) {
        if !self.stopping.swap(true, Ordering::SeqCst) {
            self.event.notify(usize::MAX);
        }
    }

    /// Whether the shutdown has started.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Completes once the shutdown has started.
    pub async fn wait(&self) {
        loop {
            if self.is_stopping() {
                return;
            }
            let listener = self.event.listen();
            // Checked again after registering, so a trigger between the
            // first check and listen() is not missed.
            if self.is_stopping() {
                return;
            }
            listener.await;
        }
    }

    /// Catches SIGTERM and SIGINT from now on (they no longer kill the
    /// process); [`Shutdown::install_signal_handlers`] acts on them,
    /// including those that came in between. Called before anything
    /// listens, so that a signal during start-up stops Torpor cleanly.
    pub fn catch_stop_signals() -> std::io::Result<signal_hook::iterator::Signals> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
    }

    /// Triggers the shutdown on the signals `signals` caught (SIGTERM or
    /// SIGINT, [`Shutdown::catch_stop_signals`]), from a thread of its own.
    /// A second signal while stopping exits at once.
    pub fn install_signal_handlers(
        self: &Arc<Self>,
        mut signals: signal_hook::iterator::Signals,
    ) -> std::io::Result<()> {
        let shutdown = Arc::clone(self);
        std::thread::Builder::new()
            .name("torpor-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    if shutdown.is_stopping() {
                        tracing::warn!(signal, "second signal while stopping: exiting now");
                        // Log lines are written by a thread of their own
                        // (crate::logging): a moment for this one to go
                        // out, since exit skips main's flush.
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        std::process::exit(130);
                    }
                    tracing::info!(signal, "signal received: stopping");
                    shutdown.trigger();
                }
            })?;
        Ok(())
    }
}
