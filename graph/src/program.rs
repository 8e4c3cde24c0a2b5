//! What executors receive: a pipeline run with its types erased.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bob_pipelines_sample::{Key, Meta};

use crate::checkpoints::CheckpointPlan;
use crate::data::{AnyPartition, DataCodec, Failed, Model};
use crate::report::{Report, StepReport};
use crate::step::ProgramStep;
use crate::{Error, Result};

/// Whether a run fits, transforms, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Fit every step that needs it; transform only what later fits learn from.
    Fit,
    /// Transform with existing models.
    Transform,
    /// Fit, then transform the same samples.
    FitTransform,
}

/// One list of input samples in a run: the first (the run's own, fitted on
/// in a `fit` or `fit_transform` run) or one transformed beside it in the
/// same graph (bob.bio's `dev-enroll`, `dev-probe`, … next to `train`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputList {
    /// Its name: empty for the first list unless it was named; the task ids
    /// of its partitions start with it (`probe:load-0`).
    pub name: String,
    /// Its partitions (indices into the run's partitions).
    pub partitions: std::ops::Range<usize>,
}

/// Everything about a run but its input data: its steps, mode, partition
/// lengths and checkpoint plan — what its task graph is built from, what
/// workers are sent, and what they compare (its fingerprint).
#[derive(Debug, Clone)]
pub struct Program {
    pub(crate) steps: Vec<ProgramStep>,
    pub(crate) mode: Mode,
    pub(crate) lens: Vec<usize>,
    /// The input lists, the first one's partitions first.
    pub(crate) lists: Vec<InputList>,
    pub(crate) checkpoint: Option<Arc<CheckpointPlan>>,
    pub(crate) input: Arc<dyn DataCodec>,
    /// Where the run's report files go, when the program says.
    pub(crate) report_dir: Option<PathBuf>,
}

impl Program {
    /// A program of `steps` run in `mode` over partitions of `lens` samples
    /// whose data `input` describes; it checkpoints nothing until told to.
    pub fn new(
        steps: Vec<ProgramStep>,
        mode: Mode,
        lens: Vec<usize>,
        input: Arc<dyn DataCodec>,
    ) -> Self {
        let lists = vec![InputList {
            name: String::new(),
            partitions: 0..lens.len(),
        }];
        Program {
            steps,
            mode,
            lens,
            lists,
            checkpoint: None,
            input,
            report_dir: None,
        }
    }

    /// Names the first input list (`train`): its task ids then start with
    /// the name, as the other lists' do.
    pub fn name_first_list(&mut self, name: &str) {
        self.lists[0].name = name.to_owned();
    }

