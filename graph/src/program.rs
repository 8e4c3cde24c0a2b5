//! What executors receive: a pipeline run with its types erased.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bob_pipelines_sample::{Key, Meta};

use crate::checkpoints::{Checkpoints, SaveRules};
use crate::data::{AnyPartition, Counts, DataCodec, Failed, Model, ModelCodec};
use crate::report::{Report, StepReport};
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

/// How a step meets samples: extra arguments, resource tags, checkpointing.
/// Set by the pipeline author on a step (or by the estimator's own tags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepOptions {
    /// `(argument, attribute)` pairs passed to transform.
    pub transform_extra: Vec<(String, String)>,
    /// `(argument, attribute)` pairs passed to fit.
    pub fit_extra: Vec<(String, String)>,
    /// The resource the fit task needs.
    pub fit_tag: Option<String>,
    /// The resource the transform tasks need.
    pub transform_tag: Option<String>,
    /// Whether the step asked for (`Some(true)`) or against checkpoints.
    pub checkpoint: Option<bool>,
}

/// A step's fit and transform with its types erased: what executors run.
/// Partitions and models are `Any`; the typed pipeline guarantees they fit,
/// and a mismatch is an error, never a panic.
pub trait StepOp: Send + Sync {
    /// Fits on the valid samples of all `inputs` partitions.
    ///
    /// # Errors
    /// The estimator's error ([`Error::Step`]), naming the step.
    fn fit(&self, name: &str, opts: &StepOptions, inputs: &[&AnyPartition]) -> Result<Model>;

    /// Transforms one partition.
    ///
    /// # Errors
    /// The estimator's error ([`Error::Step`]), naming the step (and the
    /// sample where one is at fault); [`Error::NotFitted`] without a model.
    fn transform(
        &self,
        name: &str,
        opts: &StepOptions,
        model: Option<&Model>,
        input: AnyPartition,
    ) -> Result<(AnyPartition, Counts)>;
}

/// One step of a program: its name, erased operations, how its outputs and
/// model become bytes, its options and its current model.
#[derive(Clone)]
pub struct ProgramStep {
    pub(crate) name: String,
    type_name: &'static str,
    op: Arc<dyn StepOp>,
    output: Arc<dyn DataCodec>,
    checkpoints: bool,
    models: Option<Arc<dyn ModelCodec>>,
    pub(crate) opts: StepOptions,
    pub(crate) model: Option<Model>,
}

impl std::fmt::Debug for ProgramStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgramStep")
            .field("name", &self.name)
            .field("type", &self.type_name)
            .field("output", &self.output)
            .field("opts", &self.opts)
            .field("fitted", &self.model.is_some())
            .finish()
    }
}

impl ProgramStep {
    /// A stateless step named `name` running `op` (estimator `type_name`),
    /// whose outputs are data of `output`'s type, checkpointable.
    pub fn new(
        name: impl Into<String>,
        type_name: &'static str,
        op: Arc<dyn StepOp>,
        output: Arc<dyn DataCodec>,
    ) -> Self {
        ProgramStep {
            name: name.into(),
            type_name,
            op,
            output,
            checkpoints: true,
            models: None,
            opts: StepOptions::default(),
            model: None,
        }
    }

    /// The step is fitted, and its models become bytes through `models`.
    #[must_use]
    pub fn fitted(mut self, models: Arc<dyn ModelCodec>) -> Self {
        self.models = Some(models);
        self
    }

    /// Whether its outputs can be checkpointed (not when they go to an
    /// attribute: a checkpoint holds data, and the datum did not change).
    #[must_use]
    pub fn checkpointable(mut self, yes: bool) -> Self {
        self.checkpoints = yes;
        self
    }

    /// With these options.
    #[must_use]
    pub fn options(mut self, opts: StepOptions) -> Self {
        self.opts = opts;
        self
    }

