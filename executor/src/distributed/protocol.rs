//! What scheduler and workers say to each other once the handshake
//! ([`crate::wire`]) has authenticated both ends.
//!
//! Every message is one MessagePack frame. Data never goes inside a message:
//! a message announces how many raw frames follow it (partitions as their
//! [`DataCodec`](bob_pipelines_graph::DataCodec) bytes, models
//! as their serde bytes), so a partition is written to the socket straight
//! from the buffer that holds it, and read into one buffer of its own.
//!
//! Messages are compact MessagePack: a struct's fields by position, not by
//! name ([`frame_into`]). The scheduler reads and writes a message per task:
//! names were a third of each message's bytes and of its decoding. Read by
//! position, a message whose fields change must change
//! [`PROTOCOL`](crate::wire::PROTOCOL), which the handshake compares (it
//! keeps names, so a peer of another version is told so plainly).

use std::io::{Read, Write};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use bob_pipelines_graph::{Counts, ReadCounts, WORKER_ENV};

use serde::{Deserialize, Serialize};

use crate::wire::{WireError, read_frame, write_frame};

/// What a task does on a worker: the step and the operation. Tasks are sent
/// by kind, not by the driver's graph index, so a worker needs no graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum TaskOp {
    /// Load input partition `partition` from this process's own inputs,
    /// or, with `from`, its outputs of step `from` from the checkpoint files
    /// (computing again the samples whose file is missing or damaged).
    Load {
        /// The partition.
        partition: u32,
        /// The step whose checkpointed outputs it reads.
        from: Option<u32>,
    },
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

/// Where one input of a task is, for the worker that runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Input {
    /// The next data frame after the message.
    Sent,
    /// This worker holds task `task`'s output; `last`: no other task needs
    /// it, so a transform may take it.
    Here {
        /// The task whose output it is.
        task: u32,
        /// Whether this is its last reader.
        last: bool,
    },
    /// The worker whose peer port is `addr` holds task `task`'s output.
    Peer {
        /// The task whose output it is.
        task: u32,
        /// That worker's peer address, `host:port`.
        addr: String,
    },
}

/// [`ReadCounts`] on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReadStats {
    from_checkpoints: u64,
    recomputed: u64,
    load_failed: u64,
    known_failed: u64,
    /// Step, samples, failed, microseconds.
    steps: Vec<(u32, u64, u64, u64)>,
    warnings: Vec<String>,
}

impl From<ReadCounts> for ReadStats {
    fn from(r: ReadCounts) -> Self {
        let wide = |n: usize| n as u64;
        ReadStats {
            from_checkpoints: wide(r.from_checkpoints),
            recomputed: wide(r.recomputed),
            load_failed: wide(r.load_failed),
            known_failed: wide(r.known_failed),
            steps: r
                .steps
                .into_iter()
                .map(|(s, c, t)| {
                    let micros = u64::try_from(t.as_micros()).unwrap_or(u64::MAX);
                    (s as u32, wide(c.samples), wide(c.failed), micros)
                })
                .collect(),
            warnings: r.warnings,
        }
    }
}

impl From<ReadStats> for ReadCounts {
    fn from(r: ReadStats) -> Self {
        let narrow = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        ReadCounts {
            from_checkpoints: narrow(r.from_checkpoints),
            recomputed: narrow(r.recomputed),
            load_failed: narrow(r.load_failed),
            known_failed: narrow(r.known_failed),
            steps: r
                .steps
                .into_iter()
                .map(|(s, samples, failed, micros)| {
                    let counts = Counts {
                        samples: narrow(samples),
                        failed: narrow(failed),
                    };
                    (s as usize, counts, Duration::from_micros(micros))
                })
                .collect(),
            warnings: r.warnings,
        }
    }
}

/// Worker → worker, on the peer port, after the handshake: send task
/// `task`'s output. The answer is a [`Held`], and a frame when it is there.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Fetch {
    /// The task whose output is asked for.
    pub(crate) task: u32,
}

/// The answer to a [`Fetch`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Held {
    /// The partition's bytes follow.
    Here,
    /// This worker does not hold it (any more).
    Missing,
}

