//! Sample-based, checkpointed, distributable machine-learning pipelines: the
//! Rust counterpart of Python's [bob.pipelines].
//!
//! Researchers run scikit-learn style pipelines over *samples* — a datum plus a
//! key and metadata — on millions of samples. A step's estimator sees a
//! [`Batch`](estimator::Batch) of data; the pipeline keeps keys and attributes
//! with every datum, passes attributes to estimators as *extra arguments*, and
//! lets single samples fail without failing the run.
//!
//! # Concepts
//! - [`sample`]: [`Sample<T>`](sample::Sample), [`DelayedSample`](sample::DelayedSample),
//!   [`SampleSet`](sample::SampleSet), [`SampleBatch`](sample::SampleBatch) and
//!   CSV file-list databases.
//! - [`estimator`]: the [`Transformer`](estimator::Transformer) and
//!   [`Fit`](estimator::Fit) traits, [`Step`](estimator::Step) options and
//!   [`Pipeline`](estimator::Pipeline), whose `fit`, `transform` and
//!   `fit_transform` return a [`Lazy`](estimator::Lazy) run.
//! - [`checkpoint`]: crash-safe per-sample files — layout, `.npy` and
//!   MessagePack codecs, atomic writes; a pipeline uses them through
//!   [`Checkpoints`](estimator::Checkpoints).
//! - [`graph`]: the executor interface — a run with its types erased
//!   ([`Program`](graph::Program)), the [`Executor`] trait,
//!   the [`TaskGraph`](graph::TaskGraph) of a run (partitions, fit and
//!   transform tasks, resource tags, a fingerprint, DOT and SVG) and the
//!   [`Execution`](graph::Execution) that runs its tasks; read it to write an
//!   executor.
//! - [`executor`]: what computes a run — [`SingleThreaded`](executor::SingleThreaded),
//!   a work-stealing [`ThreadPool`](executor::ThreadPool), executors
//!   the distributed scheduler with worker processes, progress bars.
//! - [`sge`]: workers as SGE (Grid Engine) jobs, bob's queue specs.
//! - [`slurm`]: workers as Slurm jobs, partition specs.
//! - [`grid`]: what both share (specs, job scripts, job bookkeeping) and
//!   `~/.config/bobrc.toml`.
//! - [`by_name`]: every executor by bob's `dask.client` names (`single-threaded`,
//!   `local-parallel`, `sge`, `sge-gpu`, `slurm`, …).
//!
//! # Example
//!
//! The example of bob.pipelines' documentation: ten samples of a 2×2 zero
//! matrix, a stateless transformer that receives the `metadata` attribute as an
//! extra argument, then a transformer that learns a matrix and multiplies by it.
//!
//! ```
//! use bob_pipelines::prelude::*;
//! use ndarray::{Array2, array};
//! use serde::{Deserialize, Serialize};
//!
//! struct MyTransformer;
//! impl Transformer for MyTransformer {
//!     type Input = Array2<f64>;
//!     type Output = Array2<f64>;
//!     fn transform(&self, batch: &Batch<'_, Array2<f64>>) -> Result<Vec<SampleResult<Array2<f64>>>, BoxError> {
//!         let metadata: Vec<i64> = batch.extra("metadata")?;
//!         Ok(batch.iter().zip(metadata).map(|(x, _m)| Ok(x.clone())).collect())
//!     }
//! }
//!
//! struct MyFitTransformer;
//! #[derive(Serialize, Deserialize)]
//! struct Fitted { model: Array2<f64> }
//! impl Fit for MyFitTransformer {
//!     type Input = Array2<f64>;
//!     type Fitted = Fitted;
//!     fn fit(&self, _: &Batch<'_, Array2<f64>>) -> Result<Fitted, BoxError> {
//!         Ok(Fitted { model: array![[1.0, 2.0], [3.0, 4.0]] })
//!     }
//! }
//! impl Transformer for Fitted {
//!     type Input = Array2<f64>;
//!     type Output = Array2<f64>;
//!     fn transform(&self, batch: &Batch<'_, Array2<f64>>) -> Result<Vec<SampleResult<Array2<f64>>>, BoxError> {
//!         Ok(batch.iter().map(|x| Ok(x.dot(&self.model))).collect())
//!     }
//! }
//!
//! let samples: Vec<_> = (0..10)
//!     .map(|i| Sample::new(i.to_string(), Array2::<f64>::zeros((2, 2))).with_attr("metadata", 1))
//!     .collect();
//! let mut pipeline = Pipeline::new()
//!     .then(Step::new(MyTransformer).transform_extra("metadata", "metadata"))
//!     .then(MyFitTransformer);
//! let executor = bob_pipelines::by_name("threads")?;
//! let out = pipeline.fit_transform(samples).compute(&executor)?;
//! assert_eq!(out.samples().count(), 10);
//! assert_eq!(pipeline.step_names(), ["mytransformer", "myfittransformer"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Feature flags
//! - `linfa`: the `linfa` module, linfa estimators as steps
//!   (off by default: it adds linfa's crates to the build).
//! - `failpoints`: for crash tests only — named moments of checkpoint writes
//!   where a process can be made to die (`checkpoint::failpoint`).
//!
//! [bob.pipelines]: https://gitlab.idiap.ch/bob/bob.pipelines

