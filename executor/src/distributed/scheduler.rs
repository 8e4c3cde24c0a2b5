//! The scheduler, in the driver process: it loads the input partitions,
//! hands fits and transforms to workers that have the resources they need,
//! keeps every partition it shipped until the task that consumes it
//! succeeded (so a lost worker's tasks are simply sent again), and asks its
//! launcher for as many workers of each kind as the ready tasks need.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufReader, BufWriter, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bob_pipelines_graph::{
    self as graph, Counts, Done, Execution, TaskGraph, TaskKind, program_fingerprint,
};

use super::Settings;
use super::launcher::{JobState, Launcher};
use super::protocol::{FromWorker, TaskOp, ToWorker, WorkerEnv, get, get_frames, is_timeout};
use crate::local::run_task;
use crate::progress::Progress;
use crate::wire::{self, Secret, SecretFile, WireError, WorkerInfo, encode};
use crate::{Error, Result};

/// Bytes shared between the scheduler and the threads that write them.
type Shared = Arc<Vec<u8>>;

/// What a writer thread sends: a message and the data frames after it.
type Out = (Vec<u8>, Vec<Shared>);

enum Event {
    Joined {
        id: u32,
        info: WorkerInfo,
        stream: TcpStream,
    },
    Refused {
        peer: SocketAddr,
        error: WireError,
    },
    /// A connection closed at once: too many were in their handshake.
    TurnedAway,
    Msg {
        id: u32,
        msg: FromWorker,
        data: Option<Vec<u8>>,
    },
    Lost {
        id: u32,
        reason: String,
    },
    /// A load finished in the driver: its encoded partition (none when the
    /// load is itself an output and stays in the job).
    Loaded {
        task: usize,
        result: graph::Result<Option<Vec<u8>>>,
    },
    Decoded {
        result: graph::Result<()>,
    },
}

/// Work for the driver's own threads.
enum DriverWork {
    Load(usize),
    Decode(usize, Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Waiting,
    Ready,
    Loading,
    Running(u32),
    Done,
}

struct Worker {
    name: String,
    kind: Option<usize>,
    resources: Vec<String>,
    capacity: usize,
    running: Vec<usize>,
    models: Vec<bool>,
    tx: Sender<Out>,
    stream: TcpStream,
    idle_ticks: usize,
}

impl Worker {
    fn send(&self, msg: &ToWorker, frames: Vec<Shared>) {
        // A closed writer means a lost worker; its reader reports that.
        if let Ok(header) = encode(msg) {
            let _ = self.tx.send((header, frames));
        }
    }
}

/// A launched job: its kind, and whether its worker has connected.
struct Launched {
    kind: usize,
    connected: bool,
}

/// Runs the remote part of `job` on workers from `launcher`; the job holds
/// the loads' and the outputs' partitions, and the report.
pub(crate) fn run(
    job: &Execution<'_>,
    launcher: &mut dyn Launcher,
    settings: &Settings,
    progress: &dyn Progress,
    executor: &str,
) -> Result<()> {
    let graph = job.graph();
    let fail = Error::Cannot;
    let ignored = check_resources(job, launcher, executor)?;
    let io = |what: &str, e: std::io::Error| fail(format!("{what}: {e}"));
    let listener =
        TcpListener::bind((settings.bind, 0)).map_err(|e| io("binding the scheduler's port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| io("the scheduler's port", e))?
        .port();
    let host = settings
        .advertise
        .clone()
        .unwrap_or_else(|| settings.bind.to_string());
    std::fs::create_dir_all(&settings.secret_dir)
        .map_err(|e| io(&format!("creating {}", settings.secret_dir.display()), e))?;
    let secret =
        SecretFile::create(&settings.secret_dir).map_err(|e| io("writing the secret file", e))?;
    let env = WorkerEnv {
        scheduler: format!("{host}:{port}"),
        secret_file: secret.path().to_path_buf(),
        program: Some(program_fingerprint(graph.program())),
        heartbeat: settings.heartbeat,
        death_timeout: settings.death_timeout,
        job_id: None,
        threads: std::num::NonZeroUsize::MIN,
        resources: Vec::new(),
    }
    .run_vars();

    let (events_tx, events) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    accept_workers(
        listener,
        secret.secret().clone(),
        program_fingerprint(graph.program()),
        (settings.handshake_timeout, MAX_HANDSHAKES),
        events_tx.clone(),
        stop.clone(),
    )
    .map_err(|e| io("listening for workers", e))?;

    let mut s = Scheduler::new(job, settings, progress, executor, env, events_tx.clone());
    s.kinds = launcher.kinds().to_vec();
    s.ignored = ignored;
    let (work_tx, work_rx) = mpsc::channel::<DriverWork>();
    let work_rx = Mutex::new(work_rx);
    let outcome = std::thread::scope(|scope| {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        for _ in 0..threads {
            let (rx, tx) = (&work_rx, events_tx.clone());
            scope.spawn(move || driver_thread(job, progress, rx, &tx));
        }
        let outcome = s.run(launcher, &work_tx, &events);
        drop(work_tx);
        outcome
    });
    stop.store(true, Ordering::Release);
    s.close(launcher);
    outcome
}

/// The kind of worker untagged tasks run on: the first that provides no
/// resource, else the first.
fn untagged_kind(kinds: &[super::WorkerKind]) -> usize {
    kinds
        .iter()
        .position(|k| k.resources.is_empty())
        .unwrap_or(0)
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

/// How many connections may be in their handshake at once: beyond it, a new
/// connection is closed at once (a flood or a port scan cannot hold the
/// scheduler's threads and descriptors).
pub(crate) const MAX_HANDSHAKES: usize = 64;

/// A connection in its handshake, with an overall deadline: each read or
/// write may take only what is left of it, so a peer that trickles a byte at
/// a time is cut off all the same.
struct Deadline<'s> {
    stream: &'s TcpStream,
    until: Instant,
}

impl Deadline<'_> {
    fn left(&self) -> std::io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the handshake took longer than its deadline",
            ));
        }
        Ok(left)
    }
}

