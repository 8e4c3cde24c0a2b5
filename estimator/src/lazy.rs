//! Lazy runs: what `pipeline.fit_transform(samples)` returns, computed by an executor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::outputs::{Outputs, SampleSource, Slot};
use crate::plan::{Executor, InputPartition, Loaded, Mode, Partitioning, Plan, PlanInfo};
use crate::step::AnyPartition;
use crate::{Error, Pipeline, Result};

/// The pipeline a lazy run belongs to: borrowed mutably when the run fits (the
/// fitted models go back into it), shared otherwise.
enum Target<'p, I, O> {
    Shared(&'p Pipeline<I, O>),
    Mut(&'p mut Pipeline<I, O>),
}

impl<I, O> Target<'_, I, O> {
    fn get(&self) -> &Pipeline<I, O> {
        match self {
            Target::Shared(p) => p,
            Target::Mut(p) => p,
        }
    }
}

/// Hands out input partitions from the caller's iterator, pulling it only as
/// far as the highest partition asked for: samples are created or moved as the
/// run reaches them, in any order an executor asks.
struct Puller<'a, S> {
    iter: Box<dyn Iterator<Item = S> + Send + 'a>,
    lens: Vec<usize>,
    next: usize,
    ahead: HashMap<usize, Vec<S>>,
}

impl<S> Puller<'_, S> {
    fn take(&mut self, p: usize) -> Option<Vec<S>> {
        while self.next <= p && self.next < self.lens.len() {
            let part: Vec<S> = self.iter.by_ref().take(self.lens[self.next]).collect();
            self.ahead.insert(self.next, part);
            self.next += 1;
        }
        self.ahead.remove(&p)
    }
}

/// The caller's samples with their item type erased.
trait Source<'a, I>: Send + 'a {
    fn into_partitions(self: Box<Self>, lens: &[usize]) -> Vec<InputPartition<'a>>;
}

struct IterSource<It> {
    iter: It,
}

impl<'a, I, S, It> Source<'a, I> for IterSource<It>
where
    I: Send + 'static,
    S: SampleSource<I> + Send + 'a,
    It: Iterator<Item = S> + Send + 'a,
{
    fn into_partitions(self: Box<Self>, lens: &[usize]) -> Vec<InputPartition<'a>> {
        let puller = Arc::new(Mutex::new(Puller {
            iter: Box::new(self.iter),
            lens: lens.to_vec(),
            next: 0,
            ahead: HashMap::new(),
        }));
        lens.iter()
            .enumerate()
            .map(|(p, &len)| {
                let puller = Arc::clone(&puller);
                InputPartition {
                    len,
                    load: Box::new(move || {
                        let items = puller
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .take(p)
                            .ok_or(Error::InputTaken { partition: p })?;
                        // Loading (a delayed sample's file read) happens outside the lock.
                        let mut load_failed = 0;
                        let slots: Vec<Slot<I>> = items
                            .into_iter()
                            .map(|s| {
                                let slot = s.into_slot();
                                load_failed += usize::from(slot.is_err());
                                slot
                            })
                            .collect();
                        Ok(Loaded {
                            partition: Box::new(slots) as AnyPartition,
                            load_failed,
                        })
                    }),
                }
            })
            .collect()
    }
}

/// A pipeline run that has not happened yet: what `fit`, `transform` and
/// `fit_transform` return, as dask's lazy collections. Nothing is loaded or
/// computed until [`compute`](Self::compute).
///
/// ```
/// use bob_pipelines_estimator::{Batch, BoxError, InMemory, Pipeline, SampleResult, Transformer};
/// use bob_pipelines_sample::Sample;
///
/// struct Inc;
/// impl Transformer for Inc {
///     type Input = i32;
///     type Output = i32;
///     fn transform(&self, b: &Batch<'_, i32>) -> Result<Vec<SampleResult<i32>>, BoxError> {
///         Ok(b.iter().map(|x| Ok(x + 1)).collect())
///     }
/// }
/// let pipeline = Pipeline::new().then(Inc);
/// let lazy = pipeline.transform((0..100).map(|i| Sample::new(i.to_string(), i))).npartitions(4);
/// assert_eq!(lazy.info()?.npartitions(), 4);
/// let out = lazy.compute(&InMemory)?;
/// assert_eq!(out.len(), 100);
/// # Ok::<(), bob_pipelines_estimator::Error>(())
/// ```
pub struct Lazy<'p, I, O> {
    target: Target<'p, I, O>,
    mode: Mode,
    n: usize,
    source: Box<dyn Source<'p, I> + 'p>,
    partitioning: Partitioning,
}

