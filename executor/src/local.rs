//! Executors in this process: one thread, or a work-stealing pool.

use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use bob_pipelines_graph::{Error, Executed, Execution, Executor, Plan, Result, TaskKind};

use crate::dag::run_dag;
use crate::progress::{Bars, Progress};

/// Runs one task with progress events; a panic becomes [`Error::TaskPanicked`].
pub(crate) fn run_task(job: &Execution<'_>, progress: &dyn Progress, i: usize) -> Result<()> {
    let graph = job.graph();
    progress.task_started(graph, i);
    let outcome = catch_unwind(AssertUnwindSafe(|| job.run(i))).unwrap_or_else(|panic| {
        let task = graph.task(i);
        let step = task.step().map(|s| graph.program().steps()[s].name());
        Err(Error::panicked(task.id(), step, job.samples_of(i), &*panic))
    });
    match outcome {
        Ok(done) => {
            progress.task_finished(graph, &done);
            Ok(())
        }
        Err(e) => {
            progress.task_failed(graph, i, &e);
            Err(e)
        }
    }
}

/// Resource tags place tasks on cluster workers; in one process every task
/// runs anywhere. Say so, once per step and tag, instead of waiting for a
/// resource that will never come.
fn warn_about_resources(job: &Execution<'_>, executor: &str) {
    let graph = job.graph();
    for t in graph.tasks() {
        if let Some(r) = t.resource() {
            job.warn(ignored_tag(graph, t, r, executor));
        }
    }
}

/// What a run on one machine says of a resource tag it ignores: the same on
/// every executor that has no cluster behind it, so one pipeline definition
/// runs everywhere.
pub(crate) fn ignored_tag(
    graph: &bob_pipelines_graph::TaskGraph,
    task: &bob_pipelines_graph::Task,
    resource: &str,
    executor: &str,
) -> String {
    let op = if matches!(task.kind(), TaskKind::Fit { .. }) {
        "fit_tag"
    } else {
        "transform_tag"
    };
    let step = task
        .step()
        .map_or("", |s| graph.program().steps()[s].name());
    format!(
        "step `{step}` asks for resource `{resource}` ({op}); executor `{executor}` runs every \
         task on this machine, so the tag is ignored here (it places tasks on clusters)"
    )
}

fn execute_with(
    plan: Plan<'_>,
    name: &str,
    progress: &dyn Progress,
    run: impl FnOnce(&Execution<'_>) -> Result<()>,
) -> Result<Executed> {
    let job = Execution::new(plan)?;
    warn_about_resources(&job, name);
    progress.started(job.graph());
    run(&job)?;
    let executed = job.finish()?;
    progress.finished(&executed.report);
    Ok(executed)
}

/// Runs every task in the calling thread, depth first: each partition goes as
/// far through the pipeline as it can before the next one is loaded (bob's
/// `single-threaded` scheduler).
#[derive(Clone)]
pub struct SingleThreaded {
    progress: Arc<dyn Progress>,
}

impl std::fmt::Debug for SingleThreaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleThreaded").finish_non_exhaustive()
    }
}

impl Default for SingleThreaded {
    fn default() -> Self {
        Self::new()
    }
}

impl SingleThreaded {
    /// With progress bars on a terminal.
    pub fn new() -> Self {
        SingleThreaded {
            progress: Arc::new(Bars::new()),
        }
    }

    /// With another progress sink.
    #[must_use]
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }
}

impl Executor for SingleThreaded {
    fn name(&self) -> String {
        "single-threaded".to_owned()
    }

    fn execute(&self, plan: Plan<'_>) -> Result<Executed> {
        let name = self.name();
        execute_with(plan, &name, &*self.progress, |job| {
            let graph = job.graph();
            let mut pending: Vec<usize> = graph.tasks().iter().map(|t| t.deps().len()).collect();
            // A stack: the newest ready task first, so a partition goes deep
            // before the next one is loaded; roots pushed last-first.
            let mut ready: Vec<usize> = (0..graph.len())
                .rev()
                .filter(|&i| pending[i] == 0)
                .collect();
            while let Some(i) = ready.pop() {
                run_task(job, &*self.progress, i)?;
                for &d in graph.dependents(i).iter().rev() {
                    pending[d] -= 1;
                    if pending[d] == 0 {
                        ready.push(d);
                    }
                }
            }
            Ok(())
        })
    }
}

/// A work-stealing thread pool (crossbeam-deque): each thread runs the tasks
/// it made ready first (depth first, like [`SingleThreaded`]) and steals from
/// the others when it has none. The first failing task stops every thread.
#[derive(Clone)]
pub struct ThreadPool {
    threads: NonZeroUsize,
    name: String,
    progress: Arc<dyn Progress>,
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl ThreadPool {
    /// A pool of `threads` threads (the calling thread is one of them).
    pub fn new(threads: NonZeroUsize) -> Self {
        ThreadPool {
            threads,
            name: format!("threads-p{threads}"),
            progress: Arc::new(Bars::new()),
        }
    }

    /// A thread per core.
    pub fn all_cores() -> Self {
        let cores = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
        let mut pool = Self::new(cores);
        pool.name = "threads".to_owned();
        pool
    }

    /// The number of threads.
    pub fn threads(&self) -> NonZeroUsize {
        self.threads
    }

    /// With another progress sink.
    #[must_use]
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    #[must_use]
    pub(crate) fn named(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// Runs `n` independent tasks `run(0..n)` on the pool: the scheduling core
    /// alone, as the overhead benchmark measures it.
    ///
    /// # Errors
    /// The first error `run` returns.
    pub fn run_independent<E: Send>(
        &self,
        n: usize,
        run: impl Fn(usize) -> Result<(), E> + Sync,
    ) -> Result<(), E> {
        run_dag(self.threads, vec![0; n], |_| &[], run)
    }
}

impl Executor for ThreadPool {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn execute(&self, plan: Plan<'_>) -> Result<Executed> {
        execute_with(plan, &self.name, &*self.progress, |job| {
            let graph = job.graph();
            let indegree = graph.tasks().iter().map(|t| t.deps().len()).collect();
            run_dag(
                self.threads,
                indegree,
                |i| graph.dependents(i),
                |i| run_task(job, &*self.progress, i),
            )
        })
    }
}
