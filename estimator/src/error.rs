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
    /// An error of the run: of a task, the executor, checkpoints, a model.
    #[error(transparent)]
    Run(bob_pipelines_graph::Error),
    /// An error about samples or their attributes.
    #[error("{0}")]
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
    /// A fitted model asked for as a type it is not.
    #[error(
        "step `{step}`: its model is not a {asked}; it is the `Fitted` type of estimator {estimator}"
    )]
    ModelType {
        /// The step.
        step: String,
        /// The type asked for.
        asked: &'static str,
        /// The step's estimator.
        estimator: &'static str,
    },
    /// Zero partitions or a partition size of zero.
    #[error("bad partitioning: {0}")]
    Partitioning(String),
    /// Loading a delayed sample set failed.
    #[error("loading sample set {key:?} failed: {source}")]
    SetLoad {
        /// The set.
        key: Key,
        /// Why.
        source: Box<bob_pipelines_sample::Error>,
    },
}

impl From<bob_pipelines_graph::Error> for Error {
    /// A step's own error comes back as it was raised (an executor that
    /// wraps no task around it, such as `in-memory`); any other is the run's.
    fn from(e: bob_pipelines_graph::Error) -> Self {
        match e {
            bob_pipelines_graph::Error::Step(inner) => match inner.downcast::<Error>() {
                Ok(mine) => *mine,
                Err(other) => Error::Run(bob_pipelines_graph::Error::Step(other)),
            },
            e => Error::Run(e),
        }
    }
}

pub(crate) fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}
