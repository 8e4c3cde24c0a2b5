//! Progress events and the terminal progress bars they drive.

use std::io::IsTerminal;
use std::sync::Mutex;

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
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {}

/// One progress bar per step (samples transformed, failures) and one for
/// loading, on standard error when it is a terminal; nothing otherwise.
#[derive(Default)]
pub struct Bars {
    state: Mutex<Option<BarsState>>,
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
    /// Bars on standard error if it is a terminal.
    pub fn new() -> Self {
        Self::default()
    }

    fn bar_of(graph: &TaskGraph, task: usize) -> usize {
        graph.task(task).step().map_or(0, |s| s + 1)
    }
}

impl Progress for Bars {
    fn started(&self, graph: &TaskGraph) {
        if !std::io::stderr().is_terminal() || graph.is_empty() {
            return;
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style =
            ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos}/{len} samples {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        let info = graph.program();
        let mut totals = vec![0u64; info.steps().len() + 1];
        for t in graph.tasks() {
            match t.kind() {
                TaskKind::Load { .. } => totals[0] += t.samples() as u64,
                TaskKind::Transform { step, .. } => totals[step + 1] += t.samples() as u64,
                TaskKind::Fit { .. } => {}
            }
        }
        let names = std::iter::once("load").chain(info.steps().iter().map(|s| s.name()));
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
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(BarsState {
            multi,
            bars,
            failed: vec![0; totals.len()],
        });
    }

    fn task_started(&self, graph: &TaskGraph, task: usize) {
        if let TaskKind::Fit { .. } = graph.task(task).kind() {
            if let Some(s) = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
            {
                s.bars[Self::bar_of(graph, task)].set_message("fitting…");
            }
        }
    }

    fn task_finished(&self, graph: &TaskGraph, done: &Done) {
        let mut guard = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(s) = guard.as_mut() else { return };
        let t = graph.task(done.task);
        let b = Self::bar_of(graph, done.task);
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
        if let Some(s) = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            s.bars[Self::bar_of(graph, task)]
                .abandon_with_message(format!("{} failed", graph.task(task)));
        }
    }

    fn finished(&self, _report: &Report) {
        if let Some(s) = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            for b in &s.bars {
                b.finish();
            }
            let _ = s.multi.clear();
        }
    }
}
