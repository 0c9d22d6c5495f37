//! Feeding a copy of a backend's data (a backup stream, a tar of data at
//! rest) into the program that unpacks it for a relocation's target:
//! `mbstream -x` or `tar -x` here, or the same inside a helper container.
//! Shared by the drivers that relocate.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use super::driver::DriverError;

/// The buffer pool dump's file in a datadir (MariaDB's default
/// `innodb_buffer_pool_filename`, which Torpor's backends keep).
pub const BUFFER_POOL_DUMP: &str = "ib_buffer_pool";

/// Runs `command` with `stream` as its input, counting the bytes in
/// `copied` as they pass; returns what the command wrote to its
/// standard output. A command that fails is an error with the end of
/// its error output.
pub fn feed(
    mut command: Command,
    stream: &mut dyn Read,
    copied: &AtomicU64,
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
    let mut input = child
        .stdin
        .take()
        .ok_or_else(|| DriverError::Failed(format!("{program} has no input")))?;
    // The child's output is read by `wait_with_output` only once the input
    // is done: the commands fed here write little (a few lines), far less
    // than a pipe holds, so they never block on it meanwhile.
    let mut buffer = vec![0u8; 256 * 1024];
    let streamed = loop {
        match stream.read(&mut buffer) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if let Err(e) = input.write_all(&buffer[..n]) {
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
    fn a_failing_command_is_an_error_with_its_words() {
        let copied = AtomicU64::new(0);
        let mut input: &[u8] = b"";
        let mut fail = Command::new("sh");
        fail.arg("-c").arg("echo broken >&2; exit 3");
        let e = feed(fail, &mut input, &copied).expect_err("fails");
        assert!(e.to_string().contains("broken"), "{e}");
    }
}