impl std::io::Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        (&mut &*self.stream).read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        (&mut &*self.stream).write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        (&mut &*self.stream).flush()
    }
}

/// Gives a handshake slot back when its thread ends, however it ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts connections until `stop`; each is authenticated on its own
/// thread within `deadline`, and at most `cap` at once, so a silent, slow or
/// hostile peer holds up no one.
fn accept_workers(
    listener: TcpListener,
    secret: Secret,
    fingerprint: u64,
    (deadline, cap): (Duration, usize),
    events: Sender<Event>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let open = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        let mut next = 0u32;
        while !stop.load(Ordering::Acquire) {
            match listener.accept() {
                Ok((stream, peer)) => {
                    if open.load(Ordering::Acquire) >= cap {
                        let _ = stream.shutdown(Shutdown::Both);
                        if events.send(Event::TurnedAway).is_err() {
                            return;
                        }
                        continue;
                    }
                    open.fetch_add(1, Ordering::AcqRel);
                    let slot = Slot(open.clone());
                    next += 1;
                    let id = next;
                    let (secret, events) = (secret.clone(), events.clone());
                    std::thread::spawn(move || {
                        let _ = stream.set_nonblocking(false);
                        let mut conn = Deadline {
                            stream: &stream,
                            until: Instant::now() + deadline,
                        };
                        let outcome = wire::accept(&mut conn, &secret, fingerprint, id);
                        drop(slot);
                        let event = match outcome {
                            Ok(info) => {
                                let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
                                Event::Joined { id, info, stream }
                            }
                            Err(error) => {
                                let _ = stream.shutdown(Shutdown::Both);
                                Event::Refused { peer, error }
                            }
                        };
                        let _ = events.send(event);
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    });
    Ok(())
}

/// Loads input partitions and decodes output partitions for the scheduler.
fn driver_thread(
    job: &Execution<'_>,
    progress: &dyn Progress,
    work: &Mutex<Receiver<DriverWork>>,
    events: &Sender<Event>,
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
            DriverWork::Decode(task, bytes) => Event::Decoded {
                result: graph
                    .task(task)
                    .step()
                    .ok_or_else(|| graph::Error::bug(format!("task {task} has no step")))
                    .and_then(|s| info.steps()[s].output().decode(&bytes))
                    .map(|part| job.put_result(task, part)),
            },
        };
        if events.send(event).is_err() {
            return;
        }
    }
}

/// A broken guarantee of the scheduler's.
fn internal(what: String) -> Error {
    Error::Run(graph::Error::bug(format!("the scheduler: {what}")))
}

/// Reads a worker's messages until it goes away or falls silent.
fn read_worker(id: u32, stream: TcpStream, silence: Duration, events: Sender<Event>) {
    let _ = stream.set_read_timeout(Some(silence));
    let mut r = BufReader::new(stream);
    loop {
        let msg = match get::<FromWorker>(&mut r) {
            Ok(msg) => msg,
            Err(e) => {
                let reason = match &e {
                    e if is_timeout(e) => format!("silent for {silence:?} (no heartbeat)"),
                    WireError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                        "connection closed".to_owned()
                    }
                    e => e.to_string(),
                };
                let _ = events.send(Event::Lost { id, reason });
                return;
            }
        };
        let data = if matches!(msg, FromWorker::Done { .. }) {
            match get_frames(&mut r, 1) {
                Ok(mut f) => f.pop(),
                Err(e) => {
                    let _ = events.send(Event::Lost {
                        id,
                        reason: e.to_string(),
                    });
                    return;
                }
            }
        } else {
            None
        };
        if events.send(Event::Msg { id, msg, data }).is_err() {
            return;
        }
    }
}

