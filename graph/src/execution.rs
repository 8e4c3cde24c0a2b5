//! Running a task graph's tasks, one at a time, in whatever order an executor picks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bob_pipelines_sample::Key;

use crate::checkpoints::{Found, assemble, load, load_attribute, save};
use crate::data::Entry;
use crate::data::{AnyPartition, Counts, Model};
use crate::fast_hash::FastMap;
use crate::program::{Executed, InputPartition, Metas, Plan, Program};
use crate::report::{FailedSample, MAX_FAILURES, Report, TaskRecord};
use crate::survey::{ensure_stamp, expected_stamps, model_hash, model_stamp, stamp_of};
use crate::{Error, Result, TaskGraph, TaskKind};
use bob_pipelines_checkpoint::Writer;
use bob_pipelines_checkpoint::lineage::{self, Stamp};

/// What a finished task reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    /// The task's index.
    pub task: usize,
    /// Samples it transformed and that failed in it (zero for loads and fits).
    pub counts: Counts,
    /// How long it ran.
    pub elapsed: Duration,
    /// When it ended: for a task run elsewhere, when its worker finished
    /// it, which may be a while before the driver hears of it.
    pub ended: Instant,
}

/// A run in progress (the state an executor drives): the graph, its inputs,
/// the results of finished tasks and the models fitted so far. Tasks run through [`run`](Self::run) from any
/// thread, each once and after the tasks it depends on; a task's result is
/// handed to the task that consumes it and dropped from here, so memory holds
/// only what is still needed.
pub struct Execution<'a> {
    graph: TaskGraph,
    inputs: Vec<Mutex<Option<InputPartition<'a>>>>,
    results: Vec<Mutex<Option<AnyPartition>>>,
    models: Vec<Mutex<Option<Model>>>,
    /// Each partition's first keys, once loaded: what names it in errors.
    keys: Vec<Mutex<Vec<Key>>>,
    /// Each fitted step's model hash, once known (lineage stamps).
    model_hashes: Mutex<Vec<Option<String>>>,
    /// Which saving steps' folders hold this run's stamp already.
    stamped: Mutex<Vec<bool>>,
    report: Mutex<Report>,
    /// The program, shared by the partitions left on disk.
    shared_program: OnceLock<Arc<Program>>,
    /// The task stream and where tasks ran, kept compact while the run
    /// goes (no allocation per task once its worker is known): written out
    /// into the report when it is made.
    log: Mutex<TaskLog>,
    start: Instant,
    /// The first task error, for the report files of a run that failed.
    error: Mutex<Option<String>>,
    /// Whether `finish` ran: otherwise the run failed, and dropping the
    /// execution writes its report files as they are.
    finished: bool,
}

/// One task as it ran, for the task stream.
#[derive(Debug, Clone, Copy)]
struct Ran {
    task: usize,
    /// Index in `TaskLog::names`.
    who: usize,
    start_ms: f64,
    end_ms: f64,
    failed: bool,
}

/// What [`Execution::record_task`] and [`Execution::record_ran_on`] keep.
#[derive(Debug, Default)]
struct TaskLog {
    /// Who ran tasks (workers, driver threads), in order of first task.
    names: Names,
    tasks: Vec<Ran>,
    /// Tasks per step, worker and operation (fit or not), in order of first.
    places: Vec<((usize, usize, bool), usize)>,
    place_index: FastMap<(usize, usize, bool), usize>,
    /// Each worker's kind, by its index in `names`.
    kinds: HashMap<usize, String>,
}

/// Who ran tasks (workers, driver threads), each numbered in order of
/// first appearance: the rows of a task stream (the report's, the
/// dashboard's). A task's record keeps the number, not the name.
#[derive(Debug, Default)]
pub struct Names {
    names: Vec<Arc<str>>,
    index: FastMap<String, usize>,
}

impl Names {
    /// `name`'s number, given it if it is new.
    pub fn number(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.names.push(name.into());
        self.index.insert(name.to_owned(), self.names.len() - 1);
        self.names.len() - 1
    }

    /// `name`'s number, if it has one.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The name numbered `i`.
    pub fn get(&self, i: usize) -> Option<&Arc<str>> {
        self.names.get(i)
    }

