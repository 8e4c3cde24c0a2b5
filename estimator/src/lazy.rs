//! Lazy runs: what `pipeline.fit_transform(samples)` returns, computed by an executor.

use std::cell::{OnceCell, RefCell};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use bob_pipelines_graph::{
    self as graph, AnyPartition, Checkpoints, DataCodec, Executor, InputPartition, Loaded, Metas,
    Mode, Model, PartitionSource, Plan, Program, ProgramStep, RunMarker, Serve, Slot, is_worker,
};
use bob_pipelines_sample::Key;

use crate::Result;
use crate::outputs::{Outputs, SampleSource};
use crate::partitioning::Partitioning;
use crate::pipeline::{Layout, SetSource, flatten};

/// What a lazy run needs of the pipeline it belongs to.
pub(crate) trait Steps {
    /// Checks the step names.
    fn validate(&self) -> Result<()>;
    /// The steps with their types erased.
    fn program_steps(&self) -> Vec<ProgramStep>;
    /// How the input data becomes bytes.
    fn input_codec(&self) -> Arc<dyn DataCodec>;
    /// The checkpoint options, if any.
    fn checkpoints(&self) -> Option<&Checkpoints>;
    /// Takes the models a successful run ends with.
    fn set_models(&mut self, models: Vec<Option<Model>>);
}

/// The pipeline a lazy run belongs to: borrowed mutably when the run fits (the
/// fitted models go back into it), shared otherwise.
enum Target<'p> {
    Shared(&'p dyn Steps),
    Mut(&'p mut dyn Steps),
}

impl Target<'_> {
    fn get(&self) -> &dyn Steps {
        match self {
            Target::Shared(p) => *p,
            Target::Mut(p) => &**p,
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
    /// Partitions passed over are dropped, not kept (a distributed worker's
    /// source: see `PartitionSource::drop_passed`).
    drop_passed: bool,
    /// Partitions that will never be asked for, not pulled yet: skipped
    /// when the iterator reaches them.
    forgotten: HashSet<usize>,
    /// Items passed over and not yet skipped in the iterator: skipped with
    /// the next partition pulled, in one `nth`, or, when partitions are
    /// forgotten, once [`PASSED_HELD`] wait. `nth` moves past items without
    /// making them for a `Vec`, a range or `indexed`, but it makes the item
    /// it returns: skipping each partition on its own would make one sample
    /// of each (all of them, at one sample per partition).
    passed: usize,
    /// The first partition the iterator ran out in, and how many samples
    /// it got: it and every later one are an error when asked for.
    short: Option<(usize, usize)>,
}

/// How many passed items [`Puller`] may leave unskipped. A `Vec`'s items
/// are dropped when skipped, so this bounds what it keeps a little longer;
/// `indexed` makes one item of each this many skipped.
const PASSED_HELD: usize = 256;

impl<S> Puller<'_, S> {
    fn pull_to(&mut self, p: usize) {
        while self.next <= p && self.next < self.lens.len() {
            let len = self.lens[self.next];
            if self.forgotten.remove(&self.next) || (self.drop_passed && self.next < p) {
                self.passed += len;
            } else {
                let mut part = Vec::with_capacity(len);
                if len > 0 {
                    let first = match std::mem::take(&mut self.passed) {
                        0 => self.iter.next(),
                        n => self.iter.nth(n),
                    };
                    part.extend(first);
                    part.extend(self.iter.by_ref().take(len - 1));
                }
                if part.len() < len && self.short.is_none() {
                    self.short = Some((self.next, part.len()));
                }
                self.ahead.insert(self.next, part);
            }
            self.next += 1;
        }
    }

    /// Skips the passed items if too many wait.
    fn skip_if_many(&mut self) {
        if self.passed >= PASSED_HELD {
            let _ = self.iter.nth(self.passed - 1);
            self.passed = 0;
        }
    }

    /// Drops partition `p`: at once if it was pulled, else when the
    /// iterator reaches it (the forgotten partitions right ahead, now).
    fn forget(&mut self, p: usize) {
        if p >= self.lens.len() {
            return; // no such partition: nothing to skip
        }
        if p < self.next {
            self.ahead.remove(&p);
            return;
        }
        if p == self.next {
            // The usual case, partitions forgotten in order: no set.
            self.passed += self.lens[p];
            self.next += 1;
        } else {
            self.forgotten.insert(p);
        }
        while self.forgotten.contains(&self.next) {
            self.pull_to(self.next);
        }
        self.skip_if_many();
    }

    fn take(&mut self, p: usize) -> graph::Result<Vec<S>> {
        self.reach(p)?;
        self.ahead
            .remove(&p)
            .ok_or(graph::Error::InputTaken { partition: p })
    }

    /// Pulls as far as partition `p`; an error if the iterator ran out in
    /// it or before it.
    fn reach(&mut self, p: usize) -> graph::Result<()> {
        self.pull_to(p);
        match self.short {
            Some((q, got)) if q <= p => {
                let start = self.lens.iter().take(p).sum();
                Err(graph::Error::InputShort {
                    partition: p,
                    start,
                    end: start + self.lens.get(p).copied().unwrap_or(0),
                    got: if q == p { got } else { 0 },
                    promised: self.lens.iter().sum(),
                })
            }
            _ => Ok(()),
        }
    }
}

struct PullerSource<'a, S, I> {
    puller: Mutex<Puller<'a, S>>,
    _data: std::marker::PhantomData<fn() -> I>,
}