/// What a worker does with a task's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Output {
    /// Keep it: other tasks read it (here or from other workers).
    Keep,
    /// Send it to the driver: an output of the run.
    Send,
    /// Neither: an output of the run that the driver reads back from its
    /// checkpoint files.
    Drop,
}

/// A transform chained after a task in the same [`ToWorker::Run`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Next {
    /// The driver's id of the task.
    pub(crate) task: u32,
    /// What it does.
    pub(crate) op: TaskOp,
    /// What becomes of its output.
    pub(crate) output: Output,
}

/// Scheduler → worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// The model of step `step` follows (one frame); sent once per worker.
    Model {
        /// The step.
        step: u32,
    },
    /// Run a task; one frame follows for each input that is
    /// [`Input::Sent`].
    Run {
        /// The driver's id of the task, echoed in the answer.
        task: u32,
        /// What to do.
        op: TaskOp,
        /// Where its inputs are, in order.
        inputs: Vec<Input>,
        /// What becomes of the output. A fit's model is always sent.
        output: Output,
        /// Transforms to run right after it, each on the previous one's
        /// output (which it takes): one message for a partition's chain of
        /// steps. Each is answered on its own; when one cannot run, the
        /// rest are dropped (the scheduler sends them again).
        then: Vec<Next>,
    },
    /// Drop task `task`'s output: no task needs it any more.
    Free {
        /// The task.
        task: u32,
    },
    /// Send task `task`'s output, which this worker holds, to the driver
    /// (the worker is leaving: what it holds must not leave with it).
    Hand {
        /// The task.
        task: u32,
    },
    /// The scheduler is alive.
    Heartbeat,
    /// No more work for this worker: exit.
    Shutdown,
    /// This compute is over; the driver keeps this worker (its job) in case
    /// the program computes again: wait, up to the death timeout, for
    /// [`Again`](Self::Again); leave quietly if it does not come.
    Wait,
    /// The program's next compute starts: start again in place (same
    /// process, same job), replay the computes up to the one served, and
    /// connect to the same scheduler at the next.
    Again,
}

/// Worker → scheduler.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// A task finished; when `shipped`, its result follows (one frame: the
    /// transformed partition, or the fitted model), else the worker keeps it.
    Done {
        /// The driver's id of the task.
        task: u32,
        /// Samples transformed (or loaded).
        samples: u64,
        /// Samples that failed in it (or failed to load).
        failed: u64,
        /// How long it ran, in microseconds.
        micros: u64,
        /// When it ended, in microseconds after this worker's handshake:
        /// the driver places the run in its task stream by the worker's
        /// clock, not by when the answer reached it (a chain's answers go
        /// out together, and a busy driver reads them late).
        ended_us: u64,
        /// A load's first keys, for the driver's errors.
        keys: Vec<String>,
        /// Whether a frame follows.
        shipped: bool,
        /// What a load from checkpoint files read, for the report.
        read: Option<ReadStats>,
    },
    /// This worker's input had already gone past the partition of load
    /// `task` (inputs are read forward only): the driver loads it.
    CannotLoad {
        /// The driver's id of the task.
        task: u32,
    },
    /// Input `input` of `task` could not be had from the worker that held
    /// it (or was gone from this one's memory).
    Unreachable {
        /// The driver's id of the task.
        task: u32,
        /// The task whose output it is.
        input: u32,
        /// Why.
        error: String,
    },
    /// A connection to this worker's peer port was refused (no proof of the
    /// run's secret, garbage, or too many at once).
    Refused {
        /// Who connected, and why it was refused.
        what: String,
    },
    /// A task failed.
    Failed {
        /// The driver's id of the task.
        task: u32,
        /// The error, with its step and sample.
        error: String,
    },
    /// The output of task `task` that [`ToWorker::Hand`] asked for: one
    /// frame follows when `held` (else it was gone from this worker).
    Handed {
        /// The task.
        task: u32,
        /// Whether it was there (and a frame follows).
        held: bool,
    },
    /// The worker was asked to leave soon (its job's time limit is near:
    /// Slurm's `--signal`, SGE's `s_rt`): it finishes what it runs, and
    /// gives back what it has not started.
    Draining,
    /// A run the worker will not start (it is draining): task `task` and
    /// those chained after it go back to the scheduler.
    Returned {
        /// The driver's id of the run's first task.
        task: u32,
    },
    /// The worker is alive, and holds this much memory.
    Heartbeat {
        /// Its resident memory now, in bytes (0: unknown).
        rss: u64,
        /// Its peak resident memory, in bytes (0: unknown).
        peak: u64,
    },
}

