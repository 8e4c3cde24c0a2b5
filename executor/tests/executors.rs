//! Executors through the public API: same outputs everywhere, failures and
//! panics named and stopping the run, resource warnings, names, progress.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bob_pipelines_estimator::{
    Batch, BoxError, Error, Executor, Failure, Fit, InMemory, Partitioning, Pipeline, SampleResult,
    Slot, Step, Transformer,
};
use bob_pipelines_executor::{Progress, Silent, SingleThreaded, ThreadPool, by_name};
use bob_pipelines_graph::{Done, Error as RunError, TaskGraph};
use bob_pipelines_sample::Sample;
use serde::{Deserialize, Serialize};

/// Seeded xorshift: the property test's cases are the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A per-sample step: the output of a sample depends on that sample only.
struct Affine {
    mul: u64,
    add: u64,
    fail_mod: u64,
}
impl Transformer for Affine {
    type Input = u64;
    type Output = u64;
    fn transform(&self, b: &Batch<'_, u64>) -> Result<Vec<SampleResult<u64>>, BoxError> {
        Ok(b.iter()
            .map(|x| {
                if self.fail_mod > 0 && x % self.fail_mod == 0 {
                    Err(Failure::new(format!(
                        "{x} is a multiple of {}",
                        self.fail_mod
                    )))
                } else {
                    Ok(x.wrapping_mul(self.mul).wrapping_add(self.add) % 1_000_003)
                }
            })
            .collect())
    }
}

/// Learns the (order-independent) sum and count of what it sees.
struct Center;
#[derive(Serialize, Deserialize)]
struct Centered {
    sum: u64,
    n: u64,
}
impl Fit for Center {
    type Input = u64;
    type Fitted = Centered;
    fn fit(&self, b: &Batch<'_, u64>) -> Result<Centered, BoxError> {
        Ok(Centered {
            sum: b.iter().fold(0u64, |a, x| a.wrapping_add(*x)),
            n: b.len() as u64,
        })
    }
}
impl Transformer for Centered {
    type Input = u64;
    type Output = u64;
    fn transform(&self, b: &Batch<'_, u64>) -> Result<Vec<SampleResult<u64>>, BoxError> {
        let mean = self.sum.checked_div(self.n).unwrap_or(0);
        Ok(b.iter()
            .map(|x| Ok(x.wrapping_add(mean) % 1_000_003))
            .collect())
    }
}

fn random_pipeline(rng: &mut Rng) -> Pipeline<u64, u64> {
    let mut p = Pipeline::new();
    for i in 0..1 + rng.below(5) {
        p = if rng.below(3) == 0 {
            p.then(Step::fit(Center).name(&format!("center{i}")))
        } else {
            let fail_mod = if rng.below(2) == 0 {
                0
            } else {
                2 + rng.below(9)
            };
            p.then(
                Step::new(Affine {
                    mul: 1 + rng.below(7),
                    add: rng.below(100),
                    fail_mod,
                })
                .name(&format!("affine{i}")),
            )
        };
    }
    p
}

type Flat = Vec<Result<(String, u64), (String, String)>>;

fn flat(out: impl IntoIterator<Item = Slot<u64>>) -> Flat {
    out.into_iter()
        .map(|s| match s {
            Ok(s) => Ok((s.key().to_string(), *s.data())),
            Err(f) => Err((f.key().to_string(), f.step().to_owned())),
        })
        .collect()
}

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

