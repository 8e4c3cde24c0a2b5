//! Distributed execution: a scheduler in the driver process, workers in
//! other processes (children here, cluster jobs elsewhere) over TCP, or a
//! Unix socket when they are children of the driver.
//!
//! A worker is the user's own program, started again by a [`Launcher`] with
//! the scheduler's address in its environment ([`WORKER_ENV`]). It runs
//! `main` as the driver did, up to `compute`, which hands it the run's
//! plan (steps, mode, partitions, checkpoint options, and its own copy of
//! the inputs, not pulled) and serves the scheduler instead: loads, fits and
//! transforms come by step and kind, with where their inputs are (held by
//! this worker, by another, or sent) and the models the worker lacks. Workers
//! keep what they make and hand it to each other; only the run's outputs go
//! to the driver. So a program needs no line of its own to be distributable,
//! on three conditions:
//! - it reaches the same `compute` the same way in every process (the
//!   program fingerprint — steps, types, options, partition sizes,
//!   checkpoint options — is compared at the handshake, and a mismatch is an
//!   error on both sides);
//! - it builds the same inputs in every process: a worker loads its
//!   partitions from its own copy, read forward only (see
//!   [`Distributed::worker_loads`] for inputs that differ between processes);
//! - what it does before `compute` is harmless to repeat (workers do not look
//!   at the checkpoints: the driver does), and the driver alone goes past
//!   `compute` (a worker's process ends there).
//!
//! Protocol, security and failures: see [`crate::wire`] (frames, handshake)
//! and `ARCHITECTURE.md`.
//!
//! ```no_run
//! use bob_pipelines_executor::distributed::{Distributed, LocalProcesses};
//! use std::num::NonZeroUsize;
//!
//! let two = NonZeroUsize::new(2).unwrap();
//! let executor = Distributed::new(LocalProcesses::new(two, NonZeroUsize::MIN));
//! // pipeline.transform(samples).compute(&executor)?
//! # let _ = executor;
//! ```

mod conns;
mod core;
mod interrupt;
mod launcher;
mod protocol;
mod scheduler;
mod worker;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bob_pipelines_graph::{Executed, Execution, Executor, Plan, Result, Serve};
pub use bob_pipelines_graph::{WORKER_ENV, is_worker};

pub use interrupt::{InterruptGuard, on_interrupt};
pub use launcher::{JobState, Launcher, LocalProcesses, StderrSink, WorkerKind, worker_command};
pub use protocol::WorkerEnv;

use crate::progress::{Bars, Progress};

/// How the scheduler and its workers behave.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    bind: IpAddr,
    advertise: Option<String>,
    heartbeat: Duration,
    worker_timeout: Duration,
    death_timeout: Duration,
    allowed_failures: usize,
    wait_count: usize,
    interval: Duration,
    secret_dir: PathBuf,
    handshake_timeout: Duration,
    load_window: Option<usize>,
    pending_limit: Option<Duration>,
    worker_loads: bool,
    outputs_from_checkpoints: bool,
    keep_workers: bool,
    /// Where the live dashboard is served; `None`: not at all.
    dashboard: Option<SocketAddr>,
}

/// The distributed executor: a scheduler here, workers from a [`Launcher`].
pub struct Distributed<L: Launcher> {
    launcher: Mutex<L>,
    /// The scheduler's port and secret, and the workers kept between the
    /// program's computes.
    session: Mutex<Option<scheduler::Session>>,
    settings: Settings,
    name: String,
    progress: Arc<dyn Progress>,
    dashboard_url: Mutex<Option<String>>,
}

impl<L: Launcher> Drop for Distributed<L> {
    /// The program has no next compute: the workers kept for one leave,
    /// and their jobs end.
    fn drop(&mut self) {
        let session = self
            .session
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(session) = session {
            let launcher = self
                .launcher
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            session.end(launcher);
        }
    }
}

