#![doc = include_str!("../README.md")]

mod batch;
mod ckpt;
mod error;
mod lazy;
mod outputs;
mod pipeline;
mod plan;
mod step;
mod traits;
mod wire;

pub use batch::Batch;
pub use bob_pipelines_checkpoint as checkpoint;
pub use bob_pipelines_sample::BoxError;
pub use ckpt::{Checkpoints, SaveRules};
pub use error::{Error, Op, Result};
pub use lazy::{Lazy, RUN_MARKER};
pub use outputs::{
    Failed, LOAD_STEP, Outputs, RanOn, Report, SampleSource, SetOutputs, Slot, StepReport,
};
pub use pipeline::{Pipeline, SetSource, StepInfo};
pub use plan::{
    CheckpointPlan, Executed, Executor, InMemory, InputPartition, Loaded, MAX_AUTO_PARTITION,
    MIN_AUTO_PARTITION, Metas, Mode, Partitioning, Plan, PlanInfo, PlanStep, StepStats, WORKER_ENV,
    is_worker,
};
pub use step::{
    AnyPartition, BuiltStep, CodecName, Counts, DynStep, Fitting, FromAttr, FromData, InputAdapter,
    IntoStep, Kind, Model, Options, OutputAdapter, Stateless, Step, StepOptions, ToAttr, ToData,
    marker,
};
pub use traits::{Failure, Fit, SampleResult, Tags, Transformer};
pub use wire::{PartitionCodec, Wire};
