//! The distributed executor with real worker processes: this test binary,
//! started again by `LocalProcesses` with the test's name, so each worker
//! runs the very test that started it up to its `compute` and serves there.
//! A test therefore does its distributed `compute` before anything a worker
//! must not do, and names folders after the driver's pid (a worker's parent).

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bob_pipelines::executor::distributed::{Distributed, LocalProcesses, WorkerKind, is_worker};
use bob_pipelines::executor::wire::{self, Secret, WorkerInfo};
use bob_pipelines::prelude::*;
use ndarray::Array1;

use crate::checkpoint::images_the_third_goes;
use serde::{Deserialize, Serialize};

pub(crate) fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

/// The driver's pid: this process's, or in a worker its parent's.
fn driver_pid() -> u32 {
    if is_worker() {
        std::os::unix::process::parent_id()
    } else {
        std::process::id()
    }
}

/// A folder named after the test and the driver, the same in every process.
pub(crate) fn run_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("bp-dist-{name}-{}", driver_pid()))
}

/// Checkpoints in `dir`: `features/` and `models/`.
pub(crate) fn in_folder(dir: &Path) -> Checkpoints {
    Checkpoints::new(dir.join("features")).model_dir(dir.join("models"))
}

/// Where workers note their pid (file name) and scheduler address (content).
fn notes(driver: u32) -> PathBuf {
    std::env::temp_dir().join(format!("bp-dist-workers-{driver}"))
}

/// Workers that run this test (or helper) and nothing else.
fn workers(n: usize, test: &str, ignored: bool) -> LocalProcesses {
    let mut args = vec![
        "--exact".to_owned(),
        format!("distributed::{test}"),
        "--nocapture".to_owned(),
    ];
    if ignored {
        args.push("--ignored".to_owned());
    }
    LocalProcesses::new(nz(n), NonZeroUsize::MIN).args(args)
}

fn silent<L: bob_pipelines::executor::distributed::Launcher>(l: L) -> Distributed<L> {
    Distributed::new(l).with_progress(std::sync::Arc::new(bob_pipelines::executor::Silent))
}

/// Where workers note each partition they finished `slow` on
/// (`<pid>.<first key>`).
fn finished_notes(driver: u32) -> PathBuf {
    std::env::temp_dir().join(format!("bp-dist-finished-{driver}"))
}

/// Sleeps `ms` per partition, notes the worker it runs on (and, once done,
/// the partition), fails keys ending in 7.
struct Slow(u64);
impl Transformer for Slow {
    type Input = Array1<f64>;
    type Output = Array1<f64>;
    fn transform(
        &self,
        b: &Batch<'_, Array1<f64>>,
    ) -> Result<Vec<SampleResult<Array1<f64>>>, BoxError> {
        // Local workers note themselves; SGE tests' workers are jobs.
        if is_worker() && std::env::var_os(crate::sge::TEST_DIR_ENV).is_none() {
            let dir = notes(std::os::unix::process::parent_id());
            std::fs::create_dir_all(&dir)?;
            let addr = std::env::var("BOB_PIPELINES_SCHEDULER").unwrap_or_default();
            std::fs::write(dir.join(std::process::id().to_string()), addr)?;
        }
        std::thread::sleep(Duration::from_millis(self.0));
        // Where a test made the folder (`with_a_worker_killed`) and waits.
        let dir = finished_notes(std::os::unix::process::parent_id());
        if is_worker() && dir.is_dir() {
            let first = b.keys().next().map_or("none", |k| k.as_str());
            std::fs::write(dir.join(format!("{}.{first}", std::process::id())), "")?;
        }
        Ok(b.iter()
            .zip(b.keys())
            .map(|(x, k)| {
                if k.ends_with('7') {
                    Err(Failure::new("ends with 7"))
                } else {
                    Ok(x.mapv(|v| (v * 1.3).sin()))
                }
            })
            .collect())
    }
}

/// Centers on the mean; the fitted model remembers the resources of the
/// worker that fitted it.
struct Mean;
#[derive(Serialize, Deserialize)]
struct Centered {
    mean: f64,
    fitted_with: String,
}
impl Fit for Mean {
    type Input = Array1<f64>;
    type Fitted = Centered;
    fn fit(&self, b: &Batch<'_, Array1<f64>>) -> Result<Centered, BoxError> {
        let (s, n) = b
            .iter()
            .fold((0.0, 0usize), |(s, n), x| (s + x.sum(), n + x.len()));
        Ok(Centered {
            mean: s / n as f64,
            fitted_with: std::env::var("BOB_PIPELINES_WORKER_RESOURCES")
                .unwrap_or_else(|_| "<driver>".to_owned()),
        })
    }
}
impl Transformer for Centered {
    type Input = Array1<f64>;
    type Output = Array1<f64>;
    fn transform(
        &self,
        b: &Batch<'_, Array1<f64>>,
    ) -> Result<Vec<SampleResult<Array1<f64>>>, BoxError> {
        Ok(b.iter().map(|x| Ok(x - self.mean)).collect())
    }
}

pub(crate) fn pipeline(ms: u64) -> Pipeline<Array1<f64>, Array1<f64>> {
    Pipeline::new()
        .then(Step::new(Slow(ms)).name("slow"))
        .then(Step::fit(Mean).name("center"))
}

pub(crate) fn samples(n: usize) -> impl ExactSizeIterator<Item = Sample<Array1<f64>>> + Send {
    (0..n).map(|i| {
        Sample::new(
            format!("s{i}"),
            Array1::from_vec(vec![i as f64, 0.25, -(i as f64) / 3.0]),
        )
    })
}

