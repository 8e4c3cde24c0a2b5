//! What executors receive: a pipeline run with its types erased.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bob_pipelines_sample::{Key, Meta};

use crate::ckpt::{Checkpoints, SaveRules};
use crate::outputs::{Failed, Report, StepReport};
use crate::step::{AnyPartition, Counts, DynStep, Model, StepOptions};
use crate::wire::Wire;
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

/// How the input samples are cut into partitions (bob's `ToDaskBag` options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Partitioning {
    /// About 16 partitions of 256 to 16 384 samples each (one partition below
    /// 256 samples). It depends only on the number of samples — never on this
    /// machine — so every process that builds the same pipeline builds the same
    /// graph.
    #[default]
    Auto,
    /// About this many partitions (bob's `npartitions`): partitions of
    /// `ceil(n / k)` samples, as dask cuts them, so there may be fewer than `k`
    /// (5 samples in 4 partitions give 2 + 2 + 1).
    Count(usize),
    /// Partitions of this many samples (bob's `partition_size`).
    Size(usize),
}

/// The most samples [`Partitioning::Auto`] puts in one partition.
pub const MAX_AUTO_PARTITION: usize = 1 << 14;
/// The fewest samples [`Partitioning::Auto`] puts in one partition (when there
/// are that many): smaller tasks cost more in scheduling than they win.
pub const MIN_AUTO_PARTITION: usize = 256;

impl Partitioning {
    /// The lengths of the partitions of `n` samples, in order.
    ///
    /// # Errors
    /// [`Error::Partitioning`] for zero partitions or a partition size of zero.
    pub fn lengths(self, n: usize) -> Result<Vec<usize>> {
        let size = match self {
            Partitioning::Auto => n.div_ceil(16).clamp(MIN_AUTO_PARTITION, MAX_AUTO_PARTITION),
            Partitioning::Count(0) => {
                return Err(Error::Partitioning("npartitions must be at least 1".into()));
            }
            Partitioning::Size(0) => {
                return Err(Error::Partitioning(
                    "partition_size must be at least 1".into(),
                ));
            }
            Partitioning::Count(k) => n.div_ceil(k).max(1),
            Partitioning::Size(s) => s,
        };
        let mut lens = vec![size; n / size];
        if n % size != 0 {
            lens.push(n % size);
        }
        Ok(lens)
    }
}

/// One step of a plan: its name, erased operations, options and current model.
#[derive(Clone)]
pub struct PlanStep {
    pub(crate) name: String,
    pub(crate) op: Arc<dyn DynStep>,
    pub(crate) opts: StepOptions,
    pub(crate) model: Option<Model>,
}

impl std::fmt::Debug for PlanStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanStep")
            .field("name", &self.name)
            .field("type", &self.op.type_name())
            .field("opts", &self.opts)
            .field("fitted", &self.model.is_some())
            .finish()
    }
}

impl PlanStep {
    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The estimator's type name.
    pub fn type_name(&self) -> &'static str {
        self.op.type_name()
    }

    /// Whether the estimator is a [`Fit`](crate::Fit).
    pub fn requires_fit(&self) -> bool {
        self.op.requires_fit()
    }

    /// The step's options.
    pub fn options(&self) -> &StepOptions {
        &self.opts
    }

    /// How partitions of the step's outputs cross a process boundary.
    pub fn wire(&self) -> &Wire {
        self.op.wire()
    }

    /// The model the step has before the run.
    pub fn model(&self) -> Option<&Model> {
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

    /// Writes a transformed partition's outputs (and failure markers).
    ///
    /// # Errors
    /// [`Error::Checkpoint`].
    pub fn save_checkpoint(
        &self,
        plan: &CheckpointPlan,
        index: usize,
        part: &AnyPartition,
    ) -> Result<()> {
        self.op
            .save_checkpoint(&plan.options, &self.name, &plan.rules[index], part)
    }

    /// Reads this step's outputs for `keys` from its checkpoint: the data
    /// (erased) and the positions to recompute (missing or corrupt; corrupt
    /// files are moved aside, with a warning each).
    ///
    /// # Errors
    /// [`Error::Checkpoint`] for a file that exists but cannot be read.
    pub fn load_checkpoint(
        &self,
        ck: &Checkpoints,
        earlier: &[String],
        keys: &[Key],
        warnings: &mut Vec<String>,
    ) -> Result<(Box<dyn std::any::Any + Send>, Vec<usize>)> {
        self.op
            .load_checkpoint(ck, &self.name, earlier, keys, warnings)
    }

    /// A partition from [`load_checkpoint`](Self::load_checkpoint)'s data, the
    /// input samples' metadata and the recomputed samples.
    ///
    /// # Errors
    /// [`Error::WrongType`] when the pieces are not this step's.
    pub fn assemble_checkpoint(
        &self,
        loaded: Box<dyn std::any::Any + Send>,
        metas: Metas,
        recomputed: Option<AnyPartition>,
    ) -> Result<AnyPartition> {
        self.op
            .assemble_checkpoint(&self.name, loaded, metas, recomputed)
    }

    /// A model as MessagePack.
    ///
    /// # Errors
    /// [`Error::Model`].
    pub fn encode_model(&self, model: &Model) -> Result<Vec<u8>> {
        self.op.encode_model(&self.name, model)
    }

    /// A model from MessagePack.
    ///
    /// # Errors
    /// [`Error::Model`].
    pub fn decode_model(&self, bytes: &[u8]) -> Result<Model> {
        self.op.decode_model(&self.name, bytes)
    }
}