    /// With the model it has before the run.
    #[must_use]
    pub fn model(mut self, model: Option<Model>) -> Self {
        self.model = model;
        self
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The estimator's type name.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// Whether the step is fitted before it transforms.
    pub fn requires_fit(&self) -> bool {
        self.models.is_some()
    }

    /// The step's options.
    pub fn opts(&self) -> &StepOptions {
        &self.opts
    }

    /// How the step's outputs become bytes: files and the wire.
    pub fn output(&self) -> &dyn DataCodec {
        &*self.output
    }

    /// The extension of the step's checkpoint files; `None` when the step
    /// cannot checkpoint (its output goes to an attribute).
    pub fn checkpoint_extension(&self) -> Option<&'static str> {
        self.checkpoints.then(|| self.output.extension())
    }

    /// The model the step has before the run.
    pub fn current_model(&self) -> Option<&Model> {
        self.model.as_ref()
    }

    /// Fits on all `inputs` partitions.
    ///
    /// # Errors
    /// The estimator's error, naming the step.
    pub fn fit(&self, inputs: &[&AnyPartition]) -> Result<Model> {
        self.op.fit(&self.name, &self.opts, inputs)
    }

    /// Transforms one partition with `model` (the one fitted in this run, or the
    /// step's own).
    ///
    /// # Errors
    /// The estimator's error, naming the step.
    pub fn transform(
        &self,
        model: Option<&Model>,
        input: AnyPartition,
    ) -> Result<(AnyPartition, Counts)> {
        self.op.transform(&self.name, &self.opts, model, input)
    }

    fn model_codec(&self) -> Result<&dyn ModelCodec> {
        self.models.as_deref().ok_or_else(|| Error::Model {
            step: self.name.clone(),
            action: "used",
            reason: "the step is stateless and has no model".to_owned(),
        })
    }

    /// A model as MessagePack.
    ///
    /// # Errors
    /// [`Error::Model`].
    pub fn encode_model(&self, model: &Model) -> Result<Vec<u8>> {
        self.model_codec()?.encode(&self.name, model)
    }

    /// A model from MessagePack.
    ///
    /// # Errors
    /// [`Error::Model`].
    pub fn decode_model(&self, bytes: &[u8]) -> Result<Model> {
        self.model_codec()?.decode(&self.name, bytes)
    }
}

/// What a run finds on disk and will write: decided once, before the graph.
#[derive(Debug, Clone)]
pub struct CheckpointPlan {
    pub(crate) options: Checkpoints,
    pub(crate) saves: Vec<bool>,
    pub(crate) from_disk: Vec<bool>,
    pub(crate) starts: Vec<Option<usize>>,
    pub(crate) stats: Vec<OnDisk>,
    pub(crate) warnings: Vec<String>,
    pub(crate) rules: Vec<SaveRules>,
}

/// What is on disk for one step, counted over this run's samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OnDisk {
    /// Samples whose output file is there.
    pub on_disk: usize,
    /// Samples with no output but a failure marker of this step.
    pub known_failed: usize,
}

impl CheckpointPlan {
    /// Which steps write checkpoints: those not switched off whose output is
    /// the datum (an attribute is not a checkpoint).
    pub(crate) fn saving_steps(steps: &[ProgramStep]) -> Vec<bool> {
        steps
            .iter()
            .map(|s| s.opts.checkpoint != Some(false) && s.checkpoint_extension().is_some())
            .collect()
    }

    /// The plan of a run that has not looked at the disk: which steps save
    /// and how, nothing read, every partition from its input. What a worker
    /// process uses: the driver alone surveys the disk and decides.
    pub fn without_disk(options: &Checkpoints, steps: &[ProgramStep], npartitions: usize) -> Self {
        let n = steps.len();
        let saves = Self::saving_steps(steps);
        let saving: Vec<String> = (0..n)
            .filter(|&i| saves[i])
            .map(|i| steps[i].name.clone())
            .collect();
        let rules = (0..n)
            .map(|i| SaveRules {
                later: (i + 1..n)
                    .filter(|&j| saves[j])
                    .map(|j| {
                        (
                            steps[j].name.clone(),
                            steps[j].checkpoint_extension().unwrap_or(""),
                        )
                    })
                    .collect(),
                saving: saving.clone(),
            })
            .collect();
        CheckpointPlan {
            options: options.clone(),
            saves,
            from_disk: vec![false; n],
            starts: vec![None; npartitions],
            stats: vec![OnDisk::default(); n],
            warnings: Vec::new(),
            rules,
        }
    }