/// Outputs as comparable bits: key and f64 bits, or the failure's text.
pub(crate) fn bits(out: &Outputs<Array1<f64>>) -> Vec<(String, Result<Vec<u64>, String>)> {
    out.iter()
        .map(|s| match s {
            Ok(s) => (
                s.key().to_string(),
                Ok(s.data().iter().map(|v| v.to_bits()).collect()),
            ),
            Err(f) => (f.key().to_string(), Err(f.to_string())),
        })
        .collect()
}

/// What a run over `n` samples in `parts` partitions, several of its
/// workers' time limits long, must show (the grids' walltime tests): the
/// outputs of a run without limits, no worker lost, four jobs or more, and
/// one at least that left at its limit. Its report.
pub(crate) fn outlived_time_limits(
    out: &Outputs<Array1<f64>>,
    n: usize,
    parts: usize,
) -> &bob_pipelines::estimator::Report {
    assert_eq!(bits(out), reference(n, parts));
    let r = out.report();
    assert!(
        !r.warnings.iter().any(|w| w.contains("was lost")),
        "{:?}",
        r.warnings
    );
    assert!(r.workers.len() >= 4, "{:?}", r.workers);
    assert!(
        r.workers.iter().any(|w| w.state().contains("time limit")),
        "{:?}",
        r.workers
    );
    r
}

pub(crate) fn reference(n: usize, parts: usize) -> Vec<(String, Result<Vec<u64>, String>)> {
    let mut p = pipeline(0);
    let out = p
        .fit_transform(samples(n))
        .npartitions(parts)
        .compute(&SingleThreaded::new())
        .unwrap();
    bits(&out)
}

fn fitted_with(p: &Pipeline<Array1<f64>, Array1<f64>>) -> String {
    let bytes = p.model_bytes("center").unwrap();
    rmp_serde::from_slice::<Centered>(&bytes)
        .unwrap()
        .fitted_with
}

