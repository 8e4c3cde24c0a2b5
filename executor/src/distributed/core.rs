//! The scheduler's state machine: events in, commands out.
//!
//! Everything the scheduler decides is here: which input partitions load
//! (the load window), which task goes to which worker (resources, room),
//! what a lost worker costs (its running tasks, sent again; a task that
//! keeps killing workers fails the run), how many workers of each kind run
//! (within the kind's min and max), and when workers that never connect
//! mean the run cannot go on. It owns no socket, thread, launcher or byte of
//! data, so it is tested by feeding it events (`tests` below), in
//! milliseconds. The shell around it (`scheduler.rs`) turns sockets and the
//! launcher into events and carries out the [`Command`]s; it is the part the
//! process-level tests cover. (HyperQueue's tako splits its server the same
//! way: `reactor.rs` against a `Comm` trait.)

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bob_pipelines_graph::{TaskGraph, TaskKind};

use super::WorkerKind;
use super::launcher::JobState;
use super::protocol::Output;

/// Where a task's output is held while tasks still need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// In the driver (a load that ran there, or an output read back from
    /// its checkpoint files), as bytes.
    Driver,
    /// In worker `id`'s memory, where the task ran.
    Worker(u32),
}

/// Where a task's input comes from, for the worker that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum From {
    /// The driver sends it.
    Driver,
    /// The worker holds it; `last`: no other task needs it (a transform may
    /// take it instead of copying it).
    Here { last: bool },
    /// Worker `id` holds it: the worker fetches it from there.
    Peer(u32),
}

/// What the shell does for the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// Load input partition `task` in the driver; answer with [`Core::loaded`].
    Load(usize),
    /// Ask worker `worker`, which is leaving, for task `task`'s output: it
    /// comes to the driver (answer with [`Core::handed`]).
    Hand { worker: u32, task: usize },
    /// Send task `task` (a load, a fit or a transform) to worker `worker`,
    /// with where each of its inputs is; first the models of steps `models`,
    /// which that worker does not have yet. `output`: what becomes of its
    /// output. `then`: transforms that read only its output, run right after
    /// it on the same worker, each on the previous one's output (task,
    /// output) — a chain of one partition's steps costs one message, as dask
    /// fuses linear chains.
    Run {
        worker: u32,
        task: usize,
        models: Vec<usize>,
        inputs: Vec<(usize, From)>,
        output: Output,
        then: Vec<(usize, Output)>,
    },
    /// Read transform `task`'s output, lost with its worker, back from the
    /// checkpoint files that worker wrote, in the driver; answer with
    /// [`Core::reread`].
    Reread(usize),
    /// Start `n` workers of kind `kind`; answer with [`Core::launched`].
    Launch { kind: usize, n: usize },
    /// Tell worker `worker` (job `name` of kind `kind`) to leave, because
    /// `why` (idle beyond its kind's need, or at the end of its time).
    Release {
        worker: u32,
        name: String,
        kind: String,
        why: &'static str,
    },
    /// Stop job `name` (its worker was lost, or it ended before connecting).
    Cancel(String),
    /// Nothing needs task `task`'s output any more: drop it where it is.
    Free { task: usize, at: Place },
    /// Something the user should see now and find in the report.
    Note(String),
}

/// Why the run cannot go on, in the state machine's terms; the shell adds
/// what only it knows (samples, the launcher's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Task `task` was running on more workers that were lost than allowed.
    KillsWorkers { task: usize, losses: Vec<String> },
    /// Task `task` could not fetch its inputs from other workers, again and
    /// again, though their producers ran again each time.
    CannotFetch { task: usize, tries: Vec<String> },
    /// Three workers of kind `kind` ended before they connected, and none of
    /// that kind ever did.
    NoWorkers { kind: usize, ends: Vec<String> },
    /// Job `job` of kind `kind` has waited longer than the pending limit to
    /// start, and no worker of its kind ever connected.
    NeverStarts {
        job: String,
        kind: usize,
        waited: Duration,
        why: String,
    },
    /// Nothing is under way and nothing can start, yet tasks are left.
    Stuck(String),
}

/// The numbers the state machine works with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Input partitions loaded and not yet consumed, at most.
    pub(crate) window: usize,
    /// Workers a task may be running on when they are lost, beyond which it
    /// fails the run.
    pub(crate) allowed_failures: usize,
    /// Ticks a worker stays idle before it is released (above the minimum).
    pub(crate) wait_count: usize,
    /// How long a job of a kind that never connected may wait to start.
    pub(crate) pending_limit: Option<Duration>,
    /// Whether input partitions load on the workers (they rebuild the same
    /// inputs) rather than in the driver.
    pub(crate) worker_loads: bool,
}

/// How many times a task may fail to fetch an input from another worker
/// (each time its producer runs again) before the run stops.
const FETCH_TRIES: usize = 3;

/// Runs a worker holds at once per thread: one running, one queued, so a
/// thread does not wait for the network between runs.
pub(crate) const RUNS_PER_THREAD: usize = 2;

/// Runs per thread while runs are short (see [`SHORT_RUN`]) and not
/// batched (at the end of the run): one running, three queued. A run of a
/// partition's cheap steps takes less than a round trip through the
/// scheduler (~100 µs here: two processes, four threads, a socket each way),
/// so with one queued a thread waits for the network (the `distributed`
/// benchmark: 46 µs per trivial task with two, 25–29 with four).
pub(crate) const SHORT_RUNS_PER_THREAD: usize = 4;

/// Runs that take less than this on average (over the run so far) are short.
pub(crate) const SHORT_RUN: Duration = Duration::from_millis(1);

/// Runs that take less than this on average go to a worker
/// [`BATCH_PER_THREAD`] at a time per thread, while there is plenty left to
/// send: each message to a worker (a `send` that wakes it) costs the
/// scheduler more than the run's bookkeeping (at 128 workers with 20 ms runs,
/// the `scale` benchmark, a `send` is about 13 µs of the driver's time,
/// mostly the receiver's side of loopback TCP and the wake-up). A worker
/// holds up to [`BATCHED_RUNS_PER_THREAD`] runs per thread then, and gets a
/// batch when it has room for one. Longer runs cost the scheduler too little
/// for it to matter, and hold their queue for long.
pub(crate) const BATCH_RUN: Duration = Duration::from_millis(100);

/// Time to spare between the expected end of a task and its worker's
/// deadline (a job's time limit): estimates vary, and the grid may stop the
/// job a little early.
pub(crate) const DEADLINE_MARGIN: Duration = Duration::from_secs(10);

/// Runs sent at once per thread while runs are batched (see
/// [`BATCH_RUN`]): eight, so a worker is woken once per eight runs. The
/// `scale` benchmark's driver: 16.5–19.5 µs per task against 18–19 with
/// four, six runs alternating, utilisation 0.90–0.91 against 0.89–0.90;
/// the `distributed` benchmark's trivial tasks: 9.4–14.1 µs against
/// 12.4–16.1, six runs alternating (earlier, four against two: 33.5–39
/// against 35.5–42 µs at 128 workers).
pub(crate) const BATCH_PER_THREAD: usize = 8;

/// Runs a worker holds per thread while runs are batched: a batch, and two
/// more, so it never runs dry while its next batch is on the way. More
/// queued on one worker is more left waiting there at the end while others
/// are idle, so near the end of the run (less left to send than the workers
/// could hold) runs go one at a time and queues are not refilled (the
/// `scale` benchmark: utilisation 0.82–0.83 with four per thread to the
/// end, 0.84–0.87 with two, before the end was told apart).
pub(crate) const BATCHED_RUNS_PER_THREAD: usize = 10;

/// The longest the scheduler lets answers gather before it reads them (see
/// [`Core::gather`]): what a new worker may wait for its first runs, and a
/// lost one for its tasks to be sent again.
pub(crate) const GATHER_MAX: Duration = Duration::from_millis(50);

/// A load's operation: none (see [`op_in`]).
const NO_OP: u32 = u32::MAX;

/// `task`'s operation in `graph`, an index in `Core::op_time`: its step's
/// transforms, or its step's fit; [`NO_OP`] for a load, which is no
/// operation of its own.
fn op_in(graph: &TaskGraph, task: usize) -> u32 {
    let steps = graph.program().steps().len();
    let op = match graph.task(task).kind() {
        TaskKind::Transform { step, .. } => step,
        TaskKind::Fit { step } => steps + step,
        TaskKind::Load { .. } => return NO_OP,
    };
    u32::try_from(op).unwrap_or(NO_OP)
}

/// The recent task time follows each finished task by 1/16 of the
/// difference: after a long step, 50 cheap tasks bring it down twelvefold.
const RECENT_WEIGHT: u32 = 16;

impl Limits {
    /// The load window for `kinds`: `2 + 10 × Σ max × threads`. Each thread
    /// of each worker can hold up to [`BATCHED_RUNS_PER_THREAD`] partitions
    /// (one running, the rest queued); the 2 keeps loads going while the
    /// first workers start. More would only hold memory.
    pub(crate) fn window_for(kinds: &[WorkerKind]) -> usize {
        2 + BATCHED_RUNS_PER_THREAD * kinds.iter().map(|k| k.max * k.threads.get()).sum::<usize>()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Waiting,
    Ready,
    /// In the driver: an input partition loading, or a lost output read
    /// back from its checkpoint files.
    Loading,
    Running(u32),
    Done,
}

/// A connected worker, as the state machine sees it.
#[derive(Debug)]
struct Worker {
    name: String,
    kind: Option<usize>,
    resources: Vec<String>,
    /// Its threads: it holds [`RUNS_PER_THREAD`] runs (chains of tasks) per
    /// thread, [`BATCHED_RUNS_PER_THREAD`] while runs are batched, or
    /// [`SHORT_RUNS_PER_THREAD`] while runs are short at the end of the run.
    threads: usize,
    /// Runs sent and not finished.
    runs: usize,
    /// Whether it takes runs in this step: it had room for a batch when the
    /// step began (see [`BATCH_RUN`]).
    open: bool,
    running: Vec<usize>,
    /// The fitted steps whose model it has.
    models: Vec<bool>,
    /// Tasks whose outputs it holds for tasks still to run: a worker that
    /// holds some is never released as idle.
    holding: BTreeSet<usize>,
    idle_ticks: usize,
    /// When its job's time limit ends it (`None`: no limit).
    deadline: Option<Instant>,
    /// It was asked to leave soon (its grid's signal before the limit), or
    /// can take no more task before its deadline: it finishes what it runs
    /// and leaves; its replacement is started at once.
    leaving: bool,
    /// It is leaving, because of this, and hands the outputs it holds that
    /// tasks still need to the driver first (`handing`).
    retiring: Option<&'static str>,
    handing: BTreeSet<usize>,
}

/// A launched job: its kind, whether its worker has connected, and the
/// reason it waits that was last told.
#[derive(Debug)]
struct Launched {
    kind: usize,
    connected: bool,
    told: Option<String>,
    /// Kept from the program's last compute: it may have left in the
    /// meantime (no next compute came in time), which is no failure to
    /// start.
    kept: bool,
}

/// The kind of worker untagged tasks run on: the first that provides no
/// resource, else the first.
pub(crate) fn untagged_kind(kinds: &[WorkerKind]) -> usize {
    kinds
        .iter()
        .position(|k| k.resources.is_empty())
        .unwrap_or(0)
}

/// The scheduler's state: tasks, workers, jobs.
#[derive(Debug)]
pub(crate) struct Core<'g> {
    graph: &'g TaskGraph,
    kinds: Vec<WorkerKind>,
    /// What each task needs (see [`resource`](Self::resource)): its tag,
    /// unless no kind provides it and it is ignored, on one machine.
    needs: Vec<Option<&'g str>>,
    limits: Limits,
    state: Vec<St>,
    /// Dependencies not done yet, per task.
    pending: Vec<usize>,
    /// Dependents not done yet, per task: at 0 its output is freed.
    consumers: Vec<usize>,
    /// Fits and transforms ready, deeper steps first (partitions finish, and
    /// their memory goes).
    ready: BTreeSet<(Reverse<usize>, usize)>,
    loads: VecDeque<usize>,
    /// Loads that count against the window: in flight, or loaded and
    /// waiting for a transform that can run without a fit.
    loads_held: usize,
    /// Whether a load's partition counts in `loads_held`. A partition that
    /// feeds a fit does not once loaded: the fit needs every partition, so
    /// holding it must never keep the others from loading.
    counted: Vec<bool>,
    /// Whether a model of each step exists (from the start, or fitted).
    models: Vec<bool>,
    /// Where each task's output is, while tasks still need it.
    held: Vec<Option<Place>>,
    /// Loads that run in the driver: any when loads do not run on workers,
    /// outputs of the run, and partitions a worker had already passed (its
    /// input goes only forward).
    driver_load: Vec<bool>,
    /// Whether each task has finished once (a rebuilt one finishes again).
    completed: Vec<bool>,
    /// For a running task, the next task of its chain (same run, same
    /// worker).
    next: Vec<Option<usize>>,
    /// Outputs their worker dropped itself: a transform took it as its
    /// last reader.
    taken: Vec<bool>,
    /// Output tasks whose outputs the driver reads back from disk.
    read_back: Vec<bool>,
    /// Outputs lost with their worker whose checkpoint files could not
    /// rebuild them (missing, damaged, or the input gone from the driver):
    /// they are computed again instead.
    unreadable: Vec<bool>,
    /// Each input partition's load task.
    load_of: Vec<usize>,
    /// The time tasks ran on workers so far, and how many.
    run_time: (Duration, usize),
    /// Recent task times: an average in which each finished task weighs
    /// 1/[`RECENT_WEIGHT`]: whether answers gather (not while recent tasks
    /// are short). It follows a change of step, where the run-wide average
    /// lags: cheap tasks after a long step would be gathered for as if they
    /// were long.
    recent: Option<Duration>,
    /// The runs a worker holds per thread in this step.
    per_thread: usize,
    /// The workers open in this step that still have room (see `open`),
    /// least busy first: by the tasks each runs, then by id. Placement
    /// looks at these, not at every worker, and the least busy is the first
    /// that fits. With many workers, a scan of them all per run sent cost
    /// more than the rest of the placement; so did a scan of the open
    /// ones, once answers gathered for longer and most were open.
    open_ids: Vec<(usize, u32)>,
    /// Time and count of the finished tasks of each operation: each step's
    /// transforms, then each step's fit (see `op_of`); what a task is
    /// expected to take.
    op_time: Vec<(Duration, u32)>,
    /// Each task's index in `op_time` (`NO_OP` for a load): read for every
    /// run a worker holds at each [`gather`](Self::gather), and far smaller
    /// than the graph's tasks.
    ops: Vec<u32>,
    /// The time of this step (placement against workers' deadlines).
    now: Instant,
    workers: BTreeMap<u32, Worker>,
    jobs: HashMap<String, Launched>,
    launch_failures: Vec<(usize, String)>,
    ever_connected: Vec<bool>,
    /// Why each task's workers were lost.
    failures: Vec<Vec<String>>,
    /// Why each task could not fetch an input from another worker.
    fetches: Vec<Vec<String>>,
    remaining: usize,
    /// Tasks loading in the driver or running on a worker.
    under_way: usize,
    commands: Vec<Command>,
}

