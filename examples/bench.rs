//! Benchmarks. Each prints one JSON object per line with a `"bench"` field.
//!
//! - `cargo run --release --example bench -- pipeline [N]`: the seed pipeline
//!   (`fit_transform`) over N samples (default 1 000 000) of a 2×2 f64 matrix
//!   with one metadata attribute, on `in-memory`, `single-threaded` and
//!   `local-parallel`: samples/s and peak RSS. Each executor runs in a process
//!   of its own (this program, re-executed), so each peak RSS is its own.
//!   Twice: `"input":"lazy"` generates the samples as the run pulls them (as a
//!   lazy database gives them; generation is timed, and it is sequential), and
//!   `"input":"prebuilt"` times only the run over samples built beforehand.
//! - `cargo run --release --example bench -- cpu`: a CPU-bound two-step
//!   pipeline (200 floating-point operations per sample and step) over 200 000
//!   prebuilt samples on `single-threaded` and `local-parallel`: how the thread
//!   pool scales when the work is computation rather than allocation.
//! - `cargo run --release --example bench -- checkpoint [N]`: N (default
//!   100 000) samples of 128-d f32 through a one-step checkpointed pipeline on
//!   `local-parallel`, under `./target/bench-checkpoint` (the project's disk):
//!   `cold` (compute and write every file), `warm` (every file on disk: read
//!   back, nothing computed), and `raw_floor` (the same number of files of the
//!   same size written by temp file + rename on as many threads, no pipeline).
//! - `cargo run --release --example bench -- overhead`: the thread pool's cost
//!   per empty task for 10 000, 100 000 and 1 000 000 independent tasks, with
//!   rayon's `scope.spawn` on as many threads measured in the same run.
//! - `cargo run --release --example bench -- verify [N]`: `checkpoint verify`
//!   and `checkpoint stats` (the `bob-pipelines` command's library calls) on
//!   a features folder of N (default 1 000 000) small `.npy` files in two
//!   steps of the uniform hashed layout, under `./target/bench-verify`
//!   (written once, kept for the next runs).
//! - `cargo run --release --example bench -- sge [N]` (only where Grid Engine
//!   runs, e.g. after `scripts/gridengine.sh`): the time from `compute()` to
//!   the first finished task on a fresh SGE worker job (`first_task_s`), then
//!   the seed pipeline over N (default 100 000) prebuilt samples on 4 SGE
//!   workers (`q_1day`, kept for the run) against `local-parallel`, three
//!   pairs of processes alternating, the median pair's ratio. Job logs go to
//!   `./target/bench-sge`.
//! - `cargo run --release --example bench -- slurm [N]` (only where Slurm
//!   runs, e.g. after `scripts/slurm.sh`): the same on Slurm — `sbatch` to
//!   the first finished task on a fresh worker job, median of 3 — then the
//!   seed over N prebuilt samples on 4 Slurm workers (partition `cpu`)
//!   against `local-p4`. Job logs go to `./target/bench-slurm`.
//! - `cargo run --release --example bench -- experiment`: the experiment
//!   example's pipeline (20 ms of preprocessing per image, 400 images) on
//!   `local-p2`, checkpointed into a fresh folder: fit, enroll and probe as
//!   one graph, then as three computes, each in a process of its own; the
//!   one-graph time against its ideal (the steps' total time / 2).
//! - `cargo run --release --example bench -- codec [N]`: one partition of N
//!   (default 16 384, the seed's at a million samples) seed samples on the
//!   wire between processes: nanoseconds per sample to build it (what a
//!   worker does for each sample it loads), to encode it and to decode it
//!   (the driver decodes every output it gets, a fit every input it
//!   fetches), best of 20 rounds each: after the first, a round reuses the
//!   memory the round before freed, so first touches of fresh memory are
//!   left out.

#[path = "common/experiment.rs"]
mod experiment;
#[path = "common/seed.rs"]
mod seed;

use std::num::NonZeroUsize;
use std::process::Command;
use std::time::Instant;

use bob_pipelines::checkpoint::{HashFn, Layout, Writer, write_npy};
use bob_pipelines::estimator::Partitioning;
use bob_pipelines::executor::distributed::Launcher;
use bob_pipelines::executor::distributed::{Distributed, LocalProcesses, is_worker};
use bob_pipelines::executor::{Silent, ThreadPool, by_name};
use bob_pipelines::prelude::*;
use bob_pipelines::sge::{QueueSpec, QueueSpecs, Sge};
use bob_pipelines::slurm::{PartitionSpec, PartitionSpecs, Slurm};
use ndarray::Array1;