/// Frames after the handshake: a partition may be large, and the peer has
/// proved it holds the run's secret.
pub(crate) const MAX_DATA_FRAME: usize = u32::MAX as usize;

/// Messages (not data) stay small.
pub(crate) const MAX_MESSAGE: usize = 1 << 20;

/// Writes a message and the frames that go with it (not flushed).
pub(crate) fn put<T: Serialize>(
    w: &mut impl Write,
    msg: &T,
    frames: &[&[u8]],
) -> Result<(), WireError> {
    let mut header = Vec::new();
    frame_into(&mut header, msg)?;
    w.write_all(&header)?;
    for f in frames {
        write_frame(w, f)?;
    }
    Ok(())
}

/// Appends `msg` to `buf` as one frame: its length, then the message,
/// compact (fields by position), written in place.
pub(crate) fn frame_into<T: Serialize>(buf: &mut Vec<u8>, msg: &T) -> Result<(), WireError> {
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    if let Err(e) = rmp_serde::encode::write(buf, msg) {
        buf.truncate(at);
        return Err(WireError::Malformed(e.to_string()));
    }
    let Ok(len) = u32::try_from(buf.len() - at - 4) else {
        buf.truncate(at);
        return Err(WireError::Malformed("a message over 4 GiB".to_owned()));
    };
    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
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

/// The contract between the scheduler, a launcher and a worker: every
/// variable a worker reads, written and read here alone, with one set of
/// defaults. The scheduler writes the run's part ([`run_vars`](Self::run_vars));
/// a launcher adds each worker's ([`worker_vars`](Self::worker_vars)); the
/// worker reads them all ([`from_env`](Self::from_env)). The secret itself is
/// never in the environment: only its file's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerEnv {
    /// The scheduler's address, `host:port`, or `unix:@<name>` on one
    /// machine ([`WORKER_ENV`]).
    pub scheduler: String,
    /// The secret file's path.
    pub secret_file: PathBuf,
    /// The fingerprint of the program the driver runs: a worker runs
    /// earlier computes of its program itself.
    pub program: Option<u64>,
    /// How often the worker says it is alive.
    pub heartbeat: Duration,
    /// How long it waits for a silent scheduler before it exits.
    pub death_timeout: Duration,
    /// Its name: its job id.
    pub job_id: Option<String>,
    /// How many threads it runs tasks on.
    pub threads: NonZeroUsize,
    /// The resources it provides.
    pub resources: Vec<String>,
    /// How long it may live (its job's time limit), if it is limited.
    pub lifetime: Option<Duration>,
}

impl WorkerEnv {
    const SECRET_FILE: &'static str = "BOB_PIPELINES_SECRET_FILE";
    const PROGRAM: &'static str = "BOB_PIPELINES_PROGRAM";
    /// The variable that names a worker: its job id.
    pub const JOB_ID: &'static str = "BOB_PIPELINES_JOB_ID";
    const THREADS: &'static str = "BOB_PIPELINES_WORKER_THREADS";
    const RESOURCES: &'static str = "BOB_PIPELINES_WORKER_RESOURCES";
    const HEARTBEAT_MS: &'static str = "BOB_PIPELINES_HEARTBEAT_MS";
    const DEATH_TIMEOUT_MS: &'static str = "BOB_PIPELINES_DEATH_TIMEOUT_MS";
    const LIFETIME_MS: &'static str = "BOB_PIPELINES_WORKER_LIFETIME_MS";
    /// Set by a worker that starts itself again for the driver's next
    /// compute: the fingerprint of the compute it served. That one and
    /// every compute before it are earlier computes; the first after it is
    /// the driver's.
    pub(crate) const AFTER: &'static str = "BOB_PIPELINES_AFTER";

