//! Feeding a copy of a backend's data (a backup stream, a tar of data at
//! rest) into the program that unpacks it for a relocation's target:
//! `mbstream -x` or `tar -x` here, or the same inside a helper container.
//! Shared by the drivers that relocate.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::driver::DriverError;

/// How long a relocation's copy may go without a byte moving, on either
/// side: from its source (see `relocate::stream`) or into the program
/// that unpacks it (see [`feed`]). mariadb-backup is silent while it
/// waits for its locks (a long DDL or transaction on the source holds
/// `BACKUP STAGE` back), so minutes, not seconds.
pub const STALL_LIMIT: Duration = Duration::from_secs(300);

/// The buffer pool dump's file in a datadir (MariaDB's default
/// `innodb_buffer_pool_filename`, which Torpor's backends keep).
pub const BUFFER_POOL_DUMP: &str = "ib_buffer_pool";

/// Runs `command` with `stream` as its input, counting the bytes in
/// `copied` as they pass; returns what the command wrote to its
/// standard output. A command that fails is an error with the end of
/// its error output, and so is one that takes no byte of its input for
/// [`STALL_LIMIT`] (it is killed): without that bound, an unpacker that
/// stopped reading without exiting (a `docker exec` whose engine
/// stopped answering) held the move in its copy for ever.
pub fn feed(
    command: Command,
    stream: &mut dyn Read,
    copied: &AtomicU64,
) -> Result<Vec<u8>, DriverError> {
    feed_within(command, stream, copied, STALL_LIMIT)
}

/// [`feed`], with the stall it allows given.
fn feed_within(
    mut command: Command,
    stream: &mut dyn Read,
    copied: &AtomicU64,
    stall_limit: Duration,
) -> Result<Vec<u8>, DriverError> {
    let failed =
        |what: &str, e: &dyn std::fmt::Display| DriverError::Failed(format!("{what}: {e}"));
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(&format!("starting {program}"), &e))?;
    let input = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("none"))
        .and_then(|pipe| BoundedInput::new(pipe, stall_limit));
    let mut input = match input {
        Ok(input) => input,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(&format!("{program}'s input"), &e));
        }
    };
    // The child's output is read by `wait_with_output` only once the input
    // is done: the commands fed here write little (a few lines), far less
    // than a pipe holds, so they never block on it meanwhile.
    let mut buffer = vec![0u8; 256 * 1024];
    let mut stalled = false;
    let streamed = loop {
        match stream.read(&mut buffer) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if let Err(e) = input.write_all(&buffer[..n]) {
                    // Dead already (a closed pipe), or stalled: waited
                    // for below either way.
                    stalled = e.kind() == std::io::ErrorKind::TimedOut;
                    let _ = child.kill();
                    break Err(failed(&format!("writing into {program}"), &e));
                }
                copied.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(failed("reading the copy", &e)),
        }
    };
    drop(input);
    let done = child
        .wait_with_output()
        .map_err(|e| failed(&format!("waiting for {program}"), &e))?;
    // The stall is the cause; the kill is all its status would say.
    if stalled {
        return streamed.map(|()| done.stdout);
    }
    if !done.status.success() {
        return Err(DriverError::Failed(format!(
            "{program} failed ({}): {}",
            done.status,
            last_lines(&done.stderr)
        )));
    }
    streamed?;
    Ok(done.stdout)
}

/// An unpacker's input, written without blocking: each write waits at
/// most `limit` for the pipe to take a byte, then fails (`TimedOut`).
struct BoundedInput {
    pipe: ChildStdin,
    limit: Duration,
}

impl BoundedInput {
    /// Puts `pipe` (the write end, ours alone) in non-blocking mode.
    fn new(pipe: ChildStdin, limit: Duration) -> std::io::Result<BoundedInput> {
        let fd = pipe.as_raw_fd();
        // SAFETY: fcntl on a descriptor `pipe` owns and keeps open; it
        // reads and sets the file status flags, nothing in our memory.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        // SAFETY: as above.
        if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(BoundedInput { pipe, limit })
    }

