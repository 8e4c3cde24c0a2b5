//! What scheduler and workers say to each other once the handshake
//! ([`crate::wire`]) has authenticated both ends.
//!
//! Every message is one MessagePack frame. Data never goes inside a message:
//! a message announces how many raw frames follow it (partitions as their
//! [`PartitionCodec`](bob_pipelines_estimator::PartitionCodec) bytes, models
//! as their serde bytes), so a partition is written to the socket straight
//! from the buffer that holds it, and read into one buffer of its own.

use std::io::{Read, Write};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::wire::{WireError, encode, read_frame, write_frame};

/// What a task does on a worker: the step and the operation. Tasks are sent
/// by kind, not by the driver's graph index, so a worker needs no graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Op {
    /// Fit step `step` on the partitions that follow (its inputs).
    Fit {
        /// The step.
        step: u32,
    },
    /// Transform the partition that follows with step `step`.
    Transform {
        /// The step.
        step: u32,
    },
}

/// Scheduler → worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// The model of step `step` follows (one frame); sent once per worker.
    Model {
        /// The step.
        step: u32,
    },
    /// Run a task; `inputs` partitions follow.
    Run {
        /// The driver's id of the task, echoed in the answer.
        task: u32,
        /// What to do.
        op: Op,
        /// How many frames follow.
        inputs: u32,
    },
    /// The scheduler is alive.
    Heartbeat,
    /// No more work for this worker: exit.
    Shutdown,
}

/// Worker → scheduler.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// A task finished; its result follows (one frame: the transformed
    /// partition, or the fitted model).
    Done {
        /// The driver's id of the task.
        task: u32,
        /// Samples transformed.
        samples: u64,
        /// Samples that failed in it.
        failed: u64,
        /// How long it ran, in microseconds.
        micros: u64,
    },
    /// A task failed.
    Failed {
        /// The driver's id of the task.
        task: u32,
        /// The error, with its step and sample.
        error: String,
    },
    /// The worker is alive.
    Heartbeat,
}

/// Frames after the handshake: a partition may be large, and the peer has
/// proved it holds the run's secret.
pub(crate) const MAX_DATA_FRAME: usize = u32::MAX as usize;

/// Messages (not data) stay small.
const MAX_MESSAGE: usize = 1 << 20;

/// Writes a message and the frames that go with it (not flushed).
pub(crate) fn put<T: Serialize>(
    w: &mut impl Write,
    msg: &T,
    frames: &[&[u8]],
) -> Result<(), WireError> {
    write_frame(w, &encode(msg)?)?;
    for f in frames {
        write_frame(w, f)?;
    }
    Ok(())
}

/// Reads a message.
pub(crate) fn get<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> Result<T, WireError> {
    let mut buf = Vec::new();
    read_frame(r, MAX_MESSAGE, &mut buf)?;
    rmp_serde::from_slice(&buf).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Reads `n` data frames.
pub(crate) fn get_frames(r: &mut impl Read, n: u32) -> Result<Vec<Vec<u8>>, WireError> {
    (0..n)
        .map(|_| {
            let mut buf = Vec::new();
            read_frame(r, MAX_DATA_FRAME, &mut buf)?;
            Ok(buf)
        })
        .collect()
}

/// Whether a read failed because the peer said nothing for the read timeout.
pub(crate) fn is_timeout(e: &WireError) -> bool {
    matches!(e, WireError::Io(io) if matches!(
        io.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ))
}

/// The environment a launcher gives a worker: everything but the secret.
pub(crate) mod env {
    /// The secret file's path.
    pub(crate) const SECRET_FILE: &str = "BOB_PIPELINES_SECRET_FILE";
    /// The fingerprint of the program the driver runs (16 hex digits):
    /// a worker runs earlier computes of its program itself.
    pub(crate) const PROGRAM: &str = "BOB_PIPELINES_PROGRAM";
    /// The worker's name: its job id.
    pub(crate) const JOB_ID: &str = "BOB_PIPELINES_JOB_ID";
    /// How many threads it runs tasks on.
    pub(crate) const THREADS: &str = "BOB_PIPELINES_WORKER_THREADS";
    /// The resources it provides, comma-separated.
    pub(crate) const RESOURCES: &str = "BOB_PIPELINES_WORKER_RESOURCES";
    /// Its heartbeat interval, in milliseconds.
    pub(crate) const HEARTBEAT_MS: &str = "BOB_PIPELINES_HEARTBEAT_MS";
    /// How long it waits for a silent scheduler before it exits, in milliseconds.
    pub(crate) const DEATH_TIMEOUT_MS: &str = "BOB_PIPELINES_DEATH_TIMEOUT_MS";
}

/// A duration as whole milliseconds, for the environment.
pub(crate) fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}
