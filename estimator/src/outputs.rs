//! What a pipeline gives back: samples or failures in input order, and a report.

use std::sync::{Arc, OnceLock};

use bob_pipelines_graph::{self as graph, AnyPartition, Failed, Report, SavedPartition, Slot};
use bob_pipelines_sample::{DelayedSample, Key, Meta, Sample, SampleSet};

use crate::pipeline::Layout;

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
/// never needs a second copy of a million slots. A distributed run whose
/// last step saves checkpoints can leave its outputs in their files
/// (`Distributed::outputs_from_checkpoints`): a partition is then read
/// (large files memory-mapped) the first time it is looked at, and
/// [`into_iter`](IntoIterator::into_iter) reads one partition at a time, so
/// outputs larger than memory can be walked through. A sample whose file
/// went missing since the run is a failure that says so.
#[derive(Debug)]
pub struct Outputs<T> {
    parts: Vec<Part<T>>,
    pub(crate) report: Report,
    /// The outputs of the lists transformed beside this one, by name.
    pub(crate) lists: Vec<(String, Outputs<T>)>,
    /// For a list of sample sets: each set and how many samples are its.
    pub(crate) layout: Option<Layout>,
}

/// One partition of outputs: here, or still in its checkpoint files.
enum Part<T> {
    Here(Vec<Slot<T>>),
    Saved {
        saved: SavedPartition,
        read: OnceLock<Vec<Slot<T>>>,
        /// [`read_saved`] for `T` (made where `T: 'static` is known).
        reader: fn(&SavedPartition) -> Vec<Slot<T>>,
    },
}

impl<T> std::fmt::Debug for Part<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Part::Here(slots) => write!(f, "{} samples", slots.len()),
            Part::Saved { saved, .. } => saved.fmt(f),
        }
    }
}

impl<T> Part<T> {
    fn len(&self) -> usize {
        match self {
            Part::Here(slots) => slots.len(),
            Part::Saved { saved, .. } => saved.len(),
        }
    }

    fn slots(&self) -> &[Slot<T>] {
        match self {
            Part::Here(slots) => slots,
            Part::Saved {
                saved,
                read,
                reader,
            } => read.get_or_init(|| reader(saved)),
        }
    }

    fn into_slots(self) -> Vec<Slot<T>> {
        match self {
            Part::Here(slots) => slots,
            Part::Saved {
                saved,
                read,
                reader,
            } => read.into_inner().unwrap_or_else(|| reader(&saved)),
        }
    }
}

/// A partition's outputs read from their files; when the folder cannot be
/// read at all, each sample is a failure that says why.
fn read_saved<T: 'static>(saved: &SavedPartition) -> Vec<Slot<T>> {
    let why = match saved.read().map(|p| p.downcast::<Vec<Slot<T>>>()) {
        Ok(Ok(slots)) => return *slots,
        Ok(Err(_)) => format!(
            "the checkpoint files were not read as {}: a bug",
            std::any::type_name::<T>()
        ),
        Err(e) => format!("its checkpoint file could not be read: {e}"),
    };
    saved
        .keys()
        .map(|k| Err(Failed::new(k.clone(), saved.step(), why.clone())))
        .collect()
}

impl<T: 'static> Outputs<T> {
    /// Outputs made of what an executor gave back: partitions of
    /// `Vec<Slot<T>>`, or [`SavedPartition`]s read when looked at.
    pub(crate) fn from_any(parts: Vec<AnyPartition>, report: Report) -> graph::Result<Self> {
        // A loop, not `collect` into a `Result`: that cannot know the
        // length, and grew the vector from empty, copying it a dozen times.
        let mut out = Vec::with_capacity(parts.len());
        for p in parts {
            out.push(match p.downcast::<Vec<Slot<T>>>() {
                Ok(slots) => Part::Here(*slots),
                Err(p) => match p.downcast::<SavedPartition>() {
                    Ok(saved) => Part::Saved {
                        saved: *saved,
                        read: OnceLock::new(),
                        reader: read_saved::<T>,
                    },
                    Err(_) => {
                        return Err(graph::Error::bug(format!(
                            "the executor gave back an output partition that is not a {}",
                            std::any::type_name::<Vec<Slot<T>>>()
                        )));
                    }
                },
            });
        }
        Ok(Outputs {
            parts: out,
            report,
            lists: Vec::new(),
            layout: None,
        })
    }
}

