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
use std::time::Duration;

use bob_pipelines_graph::{TaskGraph, TaskKind};

use super::WorkerKind;
use super::launcher::JobState;

/// What the shell does for the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// Load input partition `task` in the driver; answer with [`Core::loaded`].
    Load(usize),
    /// Send task `task` to worker `worker`, with its inputs; first the model
    /// of step `model`, which that worker does not have yet.
    Run {
        worker: u32,
        task: usize,
        model: Option<usize>,
    },
    /// Start `n` workers of kind `kind`; answer with [`Core::launched`].
    Launch { kind: usize, n: usize },
    /// Tell worker `worker` to leave: it is idle beyond its kind's need.
    Release(u32),
    /// Stop job `name` (its worker was lost, or it ended before connecting).
    Cancel(String),
    /// Nothing needs task `task`'s output any more: drop its bytes.
    Free(usize),
    /// Something the user should see now and find in the report.
    Note(String),
}

/// Why the run cannot go on, in the state machine's terms; the shell adds
/// what only it knows (samples, the launcher's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Task `task` was running on more workers that were lost than allowed.
    KillsWorkers { task: usize, losses: Vec<String> },
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
}

impl Limits {
    /// The load window for `kinds`: `2 + 2 × Σ max × threads`. Each thread
    /// of each worker can hold two partitions (one running, one queued: a
    /// worker's capacity is two tasks per thread, so a thread never waits for
    /// the network between tasks); the 2 keeps loads going while the first
    /// workers start. More would only hold memory in the driver.
    pub(crate) fn window_for(kinds: &[WorkerKind]) -> usize {
        2 + 2 * kinds.iter().map(|k| k.max * k.threads.get()).sum::<usize>()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Waiting,
    Ready,
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
    /// Tasks it may hold at once: two per thread (see [`Limits::window_for`]).
    capacity: usize,
    running: Vec<usize>,
    /// The fitted steps whose model it has.
    models: Vec<bool>,
    idle_ticks: usize,
}

/// A launched job: its kind, whether its worker has connected, and the
/// reason it waits that was last told.
#[derive(Debug)]
struct Launched {
    kind: usize,
    connected: bool,
    told: Option<String>,
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
    /// Resource tags no kind provides, ignored on one machine.
    ignored: BTreeSet<String>,
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
    workers: BTreeMap<u32, Worker>,
    jobs: HashMap<String, Launched>,
    launch_failures: Vec<(usize, String)>,
    ever_connected: Vec<bool>,
    /// Why each task's workers were lost.
    failures: Vec<Vec<String>>,
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
        let mut core = Core {
            graph,
            ever_connected: vec![false; kinds.len()],
            kinds,
            ignored,
            limits,
            state: vec![St::Waiting; n],
            pending: graph.tasks().iter().map(|t| t.deps().len()).collect(),
            consumers: (0..n).map(|i| graph.dependents(i).len()).collect(),
            ready: BTreeSet::new(),
            loads: VecDeque::new(),
            loads_held: 0,
            counted: vec![false; n],
            models,
            workers: BTreeMap::new(),
            jobs: HashMap::new(),
            launch_failures: Vec::new(),
            failures: vec![Vec::new(); n],
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
    pub(crate) fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.commands)
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

    /// Starts loads while the window has room, then hands ready tasks to
    /// workers: what the shell calls after every batch of events.
    pub(crate) fn step(&mut self) {
        self.assign();
        while self.loads_held < self.limits.window {
            let Some(t) = self.loads.pop_front() else {
                break;
            };
            self.set_state(t, St::Loading);
            self.loads_held += 1;
            self.counted[t] = true;
            self.commands.push(Command::Load(t));
        }
    }

    /// Load `task` finished; `kept` is false when its partition is an output
    /// of the run that stays in the driver (nothing to ship).
    pub(crate) fn loaded(&mut self, task: usize, kept: bool) {
        let graph = self.graph;
        let feeds_fit = graph
            .dependents(task)
            .iter()
            .any(|&d| matches!(graph.task(d).kind(), TaskKind::Fit { .. }));
        if !kept || feeds_fit {
            self.release(task);
        }
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
        self.set_state(i, St::Done);
        self.remaining -= 1;
        let graph = self.graph;
        for &d in graph.task(i).deps() {
            self.consumers[d] -= 1;
            if self.consumers[d] == 0 {
                self.commands.push(Command::Free(d));
                self.release(d);
            }
        }
        for &d in graph.dependents(i) {
            self.pending[d] -= 1;
            if self.pending[d] == 0 {
                self.make_ready(d);
            }
        }
    }

