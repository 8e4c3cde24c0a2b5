//! Sample sets: groups of samples with a key and attributes of their own.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::sample::{Loader, meta_methods};
use crate::{BoxError, DelayedSample, Key, Meta, Result, Sample};

/// What a [`SampleSet`] holds: a [`Sample`], or a [`DelayedSample`] whose
/// datum is loaded only when a pipeline needs it (so a subject's enrollment
/// images stay lazy, and a set whose outputs are checkpointed resumes without
/// reading one image).
pub trait SetMember: sealed::Sealed {
    /// The datum of the member, loaded.
    type Datum;
    /// The member's key.
    fn key(&self) -> &Key;
}

mod sealed {
    pub trait Sealed {}
    impl<T> Sealed for crate::Sample<T> {}
    impl<T> Sealed for crate::DelayedSample<T> {}
}

impl<T> SetMember for Sample<T> {
    type Datum = T;
    fn key(&self) -> &Key {
        Sample::key(self)
    }
}

impl<T> SetMember for DelayedSample<T> {
    type Datum = T;
    fn key(&self) -> &Key {
        DelayedSample::key(self)
    }
}

/// Samples that belong together (the probes of one subject, the frames of one
/// video), with a key and attributes of the set itself: bob's `SampleSet`.
///
/// A pipeline transforms every inner sample of a list of sets and gives back the
/// sets with the same keys and attributes. The members are [`Sample`]s, or
/// [`DelayedSample`]s (`SampleSet<T, DelayedSample<T>>`), as in bob.
///
/// ```
/// use bob_pipelines_sample::{DelayedSample, Sample, SampleSet};
///
/// let set = SampleSet::new("subject01", vec![Sample::new("img1", 1.0), Sample::new("img2", 2.0)])
///     .with_attr("template_id", 7);
/// assert_eq!(set.len(), 2);
/// assert_eq!(set.attr::<u32>("template_id")?, 7);
///
/// // The same, with images read only when a pipeline reaches them.
/// let lazy = SampleSet::new("subject01", vec![DelayedSample::new("img1", || Ok::<_, std::io::Error>(1.0))]);
/// assert_eq!(lazy.samples()[0].key(), "img1");
/// # Ok::<(), bob_pipelines_sample::Error>(())
/// ```
pub struct SampleSet<T, S = Sample<T>> {
    samples: Vec<S>,
    meta: Arc<Meta>,
    _datum: PhantomData<fn() -> T>,
}

impl<T, S: SetMember<Datum = T>> SampleSet<T, S> {
    /// A set of samples with its own key.
    pub fn new(key: impl Into<Key>, samples: Vec<S>) -> Self {
        Self::from_meta(Arc::new(Meta::new(key)), samples)
    }

    /// A set of samples with the given (possibly shared) metadata.
    pub fn from_meta(meta: Arc<Meta>, samples: Vec<S>) -> Self {
        SampleSet {
            samples,
            meta,
            _datum: PhantomData,
        }
    }
}

impl<T, S> SampleSet<T, S> {
    /// The inner samples.
    pub fn samples(&self) -> &[S] {
        &self.samples
    }

    /// The inner samples, mutably.
    pub fn samples_mut(&mut self) -> &mut Vec<S> {
        &mut self.samples
    }

    /// The inner samples, dropping the set's own metadata.
    pub fn into_samples(self) -> Vec<S> {
        self.samples
    }

    /// The inner samples and the set's metadata.
    pub fn into_parts(self) -> (Vec<S>, Arc<Meta>) {
        (self.samples, self.meta)
    }

    /// How many inner samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the set has no samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The inner samples, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, S> {
        self.samples.iter()
    }

    meta_methods!();
}

impl<T, S: Clone> Clone for SampleSet<T, S> {
    fn clone(&self) -> Self {
        SampleSet {
            samples: self.samples.clone(),
            meta: self.meta.clone(),
            _datum: PhantomData,
        }
    }
}

impl<T, S: PartialEq> PartialEq for SampleSet<T, S> {
    fn eq(&self, other: &Self) -> bool {
        self.meta == other.meta && self.samples == other.samples
    }
}

impl<T, S: fmt::Debug> fmt::Debug for SampleSet<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SampleSet")
            .field("key", self.key())
            .field("attrs", self.attrs())
            .field("samples", &self.samples)
            .finish()
    }
}