#[test]
fn every_executor_and_partitioning_gives_the_same_outputs() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let executors: Vec<Box<dyn Executor>> = vec![
        Box::new(SingleThreaded::new().with_progress(Arc::new(Silent))),
        Box::new(ThreadPool::new(nz(1)).with_progress(Arc::new(Silent))),
        Box::new(ThreadPool::new(nz(2)).with_progress(Arc::new(Silent))),
        Box::new(ThreadPool::new(nz(4)).with_progress(Arc::new(Silent))),
    ];
    for case in 0..60 {
        let template = random_pipeline(&mut rng);
        let n = rng.below(3000);
        let samples = || (0..n).map(|i| Sample::new(format!("s{i}"), i * 7919 % 10_007));
        let mut reference = template.clone();
        let expected = flat(
            reference
                .fit_transform(samples())
                .npartitions(1)
                .compute(&InMemory)
                .unwrap(),
        );
        for executor in &executors {
            let partitioning = match rng.below(3) {
                0 => Partitioning::Auto,
                1 => Partitioning::Count(1 + rng.below(20) as usize),
                _ => Partitioning::Size(1 + rng.below(500) as usize),
            };
            let mut p = template.clone();
            let got = p
                .fit_transform(samples())
                .partitioning(partitioning)
                .compute(executor)
                .unwrap_or_else(|e| panic!("case {case} on {}: {e}", executor.name()));
            assert_eq!(
                flat(got),
                expected,
                "case {case}: {} with {partitioning:?} differs from the reference",
                executor.name()
            );
            // And a transform with the fitted models agrees too.
            let again = p
                .transform(samples())
                .partitioning(partitioning)
                .compute(executor)
                .unwrap();
            assert_eq!(
                flat(again),
                expected,
                "case {case}: transform after fit on {}",
                executor.name()
            );
        }
    }
}

/// Needs extra argument `w`; sleeps a little so that runs take time.
struct Weighted;
impl Transformer for Weighted {
    type Input = u64;
    type Output = u64;
    fn transform(&self, b: &Batch<'_, u64>) -> Result<Vec<SampleResult<u64>>, BoxError> {
        let w: Vec<u64> = b.extra("w")?;
        Ok(b.iter().zip(w).map(|(x, w)| Ok(x * w)).collect())
    }
}

#[test]
fn a_failing_task_names_task_step_and_key_and_stops_the_pool() {
    let samples = (0..2000u64).map(|i| {
        let s = Sample::new(format!("k{i}"), i);
        if i == 1234 {
            s
        } else {
            s.with_attr("weight", 2u64)
        }
    });
    let p = Pipeline::new().then(
        Step::new(Weighted)
            .name("weigh")
            .transform_extra("w", "weight"),
    );
    let pool = ThreadPool::new(nz(2)).with_progress(Arc::new(Silent));
    let e = p
        .transform(samples)
        .partition_size(100)
        .compute(&pool)
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Run(RunError::Task { .. })), "{msg}");
    for part in ["`weigh.transform-12`", "`weigh`", "\"k1234\"", "`weight`"] {
        assert!(msg.contains(part), "{part} missing in: {msg}");
    }
}

/// Panics on one partition; counts the partitions it saw.
struct Panicky {
    seen: Arc<AtomicUsize>,
}
impl Transformer for Panicky {
    type Input = u64;
    type Output = u64;
    fn transform(&self, b: &Batch<'_, u64>) -> Result<Vec<SampleResult<u64>>, BoxError> {
        self.seen.fetch_add(1, Ordering::SeqCst);
        if b.keys().any(|k| k == "k50") {
            panic!("index out of bounds in the feature extractor");
        }
        std::thread::sleep(Duration::from_millis(2));
        Ok(b.iter().map(|x| Ok(*x)).collect())
    }
}

#[test]
fn a_panicking_task_fails_the_run_and_the_other_threads_stop() {
    for executor in [
        Box::new(SingleThreaded::new().with_progress(Arc::new(Silent))) as Box<dyn Executor>,
        Box::new(ThreadPool::new(nz(2)).with_progress(Arc::new(Silent))),
        // No task graph, yet the panic is named as its task would be.
        Box::new(InMemory),
    ] {
        let seen = Arc::new(AtomicUsize::new(0));
        let p = Pipeline::new().then(Step::new(Panicky { seen: seen.clone() }).name("extract"));
        let samples = (0..1000u64).map(|i| Sample::new(format!("k{i}"), i));
        let e = p
            .transform(samples)
            .partition_size(1)
            .compute(&executor)
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, Error::Run(RunError::TaskPanicked { .. })),
            "{msg}"
        );
        assert!(
            msg.contains("extract.transform-50")
                && msg.contains("`extract`")
                && msg.contains("\"k50\""),
            "{msg}"
        );
        assert!(msg.contains("index out of bounds"), "{msg}");
        let ran = seen.load(Ordering::SeqCst);
        assert!(
            ran < 200,
            "{}: {ran} partitions ran after the panic",
            executor.name()
        );
    }
}

