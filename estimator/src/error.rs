//! The error type of this crate.

use std::fmt;

use bob_pipelines_sample::{BoxError, Key};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which operation of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Fitting the estimator.
    Fit,
    /// Transforming samples.
    Transform,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Fit => "fit",
            Op::Transform => "transform",
        })
    }
}

/// What can go wrong when building or running a pipeline.
///
/// Every variant names the step, and where one sample is at fault, its key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A distributed worker reached a compute of its program that comes
    /// before the one its driver runs: the worker runs it in its own process,
    /// as the driver did, and goes on to the next (returned by
    /// [`Executor::serve`](crate::Executor::serve), handled by `Lazy::compute`).
    #[error("this worker's driver runs a later compute of the program; this one runs here")]
    EarlierCompute,
    /// An error about samples or their attributes.
    #[error(transparent)]
    Sample(#[from] bob_pipelines_sample::Error),
    /// The estimator asked for an extra argument that the step does not map.
    #[error(
        "step `{step}`: {op} asked for extra argument `{argument}`, which is not mapped to an \
         attribute (mapped: {}); map it with `.{op}_extra(\"{argument}\", \"<attribute>\")`",
        crate::error::list(.mapped)
    )]
    UnmappedExtra {
        /// The step.
        step: String,
        /// Fit or transform.
        op: Op,
        /// The argument the estimator asked for.
        argument: String,
        /// The arguments that are mapped.
        mapped: Vec<String>,
    },
    /// A sample lacks the attribute an extra argument maps to, or it has the wrong type.
    #[error("step `{step}`: extra argument `{argument}`: {source}")]
    Extra {
        /// The step.
        step: String,
        /// The argument.
        argument: String,
        /// The attribute error, naming the sample's key.
        source: Box<bob_pipelines_sample::Error>,
    },
    /// Reading the step's input from a sample attribute failed.
    #[error("step `{step}`: reading its input attribute: {source}")]
    InputAttr {
        /// The step.
        step: String,
        /// The attribute error, naming the sample's key.
        source: Box<bob_pipelines_sample::Error>,
    },
    /// Storing the step's output into a sample attribute failed.
    #[error(
        "step `{step}`: storing its output in attribute `{attribute}` of sample {key:?}: {source}"
    )]
    OutputAttr {
        /// The step.
        step: String,
        /// The attribute.
        attribute: String,
        /// The sample.
        key: Key,
        /// Why.
        source: Box<bob_pipelines_sample::Error>,
    },
    /// The estimator's own code failed for the whole batch.
    #[error("step `{step}`: {op} failed: {source}")]
    Estimator {
        /// The step.
        step: String,
        /// Fit or transform.
        op: Op,
        /// The estimator's error.
        source: BoxError,
    },
    /// A transformer returned a different number of results than it was given samples.
    #[error(
        "step `{step}`: transform returned {got} results for {expected} samples; a transformer \
         must return exactly one result (Ok or a Failure) per sample, in order"
    )]
    OutputCount {
        /// The step.
        step: String,
        /// How many samples it was given.
        expected: usize,
        /// How many results it returned.
        got: usize,
    },
    /// Transforming with a step that needs a fit before it has one.
    #[error("step `{step}` is not fitted: call fit or fit_transform first (or load its model)")]
    NotFitted {
        /// The step.
        step: String,
    },
    /// An option name that nothing understands.
    #[error("step `{step}`: unknown option `{option}`; valid options: {}", crate::error::list(.valid))]
    UnknownOption {
        /// The step.
        step: String,
        /// The option.
        option: String,
        /// The options that exist.
        valid: Vec<String>,
    },
    /// An option that the step would not use (bob raises on leftover `wrap` arguments).
    #[error("option `{option}` is not used by step `{step}`: {reason}")]
    UnusedOption {
        /// The step.
        step: String,
        /// The option.
        option: String,
        /// Why it would be ignored.
        reason: String,
    },
    /// An option value of the wrong form.
    #[error("step `{step}`: option `{option}`: {reason}")]
    BadOption {
        /// The step.
        step: String,
        /// The option.
        option: String,
        /// What form was expected.
        reason: String,
    },
    /// Two steps with the same explicit name.
    #[error(
        "two steps are named `{name}`; step names must be unique (rename one with `.name(..)`)"
    )]
    DuplicateStep {
        /// The name.
        name: String,
    },
    /// No step of that name.
    #[error("the pipeline has no step named `{name}`; its steps: {}", crate::error::list(.steps))]
    UnknownStep {
        /// The name asked for.
        name: String,
        /// The step names.
        steps: Vec<String>,
    },
    /// A fitted model could not be encoded or decoded.
    #[error("step `{step}`: the fitted model could not be {action}: {reason}")]
    Model {
        /// The step.
        step: String,
        /// `"encoded"` or `"decoded"`.
        action: &'static str,
        /// Why.
        reason: String,
    },
    /// A partition of the wrong data type reached a step: a bug in whatever fed it.
    #[error("step `{step}` was given data of the wrong type (expected {expected}); this is a bug")]
    WrongType {
        /// The step.
        step: String,
        /// The type it expected.
        expected: &'static str,
    },
    /// Zero partitions or a partition size of zero.
    #[error("bad partitioning: {0}")]
    Partitioning(String),
    /// An input partition was asked for twice.
    #[error("input partition {partition} was already loaded; inputs are handed out once per run")]
    InputTaken {
        /// The partition.
        partition: usize,
    },
    /// Writing or reading a checkpoint failed (after every retry).
    #[error("step `{step}`: checkpoint: {source}")]
    Checkpoint {
        /// The step.
        step: String,
        /// What the checkpoint layer said (naming the key or file).
        source: Box<bob_pipelines_checkpoint::Error>,
    },
    /// The features or models folder itself (not one step's files) failed.
    #[error("checkpoints: {source}")]
    CheckpointFolder {
        /// What the checkpoint layer said (naming the file or key).
        source: Box<bob_pipelines_checkpoint::Error>,
    },
    /// A partition could not cross a process boundary.
    #[error("partition on the wire: {reason}")]
    Wire {
        /// Why (naming the sample where one is at fault).
        reason: String,
    },
    /// A task of a task graph failed.
    #[error("task `{task}`{}: {source}", crate::error::samples(.keys, *.samples))]
    Task {
        /// The task's id (`<step>.transform-3`).
        task: String,
        /// The first keys of its partition (none for a fit, or when unknown).
        keys: Vec<Key>,
        /// How many samples it had.
        samples: usize,
        /// Why.
        source: Box<Error>,
    },
    /// A task panicked.
    #[error("task `{task}`{} panicked: {message}", crate::error::samples(.keys, *.samples))]
    TaskPanicked {
        /// The task's id (step, operation, partition).
        task: String,
        /// The first keys of its partition (none for a fit, or when unknown).
        keys: Vec<Key>,
        /// How many samples it had.
        samples: usize,
        /// The panic's message.
        message: String,
    },
    /// A step failed on a sample that was read from a checkpoint file: the
    /// file may hold another version's output.
    #[error(
        "{source}; sample {key:?} was read from checkpoint file {}: if another version of step \
         `{step}` wrote it, delete the file (or run with `Checkpoints::force`) to compute it again",
        path.display()
    )]
    FromCheckpoint {
        /// The step's error.
        source: Box<Error>,
        /// The sample it names.
        key: Key,
        /// The step whose output the file holds.
        step: String,
        /// The file.
        path: std::path::PathBuf,
    },
    /// A task failed on a distributed worker.
    #[error("on worker `{worker}`: {message}")]
    Remote {
        /// The worker's name (its job id).
        worker: String,
        /// The error, as the worker reported it.
        message: String,
    },
    /// The executor itself failed (not a task).
    #[error("executor `{executor}`: {reason}")]
    Executor {
        /// The executor's name.
        executor: String,
        /// What went wrong and what to do.
        reason: String,
    },
    /// Loading a delayed sample set failed.
    #[error("loading sample set {key:?} failed: {source}")]
    SetLoad {
        /// The set.
        key: Key,
        /// Why.
        source: Box<bob_pipelines_sample::Error>,
    },
}

/// Which samples a task had, for its errors: its partition's first keys and
/// how many samples there were.
pub(crate) fn samples(keys: &[Key], samples: usize) -> String {
    match keys {
        [] if samples == 0 => String::new(),
        [] => format!(" ({samples} samples)"),
        keys => {
            let shown: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
            let more = if samples > keys.len() { " …" } else { "" };
            format!(" (samples {}{more} of {samples})", shown.join(", "))
        }
    }
}

impl Error {
    /// The key of the sample this error is about, where a stacked batch
    /// named one (a datum of another shape than the others).
    pub fn odd_sample(&self) -> Option<&Key> {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = next {
            // `Error::Sample` is transparent: its `source` skips the sample
            // error itself.
            let sample = match e.downcast_ref::<Error>() {
                Some(Error::Sample(inner)) => Some(inner),
                _ => e.downcast_ref::<bob_pipelines_sample::Error>(),
            };
            if let Some(bob_pipelines_sample::Error::Shape { key, .. }) = sample {
                return Some(key);
            }
            next = e.source();
        }
        None
    }
}

pub(crate) fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}