impl<'a, T, S> IntoIterator for &'a SampleSet<T, S> {
    type Item = &'a S;
    type IntoIter = std::slice::Iter<'a, S>;
    fn into_iter(self) -> Self::IntoIter {
        self.samples.iter()
    }
}

#[derive(Serialize)]
struct SetRef<'a, S> {
    meta: &'a Meta,
    samples: &'a [S],
}

#[derive(Deserialize)]
struct SetOwned<S> {
    meta: Meta,
    samples: Vec<S>,
}

impl<T, S: Serialize> Serialize for SampleSet<T, S> {
    fn serialize<Ser: serde::Serializer>(
        &self,
        s: Ser,
    ) -> std::result::Result<Ser::Ok, Ser::Error> {
        SetRef {
            meta: &self.meta,
            samples: &self.samples,
        }
        .serialize(s)
    }
}

impl<'de, T, S: Deserialize<'de>> Deserialize<'de> for SampleSet<T, S> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = SetOwned::deserialize(d)?;
        Ok(SampleSet {
            samples: s.samples,
            meta: Arc::new(s.meta),
            _datum: PhantomData,
        })
    }
}

/// A sample set whose samples are loaded on access: bob's `DelayedSampleSet`
/// (and, with [`cached`](Self::cached), its `DelayedSampleSetCached`).
///
/// ```
/// use bob_pipelines_sample::{DelayedSampleSet, Sample};
///
/// let set = DelayedSampleSet::new("subject01", || {
///     Ok::<_, std::io::Error>(vec![Sample::new("img1", 1.0f64)])
/// })
/// .cached();
/// assert_eq!(set.load()?.len(), 1);
/// # Ok::<(), bob_pipelines_sample::Error>(())
/// ```
pub struct DelayedSampleSet<T> {
    loader: Loader<Vec<Sample<T>>>,
    meta: Arc<Meta>,
}

impl<T> Clone for DelayedSampleSet<T> {
    fn clone(&self) -> Self {
        DelayedSampleSet {
            loader: self.loader.clone(),
            meta: self.meta.clone(),
        }
    }
}

impl<T> DelayedSampleSet<T> {
    /// A set whose samples `load` produces, each time they are asked for.
    pub fn new<E, F>(key: impl Into<Key>, load: F) -> Self
    where
        E: Into<BoxError>,
        F: Fn() -> std::result::Result<Vec<Sample<T>>, E> + Send + Sync + 'static,
    {
        DelayedSampleSet {
            loader: Loader::new(load),
            meta: Arc::new(Meta::new(key)),
        }
    }

    /// Keeps the samples in memory after their first load.
    #[must_use]
    pub fn cached(mut self) -> Self
    where
        T: Clone,
    {
        self.loader = self.loader.cached();
        self
    }

    /// Whether the samples are kept after their first load.
    pub fn is_cached(&self) -> bool {
        self.loader.is_cached()
    }

    /// Loads the samples into a plain [`SampleSet`] with the same metadata.
    ///
    /// # Errors
    /// [`Error::Load`](crate::Error::Load) naming the set's key.
    pub fn load(&self) -> Result<SampleSet<T>> {
        Ok(SampleSet::from_meta(
            self.meta.clone(),
            self.loader.load(self.meta.key())?,
        ))
    }

    meta_methods!();
}

impl<T> fmt::Debug for DelayedSampleSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DelayedSampleSet")
            .field("key", self.key())
            .field("attrs", self.attrs())
            .field("cached", &self.is_cached())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn delayed_set_loads_on_access_and_cached_once() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let set = DelayedSampleSet::new("s", move || {
            c.fetch_add(1, Ordering::SeqCst);
            Ok::<_, BoxError>(vec![Sample::new("a", 1u8), Sample::new("b", 2u8)])
        })
        .with_attr("subject", "x");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert_eq!(set.load().unwrap().len(), 2);
        assert_eq!(set.load().unwrap().len(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let cached = set.cached();
        let loaded = cached.load().unwrap();
        cached.load().unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(loaded.attr::<String>("subject").unwrap(), "x");
        assert_eq!(loaded.samples()[1].key(), "b");
    }

    #[test]
    fn set_serde_round_trip() {
        let set =
            SampleSet::new("s", vec![Sample::new("a", 1u8).with_attr("x", 1)]).with_attr("t", 2);
        let v = rmpv::ext::to_value(&set).unwrap();
        let back: SampleSet<u8> = rmpv::ext::from_value(v).unwrap();
        assert_eq!(back, set);
    }
}
