//! Workspace-wide tests of bob-pipelines; this library only doctests the root
//! README, so that its tour always compiles and runs.
#![doc = include_str!("../../README.md")]