    /// Worker `id` connected: job `name`, `threads` threads, `resources`.
    pub(crate) fn joined(&mut self, id: u32, name: String, threads: usize, resources: Vec<String>) {
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
                capacity: 2 * threads.max(1),
                running: Vec::new(),
                models: vec![false; self.graph.program().steps().len()],
                idle_ticks: 0,
            },
        );
    }

    /// Worker `id` finished `task` (check [`running_on`](Self::running_on)
    /// first). A fit's model is the worker's from now on.
    pub(crate) fn done(&mut self, id: u32, task: usize) {
        if !self.running_on(id, task) {
            return;
        }
        let fit = match self.graph.task(task).kind() {
            TaskKind::Fit { step } => Some(step),
            _ => None,
        };
        if let Some(w) = self.workers.get_mut(&id) {
            w.running.retain(|&t| t != task);
            if let Some(step) = fit {
                w.models[step] = true;
            }
        }
        if let Some(step) = fit {
            self.models[step] = true;
        }
        self.finish(task);
    }

    /// The resource `task` needs here: its tag, unless the tag is ignored.
    fn resource(&self, task: usize) -> Option<&'g str> {
        let graph: &'g TaskGraph = self.graph;
        graph
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

    /// Hands ready tasks to workers with room and the resources they need,
    /// the least busy first.
    fn assign(&mut self) {
        loop {
            if !self.workers.values().any(|w| w.running.len() < w.capacity) {
                return;
            }
            let pick = self.ready.iter().find_map(|&(_, t)| {
                self.workers
                    .iter()
                    .filter(|(_, w)| self.fits(w, t))
                    .min_by_key(|(_, w)| w.running.len())
                    .map(|(&id, _)| (t, id))
            });
            let Some((task, id)) = pick else {
                return;
            };
            self.dispatch(task, id);
        }
    }

    fn dispatch(&mut self, task: usize, id: u32) {
        let graph = self.graph;
        let step = graph.task(task).step().unwrap_or_default();
        let needs_model = matches!(graph.task(task).kind(), TaskKind::Transform { .. })
            && graph.program().steps()[step].requires_fit();
        let have_model = self.models[step];
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        let model = (needs_model && have_model && !w.models[step]).then_some(step);
        if model.is_some() {
            w.models[step] = true;
        }
        w.running.push(task);
        w.idle_ticks = 0;
        self.ready.remove(&(Reverse(step), task));
        self.set_state(task, St::Running(id));
        self.commands.push(Command::Run {
            worker: id,
            task,
            model,
        });
    }

    /// Worker `id` was lost, because of `reason`: its running tasks are sent
    /// again, unless one of them has now been running on more lost workers
    /// than allowed. Returns its name and how many tasks it was running
    /// (`None`: not a worker of this run).
    pub(crate) fn lost(&mut self, id: u32, reason: &str) -> Result<Option<(String, usize)>, Stop> {
        let Some(w) = self.workers.remove(&id) else {
            return Ok(None);
        };
        if self.jobs.remove(&w.name).is_some() {
            self.commands.push(Command::Cancel(w.name.clone()));
        }
        let running = w.running.len();
        for task in w.running {
            self.failures[task].push(format!("`{}`: {reason}", w.name));
            if self.failures[task].len() > self.limits.allowed_failures {
                return Err(Stop::KillsWorkers {
                    task,
                    losses: self.failures[task].clone(),
                });
            }
            self.make_ready(task);
        }
        Ok(Some((w.name, running)))
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
            let kind = l.kind;
            self.jobs.remove(job);
            self.commands.push(Command::Cancel(job.clone()));
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
            self.jobs.insert(
                name,
                Launched {
                    kind,
                    connected: false,
                    told: None,
                },
            );
        }
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
        let graph = self.graph;
        let is_load = |t: usize| matches!(graph.task(t).kind(), TaskKind::Load { .. });
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
        for (k, kind) in self.kinds.iter().enumerate() {
            let wanted = demand[k]
                .div_ceil(kind.threads.get())
                .clamp(kind.min.min(kind.max), kind.max);
            let have = self.jobs.values().filter(|j| j.kind == k).count();
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
                            && w.idle_ticks >= self.limits.wait_count
                    })
                    .map(|(&id, _)| id)
                    .take(have - wanted)
                    .collect();
                for id in idle {
                    if let Some(w) = self.workers.remove(&id) {
                        self.jobs.remove(&w.name);
                        self.commands.push(Command::Release(id));
                    }
                }
            }
        }
    }

    /// The watchdog: a run in which nothing is under way and nothing can
    /// start, yet tasks are left, would wait for ever. Say which tasks are
    /// stuck and on what, instead. `busy` is the shell's own work in flight
    /// (outputs being decoded).
    pub(crate) fn check_progress(&self, busy: bool) -> Result<(), Stop> {
        if self.remaining == 0 || self.under_way > 0 || busy || !self.ready.is_empty() {
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
        core.joined(7, "job-1".into(), 1, Vec::new());
        core.step();
        let sent = core.take_commands();
        let (task, worker) = match sent[0] {
            Command::Run { task, worker, .. } => (task, worker),
            ref c => panic!("{c:?}"),
        };
        assert_eq!(worker, 7);
        assert_eq!(runs(&g, &sent).len(), 2, "two tasks per thread");
        core.done(7, task);
        let after = core.take_commands();
        assert!(
            after.contains(&Command::Free(g.task(task).deps()[0])),
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
        core.joined(1, "cpu-1".into(), 4, Vec::new());
        core.joined(2, "gpu-1".into(), 4, vec!["gpu".into()]);
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
        let g = fitted(None, 8, 4);
        let mut core = Core::new(
            &g,
            vec![kind("default", 2, &[])],
            BTreeSet::new(),
            limits(10),
            vec![false, false],
        );
        core.joined(1, "a".into(), 1, Vec::new());
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
                        model,
                    } => {
                        if task == fit {
                            core.joined(2, "b".into(), 1, Vec::new());
                        }
                        if model.is_some() {
                            models.push(worker);
                        }
                        core.done(worker, task);
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
        core.joined(1, "j1".into(), 1, Vec::new());
        core.step();
        assert_eq!(runs(&g, &core.take_commands()), [("same.transform-0", 1)]);
        assert_eq!(core.lost(1, "killed"), Ok(Some(("j1".to_owned(), 1))));
        assert_eq!(core.take_commands(), [Command::Cancel("j1".into())]);
        core.joined(2, "j2".into(), 1, Vec::new());
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
            core.joined(i as u32, name.into(), 1, Vec::new());
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
        let g = fitted(None, 8, 4);
        let mut core = Core::new(
            &g,
            vec![kind("default", 3, &[])],
            BTreeSet::new(),
            limits(10),
            vec![false, false],
        );
        core.launched(0, vec!["a".into(), "b".into(), "c".into()]);
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            core.joined(i as u32, name.into(), 1, Vec::new());
        }
        // Hold the fit back: loads done, transforms of `same` done; only the
        // fit is left (one task: one worker is enough).
        let fit = g.find("learn.fit").unwrap();
        for _ in 0..10 {
            core.step();
            for c in core.take_commands() {
                match c {
                    Command::Load(t) => core.loaded(t, true),
                    Command::Run { worker, task, .. } if task != fit => core.done(worker, task),
                    _ => {}
                }
            }
        }
        let busy: Vec<u32> = (0..3).filter(|&w| core.running_on(w, fit)).collect();
        assert_eq!(busy.len(), 1);
        assert_eq!(core.tick(&[]), Ok(()));
        assert!(core.take_commands().is_empty(), "idle for one tick only");
        assert_eq!(core.tick(&[]), Ok(()));
        let released: Vec<Command> = core.take_commands();
        assert_eq!(released.len(), 2, "{released:?}");
        assert!(
            released
                .iter()
                .all(|c| matches!(c, Command::Release(w) if *w != busy[0]))
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
        assert_eq!(stuck.check_progress(true), Ok(()), "the shell is busy");
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
        core.joined(1, "8".into(), 1, Vec::new());
        assert_eq!(core.tick(&waiting(600, never)), Ok(()));
    }
}
