//! The error type of this crate.

use std::path::PathBuf;

use bob_pipelines_sample::{BoxError, Key};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong when an executor runs a program.
///
/// Every variant a user can hit names the thing: step, task, sample keys,
/// file, executor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A step's own error: its estimator's, or how it met the samples (an
    /// extra argument, an attribute). It names the step, and the sample
    /// where one is at fault.
    #[error(transparent)]
    Step(BoxError),
    /// Transforming with a step that needs a fit before it has one.
    #[error("step `{step}` is not fitted: call fit or fit_transform first (or load its model)")]
    NotFitted {
        /// The step.
        step: String,
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
    /// A datum could not become bytes, or bytes a datum, on the wire.
    #[error("sample {key:?}: {source}")]
    Codec {
        /// The sample.
        key: Key,
        /// What the codec said.
        source: bob_pipelines_checkpoint::CodecError,
    },
    /// Bytes that are not a partition of the expected type.
    #[error("not a partition of {expected}: {reason}")]
    Partition {
        /// The partition type expected.
        expected: &'static str,
        /// Why.
        reason: String,
    },
    /// A list of inputs added to a run has a bad name.
    #[error(
        "input list `{name}`: {why}; name each list once, with letters, digits, `_` and `-` (`enroll`, `dev-probe`)"
    )]
    InputList {
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// The caller's iterator of samples ended before the length it gave
    /// (an `ExactSizeIterator` whose `len` is wrong): partition
    /// `partition`, samples `start..end`, got only `got` of them.
    #[error(
        "the input ended early: its length said {promised} samples, but partition {partition} \
         (samples {start}..{end}) got {got}; the iterator's `len` (`size_hint`) is wrong: \
         fix it, or collect the samples into a `Vec` first"
    )]
    InputShort {
        /// The partition that came up short.
        partition: usize,
        /// Its first sample's position in the input.
        start: usize,
        /// Past its last.
        end: usize,
        /// How many samples it got.
        got: usize,
        /// The input's length, as its iterator said.
        promised: usize,
    },
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
    /// Two input samples of a checkpointed run share a key: they would write
    /// and read the same files.
    #[error(
        "samples {first} and {second} (counting from 0) share key {key:?}: in a checkpointed \
         run a key names one sample's files; give every sample a key of its own"
    )]
    DuplicateKey {
        /// The key.
        key: Key,
        /// The first sample's position in the input.
        first: usize,
        /// The second's.
        second: usize,
    },
    /// A step's checkpoints were written by another version of it (or of a
    /// step before it), and the checkpoints say to stop rather than compute
    /// them again.
    #[error(
        "step `{step}`: its checkpoints in {} were written by another version of it ({}); \
         remove that folder, or checkpoint with `on_change(OnChange::Recompute)`, to compute \
         them again",
        dir.display(),
        changes.join("; ")
    )]
    Changed {
        /// The step.
        step: String,
        /// What changed, in words.
        changes: Vec<String>,
        /// Its checkpoint folder.
        dir: PathBuf,
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
        path: PathBuf,
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
    /// The executor itself failed (not a task).
    #[error("executor `{executor}`: {source}")]
    Executor {
        /// The executor's name.
        executor: String,
        /// What went wrong and what to do (the executor's own error).
        source: BoxError,
    },
    /// Something this crate or an executor guarantees did not hold.
    #[error("{what} (a bug in bob-pipelines: please report it with this message)")]
    Bug {
        /// What did not hold.
        what: String,
    },
}

impl Error {
    /// An executor's error, with the executor's name.
    pub fn executor(executor: &str, source: impl Into<BoxError>) -> Self {
        Error::Executor {
            executor: executor.to_owned(),
            source: source.into(),
        }
    }

    /// A broken guarantee.
    pub fn bug(what: impl Into<String>) -> Self {
        Error::Bug { what: what.into() }
    }

    /// A caught panic of task `task` (of step `step`, on a partition whose
    /// first keys are `keys`, of `samples` samples); `payload` is what
    /// `catch_unwind` gave.
    pub fn panicked(
        task: &str,
        step: Option<&str>,
        (keys, samples): (Vec<Key>, usize),
        payload: &(dyn std::any::Any + Send),
    ) -> Self {
        let message = panic_message(payload);
        Error::TaskPanicked {
            task: task.to_owned(),
            keys,
            samples,
            message: match step {
                Some(step) => format!("{message} (in step `{step}`)"),
                None => message,
            },
        }
    }

    /// The key of the sample this error is about, where a stacked batch
    /// named one (a datum of another shape than the others).
    pub fn odd_sample(&self) -> Option<&Key> {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = next {
            if let Some(bob_pipelines_sample::Error::Shape { key, .. }) =
                e.downcast_ref::<bob_pipelines_sample::Error>()
            {
                return Some(key);
            }
            // A transparent wrapper's `source` is its inner error's source:
            // look at the inner error itself too.
            next = match e.downcast_ref::<Error>() {
                Some(Error::Step(inner)) => Some(&**inner),
                _ => e.source(),
            };
        }
        None
    }
}

/// What a caught panic said.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".to_owned())
}

/// Which samples a task had, for its errors: its partition's first keys and
/// how many samples there were.
fn samples(keys: &[Key], samples: usize) -> String {
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