    /// How many are named.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// How many keys name a partition in errors.
pub const KEYS_SHOWN: usize = 3;

impl std::fmt::Debug for Execution<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Execution")
            .field("tasks", &self.graph.len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking task is reported as an error; its lock's data is still sound.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<'a> Execution<'a> {
    /// The execution of a plan.
    ///
    /// # Errors
    /// [`Error::NotFitted`] when a step must transform without a model.
    pub fn new(plan: Plan<'a>) -> Result<Self> {
        plan.program.check_models()?;
        let graph = TaskGraph::new(&plan.program);
        let models = plan
            .program
            .steps()
            .iter()
            .map(|s| Mutex::new(s.current_model().cloned()))
            .collect();
        Ok(Execution {
            inputs: plan
                .inputs
                .into_iter()
                .map(|i| Mutex::new(Some(i)))
                .collect(),
            results: (0..graph.len()).map(|_| Mutex::new(None)).collect(),
            models,
            keys: (0..plan.program.npartitions())
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            model_hashes: Mutex::new(
                plan.program
                    .checkpoint()
                    .map(|c| c.model_hashes.clone())
                    .unwrap_or_default(),
            ),
            stamped: Mutex::new(
                plan.program
                    .checkpoint()
                    .map(|c| c.stamps.iter().map(Option::is_some).collect())
                    .unwrap_or_default(),
            ),
            report: Mutex::new(plan.program.empty_report()),
            shared_program: OnceLock::new(),
            log: Mutex::new(TaskLog::default()),
            graph,
            start: Instant::now(),
            error: Mutex::new(None),
            finished: false,
        })
    }

    /// The task graph.
    pub fn graph(&self) -> &TaskGraph {
        &self.graph
    }

    /// Adds a warning to the run's report.
    pub fn warn(&self, warning: String) {
        let mut r = lock(&self.report);
        if !r.warnings.contains(&warning) {
            r.warnings.push(warning);
        }
    }

    /// Runs task `i`. The tasks it depends on must have finished.
    ///
    /// # Errors
    /// The task's error, wrapped with the task's id.
    pub fn run(&self, i: usize) -> Result<Done> {
        let t0 = Instant::now();
        let outcome = self.run_inner(i);
        let thread = std::thread::current();
        let worker = thread.name().map_or_else(
            || {
                format!("{:?}", thread.id())
                    .replace("ThreadId(", "thread ")
                    .replace(')', "")
            },
            str::to_owned,
        );
        let ended = Instant::now();
        self.record_task(i, &worker, (t0, ended), outcome.is_err());
        let counts = outcome.map_err(|source| {
            let (keys, samples) = self.samples_of(i);
            let e = Error::Task {
                task: self.graph.task(i).id().to_owned(),
                keys,
                samples,
                source: Box::new(source),
            };
            self.failed_with(&e);
            e
        })?;
        Ok(Done {
            task: i,
            counts,
            elapsed: ended - t0,
            ended,
        })
    }

    fn missing(&self, what: String) -> Error {
        Error::bug(format!("{what}: a task ran before the tasks it depends on"))
    }

    fn run_inner(&self, i: usize) -> Result<Counts> {
        let task = self.graph.task(i);
        let info = self.graph.program();
        match task.kind() {
            TaskKind::Load { partition, from } => {
                let input = lock(&self.inputs[partition])
                    .take()
                    .ok_or(Error::InputTaken { partition })?;
                let (part, wire) = match from {
                    None => {
                        let loaded = input.load()?;
                        lock(&self.report).load_failed += loaded.load_failed;
                        (loaded.partition, info.input())
                    }
                    Some(step) => (
                        self.read_checkpoint(step, input, true)?,
                        info.steps()[step].output(),
                    ),
                };
                *lock(&self.keys[partition]) = wire.first_keys(&part, KEYS_SHOWN)?;
                *lock(&self.results[i]) = Some(part);
                Ok(Counts::default())
            }
            TaskKind::Fit { step } => {
                let t0 = Instant::now();
                // Locks every input in task order; the transforms that will take
                // them wait for this fit, so nothing else contends for them.
                let guards: Vec<_> = task
                    .deps()
                    .iter()
                    .map(|&d| lock(&self.results[d]))
                    .collect();
                let refs = guards
                    .iter()
                    .zip(task.deps())
                    .map(|(g, &d)| {
                        g.as_ref().ok_or_else(|| {
                            self.missing(format!(
                                "input of `{}` from `{}`",
                                task.id(),
                                self.graph.task(d).id()
                            ))
                        })
                    })
                    .collect::<Result<Vec<&AnyPartition>>>()?;
                let model = info.steps()[step]
                    .fit(&refs)
                    .map_err(|e| name_checkpoint_input(info, step, e))?;
                drop(guards);
                let bytes = match info.checkpoint() {
                    Some(_) => Some(info.steps()[step].encode_model(&model)?),
                    None => None,
                };
                if let Some(bytes) = &bytes {
                    save_model(info, step, bytes)?;
                    bob_pipelines_checkpoint::failpoint("model.saved");
                }
                self.record_fit(step, model, bytes.as_deref(), t0.elapsed())?;
                Ok(Counts::default())
            }
            TaskKind::Transform { step, .. } => {
                let t0 = Instant::now();
                let input_task = task.deps()[0];
                let input = lock(&self.results[input_task])
                    .take()
                    .ok_or_else(|| self.missing(format!("input of `{}`", task.id())))?;
                let model = lock(&self.models[step]).clone();
                let (out, counts) = info.steps()[step]
                    .transform(model.as_ref(), input)
                    .map_err(|e| name_checkpoint_input(info, step, e))?;
                self.save(step, &out)?;
                *lock(&self.results[i]) = Some(out);
                lock(&self.report).steps[step].add(counts, t0.elapsed());
                Ok(counts)
            }
        }
    }

    fn save(&self, step: usize, part: &AnyPartition) -> Result<()> {
        save_outputs(self.graph.program(), step, part)
    }

    /// Which samples task `i` has, for its errors: its partition's first
    /// keys (once loaded) and its number of samples; no keys for a fit.
    pub fn samples_of(&self, i: usize) -> (Vec<Key>, usize) {
        let task = self.graph.task(i);
        let keys = match task.kind() {
            TaskKind::Load { partition, .. } | TaskKind::Transform { partition, .. } => {
                lock(&self.keys[partition]).clone()
            }
            TaskKind::Fit { .. } => Vec::new(),
        };
        (keys, task.samples())
    }

    /// Takes the result of task `i` out of the job (a distributed driver
    /// ships it to a worker).
    pub fn take_result(&self, i: usize) -> Option<AnyPartition> {
        lock(&self.results[i]).take()
    }

    /// Sets the result of task `i`, computed elsewhere.
    pub fn put_result(&self, i: usize, part: AnyPartition) {
        *lock(&self.results[i]) = Some(part);
    }

    /// Leaves output task `task`'s partition in the checkpoint files its
    /// worker wrote (a distributed driver that did not receive it): its
    /// result is a [`SavedPartition`], the samples' keys and attributes
    /// from the input (not loaded), read when the caller asks.
    ///
    /// # Errors
    /// When `task` is not a transform, or its input partition was taken.
    pub fn read_output(&self, task: usize) -> Result<()> {
        let TaskKind::Transform {
            step, partition, ..
        } = self.graph.task(task).kind()
        else {
            return Err(Error::bug(format!(
                "task {task} has no checkpointed output"
            )));
        };
        let input = lock(&self.inputs[partition])
            .take()
            .ok_or(Error::InputTaken { partition })?;
        // Only the keys and attributes: the data stays in the files until
        // the caller reads it.
        let (metas, _) = input.split(&[])?;
        *lock(&self.keys[partition]) = metas
            .iter()
            .flatten()
            .take(KEYS_SHOWN)
            .map(|m| match m {
                Ok(m) => m.key().clone(),
                Err(f) => f.key().clone(),
            })
            .collect();
        let program = Arc::clone(
            self.shared_program
                .get_or_init(|| Arc::new(self.graph.program().clone())),
        );
        let saved = SavedPartition {
            program,
            step,
            metas,
        };
        *lock(&self.results[task]) = Some(Box::new(saved));
        Ok(())
    }

    /// Rebuilds transform `task`'s output, lost with the worker that held
    /// it, from the checkpoint files that worker wrote, as bytes to ship to
    /// the next: its samples' keys and attributes from the input partition,
    /// which stays here. `None` when that cannot be done without computing
    /// (a file missing or damaged, or an input whose samples' attributes
    /// cannot be had without taking it): the task runs again.
    ///
    /// # Errors
    /// Reading the files failed, or `task` is not a transform whose step
    /// saves checkpoints.
    pub fn reread(&self, task: usize) -> Result<Option<Vec<u8>>> {
        let info = self.graph.program();
        let (step, partition) = match self.graph.task(task).kind() {
            TaskKind::Transform {
                step, partition, ..
            } if info.checkpoint().is_some_and(|c| c.saves(step)) => (step, partition),
            _ => {
                return Err(Error::bug(format!(
                    "task {task} has no checkpointed output"
                )));
            }
        };
        let mut warnings = Vec::new();
        let part = match lock(&self.inputs[partition]).as_ref() {
            Some(input) => reread_step_outputs(info, step, input, &mut warnings)?,
            None => None,
        };
        for w in warnings {
            self.warn(w);
        }
        part.map(|p| info.steps()[step].output().encode(&p))
            .transpose()
    }

    /// Input partition `partition` will never be loaded here (a worker
    /// loaded it, and the outputs it led to are in): its samples go.
    pub fn forget_input(&self, partition: usize) {
        if let Some(input) = lock(&self.inputs[partition]).take() {
            input.forget();
        }
    }

    /// Records that task `i` ran on `worker` from the first of `when` to
    /// the second (and whether it failed): the task stream. The first
    /// failure's task is what the report files of a failed run name.
    pub fn record_task(&self, i: usize, worker: &str, when: (Instant, Instant), failed: bool) {
        let mut log = lock(&self.log);
        let who = log.names.number(worker);
        self.log_task(&mut log, i, who, when, failed);
        drop(log);
        if failed {
            let id = self.graph.task(i).id();
            lock(&self.error).get_or_insert_with(|| format!("task `{id}` failed"));
        }
    }

    /// The number of `name` (a worker, a driver thread) in the task stream,
    /// given on its first call: what [`record_ran_on`](Self::record_ran_on)
    /// takes, looked up once per worker rather than once per task.
    pub fn runner(&self, name: &str) -> usize {
        lock(&self.log).names.number(name)
    }

    /// Records that task `i` ran on runner `who` (see
    /// [`runner`](Self::runner)), a worker of kind `kind`, from the first
    /// of `when` to the second: the task stream, and where its step ran
    /// (the report's `ran_on`). One lock per task: a distributed run
    /// records every task this way.
    pub fn record_ran_on(&self, i: usize, who: usize, kind: &str, when: (Instant, Instant)) {
        let mut log = lock(&self.log);
        self.log_task(&mut log, i, who, when, false);
        let task = self.graph.task(i);
        let Some(step) = task.step() else { return };
        let key = (step, who, matches!(task.kind(), TaskKind::Fit { .. }));
        match log.place_index.get(&key) {
            Some(&at) => log.places[at].1 += 1,
            None => {
                // The first of a step on this worker: its kind is known
                // from here on.
                log.kinds.entry(who).or_insert_with(|| kind.to_owned());
                let at = log.places.len();
                log.places.push((key, 1));
                log.place_index.insert(key, at);
            }
        }
    }

    /// Adds task `i`'s run by `who`, from the first of `when` to the
    /// second, to the task stream.
    fn log_task(
        &self,
        log: &mut TaskLog,
        i: usize,
        who: usize,
        (started, ended): (Instant, Instant),
        failed: bool,
    ) {
        let ms = |t: Instant| t.saturating_duration_since(self.start).as_secs_f64() * 1e3;
        log.tasks.push(Ran {
            task: i,
            who,
            start_ms: ms(started),
            end_ms: ms(ended),
            failed,
        });
    }

    /// The report so far: the counts, with the task stream and where each
    /// step ran written out from the log.
    fn report_now(&self, mut report: Report) -> Report {
        let log = lock(&self.log);
        let info = self.graph.program();
        let steps: Vec<Arc<str>> = info.steps().iter().map(|s| s.name().into()).collect();
        report.tasks = log
            .tasks
            .iter()
            .map(|r| {
                let task = self.graph.task(r.task);
                TaskRecord {
                    task: task.shared_id().clone(),
                    step: task.step().map(|s| steps[s].clone()),
                    worker: log.names.get(r.who).cloned().unwrap_or_default(),
                    start_ms: r.start_ms,
                    end_ms: r.end_ms,
                    failed: r.failed,
                }
            })
            .collect();
        let mut tasks = vec![0usize; log.names.len()];
        for r in &log.tasks {
            tasks[r.who] += 1;
        }
        for w in &mut report.workers {
            if let Some(who) = log.names.find(&w.worker) {
                w.tasks = tasks[who];
            }
        }
        for &((step, who, fit), n) in &log.places {
            report.steps[step].ran_on.push(crate::report::RanOn {
                worker: log
                    .names
                    .get(who)
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                kind: log.kinds.get(&who).cloned().unwrap_or_default(),
                fit,
                tasks: n,
            });
        }
        report
    }

    /// The run fails with `e` (the first error is what its report files
    /// say).
    pub fn failed_with(&self, e: &Error) {
        let mut error = lock(&self.error);
        if error.as_ref().is_none_or(|old| old.ends_with(" failed")) {
            *error = Some(e.to_string());
        }
    }

    /// Records a load of input partition `partition` that ran elsewhere: its
    /// first keys (for errors) and the samples whose loader failed.
    pub fn record_load(&self, partition: usize, keys: Vec<Key>, load_failed: usize) {
        *lock(&self.keys[partition]) = keys;
        lock(&self.report).load_failed += load_failed;
    }

    /// Records a transform of `step` that ran elsewhere.
    pub fn record_transform(&self, step: usize, counts: Counts, elapsed: Duration) {
        lock(&self.report).steps[step].add(counts, elapsed);
    }

    /// Records the bytes that came into and went out of the driver's
    /// sockets to its workers (a distributed executor's).
    pub fn record_traffic(&self, read: u64, written: u64) {
        let mut r = lock(&self.report);
        r.driver_bytes_in += read;
        r.driver_bytes_out += written;
    }

    /// Records that worker `worker` (a job), of kind `kind`, is now in
    /// `state` (submitted, pending and why, connected, lost and why): the
    /// report's list of workers.
    pub fn record_worker(&self, worker: &str, kind: &str, state: &str) {
        let at_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut report = lock(&self.report);
        let i = match report.workers.iter().position(|w| w.worker == worker) {
            Some(i) => i,
            None => {
                report.workers.push(crate::WorkerRecord {
                    worker: worker.to_owned(),
                    ..crate::WorkerRecord::default()
                });
                report.workers.len() - 1
            }
        };
        let w = &mut report.workers[i];
        w.kind = kind.to_owned();
        if w.state() != state {
            w.states.push(crate::WorkerEvent {
                at_ms,
                state: state.to_owned(),
            });
        }
    }

    /// Records worker `worker`'s peak resident memory, in bytes, as it
    /// said.
    pub fn record_worker_memory(&self, worker: &str, peak: u64) {
        let mut report = lock(&self.report);
        if let Some(w) = report.workers.iter_mut().find(|w| w.worker == worker) {
            w.peak_memory = w.peak_memory.max(peak);
        }
    }

    /// Records a fit of `step` (here or elsewhere), with its model and, in a
    /// checkpointed run, the model's bytes: the lineage stamps of the step
    /// folders that now depend on a known model are written (those whose old
    /// files another model produced are renewed) before any of their
    /// outputs is, so a fit's dependents must wait for this.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when a step folder cannot be stamped.
    pub fn record_fit(
        &self,
        step: usize,
        model: Model,
        encoded: Option<&[u8]>,
        elapsed: Duration,
    ) -> Result<()> {
        *lock(&self.models[step]) = Some(model);
        {
            let mut r = lock(&self.report);
            r.steps[step].fitted = true;
            r.steps[step].fit_time = elapsed;
        }
        let (Some(ck), Some(bytes)) = (self.graph.program().checkpoint(), encoded) else {
            return Ok(());
        };
        let mut hashes = lock(&self.model_hashes);
        hashes[step] = Some(model_hash(bytes));
        let program = self.graph.program();
        let stamps = expected_stamps(program, &hashes);
        // The model file is written: now its lineage, so a kill between the
        // two leaves a model the next run fits again, never a stamp that
        // vouches for an older model.
        if let Some(path) = ck.options().model_path(program.steps()[step].name()) {
            let upstream = match step.checked_sub(1) {
                None => Some("input".to_owned()),
                Some(prev) => stamps[prev].as_ref().map(Stamp::hash),
            };
            if let Some(up) = upstream {
                let fit = stamp_of(&program.steps()[step], None, up);
                lineage::write_stamp_file(&model_stamp(&path), &fit, ck.options().writer())
                    .map_err(|e| Error::Checkpoint {
                        step: program.steps()[step].name().to_owned(),
                        source: Box::new(e),
                    })?;
            }
        }
        let mut stamped = lock(&self.stamped);
        for (i, stamp) in stamps.iter().enumerate().take(program.transform_end()) {
            if let (true, false, Some(stamp)) = (ck.saves(i), stamped[i], stamp) {
                ensure_stamp(ck, program.steps()[i].name(), stamp, false)?;
                stamped[i] = true;
            }
        }
        Ok(())
    }

    /// The model `step` has now: fitted in this run, or from before it.
    pub fn model(&self, step: usize) -> Option<Model> {
        lock(&self.models[step]).clone()
    }

    /// A partition whose outputs of `step` are on disk, read (see
    /// [`read_step_outputs`]) and counted in the report.
    fn read_checkpoint(
        &self,
        step: usize,
        input: InputPartition<'_>,
        resumed: bool,
    ) -> Result<AnyPartition> {
        let model = |s: usize| lock(&self.models[s]).clone();
        let (part, read) = read_step_outputs(self.graph.program(), step, input, &model, resumed)?;
        self.record_read(read);
        Ok(part)
    }

    /// Counts a read of checkpointed outputs (here, or on a worker) in the
    /// report.
    pub fn record_read(&self, read: ReadCounts) {
        let mut r = lock(&self.report);
        r.known_failed += read.known_failed;
        r.from_checkpoints += read.from_checkpoints;
        r.recomputed += read.recomputed;
        r.load_failed += read.load_failed;
        for (s, counts, elapsed) in read.steps {
            r.steps[s].add(counts, elapsed);
        }
        for w in read.warnings {
            if !r.warnings.contains(&w) {
                r.warnings.push(w);
            }
        }
    }

    /// The output partitions, the models and the report, once every task ran.
    ///
    /// # Errors
    /// When an output task did not run (a bug in the executor).
    pub fn finish(mut self) -> Result<Executed> {
        let mut parts = Vec::with_capacity(self.graph.outputs().len());
        for &o in self.graph.outputs() {
            let p = lock(&self.results[o])
                .take()
                .ok_or_else(|| self.missing(format!("output of `{}`", self.graph.task(o).id())))?;
            parts.push(p);
        }
        let models = self.models.iter().map(|m| lock(m).take()).collect();
        let report = std::mem::take(&mut *lock(&self.report));
        let mut report = self.report_now(report);
        report.total = self.start.elapsed();
        let info = self.graph.program();
        for (&o, part) in self.graph.outputs().iter().zip(&parts) {
            let codec = match self.graph.task(o).kind() {
                TaskKind::Transform { step, .. }
                | TaskKind::Load {
                    from: Some(step), ..
                } => info.steps()[step].output(),
                _ => info.input(),
            };
            for e in codec.entries(part).unwrap_or_default() {
                if let (Entry::Failed(f), true) = (e, report.failures.len() < MAX_FAILURES) {
                    report.failures.push(FailedSample {
                        key: f.key().as_str().to_owned(),
                        step: f.step().to_owned(),
                        reason: f.reason().to_owned(),
                    });
                }
            }
        }
        self.finished = true;
        self.write_reports(&report, None);
        Ok(Executed {
            parts,
            models,
            report,
        })
    }

    /// Writes `report.json` and `report.html` where the program says
    /// ([`Program::report_to`]), else into the features folder when the run
    /// checkpoints and writes anything at all (a run that only reads, from a
    /// read-only share too, leaves the last run's report as it was); only
    /// in the driver (a worker replaying an earlier compute does not). A
    /// file that cannot be written is said on stderr: the run's outcome
    /// stands.
    fn write_reports(&self, report: &Report, error: Option<&str>) {
        let program = self.graph.program();
        if crate::is_worker() {
            return;
        }
        let ck = program.checkpoint();
        let (dir, writer) = match (program.report_dir(), ck) {
            (Some(dir), _) => (
                dir,
                ck.map_or_else(Writer::default, |c| c.options().writer().clone()),
            ),
            (None, Some(ck)) if !program.writes_nothing() => (
                ck.options().layout().features_dir(),
                ck.options().writer().clone(),
            ),
            (None, _) => return,
        };
        let json = report.to_json(error).unwrap_or_default();
        let html = report.to_html(error);
        for (name, bytes) in bob_pipelines_checkpoint::REPORT_FILES
            .iter()
            .zip([json.as_bytes(), html.as_bytes()])
        {
            let path = dir.join(name);
            let written = std::fs::create_dir_all(dir)
                .map_err(|e| e.to_string())
                .and_then(|()| writer.write(&path, bytes).map_err(|e| e.to_string()));
            if let Err(e) = written {
                eprintln!(
                    "bob-pipelines: the report could not be written to {}: {e}",
                    path.display()
                );
            }
        }
    }
}

impl Drop for Execution<'_> {
    /// A run that did not finish (a task failed, or the executor stopped)
    /// still leaves its report files, as they were when it stopped.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let report = lock(&self.report).clone();
        let mut report = self.report_now(report);
        report.total = self.start.elapsed();
        let error = lock(&self.error)
            .clone()
            .unwrap_or_else(|| "the run stopped before its end".to_owned());
        self.write_reports(&report, Some(&error));
    }
}

