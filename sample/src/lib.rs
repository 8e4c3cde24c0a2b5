#![doc = include_str!("../README.md")]

mod attrs;
mod batch;
pub mod bin;
mod database;
mod error;
mod indexed;
mod key;
mod sample;
mod set;

pub use attrs::{Attrs, DelayedAttr, Value, to_value};
pub use batch::{SampleBatch, Stack, Stacked, stack};
pub use database::{ColumnType, FileListDatabase};
pub use error::{BoxError, Error, Result};
pub use indexed::{Indexed, indexed};
pub use key::{Key, fnv64};
pub use sample::{DelayedSample, Meta, Sample};
pub use set::{DelayedSampleSet, SampleSet, SetMember};