impl<L: Launcher> std::fmt::Debug for Distributed<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Distributed")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<L: Launcher> Distributed<L> {
    /// A scheduler that listens on 127.0.0.1 and gets workers from `launcher`.
    /// Defaults: heartbeat 1 s; a worker silent for 30 s is lost; a worker
    /// whose scheduler is silent for 30 s exits; a task is sent again after up
    /// to 100 lost workers (bob's `allowed_failures`); scaling is decided
    /// every second, and an idle worker beyond what the ready tasks need (and
    /// above its kind's minimum) is released after 5 such intervals (bob's
    /// `wait_count`); the secret file goes to the temp folder; a connection
    /// must prove it knows the run's secret within 5 s (and at most
    /// 64 connections may be proving it at once); input partitions load at
    /// most `2 + 10 × Σ workers × threads` ahead of the tasks that read them.
    pub fn new(launcher: L) -> Self {
        Distributed {
            name: launcher.name(),
            launcher: Mutex::new(launcher),
            session: Mutex::new(None),
            settings: Settings {
                bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
                advertise: None,
                heartbeat: WorkerEnv::HEARTBEAT,
                worker_timeout: Duration::from_secs(30),
                death_timeout: WorkerEnv::DEATH_TIMEOUT,
                allowed_failures: 100,
                wait_count: 5,
                interval: Duration::from_secs(1),
                secret_dir: std::env::temp_dir(),
                handshake_timeout: Duration::from_secs(5),
                load_window: None,
                pending_limit: None,
                worker_loads: true,
                outputs_from_checkpoints: false,
                keep_workers: true,
                dashboard: Some(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    crate::dashboard::DEFAULT_PORT,
                )),
            },
            progress: Arc::new(Bars::new()),
            dashboard_url: Mutex::new(None),
        }
    }

    /// The executor's name in reports (`local-parallel`, `sge`, …).
    #[must_use]
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// Listens on `addr` (`0.0.0.0` for a cluster), telling workers to
    /// connect to `advertise` (this host's name as the workers resolve it;
    /// by default the address itself).
    #[must_use]
    pub fn bind(mut self, addr: IpAddr, advertise: Option<String>) -> Self {
        self.settings.bind = addr;
        self.settings.advertise = advertise;
        self
    }

    /// How often scheduler and workers say they are alive.
    #[must_use]
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.settings.heartbeat = every;
        self
    }

    /// A worker silent this long is lost and its tasks are sent again.
    #[must_use]
    pub fn worker_timeout(mut self, after: Duration) -> Self {
        self.settings.worker_timeout = after;
        self
    }

    /// A worker whose scheduler is silent (or gone) this long exits.
    #[must_use]
    pub fn death_timeout(mut self, after: Duration) -> Self {
        self.settings.death_timeout = after;
        self
    }

    /// How many lost workers a task may take down before the run fails.
    #[must_use]
    pub fn allowed_failures(mut self, n: usize) -> Self {
        self.settings.allowed_failures = n;
        self
    }

    /// Intervals an unneeded worker stays idle before it is released.
    #[must_use]
    pub fn wait_count(mut self, n: usize) -> Self {
        self.settings.wait_count = n;
        self
    }

    /// The scheduler's interval for heartbeats, launch checks and scaling.
    #[must_use]
    pub fn interval(mut self, every: Duration) -> Self {
        self.settings.interval = every;
        self
    }

    /// Where the secret file is written: a folder only the user can read,
    /// which, for a cluster, the workers' hosts see too.
    #[must_use]
    pub fn secret_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.settings.secret_dir = dir.into();
        self
    }

    /// How long a new connection has, in all, to prove it knows the run's
    /// secret before it is closed.
    #[must_use]
    pub fn handshake_timeout(mut self, within: Duration) -> Self {
        self.settings.handshake_timeout = within;
        self
    }

    /// How many input partitions are kept loaded (or loading) ahead of the
    /// tasks that read them, on the workers or in the driver (at least 1; by
    /// default `2 + 10 × Σ max workers × threads`): the bound on the memory
    /// that loads hold. Partitions that
    /// a fit is waiting for do not count: a fit needs them all.
    #[must_use]
    pub fn load_window(mut self, partitions: usize) -> Self {
        self.settings.load_window = Some(partitions.max(1));
        self
    }

    /// Fails the run when a worker's job has waited this long to start and
    /// no worker of its kind has ever connected, with the grid's reason
    /// (SGE's scheduling info). By default a run waits for ever: a busy grid
    /// can keep jobs waiting for hours; the reason is shown in the progress
    /// and the report from the launcher's first report of it on (SGE: after
    /// 60 s, `Sge::report_pending_after`).
    #[must_use]
    pub fn pending_limit(mut self, limit: Option<Duration>) -> Self {
        self.settings.pending_limit = limit;
        self
    }

    /// Whether workers load input partitions from their own copy of the
    /// inputs (the default), or the driver loads them and sends them.
    ///
    /// A worker builds the same inputs as the driver (it runs the same
    /// program) and reads them forward only, skipping the partitions it is
    /// not told to load: free for a `Vec`, a slice or a range; for a
    /// `map` (a file list's delayed samples) each skipped sample is built and
    /// dropped, but nothing is read. A partition a worker has already passed
    /// is loaded by the driver (the report counts them). Turn this off when
    /// the inputs are not the same in every process (built from a clock, a
    /// random source without a fixed seed, or a file that changes), or when
    /// only the driver can read them.
    #[must_use]
    pub fn worker_loads(mut self, on: bool) -> Self {
        self.settings.worker_loads = on;
        self
    }

    /// Whether the run's outputs stay in their checkpoint files (when the
    /// last step saves them) instead of coming from the workers: nothing but
    /// tasks and answers then crosses the driver's sockets, and the caller's
    /// outputs read each partition (large files memory-mapped) the first
    /// time they are looked at. Off by default: reading is a file per
    /// sample, which on a shared file system costs a round trip to the file
    /// server each, where the workers' sockets send a partition at once. It
    /// pays when the driver's link is the narrow one, the files are local,
    /// or the outputs are larger than the driver's memory. A partition the
    /// driver loaded itself (see [`worker_loads`](Self::worker_loads)) is
    /// sent all the same.
    #[must_use]
    pub fn outputs_from_checkpoints(mut self, on: bool) -> Self {
        self.settings.outputs_from_checkpoints = on;
        self
    }

    /// Whether the workers of a compute that succeeded are kept for the
    /// program's next compute on this executor (the default): each waits,
    /// connected, up to the death timeout (30 s); when the program computes
    /// again it starts itself again in place — the same process, the same
    /// cluster job, no new wave in the queue — replays the computes up to
    /// the one it served (from the checkpoints, as any worker does) and
    /// joins. A worker near its time limit is not kept; jobs still queued
    /// are cancelled. Off: every compute starts its own workers, and its
    /// jobs end with it.
    #[must_use]
    pub fn keep_workers(mut self, on: bool) -> Self {
        self.settings.keep_workers = on;
        self
    }

    /// Where the live dashboard is served while a run computes: by default
    /// 127.0.0.1:8787, or the next free port up to 8887 (port 0: any free
    /// one); `None`: no dashboard. `BOB_PIPELINES_DASHBOARD` (`off`, or
    /// `ADDR:PORT`) overrides it. The run prints the page's URL, with its
    /// token, when it starts; [`dashboard_url`](Self::dashboard_url) gives
    /// it too.
    #[must_use]
    pub fn dashboard(mut self, at: Option<SocketAddr>) -> Self {
        self.settings.dashboard = at;
        self
    }

    /// The URL of the dashboard of the run under way (or the last one),
    /// token included.
    pub fn dashboard_url(&self) -> Option<String> {
        self.dashboard_url
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The run's progress — the dashboard in front of this executor's
    /// progress, when there is one — and the dashboard being served.
    fn serve_dashboard(&self) -> (Arc<dyn Progress>, Option<crate::dashboard::Served>) {
        let at = match std::env::var(crate::dashboard::ENV).ok().as_deref() {
            Some("off") => None,
            Some(addr) => match addr.parse() {
                Ok(a) => Some(a),
                Err(e) => {
                    self.progress.warning(&format!(
                        "{}={addr} is neither `off` nor an address and port ({e}); the \
                         dashboard is at its default place",
                        crate::dashboard::ENV
                    ));
                    self.settings.dashboard
                }
            },
            None => self.settings.dashboard,
        };
        let url = |u: Option<String>| {
            *self
                .dashboard_url
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = u;
        };
        let Some(at) = at else {
            url(None);
            return (Arc::clone(&self.progress), None);
        };
        let dashboard = Arc::new(crate::dashboard::Dashboard::new(Arc::clone(&self.progress)));
        match dashboard.serve(at) {
            Ok(served) => {
                self.progress
                    .info(&format!("bob-pipelines: dashboard at {}", served.url));
                url(Some(served.url.clone()));
                (dashboard, Some(served))
            }
            Err(e) => {
                self.progress.warning(&format!("no dashboard: {e}"));
                url(None);
                (Arc::clone(&self.progress), None)
            }
        }
    }

    /// With another progress sink.
    #[must_use]
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }
}