const PIPELINE_EXECUTORS: &[&str] = &["in-memory", "single-threaded", "threads"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map(String::as_str).unwrap_or("pipeline");
    let n = |i: usize, default: usize| {
        args.get(i)
            .map_or(default, |s| s.parse().expect("N must be a number"))
    };
    match which {
        "pipeline" => {
            for input in ["lazy", "prebuilt"] {
                let mut rates = Vec::new();
                for name in PIPELINE_EXECUTORS {
                    rates.push(median_pipeline(name, n(1, 1_000_000), input));
                }
                println!(
                    "{{\"bench\":\"speedup\",\"input\":\"{input}\",\"threads_over_single_threaded\":{:.2}}}",
                    rates[2] / rates[1]
                );
            }
        }
        "pipeline-one" => pipeline(
            &args[1],
            n(2, 1_000_000),
            args.get(3).is_some_and(|a| a == "prebuilt"),
        ),
        "overhead" => overhead(),
        "distributed" => distributed(n(1, 20_000), n(2, 1_000_000)),
        "cpu" => cpu(),
        "cpu-one" => cpu_one(&args[1]),
        "checkpoint" => checkpoint(n(1, 100_000)),
        "sge" => sge(n(1, 100_000)),
        "verify" => verify(n(1, 1_000_000)),
        "sge-first" => first_task(sge_executor(1), "sge_first"),
        "slurm" => slurm(n(1, 100_000)),
        "slurm-first" => first_task(slurm_executor(1), "slurm_first"),
        "small" => small(),
        "scale" => scale(n(1, 128), n(2, 20_000), args.get(3).map(String::as_str)),
        "driver-bytes" => driver_bytes(n(1, 10_000)),
        "experiment" => experiment_bench(),
        "experiment-one" => experiment_one(&args[1]),
        "codec" => codec(n(1, 16_384)),
        other => {
            eprintln!(
                "unknown benchmark `{other}`; valid: pipeline, cpu, checkpoint, overhead, distributed, codec, sge, slurm, verify, small, scale, driver-bytes, experiment"
            );
            std::process::exit(2);
        }
    }
}

/// This benchmark run once more, in a process of its own, with `args`: the
/// `samples_per_s` of the line it prints, and the line.
fn child(args: &[&str]) -> (f64, String) {
    let out = Command::new(std::env::current_exe().expect("own path"))
        .args(args)
        .output()
        .expect("re-run the benchmark");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (field(&line, "samples_per_s"), line)
}

/// The seed pipeline on `executor` in three processes (this machine's noise
/// is large): prints the median run's line and returns its rate.
fn median_pipeline(executor: &str, n: usize, input: &str) -> f64 {
    let n = n.to_string();
    let mut runs: Vec<(f64, String)> = (0..3)
        .map(|_| child(&["pipeline-one", executor, &n, input]))
        .collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    println!("{}", runs[1].1);
    runs[1].0
}

/// The seed pipeline on `base` and on `other`, in three pairs of processes
/// run one after the other (the second pair in the other order), so that
/// each pair meets the same load of the machine: prints each executor's
/// median run (its runs' median, whichever pairs they were in) and returns
/// the median of the pairs' ratios (`other` over `base`). (Three runs of
/// one executor, then three of the other, put whatever the machine did
/// meanwhile into the ratio.)
fn paired_ratio(base: &str, other: &str, n: usize) -> f64 {
    let n = n.to_string();
    let run = |name: &str| child(&["pipeline-one", name, &n, "prebuilt"]);
    let mut lines = [Vec::new(), Vec::new()];
    let mut ratios = Vec::new();
    for pair in 0..3 {
        let (a, b) = if pair == 1 {
            let b = run(other);
            (run(base), b)
        } else {
            let a = run(base);
            (a, run(other))
        };
        ratios.push(b.0 / a.0);
        lines[0].push(a);
        lines[1].push(b);
    }
    for mut runs in lines {
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        println!("{}", runs[1].1);
    }
    ratios.sort_by(f64::total_cmp);
    ratios[1]
}

/// Samples built before the clock starts, in the driver. A distributed
/// worker (this program, started again) builds the samples it loads, and
/// those it skips on the way to them, as it pulls them: its share of the
/// cost is timed, as a worker's would be.
fn built_first<T: Send + 'static>(
    samples: impl ExactSizeIterator<Item = T> + Send + 'static,
) -> Box<dyn ExactSizeIterator<Item = T> + Send> {
    if is_worker() {
        Box::new(samples)
    } else {
        Box::new(samples.collect::<Vec<_>>().into_iter())
    }
}