impl<I, O> std::fmt::Debug for Lazy<'_, I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lazy")
            .field("mode", &self.mode)
            .field("samples", &self.n)
            .field("partitioning", &self.partitioning)
            .finish_non_exhaustive()
    }
}

impl<'p, I, O> Lazy<'p, I, O>
where
    I: Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    fn new<S, It>(target: Target<'p, I, O>, mode: Mode, samples: It) -> Self
    where
        S: SampleSource<I> + Send + 'p,
        It: IntoIterator<Item = S>,
        It::IntoIter: Send + 'p,
    {
        let iter = samples.into_iter();
        let (lo, hi) = iter.size_hint();
        // The count decides the partitioning: an iterator that knows it is pulled
        // lazily; any other is collected first.
        let (n, source): (usize, Box<dyn Source<'p, I> + 'p>) = if hi == Some(lo) {
            (lo, Box::new(IterSource { iter }))
        } else {
            let items: Vec<S> = iter.collect();
            (
                items.len(),
                Box::new(IterSource {
                    iter: items.into_iter(),
                }),
            )
        };
        Lazy {
            target,
            mode,
            n,
            source,
            partitioning: Partitioning::Auto,
        }
    }

    pub(crate) fn shared<S, It>(p: &'p Pipeline<I, O>, mode: Mode, samples: It) -> Self
    where
        S: SampleSource<I> + Send + 'p,
        It: IntoIterator<Item = S>,
        It::IntoIter: Send + 'p,
    {
        Self::new(Target::Shared(p), mode, samples)
    }

    pub(crate) fn fitting<S, It>(p: &'p mut Pipeline<I, O>, mode: Mode, samples: It) -> Self
    where
        S: SampleSource<I> + Send + 'p,
        It: IntoIterator<Item = S>,
        It::IntoIter: Send + 'p,
    {
        Self::new(Target::Mut(p), mode, samples)
    }

    /// Cuts the samples into `n` partitions (bob's `npartitions`).
    #[must_use]
    pub fn npartitions(mut self, n: usize) -> Self {
        self.partitioning = Partitioning::Count(n);
        self
    }

    /// Cuts the samples into partitions of `size` (bob's `partition_size`).
    #[must_use]
    pub fn partition_size(mut self, size: usize) -> Self {
        self.partitioning = Partitioning::Size(size);
        self
    }

    /// Sets the partitioning.
    #[must_use]
    pub fn partitioning(mut self, partitioning: Partitioning) -> Self {
        self.partitioning = partitioning;
        self
    }

    /// How many input samples.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no input samples.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Steps, mode and partitions: everything the task graph is built from.
    ///
    /// # Errors
    /// [`Error::DuplicateStep`], or [`Error::Partitioning`] for zero partitions
    /// or a zero partition size.
    pub fn info(&self) -> Result<PlanInfo> {
        let pipeline = self.target.get();
        pipeline.validate()?;
        Ok(PlanInfo {
            steps: pipeline.plan_steps(),
            mode: self.mode,
            lens: self.partitioning.lengths(self.n)?,
        })
    }

    /// Runs on `executor`. A run that fits stores its models in the pipeline,
    /// and only when it succeeds; a `fit` run returns no samples.
    ///
    /// # Errors
    /// The executor's: the first failing task names its step, and its sample
    /// where one is at fault.
    pub fn compute(self, executor: &(impl Executor + ?Sized)) -> Result<Outputs<O>> {
        let info = self.info()?;
        let inputs = self.source.into_partitions(&info.lens);
        let executed = executor.execute(Plan { info, inputs })?;
        if let Target::Mut(p) = self.target {
            p.set_models(executed.models);
        }
        let parts = executed
            .parts
            .into_iter()
            .map(|p| {
                p.downcast::<Vec<Slot<O>>>()
                    .map(|b| *b)
                    .map_err(|_| Error::WrongType {
                        step: "<output>".to_owned(),
                        expected: std::any::type_name::<Vec<Slot<O>>>(),
                    })
            })
            .collect::<Result<_>>()?;
        Ok(Outputs::from_parts(parts, executed.report))
    }
}