impl<'a, S: Send, I> PullerSource<'a, S, I> {
    /// `f` of each of the first `n` samples of partition `p`, which stays
    /// where it is.
    fn look<T>(&self, p: usize, n: usize, f: impl Fn(&S) -> T) -> graph::Result<Vec<T>> {
        let mut puller = self.puller.lock().unwrap_or_else(PoisonError::into_inner);
        puller.reach(p)?;
        let items = puller
            .ahead
            .get(&p)
            .ok_or(graph::Error::InputTaken { partition: p })?;
        Ok(items.iter().take(n).map(f).collect())
    }

    fn take(&self, p: usize) -> graph::Result<Vec<S>> {
        self.puller
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(p)
    }
}

impl<'a, I, S> PartitionSource for PullerSource<'a, S, I>
where
    I: Send + 'static,
    S: SampleSource<I> + Send + 'a,
{
    fn keys(&self, p: usize) -> graph::Result<Vec<Key>> {
        self.look(p, usize::MAX, |s| s.key().clone())
    }

    fn first_keys(&self, p: usize, n: usize) -> graph::Result<Vec<Key>> {
        self.look(p, n, |s| s.key().clone())
    }

    fn load(&self, p: usize) -> graph::Result<Loaded> {
        // Loading (a delayed sample's file read) happens outside the lock.
        let items = self.take(p)?;
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
            partition: Box::new(slots),
            load_failed,
        })
    }

    fn split(&self, p: usize, redo: &[usize]) -> graph::Result<(Metas, AnyPartition)> {
        let items = self.take(p)?;
        let redo: HashSet<usize> = redo.iter().copied().collect();
        let mut metas = Vec::with_capacity(items.len());
        let mut again: Vec<Slot<I>> = Vec::with_capacity(redo.len());
        for (i, s) in items.into_iter().enumerate() {
            if redo.contains(&i) {
                again.push(s.into_slot());
                metas.push(None);
            } else {
                metas.push(Some(s.into_meta()));
            }
        }
        Ok((metas, Box::new(again)))
    }

    fn metas(&self, p: usize) -> graph::Result<Option<Metas>> {
        self.look(p, usize::MAX, |s| Some(s.meta())).map(Some)
    }

    fn drop_passed(&self) {
        self.puller
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drop_passed = true;
    }

    fn forget(&self, p: usize) {
        self.puller
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .forget(p);
    }
}

/// The caller's samples with their item type erased.
trait Source<'a>: 'a {
    fn into_partitions(self: Box<Self>, lens: &[usize]) -> Vec<InputPartition<'a>>;
}

struct IterSource<It, I> {
    iter: It,
    _data: std::marker::PhantomData<fn() -> I>,
}

