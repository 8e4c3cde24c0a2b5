#![doc = include_str!("../README.md")]

mod checkpoints;
mod data;
mod error;
mod execution;
mod fast_hash;
mod graph;
mod in_memory;
mod program;
mod report;
mod step;
mod survey;

pub use checkpoints::{CheckpointPlan, Checkpoints, Lineage, OnChange, OnDisk};
pub use data::{
    AnyDatum, AnyPartition, AnySlot, Counts, DataCodec, Entry, Failed, Model, ModelCodec, Slot,
    data_codec, model_codec,
};
pub use error::{Error, Result, panic_message};
pub use execution::{
    Done, Execution, KEYS_SHOWN, Names, ReadCounts, SavedPartition, name_checkpoint_input,
    read_step_outputs, save_model, save_outputs,
};
pub use graph::{
    DryRun, DryRunList, DryRunStep, ModelSource, Task, TaskGraph, TaskKind, program_fingerprint,
};
pub use in_memory::InMemory;
pub use program::{
    Executed, Executor, InputPartition, Loaded, Metas, Mode, PartitionSource, Plan, Program, Serve,
    WORKER_ENV, is_worker,
};
pub use report::{
    FailedSample, ListReport, MAX_BARS, MAX_FAILURES, RanOn, Report, StepReport, TaskRecord,
    WorkerEvent, WorkerRecord,
};
pub use step::{ATTR_EXT, ProgramStep, StepOp, StepOptions};
pub use survey::{RUN_MARKER, RunMarker};