#[test]
fn processes_compute_the_same_bits_and_write_the_checkpoints() {
    let dir = run_dir("same");
    let ex = silent(workers(
        2,
        "processes_compute_the_same_bits_and_write_the_checkpoints",
        false,
    ));
    let mut p = pipeline(0).checkpoint(in_folder(&dir));
    let out = p
        .fit_transform(samples(600))
        .npartitions(12)
        .compute(&ex)
        .unwrap();
    assert_eq!(bits(&out), reference(600, 12));
    // Fitted on a worker (no resources), written there, read back here.
    assert_eq!(fitted_with(&p), "");
    assert!(dir.join("models/center.msgpack").exists());
    let on_disk = std::fs::read_dir(dir.join("features/center"))
        .unwrap()
        .count();
    assert!(on_disk > 500, "{on_disk} checkpoint files");
    assert_eq!(out.report().steps[0].samples, 600);
    // Workers loaded the inputs and kept every partition but the outputs:
    // the outputs came back (at least 3 f64 a sample), far less went out
    // (tasks and a model, no data), and the report says so.
    let r = out.report();
    assert!(
        r.driver_bytes_out < 600 * 24 && r.driver_bytes_in > 600 * 24,
        "{} in, {} out",
        r.driver_bytes_in,
        r.driver_bytes_out
    );
    assert!(
        r.to_string().contains("the driver's sockets to workers"),
        "{r}"
    );

    // Again: everything comes from the checkpoints, nothing is sent.
    let again = p
        .fit_transform(samples(600))
        .npartitions(12)
        .compute(&ex)
        .unwrap();
    assert_eq!(bits(&again), bits(&out));
    assert_eq!(again.report().from_checkpoints, 600);
    assert_eq!(
        again.report().driver_bytes_in + again.report().driver_bytes_out,
        0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The outputs stay in the checkpoints the workers wrote until the caller
/// looks at them: the same bits, failures with their reasons included, a
/// file removed since the run a failure that says so, and none of the
/// outputs' data through the driver's sockets.
#[test]
fn outputs_read_back_from_checkpoints_are_the_same_and_skip_the_sockets() {
    let dir = run_dir("read-back");
    let ex = silent(workers(
        2,
        "outputs_read_back_from_checkpoints_are_the_same_and_skip_the_sockets",
        false,
    ))
    .outputs_from_checkpoints(true);
    let mut p = pipeline(0).checkpoint(in_folder(&dir));
    let out = p
        .fit_transform(samples(600))
        .npartitions(12)
        .compute(&ex)
        .unwrap();
    // Left in their files until looked at: take one away first.
    assert!(out.on_disk() > 0, "{} partitions on disk", out.on_disk());
    let mut expected = reference(600, 12);
    let (key, gone) = expected.iter_mut().find(|(_, b)| b.is_ok()).unwrap();
    let file = dir.join("features/center").join(format!("{key}.npy"));
    std::fs::remove_file(&file).unwrap();
    *gone = Err(format!(
        "sample {:?} failed at step `center`: its checkpoint file is missing: run the pipeline \
         again to compute it",
        key.as_str()
    ));
    assert_eq!(out.len(), 600);
    assert_eq!(bits(&out), expected);
    assert_eq!(out.on_disk(), 0);
    let r = out.report();
    // Outputs sent would be at least 3 f64 a sample.
    assert!(
        r.driver_bytes_in < 600 * 24,
        "{} bytes in",
        r.driver_bytes_in
    );
    assert_eq!((r.from_checkpoints, r.known_failed), (0, 0), "{r}");
    assert_eq!(r.steps[0].failed, 60, "{r}");
    // The task stream names the workers that ran each task.
    let fit = r.tasks.iter().find(|t| &*t.task == "center.fit").unwrap();
    assert!(fit.worker.starts_with("local-"), "{fit:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Computes `lazy` on `ex` while the first worker that starts is killed
/// once it has finished two partitions of `slow` and 100 ms more have
/// passed (so it holds outputs the scheduler knows of, however loaded the
/// machine): the outputs, and the warning that says it was lost.
fn with_a_worker_killed(
    lazy: bob_pipelines::estimator::Lazy<'_, Array1<f64>, Array1<f64>>,
    ex: &Distributed<LocalProcesses>,
) -> (Outputs<Array1<f64>>, String) {
    let dir = notes(driver_pid());
    let finished = finished_notes(driver_pid());
    if !is_worker() {
        // An earlier process of this pid may have left notes naming pids
        // since given to others.
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&finished);
        std::fs::create_dir_all(&finished).unwrap();
    }
    let killer = (!is_worker()).then(|| {
        let (dir, finished) = (dir.clone(), finished.clone());
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(60) {
                let mine = pids(&dir)
                    .into_iter()
                    .find(|pid| is_child(pid, std::process::id()));
                let done = |pid: &str| {
                    pids(&finished)
                        .iter()
                        .filter(|f| f.starts_with(&format!("{pid}.")))
                        .count()
                };
                if let Some(pid) = mine.filter(|pid| done(pid) >= 2) {
                    std::thread::sleep(Duration::from_millis(100));
                    let status = Command::new("kill").args(["-9", &pid]).status().unwrap();
                    return status.success().then_some(pid);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            None
        })
    });
    let out = lazy.compute(ex).unwrap();
    let killed = killer
        .unwrap()
        .join()
        .unwrap()
        .expect("a worker was killed");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&finished);
    let warnings = &out.report().warnings;
    let lost = warnings
        .iter()
        .find(|w| w.contains("was lost"))
        .unwrap_or_else(|| panic!("worker {killed} killed, yet: {warnings:?}"))
        .clone();
    (out, lost)
}

/// The first number after `after` in `text`.
fn count_after(text: &str, after: &str) -> usize {
    text.split(after)
        .nth(1)
        .and_then(|w| w.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count after `{after}` in: {text}"))
}

#[test]
fn a_killed_worker_costs_the_run_nothing() {
    let ex = silent(workers(2, "a_killed_worker_costs_the_run_nothing", false));
    let mut p = pipeline(40);
    let (out, lost) = with_a_worker_killed(p.fit_transform(samples(800)).npartitions(40), &ex);
    assert_eq!(bits(&out), reference(800, 40));
    // It had made `slow` outputs that the fit still needed (it ran 100 ms,
    // 40 ms a partition, and the fit waits for all 40): they were made
    // again.
    assert!(count_after(&lost, "and ") >= 1, "{lost}");
}

/// A killed worker's partitions whose files it wrote are read from them, not
/// computed again.
#[test]
fn a_killed_workers_checkpointed_partitions_are_read_back_not_computed_again() {
    const TEST: &str = "a_killed_workers_checkpointed_partitions_are_read_back_not_computed_again";
    let dir = run_dir("killed-reread");
    let ex = silent(workers(2, TEST, false));
    let mut p = pipeline(40).checkpoint(in_folder(&dir));
    let (out, lost) = with_a_worker_killed(p.fit_transform(samples(800)).npartitions(40), &ex);
    assert_eq!(bits(&out), reference(800, 40));
    assert!(count_after(&lost, "and ") >= 1, "{lost}");
    let warnings = &out.report().warnings;
    let read: usize = warnings
        .iter()
        .find(|w| w.contains("read back from their checkpoint files instead of computed again"))
        .and_then(|w| w.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("nothing read back: {warnings:?}"));
    assert!(read >= 1, "{warnings:?}");
    // Only the tasks it was running ran again: each `slow` transform ran
    // once, or twice if it was running when the worker died.
    let slow_runs = out
        .report()
        .tasks
        .iter()
        .filter(|t| t.task.starts_with("slow."))
        .count();
    let running = count_after(&lost, "its ");
    assert!(
        slow_runs <= 40 + running,
        "{slow_runs} runs of `slow`: {lost}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_tagged_fit_runs_on_the_kind_of_worker_that_provides_it() {
    let ex = silent(
        workers(
            1,
            "a_tagged_fit_runs_on_the_kind_of_worker_that_provides_it",
            false,
        )
        .kind(WorkerKind::new("gpu", 1, NonZeroUsize::MIN).provides("q_short_gpu")),
    );
    let mut p = Pipeline::new()
        .then(Step::new(Slow(0)).name("slow"))
        .then(Step::fit(Mean).name("center").fit_tag("q_short_gpu"));
    let out = p
        .fit_transform(samples(100))
        .npartitions(4)
        .compute(&ex)
        .unwrap();
    assert_eq!(fitted_with(&p), "q_short_gpu");
    assert_eq!(bits(&out), reference(100, 4));
}

/// One pipeline definition runs everywhere: on one machine a tag no kind of
/// worker provides is ignored with the warning the thread pools give (a
/// cluster refuses it; see the scheduler's unit tests).
#[test]
fn a_resource_no_local_worker_provides_is_ignored_with_a_warning() {
    let ex = silent(workers(
        2,
        "a_resource_no_local_worker_provides_is_ignored_with_a_warning",
        false,
    ));
    let mut p = Pipeline::new()
        .then(Step::new(Slow(0)).name("slow").transform_tag("io_big"))
        .then(Step::fit(Mean).name("center").fit_tag("q_short_gpu"));
    let out = p
        .fit_transform(samples(40))
        .npartitions(4)
        .compute(&ex)
        .unwrap();
    assert_eq!(bits(&out), reference(40, 4));
    let w = out.report().warnings.join("\n");
    for part in [
        "step `slow` asks for resource `io_big` (transform_tag)",
        "step `center` asks for resource `q_short_gpu` (fit_tag)",
        "the tag is ignored here",
    ] {
        assert!(w.contains(part), "{part} missing in: {w}");
    }
    let threads = by_name("threads").unwrap();
    let mut q = Pipeline::new().then(Step::new(Slow(0)).name("slow").transform_tag("io_big"));
    let same = q.fit_transform(samples(4)).compute(&threads).unwrap();
    // The same words but for the executor's name.
    let words = |s: &str| {
        let (before, after) = s.split_once("executor `").unwrap();
        format!("{before}{}", after.split_once('`').unwrap().1)
    };
    let here = &same.report().warnings[0];
    let there = out
        .report()
        .warnings
        .iter()
        .find(|w| w.contains("io_big"))
        .unwrap();
    assert_eq!(words(here), words(there));
    let _ = std::fs::remove_dir_all(notes(driver_pid()));
}

#[test]
fn strangers_on_the_port_are_dropped_and_the_run_goes_on() {
    let ex = silent(workers(
        2,
        "strangers_on_the_port_are_dropped_and_the_run_goes_on",
        false,
    ));
    // 20 partitions of 100 ms on two workers: a second, for the stranger's
    // three tries on a busy machine (the port closes with the run).
    let mut p = pipeline(100);
    let lazy = p.fit_transform(samples(400)).npartitions(20);
    let dir = notes(driver_pid());
    if !is_worker() {
        let _ = std::fs::remove_dir_all(&dir); // notes of an earlier process of this pid
    }
    let stranger = (!is_worker()).then(|| {
        let dir = dir.clone();
        std::thread::spawn(move || {
            let addr = loop {
                let found = pids(&dir)
                    .first()
                    .and_then(|pid| std::fs::read_to_string(dir.join(pid)).ok())
                    .filter(|a| !a.is_empty());
                if let Some(a) = found {
                    break a;
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            // On one machine, a Unix socket where the system lets one
            // hold enough (else TCP).
            let open = || {
                let s = wire::Stream::connect(&addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                s
            };
            let closed = |mut s: wire::Stream| {
                use std::io::Read as _;
                let mut sink = Vec::new();
                // The challenge may come first; then the scheduler hangs up
                // (a reset when it left bytes unread), rather than let the
                // read wait out its timeout.
                match s.read_to_end(&mut sink) {
                    Ok(_) => true,
                    Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
                }
            };
            // A worker that does not know the secret.
            let mut s = open();
            let info = WorkerInfo {
                fingerprint: 0,
                resources: vec![],
                threads: 1,
                name: "impostor".into(),
                peer: String::new(),
                lifetime_ms: 0,
            };
            let impostor = wire::connect(&mut s, &Secret::random().unwrap(), info);
            assert!(impostor.is_err(), "an impostor was welcomed");
            // A random byte stream.
            let mut s = open();
            let noise: Vec<u8> = (0..100_000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            use std::io::Write as _;
            let _ = s.write_all(&noise);
            assert!(closed(s));
            // A 1 GiB length prefix.
            let mut s = open();
            let _ = s.write_all(&(1u32 << 30).to_le_bytes());
            assert!(closed(s));
        })
    });
    let out = lazy.compute(&ex).unwrap();
    stranger.unwrap().join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(bits(&out), reference(400, 20));
    let warnings = &out.report().warnings;
    assert!(
        warnings.iter().any(|w| w.contains("3 connection(s)")),
        "{warnings:?}"
    );
}

#[test]
#[ignore = "a helper: the worker program of `another_program_is_refused_by_its_fingerprint`"]
fn another_program() {
    let p = Pipeline::new().then(Step::new(Slow(0)).name("not-the-same"));
    let _ = p
        .transform(samples(10))
        .compute(&silent(workers(1, "unused", false)));
}

#[test]
fn another_program_is_refused_by_its_fingerprint() {
    let ex = silent(workers(1, "another_program", true));
    let mut p = pipeline(0);
    let t0 = Instant::now();
    let e = p
        .fit_transform(samples(10))
        .compute(&ex)
        .unwrap_err()
        .to_string();
    assert!(e.contains("fingerprint"), "{e}");
    assert!(e.contains("same program"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(20));
}

const DRIVER_DIR_ENV: &str = "BOB_PIPELINES_TEST_DRIVER_DIR";

#[test]
#[ignore = "a helper: the driver that `workers_exit_when_their_driver_is_killed` kills"]
fn driver_child() {
    let dir = PathBuf::from(std::env::var(DRIVER_DIR_ENV).unwrap());
    let ex = Distributed::new(LocalProcesses::new(nz(2), NonZeroUsize::MIN))
        .death_timeout(Duration::from_secs(5))
        .heartbeat(Duration::from_millis(200))
        .secret_dir(dir.join("secrets"))
        .with_progress(std::sync::Arc::new(bob_pipelines::executor::Silent));
    let mut p = pipeline(300).checkpoint(in_folder(&dir));
    let _ = p.fit_transform(samples(500)).npartitions(50).compute(&ex);
}

fn alive(pid: &str) -> bool {
    // A zombie (exited, not yet reaped by its new parent) is not alive.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// The pids of the workers that noted themselves in `dir`.
/// Whether process `pid` is a child of process `parent`.
fn is_child(pid: &str, parent: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The parent's pid is the second field after the command name's `)`.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .is_some_and(|ppid| ppid == parent.to_string())
}

fn pids(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn workers_exit_when_their_driver_is_killed() {
    let work = std::env::temp_dir().join(format!("bp-dist-driver-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let mut driver = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "distributed::driver_child",
            "--ignored",
            "--nocapture",
        ])
        .env(DRIVER_DIR_ENV, &work)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let dir = notes(driver.id());
    // Only its workers: notes of an earlier process of this pid may be there.
    let its = || -> Vec<String> {
        pids(&dir)
            .into_iter()
            .filter(|p| is_child(p, driver.id()))
            .collect()
    };
    let t0 = Instant::now();
    while its().len() < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the driver's workers never ran a task"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let workers = its();
    assert!(workers.iter().all(|p| alive(p)));
    driver.kill().unwrap();
    driver.wait().unwrap();
    let killed = Instant::now();
    // The death timeout is 5 s; a closed connection is noticed at once.
    while workers.iter().any(|p| alive(p)) && killed.elapsed() < Duration::from_secs(8) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<&String> = workers.iter().filter(|p| alive(p)).collect();
    // The killed driver's secret file is left; the next driver removes it.
    let secrets = work.join("secrets");
    let count = || std::fs::read_dir(&secrets).map_or(0, Iterator::count);
    let before = count();
    let next = wire::SecretFile::create(&secrets).unwrap();
    let after = count();
    drop(next);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&work);
    assert!(
        left.is_empty(),
        "workers {left:?} outlived their driver by {:?}",
        killed.elapsed()
    );
    assert_eq!((before, after), (1, 1), "the killed driver's secret file");
}

/// Runs `f`; if it has not returned within `limit`, says so and ends this
/// process: a hang fails the test instead of stalling the suite.
pub(crate) fn within<T>(limit: Duration, what: &str, f: impl FnOnce() -> T) -> T {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let what = what.to_owned();
    std::thread::spawn(move || {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if flag.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{what} did not end within {limit:?}: it hangs");
        std::process::exit(3);
    });
    let out = f();
    done.store(true, std::sync::atomic::Ordering::Release);
    out
}

/// A checkpointed run of `pipeline` whose partitions were all read from the
/// checkpoints, then whose model file went missing: every partition is read
/// back straight into the fit, more of them than the driver's load window.
#[test]
fn a_resume_that_refits_from_checkpoints_ends() {
    let dir = run_dir("refit");
    let ex = silent(workers(
        2,
        "a_resume_that_refits_from_checkpoints_ends",
        false,
    ));
    let mut p = pipeline(0).checkpoint(in_folder(&dir));
    if !is_worker() {
        // The first run, in this process; then the model is lost.
        p.fit_transform(samples(600))
            .npartitions(30)
            .compute(&by_name("threads-p2").unwrap())
            .unwrap();
        std::fs::remove_file(dir.join("models/center.msgpack")).unwrap();
    }
    let out = within(Duration::from_secs(60), "the resumed run", || {
        p.fit_transform(samples(600))
            .npartitions(30)
            .compute(&ex)
            .unwrap()
    });
    assert_eq!(bits(&out), reference(600, 30));
    assert_eq!(out.report().from_checkpoints, 600);
    assert!(out.report().steps[1].fitted, "the model was fitted again");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(notes(driver_pid()));
}

#[test]
fn a_sample_recomputed_on_a_worker_from_a_loader_that_now_fails_counts_as_not_loaded() {
    let dir = run_dir("reload");
    let gone = dir.join("k03.gone");
    let inputs = || images_the_third_goes(40, 3, &gone, |i| format!("k{i:02}"));
    let mut p = pipeline(0).checkpoint(in_folder(&dir));
    if !is_worker() {
        // The first run, in this process. Then the model is lost, so the
        // workers read `slow`'s outputs back to fit again; k03's is
        // damaged (found when read: recomputed from its input), and the
        // image it came from is gone.
        let _ = std::fs::remove_dir_all(&dir);
        p.fit_transform(inputs())
            .npartitions(4)
            .compute(&by_name("threads-p2").unwrap())
            .unwrap();
        std::fs::remove_file(dir.join("models/center.msgpack")).unwrap();
        std::fs::write(dir.join("features/slow/k03.npy"), b"not a .npy file").unwrap();
        std::fs::write(&gone, b"").unwrap();
    }
    let ex = silent(workers(
        2,
        "a_sample_recomputed_on_a_worker_from_a_loader_that_now_fails_counts_as_not_loaded",
        false,
    ));
    let out = within(Duration::from_secs(60), "the resumed run", || {
        p.fit_transform(inputs())
            .npartitions(4)
            .compute(&ex)
            .unwrap()
    });
    let r = out.report();
    // Read back on the workers, which count for the driver's report.
    let readers: Vec<&str> = r
        .tasks
        .iter()
        .filter(|t| t.task.starts_with("slow.load"))
        .map(|t| &*t.worker)
        .collect();
    assert!(
        readers.len() == 4 && readers.iter().all(|w| w.starts_with("local-")),
        "{readers:?}"
    );
    assert_eq!((r.recomputed, r.load_failed), (1, 1), "{r}");
    assert!(
        out.failed()
            .any(|f| f.key() == "k03" && f.to_string().contains("the image is gone")),
        "{r}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Samples `0..90` behind a length of 100: an `ExactSizeIterator` whose
/// `len` is wrong.
struct EndsEarly(std::ops::Range<u32>);

impl Iterator for EndsEarly {
    type Item = Sample<f64>;
    fn next(&mut self) -> Option<Sample<f64>> {
        self.0
            .next()
            .filter(|&i| i < 90)
            .map(|i| Sample::new(i.to_string(), f64::from(i)))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.0.len(), Some(self.0.len()))
    }
}

impl ExactSizeIterator for EndsEarly {}

#[test]
fn an_input_shorter_than_its_length_fails_the_run_and_says_so() {
    let p = Pipeline::new().then(Step::map("same", |x: &f64| *x));
    let run = |ex: &dyn Executor| {
        p.transform(EndsEarly(0..100))
            .npartitions(4)
            .compute(ex)
            .map(|out| out.len())
            .map_err(|e| e.to_string())
    };
    let mut errors = Vec::new();
    if !is_worker() {
        for name in ["single-threaded", "threads-p2"] {
            errors.push((name, run(&*by_name(name).unwrap())));
        }
    }
    let ex = silent(workers(
        2,
        "an_input_shorter_than_its_length_fails_the_run_and_says_so",
        false,
    ));
    errors.push(("local-p2", run(&ex)));
    for (name, result) in errors {
        let e = result.expect_err(name);
        assert!(
            e.contains("the input ended early: its length said 100 samples")
                && e.contains("partition 3 (samples 75..100) got 15"),
            "{name}: {e}"
        );
    }
}

#[test]
fn the_task_stream_shows_when_each_run_ran_on_its_worker() {
    // Each partition's load and two steps run chained on one worker, whose
    // answers go out together at the chain's end; the driver is busy
    // between reads. Placed by when the driver heard, a one-thread
    // worker's runs overlapped.
    let slow = |name: &str| {
        Step::map(name, |x: &f64| {
            std::thread::sleep(Duration::from_millis(2));
            *x
        })
    };
    let p = Pipeline::new().then(slow("a")).then(slow("b"));
    let samples: Vec<_> = (0..40)
        .map(|i| Sample::new(i.to_string(), f64::from(i)))
        .collect();
    let ex = silent(workers(
        2,
        "the_task_stream_shows_when_each_run_ran_on_its_worker",
        false,
    ));
    let out = p.transform(samples).npartitions(8).compute(&ex).unwrap();
    let mut by_worker: std::collections::BTreeMap<&str, Vec<(f64, f64, &str)>> =
        std::collections::BTreeMap::new();
    for t in &out.report().tasks {
        by_worker
            .entry(&*t.worker)
            .or_default()
            .push((t.start_ms, t.end_ms, &*t.task));
    }
    let runs: usize = by_worker.values().map(Vec::len).sum();
    assert_eq!(runs, 24, "8 loads and 16 transforms: {by_worker:?}");
    // Each worker's runs (the driver may load a partition itself, on its
    // threads); the transforms all run on workers.
    by_worker.retain(|w, _| w.starts_with("local-"));
    let on_workers: usize = by_worker.values().map(Vec::len).sum();
    assert!(on_workers >= 16, "{by_worker:?}");
    for (worker, mut ran) in by_worker {
        ran.sort_by(|a, b| a.0.total_cmp(&b.0));
        for pair in ran.windows(2) {
            let ((_, end, before), (start, _, after)) = (pair[0], pair[1]);
            // Microseconds rounded on the worker, milliseconds here.
            assert!(
                start >= end - 0.01,
                "`{after}` began at {start:.3} ms, before `{before}` ended at {end:.3} ms, both on the one thread of `{worker}`"
            );
        }
        for &(start, end, task) in &ran {
            assert!(
                end >= start,
                "`{task}` on `{worker}`: {start:.3}..{end:.3} ms"
            );
        }
    }
}

const CASE_ENV: &str = "BOB_PIPELINES_TEST_CASE";

/// One random resume: a pipeline of stateless and fitted steps, a
/// partitioning, which checkpoint files survive, a load window, and how
/// many worker processes (`local-p2` or `local-p3`); one case in four runs
/// without checkpoints at all.
#[derive(Debug)]
struct Case {
    seed: u64,
    samples: usize,
    partitions: usize,
    fitted: Vec<bool>,
    window: usize,
    /// The chance, in percent, that a checkpoint or model file is lost.
    lose: u64,
    workers: usize,
    checkpointed: bool,
}

fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

impl Case {
    fn new(seed: u64) -> Self {
        let mut next = xorshift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let steps = 1 + (next() % 4) as usize;
        let samples = 20 + (next() % 300) as usize;
        Case {
            seed,
            samples,
            partitions: 1 + (next() % 40).min(samples as u64 - 1) as usize,
            fitted: (0..steps).map(|_| next() % 2 == 0).collect(),
            window: 1 + (next() % 8) as usize,
            lose: [0, 20, 50, 100][(next() % 4) as usize],
            workers: 2 + (next() % 2) as usize,
            checkpointed: next() % 4 != 0,
        }
    }

    fn dir(&self) -> PathBuf {
        run_dir(&format!("case-{}", self.seed))
    }

    fn pipeline(&self, checkpoint: bool) -> Pipeline<Array1<f64>, Array1<f64>> {
        let mut p = Pipeline::new();
        for (i, &fitted) in self.fitted.iter().enumerate() {
            p = if fitted {
                p.then(Step::fit(Mean).name(&format!("fit{i}")))
            } else {
                p.then(Step::new(Slow(0)).name(&format!("slow{i}")))
            };
        }
        if checkpoint {
            let dir = self.dir();
            p = p.checkpoint(in_folder(&dir));
        }
        p
    }

    /// The resumed run, on the case's worker processes (which run this too).
    fn resume(&self) -> Outputs<Array1<f64>> {
        let launcher = LocalProcesses::new(nz(self.workers), NonZeroUsize::MIN)
            .args([
                "--exact",
                "distributed::resume_case",
                "--ignored",
                "--nocapture",
            ])
            .env(CASE_ENV, self.seed.to_string());
        let ex = silent(launcher).load_window(self.window);
        let mut p = self.pipeline(self.checkpointed);
        p.fit_transform(samples(self.samples))
            .npartitions(self.partitions)
            .compute(&ex)
            .unwrap_or_else(|e| panic!("{self:?}: {e}"))
    }
}

#[test]
#[ignore = "a helper: the worker program of `random_resumes_on_worker_processes_end_with_the_same_bits`"]
fn resume_case() {
    let seed = std::env::var(CASE_ENV).unwrap().parse().unwrap();
    let _ = Case::new(seed).resume();
}

/// Random graphs (fitted steps anywhere, random partitionings, random
/// subsets of their checkpoints and models on disk or no checkpoints, random
/// load windows) on two or three worker processes: every run ends, with the
/// bits of a single-threaded run.
#[test]
fn random_resumes_on_worker_processes_end_with_the_same_bits() {
    for seed in 1..=24u64 {
        let case = Case::new(seed);
        let dir = case.dir();
        let _ = std::fs::remove_dir_all(&dir);
        let mut lost = 0;
        if case.checkpointed {
            let mut first = case.pipeline(true);
            first
                .fit_transform(samples(case.samples))
                .npartitions(case.partitions)
                .compute(&by_name("threads-p2").unwrap())
                .unwrap();
            let mut next = xorshift(seed | 1);
            let _ = bob_pipelines::checkpoint::walk(&dir, &mut |f| {
                if next() % 100 < case.lose && std::fs::remove_file(f).is_ok() {
                    lost += 1;
                }
            });
        }
        let out = within(Duration::from_secs(60), &format!("{case:?}"), || {
            case.resume()
        });
        let mut reference = case.pipeline(false);
        let want = reference
            .fit_transform(samples(case.samples))
            .npartitions(case.partitions)
            .compute(&SingleThreaded::new())
            .unwrap();
        assert_eq!(bits(&out), bits(&want), "{case:?}, {lost} files lost");
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(notes(driver_pid()));
}

/// Panics on the partition that holds `s13`.
struct Panicky;
impl Transformer for Panicky {
    type Input = Array1<f64>;
    type Output = Array1<f64>;
    fn transform(
        &self,
        b: &Batch<'_, Array1<f64>>,
    ) -> Result<Vec<SampleResult<Array1<f64>>>, BoxError> {
        assert!(
            !b.keys().any(|k| k == "s13"),
            "index out of bounds in the extractor"
        );
        Ok(b.iter().map(|x| Ok(x.clone())).collect())
    }
}

#[test]
fn a_panic_on_a_worker_names_task_step_and_keys() {
    let ex = silent(workers(
        2,
        "a_panic_on_a_worker_names_task_step_and_keys",
        false,
    ));
    let p = Pipeline::new().then(Step::new(Panicky).name("extract"));
    let e = p
        .transform(samples(100))
        .npartitions(10)
        .compute(&ex)
        .unwrap_err()
        .to_string();
    for part in [
        "`extract.transform-1`",
        "`extract`",
        "\"s10\"",
        "of 10",
        "index out of bounds",
    ] {
        assert!(e.contains(part), "{part} missing in: {e}");
    }
}

/// A closure step on worker processes: each worker builds the same closure
/// by running this test up to its compute.
#[test]
fn closure_steps_run_on_workers_and_checkpoint_under_their_name() {
    let dir = run_dir("closure");
    let ex = silent(workers(
        2,
        "closure_steps_run_on_workers_and_checkpoint_under_their_name",
        false,
    ));
    let p = |checkpointed: bool| {
        let p = Pipeline::new()
            .then(Step::map("scaled", |x: &Array1<f64>| x * 2.0))
            .then(Step::fit(Mean).name("center"));
        if checkpointed {
            p.checkpoint(in_folder(&dir))
        } else {
            p
        }
    };
    let out = p(true)
        .fit_transform(samples(200))
        .npartitions(8)
        .compute(&ex)
        .unwrap();
    let want = p(false)
        .fit_transform(samples(200))
        .npartitions(8)
        .compute(&SingleThreaded::new())
        .unwrap();
    assert_eq!(bits(&out), bits(&want));
    assert!(dir.join("features/scaled").is_dir());
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a worker writes on its standard error reaches the driver's
/// progress, named by worker (above the bars, or in the log's lines, never
/// through them), and the progress says which compute runs.
#[test]
fn workers_stderr_and_the_compute_go_through_the_drivers_progress() {
    let log = crate::sge::Log::default();
    let ex = Distributed::new(workers(
        2,
        "workers_stderr_and_the_compute_go_through_the_drivers_progress",
        false,
    ))
    .with_progress(std::sync::Arc::new(
        bob_pipelines::executor::Bars::lines_to(Box::new(log.clone()), Duration::from_secs(3600)),
    ));
    let p = Pipeline::new().then(Step::map("loud", |x: &Array1<f64>| {
        eprintln!("loud saw {}", x[0]);
        x.clone()
    }));
    let out = p.transform(samples(8)).npartitions(2).compute(&ex).unwrap();
    assert_eq!(out.len(), 8);
    // A worker's line is read from its pipe as it comes: wait for it.
    let t0 = Instant::now();
    let said = loop {
        let said = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        if said.contains(": loud saw 7") || t0.elapsed() > Duration::from_secs(10) {
            break said;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        said.contains("compute 1: transform of 8 samples in 2 partitions: loud"),
        "{said}"
    );
    assert!(
        said.lines()
            .any(|l| l.starts_with("local-") && l.contains(": loud saw 7")),
        "{said}"
    );
}

/// The URL of the dashboard of `ex`'s run, once the run has started.
pub(crate) fn dashboard_url<L: bob_pipelines::executor::distributed::Launcher>(
    ex: &Distributed<L>,
) -> String {
    let t0 = Instant::now();
    loop {
        if let Some(url) = ex.dashboard_url() {
            return url;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no dashboard URL");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `GET url` over plain HTTP/1.0: the status and the body.
fn http_get(url: &str) -> (u16, String) {
    try_http_get(url).unwrap_or_else(|| panic!("no answer from {url}"))
}

/// [`http_get`], or `None` when the server is not there (any more).
fn try_http_get(url: &str) -> Option<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Some((status, body))
}

/// The dashboard of a distributed run: its URL carries a token, nothing is
/// answered without it, the page is there, and the snapshot shows the run
/// advancing and its workers.
#[test]
fn the_dashboard_shows_a_run_as_it_computes_and_needs_its_token() {
    let ex = silent(workers(
        2,
        "the_dashboard_shows_a_run_as_it_computes_and_needs_its_token",
        false,
    ))
    .dashboard(Some("127.0.0.1:0".parse().unwrap()))
    .heartbeat(Duration::from_millis(100));
    let mut p = pipeline(40);
    if is_worker() {
        let _ = p.fit_transform(samples(400)).npartitions(20).compute(&ex);
        return;
    }
    // No checkpoints: the report goes where the program says.
    let reports = crate::checkpoint::TempDir::new("dashboard-report");
    let (out, seen) = std::thread::scope(|scope| {
        let run = scope.spawn(|| {
            p.fit_transform(samples(400))
                .npartitions(20)
                .report_to(Some(reports.0.clone()))
                .compute(&ex)
        });
        let url = dashboard_url(&ex);
        let (base, token) = url.split_once("/?token=").expect("a token in the URL");
        assert_eq!(token.len(), 32, "{url}");
        assert_eq!(http_get(&format!("{base}/state.json")).0, 403);
        // Another token: its first digit changed.
        let other = if token.starts_with('0') { '1' } else { '0' };
        assert_eq!(
            http_get(&format!("{base}/state.json?token={other}{}", &token[1..])).0,
            403
        );
        let (status, page) = http_get(&url);
        assert_eq!(status, 200);
        assert!(
            page.contains("<script") && page.contains("Task stream"),
            "{page}"
        );
        // Snapshots while it runs: the `slow` row's count never goes back.
        let mut seen = Vec::new();
        while !run.is_finished() {
            // The run ends, and its server with it, between two polls.
            let Some((status, json)) = try_http_get(&format!("{base}/state.json?token={token}"))
            else {
                break;
            };
            if status == 0 && run.is_finished() {
                break;
            }
            assert_eq!(status, 200);
            let v: serde_json::Value = serde_json::from_str(&json).unwrap();
            seen.push(v);
            std::thread::sleep(Duration::from_millis(50));
        }
        (run.join().unwrap().unwrap(), seen)
    });
    assert_eq!(bits(&out), reference(400, 20));
    let done: Vec<u64> = seen
        .iter()
        .map(|v| v["steps"][1]["done"].as_u64().unwrap())
        .collect();
    assert!(done.windows(2).all(|w| w[0] <= w[1]), "{done:?}");
    assert!(
        done.iter().any(|&d| d > 0 && d < 400),
        "seen mid-run: {done:?}"
    );
    let last = seen.last().unwrap();
    assert_eq!(last["steps"][1]["name"], "slow");
    let workers = last["workers"].as_object().unwrap();
    assert!(
        workers.len() == 2
            && workers
                .values()
                .all(|w| w["state"] == "connected" || w["state"] == "finished"),
        "{last}"
    );
    // Their memory, as their heartbeats say.
    assert!(
        seen.iter().any(|v| v["workers"]
            .as_object()
            .is_some_and(|w| w.len() == 2 && w.values().all(|w| w["memory"].as_u64() > Some(0)))),
        "{last}"
    );
    // The report lists the workers: what became of them, what they ran.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reports.0.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["status"], "done");
    let listed = report["workers"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{report}");
    let on_workers = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| {
            t["worker"]
                .as_str()
                .is_some_and(|w| w.starts_with("local-"))
        })
        .count();
    assert_eq!(
        listed
            .iter()
            .map(|w| w["tasks"].as_u64().unwrap())
            .sum::<u64>(),
        on_workers as u64,
        "{report}"
    );
    for w in listed {
        let states: Vec<&str> = w["states"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["state"].as_str().unwrap())
            .collect();
        assert_eq!(states.first(), Some(&"submitted"), "{w}");
        assert!(states.contains(&"connected"), "{w}");
        assert_eq!(states.last(), Some(&"finished"), "{w}");
        assert!(w["peak_memory"].as_u64() > Some(0), "{w}");
    }
    let html = std::fs::read_to_string(reports.0.join("report.html")).unwrap();
    assert_eq!(html.matches("<tr class=\"worker\">").count(), 2, "{html}");
    assert!(
        last["stream"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["worker"]
                .as_str()
                .is_some_and(|w| w.starts_with("local-"))),
        "{last}"
    );
}

/// Appends a line per partition to a file: how many times it ran, in all
/// processes.
struct Counted(PathBuf);
impl Transformer for Counted {
    type Input = Array1<f64>;
    type Output = Array1<f64>;
    fn transform(
        &self,
        b: &Batch<'_, Array1<f64>>,
    ) -> Result<Vec<SampleResult<Array1<f64>>>, BoxError> {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.0)?;
        // One write: appends of several processes do not interleave.
        f.write_all(format!("{}\n", b.len()).as_bytes())?;
        Ok(b.iter().map(|x| Ok(x * 2.0)).collect())
    }
}

/// A program of two computes run with `--force`: the workers of the second
/// read the first from the checkpoints the driver wrote, rather than
/// computing it all again (with `force` applied again).
#[test]
fn workers_replay_an_earlier_compute_from_the_checkpoints_even_with_force() {
    const TEST: &str = "workers_replay_an_earlier_compute_from_the_checkpoints_even_with_force";
    let dir = run_dir("replay");
    let calls = dir.join("calls");
    if !is_worker() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
    }
    let ex = silent(workers(2, TEST, false));
    let mut p = Pipeline::new()
        .then(Step::new(Counted(calls.clone())).name("counted"))
        .then(Step::fit(Mean).name("center"))
        .checkpoint(in_folder(&dir).force(true));
    let first = p.fit_transform(samples(100)).npartitions(4).compute(&ex);
    let second = p.transform(samples(40)).npartitions(2).compute(&ex);
    if is_worker() {
        return;
    }
    first.unwrap();
    assert_eq!(second.unwrap().len(), 40);
    // Each sample through `counted` once per compute (`force`): 100, then
    // 40; none in the second compute's workers' replay of the first.
    let counted: usize = std::fs::read_to_string(&calls)
        .unwrap()
        .lines()
        .map(|l| l.parse::<usize>().unwrap())
        .sum();
    assert_eq!(counted, 140);
    let _ = std::fs::remove_dir_all(&dir);
}