impl<'a, I, S, It> Source<'a> for IterSource<It, I>
where
    I: Send + 'static,
    S: SampleSource<I> + Send + 'a,
    It: Iterator<Item = S> + Send + 'a,
{
    fn into_partitions(self: Box<Self>, lens: &[usize]) -> Vec<InputPartition<'a>> {
        let source: Arc<dyn PartitionSource + 'a> = Arc::new(PullerSource::<S, I> {
            puller: Mutex::new(Puller {
                iter: Box::new(self.iter),
                lens: lens.to_vec(),
                next: 0,
                ahead: HashMap::new(),
                drop_passed: false,
                forgotten: HashSet::new(),
                passed: 0,
                short: None,
            }),
            _data: std::marker::PhantomData,
        });
        lens.iter()
            .enumerate()
            .map(|(index, &len)| InputPartition::new(len, index, Arc::clone(&source)))
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
    target: Target<'p>,
    _types: std::marker::PhantomData<fn(I) -> O>,
    mode: Mode,
    n: usize,
    partitioning: Partitioning,
    /// The first list's name, if given.
    name: Option<String>,
    /// The lists transformed beside the first.
    more: Vec<MoreList>,
    /// Each list's samples, the first list's first, until taken.
    sources: RefCell<Option<Vec<Box<dyn Source<'p> + 'p>>>>,
    inputs: RefCell<Option<Vec<InputPartition<'p>>>>,
    info: OnceCell<Program>,
    report_dir: Option<PathBuf>,
    /// Runs in this process even in a worker (an earlier compute than its
    /// driver's).
    here: bool,
}

/// A list of samples transformed beside the first (see
/// [`Lazy::and_transform`]).
struct MoreList {
    name: String,
    n: usize,
    /// For sample sets: each set and how many of the samples are its.
    layout: Option<Layout>,
}