/// An output partition left in the checkpoint files its worker wrote,
/// read when the caller asks: what a distributed run gives back for its
/// last step when the driver is not to receive the data (see
/// `Distributed::outputs_from_checkpoints`). It holds the samples' keys
/// and attributes; [`read`](Self::read) reads the data (files above
/// 64 KiB memory-mapped) into a `Vec<Slot<O>>`.
///
/// The report's list of failed samples does not include this partition's
/// (its counts do): they are known once it is read.
pub struct SavedPartition {
    program: Arc<Program>,
    step: usize,
    metas: Metas,
}

impl std::fmt::Debug for SavedPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedPartition")
            .field("step", &self.program.steps()[self.step].name())
            .field("samples", &self.metas.len())
            .finish_non_exhaustive()
    }
}

impl SavedPartition {
    /// How many samples.
    pub fn len(&self) -> usize {
        self.metas.len()
    }

    /// Whether it has no samples.
    pub fn is_empty(&self) -> bool {
        self.metas.is_empty()
    }

    /// The samples' keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.metas.iter().flatten().map(|m| match m {
            Ok(m) => m.key(),
            Err(f) => f.key(),
        })
    }

    /// The step whose outputs these are.
    pub fn step(&self) -> &str {
        self.program.steps()[self.step].name()
    }

    /// The outputs, read from their files now. A sample whose file went
    /// missing or was damaged since the run wrote it (a damaged one is moved
    /// aside) is a failure that says so: run the pipeline again to compute
    /// it. The step's earlier failures are failures, as in any read.
    ///
    /// # Errors
    /// The checkpoint folder could not be read at all.
    pub fn read(&self) -> Result<AnyPartition> {
        let info = &*self.program;
        let keys: Vec<Key> = self.keys().cloned().collect();
        let mut warnings = Vec::new();
        let (mut found, attributes) = find_outputs(info, self.step, &keys, false, &mut warnings)?;
        let mut metas = self.metas.clone();
        set_attributes(&mut metas, &found, &attributes);
        let gone = warnings.first().map_or_else(
            || "its checkpoint file is missing".to_owned(),
            |w| format!("its checkpoint file is missing or damaged ({w})"),
        );
        for f in &mut found {
            if matches!(f, Found::Recompute) {
                *f = Found::Failed {
                    step: self.step().to_owned(),
                    reason: format!("{gone}: run the pipeline again to compute it"),
                };
            }
        }
        assemble(info.steps()[self.step].output(), found, metas, None)
    }
}

