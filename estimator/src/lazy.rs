//! Lazy runs: what `pipeline.fit_transform(samples)` returns, computed by an executor.

use std::cell::{OnceCell, RefCell};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use bob_pipelines_checkpoint as cp;
use bob_pipelines_sample::Key;

use crate::ckpt::{Checkpoints, ckpt_error};
use crate::outputs::{Outputs, SampleSource, Slot};
use crate::plan::{
    CheckpointPlan, Executor, InputPartition, Loaded, Metas, Mode, PartitionSource, Partitioning,
    Plan, PlanInfo, StepStats, is_worker,
};
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
    fn pull_to(&mut self, p: usize) {
        while self.next <= p && self.next < self.lens.len() {
            let part: Vec<S> = self.iter.by_ref().take(self.lens[self.next]).collect();
            self.ahead.insert(self.next, part);
            self.next += 1;
        }
    }

    fn take(&mut self, p: usize) -> Result<Vec<S>> {
        self.pull_to(p);
        self.ahead
            .remove(&p)
            .ok_or(Error::InputTaken { partition: p })
    }
}

struct PullerSource<'a, S, I> {
    puller: Mutex<Puller<'a, S>>,
    _data: std::marker::PhantomData<fn() -> I>,
}

impl<'a, S: Send, I> PullerSource<'a, S, I> {
    fn take(&self, p: usize) -> Result<Vec<S>> {
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
    fn keys(&self, p: usize) -> Result<Vec<Key>> {
        let mut puller = self.puller.lock().unwrap_or_else(PoisonError::into_inner);
        puller.pull_to(p);
        let items = puller
            .ahead
            .get(&p)
            .ok_or(Error::InputTaken { partition: p })?;
        Ok(items.iter().map(|s| s.key().clone()).collect())
    }

    fn load(&self, p: usize) -> Result<Loaded> {
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

    fn split(&self, p: usize, redo: &[usize]) -> Result<(Metas, AnyPartition)> {
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
            }),
            _data: std::marker::PhantomData,
        });
        lens.iter()
            .enumerate()
            .map(|(index, &len)| InputPartition {
                len,
                index,
                source: Arc::clone(&source),
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
    partitioning: Partitioning,
    source: RefCell<Option<Box<dyn Source<'p> + 'p>>>,
    inputs: RefCell<Option<Vec<InputPartition<'p>>>>,
    info: OnceCell<PlanInfo>,
    /// Runs in this process even in a worker (an earlier compute than its
    /// driver's).
    here: bool,
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
        let (n, source): (usize, Box<dyn Source<'p> + 'p>) = if hi == Some(lo) {
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
        };
        Lazy {
            target,
            mode,
            n,
            partitioning: Partitioning::Auto,
            source: RefCell::new(Some(source)),
            inputs: RefCell::new(None),
            info: OnceCell::new(),
            here: false,
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
    /// [`Error::DuplicateStep`], [`Error::Partitioning`], [`Error::Checkpoint`].
    pub fn info(&self) -> Result<&PlanInfo> {
        if let Some(info) = self.info.get() {
            return Ok(info);
        }
        let pipeline = self.target.get();
        pipeline.validate()?;
        let lens = self.partitioning.lengths(self.n)?;
        if is_worker() && !self.here {
            // A worker neither pulls the samples nor looks at the disk: the
            // driver does both and sends what its tasks need.
            let checkpoint = pipeline.checkpoints().map(|options| {
                Arc::new(CheckpointPlan::without_disk(
                    options,
                    &pipeline.plan_steps(),
                    lens.len(),
                ))
            });
            let info = PlanInfo {
                steps: pipeline.plan_steps(),
                mode: self.mode,
                lens,
                checkpoint,
                input_wire: pipeline.input_wire().clone(),
            };
            return Ok(self.info.get_or_init(|| info));
        }
        if self.inputs.borrow().is_none() {
            let source = self
                .source
                .borrow_mut()
                .take()
                .ok_or(Error::InputTaken { partition: 0 })?;
            *self.inputs.borrow_mut() = Some(source.into_partitions(&lens));
        }
        let mut info = PlanInfo {
            steps: pipeline.plan_steps(),
            mode: self.mode,
            lens,
            checkpoint: None,
            input_wire: pipeline.input_wire().clone(),
        };
        if let Some(options) = pipeline.checkpoints() {
            let inputs = self.inputs.borrow();
            let plan = checkpoint_plan(options, &mut info, inputs.as_deref().unwrap_or_default())?;
            info.checkpoint = Some(Arc::new(plan));
        }
        Ok(self.info.get_or_init(|| info))
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
            match executor.serve(self.info()?.clone()) {
                Error::EarlierCompute => {
                    self.here = true;
                    self.info = OnceCell::new();
                }
                e => return Err(e),
            }
        }
        let info = self.info()?.clone();
        let inputs = self
            .inputs
            .borrow_mut()
            .take()
            .ok_or(Error::InputTaken { partition: 0 })?;
        // While a checkpointed run runs, a marker says so: if it dies, the next
        // run knows to look for the temp files it left. A run that will write
        // nothing writes no marker either, so a finished folder can be read
        // from a read-only share.
        let marker = match info.checkpoint() {
            // The driver owns the folder's marker; a worker repeating an
            // earlier compute leaves it alone.
            Some(c) if !self.here && !info.writes_nothing() => {
                let root = c.options().layout().features_dir();
                // A run killed while writing its marker left the marker's temp
                // file (and no marker to say so): the root holds no other temp.
                cp::clean_temps(root, false).map_err(|source| Error::CheckpointFolder {
                    source: Box::new(source),
                })?;
                let path = root.join(RUN_MARKER);
                c.options()
                    .writer()
                    .write(&path, std::process::id().to_string().as_bytes())
                    .map_err(|source| Error::CheckpointFolder {
                        source: Box::new(source),
                    })?;
                Some(path)
            }
            _ => None,
        };
        let executed = executor.execute(Plan { info, inputs })?;
        if let Some(marker) = marker {
            // Finished: nothing of this run is left half-written.
            let _ = std::fs::remove_file(marker);
        }
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

/// One partition's survey: its index, the step it starts from, what is on disk.
type Survey = (usize, Option<usize>, Vec<StepStats>);

/// The file a checkpointed run keeps in its features folder while it runs: if
/// a run finds one, an earlier run did not finish and may have left temp files.
pub const RUN_MARKER: &str = ".bob-pipelines-running";

/// Decides, before any task runs, what a checkpointed run reads and writes:
/// which steps save, which models come from their files (no fit), and for each
/// partition the last step whose outputs are all on disk — its work before that
/// step is pruned. Changes nothing on disk but removing dead writers' temp
/// files and moving a corrupt model file aside.
fn checkpoint_plan(
    options: &Checkpoints,
    info: &mut PlanInfo,
    inputs: &[InputPartition<'_>],
) -> Result<CheckpointPlan> {
    let n = info.steps.len();
    let force = options.is_forced();
    let mut warnings = Vec::new();

    // Models on disk: a fit run does not fit a step whose model file exists
    // (unless forced; a corrupt one is moved aside and refitted), and a
    // transform reads the model of a step that has none in memory.
    let mut from_disk = vec![false; n];
    for (i, step) in info.steps.iter_mut().enumerate() {
        let wanted = match info.mode {
            Mode::Transform => step.model.is_none(),
            Mode::Fit | Mode::FitTransform => !force,
        };
        let Some(path) = options
            .model_path(&step.name)
            .filter(|_| wanted && step.requires_fit())
        else {
            continue;
        };
        match cp::read(&path) {
            Ok(bytes) => match step.op.decode_model(&step.name, &bytes) {
                Ok(model) => {
                    step.model = Some(model);
                    from_disk[i] = true;
                }
                Err(e) => {
                    drop(bytes);
                    let aside = cp::quarantine(&path).map_err(|e| ckpt_error(&step.name, e))?;
                    warnings.push(format!(
                        "{e}; model file moved aside to {} and refitted",
                        aside.display()
                    ));
                }
            },
            Err(cp::Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ckpt_error(&step.name, e)),
        }
    }

    let mut plan = CheckpointPlan::without_disk(options, &info.steps, inputs.len());
    plan.from_disk = from_disk;
    plan.warnings = warnings;
    info.checkpoint = Some(Arc::new(plan.clone()));
    // A partition may start from step s only if nothing before s is lost by
    // skipping it: no step up to s is refitted in this run (its outputs, and
    // all later ones, are stale) and none writes an attribute (attributes are
    // not in checkpoints).
    let first_fit = (0..n).find(|&i| info.fits(i)).unwrap_or(n);
    let first_attr = (0..n)
        .find(|&i| info.steps[i].op.checkpoint_extension().is_none())
        .unwrap_or(n);
    let usable_end = first_fit.min(first_attr).min(info.transform_end());

    // A run that did not finish may have left temp files: only then walk the
    // step folders to remove them (a walk costs more than the run's own checks).
    let layout = options.layout();
    if layout.features_dir().join(RUN_MARKER).exists() {
        for (step, _) in info.steps.iter().zip(&plan.saves).filter(|(_, s)| **s) {
            cp::clean_temps(&layout.step_dir(&step.name), true)
                .map_err(|e| ckpt_error(&step.name, e))?;
        }
        if let Some(dir) = options.models_folder() {
            cp::clean_temps(dir, false).map_err(|source| Error::CheckpointFolder {
                source: Box::new(source),
            })?;
        }
    }

    let exts: Vec<&str> = info
        .steps
        .iter()
        .map(|s| s.op.checkpoint_extension().unwrap_or(""))
        .collect();
    let dirs: Vec<PathBuf> = info
        .steps
        .iter()
        .map(|s| layout.step_dir(&s.name))
        .collect();
    // What is on disk for one partition: a `stat` per key and step (a walk of
    // the step folders costs more on most file systems, and far more on NFS).
    let survey = |p: usize| -> Result<(Option<usize>, Vec<StepStats>)> {
        let keys = inputs[p].keys()?;
        // A key that cannot be a file name fails the run now, not after hours.
        let bases = keys
            .iter()
            .map(|key| {
                layout
                    .relative(key, "")
                    .map_err(|source| Error::CheckpointFolder {
                        source: Box::new(source),
                    })
            })
            .collect::<Result<Vec<String>>>()?;
        let mut stats = vec![StepStats::default(); n];
        let mut start = None;
        let mut failed_before = vec![false; keys.len()];
        let mut path = PathBuf::new();
        for i in (0..n).filter(|&i| plan.saves[i]) {
            let mut complete = true;
            for (k, base) in bases.iter().enumerate() {
                let mut has = |ext: &str| {
                    path.clone_from(&dirs[i]);
                    path.push(format!("{base}{ext}"));
                    path.is_file()
                };
                if has(exts[i]) {
                    stats[i].on_disk += 1;
                } else if has(cp::FAILED_EXT) {
                    stats[i].known_failed += 1;
                    failed_before[k] = true;
                } else if !failed_before[k] {
                    complete = false;
                }
            }
            if complete && !force && i < usable_end {
                start = Some(i);
            }
        }
        Ok((start, stats))
    };
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let surveys: Vec<Result<Vec<Survey>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.min(inputs.len()).max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let p = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if p >= inputs.len() {
                            return Ok(mine);
                        }
                        let (start, stats) = survey(p)?;
                        mine.push((p, start, stats));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    for part in surveys {
        for (p, start, stats) in part? {
            plan.starts[p] = start;
            for (total, s) in plan.stats.iter_mut().zip(stats) {
                total.on_disk += s.on_disk;
                total.known_failed += s.known_failed;
            }
        }
    }
    Ok(plan)
}