/// Samples, with their count, ready to be cut into partitions: an iterator
/// that knows its length (its `size_hint` is exact) is pulled lazily, and
/// one that then ends early fails the partition it ends in
/// (`Error::InputShort`); any other is collected first.
fn source_of<'p, I, S, It>(samples: It) -> (usize, Box<dyn Source<'p> + 'p>)
where
    I: Send + 'static,
    S: SampleSource<I> + Send + 'p,
    It: IntoIterator<Item = S>,
    It::IntoIter: Send + 'p,
{
    let iter = samples.into_iter();
    let (lo, hi) = iter.size_hint();
    if hi == Some(lo) {
        (
            lo,
            Box::new(IterSource::<_, I> {
                iter,
                _data: std::marker::PhantomData,
            }),
        )
    } else {
        let items: Vec<S> = iter.collect();
        (
            items.len(),
            Box::new(IterSource::<_, I> {
                iter: items.into_iter(),
                _data: std::marker::PhantomData,
            }),
        )
    }
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
    fn new<S, It>(target: Target<'p>, mode: Mode, samples: It) -> Self
    where
        S: SampleSource<I> + Send + 'p,
        It: IntoIterator<Item = S>,
        It::IntoIter: Send + 'p,
    {
        let (n, source) = source_of(samples);
        Lazy {
            target,
            _types: std::marker::PhantomData,
            mode,
            n,
            partitioning: Partitioning::Auto,
            name: None,
            more: Vec::new(),
            sources: RefCell::new(Some(vec![source])),
            inputs: RefCell::new(None),
            info: OnceCell::new(),
            report_dir: None,
            here: false,
        }
    }

    pub(crate) fn shared<S, It>(p: &'p dyn Steps, mode: Mode, samples: It) -> Self
    where
        S: SampleSource<I> + Send + 'p,
        It: IntoIterator<Item = S>,
        It::IntoIter: Send + 'p,
    {
        Self::new(Target::Shared(p), mode, samples)
    }

    pub(crate) fn fitting<S, It>(p: &'p mut dyn Steps, mode: Mode, samples: It) -> Self
    where
        S: SampleSource<I> + Send + 'p,
        It: IntoIterator<Item = S>,
        It::IntoIter: Send + 'p,
    {
        Self::new(Target::Mut(p), mode, samples)
    }

    /// Cuts the samples into `n` partitions (bob's `npartitions`).
    #[must_use]
    pub fn npartitions(self, n: usize) -> Self {
        self.partitioning(Partitioning::Count(n))
    }

    /// Cuts the samples into partitions of `size` (bob's `partition_size`).
    #[must_use]
    pub fn partition_size(self, size: usize) -> Self {
        self.partitioning(Partitioning::Size(size))
    }

    /// Sets the partitioning (before [`info`](Self::info) is first asked).
    #[must_use]
    pub fn partitioning(mut self, partitioning: Partitioning) -> Self {
        self.partitioning = partitioning;
        self
    }

    /// Where the run's `report.json` and `report.html` go (before
    /// [`info`](Self::info) is first asked): `Some(dir)`, also for a run
    /// without checkpoints; `None` (the default), into the checkpoints'
    /// features folder, or nowhere for a run without checkpoints.
    #[must_use]
    pub fn report_to(mut self, dir: Option<PathBuf>) -> Self {
        self.report_dir = dir;
        self
    }

    /// Names the first list of samples (`train`): its task ids, pictures
    /// and reports then name it, as they name the lists added with
    /// [`and_transform`](Self::and_transform).
    #[must_use]
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Transforms another list of samples in the same run: one task graph,
    /// one set of workers, one compute. Its samples go through every step,
    /// with the models this run fits on the first list as soon as each
    /// exists (the steps before the first fit start at once, beside the
    /// fit's own inputs), and come back as
    /// [`Outputs::take_list`]`(name)`. bob.bio's experiment is
    /// `pipeline.fit(train).and_transform("enroll", enroll).and_transform("probe", probe)`.
    /// Each list is cut into partitions as the first is. The name (letters,
    /// digits, `_` and `-`; one per list) starts the ids of its tasks
    /// (`probe:load-0`); a bad one fails [`info`](Self::info).
    #[must_use]
    pub fn and_transform<S, It>(mut self, name: &str, samples: It) -> Self
    where
        S: SampleSource<I> + Send + 'p,
        It: IntoIterator<Item = S>,
        It::IntoIter: Send + 'p,
    {
        let (n, source) = source_of(samples);
        self.add(name, n, source, None);
        self
    }

    /// [`and_transform`](Self::and_transform) for sample sets (bob's
    /// enrollment by subject): every inner sample is transformed, and
    /// [`Outputs::take_sets`]`(name)` gives the sets back with their keys and
    /// attributes.
    ///
    /// # Errors
    /// [`Error::SetLoad`](crate::Error::SetLoad) for a delayed set that
    /// fails to load.
    pub fn and_transform_sets<S>(
        mut self,
        name: &str,
        sets: impl IntoIterator<Item = S>,
    ) -> Result<Self>
    where
        S: SetSource<I>,
        S::Member: Send + 'p,
    {
        let (layout, members) = flatten(sets)?;
        let (n, source) = source_of(members);
        self.add(name, n, source, Some(layout));
        Ok(self)
    }

    fn add(
        &mut self,
        name: &str,
        n: usize,
        source: Box<dyn Source<'p> + 'p>,
        layout: Option<Layout>,
    ) {
        self.more.push(MoreList {
            name: name.to_owned(),
            n,
            layout,
        });
        if let Some(sources) = self.sources.get_mut() {
            sources.push(source);
        }
    }

    /// The input partitions of every list, in the program's order.
    fn partitions(&self, program: &Program) -> Result<Vec<InputPartition<'p>>> {
        let sources = self
            .sources
            .borrow_mut()
            .take()
            .ok_or(graph::Error::InputTaken { partition: 0 })?;
        let lens = program.partition_lens();
        Ok(sources
            .into_iter()
            .zip(program.lists())
            .flat_map(|(source, list)| source.into_partitions(&lens[list.partitions.clone()]))
            .collect())
    }

    /// How many input samples.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no input samples.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Steps, mode, partitions and — for a checkpointed pipeline — what is on
    /// disk: everything the task graph is built from. Worked out once (a
    /// failure is reported again by the next call). A checkpointed pipeline
    /// checks its files here and reads the models it finds; this pulls the
    /// caller's samples to learn their keys, so delayed samples (which cost
    /// only their metadata until loaded) suit checkpointed runs best.
    ///
    /// # Errors
    /// [`Error::DuplicateStep`](crate::Error::DuplicateStep), [`Error::Partitioning`](crate::Error::Partitioning), and the run's
    /// checkpoint errors.
    pub fn info(&self) -> Result<&Program> {
        if let Some(info) = self.info.get() {
            return Ok(info);
        }
        let pipeline = self.target.get();
        pipeline.validate()?;
        let lens = self.partitioning.lengths(self.n)?;
        let mut program = Program::new(
            pipeline.program_steps(),
            self.mode,
            lens,
            pipeline.input_codec(),
        );
        if let Some(name) = &self.name {
            program.name_first_list(name);
        }
        for list in &self.more {
            program.add_list(&list.name, &self.partitioning.lengths(list.n)?)?;
        }
        if let Some(dir) = &self.report_dir {
            program.report_to(dir.clone());
        }
        if is_worker() && !self.here {
            // A worker neither pulls the samples nor looks at the disk: the
            // driver does both and sends what its tasks need.
            if let Some(options) = pipeline.checkpoints() {
                program.checkpoint_without_disk(options);
            }
            return Ok(self.info.get_or_init(|| program));
        }
        if self.inputs.borrow().is_none() {
            *self.inputs.borrow_mut() = Some(self.partitions(&program)?);
        }
        if let Some(options) = pipeline.checkpoints() {
            // A worker replaying an earlier compute reads what the driver
            // wrote: forcing or retrying again would compute it all again.
            let replay;
            let options = if is_worker() {
                replay = options.clone().force(false).retry_failed(false);
                &replay
            } else {
                options
            };
            let inputs = self.inputs.borrow();
            program.checkpoint_from_disk(options, inputs.as_deref().unwrap_or_default())?;
        }
        Ok(self.info.get_or_init(|| program))
    }

    /// Runs on `executor`. A run that fits stores its models in the pipeline,
    /// and only when it succeeds; a `fit` run returns no samples.
    ///
    /// In a distributed worker process ([`is_worker`]) this is where the
    /// worker serves its scheduler: with a distributed executor the process
    /// ends here; any other executor returns an error. A compute that comes
    /// before the driver's (a program that fits, then transforms) runs in the
    /// worker's own process, as it ran in the driver's (from its
    /// checkpoints, if it has them), and the worker goes on.
    ///
    /// # Errors
    /// The executor's: the first failing task names its step, and its sample
    /// where one is at fault.
    pub fn compute(mut self, executor: &(impl Executor + ?Sized)) -> Result<Outputs<O>> {
        if is_worker() && !self.here {
            // A distributed worker serves its scheduler and ends there, unless
            // this is an earlier compute than its driver's: then it runs here,
            // with the samples and the disk, as the driver ran it.
            // The inputs go with the plan, not pulled: a worker loads only
            // the partitions it is told to.
            let program = self.info()?.clone();
            let inputs = self.partitions(&program)?;
            match executor.serve(Plan { program, inputs }) {
                Serve::Earlier(plan) => {
                    if self.target.get().checkpoints().is_none() {
                        // Said once per compute, on the driver's progress:
                        // each worker computes it all again.
                        eprintln!(
                            "an earlier compute of this program ({:?} of {} samples) is computed \
                             again in each worker to reach the driver's: it is not checkpointed. \
                             Checkpoint it (`pipeline.checkpoint(…)`), and workers read it instead; \
                             or compute the lists in one graph (`.and_transform(name, samples)`)",
                            self.mode, self.n
                        );
                    }
                    self.here = true;
                    self.info = OnceCell::new();
                    *self.inputs.borrow_mut() = Some(plan.inputs);
                }
                Serve::Failed(e) => return Err(e.into()),
            }
        }
        let program = self.info()?.clone();
        let inputs = self
            .inputs
            .borrow_mut()
            .take()
            .ok_or(graph::Error::InputTaken { partition: 0 })?;
        // While a checkpointed run runs, a marker says so. The driver owns
        // the folder's marker; a worker repeating an earlier compute leaves
        // it alone.
        let marker = if self.here {
            None
        } else {
            Some(RunMarker::write(&program)?)
        };
        let executed = executor.execute(Plan { program, inputs })?;
        if let Some(marker) = marker {
            marker.done();
        }
        // The first list's outputs, then each other list's, in order.
        let info = self.info()?;
        let mut parts = executed.parts.into_iter();
        let first = if info.gives_back(0) {
            info.lists()[0].partitions.len()
        } else {
            0
        };
        let own: Vec<_> = parts.by_ref().take(first).collect();
        let mut lists = Vec::with_capacity(self.more.len());
        for (list, more) in info.lists()[1..].iter().zip(&self.more) {
            let theirs = parts.by_ref().take(list.partitions.len()).collect();
            let mut out = Outputs::from_any(theirs, executed.report.clone())?;
            out.layout.clone_from(&more.layout);
            lists.push((more.name.clone(), out));
        }
        let mut out = Outputs::from_any(own, executed.report)?;
        out.lists = lists;
        if let Target::Mut(p) = self.target {
            p.set_models(executed.models);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    use super::*;

    /// A puller over `indexed` items `0..n` in partitions of `len`,
    /// counting the items made.
    fn puller(n: usize, len: usize) -> (Puller<'static, usize>, Arc<AtomicUsize>) {
        let made = Arc::new(AtomicUsize::new(0));
        let count = made.clone();
        let iter = bob_pipelines_sample::indexed(n, move |i| {
            count.fetch_add(1, Relaxed);
            i
        });
        let puller = Puller {
            iter: Box::new(iter),
            lens: vec![len; n / len],
            next: 0,
            ahead: HashMap::new(),
            drop_passed: false,
            forgotten: HashSet::new(),
            passed: 0,
            short: None,
        };
        (puller, made)
    }

    #[test]
    fn an_iterator_that_ends_early_is_an_error_from_the_partition_it_ends_in() {
        // Ten partitions of 10 promised, 35 items given.
        let (mut p, _) = puller(35, 10);
        p.lens = vec![10; 10];
        assert_eq!(p.take(1).unwrap().len(), 10);
        let short = |e: graph::Error| match e {
            graph::Error::InputShort {
                partition,
                start,
                end,
                got,
                promised,
            } => (partition, start, end, got, promised),
            other => panic!("{other}"),
        };
        assert_eq!(short(p.take(3).unwrap_err()), (3, 30, 40, 5, 100));
        assert_eq!(short(p.take(7).unwrap_err()), (7, 70, 80, 0, 100));
        // Partitions before the end are whole.
        assert_eq!(p.take(0).unwrap().len(), 10);
        assert_eq!(p.take(2).unwrap().len(), 10);
    }

    #[test]
    fn partitions_forgotten_or_passed_are_skipped_without_making_their_samples() {
        // The driver, when workers load: every partition forgotten, one
        // ahead of the others, and the last one taken.
        let (mut p, made) = puller(1000, 1);
        p.forget(1);
        p.forget(0);
        for i in 2..999 {
            p.forget(i);
        }
        assert_eq!(p.take(999).unwrap(), vec![999]);
        assert!(
            made.load(Relaxed) <= 1 + 999 / PASSED_HELD,
            "{} made for one taken",
            made.load(Relaxed)
        );
        assert!(matches!(
            p.take(5),
            Err(graph::Error::InputTaken { partition: 5 })
        ));
        p.forget(1000); // no such partition, with the input at its end
        p.forget(5000);

        // A worker: passes over what it does not load, out of order.
        let (mut p, made) = puller(3000, 3);
        p.drop_passed = true;
        assert_eq!(p.take(2).unwrap(), vec![6, 7, 8]);
        assert_eq!(p.take(500).unwrap(), vec![1500, 1501, 1502]);
        assert!(matches!(
            p.take(400),
            Err(graph::Error::InputTaken { partition: 400 })
        ));
        assert_eq!(made.load(Relaxed), 6, "only the partitions taken");

        // Without dropping, what was passed stays for later.
        let (mut p, _) = puller(30, 3);
        assert_eq!(p.take(4).unwrap(), vec![12, 13, 14]);
        assert_eq!(p.take(1).unwrap(), vec![3, 4, 5]);
        p.forget(0);
        p.forget(6);
        p.forget(5);
        assert_eq!(p.take(7).unwrap(), vec![21, 22, 23]);
        assert!(p.take(6).is_err());
    }
}
