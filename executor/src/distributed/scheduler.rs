//! The scheduler's shell, in the driver process: the sockets (the acceptor,
//! and the workers' connections, polled by the scheduler's own thread:
//! `conns.rs`), the driver's threads that load the partitions workers
//! cannot and read outputs back from their checkpoints, the bytes the
//! driver holds (those loads, and models), the launcher, and the job's records. It
//! turns all of that into events for [`Core`], the state machine that
//! decides what runs where, and carries out the core's commands. Workers
//! keep what their tasks make and hand it to each other; only the run's
//! outputs and the fitted models come to the driver.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bob_pipelines_graph::{
    self as graph, Counts, Done, Execution, TaskGraph, TaskKind, program_fingerprint,
};

use super::Settings;
use super::conns::{Conns, Incoming, Wake};
use super::core::{Command, Core, From, Limits, Place, Stop};
use super::launcher::{JobState, Launcher};
use super::protocol::{
    FromWorker, Input, Next, Output, ReadStats, TaskOp, ToWorker, WorkerEnv, put,
};
use crate::local::run_task;
use crate::progress::Progress;
use crate::wire::{
    self, Arrival, Listener, MAX_HANDSHAKES, Secret, SecretFile, Stream, WireError, WorkerInfo,
};
use crate::{Error, Result};

/// Bytes the driver holds (partitions it loaded, models), shared by the
/// tasks that need them until each is sent.
type Shared = Arc<Vec<u8>>;

enum Event {
    /// A connection to the scheduler's port ended its handshake.
    Arrived(Arrival),
    /// A load finished in the driver: its encoded partition (none when the
    /// load is itself an output and stays in the job).
    Loaded {
        task: usize,
        result: graph::Result<Option<Vec<u8>>>,
    },
    /// An output was left in its checkpoint files (its input's keys and
    /// attributes taken).
    ReadBack { result: graph::Result<()> },
    /// An output lost with its worker was read back from its checkpoint
    /// files: its encoded partition, none when the files could not rebuild
    /// it.
    Reread {
        task: usize,
        result: graph::Result<Option<Vec<u8>>>,
    },
}

/// Work for the driver's own threads: loads workers cannot run, outputs left
/// in their checkpoint files, and lost outputs read back from them.
enum DriverWork {
    Load(usize),
    ReadBack(usize),
    Reread(usize),
}

/// Runs the remote part of `job` on workers from `launcher`; the job holds
/// the loads' and the outputs' partitions, and the report.
pub(crate) fn run(
    job: &Execution<'_>,
    launcher: &mut dyn Launcher,
    settings: &Settings,
    progress: &dyn Progress,
    executor: &str,
    session: &mut Option<Session>,
) -> Result<()> {
    let graph = job.graph();
    let fail = Error::Cannot;
    let ignored = check_resources(job, launcher, executor)?;
    let io = |what: &str, e: std::io::Error| fail(format!("{what}: {e}"));
    if session.is_none() {
        *session = Some(Session::open(settings, launcher.is_local())?);
    }
    let here = session.as_mut().expect("opened above");
    let listener = here
        .listener
        .try_clone()
        .map_err(|e| io("the scheduler's port", e))?;
    let env = WorkerEnv {
        scheduler: here.scheduler.clone(),
        secret_file: here.secret.path().to_path_buf(),
        program: Some(program_fingerprint(graph.program())),
        heartbeat: settings.heartbeat,
        death_timeout: settings.death_timeout,
        job_id: None,
        threads: std::num::NonZeroUsize::MIN,
        resources: Vec::new(),
        lifetime: None,
    }
    .run_vars();
    let secret = here.secret.secret().clone();
    // The workers kept from the last compute start again for this one.
    let kept: Vec<(String, usize)> = std::mem::take(&mut here.kept)
        .into_iter()
        .filter_map(|mut k| {
            let _ = k.stream.set_write_timeout(Some(Duration::from_secs(2)));
            if !k.waits() || put(&mut k.stream, &ToWorker::Again, &[]).is_err() {
                launcher.cancel(&k.job);
                return None;
            }
            Some((k.job, k.kind))
        })
        .collect();

    let (events_tx, events) = mpsc::channel();
    let (conns, wake) = Conns::new(events_tx).map_err(|e| io("the scheduler's wake pipe", e))?;
    let stop = Arc::new(AtomicBool::new(false));
    accept_workers(
        listener,
        secret,
        program_fingerprint(graph.program()),
        (settings.handshake_timeout, MAX_HANDSHAKES),
        wake.clone(),
        stop.clone(),
    )
    .map_err(|e| io("listening for workers", e))?;

    let mut s = Scheduler::new(
        job,
        settings,
        (progress, executor),
        (env, conns),
        (launcher.kinds().to_vec(), ignored),
    );
    for (job, kind) in kept {
        let name = launcher.kinds()[kind].name.clone();
        s.worker_state(&job, &name, "kept from the program's last compute");
        s.core.kept(kind, job);
    }
    let (work_tx, work_rx) = mpsc::channel::<DriverWork>();
    let work_rx = Mutex::new(work_rx);
    let outcome = std::thread::scope(|scope| {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        for _ in 0..threads {
            let (rx, tx) = (&work_rx, wake.clone());
            scope.spawn(move || driver_thread(job, progress, rx, &tx));
        }
        let outcome = s.run(launcher, &work_tx, &events);
        drop(work_tx);
        outcome
    });
    stop.store(true, Ordering::Release);
    let keep = outcome.is_ok() && settings.keep_workers;
    let kept = s.close(launcher, keep);
    match session {
        Some(here) if keep => here.kept = kept,
        _ => *session = None,
    }
    outcome
}

/// What outlives one compute of a [`Distributed`](super::Distributed)
/// executor: the scheduler's port and secret, and the workers kept for the
/// program's next compute (their jobs keep running; see [`ToWorker::Wait`]).
pub(crate) struct Session {
    listener: Listener,
    secret: SecretFile,
    /// The address workers reach the scheduler at.
    scheduler: String,
    kept: Vec<Kept>,
}

/// A worker kept, connected, for the next compute.
struct Kept {
    stream: Stream,
    job: String,
    kind: usize,
}