fn pipeline(executor: &str, n: usize, prebuilt: bool) {
    let executor: Box<dyn Executor> = if executor == "sge" {
        Box::new(sge_executor(4))
    } else if executor == "slurm" {
        Box::new(slurm_executor(4))
    } else {
        by_name(executor).expect("a valid executor name")
    };
    let mut pipeline = seed::pipeline();
    let (out, secs) = if prebuilt {
        let samples = built_first(seed::samples(n));
        let t0 = Instant::now();
        let out = pipeline.fit_transform(samples).compute(&executor);
        (out, t0.elapsed().as_secs_f64())
    } else {
        let t0 = Instant::now();
        let out = pipeline.fit_transform(seed::samples(n)).compute(&executor);
        (out, t0.elapsed().as_secs_f64())
    };
    let out = out.expect("the seed pipeline runs");
    assert_eq!(out.samples().count(), n);
    if std::env::var_os("BENCH_REPORT").is_some() {
        eprintln!("{secs:.3} s\n{}", out.report());
        if std::env::var_os("BENCH_TASKS").is_some() {
            for t in &out.report().tasks {
                eprintln!(
                    "T {} {} {:.1} {:.1}",
                    t.task, t.worker, t.start_ms, t.end_ms
                );
            }
        }
    }
    println!(
        "{{\"bench\":\"pipeline\",\"executor\":\"{}\",\"input\":\"{}\",\"n\":{n},\"samples_per_s\":{:.0},\"peak_rss_mib\":{:.1}}}",
        executor.name(),
        if prebuilt { "prebuilt" } else { "lazy" },
        n as f64 / secs,
        peak_rss_mib()
    );
}

/// 200 dependent floating-point operations per sample.
struct Heavy;

impl Transformer for Heavy {
    type Input = f64;
    type Output = f64;
    fn transform(&self, b: &Batch<'_, f64>) -> Result<Vec<SampleResult<f64>>, BoxError> {
        Ok(b.iter()
            .map(|x| {
                let mut v = *x;
                for _ in 0..200 {
                    v = (v * 1.000_001).sin() + 1.0;
                }
                Ok(v)
            })
            .collect())
    }
}

fn cpu() {
    // Each executor in a process of its own: `local-p2`'s workers are this
    // program started again, and must reach the same `compute`.
    let rates: Vec<f64> = ["single-threaded", "threads", "local-p2"]
        .iter()
        .map(|name| {
            let (rate, line) = child(&["cpu-one", name]);
            println!("{line}");
            rate
        })
        .collect();
    println!(
        "{{\"bench\":\"speedup\",\"input\":\"cpu\",\"threads_over_single_threaded\":{:.2},\"processes_over_threads\":{:.2}}}",
        rates[1] / rates[0],
        rates[2] / rates[1]
    );
}

/// A small dataset: 200 samples through a step of 20 ms per sample (an
/// image read and a face detector), `single-threaded` and `threads`, with
/// the automatic partitioning and with one partition (what it gave before it
/// never left a small run in one partition).
fn small() {
    let n: u32 = 200;
    let pipeline = Pipeline::new().then(Step::map("detect", |x: &f64| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        *x
    }));
    let mut secs = Vec::new();
    for (partitioning, label) in [
        (Partitioning::Auto, "auto"),
        (Partitioning::Count(1), "one"),
    ] {
        for name in ["single-threaded", "threads"] {
            let executor = by_name(name).expect("a valid executor name");
            let samples: Vec<_> = (0..n)
                .map(|i| Sample::new(i.to_string(), f64::from(i)))
                .collect();
            let t0 = Instant::now();
            let out = pipeline
                .transform(samples)
                .partitioning(partitioning)
                .compute(&executor)
                .expect("runs");
            let s = t0.elapsed().as_secs_f64();
            assert_eq!(out.len(), n as usize);
            println!(
                "{{\"bench\":\"small\",\"partitioning\":\"{label}\",\"executor\":\"{name}\",\"n\":{n},\"seconds\":{s:.2}}}"
            );
            secs.push(s);
        }
    }
    println!(
        "{{\"bench\":\"small_speedup\",\"threads_over_single_threaded_auto\":{:.2},\"threads_over_single_threaded_one_partition\":{:.2}}}",
        secs[0] / secs[1],
        secs[2] / secs[3]
    );
}