impl<T> Outputs<T> {
    /// Outputs made of these partitions.
    pub fn from_parts(parts: Vec<Vec<Slot<T>>>, report: Report) -> Self {
        Outputs {
            parts: parts.into_iter().map(Part::Here).collect(),
            report,
            lists: Vec::new(),
            layout: None,
        }
    }

    /// The names of the lists transformed beside this one in the same run
    /// ([`Lazy::and_transform`](crate::Lazy::and_transform)), in order.
    pub fn list_names(&self) -> impl Iterator<Item = &str> {
        self.lists.iter().map(|(name, _)| name.as_str())
    }

    /// The outputs of list `name`, transformed beside this one.
    pub fn list(&self, name: &str) -> Option<&Outputs<T>> {
        self.lists.iter().find(|(n, _)| n == name).map(|(_, o)| o)
    }

    /// Takes the outputs of list `name` (its report is the whole run's).
    /// A list of sample sets gives its samples, flattened: see
    /// [`take_sets`](Self::take_sets).
    pub fn take_list(&mut self, name: &str) -> Option<Outputs<T>> {
        let at = self.lists.iter().position(|(n, _)| n == name)?;
        Some(self.lists.remove(at).1)
    }

    /// Takes the outputs of list `name`, added as sample sets
    /// ([`Lazy::and_transform_sets`](crate::Lazy::and_transform_sets)), as
    /// sets; `None` when there is no such list of sets.
    pub fn take_sets(&mut self, name: &str) -> Option<SetOutputs<T>> {
        let at = self
            .lists
            .iter()
            .position(|(n, o)| n == name && o.layout.is_some())?;
        let mut out = self.lists.remove(at).1;
        let layout = out.layout.take()?;
        Some(crate::pipeline::regroup(layout, out))
    }

    /// How many slots (= how many inputs).
    pub fn len(&self) -> usize {
        self.parts.iter().map(Part::len).sum()
    }

    /// Whether there were no inputs.
    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(|p| p.len() == 0)
    }

    /// Every position, in input order.
    pub fn iter(&self) -> impl Iterator<Item = &Slot<T>> {
        self.parts.iter().flat_map(Part::slots)
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

    /// How many partitions are still in their checkpoint files, not read.
    pub fn on_disk(&self) -> usize {
        self.parts
            .iter()
            .filter(|p| matches!(p, Part::Saved { read, .. } if read.get().is_none()))
            .count()
    }

    /// The partitions, in input order (every one read).
    pub fn into_parts(self) -> Vec<Vec<Slot<T>>> {
        self.parts.into_iter().map(Part::into_slots).collect()
    }

    /// Every position, in input order.
    pub fn into_slots(self) -> Vec<Slot<T>> {
        self.into_iter().collect()
    }

    /// The samples that made it through, in input order (failures dropped).
    pub fn into_samples(self) -> Vec<Sample<T>> {
        self.into_iter().filter_map(Result::ok).collect()
    }
}

impl<T> IntoIterator for Outputs<T> {
    type Item = Slot<T>;
    type IntoIter = IntoSlots<T>;
    /// Partition by partition: one left in its files is read when reached.
    fn into_iter(self) -> IntoSlots<T> {
        IntoSlots {
            parts: self.parts.into_iter(),
            current: Vec::new().into_iter(),
        }
    }
}

/// The slots of [`Outputs`], in input order, taken partition by partition:
/// what `outputs.into_iter()` gives.
#[derive(Debug)]
pub struct IntoSlots<T> {
    parts: std::vec::IntoIter<Part<T>>,
    current: std::vec::IntoIter<Slot<T>>,
}

impl<T> Iterator for IntoSlots<T> {
    type Item = Slot<T>;
    fn next(&mut self) -> Option<Slot<T>> {
        loop {
            if let Some(slot) = self.current.next() {
                return Some(slot);
            }
            self.current = self.parts.next()?.into_slots().into_iter();
        }
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
