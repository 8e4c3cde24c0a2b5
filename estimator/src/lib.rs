#![doc = include_str!("../README.md")]

mod batch;
mod error;
mod lazy;
mod outputs;
mod pipeline;
mod plan;
mod step;
mod traits;

pub use batch::Batch;
pub use bob_pipelines_sample::BoxError;
pub use error::{Error, Op, Result};
pub use lazy::Lazy;
pub use outputs::{Failed, LOAD_STEP, Outputs, Report, SampleSource, SetOutputs, Slot, StepReport};
pub use pipeline::{Pipeline, SetSource, StepInfo};
pub use plan::{
    Executed, Executor, InMemory, InputPartition, Loaded, MAX_AUTO_PARTITION, MIN_AUTO_PARTITION,
    Mode, Partitioning, Plan, PlanInfo, PlanStep,
};
pub use step::{
    AnyPartition, BuiltStep, Counts, DynStep, Fitting, FromAttr, FromData, InputAdapter, IntoStep,
    Kind, Model, Options, OutputAdapter, Stateless, Step, StepOptions, ToAttr, ToData, marker,
};
pub use traits::{Failure, Fit, SampleResult, Tags, Transformer};