fn cpu_one(name: &str) {
    let n: usize = 200_000;
    let executor = by_name(name).expect("a valid executor name");
    let pipeline = Pipeline::new().then(Heavy).then(Heavy);
    let samples = built_first(indexed(n, |i| Sample::new(i.to_string(), i as f64)));
    let t0 = Instant::now();
    let out = pipeline
        .transform(samples)
        .compute(&executor)
        .expect("runs");
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    assert_eq!(out.len(), n);
    println!(
        "{{\"bench\":\"cpu\",\"executor\":\"{}\",\"n\":{n},\"samples_per_s\":{rate:.0}}}",
        executor.name()
    );
}

/// Doubles a feature vector (the work is the I/O around it).
struct Double;

impl Transformer for Double {
    type Input = Array1<f32>;
    type Output = Array1<f32>;
    fn transform(
        &self,
        b: &Batch<'_, Array1<f32>>,
    ) -> Result<Vec<SampleResult<Array1<f32>>>, BoxError> {
        Ok(b.iter().map(|x| Ok(x * 2.0)).collect())
    }
}

fn checkpoint(n: usize) {
    let root = std::path::PathBuf::from("target/bench-checkpoint");
    let _ = std::fs::remove_dir_all(&root);
    let features = root.join("features");
    let executor = by_name("threads").expect("a valid executor name");
    let samples = || {
        (0..n).map(|i| {
            Sample::new(
                format!("subject{:03}/sample{i}", i % 500),
                Array1::from_elem(128, i as f32),
            )
        })
    };
    let pipeline = Pipeline::new()
        .then(Step::new(Double).name("double"))
        .checkpoint(Checkpoints::new(&features).hash(HashFn::Uniform));
    for phase in ["cold", "warm"] {
        settle_disk();
        let t0 = Instant::now();
        let out = pipeline
            .transform(samples())
            .compute(&executor)
            .expect("runs");
        let rate = n as f64 / t0.elapsed().as_secs_f64();
        assert_eq!(out.samples().count(), n);
        if phase == "warm" {
            assert_eq!(
                out.report().from_checkpoints,
                n,
                "the warm run reads everything"
            );
        }
        println!(
            "{{\"bench\":\"checkpoint\",\"phase\":\"{phase}\",\"n\":{n},\"samples_per_s\":{rate:.0}}}"
        );
    }

    // The floor: the same files (same layout, same size) by temp file + rename.
    let layout = Layout::new(root.join("floor"), HashFn::Uniform);
    let mut payload = Vec::new();
    write_npy(&Array1::from_elem(128, 1.0f32), &mut payload);
    let writer = Writer::new();
    let threads = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    settle_disk();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (layout, payload, writer) = (&layout, &payload, &writer);
            s.spawn(move || {
                for i in (t..n).step_by(threads) {
                    let key = format!("subject{:03}/sample{i}", i % 500);
                    let path = layout
                        .feature_path("double", &key, ".npy")
                        .expect("a valid key");
                    writer.write(&path, payload).expect("the floor writes");
                }
            });
        }
    });
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    println!(
        "{{\"bench\":\"checkpoint\",\"phase\":\"raw_floor\",\"n\":{n},\"samples_per_s\":{rate:.0}}}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// Flushes dirty pages first, so that one phase's writes are not paid by the next.
fn settle_disk() {
    let _ = Command::new("sync").status();
}

fn overhead() {
    let threads = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
    let pool = ThreadPool::new(threads).with_progress(std::sync::Arc::new(Silent));
    let rayon = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.get())
        .build()
        .expect("a rayon pool");
    for tasks in [10_000usize, 100_000, 1_000_000] {
        // Best of five: the floor is the overhead; the rest is noise.
        let ours = best_of(5, || {
            pool.run_independent(tasks, |i| {
                std::hint::black_box(i);
                Ok::<(), ()>(())
            })
            .expect("empty tasks cannot fail");
        });
        let theirs = best_of(5, || {
            rayon.scope(|s| {
                for i in 0..tasks {
                    s.spawn(move |_| {
                        std::hint::black_box(i);
                    });
                }
            });
        });
        for (name, secs) in [("pool", ours), ("rayon", theirs)] {
            println!(
                "{{\"bench\":\"overhead\",\"impl\":\"{name}\",\"threads\":{threads},\"tasks\":{tasks},\"ns_per_task\":{:.1}}}",
                secs * 1e9 / tasks as f64
            );
        }
    }
}