    /// Adds a list of input samples, in partitions of `lens`, that the run
    /// transforms through every step, with the models fitted on the first
    /// list as soon as they exist; its outputs come after the first list's.
    /// Before the checkpoints are planned.
    ///
    /// # Errors
    /// [`Error::InputList`] when `name` is empty, not made of letters,
    /// digits, `_` and `-`, or already taken.
    pub fn add_list(&mut self, name: &str, lens: &[usize]) -> Result<()> {
        let bad = if name.is_empty() {
            Some("it is empty")
        } else if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            Some("only letters, digits, `_` and `-` may name a list")
        } else if self.lists.iter().any(|l| l.name == name) {
            Some("another list has this name")
        } else {
            None
        };
        if let Some(why) = bad {
            return Err(Error::InputList {
                name: name.to_owned(),
                why: why.to_owned(),
            });
        }
        let start = self.lens.len();
        self.lens.extend_from_slice(lens);
        self.lists.push(InputList {
            name: name.to_owned(),
            partitions: start..self.lens.len(),
        });
        Ok(())
    }

    /// The input lists: the first, then those added.
    pub fn lists(&self) -> &[InputList] {
        &self.lists
    }

    /// What the report says of the lists: nothing for a run of one.
    pub fn list_reports(&self) -> Vec<crate::report::ListReport> {
        if self.lists.len() < 2 {
            return Vec::new();
        }
        self.lists
            .iter()
            .enumerate()
            .map(|(i, l)| crate::report::ListReport {
                name: l.name.clone(),
                samples: self.lens[l.partitions.clone()].iter().sum(),
                partitions: l.partitions.len(),
                role: match (i, self.mode) {
                    (0, Mode::Fit) => "fit",
                    (0, Mode::FitTransform) => "fit, transform",
                    _ => "transform",
                }
                .to_owned(),
            })
            .collect()
    }

    /// The lists in a few words, for progress lines (`; lists: train 60,
    /// probe 40`): empty for a run of one list.
    pub fn lists_line(&self) -> String {
        let lists: Vec<String> = self
            .list_reports()
            .iter()
            .map(|l| {
                let name = if l.name.is_empty() {
                    "(first)"
                } else {
                    &l.name
                };
                format!("{name} {}", l.samples)
            })
            .collect();
        if lists.is_empty() {
            String::new()
        } else {
            format!("; lists: {}", lists.join(", "))
        }
    }

    /// The list partition `p` belongs to.
    pub fn list_of(&self, p: usize) -> usize {
        self.lists
            .iter()
            .position(|l| l.partitions.contains(&p))
            .unwrap_or(0)
    }

    /// Whether the run gives back list `list`'s outputs: every list's but
    /// the first's in a `fit` run.
    pub fn gives_back(&self, list: usize) -> bool {
        list > 0 || self.mode != Mode::Fit
    }

    /// Partition `p` goes through steps `0..end_of(p)`: every step, but
    /// for the first list in a `fit` run, which stops at the last step it
    /// fits.
    pub fn end_of(&self, p: usize) -> usize {
        if self.list_of(p) == 0 {
            self.first_end()
        } else {
            self.steps.len()
        }
    }

    fn first_end(&self) -> usize {
        match self.mode {
            Mode::Fit => (0..self.steps.len())
                .rev()
                .find(|&i| self.fits(i))
                .unwrap_or(0),
            _ => self.steps.len(),
        }
    }

    /// Writes the run's `report.json` and `report.html` into `dir` (created
    /// if need be) at its end, and when it fails: also for a run without
    /// checkpoints, or one that computes nothing. By default a checkpointed
    /// run writes them into its features folder, and a run without
    /// checkpoints writes none.
    pub fn report_to(&mut self, dir: PathBuf) {
        self.report_dir = Some(dir);
    }

    /// Where the program said the report files go.
    pub fn report_dir(&self) -> Option<&Path> {
        self.report_dir.as_deref()
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[ProgramStep] {
        &self.steps
    }

    /// Fit, transform or both.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The number of samples in each input partition.
    pub fn partition_lens(&self) -> &[usize] {
        &self.lens
    }

    /// The number of input partitions.
    pub fn npartitions(&self) -> usize {
        self.lens.len()
    }

    /// Whether step `i` is fitted in this run (not when its model file was read).
    pub fn fits(&self, i: usize) -> bool {
        self.mode != Mode::Transform
            && self.steps[i].requires_fit()
            && !self.checkpoint.as_ref().is_some_and(|c| c.from_disk[i])
    }

    /// How the input data becomes bytes (loaded partitions on the wire).
    pub fn input(&self) -> &dyn DataCodec {
        &*self.input
    }

    /// How the data that step `i` reads becomes bytes: the previous step's
    /// outputs, or the input's.
    pub fn input_of(&self, i: usize) -> &dyn DataCodec {
        match i.checked_sub(1) {
            Some(prev) => self.steps[prev].output(),
            None => self.input(),
        }
    }

    /// The checkpoint plan, when the pipeline checkpoints.
    pub fn checkpoint(&self) -> Option<&CheckpointPlan> {
        self.checkpoint.as_deref()
    }

    /// Steps `0..transform_end()` transform partitions; a `fit` run of one
    /// list stops at the last step it fits (nothing after it learns from its
    /// output). See [`end_of`](Self::end_of) for one partition.
    pub fn transform_end(&self) -> usize {
        if self.lists.len() > 1 {
            self.steps.len()
        } else {
            self.first_end()
        }
    }

    /// Whether a run of this plan writes nothing to disk: it fits no step,
    /// and no partition passes through a step that saves checkpoints (each
    /// starts from a checkpoint after which no step saves). Only a file
    /// found missing or corrupt while being read is then computed again
    /// and written.
    pub fn writes_nothing(&self) -> bool {
        let Some(ck) = self.checkpoint() else {
            return true;
        };
        !(0..self.steps.len()).any(|i| self.fits(i))
            && ck.starts.iter().enumerate().all(|(p, start)| {
                let first = start.map_or(0, |s| s + 1);
                !(first..self.end_of(p)).any(|i| ck.saves[i])
            })
    }

    /// Checks that every step that transforms without being fitted here has a model.
    ///
    /// # Errors
    /// [`Error::NotFitted`] naming the first such step.
    pub fn check_models(&self) -> Result<()> {
        for (i, s) in self.steps.iter().enumerate().take(self.transform_end()) {
            if s.requires_fit() && !self.fits(i) && s.model.is_none() {
                return Err(Error::NotFitted {
                    step: s.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// An empty report with one entry per step.
    pub fn empty_report(&self) -> Report {
        Report {
            steps: self
                .steps
                .iter()
                .map(|s| StepReport {
                    name: s.name.clone(),
                    fitted: false,
                    fit_time: Duration::ZERO,
                    transform_time: Duration::ZERO,
                    samples: 0,
                    failed: 0,
                    ran_on: Vec::new(),
                })
                .collect(),
            lists: self.list_reports(),
            warnings: self
                .checkpoint
                .as_ref()
                .map(|c| c.warnings.clone())
                .unwrap_or_default(),
            ..Report::default()
        }
    }
}

/// A loaded input partition: the slots and how many samples failed to load.
#[derive(Debug)]
pub struct Loaded {
    /// A `Vec<Slot<I>>`.
    pub partition: AnyPartition,
    /// Samples whose loader failed.
    pub load_failed: usize,
}

/// Where input partitions come from: the caller's samples, erased. Each
/// partition `p` is handed out once.
pub trait PartitionSource: Send + Sync {
    /// The keys of partition `p`'s samples, without loading them.
    ///
    /// # Errors
    /// [`Error::InputTaken`] when it was already handed out.
    fn keys(&self, p: usize) -> Result<Vec<Key>>;
    /// The keys of partition `p`'s first `n` samples, without loading
    /// them: by default the first `n` of [`keys`](Self::keys).
    ///
    /// # Errors
    /// [`Error::InputTaken`] when it was already handed out.
    fn first_keys(&self, p: usize, n: usize) -> Result<Vec<Key>> {
        let mut keys = self.keys(p)?;
        keys.truncate(n);
        Ok(keys)
    }
    /// Loads partition `p` (delayed samples are loaded now).
    ///
    /// # Errors
    /// [`Error::InputTaken`] when it was already handed out.
    fn load(&self, p: usize) -> Result<Loaded>;
    /// See [`InputPartition::split`].
    ///
    /// # Errors
    /// [`Error::InputTaken`] when it was already handed out.
    fn split(&self, p: usize, redo: &[usize]) -> Result<(Metas, AnyPartition)>;
    /// From now on, partitions passed over on the way to the one asked for
    /// are dropped instead of kept: a distributed worker loads only the
    /// partitions it is told to, and skips the others without holding them
    /// (a `Vec`, a range or `sample::indexed` skips for free; a `map`
    /// builds and drops each sample it skips, which for delayed samples
    /// loads nothing). A partition asked for after it was passed is then
    /// [`Error::InputTaken`]. By default sources keep them.
    fn drop_passed(&self) {}
    /// Partition `p` will never be asked for: its samples may go (a
    /// distributed driver whose workers loaded it, once its outputs are
    /// in). By default nothing happens.
    fn forget(&self, p: usize) {
        let _ = p;
    }
    /// The key and attributes of each sample of partition `p`, leaving the
    /// partition where it is (it may still be loaded or split): what
    /// rebuilding a lost partition from its checkpoint files needs. `None`
    /// (the default) when the source cannot tell without handing the
    /// partition out.
    ///
    /// # Errors
    /// [`Error::InputTaken`] when the partition was already handed out.
    fn metas(&self, p: usize) -> Result<Option<Metas>> {
        let _ = p;
        Ok(None)
    }
}

/// The key and attributes of each sample of a partition (or why it failed to
/// load); `None` where the sample is recomputed instead.
pub type Metas = Vec<Option<std::result::Result<Arc<Meta>, Failed>>>;

/// One input partition, loaded when an executor asks.
pub struct InputPartition<'a> {
    len: usize,
    index: usize,
    source: Arc<dyn PartitionSource + 'a>,
}

impl<'a> InputPartition<'a> {
    /// Partition `index` of `source`, of `len` samples.
    pub fn new(len: usize, index: usize, source: Arc<dyn PartitionSource + 'a>) -> Self {
        InputPartition { len, index, source }
    }

    /// How many samples.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no samples.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The keys of its samples, without loading them.
    ///
    /// # Errors
    /// [`Error::InputTaken`] when the partition was already handed out.
    pub fn keys(&self) -> Result<Vec<Key>> {
        self.source.keys(self.index)
    }

    /// The keys of its first `n` samples, without loading them.
    ///
    /// # Errors
    /// [`Error::InputTaken`] when the partition was already handed out.
    pub fn first_keys(&self, n: usize) -> Result<Vec<Key>> {
        self.source.first_keys(self.index, n)
    }

    /// Loads the samples (delayed samples are loaded now).
    ///
    /// # Errors
    /// [`Error::InputTaken`] when the partition was already handed out.
    pub fn load(self) -> Result<Loaded> {
        self.source.load(self.index)
    }

    /// For a partition whose outputs come from a checkpoint: the metadata of
    /// every sample except those at `redo`, which are loaded into a partition
    /// (`Vec<Slot<I>>`, in order) to be computed again.
    ///
    /// # Errors
    /// [`Error::InputTaken`] when the partition was already handed out.
    pub fn split(self, redo: &[usize]) -> Result<(Metas, AnyPartition)> {
        self.source.split(self.index, redo)
    }

    /// Its samples' keys and attributes, leaving it here (see
    /// [`PartitionSource::metas`]).
    ///
    /// # Errors
    /// [`Error::InputTaken`] when the partition was already handed out.
    pub fn metas(&self) -> Result<Option<Metas>> {
        self.source.metas(self.index)
    }

    /// See [`PartitionSource::drop_passed`]: it applies to every partition
    /// of the same source.
    pub fn drop_passed(&self) {
        self.source.drop_passed();
    }

    /// Drops the partition's samples without loading them (see
    /// [`PartitionSource::forget`]).
    pub fn forget(self) {
        self.source.forget(self.index);
    }
}

impl std::fmt::Debug for InputPartition<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputPartition")
            .field("index", &self.index)
            .field("len", &self.len)
            .finish()
    }
}

/// A run with its types erased: the program and its input partitions.
#[derive(Debug)]
pub struct Plan<'a> {
    /// Steps, mode, partition lengths and checkpoint plan.
    pub program: Program,
    /// The input partitions, in order.
    pub inputs: Vec<InputPartition<'a>>,
}

/// What an executor gives back.
#[derive(Debug)]
pub struct Executed {
    /// The output partitions (`Vec<Slot<O>>`), in input order; empty for a fit.
    pub parts: Vec<AnyPartition>,
    /// Each step's model after the run (fitted here, or as before).
    pub models: Vec<Option<Model>>,
    /// What happened.
    pub report: Report,
}

/// Runs plans: single-threaded, on a thread pool, on worker processes, on a cluster.
pub trait Executor: Send + Sync {
    /// The executor's name (`single-threaded`, `threads`, `local-parallel`, …).
    fn name(&self) -> String;

    /// Runs a plan.
    ///
    /// # Errors
    /// The first error of any task, naming its step (and sample where known).
    fn execute(&self, plan: Plan<'_>) -> Result<Executed>;

    /// In a worker process (one started with [`WORKER_ENV`] set), `compute`
    /// hands the run's plan — steps, mode, partitions, checkpoint options,
    /// nothing read from disk, and the inputs, not pulled yet — to the
    /// executor instead of running it. A distributed executor serves its
    /// scheduler (loading the input partitions it is told to) and ends the
    /// process there, or gives the plan back untouched when this compute
    /// comes before its driver's ([`Serve::Earlier`]). Any other executor
    /// cannot serve and says so.
    fn serve<'a>(&self, plan: Plan<'a>) -> Serve<'a> {
        drop(plan);
        Serve::Failed(Error::executor(
            &self.name(),
            format!(
                "this process was started as a distributed worker ({WORKER_ENV} is set), but \
                 the program computed on `{}`, which cannot serve a scheduler: a worker must \
                 reach the same distributed executor as its driver",
                self.name()
            ),
        ))
    }
}