#[test]
fn resource_tags_are_ignored_locally_with_a_warning() {
    let mut p = Pipeline::new()
        .then(Step::fit(Center).name("center").fit_tag("q_short_gpu"))
        .then(
            Step::new(Affine {
                mul: 1,
                add: 0,
                fail_mod: 0,
            })
            .name("id")
            .transform_tag("io_big"),
        );
    let out = p
        .fit_transform((0..10u64).map(|i| Sample::new(i.to_string(), i)))
        .compute(&ThreadPool::new(nz(2)).with_progress(Arc::new(Silent)))
        .unwrap();
    let w = &out.report().warnings;
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].contains("`center`") && w[0].contains("`q_short_gpu`") && w[0].contains("ignored"),
        "{w:?}"
    );
    assert!(w[1].contains("`id`") && w[1].contains("`io_big`"), "{w:?}");
    assert_eq!(out.len(), 10);
}

#[test]
fn executors_by_name() {
    for (name, expected) in [
        ("single-threaded", "single-threaded"),
        ("in-memory", "in-memory"),
        ("local-parallel", "local-parallel"),
        ("local-p3", "local-p3"),
        ("threads-p2", "threads-p2"),
    ] {
        assert_eq!(by_name(name).unwrap().name(), expected);
    }
    for bad in ["local-p0", "local-px", "dask", "sge-gpu"] {
        let msg = by_name(bad).unwrap_err().to_string();
        assert!(
            msg.contains(&format!("`{bad}`")) && msg.contains("single-threaded, "),
            "{msg}"
        );
    }
}