#[doc(inline)]
pub use bob_pipelines_checkpoint as checkpoint;
#[doc(inline)]
pub use bob_pipelines_estimator as estimator;
#[doc(inline)]
pub use bob_pipelines_executor as executor;
#[doc(inline)]
pub use bob_pipelines_graph as graph;
#[doc(inline)]
pub use bob_pipelines_grid as grid;
#[doc(inline)]
pub use bob_pipelines_sample as sample;
#[doc(inline)]
pub use bob_pipelines_sge as sge;
#[doc(inline)]
pub use bob_pipelines_slurm as slurm;

/// linfa estimators as pipeline steps (feature `linfa`), and the linfa
/// crates they come from: [`bob_pipelines_linfa`]'s adapters plus
/// `linfa` itself, `preprocessing`, `reduction` and `logistic`.
#[cfg(feature = "linfa")]
pub mod linfa {
    pub use ::linfa as core;
    pub use bob_pipelines_linfa::*;
    pub use linfa_logistic as logistic;
    pub use linfa_preprocessing as preprocessing;
    pub use linfa_reduction as reduction;
}

mod args;
pub use args::RunArgs;

use estimator::Executor;

/// An executor name that does not exist, or a cluster's executor (SGE,
/// Slurm) that cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// No executor has this name.
    #[error("unknown executor `{name}`; valid executors: {}", all_names().join(", "))]
    Unknown {
        /// The name given.
        name: String,
    },
    /// A cluster's executor (SGE, Slurm) whose settings (bobrc) cannot be
    /// read.
    #[error(transparent)]
    Grid(#[from] grid::Error),
}

/// Every executor name, for messages and `--help`.
pub fn all_names() -> Vec<&'static str> {
    executor::NAMES
        .iter()
        .chain(sge::NAMES)
        .chain(slurm::NAMES)
        .copied()
        .collect()
}

/// The executor called `name`, as bob's `dask.client` names: those of
/// [`executor::by_name`] (`single-threaded`, `local-parallel`, `local-pN`,
/// `threads`, `threads-pN`, `in-memory`), bob's SGE ones (`sge`,
/// `sge-gpu`, `sge-io-big`, `sge-demanding`; see [`sge::by_name`]) and the
/// Slurm ones (`slurm`, `slurm-gpu`; see [`slurm::by_name`]).
///
/// # Errors
/// [`ExecutorError::Unknown`] listing the valid names; [`ExecutorError::Grid`]
/// when bobrc cannot be read.
pub fn by_name(name: &str) -> Result<Box<dyn Executor>, ExecutorError> {
    if let Some(sge) = sge::by_name(name) {
        return Ok(Box::new(sge?));
    }
    if let Some(slurm) = slurm::by_name(name) {
        return Ok(Box::new(slurm?));
    }
    executor::by_name(name).map_err(|e| ExecutorError::Unknown { name: e.name })
}

/// The executor named by `BOB_PIPELINES_EXECUTOR`, or `default` when it is
/// unset or blank.
///
/// # Errors
/// As [`by_name`].
pub fn from_env(default: &str) -> Result<Box<dyn Executor>, ExecutorError> {
    by_name(&executor::name_from_env(default))
}

/// The names most programs need: `use bob_pipelines::prelude::*;`.
pub mod prelude {
    pub use crate::estimator::{
        Batch, BoxError, Checkpoints, Executor, Failure, Fit, InMemory, Lazy, Outputs, Pipeline,
        SampleResult, Step, Tags, Transformer,
    };
    pub use crate::executor::{SingleThreaded, ThreadPool};
    pub use crate::graph::TaskGraph;
    pub use crate::sample::{
        DelayedSample, DelayedSampleSet, Key, Sample, SampleBatch, SampleSet, indexed,
    };
    pub use crate::{RunArgs, by_name, from_env};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bobs_sge_names_are_executors_and_unknown_names_list_them() {
        for name in [
            "sge",
            "sge-gpu",
            "sge-io-big",
            "sge-demanding",
            "slurm",
            "slurm-gpu",
        ] {
            assert_eq!(by_name(name).unwrap().name(), name);
        }
        assert_eq!(by_name("local-p3").unwrap().name(), "local-p3");
        let e = by_name("sge-quantum").unwrap_err().to_string();
        assert!(
            e.contains("sge-gpu") && e.contains("slurm-gpu") && e.contains("local-parallel"),
            "{e}"
        );
    }
}