/// What reading a partition's checkpointed outputs did, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadCounts {
    /// Samples read from files (a resumed run's; zero when a run reads
    /// back what it just wrote).
    pub from_checkpoints: usize,
    /// Samples whose file was missing or damaged, computed again.
    pub recomputed: usize,
    /// Of those, the ones whose data could not be loaded (their loader
    /// failed this time).
    pub load_failed: usize,
    /// Known failures skipped (a resumed run's).
    pub known_failed: usize,
    /// What each step computed again: step, counts, time.
    pub steps: Vec<(usize, Counts, Duration)>,
    /// Files found damaged, moved aside, and the like.
    pub warnings: Vec<String>,
}

/// Reads partition `input`'s outputs of `step` from the checkpoint files,
/// and computes again, through the steps up to `step` (with `model` of
/// each), the samples whose file turned out missing or corrupt (their input
/// samples are loaded only then, and their new files written). `resumed`:
/// the run starts from these files (counted as read from checkpoints, known
/// failures skipped unless they are tried again), rather than reading back
/// what it just wrote. Any process that has the program and the input can
/// read: the driver, or a worker that loads the partition.
///
/// # Errors
/// Reading or computing failed, or the program has no checkpoint plan.
pub fn read_step_outputs(
    info: &Program,
    step: usize,
    input: InputPartition<'_>,
    model: &dyn Fn(usize) -> Option<Model>,
    resumed: bool,
) -> Result<(AnyPartition, ReadCounts)> {
    let keys = input.keys()?;
    let mut read = ReadCounts::default();
    let (found, attributes) = find_outputs(info, step, &keys, resumed, &mut read.warnings)?;
    let redo: Vec<usize> = found
        .iter()
        .enumerate()
        .filter_map(|(i, f)| matches!(f, Found::Recompute).then_some(i))
        .collect();
    let (mut metas, again) = input.split(&redo)?;
    set_attributes(&mut metas, &found, &attributes);
    let recomputed = if redo.is_empty() {
        None
    } else {
        read.load_failed = info
            .input()
            .entries(&again)?
            .iter()
            .filter(|e| matches!(e, Entry::Failed(_)))
            .count();
        let mut part = again;
        for s in 0..=step {
            let t0 = Instant::now();
            let (out, counts) = info.steps()[s].transform(model(s).as_ref(), part)?;
            save_outputs(info, s, &out)?;
            read.steps.push((s, counts, t0.elapsed()));
            part = out;
        }
        Some(part)
    };
    if resumed {
        read.known_failed = found
            .iter()
            .filter(|f| matches!(f, Found::Failed { .. }))
            .count();
        read.from_checkpoints = keys.len() - redo.len();
    }
    read.recomputed = redo.len();
    let part = assemble(info.steps()[step].output(), found, metas, recomputed)?;
    Ok((part, read))
}