/// Writes to a worker: batches what is queued into one flush.
fn write_worker(stream: TcpStream, rx: Receiver<Out>) {
    let shut = stream.try_clone();
    let mut w = BufWriter::with_capacity(1 << 16, stream);
    let write = |(header, frames): Out, w: &mut BufWriter<TcpStream>| {
        wire::write_frame(w, &header)?;
        for f in frames {
            wire::write_frame(w, &f)?;
        }
        Ok::<(), WireError>(())
    };
    while let Ok(out) = rx.recv() {
        let mut ok = write(out, &mut w).is_ok();
        while ok {
            match rx.try_recv() {
                Ok(out) => ok = write(out, &mut w).is_ok(),
                Err(_) => break,
            }
        }
        if !ok || w.flush().is_err() {
            break;
        }
    }
    let _ = w.flush();
    if let Ok(s) = shut {
        let _ = s.shutdown(Shutdown::Both);
    }
}

struct Scheduler<'j, 'a> {
    job: &'j Execution<'a>,
    graph: &'j TaskGraph,
    settings: &'j Settings,
    progress: &'j dyn Progress,
    executor: &'j str,
    env: Vec<(String, String)>,
    events_tx: Sender<Event>,
    state: Vec<St>,
    pending: Vec<usize>,
    consumers: Vec<usize>,
    failures: Vec<Vec<String>>,
    data: Vec<Option<Shared>>,
    is_output: Vec<bool>,
    ready: BTreeSet<(Reverse<usize>, usize)>,
    loads: std::collections::VecDeque<usize>,
    /// Loads that count against the window: in flight, or loaded and
    /// waiting for a transform that can run without a fit.
    loads_held: usize,
    /// Whether a load's partition counts in `loads_held`. A partition that
    /// feeds a fit does not once loaded: the fit needs every partition, so
    /// holding it must never keep the others from loading.
    counted: Vec<bool>,
    window: usize,
    models: Vec<Option<Shared>>,
    /// The launcher's kinds of worker.
    kinds: Vec<super::WorkerKind>,
    /// Resource tags no kind provides, ignored on one machine.
    ignored: BTreeSet<String>,
    workers: BTreeMap<u32, Worker>,
    jobs: HashMap<String, Launched>,
    launch_failures: Vec<(usize, String)>,
    ever_connected: Vec<bool>,
    remaining: usize,
    /// Tasks loading in the driver or running on a worker.
    under_way: usize,
    decoding: usize,
    refused: usize,
    turned_away: usize,
    lost: usize,
}

impl<'j, 'a> Scheduler<'j, 'a> {
    fn new(
        job: &'j Execution<'a>,
        settings: &'j Settings,
        progress: &'j dyn Progress,
        executor: &'j str,
        env: Vec<(String, String)>,
        events_tx: Sender<Event>,
    ) -> Self {
        let graph = job.graph();
        let n = graph.len();
        let info = graph.program();
        let mut is_output = vec![false; n];
        for &o in graph.outputs() {
            is_output[o] = true;
        }
        // Models the run starts with, encoded once, sent once per worker.
        let models = (0..info.steps().len())
            .map(|s| {
                job.model(s)
                    .and_then(|m| info.steps()[s].encode_model(&m).ok())
                    .map(Arc::new)
            })
            .collect();
        let mut s = Scheduler {
            job,
            graph,
            settings,
            progress,
            executor,
            env,
            events_tx,
            state: vec![St::Waiting; n],
            pending: graph.tasks().iter().map(|t| t.deps().len()).collect(),
            consumers: (0..n).map(|i| graph.dependents(i).len()).collect(),
            failures: vec![Vec::new(); n],
            data: vec![None; n],
            is_output,
            ready: BTreeSet::new(),
            loads: std::collections::VecDeque::new(),
            loads_held: 0,
            counted: vec![false; n],
            window: 2,
            models,
            kinds: Vec::new(),
            ignored: BTreeSet::new(),
            workers: BTreeMap::new(),
            jobs: HashMap::new(),
            launch_failures: Vec::new(),
            ever_connected: Vec::new(),
            remaining: n,
            under_way: 0,
            decoding: 0,
            refused: 0,
            turned_away: 0,
            lost: 0,
        };
        for i in 0..n {
            if s.pending[i] == 0 {
                s.make_ready(i);
            }
        }
        s
    }

