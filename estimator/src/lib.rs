#![doc = include_str!("../README.md")]

mod batch;
mod error;
mod outputs;
mod pipeline;
mod step;
mod traits;

pub use batch::Batch;
pub use bob_pipelines_sample::BoxError;
pub use error::{Error, Op, Result};
pub use outputs::{Failed, LOAD_STEP, Outputs, Report, SampleSource, SetOutputs, Slot, StepReport};
pub use pipeline::{Pipeline, SetSource, StepInfo};
pub use step::{
    BuiltStep, Fitting, FromAttr, FromData, InputAdapter, IntoStep, Kind, Options, OutputAdapter,
    Stateless, Step, ToAttr, ToData, marker,
};
pub use traits::{Failure, Fit, SampleResult, Tags, Transformer};