impl<L: Launcher> Executor for Distributed<L> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn execute(&self, plan: Plan<'_>) -> Result<Executed> {
        if is_worker() {
            // A worker repeating an earlier compute of its program (see
            // `Lazy::compute`) runs it in its own process.
            return crate::SingleThreaded::new()
                .with_progress(Arc::new(crate::Silent))
                .execute(plan);
        }
        let job = Execution::new(plan)?;
        let mut launcher = self.launcher.try_lock().map_err(|_| {
            crate::Error::Cannot(
                "it is already running another compute; use one executor per run at a time"
                    .to_owned(),
            )
            .into_run(&self.name)
        })?;
        // The dashboard sees the run's events and hands them on; it is
        // served until the run ends.
        let (progress, served) = self.serve_dashboard();
        progress.started(job.graph());
        // Workers' messages go through the progress: above the bars, or in
        // the log's lines, never through them.
        let said = Arc::clone(&progress);
        launcher.stderr_to(Arc::new(move |worker, line| {
            said.worker_said(worker, line);
        }));
        let mut session = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        scheduler::run(
            &job,
            &mut *launcher,
            &self.settings,
            &*progress,
            &self.name,
            &mut session,
        )
        .map_err(|e| e.into_run(&self.name))?;
        drop(session);
        drop(launcher);
        let executed = job.finish()?;
        progress.finished(&executed.report);
        drop(served);
        Ok(executed)
    }

    fn serve<'a>(&self, plan: Plan<'a>) -> Serve<'a> {
        if worker::earlier_compute(&plan.program) {
            // Run here, as the driver did (read from its checkpoints when it
            // has them), to reach the driver's compute: nothing to say.
            return Serve::Earlier(plan);
        }
        worker::serve(plan)
    }
}
