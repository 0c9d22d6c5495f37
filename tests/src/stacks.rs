//! Every thread's stack of this test process, printed before a test fails
//! on a call into the in-process Torpor that never answered: a hang seen
//! once in CI is otherwise a timeout with no place to look.

use std::process::Command;

/// Prints (into the test's captured output) every thread's backtrace,
/// read by attaching gdb to this process; a note instead when gdb is
/// missing or cannot attach. `why` says what hung.
pub fn print_all_threads(why: &str) {
    eprintln!("---- {why}: every thread's stack ----");
    let pid = std::process::id().to_string();
    // `timeout`: a gdb that cannot finish must not hang the test instead.
    let output = Command::new("timeout")
        .args(["120", "gdb", "-nx", "-batch", "-p", &pid])
        .args(["-ex", "set pagination off", "-ex", "thread apply all bt"])
        .output();
    match output {
        Ok(output) if output.status.success() => {
            eprintln!("{}", String::from_utf8_lossy(&output.stdout));
        }
        Ok(output) => eprintln!(
            "gdb could not read the stacks ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(e) => eprintln!("gdb did not run: {e}"),
    }
}
