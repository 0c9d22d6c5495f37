//! A worker's log lines, handed to the log thread a batch at a time.
//!
//! Every client connection logs two lines (logged in, closed). Handed over
//! one by one, each line woke the log thread (a futex wake from the worker,
//! a context switch on a 2-core machine where the clients and the server
//! also want the CPUs) and cost a `write` of its own: at 450 logins a
//! second the log thread took 16 % of Torpor's CPU. A worker that batches
//! ([`BatchThisThread`]) keeps its `INFO` and quieter lines until its tick
//! hands them over ([`flush_this_thread`], once a second), until 64 KiB
//! wait, or until it logs a warning or an error, which goes out at once
//! with what came before it (so a line never overtakes an earlier one of
//! its thread). Other threads hand each line over as it comes.
//!
//! Nothing here blocks a worker: the hand-over is a send on the log
//! thread's channel, as before.

use std::cell::RefCell;
use std::io::{self, Write};

use tracing::{Level, Metadata};
use tracing_appender::non_blocking::NonBlocking;
use tracing_subscriber::fmt::MakeWriter;

/// Bytes a worker keeps before it hands them over without waiting for
/// its tick.
const HAND_OVER_BYTES: usize = 64 * 1024;

thread_local! {
    /// This thread's waiting lines and where they go; `None` on a thread
    /// that does not batch.
    static WAITING: RefCell<Option<Waiting>> = const { RefCell::new(None) };
}

/// A batching thread's lines not handed over yet.
struct Waiting {
    lines: Vec<u8>,
    /// The log thread's channel, known from the first line.
    to: Option<NonBlocking>,
}

impl Waiting {
    fn hand_over(&mut self) {
        if self.lines.is_empty() {
            return;
        }
        if let Some(to) = self.to.as_mut() {
            // One message however many lines; the channel copies them.
            let _ = to.write_all(&self.lines);
        }
        self.lines.clear();
    }
}

/// Makes the current thread batch its quiet lines until dropped (when
/// what waits is handed over, also while a panic unwinds).
#[must_use = "the thread batches only while this lives"]
pub struct BatchThisThread(());

impl BatchThisThread {
    /// Starts batching on this thread.
    pub fn start() -> BatchThisThread {
        WAITING.with(|waiting| {
            *waiting.borrow_mut() = Some(Waiting {
                lines: Vec::new(),
                to: None,
            });
        });
        BatchThisThread(())
    }
}

impl Drop for BatchThisThread {
    fn drop(&mut self) {
        let _ = WAITING.try_with(|waiting| {
            if let Some(mut waiting) = waiting.borrow_mut().take() {
                waiting.hand_over();
            }
        });
    }
}

/// Hands this thread's waiting lines to the log thread (nothing on a
/// thread that does not batch).
pub fn flush_this_thread() {
    let _ = WAITING.try_with(|waiting| {
        if let Some(waiting) = waiting.borrow_mut().as_mut() {
            waiting.hand_over();
        }
    });
}

/// The subscriber's writer: a line of a batching thread waits with the
/// others of its thread; any other goes to the log thread at once.
#[derive(Clone)]
pub struct Batched {
    to: NonBlocking,
}

impl Batched {
    /// Lines to `to`.
    pub fn new(to: NonBlocking) -> Batched {
        Batched { to }
    }
}

/// One line's writer (see [`Batched`]).
pub struct LineWriter<'a> {
    to: &'a NonBlocking,
    /// A warning or an error: handed over at once, with what waits.
    urgent: bool,
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            to: &self.to,
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter<'a> {
        LineWriter {
            to: &self.to,
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let kept = WAITING.try_with(|waiting| {
            let mut waiting = waiting.borrow_mut();
            let Some(waiting) = waiting.as_mut() else {
                return false;
            };
            if waiting.to.is_none() {
                waiting.to = Some(self.to.clone());
            }
            waiting.lines.extend_from_slice(line);
            if self.urgent || waiting.lines.len() >= HAND_OVER_BYTES {
                waiting.hand_over();
            }
            true
        });
        if kept != Ok(true) {
            let mut to = self.to.clone();
            to.write_all(line)?;
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::captured::Captured;

    /// Waits (at most 5 s) until the log thread wrote `expected`.
    fn settles_at(captured: &Captured, expected: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let text = captured.text();
            if text == expected || std::time::Instant::now() > deadline {
                assert_eq!(text, expected);
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn a_batching_thread_hands_its_lines_over_at_its_tick_a_warning_or_its_end() {
        let captured = Captured::default();
        let (to, _guard) = tracing_appender::non_blocking(captured.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_level(false)
            .with_writer(Batched::new(to))
            .finish();
        // Each test runs on a thread of its own: batching ends with it.
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("not batched");
            settles_at(&captured, "not batched\n");
            let batching = BatchThisThread::start();
            tracing::info!("one");
            tracing::info!("two");
            std::thread::sleep(std::time::Duration::from_millis(50));
            settles_at(&captured, "not batched\n");
            flush_this_thread();
            settles_at(&captured, "not batched\none\ntwo\n");
            tracing::info!("three");
            tracing::warn!("four");
            settles_at(&captured, "not batched\none\ntwo\nthree\nfour\n");
            tracing::info!("five");
            drop(batching);
            settles_at(&captured, "not batched\none\ntwo\nthree\nfour\nfive\n");
        });
    }
}
