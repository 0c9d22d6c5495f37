//! The interleaved rounds: in each round every selected workload runs once
//! on every target, in target order (A B C, A B C, …), so slow drifts of a
//! shared machine (a neighbour's build, thermal throttling) spread over
//! all targets instead of landing on one.
//!
//! `idle-connections` is the exception: it runs once, before the tables
//! are prepared (see `WorkloadKind::once_before_setup`).
//!
//! A target that fails a workload is reported with its error and skipped
//! for that workload's later rounds; the rest of the run goes on. A run
//! cut short by Ctrl-C is discarded, never recorded as a short sample.

use crate::cli::Settings;
use crate::interrupt::Stop;
use crate::progress::Progress;
use crate::targets::Target;
use crate::workloads::{self, Ctx, Outcome, Sample, WorkloadKind};

/// What happened to one workload on one target.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Status {
    /// Measured (or not yet run).
    #[default]
    Measured,
    /// Cannot be measured there; why.
    NotAvailable(String),
    /// Failed; the error.
    Failed(String),
}

/// One workload on one target, over the rounds.
#[derive(Debug, Clone, Default)]
pub struct TargetRecord {
    /// One sample per completed round.
    pub samples: Vec<Sample>,
    /// How it went.
    pub status: Status,
}

/// One workload on every target (in target order).
#[derive(Debug, Clone)]
pub struct WorkloadRecord {
    /// The workload.
    pub kind: WorkloadKind,
    /// Per target, in target order.
    pub targets: Vec<TargetRecord>,
}

/// Says why a target's process is gone, if it is (see
/// [`crate::targets::spawn::Spawned::exit_report`]).
pub type Watch<'a> = &'a mut dyn FnMut(&Target) -> Option<String>;

/// Runs every round; returns what was measured.
pub fn run(
    settings: &Settings,
    targets: &[Target],
    stop: &Stop,
    progress: &mut Progress,
    watch: Watch<'_>,
) -> anyhow::Result<Vec<WorkloadRecord>> {
    let clock = quanta::Clock::new();
    let ctx = Ctx {
        settings,
        stop,
        clock: &clock,
        backend: workloads::backend(targets),
    };
    let mut runner = Runner {
        ctx: &ctx,
        targets,
        progress,
        watch,
        gone: vec![None; targets.len()],
    };
    let mut records: Vec<WorkloadRecord> = settings
        .workloads
        .iter()
        .map(|&kind| WorkloadRecord {
            kind,
            targets: vec![TargetRecord::default(); targets.len()],
        })
        .collect();
    let (once, repeated) = (
        |r: &WorkloadRecord| r.kind.once_before_setup(),
        |r: &WorkloadRecord| !r.kind.once_before_setup(),
    );
    let steps = records.iter().filter(|r| once(r)).count()
        + records.iter().filter(|r| repeated(r)).count() * settings.rounds as usize;
    runner.progress.set_total(steps * targets.len());
    // Memory figures first, on processes nothing has exercised yet.
    for record in records.iter_mut().filter(|r| once(r)) {
        if runner.run_on_targets(record, 1) == Flow::Stop {
            return Ok(records);
        }
    }
    let baseline = targets
        .first()
        .ok_or_else(|| anyhow::anyhow!("no targets"))?;
    if workloads::needs_preparing(baseline, &settings.workloads) {
        runner
            .progress
            .message(&format!("preparing tables through {} …", baseline.name));
        workloads::prepare(&ctx, baseline, &settings.workloads)?;
    }
    'rounds: for round in 1..=settings.rounds {
        for record in records.iter_mut().filter(|r| repeated(r)) {
            if runner.run_on_targets(record, round) == Flow::Stop {
                break 'rounds;
            }
        }
    }
    Ok(records)
}

/// Whether to go on after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// The state the rounds share.
struct Runner<'a, 'w> {
    ctx: &'a Ctx<'a>,
    targets: &'a [Target],
    progress: &'a mut Progress,
    watch: Watch<'w>,
    /// Per target: why its process is gone, once noticed.
    gone: Vec<Option<String>>,
}

impl Runner<'_, '_> {
    /// Runs one round of `record`'s workload on every target, in order.
    fn run_on_targets(&mut self, record: &mut WorkloadRecord, round: u32) -> Flow {
        let ctx = self.ctx;
        for (i, (target, slot)) in self.targets.iter().zip(&mut record.targets).enumerate() {
            if ctx.stop.is_set() {
                return Flow::Stop;
            }
            if slot.status == Status::Measured && self.gone[i].is_none() {
                if let Some(reason) = (self.watch)(target) {
                    self.progress.message(&format!("{}: {reason}", target.name));
                    self.gone[i] = Some(reason);
                }
            }
            if let (Status::Measured, Some(reason)) = (&slot.status, &self.gone[i]) {
                slot.status = Status::Failed(reason.clone());
            }
            if slot.status != Status::Measured {
                // Not available or failed: nothing to run, nothing to show.
                self.progress.skip();
                continue;
            }
            self.progress.step(format!(
                "round {round}/{} · {} · {}",
                ctx.settings.rounds,
                record.kind.name(),
                target.name
            ));
            match workloads::run(record.kind, ctx, target) {
                Ok(Outcome::Measured(sample)) => {
                    if !ctx.stop.is_set() {
                        slot.samples.push(sample);
                    }
                }
                Ok(Outcome::NotAvailable(reason)) => slot.status = Status::NotAvailable(reason),
                Err(_) if ctx.stop.is_set() => return Flow::Stop,
                Err(error) => {
                    // A process that died explains the error better.
                    let text = match (self.watch)(target) {
                        Some(reason) => {
                            self.gone[i] = Some(reason.clone());
                            reason
                        }
                        None => format!("{error:#}"),
                    };
                    self.progress.message(&format!(
                        "{} failed on {}: {text} (skipped in later rounds)",
                        record.kind.name(),
                        target.name
                    ));
                    slot.status = Status::Failed(text);
                }
            }
        }
        Flow::Continue
    }
}
