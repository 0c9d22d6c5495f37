//! The status line on stderr: which round, workload and target runs, for
//! how long, and how far the whole run is. On a terminal it is one line
//! redrawn in place by a small thread; otherwise one line per step, so
//! logs stay readable.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cli::ProgressMode;

/// How often the live line is redrawn.
const REDRAW: Duration = Duration::from_millis(200);

#[derive(Debug)]
struct State {
    started: Instant,
    step: Option<(String, Instant)>,
    done: usize,
    total: usize,
    finished: bool,
    /// Whether a live line is on screen, to blank it before a message.
    drawn: bool,
}

/// The live status line (or its line-per-step fallback).
#[derive(Debug)]
pub struct Progress {
    mode: ProgressMode,
    state: Arc<Mutex<State>>,
    redraw: Option<JoinHandle<()>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while drawing must not silence the rest of the run.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Progress {
    /// Starts the display; `Auto` picks a live line when stderr is a
    /// terminal.
    pub fn new(mode: ProgressMode) -> Progress {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Live,
            ProgressMode::Auto => ProgressMode::Lines,
            other => other,
        };
        let state = Arc::new(Mutex::new(State {
            started: Instant::now(),
            step: None,
            done: 0,
            total: 0,
            finished: false,
            drawn: false,
        }));
        let redraw = (mode == ProgressMode::Live).then(|| {
            let state = Arc::clone(&state);
            std::thread::spawn(move || loop {
                std::thread::sleep(REDRAW);
                let mut state = lock(&state);
                if state.finished {
                    break;
                }
                draw(&mut state);
            })
        });
        Progress {
            mode,
            state,
            redraw,
        }
    }

    /// Sets how many steps the run has, for the "n/m" figure.
    pub fn set_total(&mut self, total: usize) {
        lock(&self.state).total = total;
    }

    /// A new step begins (`label` says what runs).
    pub fn step(&mut self, label: String) {
        let mut state = lock(&self.state);
        state.done += usize::from(state.step.is_some());
        if self.mode == ProgressMode::Lines {
            let position = format!("[{}/{}]", state.done + 1, state.total);
            eprintln!("{position} {label}");
        }
        state.step = Some((label, Instant::now()));
        if self.mode == ProgressMode::Live {
            draw(&mut state);
        }
    }

    /// A step that has nothing to run (counted, not shown).
    pub fn skip(&mut self) {
        let mut state = lock(&self.state);
        state.done += 1;
    }

    /// A line of its own (a note, a warning), above the live line.
    pub fn message(&mut self, text: &str) {
        if self.mode == ProgressMode::Off {
            return;
        }
        let mut state = lock(&self.state);
        clear(&mut state);
        eprintln!("{text}");
        if self.mode == ProgressMode::Live {
            draw(&mut state);
        }
    }

    /// Ends the display and blanks the live line.
    pub fn finish(&mut self) {
        {
            let mut state = lock(&self.state);
            state.finished = true;
            clear(&mut state);
        }
        if let Some(handle) = self.redraw.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

fn draw(state: &mut State) {
    if state.finished {
        return;
    }
    let Some((label, since)) = &state.step else {
        return;
    };
    let line = format!(
        "[{}/{}] {label} {:.1}s · total {}",
        state.done + 1,
        state.total,
        since.elapsed().as_secs_f64(),
        clock(state.started.elapsed()),
    );
    let mut err = std::io::stderr().lock();
    // \r plus "erase line" keeps the line in place whatever its length.
    let _ = write!(err, "\r\x1b[2K{line}");
    let _ = err.flush();
    state.drawn = true;
}

fn clear(state: &mut State) {
    if state.drawn {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
        state.drawn = false;
    }
}

/// `m:ss` for the elapsed total.
fn clock(elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    format!("{}:{:02}", secs / 60, secs % 60)
}
