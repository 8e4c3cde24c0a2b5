#![doc = include_str!("../README.md")]

mod checkpoints;
mod data;
mod error;
mod execution;
mod graph;
mod in_memory;
mod program;
mod report;

pub use checkpoints::{Checkpoints, RUN_MARKER, RunMarker};
pub use data::{
    AnyDatum, AnyPartition, AnySlot, Counts, DataCodec, Entry, Failed, Model, ModelCodec, Slot,
    data_codec, first_keys, model_codec,
};
pub use error::{Error, Result};
pub use execution::{Done, Execution, name_checkpoint_input, save_model, save_outputs};
pub use graph::{DryRun, DryRunStep, ModelSource, Task, TaskGraph, TaskKind, program_fingerprint};
pub use in_memory::InMemory;
pub use program::{
    CheckpointPlan, Executed, Executor, InputPartition, Loaded, Metas, Mode, OnDisk,
    PartitionSource, Plan, Program, ProgramStep, Serve, StepOp, StepOptions, WORKER_ENV, is_worker,
};
pub use report::{RanOn, Report, StepReport};
