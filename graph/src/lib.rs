#![doc = include_str!("../README.md")]

mod graph;
mod job;

pub use graph::{DryRun, ModelSource, StepPlan, Task, TaskGraph, TaskKind, program_fingerprint};
pub use job::{Done, Job, name_checkpoint_input, save_model, save_outputs};
