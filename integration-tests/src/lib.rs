//! Workspace-wide tests of bob-pipelines; this library only doctests the root
//! README and the migration guide, so that their examples always compile and run.
#![doc = include_str!("../../README.md")]

/// The migration guide (`docs/from-bob-pipelines.md`), doctested.
#[doc = include_str!("../../docs/from-bob-pipelines.md")]
pub mod from_bob_pipelines {}
