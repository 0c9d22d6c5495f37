//! A relocation's streams: a command's standard output (mariadb-backup's
//! stream, a parked datadir's export, the hot pages' list) given to
//! whatever takes it in, with the command's own failure reported, and a
//! bound on how long the stream may go silent.
//!
//! Without the bound, a source that stops writing without exiting (a
//! `docker exec` whose engine stopped answering) held the move in its
//! copy for ever, and the service with it: the move neither ended nor
//! failed.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::{ChildStdout, Command, Stdio};
use std::time::Duration;

use crate::scaler::feed::{last_lines, wait_ready, STALL_LIMIT};

/// Runs `source` (named `what` in errors) and gives its standard output
/// to `take`; fails when either does, the source with the last lines of
/// what it said, or when the output stays silent for [`STALL_LIMIT`].
pub(super) fn pipe<T>(
    source: &mut Command,
    what: &str,
    take: impl FnOnce(&mut dyn Read) -> Result<T, String>,
) -> Result<T, String> {
    pipe_within(source, what, STALL_LIMIT, take)
}

/// [`pipe`], with the silence it allows given.
fn pipe_within<T>(
    source: &mut Command,
    what: &str,
    stall_limit: Duration,
    take: impl FnOnce(&mut dyn Read) -> Result<T, String>,
) -> Result<T, String> {
    let log = tempfile::tempfile().map_err(|e| format!("a file for {what}'s log: {e}"))?;
    let mut log_reader = log
        .try_clone()
        .map_err(|e| format!("a file for {what}'s log: {e}"))?;
    let mut child = source
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| format!("starting {what}: {e}"))?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        return Err(format!("{what} has no output"));
    };
    let mut stream = Watched {
        inner: stdout,
        limit: stall_limit,
        what,
    };
    let taken = take(&mut stream);
    drop(stream);
    if let Err(why) = taken {
        // The taker's failure is the cause; the source then dies of the
        // closed pipe (SIGPIPE), which says nothing, or of the kill when
        // it had stalled.
        let _ = child.kill();
        let _ = child.wait();
        return Err(why);
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {what}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "{what} failed ({status}): {}",
            tail(&mut log_reader)
        ));
    }
    taken
}

/// A command's output whose every read waits at most `limit` for a
/// byte, then fails with `TimedOut`.
struct Watched<'a> {
    inner: ChildStdout,
    limit: Duration,
    what: &'a str,
}

impl Read for Watched<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        wait_ready(self.inner.as_raw_fd(), libc::POLLIN, self.limit, || {
            format!("no bytes from {} for {:?}", self.what, self.limit)
        })?;
        self.inner.read(buf)
    }
}

/// The last lines of a log file, for an error message.
fn tail(file: &mut std::fs::File) -> String {
    use std::io::Seek;
    let mut text = Vec::new();
    let _ = file.seek(std::io::SeekFrom::Start(0));
    let _ = file.read_to_end(&mut text);
    last_lines(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(stream: &mut dyn Read) -> Result<Vec<u8>, String> {
        let mut all = Vec::new();
        stream
            .read_to_end(&mut all)
            .map(|_| all)
            .map_err(|e| format!("reading: {e}"))
    }

    #[test]
    fn a_source_that_goes_silent_fails_the_stream_instead_of_holding_it() {
        let mut source = Command::new("sh");
        // Writes, then neither writes nor exits.
        source.args(["-c", "echo first; exec sleep 60"]);
        let why = pipe_within(
            &mut source,
            "the source",
            Duration::from_millis(300),
            read_all,
        )
        .expect_err("a silent source");
        assert!(why.contains("no bytes from the source"), "{why}");
    }

    #[test]
    fn pauses_under_the_limit_and_the_end_of_the_stream_are_read_through() {
        let mut source = Command::new("sh");
        source.args(["-c", "echo a; sleep 0.2; echo b"]);
        let read = pipe_within(&mut source, "the source", Duration::from_secs(20), read_all);
        assert_eq!(read.as_deref(), Ok(&b"a\nb\n"[..]));
    }

    #[test]
    fn a_source_that_fails_says_why() {
        let mut source = Command::new("sh");
        source.args(["-c", "echo partial; echo 'it broke' >&2; exit 3"]);
        let why = pipe(&mut source, "the source", read_all).expect_err("exit 3");
        assert!(
            why.contains("the source failed") && why.contains("it broke"),
            "{why}"
        );
    }
}
