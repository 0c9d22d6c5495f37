//! Log output through `tracing`: human-readable or JSON lines on stderr.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

mod batch;
mod plain;
pub use batch::{flush_this_thread, BatchThisThread, Batched};
pub use plain::{PlainFields, PlainLine};

/// Installs the global subscriber. `RUST_LOG`, when set, wins over
/// `filter`. Text is coloured only when stderr is a terminal; a file or a
/// pipe gets plain text, without escape codes, formatted by [`PlainLine`]
/// (the same line for a fraction of the cost). Calling it twice is
/// harmless (the second call does nothing).
///
/// Lines are formatted where they are logged and written to stderr by a
/// thread of their own (`tracing_appender::non_blocking`, which blocks
/// the logger only when 128 000 lines wait, and drops none): a worker
/// never waits on a slow reader of stderr (a full pipe to a log
/// collector would stall every session on it), nor spends a system call
/// on each connection's lines: a worker hands its quiet lines over a
/// batch at a time (see [`Batched`]). The returned guard writes out what waits
/// when it is dropped: hold it until the process ends.
#[must_use = "lines still waiting are lost unless the guard lives until the end"]
pub fn init(format: LogFormat, filter: &str) -> tracing_appender::non_blocking::WorkerGuard {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("torpor-log")
        .finish(std::io::stderr());
    let terminal = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal)
        .with_writer(Batched::new(writer));
    let _ = match format {
        LogFormat::Text if terminal => builder.try_init(),
        LogFormat::Text => builder
            .event_format(PlainLine)
            .fmt_fields(PlainFields)
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    guard
}

/// A log destination the tests read back.
#[cfg(test)]
mod captured {
    use std::sync::{Arc, Mutex};

    /// Lines written, shared with whoever writes them.
    #[derive(Clone, Default)]
    pub struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        /// What was written so far.
        pub fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