/// Reads partition `input`'s outputs of `step` back from the checkpoint
/// files this run wrote, leaving `input` where it is: what rebuilds an
/// output lost with its worker instead of computing it again. `None` when
/// that cannot be done without computing (a file missing or damaged, an
/// attribute missing) or without taking the partition (its source cannot
/// give its samples' attributes otherwise): the caller computes it again.
/// Damaged files are moved aside as in any read (`warnings` says so).
///
/// # Errors
/// Reading failed, or the program has no checkpoint plan.
fn reread_step_outputs(
    info: &Program,
    step: usize,
    input: &InputPartition<'_>,
    warnings: &mut Vec<String>,
) -> Result<Option<AnyPartition>> {
    let Some(mut metas) = input.metas()? else {
        return Ok(None);
    };
    let keys: Vec<Key> = metas
        .iter()
        .map(|m| match m {
            Some(Ok(m)) => m.key().clone(),
            Some(Err(f)) => f.key().clone(),
            None => Key::from(""),
        })
        .collect();
    let (found, attributes) = find_outputs(info, step, &keys, false, warnings)?;
    if found.iter().any(|f| matches!(f, Found::Recompute)) {
        return Ok(None);
    }
    set_attributes(&mut metas, &found, &attributes);
    assemble(info.steps()[step].output(), found, metas, None).map(Some)
}

