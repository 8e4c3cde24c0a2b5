//! Launchers start workers: child processes here, cluster jobs elsewhere.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use bob_pipelines_sample::BoxError;

use super::protocol::WorkerEnv;

/// One kind of worker a launcher can start: what it provides and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerKind {
    /// The kind's name (`default`, `q_short_gpu`, …).
    pub name: String,
    /// The resources its workers provide: tasks tagged with one of them
    /// (bob's `fit_tag` / `transform_tag`) run only on such workers.
    pub resources: Vec<String>,
    /// Threads each worker runs tasks on.
    pub threads: NonZeroUsize,
    /// Workers kept even when idle.
    pub min: usize,
    /// Workers at most (bob's `max_jobs`).
    pub max: usize,
    /// How long each of its workers may live (a job's time limit): the
    /// scheduler gives a worker no task it cannot finish before then, lets
    /// it leave when it can take none, and starts its replacement first.
    pub lifetime: Option<std::time::Duration>,
}

impl WorkerKind {
    /// A kind with no resources: up to `max` workers of `threads` threads.
    pub fn new(name: &str, max: usize, threads: NonZeroUsize) -> Self {
        WorkerKind {
            name: name.to_owned(),
            resources: Vec::new(),
            threads,
            min: 0,
            max,
            lifetime: None,
        }
    }

    /// Adds a resource its workers provide.
    #[must_use]
    pub fn provides(mut self, resource: &str) -> Self {
        self.resources.push(resource.to_owned());
        self
    }

    /// Keeps at least `min` workers, idle or not.
    #[must_use]
    pub fn min(mut self, min: usize) -> Self {
        self.min = min;
        self
    }
}

/// Where a launched worker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Waiting to start (queued on a cluster, or a local process not
    /// started yet).
    Pending,
    /// Waiting to start for a while: `waited` so far, and why, in the
    /// grid's words (SGE's scheduling info). The scheduler says so in the
    /// run's progress and report, and can give up on it
    /// (`Distributed::pending_limit`).
    Waiting {
        /// How long the job has waited.
        waited: std::time::Duration,
        /// The grid's reason.
        why: String,
    },
    /// Running.
    Running,
    /// Gone, with the reason in plain words (exit status, kill, error state).
    Ended(String),
}

/// Starts and stops workers of the kinds it knows. The scheduler decides how
/// many of each kind it wants (adaptive scaling); the launcher makes it so.
pub trait Launcher: Send {
    /// A name for messages (`local processes`, `SGE`).
    fn name(&self) -> String;

    /// The kinds of worker it can start.
    fn kinds(&self) -> &[WorkerKind];

    /// Whether its workers all run on this machine: a resource tag that no
    /// kind provides is then ignored, with a warning, as on the thread
    /// pools; a cluster's launcher refuses it (nothing would ever run it).
    fn is_local(&self) -> bool {
        false
    }

    /// Starts `n` workers of kind `kind` (an index into [`kinds`](Self::kinds)),
    /// each with `env` in its environment (scheduler address, secret file,
    /// timeouts) plus its own job id, threads and resources, or queues them
    /// (a cluster's queue, or a thread that starts them later): such jobs
    /// are [`JobState::Pending`] until they start, and `Ended` with why if
    /// they cannot. Returns their job ids, which the workers report as their
    /// names.
    ///
    /// # Errors
    /// When the workers cannot be started or queued; the message says why.
    fn launch(
        &mut self,
        kind: usize,
        n: usize,
        env: &[(String, String)],
    ) -> Result<Vec<String>, BoxError>;

    /// Stops a worker (it may be gone already).
    fn cancel(&mut self, job: &str);

    /// The states of the jobs it started that have not been cancelled.
    fn poll(&mut self) -> Vec<(String, JobState)>;

    /// Stops every worker it started: the run is over.
    fn shutdown(&mut self);