    /// The options.
    pub fn options(&self) -> &Checkpoints {
        &self.options
    }

    /// Whether step `i` writes checkpoints in this run.
    pub fn saves(&self, i: usize) -> bool {
        self.saves[i]
    }

    /// Whether step `i`'s model was read from its model file (no fit).
    pub fn model_from_disk(&self, i: usize) -> bool {
        self.from_disk[i]
    }

    /// The step whose checkpoint partition `p` is loaded from (`None`: from
    /// the input samples). Work before it is pruned.
    pub fn start(&self, p: usize) -> Option<usize> {
        self.starts[p]
    }

    /// What is on disk for step `i`.
    pub fn stats(&self, i: usize) -> OnDisk {
        self.stats[i]
    }

    /// The file that holds step `i`'s output for `key`, when step `i`
    /// writes checkpoints.
    pub fn output_file(&self, steps: &[ProgramStep], i: usize, key: &str) -> Option<PathBuf> {
        let ext = steps[i].checkpoint_extension().filter(|_| self.saves[i])?;
        self.options
            .layout()
            .feature_path(&steps[i].name, key, ext)
            .ok()
    }

    /// The checkpointed steps up to and including `i` (whose failure markers
    /// count for a sample loaded at `i`).
    pub fn saving_steps_through(&self, steps: &[ProgramStep], i: usize) -> Vec<String> {
        (0..=i)
            .filter(|&s| self.saves[s])
            .map(|s| steps[s].name.clone())
            .collect()
    }
}

/// Everything about a run but its input data: its steps, mode, partition
/// lengths and checkpoint plan — what its task graph is built from, what
/// workers are sent, and what they compare (its fingerprint).
#[derive(Debug, Clone)]
pub struct Program {
    pub(crate) steps: Vec<ProgramStep>,
    pub(crate) mode: Mode,
    pub(crate) lens: Vec<usize>,
    pub(crate) checkpoint: Option<Arc<CheckpointPlan>>,
    pub(crate) input: Arc<dyn DataCodec>,
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
        Program {
            steps,
            mode,
            lens,
            checkpoint: None,
            input,
        }
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

    /// Steps `0..transform_end()` transform their partitions; a `fit` run stops
    /// at the last step it fits (nothing after it learns from its output).
    pub fn transform_end(&self) -> usize {
        match self.mode {
            Mode::Fit => (0..self.steps.len())
                .rev()
                .find(|&i| self.fits(i))
                .unwrap_or(0),
            _ => self.steps.len(),
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
        let end = self.transform_end();
        !(0..self.steps.len()).any(|i| self.fits(i))
            && ck.starts.iter().all(|start| {
                let first = start.map_or(0, |s| s + 1);
                !(first..end).any(|i| ck.saves[i])
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
    /// hands the run's program — steps, mode, partitions, checkpoint options,
    /// no data and nothing read from disk — to the executor instead of running
    /// it. A distributed executor serves its scheduler and ends the process
    /// there, or says that this compute comes before its driver's
    /// ([`Serve::Earlier`]). Any other executor cannot serve and says so.
    fn serve(&self, program: Program) -> Serve {
        let _ = program;
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

/// What [`Executor::serve`] did with a worker's program, when it returned.
#[must_use]
#[derive(Debug)]
pub enum Serve {
    /// The driver runs a later compute of the program: this one runs here,
    /// in this process, as it ran in the driver, and the worker goes on.
    Earlier,
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
    fn serve(&self, program: Program) -> Serve {
        (**self).serve(program)
    }
}

impl<E: Executor + ?Sized> Executor for Box<E> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn execute(&self, plan: Plan<'_>) -> Result<Executed> {
        (**self).execute(plan)
    }
    fn serve(&self, program: Program) -> Serve {
        (**self).serve(program)
    }
}