    /// The heartbeat interval unless told otherwise.
    pub const HEARTBEAT: Duration = Duration::from_secs(1);
    /// How long a worker waits for a silent scheduler unless told otherwise.
    pub const DEATH_TIMEOUT: Duration = Duration::from_secs(30);

    /// The variables of the run, the same for every worker: scheduler,
    /// secret file, program, heartbeat and death timeout.
    pub fn run_vars(&self) -> Vec<(String, String)> {
        let mut vars = vec![
            (WORKER_ENV.to_owned(), self.scheduler.clone()),
            (
                Self::SECRET_FILE.to_owned(),
                self.secret_file.display().to_string(),
            ),
            (Self::HEARTBEAT_MS.to_owned(), millis(self.heartbeat)),
            (
                Self::DEATH_TIMEOUT_MS.to_owned(),
                millis(self.death_timeout),
            ),
        ];
        if let Some(p) = self.program {
            vars.push((Self::PROGRAM.to_owned(), format!("{p:016x}")));
        }
        vars
    }

    /// The variables of one worker of kind `kind`: its name (`job`, under
    /// [`JOB_ID`](Self::JOB_ID)), its threads, the resources it provides and
    /// how long it may live.
    pub fn worker_vars(job: &str, kind: &crate::distributed::WorkerKind) -> Vec<(String, String)> {
        let mut vars = vec![
            (Self::JOB_ID.to_owned(), job.to_owned()),
            (Self::THREADS.to_owned(), kind.threads.to_string()),
            (Self::RESOURCES.to_owned(), kind.resources.join(",")),
        ];
        if let Some(l) = kind.lifetime {
            vars.push((Self::LIFETIME_MS.to_owned(), millis(l)));
        }
        vars
    }

    /// The fingerprint of the driver's program, when a worker's environment
    /// names one.
    pub fn program_from_env() -> Option<u64> {
        std::env::var(Self::PROGRAM)
            .ok()
            .and_then(|p| u64::from_str_radix(&p, 16).ok())
    }

    /// The fingerprint of the compute this worker served before it started
    /// itself again for the program's next compute.
    pub fn after_from_env() -> Option<u64> {
        std::env::var(Self::AFTER)
            .ok()
            .and_then(|p| u64::from_str_radix(&p, 16).ok())
    }

    /// Variable name of the driver's program fingerprint.
    pub(crate) fn program_var() -> &'static str {
        Self::PROGRAM
    }

    /// What this process was given, with the defaults for what is unset.
    ///
    /// # Errors
    /// When the scheduler's address or the secret file's path is not set (the
    /// process was not started by a launcher), naming the variable.
    pub fn from_env() -> Result<Self, String> {
        let var = |key: &str| {
            std::env::var(key)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{key} is not set; a launcher sets it"))
        };
        let millis_or = |key: &str, default: Duration| {
            std::env::var(key)
                .ok()
                .and_then(|v| v.parse().ok())
                .map_or(default, Duration::from_millis)
        };
        Ok(WorkerEnv {
            scheduler: var(WORKER_ENV)?,
            secret_file: PathBuf::from(var(Self::SECRET_FILE)?),
            program: Self::program_from_env(),
            heartbeat: millis_or(Self::HEARTBEAT_MS, Self::HEARTBEAT),
            death_timeout: millis_or(Self::DEATH_TIMEOUT_MS, Self::DEATH_TIMEOUT),
            job_id: var(Self::JOB_ID).ok(),
            threads: std::env::var(Self::THREADS)
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(NonZeroUsize::MIN),
            resources: std::env::var(Self::RESOURCES)
                .unwrap_or_default()
                .split(',')
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect(),
            lifetime: std::env::var(Self::LIFETIME_MS)
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis),
        })
    }
}

/// A duration as whole milliseconds, for the environment.
fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}