/// A number field of a one-line JSON object.
fn field(line: &str, name: &str) -> f64 {
    line.split(&format!("\"{name}\":"))
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn best_of(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// The process's peak resident set size (`VmHWM`), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Passes its sample through: a task that costs nothing but its scheduling.
struct Pass;

impl Transformer for Pass {
    type Input = u32;
    type Output = u32;
    fn transform(&self, b: &Batch<'_, u32>) -> Result<Vec<SampleResult<u32>>, BoxError> {
        Ok(b.iter().map(|x| Ok(*x)).collect())
    }
}

/// The distributed executor: the cost per task with 2 worker processes on
/// trivial one-sample tasks (everything included: a worker loads each
/// partition, transforms it in the same run, encodes and answers, the
/// driver decodes), then the seed pipeline on 2 worker
/// processes (`local-p2`) against the thread pool (`threads`), three pairs
/// of processes alternating (see [`paired_ratio`]).
fn distributed(tasks: usize, n: usize) {
    let two = NonZeroUsize::new(2).expect("2 > 0");
    let executor = Distributed::new(LocalProcesses::new(two, NonZeroUsize::MIN))
        .named("local-p2")
        .with_progress(std::sync::Arc::new(Silent));
    let pipeline = Pipeline::new().then(Step::new(Pass).name("pass"));
    let samples = indexed(tasks, |i| Sample::new(i.to_string(), i as u32));
    let t0 = Instant::now();
    let out = pipeline
        .transform(samples)
        .partition_size(1)
        .compute(&executor)
        .expect("trivial tasks run");
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(out.samples().count(), tasks);
    println!(
        "{{\"bench\":\"distributed\",\"workers\":2,\"tasks\":{tasks},\"us_per_task\":{:.1}}}",
        secs * 1e6 / tasks as f64
    );
    let ratio = paired_ratio("threads", "local-p2", n);
    println!(
        "{{\"bench\":\"distributed_vs_threads\",\"n\":{n},\"processes_over_threads\":{ratio:.2}}}"
    );
}

/// `workers` worker processes on this machine, `tasks` tasks that sleep 20 ms
/// each (one sample per partition): how busy the workers were over the whole
/// compute (their start included), and the driver's CPU time per task (the
/// scheduler, its threads and the wire; the workers' is not counted).
/// `loads` picks one of the two lines: `workers` or `driver`.
fn scale(workers: usize, tasks: usize, loads: Option<&str>) {
    if loads.is_some_and(|l| l != "workers" && l != "driver") {
        eprintln!("scale: the loads line is `workers` or `driver`, not {loads:?}");
        std::process::exit(2);
    }
    for worker_loads in [true, false] {
        let name = if worker_loads { "workers" } else { "driver" };
        if loads.is_none_or(|l| l == name) {
            scale_one(workers, tasks, worker_loads);
        }
    }
}

/// [`scale`] with loads on the workers (each worker makes only the samples
/// of the partitions it loads: the input is `indexed`) or in the driver.
fn scale_one(workers: usize, tasks: usize, worker_loads: bool) {
    const TASK_MS: u64 = 20;
    let executor = Distributed::new(LocalProcesses::new(
        NonZeroUsize::new(workers).expect("at least one worker"),
        NonZeroUsize::MIN,
    ))
    .named("scale")
    .worker_loads(worker_loads)
    .with_progress(std::sync::Arc::new(Silent));
    let pipeline = Pipeline::new().then(Step::map("sleep", |x: &u32| {
        std::thread::sleep(std::time::Duration::from_millis(TASK_MS));
        *x
    }));
    let samples = indexed(tasks, |i| Sample::new(i.to_string(), i as u32));
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let out = pipeline
        .transform(samples)
        .partition_size(1)
        .compute(&executor)
        .expect("the sleeping tasks run");
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    assert_eq!(out.samples().count(), tasks);
    let busy = tasks as f64 * TASK_MS as f64 / 1000.0;
    println!(
        "{{\"bench\":\"scale\",\"workers\":{workers},\"tasks\":{tasks},\"loads\":\"{}\",\"wall_s\":{wall:.2},\"utilisation\":{:.2},\"scheduler_us_per_task\":{:.1}}}",
        if worker_loads { "workers" } else { "driver" },
        busy / (workers as f64 * wall),
        cpu * 1e6 / tasks as f64
    );
}

/// Bytes through the driver's sockets per sample, for a checkpointed run of
/// two steps over delayed samples (16 `f32` each, read when reached) on
/// `local-p2`, the last step checkpointed: what the report counts.
fn driver_bytes(n: usize) {
    let dir = std::path::PathBuf::from("target/bench-driver-bytes");
    let _ = std::fs::remove_dir_all(&dir);
    let executor = Distributed::new(LocalProcesses::new(
        NonZeroUsize::new(2).expect("2 > 0"),
        NonZeroUsize::MIN,
    ))
    .named("local-p2")
    .outputs_from_checkpoints(true)
    .with_progress(std::sync::Arc::new(Silent));
    let pipeline = Pipeline::new()
        .then(Step::new(Double).name("double"))
        .then(Step::new(Double).name("again"))
        .checkpoint(Checkpoints::new(dir.join("features")));
    let samples: Vec<_> = (0..n)
        .map(|i| {
            DelayedSample::new(format!("s{i}"), move || {
                Ok::<_, std::io::Error>(Array1::from_elem(16, i as f32))
            })
        })
        .collect();
    let key_bytes: usize = samples.iter().map(|s| s.key().len()).sum();
    let out = pipeline
        .transform(samples)
        .compute(&executor)
        .expect("the checkpointed run");
    let r = out.report();
    let bytes = r.driver_bytes_in + r.driver_bytes_out;
    println!(
        "{{\"bench\":\"driver_bytes\",\"n\":{n},\"bytes_in\":{},\"bytes_out\":{},\"bytes_per_sample\":{:.1},\"key_bytes_per_sample\":{:.1}}}",
        r.driver_bytes_in,
        r.driver_bytes_out,
        bytes as f64 / n as f64,
        key_bytes as f64 / n as f64
    );
    // The outputs were left in their files: read now, all of them.
    assert_eq!(out.on_disk() > 0, out.samples().count() == n);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The example experiment (400 images, 20 ms of preprocessing each) on
/// `local-p2`, as one graph and as three computes, each in a process of its
/// own: wall times, and the ideal (the steps' total time over 2 workers).
fn experiment_bench() {
    let (one, line) = child(&["experiment-one", "one-graph"]);
    let ideal = field(&line, "steps_s") / 2.0;
    let (separate, _) = child(&["experiment-one", "separate"]);
    println!(
        "{{\"bench\":\"experiment\",\"executor\":\"local-p2\",\"one_graph_s\":{one:.3},\"ideal_s\":{ideal:.3},\"separate_computes_s\":{separate:.3},\"one_graph_over_ideal\":{:.3}}}",
        one / ideal
    );
}

/// One run of the experiment bench, checkpointed into a fresh folder:
/// `one-graph` (fit, enroll and probe in one compute) or `separate` (three
/// computes). Prints its wall time (`samples_per_s` holds it, for
/// [`child`]) and its steps' total time.
fn experiment_one(how: &str) {
    let dir = std::path::PathBuf::from(format!("target/bench-experiment-{how}"));
    if !is_worker() {
        let _ = std::fs::remove_dir_all(dir.join("features"));
        let _ = std::fs::remove_dir_all(dir.join("models"));
    }
    experiment::write_database(&dir.join("db"), experiment::Shape::SMALL).expect("the database");
    let groups = experiment::open(&dir.join("db")).expect("the database");
    let executor = Distributed::new(LocalProcesses::new(
        NonZeroUsize::new(2).expect("2 > 0"),
        NonZeroUsize::MIN,
    ))
    .named("local-p2")
    .dashboard(None)
    .with_progress(std::sync::Arc::new(Silent));
    let mut pipeline = experiment::pipeline(std::time::Duration::from_millis(20))
        .checkpoint(Checkpoints::new(dir.join("features")).model_dir(dir.join("models")));
    let sets = experiment::by_subject(groups.enroll).expect("subjects");
    let t0 = Instant::now();
    let reports = if how == "one-graph" {
        let out = pipeline
            .fit(groups.train)
            .and_transform_sets("enroll", sets)
            .expect("sets")
            .and_transform("probe", groups.probe)
            .compute(&executor)
            .expect("the experiment");
        vec![out.report().clone()]
    } else {
        let fit = pipeline.fit(groups.train).compute(&executor).expect("fit");
        let fit = fit.report().clone();
        let enroll = pipeline
            .transform_sets(sets, &executor)
            .expect("enroll")
            .report()
            .clone();
        let probe = pipeline
            .transform(groups.probe)
            .compute(&executor)
            .expect("probe");
        vec![fit, enroll, probe.report().clone()]
    };
    let secs = t0.elapsed().as_secs_f64();
    let steps: f64 = reports
        .iter()
        .flat_map(|r| &r.steps)
        .map(|s| (s.fit_time + s.transform_time).as_secs_f64())
        .sum();
    println!("{{\"how\":\"{how}\",\"samples_per_s\":{secs:.3},\"steps_s\":{steps:.3}}}");
}

/// This process's CPU time so far, user and system, from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // utime and stime are fields 14 and 15 of stat(5): 11 and 12 here.
    (ticks(11) + ticks(12)) / 100.0
}

/// Up to `workers` SGE workers on `q_1day`, all kept for the run, on
/// loopback (a one-host Grid Engine), logs under `./target/bench-sge`.
fn sge_executor(workers: usize) -> Distributed<Sge> {
    let specs = QueueSpecs::new([(
        "default",
        QueueSpec::new("q_1day")
            .memory("1G")
            .expect("a valid size")
            .max_jobs(workers),
    )])
    .expect("valid specs");
    let logs = std::path::PathBuf::from("target/bench-sge");
    let sge = Sge::new(specs)
        .expect("bobrc readable")
        .min_jobs("default", workers)
        .expect("the spec exists")
        .log_dir(&logs)
        .job_name("bob-bench");
    Distributed::new(sge)
        .named("sge")
        .secret_dir(logs)
        .with_progress(std::sync::Arc::new(Silent))
}

/// Notes when the first task ran by a worker (not a load in the driver) ends.
#[derive(Default)]
struct FirstTask(std::sync::OnceLock<Instant>);
impl bob_pipelines::executor::Progress for FirstTask {
    fn task_finished(&self, graph: &TaskGraph, done: &bob_pipelines::graph::Done) {
        if !matches!(
            graph.task(done.task).kind(),
            bob_pipelines::graph::TaskKind::Load { .. }
        ) {
            let _ = self.0.set(Instant::now());
        }
    }
}

/// SGE: how long from `compute()` until a fresh worker job has finished a
/// task, then the seed pipeline on 4 SGE workers against `local-parallel`.
fn sge(n: usize) {
    let mut firsts: Vec<f64> = (0..3)
        .map(|_| field(&child(&["sge-first"]).1, "first_task_s"))
        .collect();
    firsts.sort_by(f64::total_cmp);
    println!(
        "{{\"bench\":\"sge\",\"first_task_s\":{:.2},\"runs\":{firsts:?}}}",
        firsts[1]
    );
    let ratio = paired_ratio("local-parallel", "sge", n);
    println!(
        "{{\"bench\":\"sge_vs_local_parallel\",\"n\":{n},\"sge_over_local_parallel\":{ratio:.2}}}"
    );
}

/// Slurm workers in partition `cpu`, `workers` of them kept for the run.
fn slurm_executor(workers: usize) -> Distributed<Slurm> {
    let specs = PartitionSpecs::new([(
        "default",
        PartitionSpec::new(Some("cpu"))
            .memory("1G")
            .expect("a valid size")
            .max_jobs(workers),
    )])
    .expect("valid specs");
    let logs = std::path::PathBuf::from("target/bench-slurm");
    let slurm = Slurm::new(specs)
        .expect("bobrc readable")
        .min_jobs("default", workers)
        .expect("the spec exists")
        .log_dir(&logs)
        .job_name("bob-bench");
    Distributed::new(slurm)
        .named("slurm")
        .secret_dir(logs)
        .with_progress(std::sync::Arc::new(Silent))
}

/// Slurm: how long from `compute()` until a fresh worker job has finished a
/// task, then the seed pipeline on 4 Slurm workers against `local-p4`.
fn slurm(n: usize) {
    let mut firsts: Vec<f64> = (0..3)
        .map(|_| field(&child(&["slurm-first"]).1, "first_task_s"))
        .collect();
    firsts.sort_by(f64::total_cmp);
    println!(
        "{{\"bench\":\"slurm\",\"first_task_s\":{:.2},\"runs\":{firsts:?}}}",
        firsts[1]
    );
    let ratio = paired_ratio("local-p4", "slurm", n);
    println!("{{\"bench\":\"slurm_vs_local_p4\",\"n\":{n},\"slurm_over_local_p4\":{ratio:.2}}}");
}

/// One run of a one-task pipeline on a fresh worker job of `executor`;
/// prints the seconds from `compute()` to the end of that task as `bench`.
fn first_task<L: Launcher + 'static>(executor: Distributed<L>, bench: &str) {
    let first = std::sync::Arc::new(FirstTask::default());
    let executor = executor.with_progress(first.clone());
    let pipeline = Pipeline::new().then(Step::new(Pass).name("pass"));
    let t0 = Instant::now();
    let out = pipeline
        .transform((0..10u32).map(|i| Sample::new(i.to_string(), i)))
        .npartitions(1)
        .compute(&executor)
        .expect("one task runs on the cluster");
    assert_eq!(out.samples().count(), 10);
    let secs = first.0.get().expect("a task finished").duration_since(t0);
    println!(
        "{{\"bench\":\"{bench}\",\"first_task_s\":{:.3}}}",
        secs.as_secs_f64()
    );
}

/// `checkpoint verify` and `stats` over `n` files (written once).
fn verify(n: usize) {
    use bob_pipelines::checkpoint::verify;
    let root = std::path::PathBuf::from(format!("target/bench-verify/{n}"));
    let features = root.join("features");
    let done = root.join("complete");
    if !done.exists() {
        let layout = Layout::new(&features, HashFn::Uniform);
        let mut bytes = Vec::new();
        write_npy(&Array1::<f32>::zeros(16), &mut bytes);
        let t0 = Instant::now();
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        std::thread::scope(|s| {
            for t in 0..threads {
                let (layout, bytes) = (&layout, &bytes);
                s.spawn(move || {
                    for i in (t..n).step_by(threads) {
                        let step = if i % 2 == 0 { "extract" } else { "project" };
                        let path = layout
                            .feature_path(step, &format!("subject{i}"), ".npy")
                            .expect("a valid key");
                        if let Err(e) = std::fs::write(&path, bytes) {
                            std::fs::create_dir_all(path.parent().expect("a folder"))
                                .unwrap_or_else(|_| panic!("{e}"));
                            std::fs::write(&path, bytes).expect("room for the bench files");
                        }
                    }
                });
            }
        });
        std::fs::write(&done, b"").expect("the marker");
        eprintln!("wrote {n} files in {:.1?}", t0.elapsed());
    }
    settle_disk();
    let t0 = Instant::now();
    let v = verify::verify(&features).expect("a features folder");
    let verify_s = t0.elapsed().as_secs_f64();
    assert!(v.is_clean() && v.files() == n, "{v}");
    let t0 = Instant::now();
    let s = verify::stats(&features).expect("a features folder");
    let stats_s = t0.elapsed().as_secs_f64();
    assert_eq!(s.steps.iter().map(|s| s.files()).sum::<usize>(), n);
    println!(
        "{{\"bench\":\"checkpoint_verify\",\"files\":{n},\"verify_s\":{verify_s:.2},\"verify_files_per_s\":{:.0},\"stats_s\":{stats_s:.2}}}",
        n as f64 / verify_s
    );
}

/// [`codec`]'s figures: the best of 20 rounds of `f` over a partition of
/// `n` samples, in nanoseconds per sample (what `f` makes is dropped after
/// the clock stops).
fn best_ns<R>(n: usize, mut f: impl FnMut() -> R) -> f64 {
    (0..20)
        .map(|_| {
            let t0 = Instant::now();
            let made = std::hint::black_box(f());
            let ns = t0.elapsed().as_secs_f64() * 1e9 / n as f64;
            drop(made);
            ns
        })
        .fold(f64::INFINITY, f64::min)
}

/// A seed partition of `n` samples encoded for the wire and decoded back.
fn codec(n: usize) {
    use bob_pipelines::checkpoint::Npy;
    use bob_pipelines::graph::{AnyPartition, Slot, data_codec};
    let codec = data_codec::<ndarray::Array2<f64>>(std::sync::Arc::new(Npy));
    let build = best_ns(n, || seed::samples(n).collect::<Vec<_>>());
    let part: AnyPartition = Box::new(seed::samples(n).map(Ok).collect::<Vec<Slot<_>>>());
    let bytes = codec.encode(&part).expect("the seed encodes");
    let encode = best_ns(n, || codec.encode(&part));
    let decode = best_ns(n, || codec.decode(&bytes));
    assert_eq!(
        codec
            .entries(&codec.decode(&bytes).expect("decodes"))
            .expect("a partition")
            .len(),
        n
    );
    println!(
        "{{\"bench\":\"codec\",\"n\":{n},\"bytes_per_sample\":{:.1},\"build_ns_per_sample\":{build:.0},\"encode_ns_per_sample\":{encode:.0},\"decode_ns_per_sample\":{decode:.0}}}",
        bytes.len() as f64 / n as f64
    );
}