impl Kept {
    /// Whether the worker still waits: its connection is open (what it
    /// sent meanwhile, heartbeats, is read and dropped). One that waited
    /// longer than its death timeout has left and closed it.
    fn waits(&mut self) -> bool {
        use std::io::Read as _;
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut sink = [0u8; 4096];
        let open = loop {
            match self.stream.read(&mut sink) {
                Ok(0) => break false,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break false,
            }
        };
        open && self.stream.set_nonblocking(false).is_ok()
    }
}

impl Session {
    /// A port to listen on and a secret, for the computes to come. Workers
    /// on this machine only (`local`) reach the scheduler on a Unix socket
    /// (see [`wire::bind_local`]); the port is TCP when there is none to
    /// make, or when the system keeps Unix sockets' buffers small.
    fn open(settings: &Settings, local: bool) -> Result<Self> {
        let io = |what: &str, e: std::io::Error| Error::Cannot(format!("{what}: {e}"));
        std::fs::create_dir_all(&settings.secret_dir)
            .map_err(|e| io(&format!("creating {}", settings.secret_dir.display()), e))?;
        let secret = SecretFile::create(&settings.secret_dir)
            .map_err(|e| io("writing the secret file", e))?;
        if local {
            if let Some((scheduler, listener)) = wire::bind_local() {
                return Ok(Session {
                    listener: Listener::Unix(listener),
                    secret,
                    scheduler,
                    kept: Vec::new(),
                });
            }
        }
        let listener = TcpListener::bind((settings.bind, 0))
            .map_err(|e| io("binding the scheduler's port", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| io("the scheduler's port", e))?
            .port();
        let host = settings
            .advertise
            .clone()
            .unwrap_or_else(|| settings.bind.to_string());
        Ok(Session {
            listener: Listener::Tcp(listener),
            secret,
            scheduler: format!("{host}:{port}"),
            kept: Vec::new(),
        })
    }

    /// The program has no next compute: the kept workers leave, and every
    /// job the launcher started is stopped.
    pub(crate) fn end(mut self, launcher: &mut dyn Launcher) {
        for mut k in std::mem::take(&mut self.kept) {
            let _ = k.stream.set_write_timeout(Some(Duration::from_secs(2)));
            let _ = put(&mut k.stream, &ToWorker::Shutdown, &[]);
        }
        launcher.shutdown();
    }
}

/// The resource tags that no kind of worker provides. On one machine they
/// are ignored (returned, with a warning each); on a cluster they fail the
/// run at the start: waiting for them would wait forever.
fn check_resources(
    job: &Execution<'_>,
    launcher: &dyn Launcher,
    executor: &str,
) -> Result<BTreeSet<String>> {
    let graph = job.graph();
    let kinds = launcher.kinds();
    let mut ignored = BTreeSet::new();
    for t in graph.tasks() {
        let Some(r) = t.resource() else { continue };
        if kinds.iter().any(|k| k.resources.iter().any(|x| x == r)) {
            continue;
        }
        if launcher.is_local() {
            job.warn(crate::local::ignored_tag(graph, t, r, executor));
            ignored.insert(r.to_owned());
            continue;
        }
        let step = t
            .step()
            .map(|s| graph.program().steps()[s].name().to_owned())
            .unwrap_or_default();
        let have: Vec<String> = kinds
            .iter()
            .map(|k| format!("{} [{}]", k.name, k.resources.join(", ")))
            .collect();
        return Err(Error::Cannot(format!(
            "task `{}` of step `{step}` needs resource `{r}`, which no worker of {} can \
                 provide (kinds of worker: {}); add a kind of worker that provides `{r}`, or \
                 remove the tag",
            t.id(),
            launcher.name(),
            have.join("; ")
        )));
    }
    Ok(ignored)
}

/// Accepts workers until `stop` (see [`wire::accept_peers`]): each
/// connection becomes an event.
fn accept_workers(
    listener: Listener,
    secret: Secret,
    fingerprint: u64,
    limits: (Duration, usize),
    events: Wake<Event>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    wire::accept_peers(
        listener,
        secret,
        fingerprint,
        limits,
        move |arrival| events.send(Event::Arrived(arrival)),
        stop,
    )
}

/// Loads the input partitions that workers cannot, and reads outputs back
/// from their checkpoint files, for the scheduler.
fn driver_thread(
    job: &Execution<'_>,
    progress: &dyn Progress,
    work: &Mutex<Receiver<DriverWork>>,
    events: &Wake<Event>,
) {
    let graph = job.graph();
    let info = graph.program();
    loop {
        let next = work.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(next) = next else { return };
        let event = match next {
            DriverWork::Load(task) => Event::Loaded {
                task,
                result: run_task(job, progress, task).and_then(|()| {
                    if graph.dependents(task).is_empty() {
                        return Ok(None); // an output: it stays in the job
                    }
                    let part = job
                        .take_result(task)
                        .ok_or_else(|| graph::Error::bug(format!("load {task} left nothing")))?;
                    let data = match graph.task(task).kind() {
                        TaskKind::Load { from: Some(s), .. } => info.steps()[s].output(),
                        _ => info.input(),
                    };
                    Ok(Some(data.encode(&part)?))
                }),
            },
            DriverWork::ReadBack(task) => Event::ReadBack {
                result: job.read_output(task),
            },
            DriverWork::Reread(task) => Event::Reread {
                task,
                result: job.reread(task),
            },
        };
        if !events.send(event) {
            return;
        }
    }
}

/// A broken guarantee of the scheduler's.
fn internal(what: String) -> Error {
    Error::Run(graph::Error::bug(format!("the scheduler: {what}")))
}

/// The shell around [`Core`]: sockets, threads, the launcher, the bytes of
/// partitions and models, the job's records and the progress display. It
/// turns what happens into the core's events, and carries out its commands.
struct Scheduler<'j, 'a> {
    job: &'j Execution<'a>,
    graph: &'j TaskGraph,
    settings: &'j Settings,
    progress: &'j dyn Progress,
    executor: &'j str,
    env: Vec<(String, String)>,
    core: Core<'j>,
    /// Each task's output, encoded, while a task still needs it.
    data: Vec<Option<Shared>>,
    is_output: Vec<bool>,
    /// Each fitted step's model, encoded once, sent once per worker.
    models: Vec<Option<Shared>>,
    conns: Conns,
    /// Each worker's peer port, where other workers fetch what it holds.
    peers: BTreeMap<u32, String>,
    /// Outputs shipped by workers, to decode (see
    /// [`put_outputs`](Self::put_outputs)): task, input partition, step and
    /// bytes.
    shipped: Vec<(usize, usize, usize, Vec<u8>)>,
    /// The vector [`apply`](Self::apply) takes the core's commands into,
    /// kept for its memory.
    commands: Vec<Command>,
    /// Each worker's number in the task stream ([`Execution::runner`]) and
    /// when its handshake ended here (where its clock for the ends of its
    /// runs starts), by id, in order of id: as many as workers joined,
    /// whatever the ids (connections refused count too).
    runners: Vec<(u32, usize, Instant)>,
    /// The highest peak memory each worker has told (see the heartbeat).
    peaks: BTreeMap<u32, u64>,
    refused: usize,
    /// Connections refused on workers' peer ports: how many, and why for
    /// the first few.
    refused_peers: (usize, Vec<String>),
    /// Loads the driver ran because a worker's input had passed them.
    driver_loads: usize,
    /// Outputs being read back from their checkpoint files.
    reading: usize,
    /// Outputs lost with their worker and read back from their checkpoint
    /// files.
    rereads: usize,
    turned_away: usize,
    lost: usize,
}

impl<'j, 'a> Scheduler<'j, 'a> {
    /// The scheduler of `job`: its display and executor name, the workers'
    /// environment and connections, the launcher's kinds of worker and
    /// the resource tags ignored on one machine.
    fn new(
        job: &'j Execution<'a>,
        settings: &'j Settings,
        (progress, executor): (&'j dyn Progress, &'j str),
        (env, conns): (Vec<(String, String)>, Conns),
        (kinds, ignored): (Vec<super::WorkerKind>, BTreeSet<String>),
    ) -> Self {
        let graph = job.graph();
        let n = graph.len();
        let info = graph.program();
        let mut is_output = vec![false; n];
        for &o in graph.outputs() {
            is_output[o] = true;
        }
        let models: Vec<Option<Shared>> = (0..info.steps().len())
            .map(|s| {
                job.model(s)
                    .and_then(|m| info.steps()[s].encode_model(&m).ok())
                    .map(Arc::new)
            })
            .collect();
        let limits = Limits {
            window: settings
                .load_window
                .unwrap_or_else(|| Limits::window_for(&kinds)),
            allowed_failures: settings.allowed_failures,
            wait_count: settings.wait_count,
            pending_limit: settings.pending_limit,
            worker_loads: settings.worker_loads,
        };
        let have: Vec<bool> = models.iter().map(Option::is_some).collect();
        let mut core = Core::new(graph, kinds, ignored, limits, have);
        if settings.outputs_from_checkpoints {
            if let Some(ck) = info.checkpoint() {
                for &o in graph.outputs() {
                    if let TaskKind::Transform { step, .. } = graph.task(o).kind() {
                        if ck.saves(step) {
                            core.read_back(o);
                        }
                    }
                }
            }
        }
        Scheduler {
            job,
            graph,
            settings,
            progress,
            executor,
            env,
            core,
            data: vec![None; n],
            is_output,
            models,
            conns,
            peers: BTreeMap::new(),
            runners: Vec::new(),
            commands: Vec::new(),
            shipped: Vec::new(),
            peaks: BTreeMap::new(),
            refused: 0,
            refused_peers: (0, Vec::new()),
            driver_loads: 0,
            reading: 0,
            rereads: 0,
            turned_away: 0,
            lost: 0,
        }
    }

