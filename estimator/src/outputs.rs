//! What a pipeline gives back: samples or failures in input order, and a report.

use std::fmt;
use std::time::Duration;

use std::sync::Arc;

use bob_pipelines_sample::{DelayedSample, Key, Meta, Sample, SampleSet};
use serde::{Deserialize, Serialize};

/// A sample that failed: its key, the step where it failed and why.
///
/// One pointer wide, so that a slot of a million-sample output costs no more
/// than the sample it stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failed(Box<FailedInner>);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FailedInner {
    key: Key,
    step: String,
    reason: String,
}

impl Failed {
    /// A failure of sample `key` at `step`.
    pub fn new(key: Key, step: impl Into<String>, reason: impl Into<String>) -> Self {
        Failed(Box::new(FailedInner {
            key,
            step: step.into(),
            reason: reason.into(),
        }))
    }

    /// The sample's key.
    pub fn key(&self) -> &Key {
        &self.0.key
    }

    /// The step that failed it (`load` when its data could not be loaded).
    pub fn step(&self) -> &str {
        &self.0.step
    }

    /// Why.
    pub fn reason(&self) -> &str {
        &self.0.reason
    }
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sample {:?} failed at step `{}`: {}",
            self.key(),
            self.step(),
            self.reason()
        )
    }
}

/// One position of a pipeline's output: the sample, or why it failed.
pub type Slot<T> = Result<Sample<T>, Failed>;

/// The name under which samples whose data could not be loaded are reported.
pub const LOAD_STEP: &str = "load";

/// Anything a pipeline accepts as one input sample.
///
/// A [`DelayedSample`] is loaded when the pipeline reaches it; a loader error
/// fails that sample (reported at step [`LOAD_STEP`]), not the run.
pub trait SampleSource<T> {
    /// The sample's key.
    fn key(&self) -> &Key;
    /// The sample, or why it is not available.
    fn into_slot(self) -> Slot<T>;
    /// Only the key and attributes, without loading the datum: what a sample
    /// whose outputs come from checkpoints needs.
    fn into_meta(self) -> Result<Arc<Meta>, Failed>;
}

impl<T> SampleSource<T> for Sample<T> {
    fn key(&self) -> &Key {
        Sample::key(self)
    }
    fn into_slot(self) -> Slot<T> {
        Ok(self)
    }
    fn into_meta(self) -> Result<Arc<Meta>, Failed> {
        Ok(self.into_parts().1)
    }
}

impl<T> SampleSource<T> for Slot<T> {
    fn key(&self) -> &Key {
        match self {
            Ok(s) => s.key(),
            Err(f) => f.key(),
        }
    }
    fn into_slot(self) -> Slot<T> {
        self
    }
    fn into_meta(self) -> Result<Arc<Meta>, Failed> {
        self.map(|s| s.into_parts().1)
    }
}

impl<T> SampleSource<T> for DelayedSample<T> {
    fn key(&self) -> &Key {
        DelayedSample::key(self)
    }
    fn into_slot(self) -> Slot<T> {
        (&self).into_slot()
    }
    fn into_meta(self) -> Result<Arc<Meta>, Failed> {
        Ok(self.meta().clone())
    }
}

impl<T> SampleSource<T> for &DelayedSample<T> {
    fn key(&self) -> &Key {
        DelayedSample::key(self)
    }
    fn into_slot(self) -> Slot<T> {
        self.load()
            .map_err(|e| Failed::new(self.key().clone(), LOAD_STEP, e.to_string()))
    }
    fn into_meta(self) -> Result<Arc<Meta>, Failed> {
        Ok(self.meta().clone())
    }
}

impl<T: Clone> SampleSource<T> for &Sample<T> {
    fn key(&self) -> &Key {
        Sample::key(self)
    }
    fn into_slot(self) -> Slot<T> {
        Ok(self.clone())
    }
    fn into_meta(self) -> Result<Arc<Meta>, Failed> {
        Ok(self.meta().clone())
    }
}

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
    pub fn add(&mut self, counts: crate::step::Counts, time: Duration) {
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
        if self.from_checkpoints > 0 {
            writeln!(
                f,
                "{} samples read from checkpoints ({} recomputed: missing or corrupt files)",
                self.from_checkpoints, self.recomputed
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

/// The outputs of a pipeline run over a list of samples: one [`Slot`] per input,
/// in input order, plus a [`Report`].
///
/// Kept in the partitions they were computed in, so that handing them over
/// never needs a second copy of a million slots.
#[derive(Debug)]
pub struct Outputs<T> {
    pub(crate) parts: Vec<Vec<Slot<T>>>,
    pub(crate) report: Report,
}

impl<T> Outputs<T> {
    /// Outputs made of these partitions.
    pub fn from_parts(parts: Vec<Vec<Slot<T>>>, report: Report) -> Self {
        Outputs { parts, report }
    }

    /// How many slots (= how many inputs).
    pub fn len(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }

    /// Whether there were no inputs.
    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(Vec::is_empty)
    }

    /// Every position, in input order.
    pub fn iter(&self) -> impl Iterator<Item = &Slot<T>> {
        self.parts.iter().flatten()
    }

    /// The samples that made it through, in input order.
    pub fn samples(&self) -> impl Iterator<Item = &Sample<T>> {
        self.iter().filter_map(|s| s.as_ref().ok())
    }

    /// The samples that failed, in input order.
    pub fn failed(&self) -> impl Iterator<Item = &Failed> {
        self.iter().filter_map(|s| s.as_ref().err())
    }

    /// What the run did.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The partitions, in input order.
    pub fn into_parts(self) -> Vec<Vec<Slot<T>>> {
        self.parts
    }

    /// Every position, in input order.
    pub fn into_slots(self) -> Vec<Slot<T>> {
        self.parts.into_iter().flatten().collect()
    }

    /// The samples that made it through, in input order (failures dropped).
    pub fn into_samples(self) -> Vec<Sample<T>> {
        self.parts
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .collect()
    }
}

impl<T> IntoIterator for Outputs<T> {
    type Item = Slot<T>;
    type IntoIter = std::iter::Flatten<std::vec::IntoIter<Vec<Slot<T>>>>;
    fn into_iter(self) -> Self::IntoIter {
        self.parts.into_iter().flatten()
    }
}

/// The outputs of a pipeline run over sample sets: every set with its key and
/// attributes, holding the outputs of its samples that did not fail.
#[derive(Debug)]
pub struct SetOutputs<T> {
    pub(crate) sets: Vec<SampleSet<T>>,
    pub(crate) failed: Vec<Failed>,
    pub(crate) report: Report,
}

impl<T> SetOutputs<T> {
    /// The sets, in input order.
    pub fn sets(&self) -> &[SampleSet<T>] {
        &self.sets
    }

    /// Samples that failed, from all sets.
    pub fn failed(&self) -> &[Failed] {
        &self.failed
    }

    /// What the run did.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The sets.
    pub fn into_sets(self) -> Vec<SampleSet<T>> {
        self.sets
    }
}
