//! Progress events, and what they drive: bars on a terminal, lines in a log.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bob_pipelines_graph::{Done, TaskGraph, TaskKind};
use bob_pipelines_graph::{Error, Report};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Receives what happens during a run. Every method has a default that does
/// nothing; implement the ones you need. Called from executor threads.
pub trait Progress: Send + Sync {
    /// The run starts with this graph.
    fn started(&self, _graph: &TaskGraph) {}
    /// Task `task` starts.
    fn task_started(&self, _graph: &TaskGraph, _task: usize) {}
    /// A task finished.
    fn task_finished(&self, _graph: &TaskGraph, _done: &Done) {}
    /// Task `task` failed (or panicked).
    fn task_failed(&self, _graph: &TaskGraph, _task: usize, _error: &Error) {}
    /// The run ended (successfully).
    fn finished(&self, _report: &Report) {}
    /// Something the user should know now (a job waiting, and why); it is
    /// in the run's report too.
    fn warning(&self, _message: &str) {}
    /// Worker `worker` wrote `line` on its standard error (on launchers
    /// that catch it): by default, on this process's standard error.
    fn worker_said(&self, worker: &str, line: &str) {
        eprintln!("{worker}: {line}");
    }
    /// Task `task` ran on worker `worker` (said before its end).
    fn task_ran_on(&self, _graph: &TaskGraph, _task: usize, _worker: &str) {}
    /// Worker `worker`, of kind `kind`, is now `state` (connected, lost and
    /// why, released).
    fn worker_state(&self, _worker: &str, _kind: &str, _state: &str) {}
    /// Worker `worker` holds `rss` bytes of memory, `peak` at most so far
    /// (its heartbeat said).
    fn worker_memory(&self, _worker: &str, _rss: u64, _peak: u64) {}
    /// A line the user should see now that is no warning (where the
    /// dashboard is): by default, on standard error.
    fn info(&self, line: &str) {
        eprintln!("{line}");
    }
}

/// The rows a progress display shows for `graph`: loading, then each step;
/// their names, and the samples each has to go through.
pub(crate) fn rows(graph: &TaskGraph) -> (Vec<&str>, Vec<u64>) {
    let info = graph.program();
    let names = std::iter::once("load")
        .chain(info.steps().iter().map(|s| s.name()))
        .collect();
    let mut totals = vec![0u64; info.steps().len() + 1];
    for t in graph.tasks() {
        match t.kind() {
            TaskKind::Load { .. } => totals[0] += t.samples() as u64,
            TaskKind::Transform { step, .. } => totals[step + 1] += t.samples() as u64,
            TaskKind::Fit { .. } => {}
        }
    }
    (names, totals)
}

/// The row of task `task` in a progress display: 0 for a load, then its
/// step's.
pub(crate) fn row_of(graph: &TaskGraph, task: usize) -> usize {
    graph.task(task).step().map_or(0, |s| s + 1)
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {}

/// One progress bar per step (samples transformed, failures) and one for
/// loading, on standard error when it is a terminal. When it is not (a log
/// file, `| tee`, `nohup`, a grid job's log), a line of every step's counts
/// instead, every 10 s (also while one long task runs), when a fit starts,
/// and once at the end, so a long run's log says how far it got.
pub struct Bars {
    /// Shared with the thread that keeps lines coming during long tasks.
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<Option<Shown>>,
    /// Where lines go when standard error is not a terminal (`None`: stderr).
    lines_to: Mutex<Option<Box<dyn Write + Send>>>,
    every: Duration,
    /// Which run the lines are of: a ticker of an earlier run stops.
    run: AtomicU64,
    /// Computes started through this display: the number in its compute
    /// line.
    computes: AtomicU64,
}

impl Default for Bars {
    fn default() -> Self {
        Self::with(None, Duration::from_secs(10))
    }
}

enum Shown {
    Bars(BarsState),
    Lines(LinesState),
}

/// Counts per bar (index 0: loads; s + 1: step s), for the lines.
struct LinesState {
    names: Vec<String>,
    done: Vec<u64>,
    totals: Vec<u64>,
    failed: Vec<usize>,
    fit: Vec<Option<&'static str>>,
    start: Instant,
    last: Instant,
}

impl LinesState {
    fn line(&self, last: bool) -> String {
        let parts: Vec<String> = (0..self.names.len())
            .filter(|&b| self.totals[b] > 0 || self.fit[b].is_some())
            .map(|b| {
                let mut p = format!("{} {}/{}", self.names[b], self.done[b], self.totals[b]);
                if self.failed[b] > 0 {
                    p.push_str(&format!(" ({} failed)", self.failed[b]));
                }
                if let Some(f) = self.fit[b] {
                    p.push_str(&format!(" [{f}]"));
                }
                p
            })
            .collect();
        format!(
            "progress {:>6.0?}{} {}",
            self.start.elapsed(),
            if last { " (end)" } else { "" },
            parts.join(" · ")
        )
    }
}

struct BarsState {
    multi: MultiProgress,
    /// Index 0: loads; index s + 1: step s.
    bars: Vec<ProgressBar>,
    failed: Vec<usize>,
}

impl std::fmt::Debug for Bars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bars").finish_non_exhaustive()
    }
}

