//! Crash safety, proven by crashing: a child process (this test binary, run
//! again) computes a checkpointed pipeline and is killed with SIGKILL at random
//! moments; reruns resume, and the end result is the uninterrupted run's.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bob_pipelines::checkpoint::{Codec, MsgPack, is_temp, read_npy, walk};
use bob_pipelines::prelude::*;
use ndarray::{Array1, Ix1};
use serde::{Deserialize, Serialize};

use crate::checkpoint::TempDir;

const DIR_ENV: &str = "BOB_PIPELINES_CRASH_DIR";
const SAMPLES: usize = 2000;

/// Slow enough that kills land in the middle: 20 ms per partition.
struct Slow;
impl Transformer for Slow {
    type Input = Array1<f64>;
    type Output = Array1<f64>;
    fn transform(
        &self,
        b: &Batch<'_, Array1<f64>>,
    ) -> Result<Vec<SampleResult<Array1<f64>>>, BoxError> {
        std::thread::sleep(Duration::from_millis(20));
        Ok(b.iter()
            .zip(b.keys())
            .map(|(x, k)| {
                if k.ends_with('7') {
                    Err(Failure::new("ends with 7"))
                } else {
                    Ok(x.mapv(|v| (v * 1.7).sin()))
                }
            })
            .collect())
    }
}

struct Mean;
#[derive(Serialize, Deserialize)]
struct Centered {
    mean: f64,
}
impl Fit for Mean {
    type Input = Array1<f64>;
    type Fitted = Centered;
    fn fit(&self, b: &Batch<'_, Array1<f64>>) -> Result<Centered, BoxError> {
        let (s, n) = b
            .iter()
            .fold((0.0, 0usize), |(s, n), x| (s + x.sum(), n + x.len()));
        Ok(Centered { mean: s / n as f64 })
    }
}
impl Transformer for Centered {
    type Input = Array1<f64>;
    type Output = Array1<f64>;
    fn transform(
        &self,
        b: &Batch<'_, Array1<f64>>,
    ) -> Result<Vec<SampleResult<Array1<f64>>>, BoxError> {
        std::thread::sleep(Duration::from_millis(5));
        Ok(b.iter().map(|x| Ok(x - self.mean)).collect())
    }
}

/// Runs the pipeline in `dir` on `executor` and returns its outputs as bytes
/// (keys, failure reasons and f64 bits), so that "equal" means bit for bit.
fn run(dir: &Path, executor: &str) -> Vec<u8> {
    let mut p = Pipeline::new()
        .then(Step::new(Slow).name("slow"))
        .then(Step::fit(Mean).name("center"))
        .checkpoint(crate::distributed::in_folder(dir));
    let samples = (0..SAMPLES).map(|i| {
        Sample::new(
            format!("s{i}"),
            Array1::from_vec(vec![i as f64, 0.5, -(i as f64)]),
        )
    });
    let out = p
        .fit_transform(samples)
        .partition_size(40)
        .compute(&by_name(executor).unwrap())
        .expect("the run completes");
    let mut bytes = Vec::new();
    for slot in out {
        match slot {
            Ok(s) => {
                bytes.extend_from_slice(s.key().as_bytes());
                s.data()
                    .iter()
                    .for_each(|v| bytes.extend_from_slice(&v.to_bits().to_le_bytes()));
            }
            Err(f) => bytes
                .extend_from_slice(format!("{}!{}!{}", f.key(), f.step(), f.reason()).as_bytes()),
        }
        bytes.push(b'\n');
    }
    bytes
}

/// The child: computes in the folder it is given on a thread pool, and
/// writes its outputs there.
#[test]
#[ignore = "a helper that `killed_runs_resume_to_the_uninterrupted_outputs` runs in child processes"]
fn crash_child() {
    let dir = PathBuf::from(std::env::var(DIR_ENV).expect("set by the crash test"));
    let bytes = run(&dir, "threads-p2");
    std::fs::write(dir.join("result.bin"), bytes).unwrap();
}

