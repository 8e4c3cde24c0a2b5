//! What a pipeline gives back: samples or failures in input order, and a report.

use std::sync::Arc;

use bob_pipelines_graph::{Failed, Report, Slot};
use bob_pipelines_sample::{DelayedSample, Key, Meta, Sample, SampleSet};

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
    /// The key and attributes, keeping the sample: what rebuilding a lost
    /// partition from its checkpoint files needs (the sample may still be
    /// asked for).
    fn meta(&self) -> Result<Arc<Meta>, Failed>;
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
    fn meta(&self) -> Result<Arc<Meta>, Failed> {
        Ok(Sample::meta(self).clone())
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
    fn meta(&self) -> Result<Arc<Meta>, Failed> {
        match self {
            Ok(s) => Ok(s.meta().clone()),
            Err(f) => Err(f.clone()),
        }
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
    fn meta(&self) -> Result<Arc<Meta>, Failed> {
        Ok(DelayedSample::meta(self).clone())
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
    fn meta(&self) -> Result<Arc<Meta>, Failed> {
        Ok(DelayedSample::meta(self).clone())
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
    fn meta(&self) -> Result<Arc<Meta>, Failed> {
        Ok(Sample::meta(self).clone())
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