    /// Where the lines its workers write on standard error go from now on
    /// (worker name, line), when it can catch them: the driver prints them
    /// through its progress, so they do not break its bars. By default
    /// workers write where the launcher puts their standard error (a
    /// cluster's job log).
    fn stderr_to(&mut self, sink: StderrSink) {
        let _ = sink;
    }
}

/// Where workers' standard error lines go: (worker name, line).
pub type StderrSink = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// What a worker runs: `program` with `args`, by default this program with
/// the arguments it was started with.
///
/// # Errors
/// When this program's path cannot be found.
pub fn worker_command(
    program: Option<&std::path::Path>,
    args: Option<&[OsString]>,
) -> std::io::Result<(PathBuf, Vec<OsString>)> {
    let program = match program {
        Some(p) => p.to_owned(),
        None => std::env::current_exe()?,
    };
    let args = args.map_or_else(|| std::env::args_os().skip(1).collect(), <[_]>::to_vec);
    Ok((program, args))
}

/// Workers as child processes of the driver: the program that runs, started
/// again with the same arguments (bob's `local-parallel`). Their standard
/// output is discarded (it would repeat the driver's); their standard error
/// is the driver's, or goes line by line to the run's progress
/// ([`Launcher::stderr_to`]).
///
/// Of the workers one launch asks for, the first starts at once (a program
/// that cannot start is an error of the launch) and the others on a thread
/// of their own, as a cluster queues jobs: a process start waits for the
/// new process to load, and with many starting on few cores, 128 took the
/// scheduler's thread 0.44 s, in which no worker that had connected got a
/// task. Until it starts, a job is [`JobState::Pending`]; one that cannot
/// start ends with why.
#[derive(Debug)]
pub struct LocalProcesses {
    kinds: Vec<WorkerKind>,
    program: Option<PathBuf>,
    args: Option<Vec<OsString>>,
    env: Vec<(OsString, OsString)>,
    jobs: Arc<Mutex<Jobs>>,
    /// The last thread started to start queued jobs (one runs at a time:
    /// `Jobs::starter_running`).
    starter: Option<JoinHandle<()>>,
    launched: usize,
    stderr: Option<Sink>,
}

/// The jobs of a [`LocalProcesses`].
#[derive(Debug, Default)]
struct Jobs {
    /// Started.
    children: Vec<(String, Child)>,
    /// Launched and not started yet, in order.
    queued: VecDeque<Queued>,
    /// Whether a thread is starting the queued jobs: set when one is
    /// started, cleared by it when it finds the queue empty, both under the
    /// lock, so a job queued as it ends still gets a thread.
    starter_running: bool,
    /// The job being started, and whether it was cancelled meanwhile.
    starting: Option<(String, bool)>,
    /// Could not start, with why.
    failed: Vec<(String, String)>,
}

/// A job waiting to start: its id, what starts it, where its standard
/// error goes (the compute's that launched it), and the program's name for
/// an error.
#[derive(Debug)]
struct Queued {
    job: String,
    command: Command,
    sink: Option<Sink>,
    program: String,
}

fn lock(jobs: &Mutex<Jobs>) -> MutexGuard<'_, Jobs> {
    jobs.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A [`StderrSink`], shown by name only.
#[derive(Clone)]
struct Sink(StderrSink);

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StderrSink")
    }
}

impl LocalProcesses {
    /// `workers` processes of `threads` threads each, providing no
    /// resources, kept for the whole run (as a local cluster keeps its
    /// workers: starting one again costs more than an idle one).
    pub fn new(workers: NonZeroUsize, threads: NonZeroUsize) -> Self {
        LocalProcesses {
            kinds: vec![WorkerKind::new("default", workers.get(), threads).min(workers.get())],
            program: None,
            args: None,
            env: Vec::new(),
            jobs: Arc::default(),
            starter: None,
            launched: 0,
            stderr: None,
        }
    }

    /// A single-threaded process per core.
    pub fn all_cores() -> Self {
        let cores = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
        Self::new(cores, NonZeroUsize::MIN)
    }

