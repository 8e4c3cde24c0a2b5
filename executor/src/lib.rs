#![doc = include_str!("../README.md")]

mod dag;
pub mod dashboard;
pub mod distributed;
mod error;
mod local;
mod names;
mod progress;
mod sync;
pub mod wire;

pub use error::{Error, Result};
pub use local::{SingleThreaded, ThreadPool};
pub use names::{ENV, NAMES, UnknownExecutor, by_name, from_env, name_from_env};
pub use progress::{Bars, Progress, Silent};