impl Bars {
    /// Bars on standard error if it is a terminal, lines otherwise.
    pub fn new() -> Self {
        Self::default()
    }

    /// Progress lines to `out`, at most every `every` and at the end,
    /// whatever standard error is (for tests, and programs that keep their
    /// own log).
    pub fn lines_to(out: Box<dyn Write + Send>, every: Duration) -> Self {
        Self::with(Some(out), every)
    }

    fn with(out: Option<Box<dyn Write + Send>>, every: Duration) -> Self {
        Bars {
            inner: Arc::new(Inner {
                state: Mutex::new(None),
                lines_to: Mutex::new(out),
                every,
                run: AtomicU64::new(0),
                computes: AtomicU64::new(0),
            }),
        }
    }

    /// Prints `line` above the bars (or as a line of the log).
    fn above(&self, line: &str) {
        match self
            .inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            Some(Shown::Bars(s)) => {
                let _ = s.multi.println(line);
            }
            _ => self.inner.print(line),
        }
    }

    /// The line that says which compute of the program runs: its number in
    /// this process, what it does, to how many samples, through which steps.
    fn compute_line(graph: &TaskGraph, compute: u64) -> String {
        let info = graph.program();
        let mode = match info.mode() {
            bob_pipelines_graph::Mode::Fit => "fit",
            bob_pipelines_graph::Mode::Transform => "transform",
            bob_pipelines_graph::Mode::FitTransform => "fit_transform",
        };
        let steps: Vec<&str> = info.steps().iter().map(|s| s.name()).collect();
        let samples: usize = info.partition_lens().iter().sum();
        format!(
            "compute {compute}: {mode} of {samples} samples in {} partitions{}: {}",
            info.npartitions(),
            info.lists_line(),
            steps.join(" → ")
        )
    }

    /// Prints the lines every `every` while run `run` lasts, also when no
    /// task ends for a long time (a fit of an hour).
    fn tick(inner: &Arc<Inner>, run: u64) {
        let inner = Arc::clone(inner);
        let nap = inner
            .every
            .clamp(Duration::from_millis(10), Duration::from_millis(500));
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(nap);
                if inner.run.load(Ordering::Acquire) != run {
                    return;
                }
                let mut state = inner
                    .state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match state.as_mut() {
                    Some(Shown::Lines(s)) => inner.maybe_print(s, false),
                    _ => return,
                }
            }
        });
    }
}

impl Inner {
    fn print(&self, line: &str) {
        let mut to = self
            .lines_to
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match to.as_mut() {
            Some(w) => {
                let _ = writeln!(w, "{line}");
                let _ = w.flush();
            }
            None => eprintln!("{line}"),
        }
    }

    /// Prints the lines' state when `every` has passed (or `last`).
    fn maybe_print(&self, state: &mut LinesState, last: bool) {
        if last || state.last.elapsed() >= self.every {
            state.last = Instant::now();
            self.print(&state.line(last));
        }
    }
}