    /// Adds a kind of worker (e.g. one that provides `q_short_gpu`, to run
    /// a tagged pipeline on one machine).
    #[must_use]
    pub fn kind(mut self, kind: WorkerKind) -> Self {
        self.kinds.push(kind);
        self
    }

    /// Starts workers with these arguments instead of the driver's own (a
    /// test binary passes the test's name, so a worker runs that test only).
    #[must_use]
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Sets a variable in every worker's environment (beside the driver's
    /// own, which workers inherit).
    #[must_use]
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Starts another program as the workers (it must build the same pipeline).
    #[must_use]
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = Some(program.into());
        self
    }
}

impl Launcher for LocalProcesses {
    fn name(&self) -> String {
        "local processes".to_owned()
    }

    fn kinds(&self) -> &[WorkerKind] {
        &self.kinds
    }

    fn is_local(&self) -> bool {
        true
    }

    fn launch(
        &mut self,
        kind: usize,
        n: usize,
        env: &[(String, String)],
    ) -> Result<Vec<String>, BoxError> {
        let (program, args) = worker_command(self.program.as_deref(), self.args.as_deref())
            .map_err(|e| format!("cannot find this program to start workers: {e}"))?;
        let mut names = Vec::with_capacity(n);
        for i in 0..n {
            self.launched += 1;
            let job = format!("local-{}", self.launched);
            let mut command = Command::new(&program);
            command
                .args(&args)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .envs(env.iter().map(|(k, v)| (k, v)))
                .envs(WorkerEnv::worker_vars(&job, &self.kinds[kind]))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(if self.stderr.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::inherit()
                });
            if i == 0 {
                let child = start(&mut command, &job, self.stderr.as_ref())
                    .map_err(|e| format!("cannot start worker {}: {e}", program.display()))?;
                lock(&self.jobs).children.push((job.clone(), child));
            } else {
                lock(&self.jobs).queued.push_back(Queued {
                    job: job.clone(),
                    command,
                    sink: self.stderr.clone(),
                    program: program.display().to_string(),
                });
            }
            names.push(job);
        }
        let run_starter = {
            let mut jobs = lock(&self.jobs);
            let idle = !jobs.queued.is_empty() && !jobs.starter_running;
            jobs.starter_running |= idle;
            idle
        };
        if run_starter {
            // The previous thread, if any, has seen the queue empty: it is
            // ending.
            if let Some(previous) = self.starter.take() {
                let _ = previous.join();
            }
            let jobs = Arc::clone(&self.jobs);
            self.starter = Some(std::thread::spawn(move || {
                loop {
                    let mut next = {
                        let mut jobs = lock(&jobs);
                        let Some(next) = jobs.queued.pop_front() else {
                            jobs.starter_running = false;
                            return;
                        };
                        jobs.starting = Some((next.job.clone(), false));
                        next
                    };
                    let started = start(&mut next.command, &next.job, next.sink.as_ref());
                    let mut jobs = lock(&jobs);
                    let cancelled = jobs.starting.take().is_some_and(|(_, c)| c);
                    match started {
                        Ok(mut child) if cancelled => {
                            drop(jobs);
                            let _ = child.kill();
                            let _ = child.wait();
                        }
                        Ok(child) => jobs.children.push((next.job, child)),
                        Err(_) if cancelled => {}
                        Err(e) => {
                            let why = format!("cannot start worker {}: {e}", next.program);
                            jobs.failed.push((next.job, why));
                        }
                    }
                }
            }));
        }
        Ok(names)
    }

    fn stderr_to(&mut self, sink: StderrSink) {
        self.stderr = Some(Sink(sink));
    }

    fn cancel(&mut self, job: &str) {
        let mut jobs = lock(&self.jobs);
        jobs.queued.retain(|q| q.job != job);
        jobs.failed.retain(|(j, _)| j != job);
        if let Some((j, cancelled)) = &mut jobs.starting {
            *cancelled |= j == job;
        }
        if let Some(i) = jobs.children.iter().position(|(j, _)| j == job) {
            let (_, mut child) = jobs.children.swap_remove(i);
            drop(jobs);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn poll(&mut self) -> Vec<(String, JobState)> {
        let mut jobs = lock(&self.jobs);
        let Jobs {
            children,
            queued,
            starting,
            failed,
            ..
        } = &mut *jobs;
        let started = children.iter_mut().map(|(job, child)| {
            let state = match child.try_wait() {
                Ok(None) => JobState::Running,
                Ok(Some(status)) => JobState::Ended(describe(status)),
                Err(e) => JobState::Ended(format!("cannot be waited for: {e}")),
            };
            (job.clone(), state)
        });
        let waiting = starting
            .iter()
            .filter(|(_, cancelled)| !cancelled)
            .map(|(job, _)| job)
            .chain(queued.iter().map(|q| &q.job))
            .map(|job| (job.clone(), JobState::Pending));
        let unstarted = failed
            .iter()
            .map(|(job, why)| (job.clone(), JobState::Ended(why.clone())));
        started.chain(waiting).chain(unstarted).collect()
    }

    fn shutdown(&mut self) {
        lock(&self.jobs).queued.clear();
        if let Some(starter) = self.starter.take() {
            let _ = starter.join();
        }
        // Workers exit on the scheduler's word; give them a moment, then kill
        // what remains, so no child outlives the run.
        let children = std::mem::take(&mut lock(&self.jobs).children);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        for (_, mut child) in children {
            while std::time::Instant::now() < deadline {
                match child.try_wait() {
                    Ok(None) => std::thread::sleep(std::time::Duration::from_millis(5)),
                    _ => break,
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        lock(&self.jobs).failed.clear();
    }
}

/// Starts `command` as worker `job`, its standard error (when piped) going
/// line by line to `sink`.
fn start(command: &mut Command, job: &str, sink: Option<&Sink>) -> std::io::Result<Child> {
    let mut child = command.spawn()?;
    if let (Some(Sink(sink)), Some(err)) = (sink, child.stderr.take()) {
        let (sink, name) = (Arc::clone(sink), job.to_owned());
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(err)) {
                let Ok(line) = line else { return };
                sink(&name, &line);
            }
        });
    }
    Ok(child)
}

impl Drop for LocalProcesses {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// An exit status in plain words.
pub(crate) fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(9)) => "killed (SIGKILL)".to_owned(),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Waits until every job `l` knows has ended with status 3.
    fn all_ended(l: &mut LocalProcesses) {
        let t0 = Instant::now();
        while !l
            .poll()
            .iter()
            .all(|(_, s)| *s == JobState::Ended("exited with status 3".into()))
        {
            assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", l.poll());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_launch_returns_at_once_and_its_jobs_start_in_the_background() {
        let mut l = LocalProcesses::new(NonZeroUsize::new(4).unwrap(), NonZeroUsize::MIN)
            .program("/bin/sh")
            .args(["-c", "exit 3"]);
        let names = l.launch(0, 4, &[]).unwrap();
        assert_eq!(names, ["local-1", "local-2", "local-3", "local-4"]);
        assert_eq!(l.poll().len(), 4, "every job is known at once");
        all_ended(&mut l);
        l.cancel("local-2");
        assert_eq!(l.poll().len(), 3);
        // Launches that follow each other, as a compute's replacements
        // do, all get started (by one thread at a time).
        for _ in 0..5 {
            l.launch(0, 2, &[]).unwrap();
        }
        all_ended(&mut l);
        assert_eq!(l.poll().len(), 13);
        l.shutdown();
        assert!(l.poll().is_empty());
    }

    #[test]
    fn a_program_that_cannot_start_fails_the_launch_at_once() {
        let mut l = LocalProcesses::new(NonZeroUsize::new(2).unwrap(), NonZeroUsize::MIN)
            .program("/nonexistent/bob-worker");
        let e = l.launch(0, 2, &[]).unwrap_err().to_string();
        assert!(
            e.contains("cannot start worker /nonexistent/bob-worker"),
            "{e}"
        );
        assert!(l.poll().is_empty(), "nothing queued behind it");
    }
}