    fn fail(&self, reason: String) -> Error {
        Error::Cannot(reason)
    }

    fn run(
        &mut self,
        launcher: &mut dyn Launcher,
        work: &Sender<DriverWork>,
        events: &Receiver<Event>,
    ) -> Result<()> {
        self.core.step();
        self.core.scale();
        self.apply(launcher, work)?;
        let mut next_tick = Instant::now() + self.settings.interval;
        let mut incoming = Vec::new();
        let mut woke = Instant::now();
        loop {
            if self.core.finished() && self.reading == 0 {
                return Ok(());
            }
            // Answers that gather are read with one wake (`Core::gather`),
            // unless data is moving or being read back.
            if self.reading == 0 && !self.conns.busy() {
                let gathered = (woke + self.core.gather()).min(next_tick);
                if let Some(rest) = gathered.checked_duration_since(Instant::now()) {
                    std::thread::sleep(rest);
                }
            }
            let wait = next_tick.saturating_duration_since(Instant::now());
            self.conns.poll(wait, &mut incoming);
            woke = Instant::now();
            loop {
                match events.try_recv() {
                    Ok(ev) => self.handle(ev)?,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        return Err(internal("the event channel closed".to_owned()));
                    }
                }
            }
            for inc in incoming.drain(..) {
                self.incoming(inc, launcher, work)?;
            }
            self.core.step();
            self.apply(launcher, work)?;
            self.core
                .check_progress(self.reading > 0)
                .map_err(|e| self.stopped(e, launcher))?;
            if Instant::now() >= next_tick {
                self.tick(launcher)?;
                self.apply(launcher, work)?;
                next_tick = Instant::now() + self.settings.interval;
            }
            self.conns.flush(&mut incoming);
            self.put_outputs()?;
        }
    }

    /// Decodes the outputs workers shipped into the job. This comes after
    /// the workers' next runs are sent: a large output takes milliseconds
    /// to decode, and decoded as it came, before the runs, a worker with
    /// its two slots empty waited for it (a fifth of the seed's last step
    /// idle on two workers). It runs on this thread, the one that made
    /// the inputs, so that the memory they leave is reused (a thread of its
    /// own would take fresh memory from an allocator arena of its own).
    fn put_outputs(&mut self) -> Result<()> {
        let info = self.graph.program();
        for (task, partition, step, bytes) in self.shipped.drain(..) {
            // Nothing will rebuild this partition now: the driver's own
            // copy of its samples goes.
            self.job.forget_input(partition);
            let part = info.steps()[step].output().decode(&bytes)?;
            self.job.put_result(task, part);
        }
        Ok(())
    }