/// The saved attributes of the steps before one: each attribute's name and
/// its value per sample (`None`: missing).
type SavedAttributes<'a> = Vec<(&'a str, Vec<Option<bob_pipelines_sample::Value>>)>;

/// What the checkpoint files hold for `keys` at `step` (a sample whose
/// datum or an earlier step's saved attribute is missing is to be computed
/// again), and those attributes. Failure markers count unless known
/// failures are tried again (this run's own, read back, always count).
fn find_outputs<'p>(
    info: &'p Program,
    step: usize,
    keys: &[Key],
    resumed: bool,
    warnings: &mut Vec<String>,
) -> Result<(Vec<Found>, SavedAttributes<'p>)> {
    let ck = info
        .checkpoint()
        .ok_or_else(|| Error::bug("a checkpoint read with no checkpoint plan"))?;
    let earlier = if resumed && ck.options().retries_failed() {
        Vec::new()
    } else {
        ck.saving_steps_through(info.steps(), step)
    };
    let data = info.steps()[step].output();
    let mut found = load(
        data,
        ck.options(),
        info.steps()[step].name(),
        &earlier,
        keys,
        warnings,
    )?;
    let mut attributes = Vec::new();
    for (s, prev) in info.steps().iter().enumerate().take(step) {
        if let (Some(name), true) = (prev.output_attribute(), ck.saves(s)) {
            let values = load_attribute(ck.options(), prev.name(), keys, warnings)?;
            for (f, v) in found.iter_mut().zip(&values) {
                if v.is_none() && matches!(f, Found::Data(_)) {
                    *f = Found::Recompute;
                }
            }
            attributes.push((name, values));
        }
    }
    Ok((found, attributes))
}