/// What a run finds on disk and will write: decided once, before the graph.
#[derive(Debug, Clone)]
pub struct CheckpointPlan {
    pub(crate) options: Checkpoints,
    pub(crate) saves: Vec<bool>,
    pub(crate) from_disk: Vec<bool>,
    pub(crate) starts: Vec<Option<usize>>,
    pub(crate) stats: Vec<StepStats>,
    pub(crate) warnings: Vec<String>,
    pub(crate) rules: Vec<SaveRules>,
}

/// What is on disk for one step, counted over this run's samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepStats {
    /// Samples whose output file is there.
    pub on_disk: usize,
    /// Samples with no output but a failure marker of this step.
    pub known_failed: usize,
}

impl CheckpointPlan {
    /// Which steps write checkpoints: those not switched off whose output is
    /// the datum (an attribute is not a checkpoint).
    pub(crate) fn saving_steps(steps: &[PlanStep]) -> Vec<bool> {
        steps
            .iter()
            .map(|s| s.opts.checkpoint != Some(false) && s.op.checkpoint_extension().is_some())
            .collect()
    }

    /// The plan of a run that has not looked at the disk: which steps save
    /// and how, nothing read, every partition from its input. What a worker
    /// process uses: the driver alone surveys the disk and decides.
    pub fn without_disk(options: &Checkpoints, steps: &[PlanStep], npartitions: usize) -> Self {
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
                            steps[j].op.checkpoint_extension().unwrap_or(""),
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
            stats: vec![StepStats::default(); n],
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
    pub fn stats(&self, i: usize) -> StepStats {
        self.stats[i]
    }

    /// The file that holds step `i`'s output for `key`, when step `i`
    /// writes checkpoints.
    pub fn output_file(&self, steps: &[PlanStep], i: usize, key: &str) -> Option<PathBuf> {
        let ext = steps[i]
            .op
            .checkpoint_extension()
            .filter(|_| self.saves[i])?;
        self.options
            .layout()
            .feature_path(&steps[i].name, key, ext)
            .ok()
    }

    /// The checkpointed steps up to and including `i` (whose failure markers
    /// count for a sample loaded at `i`).
    pub fn saving_steps_through(&self, steps: &[PlanStep], i: usize) -> Vec<String> {
        (0..=i)
            .filter(|&s| self.saves[s])
            .map(|s| steps[s].name.clone())
            .collect()
    }
}

/// Everything about a run but its input data: enough to build its task graph.
#[derive(Debug, Clone)]
pub struct PlanInfo {
    pub(crate) steps: Vec<PlanStep>,
    pub(crate) mode: Mode,
    pub(crate) lens: Vec<usize>,
    pub(crate) checkpoint: Option<Arc<CheckpointPlan>>,
    pub(crate) input_wire: Wire,
}

impl PlanInfo {
    /// The steps, in order.
    pub fn steps(&self) -> &[PlanStep] {
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

    /// How loaded input partitions cross a process boundary.
    pub fn input_wire(&self) -> &Wire {
        &self.input_wire
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
pub struct Loaded {
    /// A `Vec<Slot<I>>`.
    pub partition: AnyPartition,
    /// Samples whose loader failed.
    pub load_failed: usize,
}

/// Where input partitions come from: the caller's samples, erased.
pub(crate) trait PartitionSource: Send + Sync {
    fn keys(&self, p: usize) -> Result<Vec<Key>>;
    fn load(&self, p: usize) -> Result<Loaded>;
    fn split(&self, p: usize, redo: &[usize]) -> Result<(Metas, AnyPartition)>;
}

/// The key and attributes of each sample of a partition (or why it failed to
/// load); `None` where the sample is recomputed instead.
pub type Metas = Vec<Option<std::result::Result<Arc<Meta>, Failed>>>;

/// One input partition, loaded when an executor asks.
pub struct InputPartition<'a> {
    pub(crate) len: usize,
    pub(crate) index: usize,
    pub(crate) source: Arc<dyn PartitionSource + 'a>,
}

impl InputPartition<'_> {
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

/// A run with its types erased: steps, current models, input partitions.
#[derive(Debug)]
pub struct Plan<'a> {
    /// Steps, mode and partition lengths.
    pub info: PlanInfo,
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
    /// there; it never returns. Any other executor cannot serve and says so.
    fn serve(&self, program: PlanInfo) -> Error {
        let _ = program;
        Error::Executor {
            executor: self.name(),
            reason: format!(
                "this process was started as a distributed worker ({WORKER_ENV} is set), but \
                 the program computed on `{}`, which cannot serve a scheduler: a worker must \
                 reach the same distributed executor as its driver",
                self.name()
            ),
        }
    }
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
    fn serve(&self, program: PlanInfo) -> Error {
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
    fn serve(&self, program: PlanInfo) -> Error {
        (**self).serve(program)
    }
}

/// Runs a plan in the calling thread without building a task graph: each
/// partition streams through consecutive steps, and only a step fitted in the
/// run waits for all partitions. The leanest executor in memory; the reference
/// the others are compared with.
#[derive(Debug, Clone, Copy, Default)]
pub struct InMemory;

impl Executor for InMemory {
    fn name(&self) -> String {
        "in-memory".to_owned()
    }

    fn execute(&self, plan: Plan<'_>) -> Result<Executed> {
        let Plan { info, inputs } = plan;
        if info.checkpoint.is_some() {
            return Err(Error::Executor {
                executor: self.name(),
                reason: "it keeps everything in memory and writes no checkpoints; use \
                         `single-threaded` (or any task-graph executor) for a checkpointed pipeline"
                    .to_owned(),
            });
        }
        info.check_models()?;
        let start = Instant::now();
        let mut report = info.empty_report();
        let mut models: Vec<Option<Model>> = info.steps.iter().map(|s| s.model.clone()).collect();
        let stops: Vec<usize> = (0..info.steps.len()).filter(|&i| info.fits(i)).collect();
        let end = info.transform_end();
        let first_stage = stops.first().copied().unwrap_or(end).min(end);

        let mut parts = Vec::with_capacity(inputs.len());
        for input in inputs {
            let loaded = input.load()?;
            report.load_failed += loaded.load_failed;
            parts.push(through(
                &info,
                0..first_stage,
                loaded.partition,
                &models,
                &mut report,
            )?);
        }
        for (j, &stop) in stops.iter().enumerate() {
            let t0 = Instant::now();
            let refs: Vec<&AnyPartition> = parts.iter().collect();
            models[stop] = Some(info.steps[stop].fit(&refs)?);
            report.steps[stop].fitted = true;
            report.steps[stop].fit_time = t0.elapsed();
            let stage_end = stops.get(j + 1).copied().unwrap_or(end).min(end);
            if stop < stage_end {
                parts = parts
                    .into_iter()
                    .map(|p| through(&info, stop..stage_end, p, &models, &mut report))
                    .collect::<Result<_>>()?;
            }
        }
        if info.mode == Mode::Fit {
            parts.clear();
        }
        report.total = start.elapsed();
        Ok(Executed {
            parts,
            models,
            report,
        })
    }
}

fn through(
    info: &PlanInfo,
    steps: std::ops::Range<usize>,
    mut part: AnyPartition,
    models: &[Option<Model>],
    report: &mut Report,
) -> Result<AnyPartition> {
    for i in steps {
        let t0 = Instant::now();
        let (out, counts) = info.steps[i].transform(models[i].as_ref(), part)?;
        report.steps[i].add(counts, t0.elapsed());
        part = out;
    }
    Ok(part)
}