/// What [`Executor::serve`] did with a worker's plan, when it returned.
#[must_use]
#[derive(Debug)]
pub enum Serve<'a> {
    /// The driver runs a later compute of the program: this one runs here,
    /// in this process, as it ran in the driver, and the worker goes on.
    /// The plan comes back as it was given.
    Earlier(Plan<'a>),
    /// Serving failed, or this executor cannot serve a scheduler.
    Failed(Error),
}

/// The environment variable that makes a process a distributed worker: the
/// scheduler's address, set by the launcher that started it.
pub const WORKER_ENV: &str = "BOB_PIPELINES_SCHEDULER";

/// Whether this process is a distributed worker ([`WORKER_ENV`] is set).
pub fn is_worker() -> bool {
    std::env::var_os(WORKER_ENV).is_some_and(|v| !v.is_empty())
}

impl std::fmt::Debug for dyn Executor + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Executor({})", self.name())
    }
}

impl<E: Executor + ?Sized> Executor for &E {
    fn name(&self) -> String {
        (**self).name()
    }
    fn execute(&self, plan: Plan<'_>) -> Result<Executed> {
        (**self).execute(plan)
    }
    fn serve<'a>(&self, plan: Plan<'a>) -> Serve<'a> {
        (**self).serve(plan)
    }
}

impl<E: Executor + ?Sized> Executor for Box<E> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn execute(&self, plan: Plan<'_>) -> Result<Executed> {
        (**self).execute(plan)
    }
    fn serve<'a>(&self, plan: Plan<'a>) -> Serve<'a> {
        (**self).serve(plan)
    }
}
