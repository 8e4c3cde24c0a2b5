#![doc = include_str!("../README.md")]

mod batch;
mod closures;
mod error;
mod lazy;
mod outputs;
mod partitioning;
mod pipeline;
mod step;
mod traits;

pub use batch::{Batch, DATA};
pub use bob_pipelines_graph::{
    Checkpoints, Executor, Failed, InMemory, OnChange, Report, Slot, StepReport,
};
pub use bob_pipelines_sample::BoxError;
pub use closures::{FnStep, how};
pub use error::{Error, Op, Result};
pub use lazy::Lazy;
pub use outputs::{IntoSlots, LOAD_STEP, Outputs, SampleSource, SetOutputs};
pub use partitioning::{MAX_AUTO_PARTITION, Partitioning};
pub use pipeline::{Pipeline, SetSource, StepInfo};
pub use step::{
    Fitting, FromAttr, FromData, InputAdapter, IntoStep, Kind, Options, OutputAdapter, Stateless,
    Step, ToAttr, ToData,
};
// What `IntoStep` names but a pipeline author never writes.
#[doc(hidden)]
pub use step::{BuiltStep, marker};
pub use traits::{CodecName, Failure, Fit, SampleResult, Tags, Transformer};