#[derive(Default)]
struct Recorder {
    started: AtomicUsize,
    finished: AtomicUsize,
    graph_tasks: AtomicUsize,
    ended: AtomicUsize,
}
impl Progress for Recorder {
    fn started(&self, graph: &TaskGraph) {
        self.graph_tasks.store(graph.len(), Ordering::SeqCst);
    }
    fn task_started(&self, _: &TaskGraph, _: usize) {
        self.started.fetch_add(1, Ordering::SeqCst);
    }
    fn task_finished(&self, _: &TaskGraph, _: &Done) {
        self.finished.fetch_add(1, Ordering::SeqCst);
    }
    fn finished(&self, _: &bob_pipelines_estimator::Report) {
        self.ended.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn progress_sees_every_task_and_the_report_counts_per_step() {
    let rec = Arc::new(Recorder::default());
    let mut p = Pipeline::new()
        .then(
            Step::new(Affine {
                mul: 1,
                add: 0,
                fail_mod: 3,
            })
            .name("drop3"),
        )
        .then(Step::fit(Center).name("center"));
    let pool = ThreadPool::new(nz(2)).with_progress(rec.clone());
    let out = p
        .fit_transform((0..90u64).map(|i| Sample::new(i.to_string(), i)))
        .npartitions(3)
        .compute(&pool)
        .unwrap();
    // 3 loads, 3 drop3 transforms, 1 fit, 3 center transforms.
    assert_eq!(rec.graph_tasks.load(Ordering::SeqCst), 10);
    assert_eq!(rec.started.load(Ordering::SeqCst), 10);
    assert_eq!(rec.finished.load(Ordering::SeqCst), 10);
    assert_eq!(rec.ended.load(Ordering::SeqCst), 1);
    let r = out.report();
    assert_eq!((r.steps[0].samples, r.steps[0].failed), (90, 30));
    assert_eq!((r.steps[1].samples, r.steps[1].failed), (60, 0));
    assert!(r.steps[1].fitted);
}

#[test]
fn not_fitted_is_an_error_before_any_task_runs() {
    let p = Pipeline::new().then(Step::fit(Center).name("center"));
    let e = p
        .transform((0..3u64).map(|i| Sample::new(i.to_string(), i)))
        .compute(&SingleThreaded::new())
        .unwrap_err();
    assert!(
        matches!(e, Error::Run(RunError::NotFitted { ref step }) if step == "center"),
        "{e}"
    );
}

/// Bytes written by progress lines, shared with the test.
#[derive(Clone, Default)]
struct Log(Arc<std::sync::Mutex<Vec<u8>>>);
impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn off_a_terminal_progress_is_lines_of_every_steps_counts() {
    let log = Log::default();
    let lines = bob_pipelines_executor::Bars::lines_to(Box::new(log.clone()), Duration::ZERO);
    let ex = ThreadPool::new(nz(2)).with_progress(Arc::new(lines));
    let mut p = Pipeline::new()
        .then(
            Step::new(Affine {
                mul: 3,
                add: 1,
                fail_mod: 10,
            })
            .name("affine"),
        )
        .then(Step::fit(Center).name("center"));
    let samples = (0..40u64).map(|i| Sample::new(format!("k{i}"), i));
    p.fit_transform(samples)
        .npartitions(4)
        .compute(&ex)
        .unwrap();
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let mut all: Vec<&str> = text.lines().collect();
    // First, which compute runs.
    assert_eq!(
        all.remove(0),
        "compute 1: fit_transform of 40 samples in 4 partitions: affine → center"
    );
    assert!(all.len() > 4, "a line per event at interval 0: {text}");
    let last = all.last().unwrap();
    for part in [
        "(end)",
        "load 40/40",
        "affine 40/40 (4 failed)",
        "center 40/40",
        "[fitted]",
    ] {
        assert!(
            last.contains(part),
            "{part} missing in the last line: {last}"
        );
    }
    assert!(text.contains("[fitting]"), "{text}");
    // Counts only grow, line after line.
    let affine = |l: &str| -> u64 {
        l.split("affine ")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap()
            .parse()
            .unwrap()
    };
    let counts: Vec<u64> = all.iter().map(|l| affine(l)).collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
}

#[test]
fn off_a_terminal_lines_keep_coming_during_a_long_task() {
    let log = Log::default();
    let lines =
        bob_pipelines_executor::Bars::lines_to(Box::new(log.clone()), Duration::from_millis(50));
    let ex = SingleThreaded::new().with_progress(Arc::new(lines));
    let p = Pipeline::new().then(Step::map("sleepy", |x: &u64| {
        std::thread::sleep(Duration::from_millis(400));
        *x
    }));
    p.transform(vec![Sample::new("only", 1u64)])
        .compute(&ex)
        .unwrap();
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let waiting = text.lines().filter(|l| l.contains("sleepy 0/1")).count();
    assert!(waiting >= 3, "lines while the one task ran: {text}");
    assert!(
        text.lines()
            .last()
            .unwrap()
            .contains("(end) load 1/1 · sleepy 1/1"),
        "{text}"
    );
    // The ticker stops with the run: nothing is printed after the end.
    let len = log.0.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(log.0.lock().unwrap().len(), len);
}

#[test]
fn off_a_terminal_a_failed_run_says_which_task_and_then_stops_ticking() {
    let log = Log::default();
    let lines =
        bob_pipelines_executor::Bars::lines_to(Box::new(log.clone()), Duration::from_millis(20));
    let ex = SingleThreaded::new().with_progress(Arc::new(lines));
    let p = Pipeline::new().then(Step::batch("broken", |_: &Batch<'_, u64>| {
        Err::<Vec<SampleResult<u64>>, BoxError>("no model file".into())
    }));
    assert!(
        p.transform(vec![Sample::new("a", 1u64)])
            .compute(&ex)
            .is_err()
    );
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let last = text.lines().last().unwrap();
    assert!(
        last.contains("(end)") && last.contains("task `broken.transform-0` failed"),
        "{text}"
    );
    let len = log.0.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(
        log.0.lock().unwrap().len(),
        len,
        "ticks after the failure: {text}"
    );
}
