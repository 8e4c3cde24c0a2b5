//! What a run did: per step, and as a whole.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What one step did in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// The step's name.
    pub name: String,
    /// Whether the step was fitted in this run.
    pub fitted: bool,
    /// Time spent fitting.
    pub fit_time: Duration,
    /// Time spent transforming.
    pub transform_time: Duration,
    /// Samples the step transformed (valid samples that reached it).
    pub samples: usize,
    /// Samples that failed at this step.
    pub failed: usize,
    /// Where its tasks ran, on executors with workers elsewhere (empty
    /// otherwise): one entry per worker and operation.
    #[serde(default)]
    pub ran_on: Vec<RanOn>,
}

/// Tasks of a step that one worker ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RanOn {
    /// The worker's name: its job id (`1234`, or `1234.2` for a job array's task).
    pub worker: String,
    /// The kind of worker (for SGE, the queue spec and its queue).
    pub kind: String,
    /// Whether these were the step's fit (else transforms).
    pub fit: bool,
    /// How many tasks.
    pub tasks: usize,
}

impl StepReport {
    /// Counts a task that `worker`, of kind `kind`, ran.
    pub fn ran(&mut self, worker: &str, kind: &str, fit: bool) {
        match self
            .ran_on
            .iter_mut()
            .find(|r| r.worker == worker && r.fit == fit)
        {
            Some(r) => r.tasks += 1,
            None => self.ran_on.push(RanOn {
                worker: worker.to_owned(),
                kind: kind.to_owned(),
                fit,
                tasks: 1,
            }),
        }
    }

    /// Adds one transform task's counts and time.
    pub fn add(&mut self, counts: crate::Counts, time: Duration) {
        self.samples += counts.samples;
        self.failed += counts.failed;
        self.transform_time += time;
    }
}

/// What a run did, step by step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// One entry per step, in pipeline order.
    pub steps: Vec<StepReport>,
    /// Samples whose data could not be loaded.
    pub load_failed: usize,
    /// Samples whose outputs were read from checkpoints instead of computed.
    pub from_checkpoints: usize,
    /// Samples recomputed because their checkpoint file was missing or corrupt.
    pub recomputed: usize,
    /// Samples that failed in an earlier run and were not tried again (their
    /// failure markers were read; see `Checkpoints::retry_failed`).
    #[serde(default)]
    pub known_failed: usize,
    /// Bytes that came into the driver from its workers' sockets (after
    /// their handshakes); 0 on executors without workers.
    #[serde(default)]
    pub driver_bytes_in: u64,
    /// Bytes that went out of the driver to its workers' sockets.
    #[serde(default)]
    pub driver_bytes_out: u64,
    /// Things the user should know that did not stop the run.
    pub warnings: Vec<String>,
    /// Wall time of the whole run.
    pub total: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<24} {:>10} {:>8} {:>10} {:>12}",
            "step", "samples", "failed", "fit", "transform"
        )?;
        for s in &self.steps {
            let fit = if s.fitted {
                format!("{:.3?}", s.fit_time)
            } else {
                "-".to_owned()
            };
            writeln!(
                f,
                "{:<24} {:>10} {:>8} {:>10} {:>12}",
                s.name,
                s.samples,
                s.failed,
                fit,
                format!("{:.3?}", s.transform_time)
            )?;
        }
        for s in self.steps.iter().filter(|s| !s.ran_on.is_empty()) {
            write!(f, "{} ran on:", s.name)?;
            for (i, r) in s.ran_on.iter().enumerate() {
                let sep = if i == 0 { " " } else { "; " };
                let what = if r.fit {
                    "fit".to_owned()
                } else {
                    format!("{} transform(s)", r.tasks)
                };
                write!(f, "{sep}{what} on `{}` [{}]", r.worker, r.kind)?;
            }
            writeln!(f)?;
        }
        if self.driver_bytes_in + self.driver_bytes_out > 0 {
            writeln!(
                f,
                "the driver's sockets to workers: {} bytes in, {} out",
                self.driver_bytes_in, self.driver_bytes_out
            )?;
        }
        if self.from_checkpoints > 0 {
            writeln!(
                f,
                "{} samples read from checkpoints ({} recomputed: missing or corrupt files)",
                self.from_checkpoints, self.recomputed
            )?;
        }
        if self.known_failed > 0 {
            writeln!(
                f,
                "{} samples failed in an earlier run and were not tried again: \
                 Checkpoints::retry_failed(true), or `bob-pipelines checkpoint clean --failed \
                 <features>`, tries them again",
                self.known_failed
            )?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        if self.load_failed > 0 {
            writeln!(f, "{} samples could not be loaded", self.load_failed)?;
        }
        write!(f, "total {:.3?}", self.total)
    }
}