/// The same on two worker processes (which run this helper too, up to its
/// compute, and serve there).
#[test]
#[ignore = "a helper that `killed_distributed_runs_resume_to_the_uninterrupted_outputs` runs"]
fn crash_child_p2() {
    let dir = PathBuf::from(std::env::var(DIR_ENV).expect("set by the crash test"));
    let bytes = run(&dir, "local-p2");
    std::fs::write(dir.join("result.bin"), bytes).unwrap();
}

fn child(dir: &Path, helper: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &format!("crash::{helper}"),
            "--ignored",
            "--test-threads",
            "1",
        ])
        .env(DIR_ENV, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the test binary runs again")
}

/// How many files (and temp files) are under `dir`: the run's progress.
fn files_under(dir: &Path) -> usize {
    let mut n = 0;
    let _ = walk(dir, &mut |_| n += 1);
    n
}

#[test]
fn killed_runs_resume_to_the_uninterrupted_outputs() {
    kill_and_resume("crash_child", 20);
}

/// On worker processes, with a fitted step and more partitions (50) than the
/// driver's load window (6): a resume reads partitions straight into the fit.
#[test]
fn killed_distributed_runs_resume_to_the_uninterrupted_outputs() {
    kill_and_resume("crash_child_p2", 10);
}

/// Kills `rounds` children running `helper` at seeded moments, resumes, and
/// checks the end result bit for bit, every file, and that no temp is left.
fn kill_and_resume(helper: &str, rounds: u64) {
    let reference_dir = TempDir::new(&format!("{helper}-ref"));
    let reference = run(&reference_dir.0, "threads-p2");

    let dir = TempDir::new(helper);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut kills = 0;
    for round in 0..rounds {
        // Kills keyed to progress, not to a clock, so that they land inside
        // the run on a fast or a loaded machine alike: most children die after
        // writing a random number of new files (while writing more), every
        // fifth at a random moment of its start-up.
        let mut c = child(&dir.0, helper);
        let t0 = Instant::now();
        if round % 5 == 4 {
            std::thread::sleep(Duration::from_millis(next() % 60));
        } else {
            let target = files_under(&dir.0) + 1 + (next() % 300) as usize;
            while c.try_wait().unwrap().is_none()
                && files_under(&dir.0) < target
                && t0.elapsed() < Duration::from_secs(60)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if c.try_wait().unwrap().is_none() {
            c.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        c.wait().unwrap();
    }
    assert!(
        kills >= rounds * 3 / 4,
        "only {kills} of {rounds} children were still running when killed"
    );
    // A killed driver's workers leave as soon as their connection closes.
    std::thread::sleep(Duration::from_millis(500));

    let mut last = child(&dir.0, helper);
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = last.try_wait().unwrap() {
            break status;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = last.kill();
            panic!("the resumed run did not end within 120 s: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "the final run completes");
    let resumed = std::fs::read(dir.0.join("result.bin")).unwrap();
    assert!(
        resumed == reference,
        "outputs after {kills} kills differ from the uninterrupted run"
    );

    // Nothing partial or corrupt, and no temp file left.
    let mut checked = 0;
    let mut problems = Vec::new();
    walk(&dir.0.join("features"), &mut |p| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if is_temp(&name) || name.ends_with(".corrupt") {
            problems.push(format!("left behind: {}", p.display()));
        } else if name.ends_with(".npy") {
            let bytes = std::fs::read(p).unwrap();
            if let Err(e) = read_npy::<f64, Ix1>(&bytes) {
                problems.push(format!("{}: {e}", p.display()));
            }
            checked += 1;
        }
    })
    .unwrap();
    let model = std::fs::read(dir.0.join("models/center.msgpack")).unwrap();
    let m: Result<Centered, _> = MsgPack.decode(&model);
    assert!(m.is_ok(), "the model file decodes");
    let models_dir: Vec<String> = std::fs::read_dir(dir.0.join("models"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        models_dir.iter().all(|n| !is_temp(n)),
        "no temp file next to the model: {models_dir:?}"
    );
    assert!(problems.is_empty(), "{problems:#?}");
    // Survivors of `slow` (keys not ending in 7) have a file in both steps.
    assert_eq!(checked, 2 * (SAMPLES - SAMPLES / 10));
}
