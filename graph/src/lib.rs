#![doc = include_str!("../README.md")]

mod graph;
mod job;

pub use graph::{DryRun, ModelSource, StepPlan, Task, TaskGraph, TaskKind};
pub use job::{Done, Job};
