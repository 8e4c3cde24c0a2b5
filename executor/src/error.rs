//! The error type of this crate.

use crate::wire::WireError;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in an executor of this crate, beside its tasks' own
/// errors (which stay the run's: [`Error::Run`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error of the run: a task's, a checkpoint's, a model's.
    #[error(transparent)]
    Run(#[from] bob_pipelines_graph::Error),
    /// A task failed on a distributed worker.
    #[error("on worker `{worker}`: {message}")]
    Remote {
        /// The worker's name (its job id).
        worker: String,
        /// The error, as the worker reported it.
        message: String,
    },
    /// The connection to a worker or to the scheduler failed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// What the executor cannot do, and what to do about it (a resource no
    /// worker provides, workers that cannot start or end before they
    /// connect, a second compute on a busy executor).
    #[error("{0}")]
    Cannot(String),
}

impl Error {
    /// This error as the run's, from executor `executor`: the run's own
    /// errors as they are, the executor's named after it.
    pub fn into_run(self, executor: &str) -> bob_pipelines_graph::Error {
        match self {
            Error::Run(e) => e,
            e => bob_pipelines_graph::Error::executor(executor, e),
        }
    }
}