    fn fail(&self, reason: String) -> Error {
        Error::Cannot(reason)
    }

    /// Moves task `i` to `st`, counting the tasks under way.
    fn set_state(&mut self, i: usize, st: St) {
        let busy = |st: St| matches!(st, St::Loading | St::Running(_));
        match (busy(self.state[i]), busy(st)) {
            (false, true) => self.under_way += 1,
            (true, false) => self.under_way -= 1,
            _ => {}
        }
        self.state[i] = st;
    }

    fn make_ready(&mut self, i: usize) {
        self.set_state(i, St::Ready);
        match self.graph.task(i).kind() {
            TaskKind::Load { .. } => self.loads.push_back(i),
            // Deeper steps first: partitions finish, and their memory goes.
            TaskKind::Fit { step } | TaskKind::Transform { step, .. } => {
                self.ready.insert((Reverse(step), i));
            }
        }
    }

    fn run(
        &mut self,
        launcher: &mut dyn Launcher,
        work: &Sender<DriverWork>,
        events: &Receiver<Event>,
    ) -> Result<()> {
        self.ever_connected = vec![false; launcher.kinds().len()];
        self.window = self.settings.load_window.unwrap_or_else(|| {
            2 + 2 * launcher
                .kinds()
                .iter()
                .map(|k| k.max * k.threads.get())
                .sum::<usize>()
        });
        self.start_loads(work);
        self.scale(launcher)?;
        let mut next_tick = Instant::now() + self.settings.interval;
        loop {
            if self.remaining == 0 && self.decoding == 0 {
                return Ok(());
            }
            let wait = next_tick.saturating_duration_since(Instant::now());
            match events.recv_timeout(wait) {
                Ok(ev) => {
                    self.handle(ev, launcher, work)?;
                    while let Ok(ev) = events.try_recv() {
                        self.handle(ev, launcher, work)?;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(internal("the event channel closed".to_owned()));
                }
            }
            self.assign()?;
            self.start_loads(work);
            self.check_progress()?;
            if Instant::now() >= next_tick {
                self.tick(launcher)?;
                next_tick = Instant::now() + self.settings.interval;
            }
        }
    }

    /// The watchdog: a run in which nothing is under way and nothing can
    /// start, yet tasks are left, would wait for ever. Say which tasks are
    /// stuck and on what, instead.
    fn check_progress(&self) -> Result<()> {
        if self.remaining == 0 || self.under_way > 0 || self.decoding > 0 || !self.ready.is_empty()
        {
            return Ok(());
        }
        let graph = self.graph;
        let id = |t: usize| format!("`{}`", graph.task(t).id());
        let stuck: Vec<String> = (0..graph.len())
            .filter(|&t| self.state[t] == St::Waiting)
            .take(5)
            .map(|t| {
                let on: Vec<String> = graph
                    .task(t)
                    .deps()
                    .iter()
                    .filter(|&&d| self.state[d] != St::Done)
                    .take(4)
                    .map(|&d| id(d))
                    .collect();
                format!("{} waits for {}", id(t), on.join(", "))
            })
            .collect();
        Err(internal(format!(
            "the run cannot go on: nothing is running and nothing can start, yet {} of {} tasks \
             are not done ({} load(s) wait for room in the driver's load window of {} \
             partitions, {} held); stuck: {}",
            self.remaining,
            graph.len(),
            self.loads.len(),
            self.window,
            self.loads_held,
            stuck.join("; ")
        )))
    }

    fn start_loads(&mut self, work: &Sender<DriverWork>) {
        while self.loads_held < self.window {
            let Some(t) = self.loads.pop_front() else {
                return;
            };
            self.set_state(t, St::Loading);
            self.loads_held += 1;
            self.counted[t] = true;
            if work.send(DriverWork::Load(t)).is_err() {
                return;
            }
        }
    }

    fn handle(
        &mut self,
        ev: Event,
        launcher: &mut dyn Launcher,
        work: &Sender<DriverWork>,
    ) -> Result<()> {
        match ev {
            Event::Joined { id, info, stream } => self.joined(id, info, stream),
            Event::Refused { peer, error } => match error {
                WireError::Fingerprint { .. } | WireError::Protocol { .. } => {
                    return Err(self.fail(format!(
                        "a worker from {peer} was rejected: {error}. Every worker must run the same \
                         program with the same arguments as the driver and reach the same compute() \
                         call (a program with several distributed computes gets new workers for each)"
                    )));
                }
                // Not one of ours: dropped, and counted in the report.
                _ => self.refused += 1,
            },
            Event::TurnedAway => self.turned_away += 1,
            Event::Msg { id, msg, data } => match msg {
                FromWorker::Heartbeat => {}
                FromWorker::Done {
                    task,
                    samples,
                    failed,
                    micros,
                } => {
                    let counts = Counts {
                        samples: usize::try_from(samples).unwrap_or(usize::MAX),
                        failed: usize::try_from(failed).unwrap_or(usize::MAX),
                    };
                    let elapsed = Duration::from_micros(micros);
                    self.done(
                        id,
                        task as usize,
                        counts,
                        elapsed,
                        data.unwrap_or_default(),
                        work,
                    )?;
                }
                FromWorker::Failed { task, error } => {
                    let task = task as usize;
                    let worker = self
                        .workers
                        .get(&id)
                        .map_or_else(|| format!("#{id}"), |w| w.name.clone());
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
                    self.progress.task_failed(self.graph, task, &e);
                    return Err(e.into());
                }
            },
            Event::Lost { id, reason } => self.lost(id, &reason, launcher)?,
            Event::Loaded { task, result } => {
                let loaded = result?;
                let feeds_fit = self
                    .graph
                    .dependents(task)
                    .iter()
                    .any(|&d| matches!(self.graph.task(d).kind(), TaskKind::Fit { .. }));
                match loaded {
                    Some(bytes) => self.data[task] = Some(Arc::new(bytes)),
                    None => self.release(task), // an output: it stays in the job
                }
                if feeds_fit {
                    self.release(task);
                }
                self.finish(task);
            }
            Event::Decoded { result } => {
                self.decoding -= 1;
                result?;
            }
        }
        Ok(())
    }

    fn joined(&mut self, id: u32, info: WorkerInfo, stream: TcpStream) {
        let kind = self.jobs.get_mut(&info.name).map(|j| {
            j.connected = true;
            j.kind
        });
        if let Some(k) = kind {
            self.ever_connected[k] = true;
        }
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(None);
        let (tx, rx) = mpsc::channel();
        let (Ok(r), Ok(w)) = (stream.try_clone(), stream.try_clone()) else {
            return;
        };
        std::thread::spawn(move || write_worker(w, rx));
        let (silence, events) = (self.settings.worker_timeout, self.events_tx.clone());
        std::thread::spawn(move || read_worker(id, r, silence, events));
        let threads = usize::try_from(info.threads).unwrap_or(1).max(1);
        self.workers.insert(
            id,
            Worker {
                name: info.name,
                kind,
                resources: info.resources,
                capacity: 2 * threads,
                running: Vec::new(),
                models: vec![false; self.graph.program().steps().len()],
                tx,
                stream,
                idle_ticks: 0,
            },
        );
    }

    /// Load `i` no longer counts against the window.
    fn release(&mut self, i: usize) {
        if std::mem::take(&mut self.counted[i]) {
            self.loads_held -= 1;
        }
    }

    /// Marks task `i` done: frees the inputs no one else needs, readies what waited.
    fn finish(&mut self, i: usize) {
        self.set_state(i, St::Done);
        self.remaining -= 1;
        for &d in self.graph.task(i).deps() {
            self.consumers[d] -= 1;
            if self.consumers[d] == 0 {
                self.data[d] = None;
                self.release(d);
            }
        }
        for &d in self.graph.dependents(i) {
            self.pending[d] -= 1;
            if self.pending[d] == 0 {
                self.make_ready(d);
            }
        }
    }

    fn done(
        &mut self,
        id: u32,
        task: usize,
        counts: Counts,
        elapsed: Duration,
        bytes: Vec<u8>,
        work: &Sender<DriverWork>,
    ) -> Result<()> {
        if task >= self.state.len() || self.state[task] != St::Running(id) {
            return Ok(()); // an answer from a worker already given up on
        }
        if let Some(w) = self.workers.get_mut(&id) {
            w.running.retain(|&t| t != task);
        }
        let info = self.graph.program();
        if let (Some(w), Some(step)) = (self.workers.get(&id), self.graph.task(task).step()) {
            let kind = w.kind.map_or("unknown", |k| self.kinds[k].name.as_str());
            let fit = matches!(self.graph.task(task).kind(), TaskKind::Fit { .. });
            self.job.record_place(step, &w.name, kind, fit);
        }
        match self.graph.task(task).kind() {
            TaskKind::Transform { step, .. } => {
                self.job.record_transform(step, counts, elapsed);
                if self.is_output[task] {
                    self.decoding += 1;
                    work.send(DriverWork::Decode(task, bytes))
                        .map_err(|_| internal("driver threads stopped".to_owned()))?;
                } else {
                    self.data[task] = Some(Arc::new(bytes));
                }
            }
            TaskKind::Fit { step } => {
                let model = info.steps()[step].decode_model(&bytes)?;
                let encoded = self.graph.program().checkpoint().map(|_| bytes.as_slice());
                self.job.record_fit(step, model, encoded, elapsed)?;
                self.models[step] = Some(Arc::new(bytes));
                if let Some(w) = self.workers.get_mut(&id) {
                    w.models[step] = true;
                }
            }
            TaskKind::Load { .. } => return Err(internal("a worker ran a load".to_owned())),
        }
        self.progress.task_finished(
            self.graph,
            &Done {
                task,
                counts,
                elapsed,
            },
        );
        self.finish(task);
        Ok(())
    }

    /// The resource `task` needs here: its tag, unless the tag is ignored.
    fn resource(&self, task: usize) -> Option<&str> {
        self.graph
            .task(task)
            .resource()
            .filter(|r| !self.ignored.contains(*r))
    }

    /// Whether worker `w` has room for `task` and is of the kind for it: a
    /// tagged task needs a worker that provides its resource; an untagged one
    /// goes to workers of the kind scaled for untagged tasks (a GPU job does
    /// not take CPU work), or to a worker of no known kind.
    fn fits(&self, w: &Worker, task: usize) -> bool {
        w.running.len() < w.capacity
            && match self.resource(task) {
                Some(r) => w.resources.iter().any(|x| x == r),
                None => w.kind.is_none_or(|k| k == untagged_kind(&self.kinds)),
            }
    }

    /// Hands ready tasks to workers with room and the resources they need.
    fn assign(&mut self) -> Result<()> {
        loop {
            if !self.workers.values().any(|w| w.running.len() < w.capacity) {
                return Ok(());
            }
            let pick = self.ready.iter().find_map(|&(_, t)| {
                self.workers
                    .iter()
                    .filter(|(_, w)| self.fits(w, t))
                    .min_by_key(|(_, w)| w.running.len())
                    .map(|(&id, _)| (t, id))
            });
            let Some((task, id)) = pick else {
                return Ok(());
            };
            self.dispatch(task, id)?;
        }
    }

    fn dispatch(&mut self, task: usize, id: u32) -> Result<()> {
        let t = self.graph.task(task);
        let (op, step) = match t.kind() {
            TaskKind::Fit { step } => (TaskOp::Fit { step: step as u32 }, step),
            TaskKind::Transform { step, .. } => (TaskOp::Transform { step: step as u32 }, step),
            TaskKind::Load { .. } => return Err(internal("a load in the remote queue".to_owned())),
        };
        let inputs = match t.kind() {
            TaskKind::Fit { .. } => t.deps().to_vec(),
            _ => vec![t.deps()[0]],
        };
        let frames = inputs
            .iter()
            .map(|&d| {
                self.data[d].clone().ok_or_else(|| {
                    internal(format!(
                        "the input of `{}` from `{}` is gone",
                        t.id(),
                        self.graph.task(d).id()
                    ))
                })
            })
            .collect::<Result<Vec<Shared>>>()?;
        let needs_model = matches!(op, TaskOp::Transform { .. })
            && self.graph.program().steps()[step].requires_fit();
        let model = self.models[step].clone();
        let Some(w) = self.workers.get_mut(&id) else {
            return Ok(());
        };
        if needs_model && !w.models[step] {
            if let Some(m) = model {
                w.send(&ToWorker::Model { step: step as u32 }, vec![m]);
                w.models[step] = true;
            }
        }
        w.send(
            &ToWorker::Run {
                task: task as u32,
                op,
                inputs: frames.len() as u32,
            },
            frames,
        );
        w.running.push(task);
        w.idle_ticks = 0;
        self.ready.remove(&(Reverse(step), task));
        self.set_state(task, St::Running(id));
        self.progress.task_started(self.graph, task);
        Ok(())
    }

    fn lost(&mut self, id: u32, reason: &str, launcher: &mut dyn Launcher) -> Result<()> {
        let Some(w) = self.workers.remove(&id) else {
            return Ok(());
        };
        let _ = w.stream.shutdown(Shutdown::Both);
        // The launcher knows how it ended (killed, out of memory, …).
        let ended = launcher
            .poll()
            .into_iter()
            .find(|(j, _)| *j == w.name)
            .and_then(|(_, s)| match s {
                JobState::Ended(how) => Some(how),
                _ => None,
            });
        let reason = ended.map_or_else(|| reason.to_owned(), |how| format!("{how}; {reason}"));
        if self.jobs.remove(&w.name).is_some() {
            launcher.cancel(&w.name);
        }
        self.lost += 1;
        self.job.warn(format!(
            "worker `{}` was lost ({reason}); its {} running task(s) were sent again",
            w.name,
            w.running.len()
        ));
        for task in w.running {
            self.failures[task].push(format!("`{}`: {reason}", w.name));
            if self.failures[task].len() > self.settings.allowed_failures {
                let last = self.failures[task].iter().rev().take(3).cloned();
                let t = self.graph.task(task);
                let step = t
                    .step()
                    .map_or("", |s| self.graph.program().steps()[s].name());
                let (keys, samples) = self.job.samples_of(task);
                return Err(Error::Run(graph::Error::Task {
                    task: t.id().to_owned(),
                    keys,
                    samples,
                    source: Box::new(
                        self.fail(format!(
                            "step `{step}` was running on {} workers that were lost; it may be \
                             what kills them (memory or time limits). Last: {}",
                            self.failures[task].len(),
                            last.collect::<Vec<_>>().join("; ")
                        ))
                        .into_run(self.executor),
                    ),
                }));
            }
            self.make_ready(task);
        }
        Ok(())
    }

    /// Once per interval: heartbeats, launch failures, idle workers, scaling.
    fn tick(&mut self, launcher: &mut dyn Launcher) -> Result<()> {
        for w in self.workers.values_mut() {
            w.send(&ToWorker::Heartbeat, Vec::new());
            w.idle_ticks = if w.running.is_empty() {
                w.idle_ticks + 1
            } else {
                0
            };
        }
        for (job, state) in launcher.poll() {
            let JobState::Ended(how) = state else {
                continue;
            };
            let Some(l) = self.jobs.get(&job) else {
                continue;
            };
            if l.connected {
                continue; // its connection's end reports it
            }
            let kind = l.kind;
            self.jobs.remove(&job);
            launcher.cancel(&job);
            self.launch_failures.push((kind, format!("`{job}` {how}")));
            let failed = self
                .launch_failures
                .iter()
                .filter(|(k, _)| *k == kind)
                .count();
            if failed >= 3 && !self.ever_connected[kind] {
                let last: Vec<&str> = self
                    .launch_failures
                    .iter()
                    .filter(|(k, _)| *k == kind)
                    .map(|(_, m)| m.as_str())
                    .collect();
                let hint = if last.iter().any(|m| m.contains("exited with status 0")) {
                    format!(
                        " Status 0 means a worker ran its program to the end without reaching \
                         this run's compute (fingerprint {:016x}): every worker must run the same \
                         program, with the same arguments, as its driver.",
                        program_fingerprint(self.graph.program())
                    )
                } else {
                    String::new()
                };
                return Err(self.fail(format!(
                    "workers of kind `{}` ({}) end before they connect to the scheduler: {}. \
                     Their standard error (or job log) says why.{hint}",
                    launcher.kinds()[kind].name,
                    launcher.name(),
                    last.join("; ")
                )));
            }
        }
        self.scale(launcher)
    }

    /// The kind of worker that serves a task: the first that provides its
    /// resource, or for an untagged task [`untagged_kind`].
    fn kind_of(&self, task: usize) -> usize {
        match self.resource(task) {
            Some(r) => self
                .kinds
                .iter()
                .position(|k| k.resources.iter().any(|x| x == r))
                .unwrap_or(0),
            None => untagged_kind(&self.kinds),
        }
    }

    /// Adaptive scaling: as many workers of each kind as its ready and
    /// running tasks (and those about to be, after a load) can use, between
    /// the kind's minimum and maximum; idle workers beyond that are released
    /// after `wait_count` intervals.
    fn scale(&mut self, launcher: &mut dyn Launcher) -> Result<()> {
        let remote_left =
            self.graph.tasks().iter().enumerate().any(|(i, t)| {
                !matches!(t.kind(), TaskKind::Load { .. }) && self.state[i] != St::Done
            });
        if !remote_left {
            return Ok(()); // nothing for a worker to do (all read from checkpoints)
        }
        let kinds = self.kinds.clone();
        let mut demand = vec![0usize; kinds.len()];
        for (i, t) in self.graph.tasks().iter().enumerate() {
            if matches!(t.kind(), TaskKind::Load { .. }) {
                continue;
            }
            let soon = match self.state[i] {
                St::Ready | St::Running(_) => true,
                St::Waiting => t
                    .deps()
                    .iter()
                    .all(|&d| matches!(self.graph.task(d).kind(), TaskKind::Load { .. })),
                St::Loading | St::Done => false,
            };
            if soon {
                demand[self.kind_of(i)] += 1;
            }
        }
        for (k, kind) in kinds.iter().enumerate() {
            let wanted = demand[k]
                .div_ceil(kind.threads.get())
                .clamp(kind.min.min(kind.max), kind.max);
            let have = self.jobs.values().filter(|j| j.kind == k).count();
            if wanted > have {
                let jobs = launcher.launch(k, wanted - have, &self.env).map_err(|e| {
                    self.fail(format!(
                        "cannot start workers of kind `{}` ({}): {e}",
                        kind.name,
                        launcher.name()
                    ))
                })?;
                for j in jobs {
                    self.jobs.insert(
                        j,
                        Launched {
                            kind: k,
                            connected: false,
                        },
                    );
                }
            } else if have > wanted {
                let mut extra = have - wanted;
                let idle: Vec<u32> = self
                    .workers
                    .iter()
                    .filter(|(_, w)| {
                        w.kind == Some(k)
                            && w.running.is_empty()
                            && w.idle_ticks >= self.settings.wait_count
                    })
                    .map(|(&id, _)| id)
                    .collect();
                for id in idle {
                    if extra == 0 {
                        break;
                    }
                    if let Some(w) = self.workers.remove(&id) {
                        w.send(&ToWorker::Shutdown, Vec::new());
                        self.jobs.remove(&w.name);
                        extra -= 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// The run is over: workers are told to go, the launcher stops what is
    /// left, and temp files of lost workers are removed.
    fn close(&mut self, launcher: &mut dyn Launcher) {
        for (_, w) in std::mem::take(&mut self.workers) {
            w.send(&ToWorker::Shutdown, Vec::new());
        }
        launcher.shutdown();
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    use bob_pipelines_graph::{Executed, Executor};

    /// The acceptor with `cap` handshakes at once and `deadline` for each;
    /// returns its address and its events.
    fn acceptor(deadline: Duration, cap: usize) -> (SocketAddr, Receiver<Event>, Arc<AtomicBool>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let secret = Secret::random().unwrap();
        accept_workers(listener, secret, 1, (deadline, cap), tx, stop.clone()).unwrap();
        (addr, rx, stop)
    }

    /// Whether the scheduler closed `s` (after its challenge) within `limit`.
    fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
        s.set_read_timeout(Some(limit)).unwrap();
        let mut sink = Vec::new();
        s.read_to_end(&mut sink).is_ok()
    }

    #[test]
    fn a_peer_that_trickles_bytes_is_cut_off_at_the_handshake_deadline() {
        let (addr, events, stop) = acceptor(Duration::from_millis(300), 8);
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
            Event::Refused { error, .. } => assert!(
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
        let (addr, events, stop) = acceptor(Duration::from_secs(30), 4);
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
                    Ok(Event::TurnedAway)
                )
            })
            .count();
        assert_eq!(turned, 3);
        // A slot given back takes a new connection again.
        drop(silent);
        let mut refused = 0;
        while refused < 4 {
            if let Ok(Event::Refused { .. }) = events.recv_timeout(Duration::from_secs(5)) {
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
            let (events, _keep) = mpsc::channel();
            let mut s = Scheduler::new(&job, &settings, &crate::Silent, "probe", vec![], events);
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

    #[test]
    fn the_watchdog_names_the_tasks_a_stuck_run_waits_for() {
        use bob_pipelines_estimator::{Pipeline, Step};
        let p = Pipeline::new().then(Step::new(Same).name("same"));
        let samples = (0..30u32).map(|i| bob_pipelines_sample::Sample::new(format!("k{i}"), i));
        let stuck = Probe(|s: &mut Scheduler<'_, '_>, work: &Sender<DriverWork>| {
            // Loads under way: the run is going on.
            s.window = 1;
            s.start_loads(work);
            s.check_progress()?;
            // A window that admits nothing, with nothing under way: stuck.
            s.window = 0;
            s.loads_held = 0;
            let t = s.loads.len();
            let loading = (0..s.state.len())
                .find(|&i| s.state[i] == St::Loading)
                .unwrap();
            s.set_state(loading, St::Ready);
            s.loads.push_front(loading);
            assert_eq!(s.loads.len(), t + 1);
            s.check_progress()
        });
        let e = p
            .transform(samples)
            .npartitions(3)
            .compute(&stuck)
            .unwrap_err()
            .to_string();
        for part in [
            "cannot go on",
            "6 of 6 tasks",
            "`same.transform-0` waits for `load-0`",
            "3 load(s) wait for room",
        ] {
            assert!(e.contains(part), "{part} missing in: {e}");
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