impl<'g> Core<'g> {
    /// The state of a run of `graph` on workers of `kinds`, with the models
    /// the run starts with (`models[step]`).
    pub(crate) fn new(
        graph: &'g TaskGraph,
        kinds: Vec<WorkerKind>,
        ignored: BTreeSet<String>,
        limits: Limits,
        models: Vec<bool>,
    ) -> Self {
        let n = graph.len();
        let driver_load = (0..n)
            .map(|i| match graph.task(i).kind() {
                TaskKind::Load { .. } => !limits.worker_loads || graph.dependents(i).is_empty(),
                _ => false,
            })
            .collect();
        let mut core = Core {
            graph,
            needs: Self::needs(graph, &ignored),
            ever_connected: vec![false; kinds.len()],
            kinds,
            limits,
            state: vec![St::Waiting; n],
            pending: graph.tasks().iter().map(|t| t.deps().len()).collect(),
            consumers: (0..n).map(|i| graph.dependents(i).len()).collect(),
            ready: BTreeSet::new(),
            loads: VecDeque::new(),
            loads_held: 0,
            counted: vec![false; n],
            models,
            held: vec![None; n],
            driver_load,
            completed: vec![false; n],
            next: vec![None; n],
            taken: vec![false; n],
            read_back: vec![false; n],
            unreadable: vec![false; n],
            run_time: (Duration::ZERO, 0),
            recent: None,
            per_thread: RUNS_PER_THREAD,
            open_ids: Vec::new(),
            op_time: vec![(Duration::ZERO, 0); 2 * graph.program().steps().len()],
            ops: (0..n).map(|t| op_in(graph, t)).collect(),
            now: Instant::now(),
            load_of: {
                let mut of = vec![0; graph.program().npartitions()];
                for (i, t) in graph.tasks().iter().enumerate() {
                    if let TaskKind::Load { partition, .. } = t.kind() {
                        of[partition] = i;
                    }
                }
                of
            },
            workers: BTreeMap::new(),
            jobs: HashMap::new(),
            launch_failures: Vec::new(),
            failures: vec![Vec::new(); n],
            fetches: vec![Vec::new(); n],
            remaining: n,
            under_way: 0,
            commands: Vec::new(),
        };
        for i in 0..n {
            if core.pending[i] == 0 {
                core.make_ready(i);
            }
        }
        core
    }