    /// Carries out the core's commands.
    fn apply(&mut self, launcher: &mut dyn Launcher, work: &Sender<DriverWork>) -> Result<()> {
        // A launch answers with job names, which may bring more commands.
        loop {
            let mut commands = std::mem::take(&mut self.commands);
            self.core.swap_commands(&mut commands);
            if commands.is_empty() {
                self.commands = commands;
                return Ok(());
            }
            for c in commands.drain(..) {
                match c {
                    Command::Load(t) => {
                        if work.send(DriverWork::Load(t)).is_err() {
                            return Err(internal("driver threads stopped".to_owned()));
                        }
                    }
                    Command::Reread(t) => {
                        if work.send(DriverWork::Reread(t)).is_err() {
                            return Err(internal("driver threads stopped".to_owned()));
                        }
                    }
                    Command::Run {
                        worker,
                        task,
                        models,
                        inputs,
                        output,
                        then,
                    } => self.dispatch(worker, (task, output, &then), &models, &inputs)?,
                    Command::Launch { kind, n } => {
                        let name = launcher.kinds()[kind].name.clone();
                        let jobs = launcher.launch(kind, n, &self.env).map_err(|e| {
                            self.fail(format!(
                                "cannot start workers of kind `{name}` ({}): {e}",
                                launcher.name()
                            ))
                        })?;
                        for job in &jobs {
                            self.worker_state(job, &name, "submitted");
                        }
                        self.core.launched(kind, jobs);
                    }
                    Command::Release {
                        worker,
                        name,
                        kind,
                        why,
                    } => {
                        self.worker_state(&name, &kind, why);
                        self.peers.remove(&worker);
                        self.conns.release(worker);
                    }
                    Command::Hand { worker, task } => {
                        self.conns
                            .send(worker, &ToWorker::Hand { task: task as u32 }, &[]);
                    }
                    Command::Cancel(job) => launcher.cancel(&job),
                    Command::Free { task, at } => match at {
                        Place::Driver => self.data[task] = None,
                        Place::Worker(id) => {
                            self.conns
                                .send(id, &ToWorker::Free { task: task as u32 }, &[]);
                        }
                    },
                    Command::Note(note) => {
                        self.progress.warning(&note);
                        self.job.warn(note);
                    }
                }
            }
            self.commands = commands;
        }
    }

    /// The run's error for task `task`, failed because of `reason`: its id,
    /// first keys and size, and the reason as this executor's.
    fn task_error(&self, task: usize, reason: String) -> Error {
        let (keys, samples) = self.job.samples_of(task);
        Error::Run(graph::Error::Task {
            task: self.graph.task(task).id().to_owned(),
            keys,
            samples,
            source: Box::new(self.fail(reason).into_run(self.executor)),
        })
    }

    /// The error for a run the core stopped.
    fn stopped(&self, stop: Stop, launcher: &dyn Launcher) -> Error {
        match stop {
            Stop::Stuck(why) => internal(why),
            Stop::NeverStarts {
                job,
                kind,
                waited,
                why,
            } => self.fail(format!(
                "job `{job}` of workers of kind `{}` ({}) has waited {}s to start, longer than \
                 the pending limit, and no worker of its kind ever started: {why}. Ask for less \
                 (the spec's memory, resources or time), or wait longer \
                 (`Distributed::pending_limit`)",
                launcher.kinds()[kind].name,
                launcher.name(),
                waited.as_secs()
            )),
            Stop::KillsWorkers { task, losses } => {
                let t = self.graph.task(task);
                let step = t
                    .step()
                    .map_or("", |s| self.graph.program().steps()[s].name());
                let last: Vec<&str> = losses.iter().rev().take(3).map(String::as_str).collect();
                self.task_error(
                    task,
                    format!(
                        "step `{step}` was running on {} workers that were lost; it may be \
                         what kills them (memory or time limits). Last: {}",
                        losses.len(),
                        last.join("; ")
                    ),
                )
            }
            Stop::CannotFetch { task, tries } => self.task_error(
                task,
                format!(
                    "it could not get its inputs from other workers {} times, though they were \
                     computed again each time: {}. Workers fetch partitions from each other on \
                     the address they reach the scheduler from; a firewall between the hosts \
                     must let them",
                    tries.len(),
                    tries.join("; ")
                ),
            ),
            Stop::NoWorkers { kind, ends } => {
                let hint = if ends.iter().any(|m| m.contains("exited with status 0")) {
                    format!(
                        " Status 0 means a worker ran its program to the end without reaching \
                         this run's compute (fingerprint {:016x}): every worker must run the same \
                         program, with the same arguments, as its driver.",
                        program_fingerprint(self.graph.program())
                    )
                } else {
                    String::new()
                };
                self.fail(format!(
                    "workers of kind `{}` ({}) end before they connect to the scheduler: {}. \
                     Their standard error (or job log) says why.{hint}",
                    launcher.kinds()[kind].name,
                    launcher.name(),
                    ends.join("; ")
                ))
            }
        }
    }

    /// An event from another thread: a connection's handshake ended, or a
    /// driver thread's work.
    fn handle(&mut self, ev: Event) -> Result<()> {
        match ev {
            Event::Arrived(Arrival::Joined {
                id,
                info,
                stream,
                at,
            }) => self.joined(id, info, stream, at),
            Event::Arrived(Arrival::Refused { peer, error }) => match error {
                WireError::Fingerprint { .. } | WireError::Protocol { .. } => {
                    return Err(self.fail(format!(
                        "a worker from {peer} was rejected: {error}. Every worker must run the same \
                         program with the same arguments as the driver and reach the same compute() \
                         call; a worker kept from the program's last compute joins at the program's \
                         next compute() after it, so every process must make the same computes in the \
                         same order (or turn this off: `Distributed::keep_workers(false)`)"
                    )));
                }
                // Not one of ours: dropped, and counted in the report.
                _ => self.refused += 1,
            },
            Event::Arrived(Arrival::TurnedAway) => self.turned_away += 1,
            Event::ReadBack { result } => {
                self.reading -= 1;
                result?;
            }
            Event::Reread { task, result } => {
                let id = self.graph.task(task).id();
                let read = match result {
                    Ok(Some(bytes)) => {
                        self.data[task] = Some(Arc::new(bytes));
                        self.rereads += 1;
                        true
                    }
                    Ok(None) => {
                        self.job.warn(format!(
                            "the checkpoint files of `{id}` could not rebuild its output (a \
                             file missing or damaged): it is computed again"
                        ));
                        false
                    }
                    Err(e) => {
                        self.job.warn(format!(
                            "the checkpoint files of `{id}` could not be read ({e}): it is \
                             computed again"
                        ));
                        false
                    }
                };
                self.core.reread(task, read);
            }
            Event::Loaded { task, result } => {
                let loaded = result?;
                let kept = loaded.is_some();
                if let Some(bytes) = loaded {
                    self.data[task] = Some(Arc::new(bytes));
                }
                self.core.loaded(task, kept);
            }
        }
        Ok(())
    }