    /// Waits until the pipe takes bytes again, at most the limit.
    fn wait_writable(&self) -> std::io::Result<()> {
        wait_ready(self.pipe.as_raw_fd(), libc::POLLOUT, self.limit, || {
            format!("took no bytes for {:?}", self.limit)
        })
    }
}

/// Waits at most `limit` for the pipe `fd` to be ready for `events`
/// (`POLLIN`, `POLLOUT`); then fails with `TimedOut`, in `stalled`'s
/// words. A pipe whose other end closed counts as ready: the read or
/// write that follows tells.
pub(crate) fn wait_ready(
    fd: std::os::fd::RawFd,
    events: libc::c_short,
    limit: Duration,
    stalled: impl FnOnce() -> String,
) -> std::io::Result<()> {
    let mut ready = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let millis = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX);
    loop {
        // SAFETY: one pollfd on this stack frame, for a descriptor the
        // caller keeps open for the call.
        match unsafe { libc::poll(&mut ready, 1, millis) } {
            0 => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, stalled())),
            n if n > 0 => return Ok(()),
            _ => {
                let error = std::io::Error::last_os_error();
                if error.kind() != std::io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
}

impl Write for BoundedInput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            match self.pipe.write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.wait_writable()?,
                written => return written,
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.pipe.flush()
    }
}

/// The last lines of a program's error output, for an error message.
pub fn last_lines(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// The GTID position in a `mariadb_backup_binlog_info` file's text:
/// `<binlog file>\t<offset>\t<GTID position>`. Empty when the source had
/// written no transaction to its binary log yet.
pub fn backup_gtid(info: &str) -> String {
    info.split('\t').nth(2).unwrap_or("").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gtid_is_the_third_field_of_the_binlog_info() {
        assert_eq!(
            backup_gtid("mariadb-bin.000002\t1234\t0-17-42\n"),
            "0-17-42"
        );
        assert_eq!(backup_gtid("mariadb-bin.000001\t329\t\n"), "");
        assert_eq!(backup_gtid(""), "");
    }

    #[test]
    fn feeding_counts_the_bytes_and_returns_the_output() {
        let copied = AtomicU64::new(0);
        let mut input: &[u8] = b"hello\nworld\n";
        let mut count = Command::new("wc");
        count.arg("-l");
        let out = feed(count, &mut input, &copied).expect("wc runs");
        assert_eq!(String::from_utf8_lossy(&out).trim(), "2");
        assert_eq!(copied.load(Ordering::Relaxed), 12);
    }

    #[test]
    fn an_unpacker_that_stops_reading_fails_the_feed_instead_of_holding_it() {
        let copied = AtomicU64::new(0);
        // More than a pipe holds, into a command that never reads it nor
        // exits (for a minute).
        let data = vec![7u8; 4 * 1024 * 1024];
        let mut input: &[u8] = &data;
        let mut stuck = Command::new("sh");
        stuck.arg("-c").arg("exec sleep 60");
        let e = feed_within(stuck, &mut input, &copied, Duration::from_millis(300))
            .expect_err("a stalled unpacker");
        assert!(
            e.to_string()
                .contains("writing into sh: took no bytes for 300ms"),
            "{e}"
        );
        assert!(copied.load(Ordering::Relaxed) < data.len() as u64);
    }

    #[test]
    fn a_slow_unpacker_under_the_limit_takes_the_whole_stream() {
        let copied = AtomicU64::new(0);
        let data = vec![b'x'; 1024 * 1024];
        let mut input: &[u8] = &data;
        let mut slow = Command::new("sh");
        slow.arg("-c").arg("sleep 0.3; wc -c");
        let out = feed_within(slow, &mut input, &copied, Duration::from_secs(20))
            .expect("the whole stream");
        assert_eq!(String::from_utf8_lossy(&out).trim(), "1048576");
        assert_eq!(copied.load(Ordering::Relaxed), 1024 * 1024);
    }

    #[test]
    fn a_failing_command_is_an_error_with_its_words() {
        let copied = AtomicU64::new(0);
        let mut input: &[u8] = b"";
        let mut fail = Command::new("sh");
        fail.arg("-c").arg("echo broken >&2; exit 3");
        let e = feed(fail, &mut input, &copied).expect_err("fails");
        assert!(e.to_string().contains("broken"), "{e}");
    }
}
