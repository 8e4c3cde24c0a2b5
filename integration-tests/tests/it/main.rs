//! Workspace-wide tests, through the facade only, built as one test binary.

mod checkpoint;
mod crash;
mod distributed;
mod seed;
mod sge;