    /// What came from a worker's socket: a message, or its loss.
    fn incoming(
        &mut self,
        inc: Incoming,
        launcher: &mut dyn Launcher,
        work: &Sender<DriverWork>,
    ) -> Result<()> {
        let (id, msg, data) = match inc {
            Incoming::Lost { id, reason } => return self.worker_lost(id, &reason, launcher),
            Incoming::Msg { id, msg, data } => (id, msg, data),
        };
        match msg {
            FromWorker::Heartbeat { rss, peak } => {
                if let Some((name, _)) = self.core.worker(id) {
                    self.progress.worker_memory(name, rss, peak);
                    // The report keeps the peak: told only when it grows
                    // (its workers are found by name, one by one).
                    let known = self.peaks.entry(id).or_default();
                    if peak > *known {
                        *known = peak;
                        self.job.record_worker_memory(name, peak);
                    }
                }
            }
            FromWorker::Done {
                task,
                samples,
                failed,
                micros,
                ended_us,
                keys,
                shipped: _,
                read,
            } => {
                let counts = Counts {
                    samples: usize::try_from(samples).unwrap_or(usize::MAX),
                    failed: usize::try_from(failed).unwrap_or(usize::MAX),
                };
                let elapsed = Duration::from_micros(micros);
                let ended = self.worker_time(id, ended_us);
                self.done(
                    id,
                    task as usize,
                    (counts, elapsed, ended, keys, read),
                    data,
                    work,
                )?;
            }
            FromWorker::Draining => {
                if let Some((name, kind)) = self.core.worker(id) {
                    let (name, kind) = (name.to_owned(), kind.to_owned());
                    self.worker_state(
                        &name,
                        &kind,
                        "draining: asked to leave before its time limit",
                    );
                }
                self.core.draining(id);
            }
            FromWorker::Returned { task } => self.core.returned(id, task as usize),
            FromWorker::Handed { task, held } => {
                if let (true, Some(bytes)) = (held, data) {
                    self.data[task as usize] = Some(Arc::new(bytes));
                }
                self.core.handed(id, task as usize, held);
            }
            FromWorker::CannotLoad { task } => {
                if self.core.running_on(id, task as usize) {
                    self.driver_loads += 1;
                }
                self.core.cannot_load(id, task as usize);
            }
            FromWorker::Unreachable { task, input, error } => {
                let (task, input) = (task as usize, input as usize);
                if self.core.running_on(id, task) {
                    let worker = self.core.worker(id).map_or("?", |(n, _)| n).to_owned();
                    self.job.warn(format!(
                        "worker `{worker}` could not get the output of `{}` for `{}` ({error}); \
                         it is computed again",
                        self.graph.task(input).id(),
                        self.graph.task(task).id()
                    ));
                }
                self.core
                    .unreachable(id, task, input, &error)
                    .map_err(|stop| self.stopped(stop, launcher))?;
            }
            FromWorker::Refused { what } => {
                self.refused_peers.0 += 1;
                if self.refused_peers.1.len() < 3 {
                    self.refused_peers.1.push(what);
                }
            }
            FromWorker::Failed { task, error } => {
                let task = task as usize;
                let worker = self
                    .core
                    .worker(id)
                    .map_or_else(|| format!("#{id}"), |(name, _)| name.to_owned());
                let worker_name = worker.clone();
                let (keys, samples) = self.job.samples_of(task);
                let e = graph::Error::Task {
                    task: self.graph.task(task).id().to_owned(),
                    keys,
                    samples,
                    source: Box::new(
                        Error::Remote {
                            worker,
                            message: error,
                        }
                        .into_run(self.executor),
                    ),
                };
                let now = Instant::now();
                self.job.record_task(task, &worker_name, (now, now), true);
                self.job.failed_with(&e);
                self.progress.task_failed(self.graph, task, &e);
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Worker (job) `name`, of kind `kind`, is now in `state`: on the
    /// progress display and dashboard, and in the report's workers.
    fn worker_state(&self, name: &str, kind: &str, state: &str) {
        self.progress.worker_state(name, kind, state);
        self.job.record_worker(name, kind, state);
    }

    fn joined(&mut self, id: u32, info: WorkerInfo, stream: Stream, joined_at: Instant) {
        let threads = usize::try_from(info.threads).unwrap_or(1);
        let lifetime = (info.lifetime_ms > 0).then(|| Duration::from_millis(info.lifetime_ms));
        self.core
            .joined(id, info.name, threads, info.resources, lifetime);
        if let Some((name, kind)) = self.core.worker(id) {
            self.worker_state(name, kind, "connected");
        }
        self.conns.add(id, stream);
        self.peers.insert(id, info.peer);
        if let Some((name, _)) = self.core.worker(id) {
            let runner = self.job.runner(name);
            let at = self.runners.partition_point(|&(w, ..)| w < id);
            self.runners.insert(at, (id, runner, joined_at));
        }
    }

    /// When a run of worker `id` ended that it says ended `ended_us` after
    /// its handshake, by the driver's clock: counted from when the welcome
    /// went out. The worker's clock starts once the welcome reached it, so
    /// a run is placed early by that moment at most. A time past now (the
    /// worker's clock runs fast) is now, and moves the worker's start back
    /// by as much, so its later runs stay after this one.
    fn worker_time(&mut self, id: u32, ended_us: u64) -> Instant {
        let now = Instant::now();
        let Ok(at) = self.runners.binary_search_by_key(&id, |&(w, ..)| w) else {
            return now;
        };
        let start = &mut self.runners[at].2;
        match start.checked_add(Duration::from_micros(ended_us)) {
            Some(t) if t <= now => t,
            Some(t) => {
                *start = start.checked_sub(t - now).unwrap_or(*start);
                now
            }
            None => now,
        }
    }

    /// Worker `id` finished `task`: `counts`, `elapsed`, when it `ended`, a
    /// load's first `keys` and what reading its checkpoints did (`read`),
    /// and the output when the worker sent it (an output of the run, or a
    /// fit's model).
    fn done(
        &mut self,
        id: u32,
        task: usize,
        (counts, elapsed, ended, keys, read): (
            Counts,
            Duration,
            Instant,
            Vec<String>,
            Option<ReadStats>,
        ),
        bytes: Option<Vec<u8>>,
        work: &Sender<DriverWork>,
    ) -> Result<()> {
        if !self.core.running_on(id, task) {
            return Ok(()); // an answer from a worker already given up on
        }
        let info = self.graph.program();
        let kind = self.graph.task(task).kind();
        if let Some((name, worker_kind)) = self.core.worker(id) {
            let started = ended.checked_sub(elapsed).unwrap_or(ended);
            let who = match self.runners.binary_search_by_key(&id, |&(w, ..)| w) {
                Ok(at) => self.runners[at].1,
                Err(_) => self.job.runner(name),
            };
            self.job
                .record_ran_on(task, who, worker_kind, (started, ended));
            self.progress.task_ran_on(self.graph, task, name);
        }
        let shipped = |what: &str| {
            bytes.ok_or_else(|| internal(format!("worker #{id} kept {what} it was told to send")))
        };
        self.core.ran(task, elapsed);
        let read_back = self.core.reads_back(task);
        // A rebuilt output was counted when it was first made.
        let first = self.core.done(id, task);
        match kind {
            TaskKind::Load { partition, .. } => {
                if first {
                    if let Some(read) = read {
                        self.job.record_read(read.into());
                    }
                    let keys = keys
                        .into_iter()
                        .map(bob_pipelines_sample::Key::from)
                        .collect();
                    self.job.record_load(partition, keys, counts.failed);
                }
            }
            TaskKind::Transform {
                step, partition, ..
            } => {
                if first {
                    self.job.record_transform(step, counts, elapsed);
                }
                if read_back {
                    // On a driver thread: taking the input's keys may pull
                    // the caller's iterator.
                    self.reading += 1;
                    work.send(DriverWork::ReadBack(task))
                        .map_err(|_| internal("driver threads stopped".to_owned()))?;
                } else if self.is_output[task] {
                    // Decoded once the workers have their next runs (see
                    // `put_outputs`).
                    let bytes = shipped("an output")?;
                    self.shipped.push((task, partition, step, bytes));
                }
            }
            TaskKind::Fit { step } => {
                let bytes = shipped("a model")?;
                let model = info.steps()[step].decode_model(&bytes)?;
                let encoded = self.graph.program().checkpoint().map(|_| bytes.as_slice());
                self.job.record_fit(step, model, encoded, elapsed)?;
                self.models[step] = Some(Arc::new(bytes));
            }
        }
        if first {
            self.progress.task_finished(
                self.graph,
                &Done {
                    task,
                    counts,
                    elapsed,
                    ended,
                },
            );
        }
        Ok(())
    }

    /// Sends `task` (what becomes of its output, and the transforms chained
    /// after it) to worker `id` with where its inputs are, and the models of
    /// steps `models` first.
    fn dispatch(
        &mut self,
        id: u32,
        (task, output, then): (usize, Output, &[(usize, Output)]),
        models: &[usize],
        inputs: &[(usize, From)],
    ) -> Result<()> {
        let t = self.graph.task(task);
        let op_of = |task: usize| match self.graph.task(task).kind() {
            TaskKind::Fit { step } => TaskOp::Fit { step: step as u32 },
            TaskKind::Transform { step, .. } => TaskOp::Transform { step: step as u32 },
            TaskKind::Load { partition, from } => TaskOp::Load {
                partition: partition as u32,
                from: from.map(|s| s as u32),
            },
        };
        let op = op_of(task);
        let then: Vec<Next> = then
            .iter()
            .map(|&(task, output)| Next {
                task: task as u32,
                op: op_of(task),
                output,
            })
            .collect();
        let mut frames = Vec::new();
        let mut from = Vec::with_capacity(inputs.len());
        for &(d, f) in inputs {
            from.push(match f {
                From::Driver => {
                    frames.push(self.data[d].clone().ok_or_else(|| {
                        internal(format!(
                            "the input of `{}` from `{}` is gone",
                            t.id(),
                            self.graph.task(d).id()
                        ))
                    })?);
                    Input::Sent
                }
                From::Here { last } => Input::Here {
                    task: d as u32,
                    last,
                },
                From::Peer(w) => Input::Peer {
                    task: d as u32,
                    // A peer lost meanwhile: the fetch fails, and its loss
                    // rebuilds the input.
                    addr: self.peers.get(&w).cloned().unwrap_or_default(),
                },
            });
        }
        if !self.conns.has(id) {
            return Ok(()); // lost meanwhile: its loss sends the task again
        }
        for &step in models {
            let bytes = self.models[step].clone().ok_or_else(|| {
                internal(format!("the model of step {step} is not in the driver"))
            })?;
            self.conns
                .send(id, &ToWorker::Model { step: step as u32 }, &[&bytes]);
        }
        for n in &then {
            self.progress.task_started(self.graph, n.task as usize);
        }
        let frames: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
        self.conns.send(
            id,
            &ToWorker::Run {
                task: task as u32,
                op,
                inputs: from,
                output,
                then,
            },
            &frames,
        );
        self.progress.task_started(self.graph, task);
        Ok(())
    }

    fn worker_lost(&mut self, id: u32, reason: &str, launcher: &mut dyn Launcher) -> Result<()> {
        if !self.conns.has(id) {
            return Ok(());
        }
        self.conns.drop_conn(id);
        self.peers.remove(&id);
        // The launcher knows how it ended (killed, out of memory, …).
        let name = self.core.worker(id).map(|(n, _)| n.to_owned());
        if let Some((n, kind)) = self.core.worker(id) {
            self.worker_state(n, kind, &format!("lost: {reason}"));
        }
        let ended = name.as_ref().and_then(|name| {
            launcher
                .poll()
                .into_iter()
                .find(|(j, _)| j == name)
                .and_then(|(_, s)| match s {
                    JobState::Ended(how) => Some(how),
                    _ => None,
                })
        });
        let reason = ended.map_or_else(|| reason.to_owned(), |how| format!("{how}; {reason}"));
        match self.core.lost(id, &reason) {
            Ok(Some((name, running, rebuilt))) => {
                self.lost += 1;
                self.job.warn(format!(
                    "worker `{name}` was lost ({reason}); its {running} running task(s) were \
                     sent again, and {rebuilt} task(s) rebuild the partitions it held (read \
                     from their checkpoint files where they have them, else run again)"
                ));
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(stop) => Err(self.stopped(stop, launcher)),
        }
    }

    /// Once per interval: heartbeats, then the core's tick (launch failures,
    /// idle workers, scaling).
    fn tick(&mut self, launcher: &mut dyn Launcher) -> Result<()> {
        // Those sent something within the interval know the scheduler lives.
        self.conns.heartbeat(self.settings.interval / 2);
        let silence = self.settings.worker_timeout;
        for id in self.conns.silent(silence) {
            let reason = format!("silent for {silence:?} (no heartbeat)");
            self.worker_lost(id, &reason, launcher)?;
        }
        let states = launcher.poll();
        // Jobs whose worker has not connected yet, as the launcher sees them.
        for (job, state) in &states {
            let Some(kind) = self.core.waiting_job(job) else {
                continue;
            };
            let said = match state {
                JobState::Pending => "pending".to_owned(),
                JobState::Waiting { waited, why } => {
                    format!("pending for {}s: {why}", waited.as_secs())
                }
                JobState::Running => "started".to_owned(),
                JobState::Ended(how) => format!("ended before connecting: {how}"),
            };
            self.worker_state(job, kind, &said);
        }
        self.core
            .tick(&states)
            .map_err(|stop| self.stopped(stop, launcher))
    }

    /// The run is over: workers are told to go, the launcher stops what is
    /// left, and temp files of lost workers are removed.
    /// Ends the run's side of the workers: each leaves, or with `keep`,
    /// waits for the program's next compute (a worker near the end of its
    /// time is not kept; a job that never connected is cancelled). Returns
    /// the workers kept.
    fn close(&mut self, launcher: &mut dyn Launcher, keep: bool) -> Vec<Kept> {
        let kept_ids: BTreeSet<u32> = if keep {
            self.core.keepable().into_iter().collect()
        } else {
            BTreeSet::new()
        };
        for id in self.peers.keys() {
            if let Some((name, kind)) = self.core.worker(*id) {
                self.worker_state(name, kind, "finished");
            }
        }
        let streams = self.conns.shutdown(Duration::from_secs(2), &kept_ids);
        let mut kept = Vec::new();
        if keep {
            for (id, stream) in streams {
                if let Some((job, kind)) = self.core.job_of(id) {
                    kept.push(Kept { stream, job, kind });
                }
            }
            for job in self
                .core
                .jobs_but(&kept.iter().map(|k| k.job.as_str()).collect::<Vec<_>>())
            {
                launcher.cancel(&job);
            }
        } else {
            launcher.shutdown();
        }
        self.job.record_traffic(self.conns.read, self.conns.written);
        if self.refused > 0 {
            self.job.warn(format!(
                "{} connection(s) to the scheduler's port were refused: no proof of this run's \
                 secret (or not a worker at all)",
                self.refused
            ));
        }
        if self.turned_away > 0 {
            self.job.warn(format!(
                "{} connection(s) to the scheduler's port were closed at once: {MAX_HANDSHAKES} \
                 others were still in their handshake (a flood, or a port scan)",
                self.turned_away
            ));
        }
        let (refused, why) = &self.refused_peers;
        if *refused > 0 {
            self.job.warn(format!(
                "{refused} connection(s) to workers' peer ports were refused: no proof of this \
                 run's secret (or not a worker at all): {}",
                why.join("; ")
            ));
        }
        if self.driver_loads > 0 {
            self.job.warn(format!(
                "{} input partition(s) were loaded in the driver: the worker told to load each \
                 had read its inputs past it (inputs are read forward only)",
                self.driver_loads
            ));
        }
        if self.rereads > 0 {
            self.job.warn(format!(
                "{} partition(s) lost with their workers were read back from their checkpoint \
                 files instead of computed again",
                self.rereads
            ));
        }
        if self.lost > 0 {
            let info = self.graph.program();
            if let Some(ck) = info.checkpoint() {
                for (i, s) in info.steps().iter().enumerate() {
                    if ck.saves(i) {
                        let dir = ck.options().layout().step_dir(s.name());
                        let _ = bob_pipelines_checkpoint::clean_temps(&dir, true);
                    }
                }
            }
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use std::net::{SocketAddr, TcpStream};

    use bob_pipelines_graph::{Executed, Executor};

    /// The acceptor with `cap` handshakes at once and `deadline` for each;
    /// returns its address, its events, its stop switch and the
    /// connections whose wake pipe it writes to.
    fn acceptor(
        deadline: Duration,
        cap: usize,
    ) -> (SocketAddr, Receiver<Event>, Arc<AtomicBool>, Conns) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        let (conns, wake) = Conns::new(tx).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let secret = Secret::random().unwrap();
        let listener = Listener::Tcp(listener);
        accept_workers(listener, secret, 1, (deadline, cap), wake, stop.clone()).unwrap();
        (addr, rx, stop, conns)
    }

    /// Whether the scheduler closed `s` (after its challenge) within `limit`.
    fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
        s.set_read_timeout(Some(limit)).unwrap();
        let mut sink = Vec::new();
        s.read_to_end(&mut sink).is_ok()
    }

    #[test]
    fn a_peer_that_trickles_bytes_is_cut_off_at_the_handshake_deadline() {
        let (addr, events, stop, _conns) = acceptor(Duration::from_millis(300), 8);
        let mut s = TcpStream::connect(addr).unwrap();
        let writer = s.try_clone().unwrap();
        let trickle = std::thread::spawn(move || {
            // A byte every 50 ms: each read would wait far less than a per-read
            // timeout, so only an overall deadline ends it.
            for _ in 0..100 {
                if (&writer).write_all(&[0]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        assert!(
            closed_within(&mut s, Duration::from_secs(3)),
            "still open after 3 s"
        );
        match events.recv_timeout(Duration::from_secs(1)).unwrap() {
            Event::Arrived(Arrival::Refused { error, .. }) => assert!(
                matches!(&error, WireError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut)
                    || matches!(error, WireError::Unauthenticated),
                "{error}"
            ),
            _ => panic!("expected the connection to be refused"),
        }
        stop.store(true, Ordering::Release);
        let _ = trickle.join();
    }

    #[test]
    fn connections_beyond_the_cap_are_closed_at_once_and_counted() {
        let (addr, events, stop, _conns) = acceptor(Duration::from_secs(30), 4);
        // Four silent peers hold every handshake slot.
        let silent: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let mut held = 0;
        while held < 4 {
            // Each silent peer gets its challenge: its slot is taken.
            let mut s = silent[held].try_clone().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut len = [0u8; 4];
            s.read_exact(&mut len).unwrap();
            held += 1;
        }
        let mut extra: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        for s in &mut extra {
            assert!(
                closed_within(s, Duration::from_secs(5)),
                "not closed at once"
            );
        }
        let turned = (0..3)
            .filter(|_| {
                matches!(
                    events.recv_timeout(Duration::from_secs(5)),
                    Ok(Event::Arrived(Arrival::TurnedAway))
                )
            })
            .count();
        assert_eq!(turned, 3);
        // A slot given back takes a new connection again.
        drop(silent);
        let mut refused = 0;
        while refused < 4 {
            if let Ok(Event::Arrived(Arrival::Refused { .. })) =
                events.recv_timeout(Duration::from_secs(5))
            {
                refused += 1;
            } else {
                panic!("the silent peers' handshakes did not end when they left");
            }
        }
        let mut again = TcpStream::connect(addr).unwrap();
        again
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut len = [0u8; 4];
        again.read_exact(&mut len).unwrap(); // its challenge: it has a slot
        stop.store(true, Ordering::Release);
    }

    /// Runs `check` on a scheduler made for the plan it is given.
    struct Probe<F>(F);

    impl<F: Fn(&mut Scheduler<'_, '_>, &Sender<DriverWork>) -> Result<()> + Send + Sync> Executor
        for Probe<F>
    {
        fn name(&self) -> String {
            "probe".to_owned()
        }

        fn execute(&self, plan: graph::Plan<'_>) -> graph::Result<Executed> {
            let job = Execution::new(plan)?;
            let settings =
                super::super::Distributed::new(super::super::LocalProcesses::all_cores())
                    .settings
                    .clone();
            let (events, _keep) = mpsc::channel::<Event>();
            let mut s = Scheduler::new(
                &job,
                &settings,
                (&crate::Silent, "probe"),
                (vec![], Conns::new(events).unwrap().0),
                (Vec::new(), BTreeSet::new()),
            );
            let (work, _loads) = mpsc::channel();
            (self.0)(&mut s, &work).map_err(|e| e.into_run("probe"))?;
            Err(graph::Error::bug("the probe ran no run"))
        }
    }

    struct Same;
    impl bob_pipelines_estimator::Transformer for Same {
        type Input = u32;
        type Output = u32;
        fn transform(
            &self,
            b: &bob_pipelines_estimator::Batch<'_, u32>,
        ) -> std::result::Result<
            Vec<bob_pipelines_estimator::SampleResult<u32>>,
            bob_pipelines_estimator::BoxError,
        > {
            Ok(b.iter().map(|x| Ok(*x)).collect())
        }
    }

    /// A launcher that starts nothing: only its kinds and locality matter.
    struct Kinds(Vec<crate::distributed::WorkerKind>, bool);

    impl Launcher for Kinds {
        fn name(&self) -> String {
            "a cluster".to_owned()
        }
        fn kinds(&self) -> &[crate::distributed::WorkerKind] {
            &self.0
        }
        fn is_local(&self) -> bool {
            self.1
        }
        fn launch(
            &mut self,
            _: usize,
            _: usize,
            _: &[(String, String)],
        ) -> std::result::Result<Vec<String>, bob_pipelines_sample::BoxError> {
            Err("starts nothing".into())
        }
        fn cancel(&mut self, _: &str) {}
        fn poll(&mut self) -> Vec<(String, JobState)> {
            Vec::new()
        }
        fn shutdown(&mut self) {}
    }

    #[test]
    fn a_cluster_refuses_a_tag_no_queue_provides_and_one_machine_ignores_it() {
        use bob_pipelines_estimator::{Pipeline, Step};
        let p = Pipeline::new().then(Step::new(Same).name("same").transform_tag("io_big"));
        let samples = (0..4u32).map(|i| bob_pipelines_sample::Sample::new(format!("k{i}"), i));
        let kinds = vec![crate::distributed::WorkerKind::new(
            "default",
            2,
            std::num::NonZeroUsize::MIN,
        )];
        let check = Probe(move |s: &mut Scheduler<'_, '_>, _: &Sender<DriverWork>| {
            let ignored = check_resources(s.job, &Kinds(kinds.clone(), true), "local")?;
            assert_eq!(ignored.into_iter().collect::<Vec<_>>(), ["io_big"]);
            check_resources(s.job, &Kinds(kinds.clone(), false), "sge").map(|_| ())
        });
        let e = p
            .transform(samples)
            .compute(&check)
            .unwrap_err()
            .to_string();
        for part in [
            "`same.transform-0`",
            "needs resource `io_big`",
            "a cluster",
            "default []",
        ] {
            assert!(e.contains(part), "{part} missing in: {e}");
        }
    }
}