impl Progress for Bars {
    fn started(&self, graph: &TaskGraph) {
        if graph.is_empty() {
            return;
        }
        let (names, totals) = rows(graph);
        let names = names.into_iter();
        let to_file = self
            .inner
            .lines_to
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some();
        if to_file || !std::io::stderr().is_terminal() {
            let now = Instant::now();
            let n = totals.len();
            *self
                .inner
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(Shown::Lines(LinesState {
                    names: names.map(str::to_owned).collect(),
                    done: vec![0; n],
                    totals,
                    failed: vec![0; n],
                    fit: vec![None; n],
                    start: now,
                    last: now,
                }));
            let compute = self.inner.computes.fetch_add(1, Ordering::AcqRel) + 1;
            self.inner.print(&Self::compute_line(graph, compute));
            let run = self.inner.run.fetch_add(1, Ordering::AcqRel) + 1;
            Self::tick(&self.inner, run);
            return;
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let compute = self.inner.computes.fetch_add(1, Ordering::AcqRel) + 1;
        let _ = multi.println(Self::compute_line(graph, compute));
        let style =
            ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos}/{len} samples {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        let bars = names
            .zip(&totals)
            .map(|(name, &total)| {
                let b = multi.add(ProgressBar::new(total));
                b.set_style(style.clone());
                b.set_prefix(name.to_owned());
                b
            })
            .collect();
        *self
            .inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Shown::Bars(BarsState {
            multi,
            bars,
            failed: vec![0; totals.len()],
        }));
    }

    fn task_started(&self, graph: &TaskGraph, task: usize) {
        if let TaskKind::Fit { .. } = graph.task(task).kind() {
            let b = row_of(graph, task);
            match self
                .inner
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_mut()
            {
                Some(Shown::Bars(s)) => s.bars[b].set_message("fitting…"),
                Some(Shown::Lines(s)) => {
                    s.fit[b] = Some("fitting");
                    self.inner.maybe_print(s, false);
                }
                None => {}
            }
        }
    }

    fn task_finished(&self, graph: &TaskGraph, done: &Done) {
        let mut guard = self
            .inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let t = graph.task(done.task);
        let b = row_of(graph, done.task);
        let s = match guard.as_mut() {
            Some(Shown::Bars(s)) => s,
            Some(Shown::Lines(s)) => {
                match t.kind() {
                    TaskKind::Fit { .. } => s.fit[b] = Some("fitted"),
                    TaskKind::Load { .. } | TaskKind::Transform { .. } => {
                        s.done[b] += t.samples() as u64;
                        s.failed[b] += done.counts.failed;
                    }
                }
                self.inner.maybe_print(s, false);
                return;
            }
            None => return,
        };
        match t.kind() {
            TaskKind::Fit { .. } => s.bars[b].set_message("fitted"),
            TaskKind::Load { .. } | TaskKind::Transform { .. } => {
                s.bars[b].inc(t.samples() as u64);
                if done.counts.failed > 0 {
                    s.failed[b] += done.counts.failed;
                    s.bars[b].set_message(format!("({} failed)", s.failed[b]));
                }
            }
        }
    }

    fn task_failed(&self, graph: &TaskGraph, task: usize, _error: &Error) {
        let mut state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match state.as_ref() {
            Some(Shown::Bars(s)) => s.bars[row_of(graph, task)]
                .abandon_with_message(format!("{} failed", graph.task(task))),
            Some(Shown::Lines(s)) => {
                // The run ends here: its last line, and no more ticks.
                self.inner.run.fetch_add(1, Ordering::AcqRel);
                self.inner.print(&format!(
                    "{}; task `{}` failed",
                    s.line(true),
                    graph.task(task).id()
                ));
                *state = None;
            }
            None => {}
        }
    }

    fn warning(&self, message: &str) {
        self.above(&format!("warning: {message}"));
    }

    fn worker_said(&self, worker: &str, line: &str) {
        self.above(&format!("{worker}: {line}"));
    }

    fn info(&self, line: &str) {
        self.above(line);
    }

    fn finished(&self, _report: &Report) {
        match self
            .inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            Some(Shown::Bars(s)) => {
                for b in &s.bars {
                    b.finish();
                }
                let _ = s.multi.clear();
            }
            Some(Shown::Lines(mut s)) => {
                self.inner.run.fetch_add(1, Ordering::AcqRel);
                self.inner.maybe_print(&mut s, true);
            }
            None => {}
        }
    }
}