/// Sets again on the samples read back the attributes that steps before
/// theirs saved.
fn set_attributes(metas: &mut Metas, found: &[Found], attributes: &SavedAttributes<'_>) {
    for (k, meta) in metas.iter_mut().enumerate() {
        if let (Some(Ok(meta)), Found::Data(_)) = (meta, &found[k]) {
            for (name, values) in attributes {
                if let Some(v) = &values[k] {
                    Arc::make_mut(meta).set_attr(name, v.clone());
                }
            }
        }
    }
}

/// Adds to an error of `step` the checkpoint file behind the sample it names,
/// when that sample's input (the previous step's output) is a checkpoint
/// file: a datum of another shape read back from a file written by another
/// version of the step fails here, and the file is what to remove.
pub fn name_checkpoint_input(info: &Program, step: usize, e: Error) -> Error {
    let (Some(ck), Some(prev)) = (info.checkpoint(), step.checked_sub(1)) else {
        return e;
    };
    let Some(key) = e.odd_sample().cloned() else {
        return e;
    };
    match ck.output_file(info.steps(), prev, &key) {
        Some(path) if path.is_file() => Error::FromCheckpoint {
            source: Box::new(e),
            key,
            step: info.steps()[prev].name().to_owned(),
            path,
        },
        _ => e,
    }
}

/// Writes a transformed partition of `step` when the step checkpoints in this run.
///
/// # Errors
/// [`Error::Checkpoint`] when a file cannot be written.
pub fn save_outputs(info: &Program, step: usize, part: &AnyPartition) -> Result<()> {
    match info.checkpoint() {
        Some(ck) if ck.saves(step) => {
            let s = &info.steps()[step];
            let attribute = s.output_attribute();
            save(
                s.output(),
                ck.options(),
                (s.name(), attribute),
                &ck.rules[step],
                part,
            )
        }
        _ => Ok(()),
    }
}

/// Writes a model fitted in this run (its bytes) to its model file, if models
/// are saved.
///
/// # Errors
/// [`Error::Checkpoint`] when the file cannot be written.
pub fn save_model(info: &Program, step: usize, bytes: &[u8]) -> Result<()> {
    let s = &info.steps()[step];
    let Some(ck) = info.checkpoint() else {
        return Ok(());
    };
    let Some(path) = ck.options().model_path(s.name()) else {
        return Ok(());
    };
    ck.options()
        .writer()
        .write(&path, bytes)
        .map_err(|source| Error::Checkpoint {
            step: s.name().to_owned(),
            source: Box::new(source),
        })
}