    /// The commands decided since the last call, in order.
    #[cfg(test)]
    pub(crate) fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.commands)
    }

    /// [`take_commands`](Self::take_commands) into `spare`, emptied first:
    /// the core goes on with `spare`'s memory. The shell takes commands
    /// after each batch of events, and a vector grown from empty each time
    /// cost a reallocation every few commands.
    pub(crate) fn swap_commands(&mut self, spare: &mut Vec<Command>) {
        spare.clear();
        std::mem::swap(&mut self.commands, spare);
    }

    /// Whether every task is done.
    pub(crate) fn finished(&self) -> bool {
        self.remaining == 0
    }

    /// The name of worker `id`, and the name of its kind.
    pub(crate) fn worker(&self, id: u32) -> Option<(&str, &str)> {
        self.workers.get(&id).map(|w| {
            let kind = w.kind.map_or("unknown", |k| self.kinds[k].name.as_str());
            (w.name.as_str(), kind)
        })
    }

    /// The connected workers worth keeping for the program's next compute:
    /// those of a known kind not leaving nor near their time limit.
    pub(crate) fn keepable(&self) -> Vec<u32> {
        self.workers
            .iter()
            .filter(|(_, w)| w.kind.is_some() && w.retiring.is_none() && !self.ending(w))
            .map(|(&id, _)| id)
            .collect()
    }

    /// Worker `id`'s job and kind.
    pub(crate) fn job_of(&self, id: u32) -> Option<(String, usize)> {
        let w = self.workers.get(&id)?;
        Some((w.name.clone(), w.kind?))
    }

    /// The jobs started for this run, but `but`.
    pub(crate) fn jobs_but(&self, but: &[&str]) -> Vec<String> {
        self.jobs
            .keys()
            .filter(|j| !but.contains(&j.as_str()))
            .cloned()
            .collect()
    }

    /// The kind of job `job` while its worker has not connected (none once
    /// it has, or for a job of no run's).
    pub(crate) fn waiting_job(&self, job: &str) -> Option<&str> {
        self.jobs
            .get(job)
            .filter(|j| !j.connected)
            .map(|j| self.kinds[j.kind].name.as_str())
    }

    /// Whether worker `id` is running `task` (an answer from a worker given
    /// up on is not).
    pub(crate) fn running_on(&self, id: u32, task: usize) -> bool {
        task < self.state.len() && self.state[task] == St::Running(id)
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
            TaskKind::Fit { step } | TaskKind::Transform { step, .. } => {
                self.ready.insert((Reverse(step), i));
            }
        }
    }

    /// Hands ready tasks to workers, then starts loads while the window has
    /// room (in the driver, or on a worker with room for the task that reads
    /// the partition): what the shell calls after every batch of events.
    pub(crate) fn step(&mut self) {
        self.open();
        self.assign();
        while self.loads_held < self.limits.window {
            let Some(&t) = self.loads.front() else {
                break;
            };
            if self.driver_load[t] {
                self.loads.pop_front();
                self.set_state(t, St::Loading);
                self.commands.push(Command::Load(t));
            } else {
                let Some(id) = self.least_busy(t) else {
                    break; // no room yet: loads keep their order
                };
                self.loads.pop_front();
                self.dispatch(t, id);
            }
            self.loads_held += 1;
            self.counted[t] = true;
        }
    }

    /// A load finished: a partition that feeds a fit no longer counts
    /// against the window (see `counted`), nor one that stays in the driver.
    fn load_done(&mut self, task: usize, kept: bool) {
        let graph = self.graph;
        let feeds_fit = graph
            .dependents(task)
            .iter()
            .any(|&d| matches!(graph.task(d).kind(), TaskKind::Fit { .. }));
        if !kept || feeds_fit {
            self.release(task);
        }
    }

    /// Load `task` finished in the driver; `kept` is false when its partition
    /// is an output of the run that stays in the driver (nothing to ship).
    pub(crate) fn loaded(&mut self, task: usize, kept: bool) {
        self.load_done(task, kept);
        if kept {
            self.held[task] = Some(Place::Driver);
        }
        self.completed[task] = true;
        self.finish(task);
    }

    /// Load `i` no longer counts against the window.
    fn release(&mut self, i: usize) {
        if std::mem::take(&mut self.counted[i]) {
            self.loads_held -= 1;
        }
    }

    /// Marks task `i` done: frees the inputs no one else needs, readies what
    /// waited.
    fn finish(&mut self, i: usize) {
        let graph = self.graph;
        for &d in graph.task(i).deps() {
            self.consumers[d] -= 1;
            if self.consumers[d] == 0 {
                self.free(d);
                self.release(d);
            }
        }
        self.readies(i);
    }

    /// Marks task `i` done and readies what waited for it.
    fn readies(&mut self, i: usize) {
        self.set_state(i, St::Done);
        self.remaining -= 1;
        let graph = self.graph;
        for &d in graph.dependents(i) {
            // A dependent that runs already took its inputs before this
            // task was rebuilt.
            if self.state[d] == St::Waiting {
                self.pending[d] -= 1;
                if self.pending[d] == 0 {
                    self.make_ready(d);
                }
            }
        }
    }

    /// Drops task `d`'s output where it is held.
    fn free(&mut self, d: usize) {
        if let Some(at) = self.held[d].take() {
            if let Place::Worker(w) = at {
                if let Some(w) = self.workers.get_mut(&w) {
                    w.holding.remove(&d);
                }
            }
            if !std::mem::take(&mut self.taken[d]) {
                self.commands.push(Command::Free { task: d, at });
            }
        }
    }

    /// Worker `id` connected: job `name`, `threads` threads, `resources`,
    /// `lifetime` left to live (`None`: no limit).
    pub(crate) fn joined(
        &mut self,
        id: u32,
        name: String,
        threads: usize,
        resources: Vec<String>,
        lifetime: Option<Duration>,
    ) {
        let kind = self.jobs.get_mut(&name).map(|j| {
            j.connected = true;
            j.kind
        });
        if let Some(k) = kind {
            self.ever_connected[k] = true;
        }
        self.workers.insert(
            id,
            Worker {
                name,
                kind,
                resources,
                threads: threads.max(1),
                runs: 0,
                open: true,
                running: Vec::new(),
                models: vec![false; self.graph.program().steps().len()],
                holding: BTreeSet::new(),
                idle_ticks: 0,
                deadline: lifetime.map(|l| Instant::now() + l),
                leaving: false,
                retiring: None,
                handing: BTreeSet::new(),
            },
        );
    }

    /// What becomes of `task`'s output: kept while tasks read it; an output
    /// of the run goes to the driver, or is dropped when the driver reads
    /// it back from its checkpoint (it still holds the partition's input:
    /// a worker loaded it).
    fn output(&self, task: usize) -> Output {
        let graph = self.graph;
        if !graph.dependents(task).is_empty() {
            return Output::Keep;
        }
        let from_disk = match graph.task(task).kind() {
            TaskKind::Transform { partition, .. } => {
                self.read_back[task] && !self.driver_load[self.load_of[partition]]
            }
            _ => false,
        };
        if from_disk {
            Output::Drop
        } else {
            Output::Send
        }
    }

    /// Outputs of output task `task` are left in their checkpoint files
    /// for the caller to read when it can, instead of sent.
    pub(crate) fn read_back(&mut self, task: usize) {
        self.read_back[task] = true;
    }

    /// Whether the driver reads `task`'s output back from its checkpoint
    /// (the worker neither sends nor keeps it).
    pub(crate) fn reads_back(&self, task: usize) -> bool {
        self.output(task) == Output::Drop
    }

    /// Worker `id` finished `task` (check [`running_on`](Self::running_on)
    /// first): a fit's model is the worker's from now on, and any other
    /// output stays on it until no task needs it. Returns whether the task
    /// finished for the first time (not a rebuild of a lost output).
    pub(crate) fn done(&mut self, id: u32, task: usize) -> bool {
        if !self.running_on(id, task) {
            return false;
        }
        let kind = self.graph.task(task).kind();
        let keep = self.output(task) == Output::Keep && !matches!(kind, TaskKind::Fit { .. });
        let end = self.next[task].take().is_none();
        if let Some(w) = self.workers.get_mut(&id) {
            w.running.retain(|&t| t != task);
            w.runs -= usize::from(end);
            if let TaskKind::Fit { step } = kind {
                w.models[step] = true;
            }
            if keep {
                w.holding.insert(task);
            }
        }
        match kind {
            TaskKind::Fit { step } => self.models[step] = true,
            TaskKind::Load { .. } => self.load_done(task, true),
            TaskKind::Transform { .. } => {}
        }
        if keep {
            self.held[task] = Some(Place::Worker(id));
        }
        let first = !std::mem::replace(&mut self.completed[task], true);
        self.finish(task);
        self.retire_if_idle(id);
        first
    }

    /// The resource `task` needs here: its tag, unless the tag is ignored.
    /// A load needs what the task that reads its partition needs: it runs
    /// where that task will.
    fn resource(&self, task: usize) -> Option<&'g str> {
        self.needs[task]
    }

    /// [`resource`](Self::resource) of every task of `graph`, worked out
    /// once: placement asks it for every worker it looks at.
    fn needs(graph: &'g TaskGraph, ignored: &BTreeSet<String>) -> Vec<Option<&'g str>> {
        (0..graph.len())
            .map(|task| {
                let task = match graph.task(task).kind() {
                    TaskKind::Load { .. } => *graph.dependents(task).first()?,
                    _ => task,
                };
                graph
                    .task(task)
                    .resource()
                    .filter(|r| !ignored.contains(*r))
            })
            .collect()
    }

    /// Whether worker `w` is of the kind for `task`: a tagged task needs a
    /// worker that provides its resource; an untagged one goes to workers of
    /// the kind scaled for untagged tasks (a GPU job does not take CPU work),
    /// or to a worker of no known kind.
    fn serves(&self, w: &Worker, task: usize) -> bool {
        match self.resource(task) {
            Some(r) => w.resources.iter().any(|x| x == r),
            None => w.kind.is_none_or(|k| k == untagged_kind(&self.kinds)),
        }
    }

    /// Whether worker `w` has room for `task`, is of the kind for it, and
    /// can finish it before its deadline.
    fn fits(&self, w: &Worker, task: usize) -> bool {
        self.has_room(w) && self.serves(w, task) && self.in_time(w, task)
    }

    /// Whether `task` (and what is chained after it) can end on worker `w`
    /// before its deadline, with [`DEADLINE_MARGIN`] to spare, as far as the
    /// finished tasks of its operation tell (a task of an operation none
    /// has finished yet is given a chance).
    fn in_time(&self, w: &Worker, task: usize) -> bool {
        let Some(deadline) = w.deadline else {
            return true;
        };
        self.now + self.expected(task) + DEADLINE_MARGIN <= deadline
    }

    /// How long `task` is expected to take: the average of the finished
    /// tasks of its operation; for a load, of the transform that reads it
    /// (it is chained with it).
    fn expected(&self, task: usize) -> Duration {
        let graph = self.graph;
        let task = match graph.task(task).kind() {
            TaskKind::Load { .. } => match graph.dependents(task).first() {
                Some(&d) => d,
                None => return Duration::ZERO,
            },
            _ => task,
        };
        self.average(task)
    }

    /// The average time of the finished tasks of `task`'s operation (none
    /// for a load, which is no operation of its own).
    fn average(&self, task: usize) -> Duration {
        match self.op_of(task).map(|op| self.op_time[op]) {
            Some((total, n)) if n > 0 => total / n,
            _ => Duration::ZERO,
        }
    }

    /// `task`'s operation, an index in `op_time`: its step's transforms, or
    /// its step's fit.
    fn op_of(&self, task: usize) -> Option<usize> {
        match self.ops[task] {
            NO_OP => None,
            op => Some(op as usize),
        }
    }

    /// Whether worker `w` can take one more run in this step.
    fn has_room(&self, w: &Worker) -> bool {
        w.open && !w.leaving && w.runs < self.per_thread * w.threads
    }

    /// The runs a worker holds per thread, and how many it gets at once:
    /// two, one at a time, unless runs are short or batched ([`SHORT_RUN`],
    /// [`BATCH_RUN`]). At the end of the run (less left to send than
    /// workers could hold) runs go one at a time, and long queues are not
    /// refilled: what is queued on one worker at the end waits while others
    /// are idle.
    fn runs_per_thread(&self) -> (usize, usize) {
        let (total, n) = self.run_time;
        let Ok(n) = u32::try_from(n) else {
            return (RUNS_PER_THREAD, 1);
        };
        if n == 0 {
            return (RUNS_PER_THREAD, 1);
        }
        let avg = total / n;
        match (avg < SHORT_RUN, avg < BATCH_RUN && !self.at_end()) {
            (_, true) => (BATCHED_RUNS_PER_THREAD, BATCH_PER_THREAD),
            (true, false) => (SHORT_RUNS_PER_THREAD, 1),
            (false, false) => (RUNS_PER_THREAD, 1),
        }
    }

    /// Whether the run is at its end: less is left to send than the
    /// workers could hold.
    fn at_end(&self) -> bool {
        let threads: usize = self.workers.values().map(|w| w.threads).sum();
        self.loads.len() + self.ready.len() < BATCHED_RUNS_PER_THREAD * threads
    }

    /// How long the scheduler may let workers' answers gather before it
    /// reads them: the work queued on the worker that has least (its runs
    /// beyond one per thread, at their operations' average times, per
    /// thread), at most [`GATHER_MAX`]; nothing while tasks are short
    /// ([`SHORT_RUN`]), before any has ended, or at the end of the run.
    /// Each wake of the scheduler costs a context switch, an `epoll_wait`,
    /// a `recv` per worker that answered and a step over the workers;
    /// answers read together share them, and a worker that answered twice
    /// is read once. No worker runs dry meanwhile, even if each thread's
    /// current run ends at once (the `scale` benchmark, 128 workers ending
    /// a 20 ms run every 160 µs: about 2 000–2 600 wakes for 20 000 runs
    /// at an eighth of a task, as before, and 300–850 now; see the README
    /// for the driver's CPU).
    pub(crate) fn gather(&self) -> Duration {
        match self.recent {
            Some(recent) if recent >= SHORT_RUN && !self.at_end() => {}
            _ => return Duration::ZERO,
        }
        // Each thread's current run may be about to end: a worker with
        // nothing queued beyond them leaves no time (and spares the sums).
        if self
            .workers
            .values()
            .any(|w| w.runs > 0 && w.runs <= w.threads)
        {
            return Duration::ZERO;
        }
        let mut least = GATHER_MAX;
        for w in self.workers.values().filter(|w| w.runs > 0) {
            // A load counts for nothing: it is chained with its transform.
            let work: Duration = w.running.iter().map(|&t| self.average(t)).sum();
            let queued = w.runs - w.threads;
            let per_thread = work.mul_f64(queued as f64 / (w.runs * w.threads) as f64);
            least = least.min(per_thread);
        }
        least
    }

    /// Opens the workers that have room for a batch of runs, for this
    /// step.
    fn open(&mut self) {
        self.now = Instant::now();
        let (per_thread, batch) = self.runs_per_thread();
        self.per_thread = per_thread;
        self.open_ids.clear();
        for (&id, w) in &mut self.workers {
            w.open = w.runs + batch * w.threads <= per_thread * w.threads;
            if w.open {
                self.open_ids.push((w.running.len(), id));
            }
        }
        self.open_ids.sort_unstable();
    }

    /// The workers open in this step with room, least busy first.
    fn opened(&self) -> impl Iterator<Item = (u32, &Worker)> {
        self.open_ids
            .iter()
            .filter_map(|&(_, id)| self.workers.get(&id).map(|w| (id, w)))
    }

    /// Worker `id` was sent a run: its place among the open workers, or
    /// none when it has no room left in this step.
    fn reopen(&mut self, id: u32) {
        if let Some(at) = self.open_ids.iter().position(|&(_, o)| o == id) {
            self.open_ids.remove(at);
        }
        if let Some(w) = self.workers.get(&id).filter(|w| self.has_room(w)) {
            let key = (w.running.len(), id);
            let at = self.open_ids.partition_point(|&k| k < key);
            self.open_ids.insert(at, key);
        }
    }

    /// Task `task` ran for `elapsed` (on a worker): the averages that say
    /// whether runs are short, and how long a task of its operation takes.
    pub(crate) fn ran(&mut self, task: usize, elapsed: Duration) {
        self.run_time.0 += elapsed;
        self.run_time.1 += 1;
        self.recent = Some(match self.recent {
            Some(r) => r - r / RECENT_WEIGHT + elapsed / RECENT_WEIGHT,
            None => elapsed,
        });
        if let Some(op) = self.op_of(task) {
            self.op_time[op].0 += elapsed;
            self.op_time[op].1 += 1;
        }
    }

    /// The least busy worker with room for `task` (by the tasks it runs,
    /// then by id).
    fn least_busy(&self, task: usize) -> Option<u32> {
        self.opened()
            .find(|(_, w)| self.fits(w, task))
            .map(|(id, _)| id)
    }

    /// Where `task` runs, if anywhere now. Locality first: the worker that
    /// holds its input (for a fit, most of its inputs) when it has room.
    /// A transform whose input's worker is busy waits for it, unless another
    /// worker of its kind is idle: then it moves, and its input follows.
    fn place(&self, task: usize) -> Option<u32> {
        let mut count: BTreeMap<u32, usize> = BTreeMap::new();
        for &d in self.graph.task(task).deps() {
            if let Some(Place::Worker(w)) = self.held[d] {
                *count.entry(w).or_default() += 1;
            }
        }
        let mut holders: Vec<(usize, u32)> = count.into_iter().map(|(w, n)| (n, w)).collect();
        holders.sort_unstable_by_key(|&(n, w)| (Reverse(n), w));
        let fit = matches!(self.graph.task(task).kind(), TaskKind::Fit { .. });
        let mut wait = false;
        for &(_, id) in &holders {
            let Some(w) = self.workers.get(&id) else {
                continue;
            };
            if self.fits(w, task) {
                return Some(id);
            }
            wait |= !fit && self.serves(w, task);
        }
        let best = self.least_busy(task)?;
        if wait && !self.workers[&best].running.is_empty() {
            return None;
        }
        Some(best)
    }

    /// Hands ready tasks to workers with room and the resources they need,
    /// where their inputs are when it can.
    fn assign(&mut self) {
        loop {
            if !self.opened().any(|(_, w)| self.has_room(w)) {
                return;
            }
            let pick = self
                .ready
                .iter()
                .find_map(|&(_, t)| self.place(t).map(|id| (t, id)));
            let Some((task, id)) = pick else {
                return;
            };
            self.dispatch(task, id);
        }
    }

    /// The transform that may run right after `t` on the same worker, in
    /// the same run: `t`'s only reader, waiting for nothing else, of the
    /// kind of worker `id`.
    fn fusable(&self, t: usize, id: u32) -> Option<usize> {
        let graph = self.graph;
        let &[d] = graph.dependents(t) else {
            return None;
        };
        let ok = matches!(graph.task(d).kind(), TaskKind::Transform { .. })
            && self.state[d] == St::Waiting
            && self.pending[d] == 1
            && self.workers.get(&id).is_some_and(|w| self.serves(w, d));
        ok.then_some(d)
    }

    fn dispatch(&mut self, task: usize, id: u32) {
        let graph = self.graph;
        let kind = graph.task(task).kind();
        let inputs: Vec<(usize, From)> = match kind {
            TaskKind::Load { .. } => Vec::new(),
            TaskKind::Transform { .. } => vec![graph.task(task).deps()[0]],
            TaskKind::Fit { .. } => graph.task(task).deps().to_vec(),
        }
        .into_iter()
        .map(|d| {
            let from = match self.held[d] {
                Some(Place::Worker(w)) if w == id => From::Here {
                    last: self.consumers[d] == 1,
                },
                Some(Place::Worker(w)) => From::Peer(w),
                Some(Place::Driver) | None => From::Driver,
            };
            (d, from)
        })
        .collect();
        let mut chain = vec![task];
        while let Some(d) = self.fusable(chain[chain.len() - 1], id) {
            chain.push(d);
        }
        if !self.workers.contains_key(&id) {
            return;
        }
        let mut models = Vec::new();
        // A load from checkpoints computes again, through its step, the
        // samples whose file is gone: it needs the models up to there.
        if let TaskKind::Load {
            from: Some(step), ..
        } = kind
        {
            let program = graph.program();
            if let Some(w) = self.workers.get_mut(&id) {
                for s in 0..=step {
                    if program.steps()[s].requires_fit() && self.models[s] && !w.models[s] {
                        w.models[s] = true;
                        models.push(s);
                    }
                }
            }
        }
        for &t in &chain {
            let step = graph.task(t).step().unwrap_or_default();
            let needs_model = matches!(graph.task(t).kind(), TaskKind::Transform { .. })
                && graph.program().steps()[step].requires_fit()
                && self.models[step];
            if let Some(w) = self.workers.get_mut(&id) {
                if needs_model && !w.models[step] {
                    w.models[step] = true;
                    models.push(step);
                }
                w.running.push(t);
                w.idle_ticks = 0;
            }
            if t == task && !matches!(kind, TaskKind::Load { .. }) {
                self.ready.remove(&(Reverse(step), t));
            }
            if t != task {
                self.pending[t] = 0;
            }
            self.set_state(t, St::Running(id));
        }
        for pair in chain.windows(2) {
            self.next[pair[0]] = Some(pair[1]);
            self.taken[pair[0]] = true;
        }
        if let (TaskKind::Transform { .. }, [(d, From::Here { last: true })]) =
            (kind, inputs.as_slice())
        {
            self.taken[*d] = true;
        }
        if let Some(w) = self.workers.get_mut(&id) {
            w.runs += 1;
        }
        self.reopen(id);
        let then = chain[1..].iter().map(|&t| (t, self.output(t))).collect();
        self.commands.push(Command::Run {
            worker: id,
            task,
            models,
            inputs,
            output: self.output(task),
            then,
        });
    }

    /// The tasks chained after `task` in its run, which did not run: back
    /// to waiting for it.
    fn unchain(&mut self, id: u32, task: usize) {
        let mut cur = self.next[task].take();
        while let Some(t) = cur {
            cur = self.next[t].take();
            if let Some(w) = self.workers.get_mut(&id) {
                w.running.retain(|&r| r != t);
            }
            if self.state[t] == St::Running(id) {
                self.set_state(t, St::Waiting);
                self.pending[t] = self
                    .graph
                    .task(t)
                    .deps()
                    .iter()
                    .filter(|&&d| self.state[d] != St::Done)
                    .count();
            }
        }
        if let Some(w) = self.workers.get_mut(&id) {
            w.runs -= 1;
        }
    }

    /// Task `t`, done, must run again: its output was lost (with its worker,
    /// or on the way to another). What reads it waits again; what it reads
    /// is rebuilt first when that is gone too — exactly the tasks needed,
    /// back to the loads or to outputs still held.
    fn undo(&mut self, t: usize) {
        let graph = self.graph;
        self.release(t); // a load counts again when it runs again
        self.set_state(t, St::Waiting);
        self.remaining += 1;
        for &x in graph.dependents(t) {
            match self.state[x] {
                St::Ready => {
                    self.unready(x);
                    self.pending[x] += 1;
                }
                St::Waiting => self.pending[x] += 1,
                _ => {}
            }
        }
        if self.rereadable(t) {
            // Its files are on disk: read, not computed again, and what it
            // read is not needed.
            self.set_state(t, St::Loading);
            self.commands.push(Command::Reread(t));
            return;
        }
        self.run_again(t);
    }

    /// Task `t`, waiting, runs again: it waits for its inputs.
    fn run_again(&mut self, t: usize) {
        for &d in self.graph.task(t).deps() {
            self.consumers[d] += 1;
        }
        self.wait_for_inputs(t);
    }

    /// Whether done task `t`'s output, lost, can be read back from the
    /// checkpoint files written when it ran: a transform whose step saves
    /// them, whose partition's samples are still in the driver (a worker
    /// loaded it), and not found unreadable before.
    fn rereadable(&self, t: usize) -> bool {
        let TaskKind::Transform {
            step, partition, ..
        } = self.graph.task(t).kind()
        else {
            return false;
        };
        self.completed[t]
            && !self.unreadable[t]
            && !self.driver_load[self.load_of[partition]]
            && self
                .graph
                .program()
                .checkpoint()
                .is_some_and(|c| c.saves(step))
    }

    /// The driver read task `t`'s lost output back from its checkpoint
    /// files (`read`), or could not (they are incomplete, or the input is
    /// gone from the driver): then it is computed again.
    pub(crate) fn reread(&mut self, t: usize, read: bool) {
        if self.state[t] != St::Loading {
            return;
        }
        if read {
            self.held[t] = Some(Place::Driver);
            self.readies(t);
        } else {
            self.unreadable[t] = true;
            self.set_state(t, St::Waiting);
            self.run_again(t);
        }
    }

    /// Task `t`, now waiting, waits for its inputs: those done and held are
    /// there, those gone are rebuilt first (each counts itself in
    /// `pending[t]` as it goes back to waiting), the rest are under way. It
    /// is ready at once when none is missing.
    fn wait_for_inputs(&mut self, t: usize) {
        self.pending[t] = 0;
        let graph = self.graph;
        for &d in graph.task(t).deps() {
            // A fit's output is its model, in the driver: never gone.
            let gone = self.state[d] == St::Done
                && self.held[d].is_none()
                && !matches!(graph.task(d).kind(), TaskKind::Fit { .. });
            if gone {
                self.undo(d);
            } else if self.state[d] != St::Done {
                self.pending[t] += 1;
            }
        }
        if self.pending[t] == 0 {
            self.make_ready(t);
        }
    }

    /// Ready task `x` waits again.
    fn unready(&mut self, x: usize) {
        match self.graph.task(x).kind() {
            TaskKind::Load { .. } => self.loads.retain(|&l| l != x),
            TaskKind::Fit { step } | TaskKind::Transform { step, .. } => {
                self.ready.remove(&(Reverse(step), x));
            }
        }
        self.set_state(x, St::Waiting);
    }

    /// Running task `task` goes back: ready, or waiting for inputs that
    /// must be rebuilt.
    fn requeue(&mut self, task: usize) {
        if matches!(self.graph.task(task).kind(), TaskKind::Load { .. }) {
            self.release(task);
        }
        self.set_state(task, St::Waiting);
        self.wait_for_inputs(task);
    }

    /// Worker `id` was lost, because of `reason`: its running tasks are sent
    /// again, unless one of them has now been running on more lost workers
    /// than allowed, and the outputs it held that tasks still need are
    /// rebuilt. Returns its name, how many tasks it was running, and how
    /// many tasks run again to rebuild what it held (`None`: not a worker
    /// of this run).
    pub(crate) fn lost(
        &mut self,
        id: u32,
        reason: &str,
    ) -> Result<Option<(String, usize, usize)>, Stop> {
        let Some(w) = self.workers.remove(&id) else {
            return Ok(None);
        };
        if self.jobs.remove(&w.name).is_some() {
            self.commands.push(Command::Cancel(w.name.clone()));
        }
        let running = w.running.len();
        for &task in &w.running {
            self.failures[task].push(format!("`{}`: {reason}", w.name));
            if self.failures[task].len() > self.limits.allowed_failures {
                return Err(Stop::KillsWorkers {
                    task,
                    losses: self.failures[task].clone(),
                });
            }
        }
        for &t in &w.holding {
            self.held[t] = None;
        }
        let before = self.remaining;
        for &t in &w.holding {
            if self.state[t] == St::Done && self.consumers[t] > 0 {
                self.undo(t);
            }
        }
        let rebuilt = self.remaining - before;
        for &task in &w.running {
            self.next[task] = None;
        }
        for &task in &w.running {
            if self.state[task] == St::Running(id) {
                self.requeue(task);
            }
        }
        Ok(Some((w.name, running, rebuilt)))
    }

    /// Worker `id` could not get input `input` of `task` (from the worker
    /// that held it, or from itself: gone from its memory), because of
    /// `why`: the input's producer runs again and the task waits for it.
    pub(crate) fn unreachable(
        &mut self,
        id: u32,
        task: usize,
        input: usize,
        why: &str,
    ) -> Result<(), Stop> {
        if !self.running_on(id, task) || !self.graph.task(task).deps().contains(&input) {
            return Ok(());
        }
        self.take_back(id, task);
        self.fetches[task].push(why.to_owned());
        if self.fetches[task].len() > FETCH_TRIES {
            return Err(Stop::CannotFetch {
                task,
                tries: self.fetches[task].clone(),
            });
        }
        // The driver's own data goes with the task: what it holds now was
        // rebuilt since that worker tried (read back from checkpoint files).
        if self.held[input] != Some(Place::Driver) {
            self.free(input);
        }
        self.requeue(task);
        Ok(())
    }

    /// Run `task`, sent to worker `id`, will not run there: it and the
    /// tasks chained after it leave the worker.
    fn take_back(&mut self, id: u32, task: usize) {
        self.unchain(id, task);
        if let Some(w) = self.workers.get_mut(&id) {
            w.running.retain(|&t| t != task);
        }
    }

    /// Worker `id` cannot load `task`'s partition: its input had gone past
    /// it. The driver loads it instead.
    pub(crate) fn cannot_load(&mut self, id: u32, task: usize) {
        if !self.running_on(id, task) {
            return;
        }
        self.take_back(id, task);
        self.release(task);
        self.driver_load[task] = true;
        self.set_state(task, St::Ready);
        self.loads.push_front(task);
    }

    /// Once per interval, with the launcher's job states: idle counts, jobs
    /// that ended before their worker connected, then scaling.
    pub(crate) fn tick(&mut self, states: &[(String, JobState)]) -> Result<(), Stop> {
        for w in self.workers.values_mut() {
            w.idle_ticks = if w.running.is_empty() {
                w.idle_ticks + 1
            } else {
                0
            };
        }
        for (job, state) in states {
            if let JobState::Waiting { waited, why } = state {
                self.waiting(job, *waited, why)?;
                continue;
            }
            let JobState::Ended(how) = state else {
                continue;
            };
            let Some(l) = self.jobs.get(job) else {
                continue;
            };
            if l.connected {
                continue; // its connection's end reports it
            }
            let (kind, kept) = (l.kind, l.kept);
            self.jobs.remove(job);
            self.commands.push(Command::Cancel(job.clone()));
            if kept {
                continue; // it left before this compute came: replaced as any
            }
            self.launch_failures.push((kind, format!("`{job}` {how}")));
            let ends: Vec<String> = self
                .launch_failures
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, m)| m.clone())
                .collect();
            if ends.len() >= 3 && !self.ever_connected[kind] {
                return Err(Stop::NoWorkers { kind, ends });
            }
        }
        self.scale();
        Ok(())
    }

    /// Job `job` has waited `waited` to start, because of `why`: said once
    /// per reason; past the pending limit, the run stops if no worker of
    /// its kind ever connected (a grid that runs some of them is only busy).
    fn waiting(&mut self, job: &str, waited: Duration, why: &str) -> Result<(), Stop> {
        let Some(l) = self.jobs.get_mut(job) else {
            return Ok(());
        };
        if l.connected {
            return Ok(());
        }
        let kind = l.kind;
        if l.told.as_deref() != Some(why) {
            l.told = Some(why.to_owned());
            self.commands.push(Command::Note(format!(
                "job `{job}` (workers of kind `{}`) has waited {}s to start: {why}",
                self.kinds[kind].name,
                waited.as_secs()
            )));
        }
        match self.limits.pending_limit {
            Some(limit) if waited >= limit && !self.ever_connected[kind] => {
                Err(Stop::NeverStarts {
                    job: job.to_owned(),
                    kind,
                    waited,
                    why: why.to_owned(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Jobs `names` were started for kind `kind`.
    pub(crate) fn launched(&mut self, kind: usize, names: Vec<String>) {
        for name in names {
            self.track(kind, name, false);
        }
    }

    /// Job `name` of kind `kind` runs a worker kept from the program's last
    /// compute, which starts again for this one.
    pub(crate) fn kept(&mut self, kind: usize, name: String) {
        self.track(kind, name, true);
    }

    /// Counts job `name` of kind `kind` as launched, not connected yet.
    fn track(&mut self, kind: usize, name: String, kept: bool) {
        self.jobs.insert(
            name,
            Launched {
                kind,
                connected: false,
                told: None,
                kept,
            },
        );
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
    pub(crate) fn scale(&mut self) {
        self.now = Instant::now();
        let graph = self.graph;
        // Each tick: from the compact array, not the graph's tasks.
        let is_load = |t: usize| self.op_of(t).is_none();
        if (0..graph.len()).all(|i| is_load(i) || self.state[i] == St::Done) {
            return; // nothing for a worker to do (all read from checkpoints)
        }
        let mut demand = vec![0usize; self.kinds.len()];
        for (i, t) in graph.tasks().iter().enumerate() {
            if is_load(i) {
                continue;
            }
            let soon = match self.state[i] {
                St::Ready | St::Running(_) => true,
                St::Waiting => t.deps().iter().all(|&d| is_load(d)),
                St::Loading | St::Done => false,
            };
            if soon {
                demand[self.kind_of(i)] += 1;
            }
        }
        for (k, &demand) in demand.iter().enumerate() {
            let kind = &self.kinds[k];
            let wanted = demand
                .div_ceil(kind.threads.get())
                .clamp(kind.min.min(kind.max), kind.max);
            let ending = self
                .workers
                .values()
                .filter(|w| w.kind == Some(k) && self.ending(w))
                .count();
            let have = self
                .jobs
                .values()
                .filter(|j| j.kind == k)
                .count()
                .saturating_sub(ending);
            if wanted > have {
                self.commands.push(Command::Launch {
                    kind: k,
                    n: wanted - have,
                });
            } else if have > wanted {
                let idle: Vec<u32> = self
                    .workers
                    .iter()
                    .filter(|(_, w)| {
                        w.kind == Some(k)
                            && w.running.is_empty()
                            && w.holding.is_empty()
                            && w.idle_ticks >= self.limits.wait_count
                    })
                    .map(|(&id, _)| id)
                    .take(have - wanted)
                    .collect();
                for id in idle {
                    self.retire(id, "released: idle");
                }
            }
        }
        // Workers at the end of their time leave once they are idle.
        let done: Vec<u32> = self
            .workers
            .iter()
            .filter(|(_, w)| w.running.is_empty() && w.retiring.is_none() && self.done_for(w))
            .map(|(&id, _)| id)
            .collect();
        for id in done {
            self.retire(id, "released: at the end of its time limit");
        }
    }

    /// The longest average of an operation's finished tasks.
    fn longest(&self) -> Duration {
        self.averages().max().unwrap_or(Duration::ZERO)
    }

    /// The shortest average of an operation's finished tasks.
    fn shortest(&self) -> Duration {
        self.averages().min().unwrap_or(Duration::ZERO)
    }

    /// The average of each operation's finished tasks, where some finished.
    fn averages(&self) -> impl Iterator<Item = Duration> + '_ {
        self.op_time
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(t, n)| *t / *n)
    }

    /// Whether worker `w` nears its end, so that its replacement should
    /// start now: its grid asked it to leave, or its deadline is closer than
    /// twice the longest task with its margin.
    fn ending(&self, w: &Worker) -> bool {
        w.leaving
            || w.deadline
                .is_some_and(|d| self.now + 2 * (self.longest() + DEADLINE_MARGIN) > d)
    }

    /// Whether worker `w` can take no more task: its grid asked it to
    /// leave, or not even a task of the shortest operation would end before
    /// its deadline (a worker with time for short tasks but not for a long
    /// fit keeps working on them).
    fn done_for(&self, w: &Worker) -> bool {
        w.leaving
            || w.deadline
                .is_some_and(|d| self.now + self.shortest() + DEADLINE_MARGIN > d)
    }

    /// Worker `id` leaves, because `why`: it takes no more task, hands the
    /// outputs it holds that tasks still need to the driver, then is told
    /// to go.
    fn retire(&mut self, id: u32, why: &'static str) {
        let Some(w) = self.workers.get(&id) else {
            return;
        };
        let needed: Vec<usize> = w
            .holding
            .iter()
            .copied()
            .filter(|&t| self.state[t] == St::Done && self.consumers[t] > 0)
            .filter(|t| !w.handing.contains(t))
            .collect();
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        w.leaving = true;
        w.retiring = Some(why);
        for task in needed {
            w.handing.insert(task);
            self.commands.push(Command::Hand { worker: id, task });
        }
        if w.handing.is_empty() {
            self.let_go(id);
        }
    }

    /// Worker `id`, retiring and holding nothing needed any more, is told
    /// to go.
    fn let_go(&mut self, id: u32) {
        let Some(w) = self.workers.remove(&id) else {
            return;
        };
        self.jobs.remove(&w.name);
        for &t in &w.holding {
            if self.held[t] == Some(Place::Worker(id)) {
                self.held[t] = None;
            }
        }
        let kind = w
            .kind
            .and_then(|k| self.kinds.get(k))
            .map_or_else(String::new, |k| k.name.clone());
        self.commands.push(Command::Release {
            worker: id,
            name: w.name,
            kind,
            why: w.retiring.unwrap_or("released"),
        });
    }

    /// Worker `id` handed task `task`'s output to the driver (`held`), or
    /// no longer had it: then the task runs again if it is still needed.
    /// The worker goes once it has handed everything asked.
    pub(crate) fn handed(&mut self, id: u32, task: usize, held: bool) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if !w.handing.remove(&task) {
            return;
        }
        w.holding.remove(&task);
        let done = w.handing.is_empty();
        if held {
            self.held[task] = Some(Place::Driver);
        } else {
            self.held[task] = None;
            if self.state[task] == St::Done && self.consumers[task] > 0 {
                self.undo(task);
            }
        }
        if done {
            self.let_go(id);
        }
    }

    /// Worker `id` was asked by its grid to leave soon (before its time
    /// limit): it takes no more task, its replacement starts, and it leaves
    /// once what it runs is done.
    pub(crate) fn draining(&mut self, id: u32) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        w.leaving = true;
        self.retire_if_idle(id);
        self.scale();
    }

    /// Worker `id`, draining, gives back run `task` (not started): it and
    /// what was chained after it go back to wait for another worker.
    pub(crate) fn returned(&mut self, id: u32, task: usize) {
        if !self.running_on(id, task) {
            return;
        }
        self.take_back(id, task);
        self.requeue(task);
        self.retire_if_idle(id);
    }

    /// A leaving worker that runs nothing more leaves.
    fn retire_if_idle(&mut self, id: u32) {
        if self
            .workers
            .get(&id)
            .is_some_and(|w| w.leaving && w.running.is_empty() && w.retiring.is_none())
        {
            self.retire(id, "released: asked to leave before its time limit");
        }
    }

    /// The watchdog: a run in which nothing is under way and nothing can
    /// start, yet tasks are left, would wait for ever. Say which tasks are
    /// stuck and on what, instead. `busy`: the shell's own work in flight
    /// (outputs being read back).
    pub(crate) fn check_progress(&self, busy: bool) -> Result<(), Stop> {
        // Loads with room in the window wait for a worker (`step` sends a
        // driver's load at once), as ready tasks do: workers that never
        // come are the launcher's to tell.
        let loads_wait = self.loads_held < self.limits.window && !self.loads.is_empty();
        if self.remaining == 0 || self.under_way > 0 || busy || !self.ready.is_empty() || loads_wait
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
        Err(Stop::Stuck(format!(
            "the run cannot go on: nothing is running and nothing can start, yet {} of {} tasks \
             are not done ({} load(s) wait for room in the driver's load window of {} \
             partitions, {} held); stuck: {}",
            self.remaining,
            graph.len(),
            self.loads.len(),
            self.limits.window,
            self.loads_held,
            stuck.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;

    use bob_pipelines_estimator::{
        Batch, BoxError, Fit, Pipeline, SampleResult, Step, Transformer,
    };
    use bob_pipelines_sample::Sample;
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Same;
    impl Transformer for Same {
        type Input = u32;
        type Output = u32;
        fn transform(&self, b: &Batch<'_, u32>) -> Result<Vec<SampleResult<u32>>, BoxError> {
            Ok(b.iter().map(|x| Ok(*x)).collect())
        }
    }
    struct Learn;
    impl Fit for Learn {
        type Input = u32;
        type Fitted = Same;
        fn fit(&self, _: &Batch<'_, u32>) -> Result<Same, BoxError> {
            Ok(Same)
        }
    }

    fn samples(n: u32) -> Vec<Sample<u32>> {
        (0..n).map(|i| Sample::new(format!("k{i}"), i)).collect()
    }

    /// The graph of `same` over `n` samples in `parts` partitions.
    fn graph(n: u32, parts: usize) -> TaskGraph {
        let p = Pipeline::new().then(Step::new(Same).name("same"));
        TaskGraph::new(p.transform(samples(n)).npartitions(parts).info().unwrap())
    }

    /// The graph of `same` then a fitted `learn` (tagged `tag`), fitted and
    /// transformed: loads, `same` transforms, `learn.fit`, `learn` transforms.
    fn fitted(tag: Option<&str>, n: u32, parts: usize) -> TaskGraph {
        let fit = Step::fit(Learn).name("learn");
        let fit = match tag {
            Some(t) => fit.fit_tag(t),
            None => fit,
        };
        let mut p = Pipeline::new().then(Step::new(Same).name("same")).then(fit);
        TaskGraph::new(
            p.fit_transform(samples(n))
                .npartitions(parts)
                .info()
                .unwrap(),
        )
    }

    fn kind(name: &str, max: usize, resources: &[&str]) -> WorkerKind {
        let mut k = WorkerKind::new(name, max, NonZeroUsize::MIN);
        k.resources = resources.iter().map(|r| (*r).to_owned()).collect();
        k
    }

    fn limits(window: usize) -> Limits {
        Limits {
            window,
            allowed_failures: 1,
            wait_count: 2,
            pending_limit: Some(Duration::from_secs(60)),
            worker_loads: false,
        }
    }

    fn id(g: &TaskGraph, task: usize) -> &str {
        g.task(task).id()
    }

    /// The tasks of `commands` sent to workers, by id, with their worker.
    fn runs<'g>(g: &'g TaskGraph, commands: &[Command]) -> Vec<(&'g str, u32)> {
        commands
            .iter()
            .filter_map(|c| match c {
                Command::Run { worker, task, .. } => Some((g.task(*task).id(), *worker)),
                _ => None,
            })
            .collect()
    }

    fn loads(commands: &[Command]) -> Vec<usize> {
        commands
            .iter()
            .filter_map(|c| match c {
                Command::Load(t) => Some(*t),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn loads_stay_within_the_window_until_their_partitions_are_consumed() {
        let g = graph(40, 10);
        let mut core = Core::new(
            &g,
            vec![kind("default", 1, &[])],
            BTreeSet::new(),
            limits(3),
            vec![false],
        );
        core.step();
        let first = loads(&core.take_commands());
        assert_eq!(first.len(), 3, "the window");
        for &t in &first {
            core.loaded(t, true);
        }
        core.step();
        assert!(
            loads(&core.take_commands()).is_empty(),
            "loaded, not consumed: still held"
        );

        // A worker transforms one partition: its load leaves the window.
        core.joined(7, "job-1".into(), 1, Vec::new(), None);
        core.step();
        let sent = core.take_commands();
        let (task, worker) = match sent[0] {
            Command::Run { task, worker, .. } => (task, worker),
            ref c => panic!("{c:?}"),
        };
        assert_eq!(worker, 7);
        assert_eq!(runs(&g, &sent).len(), RUNS_PER_THREAD, "runs per thread");
        core.done(7, task);
        let after = core.take_commands();
        assert!(
            after.contains(&Command::Free {
                task: g.task(task).deps()[0],
                at: Place::Driver
            }),
            "{after:?}"
        );
        core.step();
        assert_eq!(
            loads(&core.take_commands()).len(),
            1,
            "room for one more load"
        );
    }

    #[test]
    fn partitions_that_feed_a_fit_never_hold_the_window() {
        // The fit needs every partition: with a window of 2, all 10 must
        // still load, though nothing consumes them before the fit runs.
        let mut p = Pipeline::new().then(Step::fit(Learn).name("learn"));
        let g = TaskGraph::new(p.fit_transform(samples(40)).npartitions(10).info().unwrap());
        let mut core = Core::new(
            &g,
            vec![kind("default", 1, &[])],
            BTreeSet::new(),
            limits(2),
            vec![false, false],
        );
        let mut loaded = 0;
        for _ in 0..20 {
            core.step();
            for t in loads(&core.take_commands()) {
                core.loaded(t, true);
                loaded += 1;
            }
        }
        assert_eq!(loaded, 10);
        assert_eq!(core.check_progress(false), Ok(()), "the fit is ready");
    }

    #[test]
    fn tagged_tasks_go_to_workers_that_provide_the_tag_and_untagged_ones_stay_off_them() {
        let g = fitted(Some("gpu"), 8, 2);
        let kinds = vec![kind("default", 2, &[]), kind("gpu", 1, &["gpu"])];
        let mut core = Core::new(&g, kinds, BTreeSet::new(), limits(10), vec![false, true]);
        core.launched(0, vec!["cpu-1".into()]);
        core.launched(1, vec!["gpu-1".into()]);
        core.joined(1, "cpu-1".into(), 4, Vec::new(), None);
        core.joined(2, "gpu-1".into(), 4, vec!["gpu".into()], None);
        let mut placed = Vec::new();
        for _ in 0..10 {
            core.step();
            let commands = core.take_commands();
            for t in loads(&commands) {
                core.loaded(t, true);
            }
            for (task, worker) in runs(&g, &commands) {
                placed.push((task.to_owned(), worker));
                core.done(worker, g.find(task).unwrap());
            }
        }
        assert!(core.finished(), "{placed:?}");
        for (task, worker) in &placed {
            let want = if task.starts_with("learn.fit") { 2 } else { 1 };
            assert_eq!(*worker, want, "{task} ran on worker {worker}: {placed:?}");
        }
    }

    #[test]
    fn a_model_goes_to_each_worker_once_and_not_to_the_one_that_fitted_it() {
        // More `learn` transforms than the fitting worker has room for:
        // the rest go to the idle worker, which needs the model.
        let g = fitted(None, 16, 2 * RUNS_PER_THREAD);
        let mut core = Core::new(
            &g,
            vec![kind("default", 2, &[])],
            BTreeSet::new(),
            limits(10),
            vec![false, false],
        );
        core.joined(1, "a".into(), 1, Vec::new(), None);
        let fit = g.find("learn.fit").unwrap();
        let mut models = Vec::new();
        for _ in 0..20 {
            core.step();
            for c in core.take_commands() {
                match c {
                    Command::Load(t) => core.loaded(t, true),
                    Command::Run {
                        worker,
                        task,
                        models: sent,
                        ..
                    } => {
                        if task == fit {
                            core.joined(2, "b".into(), 1, Vec::new(), None);
                        }
                        if !sent.is_empty() {
                            models.push(worker);
                        }
                        assert!(core.done(worker, task));
                    }
                    _ => {}
                }
            }
        }
        assert!(core.finished());
        assert_eq!(models, [2], "worker 1 fitted it; worker 2 gets it once");
    }

    #[test]
    fn a_lost_workers_tasks_are_sent_again_and_a_task_that_keeps_killing_fails_the_run() {
        let g = graph(4, 1);
        let mut core = Core::new(
            &g,
            vec![kind("default", 2, &[])],
            BTreeSet::new(),
            limits(4),
            vec![false],
        );
        core.launched(0, vec!["j1".into(), "j2".into()]);
        core.step();
        for t in loads(&core.take_commands()) {
            core.loaded(t, true);
        }
        core.joined(1, "j1".into(), 1, Vec::new(), None);
        core.step();
        assert_eq!(runs(&g, &core.take_commands()), [("same.transform-0", 1)]);
        assert_eq!(core.lost(1, "killed"), Ok(Some(("j1".to_owned(), 1, 0))));
        assert_eq!(core.take_commands(), [Command::Cancel("j1".into())]);
        core.joined(2, "j2".into(), 1, Vec::new(), None);
        core.step();
        assert_eq!(runs(&g, &core.take_commands()), [("same.transform-0", 2)]);
        assert!(!core.running_on(1, 0) && core.check_progress(false).is_ok());
        match core.lost(2, "out of memory") {
            Err(Stop::KillsWorkers { task, losses }) => {
                assert_eq!(id(&g, task), "same.transform-0");
                assert_eq!(losses, ["`j1`: killed", "`j2`: out of memory"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(core.lost(9, "never joined"), Ok(None));
    }

    #[test]
    fn scaling_follows_the_ready_tasks_within_min_and_max_and_releases_idle_workers() {
        let g = graph(40, 10);
        let mut kinds = vec![kind("default", 3, &[])];
        kinds[0].min = 1;
        let mut core = Core::new(&g, kinds, BTreeSet::new(), limits(20), vec![false]);
        core.step();
        for t in loads(&core.take_commands()) {
            core.loaded(t, true);
        }
        core.scale();
        assert_eq!(
            core.take_commands(),
            [Command::Launch { kind: 0, n: 3 }],
            "at most max"
        );
        core.launched(0, vec!["a".into(), "b".into(), "c".into()]);
        core.scale();
        assert!(
            core.take_commands().is_empty(),
            "the jobs are counted once launched"
        );
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            core.joined(i as u32, name.into(), 1, Vec::new(), None);
        }
        // Run everything.
        while !core.finished() {
            core.step();
            for (task, worker) in runs(&g, &core.take_commands()) {
                core.done(worker, g.find(task).unwrap());
            }
        }
        core.take_commands();
        // Idle: nothing to do, no release before `wait_count` ticks, then
        // down to... nothing left for workers: the run is over, no scaling.
        assert_eq!(core.tick(&[]), Ok(()));
        assert!(core.take_commands().is_empty());
    }

    #[test]
    fn idle_workers_beyond_the_need_leave_after_wait_count_ticks() {
        let three = |g| {
            let mut core = Core::new(
                g,
                vec![kind("default", 3, &[])],
                BTreeSet::new(),
                limits(10),
                vec![false; g.program().steps().len()],
            );
            core.launched(0, vec!["a".into(), "b".into(), "c".into()]);
            for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
                core.joined(i as u32, name.into(), 1, Vec::new(), None);
            }
            core
        };
        // One transform is held back: one worker is enough for it.
        let g = graph(8, 4);
        let mut core = three(&g);
        let last = g.find("same.transform-3").unwrap();
        drive(&mut core, &[last]);
        let busy: Vec<u32> = (0..3).filter(|&w| core.running_on(w, last)).collect();
        assert_eq!(busy.len(), 1);
        assert_eq!(core.tick(&[]), Ok(()));
        assert!(core.take_commands().is_empty(), "idle for one tick only");
        assert_eq!(core.tick(&[]), Ok(()));
        let released: Vec<Command> = core.take_commands();
        assert_eq!(released.len(), 2, "{released:?}");
        assert!(
            released
                .iter()
                .all(|c| matches!(c, Command::Release { worker, .. } if *worker != busy[0]))
        );
        // Idle workers that hold partitions a task still needs stay: the
        // `same` outputs wait for the fit, then for `learn`'s transforms.
        let g = fitted(None, 8, 4);
        let mut core = three(&g);
        drive(&mut core, &[g.find("learn.fit").unwrap()]);
        for _ in 0..5 {
            assert_eq!(core.tick(&[]), Ok(()));
        }
        let kept = core.take_commands();
        assert!(
            !kept.iter().any(|c| matches!(c, Command::Release { .. })),
            "{kept:?}"
        );
    }

    #[test]
    fn workers_that_end_before_connecting_stop_the_run_at_the_third() {
        let g = graph(4, 2);
        let mut core = Core::new(
            &g,
            vec![kind("default", 1, &[])],
            BTreeSet::new(),
            limits(4),
            vec![false],
        );
        let ended = |job: &str| {
            (
                job.to_owned(),
                JobState::Ended("exited with status 1".into()),
            )
        };
        for (i, job) in ["j1", "j2", "j3"].into_iter().enumerate() {
            core.launched(0, vec![job.into()]);
            let r = core.tick(&[ended(job)]);
            let commands = core.take_commands();
            assert_eq!(commands[0], Command::Cancel(job.into()));
            if i < 2 {
                assert_eq!(r, Ok(()));
                assert!(
                    commands.contains(&Command::Launch { kind: 0, n: 1 }),
                    "{commands:?}"
                );
            } else {
                assert_eq!(
                    r,
                    Err(Stop::NoWorkers {
                        kind: 0,
                        ends: vec![
                            "`j1` exited with status 1".into(),
                            "`j2` exited with status 1".into(),
                            "`j3` exited with status 1".into(),
                        ]
                    })
                );
            }
        }
    }

    #[test]
    fn kept_workers_that_left_before_the_compute_are_replaced_not_failures() {
        let g = graph(4, 2);
        let mut core = Core::new(
            &g,
            vec![kind("default", 1, &[])],
            BTreeSet::new(),
            limits(4),
            vec![false],
        );
        for job in ["k1", "k2", "k3", "k4"] {
            core.kept(0, job.into());
        }
        let left: Vec<(String, JobState)> = ["k1", "k2", "k3", "k4"]
            .into_iter()
            .map(|j| (j.to_owned(), JobState::Ended("exited with status 0".into())))
            .collect();
        assert_eq!(core.tick(&left), Ok(()));
        let commands = core.take_commands();
        assert!(
            commands.contains(&Command::Launch { kind: 0, n: 1 }),
            "replaced: {commands:?}"
        );
    }

    #[test]
    fn the_watchdog_names_the_tasks_a_stuck_run_waits_for() {
        let g = graph(30, 3);
        // Loads under way: the run is going on.
        let mut core = Core::new(
            &g,
            vec![kind("default", 1, &[])],
            BTreeSet::new(),
            limits(1),
            vec![false],
        );
        core.step();
        assert_eq!(core.check_progress(false), Ok(()));
        // A window that admits nothing, with nothing under way: stuck.
        let stuck = Core::new(
            &g,
            vec![kind("default", 1, &[])],
            BTreeSet::new(),
            limits(0),
            vec![false],
        );
        let Err(Stop::Stuck(e)) = stuck.check_progress(false) else {
            panic!("not stuck");
        };
        for part in [
            "cannot go on",
            "6 of 6 tasks",
            "`same.transform-0` waits for `load-0`",
            "3 load(s) wait for room",
        ] {
            assert!(e.contains(part), "{part} missing in: {e}");
        }
    }

    #[test]
    fn a_waiting_job_is_told_once_per_reason_and_past_the_limit_stops_the_run() {
        let g = graph(4, 2);
        let mut core = Core::new(
            &g,
            vec![kind("gpu", 1, &[])],
            BTreeSet::new(),
            limits(4),
            vec![false],
        );
        core.launched(0, vec!["7".into()]);
        let waiting = |secs, why: &str| {
            vec![(
                "7".to_owned(),
                JobState::Waiting {
                    waited: Duration::from_secs(secs),
                    why: why.to_owned(),
                },
            )]
        };
        let full = "queue instance \"q@vm\" dropped because it is full";
        assert_eq!(core.tick(&waiting(5, full)), Ok(()));
        let notes: Vec<Command> = core
            .take_commands()
            .into_iter()
            .filter(|c| matches!(c, Command::Note(_)))
            .collect();
        assert_eq!(
            notes,
            [Command::Note(format!(
                "job `7` (workers of kind `gpu`) has waited 5s to start: {full}"
            ))]
        );
        assert_eq!(core.tick(&waiting(20, full)), Ok(()));
        assert!(
            !core
                .take_commands()
                .iter()
                .any(|c| matches!(c, Command::Note(_))),
            "the same reason is told once"
        );
        let never = "(-l gpu=3) cannot run at host \"vm\" because it offers only hc:gpu=2.000000";
        assert_eq!(
            core.tick(&waiting(61, never)),
            Err(Stop::NeverStarts {
                job: "7".into(),
                kind: 0,
                waited: Duration::from_secs(61),
                why: never.into(),
            })
        );
        // A kind that has had a worker is only busy: it waits on.
        core.launched(0, vec!["8".into()]);
        core.joined(1, "8".into(), 1, Vec::new(), None);
        assert_eq!(core.tick(&waiting(600, never)), Ok(()));
    }

    /// A core over `g` with loads on workers of one kind (at most `max`),
    /// a window of `window`, and no worker yet.
    fn loading(g: &TaskGraph, window: usize, max: usize) -> Core<'_> {
        let mut l = limits(window);
        l.worker_loads = true;
        Core::new(
            g,
            vec![kind("default", max, &[])],
            BTreeSet::new(),
            l,
            vec![false; g.program().steps().len()],
        )
    }

    /// A core over `g` with loads on two workers (ids 1 and 2, one thread
    /// each) of one kind, and a window of `window`.
    fn on_workers(g: &TaskGraph, window: usize) -> Core<'_> {
        let mut core = loading(g, window, 2);
        core.launched(0, vec!["j1".into(), "j2".into()]);
        core.joined(1, "j1".into(), 1, Vec::new(), None);
        core.joined(2, "j2".into(), 1, Vec::new(), None);
        core
    }

    /// A task sent: worker, task, where its inputs are.
    type Sent = (u32, usize, Vec<(usize, From)>);

    /// The tasks `Run` commands of `commands` send, chains unrolled.
    fn sent(commands: &[Command]) -> Vec<Sent> {
        let mut out = Vec::new();
        for c in commands {
            if let Command::Run {
                worker,
                task,
                inputs,
                then,
                ..
            } = c
            {
                out.push((*worker, *task, inputs.clone()));
                let mut prev = *task;
                for &(t, _) in then {
                    out.push((*worker, t, vec![(prev, From::Here { last: true })]));
                    prev = t;
                }
            }
        }
        out
    }

    /// Steps the core, finishing every task it sends (but `hold`) at once,
    /// until nothing more is sent; returns what ran, in order.
    fn drive(core: &mut Core<'_>, hold: &[usize]) -> Vec<Sent> {
        let mut ran = Vec::new();
        loop {
            core.step();
            let commands = core.take_commands();
            for t in loads(&commands) {
                core.loaded(t, true);
            }
            let runs = sent(&commands);
            if runs.is_empty() && loads(&commands).is_empty() {
                return ran;
            }
            for (w, t, _) in &runs {
                if !hold.contains(t) {
                    core.done(*w, *t);
                }
            }
            ran.extend(runs);
        }
    }

    #[test]
    fn loads_run_on_workers_and_each_partition_stays_where_it_was_made() {
        let g = fitted(None, 8, 4);
        let mut core = on_workers(&g, 10);
        let ran = drive(&mut core, &[]);
        assert!(core.finished());
        let on = |id: &str| {
            let t = g.find(id).unwrap();
            ran.iter().find(|(_, task, _)| *task == t).unwrap().clone()
        };
        for p in 0..4 {
            let (w, _, _) = on(&format!("load-{p}"));
            let (w1, t1, from1) = on(&format!("same.transform-{p}"));
            let (w2, _, from2) = on(&format!("learn.transform-{p}"));
            assert_eq!((w1, w2), (w, w), "partition {p} moved");
            assert_eq!(
                from1,
                [(
                    g.find(&format!("load-{p}")).unwrap(),
                    From::Here { last: true }
                )]
            );
            assert_eq!(from2, [(t1, From::Here { last: true })]);
        }
        // The fit reads what its worker holds in place, and fetches the rest
        // from the worker that holds it.
        let (fw, _, from) = on("learn.fit");
        assert_eq!(from.len(), 4);
        for (d, f) in from {
            let holder = on(g.task(d).id()).0;
            let want = if holder == fw {
                From::Here { last: false }
            } else {
                From::Peer(holder)
            };
            assert_eq!(f, want, "{}", g.task(d).id());
        }
    }

    #[test]
    fn a_lost_worker_costs_exactly_the_tasks_that_made_what_it_held() {
        let g = fitted(None, 8, 4);
        let mut core = on_workers(&g, 10);
        let fit = g.find("learn.fit").unwrap();
        let ran = drive(&mut core, &[fit]);
        let fw = ran.iter().find(|r| r.1 == fit).unwrap().0;
        let other = 3 - fw;
        let held: Vec<&str> = ran
            .iter()
            .filter(|r| r.0 == other && g.task(r.1).id().starts_with("same."))
            .map(|r| g.task(r.1).id())
            .collect();
        assert!(!held.is_empty());
        // The other worker dies with its `same` outputs: the fit goes on
        // where it runs, but it cannot finish without them.
        let (_, running, rebuilt) = core.lost(other, "killed").unwrap().unwrap();
        assert_eq!(
            (running, rebuilt),
            (0, 2 * held.len()),
            "loads and transforms"
        );
        // The fit's fetch from the lost worker fails: it waits for the rebuild.
        let dep = g.find(held[0]).unwrap();
        core.unreachable(fw, fit, dep, "connection refused")
            .unwrap();
        let again = drive(&mut core, &[]);
        let mut redone: Vec<&str> = again.iter().map(|r| g.task(r.1).id()).collect();
        redone.sort_unstable();
        let mut want: Vec<String> = held
            .iter()
            .flat_map(|h| [h.replace("same.transform", "load"), (*h).to_owned()])
            .collect();
        want.push("learn.fit".to_owned());
        want.extend((0..4).map(|p| format!("learn.transform-{p}")));
        want.sort_unstable();
        assert_eq!(redone, want);
        assert!(again.iter().all(|r| r.0 == fw), "only one worker is left");
        assert!(core.finished());
    }

    #[test]
    fn a_lost_workers_checkpointed_outputs_are_read_back_not_computed_again() {
        let dir = std::env::temp_dir().join(format!("bp-core-reread-{}", std::process::id()));
        let mut p = Pipeline::new()
            .then(Step::new(Same).name("same"))
            .then(Step::fit(Learn).name("learn"))
            .checkpoint(bob_pipelines_estimator::Checkpoints::new(&dir));
        let g = TaskGraph::new(p.fit_transform(samples(8)).npartitions(4).info().unwrap());
        let mut core = on_workers(&g, 10);
        let fit = g.find("learn.fit").unwrap();
        let ran = drive(&mut core, &[fit]);
        let fw = ran.iter().find(|r| r.1 == fit).unwrap().0;
        let other = 3 - fw;
        let held: Vec<usize> = ran
            .iter()
            .filter(|r| r.0 == other && g.task(r.1).id().starts_with("same."))
            .map(|r| r.1)
            .collect();
        assert!(held.len() >= 2, "{held:?}");
        // Each `same` output the lost worker held is read from its files,
        // and its load is not needed again.
        let (_, running, rebuilt) = core.lost(other, "killed").unwrap().unwrap();
        assert_eq!((running, rebuilt), (0, held.len()));
        let rereads: Vec<usize> = core
            .take_commands()
            .iter()
            .filter_map(|c| match c {
                Command::Reread(t) => Some(*t),
                _ => None,
            })
            .collect();
        assert_eq!(rereads, held);
        // The first is read; the files of the second turn out incomplete:
        // it is computed again, from its load.
        core.reread(held[0], true);
        core.reread(held[1], false);
        for &t in &held[2..] {
            core.reread(t, true);
        }
        core.unreachable(fw, fit, held[0], "connection refused")
            .unwrap();
        let again = drive(&mut core, &[]);
        let mut redone: Vec<&str> = again.iter().map(|r| g.task(r.1).id()).collect();
        redone.sort_unstable();
        let second = g.task(held[1]).id();
        let mut want = vec![
            second.replace("same.transform", "load"),
            second.to_owned(),
            "learn.fit".to_owned(),
        ];
        want.extend((0..4).map(|p| format!("learn.transform-{p}")));
        want.sort_unstable();
        assert_eq!(redone, want);
        // The fit gets what was read from the driver.
        let (_, _, from) = again.iter().find(|r| r.1 == fit).unwrap();
        assert!(from.contains(&(held[0], From::Driver)), "{from:?}");
        assert!(core.finished());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Two jobs of one kind (at most 3), joined: `j1` with `lifetime`,
    /// `j2` without.
    fn one_with_a_time_limit(g: &TaskGraph, lifetime: Duration) -> Core<'_> {
        let mut core = loading(g, 100, 3);
        core.launched(0, vec!["j1".into(), "j2".into()]);
        core.joined(1, "j1".into(), 1, Vec::new(), Some(lifetime));
        core.joined(2, "j2".into(), 1, Vec::new(), None);
        core
    }

    #[test]
    fn a_worker_gets_no_task_it_cannot_end_before_its_time_limit_and_is_replaced_first() {
        let g = graph(40, 20);
        let same = g.find("same.transform-0").unwrap();
        // A worker with 35 s left, where a `same` task takes 30 s (and 10 s
        // to spare): nothing for it; the other gets the work.
        let mut core = one_with_a_time_limit(&g, Duration::from_secs(35));
        core.ran(same, Duration::from_secs(30));
        core.step();
        let sent = sent(&core.take_commands());
        assert!(
            !sent.is_empty() && sent.iter().all(|r| r.0 == 2),
            "{sent:?}"
        );
        // It leaves, and a worker is started in its place.
        core.scale();
        let commands = core.take_commands();
        assert!(
            commands.iter().any(|c| matches!(c,
                Command::Release { worker: 1, why, .. } if why.contains("time limit"))),
            "{commands:?}"
        );
        assert!(
            commands
                .iter()
                .any(|c| matches!(c, Command::Launch { kind: 0, .. })),
            "{commands:?}"
        );

        // With two minutes left it works, and its replacement is not
        // started yet.
        let mut core = one_with_a_time_limit(&g, Duration::from_secs(120));
        core.ran(same, Duration::from_secs(30));
        core.step();
        assert!(sent_to(&core.take_commands(), 1) > 0);
    }

    #[test]
    fn a_worker_at_the_end_of_its_time_hands_what_it_holds_to_the_driver_before_it_goes() {
        let g = fitted(None, 8, 4);
        let mut core = loading(&g, 10, 2);
        core.launched(0, vec!["j1".into(), "j2".into()]);
        core.joined(
            1,
            "j1".into(),
            1,
            Vec::new(),
            Some(Duration::from_secs(100)),
        );
        core.joined(2, "j2".into(), 1, Vec::new(), None);
        let fit = g.find("learn.fit").unwrap();
        let ran = drive(&mut core, &[fit]);
        let held: Vec<usize> = ran
            .iter()
            .filter(|r| r.0 == 1 && g.task(r.1).id().starts_with("same."))
            .map(|r| r.1)
            .collect();
        assert!(!held.is_empty(), "{ran:?}");
        let fit_worker = ran.iter().find(|r| r.1 == fit).unwrap().0;
        core.done(fit_worker, fit);
        // `same` tasks now seem to take 190 s: worker 1, with under 100 s
        // left, can take none; it hands what it holds (for the `learn`
        // transforms), then goes.
        core.ran(held[0], Duration::from_secs(190));
        core.scale();
        let commands = core.take_commands();
        let mut asked: Vec<usize> = commands
            .iter()
            .filter_map(|c| match c {
                Command::Hand { worker: 1, task } => Some(*task),
                _ => None,
            })
            .collect();
        asked.sort_unstable();
        assert_eq!(asked, held, "{commands:?}");
        assert!(
            !commands
                .iter()
                .any(|c| matches!(c, Command::Release { .. })),
            "not before it has handed them: {commands:?}"
        );
        for &t in &held {
            core.handed(1, t, true);
        }
        let commands = core.take_commands();
        assert!(
            commands.iter().any(|c| matches!(c,
                Command::Release { worker: 1, why, .. } if why.contains("time limit"))),
            "{commands:?}"
        );
        // Nothing is computed again: what reads them gets them from the
        // driver, on the worker left.
        let again = drive(&mut core, &[]);
        assert!(core.finished());
        assert!(
            again
                .iter()
                .all(|r| r.0 == 2 && g.task(r.1).id().starts_with("learn."))
        );
        for t in &held {
            let reader = g.dependents(*t).iter().find(|&&d| d != fit).unwrap();
            let (_, _, from) = again.iter().find(|r| r.1 == *reader).unwrap();
            assert_eq!(from, &vec![(*t, From::Driver)]);
        }
    }

    #[test]
    fn a_worker_with_time_for_short_tasks_but_not_a_long_fit_keeps_working() {
        let g = fitted(None, 8, 4);
        let mut core = one_with_a_time_limit(&g, Duration::from_secs(100));
        let same = g.find("same.transform-0").unwrap();
        let fit = g.find("learn.fit").unwrap();
        core.ran(same, Duration::from_secs(1));
        core.ran(fit, Duration::from_secs(300));
        core.scale();
        let commands = core.take_commands();
        assert!(
            !commands
                .iter()
                .any(|c| matches!(c, Command::Release { worker: 1, .. })),
            "{commands:?}"
        );
        // It takes the short tasks, and would not get the fit.
        core.step();
        assert!(sent_to(&core.take_commands(), 1) > 0);
        let w = &core.workers[&1];
        assert!(core.in_time(w, same) && !core.in_time(w, fit));
    }

    /// How many runs `commands` send to worker `id`.
    fn sent_to(commands: &[Command], id: u32) -> usize {
        commands
            .iter()
            .filter(|c| matches!(c, Command::Run { worker, .. } if *worker == id))
            .count()
    }

    #[test]
    fn a_draining_worker_ends_what_it_runs_gives_back_the_rest_and_is_replaced() {
        let g = graph(40, 20);
        let mut core = one_with_a_time_limit(&g, Duration::from_secs(3600));
        core.step();
        let first = sent(&core.take_commands());
        let mine: Vec<Sent> = first
            .iter()
            .filter(|r| r.0 == 1 && matches!(g.task(r.1).kind(), TaskKind::Load { .. }))
            .cloned()
            .collect();
        assert_eq!(mine.len(), RUNS_PER_THREAD, "{first:?}");
        core.draining(1);
        let commands = core.take_commands();
        assert!(
            commands
                .iter()
                .any(|c| matches!(c, Command::Launch { kind: 0, .. })),
            "a replacement: {commands:?}"
        );
        // Its queued run comes back; it is given no more.
        core.returned(1, mine[1].1);
        core.step();
        assert_eq!(sent_to(&core.take_commands(), 1), 0);
        // It ends its running one, and leaves.
        core.done(1, mine[0].1);
        core.done(1, g.dependents(mine[0].1)[0]);
        let commands = core.take_commands();
        assert!(
            commands.iter().any(|c| matches!(c,
                Command::Release { worker: 1, why, .. } if why.contains("asked to leave"))),
            "{commands:?}"
        );
        // Everything still ends, on the other worker.
        for (w, t, _) in first.iter().filter(|r| r.0 == 2) {
            core.done(*w, *t);
        }
        let ran = drive(&mut core, &[]);
        assert!(ran.iter().all(|r| r.0 == 2));
        assert!(core.finished());
    }

    #[test]
    fn an_input_that_cannot_be_fetched_is_made_again_and_at_last_stops_the_run() {
        let g = graph(8, 2);
        let mut core = on_workers(&g, 2);
        core.step();
        // Each load goes to a worker with the transform that reads it, in
        // one run.
        let first = sent(&core.take_commands());
        assert_eq!(first.len(), 4, "{first:?}");
        let (w0, load0, _) = first[0].clone();
        let (w, t, from) = first[1].clone();
        assert_eq!((w, from), (w0, vec![(load0, From::Here { last: true })]));
        core.done(w0, load0);
        for n in 0..=FETCH_TRIES {
            let r = core.unreachable(w0, t, load0, "gone from memory");
            if n == FETCH_TRIES {
                match r {
                    Err(Stop::CannotFetch { task, tries }) => {
                        assert_eq!((task, tries.len()), (t, FETCH_TRIES + 1));
                    }
                    other => panic!("{other:?}"),
                }
                return;
            }
            r.unwrap();
            // The load runs again, with the transform.
            core.step();
            let again = sent(&core.take_commands());
            assert_eq!((again[0].1, again[1].1), (load0, t), "{again:?}");
            core.done(again[0].0, load0);
        }
    }

    #[test]
    fn a_partition_a_worker_has_passed_is_loaded_by_the_driver() {
        let g = graph(8, 2);
        let mut core = on_workers(&g, 2);
        core.step();
        let first = sent(&core.take_commands());
        let (w, load, _) = first[0].clone();
        core.cannot_load(w, load);
        core.step();
        assert_eq!(loads(&core.take_commands()), [load]);
        core.loaded(load, true);
        core.step();
        let next = sent(&core.take_commands());
        assert_eq!(
            next.iter()
                .find(|r| r.2 == [(load, From::Driver)])
                .map(|r| r.1),
            g.find("same.transform-0")
        );
    }

    #[test]
    fn outputs_read_back_are_dropped_on_workers_unless_the_driver_loaded_them() {
        let g = graph(8, 2);
        let mut core = on_workers(&g, 4);
        for p in 0..2 {
            core.read_back(g.find(&format!("same.transform-{p}")).unwrap());
        }
        core.step();
        let commands = core.take_commands();
        let outputs: Vec<Output> = commands
            .iter()
            .filter_map(|c| match c {
                Command::Run { then, .. } => Some(then[0].1),
                _ => None,
            })
            .collect();
        assert_eq!(outputs, [Output::Drop, Output::Drop]);
        // A partition the driver loaded is no longer its to read back.
        let (w, load, _) = sent(&commands)[2].clone();
        core.cannot_load(w, load);
        core.step();
        for t in loads(&core.take_commands()) {
            core.loaded(t, true);
        }
        core.step();
        let again = core.take_commands();
        let t = g.find("same.transform-1").unwrap();
        assert!(
            again.iter().any(|c| matches!(c,
                Command::Run { task, output: Output::Send, .. } if *task == t)),
            "{again:?}"
        );
    }

    #[test]
    fn a_worker_holds_more_runs_while_runs_are_short_and_gets_them_in_batches() {
        let g = graph(400, 200);
        let mut core = on_workers(&g, 1000);
        let runs = |core: &mut Core<'_>| -> Vec<Sent> {
            core.step();
            sent(&core.take_commands())
                .into_iter()
                .filter(|(_, t, _)| matches!(g.task(*t).kind(), TaskKind::Load { .. }))
                .collect()
        };
        let first = runs(&mut core);
        assert_eq!(first.len(), 2 * RUNS_PER_THREAD, "two workers");
        core.ran(0, Duration::from_micros(200));
        let more = runs(&mut core);
        assert_eq!(more.len(), 2 * (BATCHED_RUNS_PER_THREAD - RUNS_PER_THREAD));
        let finish = |core: &mut Core<'_>, (w, load, _): &Sent| {
            let t = g.dependents(*load)[0];
            core.done(*w, *load);
            core.done(*w, t);
        };
        let w = first[0].0;
        let mut mine: std::collections::VecDeque<Sent> = first
            .iter()
            .chain(&more)
            .filter(|r| r.0 == w)
            .cloned()
            .collect();
        assert_eq!(mine.len(), BATCHED_RUNS_PER_THREAD);
        // Batched: a worker that finishes a run gets none until it has room
        // for a whole batch, then the batch at once (one message).
        for _ in 1..BATCH_PER_THREAD {
            finish(&mut core, &mine.pop_front().unwrap());
            assert!(runs(&mut core).is_empty());
        }
        finish(&mut core, &mine.pop_front().unwrap());
        let batch = runs(&mut core);
        assert_eq!(batch.len(), BATCH_PER_THREAD);
        assert!(batch.iter().all(|r| r.0 == w), "{batch:?}");
        mine.extend(batch);
        // Long runs on average: two per thread, one at a time.
        core.ran(0, BATCH_RUN * 100);
        while mine.len() > 1 {
            finish(&mut core, &mine.pop_front().unwrap());
        }
        assert_eq!(runs(&mut core).len(), 1, "down to one: one more");
    }

    #[test]
    fn at_the_end_of_a_run_batched_runs_go_one_at_a_time() {
        // 2 workers of one thread: 4 runs out, then batches until each
        // holds BATCHED_RUNS_PER_THREAD; then the 4 left are fewer than the
        // workers could hold.
        let parts = 2 * BATCHED_RUNS_PER_THREAD + 4;
        let g = graph(2 * parts as u32, parts);
        let mut core = on_workers(&g, 100);
        core.step();
        let mut out = sent(&core.take_commands());
        core.ran(0, Duration::from_millis(20));
        core.step();
        out.extend(sent(&core.take_commands()));
        let loads: Vec<Sent> = out
            .into_iter()
            .filter(|(_, t, _)| matches!(g.task(*t).kind(), TaskKind::Load { .. }))
            .collect();
        assert_eq!(loads.len(), 2 * BATCHED_RUNS_PER_THREAD);
        let w = loads[0].0;
        let mut mine = loads.iter().filter(|r| r.0 == w);
        let mut finish = |core: &mut Core<'_>| {
            let (_, load, _) = mine.next().unwrap();
            core.done(w, *load);
            core.done(w, g.dependents(*load)[0]);
            core.step();
            sent(&core.take_commands())
        };
        // Down to two: a long queue is not refilled at the end.
        for _ in 2..BATCHED_RUNS_PER_THREAD {
            assert!(finish(&mut core).is_empty());
        }
        // Down to one: one more run (a load and its transform).
        let next = finish(&mut core);
        assert_eq!(next.len(), 2, "{next:?}");
        assert!(next.iter().all(|r| r.0 == w));
    }

    #[test]
    fn runs_go_to_the_least_busy_open_worker_ties_by_id() {
        let g = graph(400, 200);
        let mut core = loading(&g, 1000, 3);
        core.launched(0, vec!["j1".into(), "j2".into(), "j3".into()]);
        core.joined(2, "j2".into(), 1, Vec::new(), None);
        core.joined(1, "j1".into(), 1, Vec::new(), None);
        let loads = |core: &mut Core<'_>| -> Vec<Sent> {
            sent(&core.take_commands())
                .into_iter()
                .filter(|(_, t, _)| matches!(g.task(*t).kind(), TaskKind::Load { .. }))
                .collect()
        };
        // Each run is a load and its transform: the workers take turns, the
        // lower id first on a tie, until each holds its two.
        core.step();
        let first = loads(&mut core);
        let order: Vec<u32> = first.iter().map(|r| r.0).collect();
        assert_eq!(order, [1, 2, 1, 2]);
        // A new worker is the least busy, and the only one with room.
        core.joined(3, "j3".into(), 1, Vec::new(), None);
        core.step();
        let order: Vec<u32> = loads(&mut core).iter().map(|r| r.0).collect();
        assert_eq!(order, [3, 3]);
        // Worker 2 finishes a run: the next run is its own.
        let (_, load, _) = first[1];
        core.done(2, load);
        core.done(2, g.dependents(load)[0]);
        core.step();
        let order: Vec<u32> = loads(&mut core).iter().map(|r| r.0).collect();
        assert_eq!(order, [2]);
    }

    #[test]
    fn answers_gather_for_the_work_queued_on_the_least_busy_worker() {
        let g = graph(400, 200);
        let mut core = on_workers(&g, 1000);
        core.step();
        let first = sent(&core.take_commands());
        assert_eq!(core.gather(), Duration::ZERO, "no task has ended yet");
        let transform = |t: usize| matches!(g.task(t).kind(), TaskKind::Transform { .. });
        let some = first.iter().find(|r| transform(r.1)).unwrap().1;
        core.ran(some, Duration::from_millis(20));
        // Each worker (one thread) holds two runs of 20 ms: the one that may
        // be about to end, and one queued.
        assert_eq!(core.gather(), Duration::from_millis(20));
        // Batched: each holds BATCHED_RUNS_PER_THREAD, five of them queued.
        core.step();
        let batched = sent(&core.take_commands());
        assert_eq!(core.gather(), GATHER_MAX, "at most");
        // A worker down to its last run, nothing queued: answers are read
        // as they come, since its next answer leaves it idle.
        let w = first[0].0;
        let mine: Vec<usize> = first
            .iter()
            .chain(&batched)
            .filter(|r| r.0 == w)
            .map(|r| r.1)
            .collect();
        for &t in &mine[..mine.len() - 2] {
            core.done(w, t);
        }
        assert_eq!(core.gather(), Duration::ZERO);
        // Short tasks: answers are read as they come.
        let mut short = on_workers(&g, 1000);
        short.step();
        short.ran(0, SHORT_RUN / 2);
        assert_eq!(short.gather(), Duration::ZERO);
        // At the end of the run (less left than the workers could hold),
        // every answer may free a worker that has nothing queued.
        let small = graph(8, 4);
        let mut end = on_workers(&small, 100);
        end.step();
        end.ran(0, Duration::from_millis(20));
        assert_eq!(end.gather(), Duration::ZERO);
    }
}
