//! Slurm, on a real Slurm (`scripts/slurm.sh` sets one up; the README's
//! test command runs it when it can). Without one these tests say they are
//! skipped, except under `CI=true`, where that is a failure.
//!
//! Workers are jobs that run this test binary again with the test's name,
//! as in `sge`: the test's folder reaches them through the job script
//! ([`TEST_DIR_ENV`]). Every test checks that no job of its own is left in
//! `squeue` afterwards.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bob_pipelines::executor::Silent;
use bob_pipelines::executor::distributed::{Distributed, is_worker};
use bob_pipelines::slurm::{PartitionSpec, PartitionSpecs, Slurm};

use crate::distributed::{bits, pipeline, reference, samples};

/// The variable that gives a Slurm test's workers its folder.
const TEST_DIR_ENV: &str = "BOB_PIPELINES_SLURM_TEST_DIR";

/// Whether Slurm answers; if not, says why the test is skipped (and fails
/// under CI, where the test command must have started it).
fn slurm(test: &str) -> bool {
    let ok = Command::new("squeue")
        .args(["-h", "-o", "%i"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    crate::available_or_skip(
        ok,
        &format!("slurm::{test}"),
        "Slurm is not running here (`squeue` fails); `sudo scripts/slurm.sh` sets one up, and \
         `scripts/test.sh` runs it when it is root",
    )
}

/// The test's folder: made here in the driver, given to the workers.
fn test_dir(test: &str) -> PathBuf {
    if is_worker() {
        return PathBuf::from(std::env::var_os(TEST_DIR_ENV).expect("the job script sets it"));
    }
    let dir = std::env::temp_dir().join(format!("bp-slurm-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A job name unique to this test and process.
fn job_name(test: &str) -> String {
    let short: String = test
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    format!("bpt{}{short}", std::process::id())
}

/// Workers that run `test` from this binary, in `dir`.
fn launcher(test: &str, dir: &Path, specs: PartitionSpecs) -> Slurm {
    Slurm::with_account(specs, Some("testproject".to_owned()))
        .log_dir(dir.join("logs"))
        .job_name(&job_name(test))
        .args(["--exact", &format!("slurm::{test}"), "--nocapture"])
        .prologue(&format!("export {TEST_DIR_ENV}='{}'", dir.display()))
}

/// Workers that run the ignored helper `test`.
fn helper_launcher(test: &str, dir: &Path, specs: PartitionSpecs) -> Slurm {
    launcher(test, dir, specs).args([
        "--exact",
        &format!("slurm::{test}"),
        "--nocapture",
        "--ignored",
    ])
}

/// The distributed executor over `slurm`, listening on 127.0.0.1 only.
fn on_loopback(slurm: Slurm) -> Distributed<Slurm> {
    let logs = slurm.logs().to_owned();
    Distributed::new(slurm)
        .named("slurm")
        .bind(std::net::Ipv4Addr::LOCALHOST.into(), None)
        .secret_dir(logs)
        .with_progress(Arc::new(Silent))
}

fn cpu_specs(max: usize) -> PartitionSpecs {
    PartitionSpecs::new([(
        "default",
        PartitionSpec::new(Some("cpu"))
            .memory("1G")
            .unwrap()
            .max_jobs(max),
    )])
    .unwrap()
}

/// Our unended jobs in `squeue` (name starting with `prefix`): id and state.
fn jobs(prefix: &str) -> Vec<(String, String)> {
    let out = Command::new("squeue")
        .args(["-h", "-r", "-o", "%i|%j|%T"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (f.len() == 3 && f[1].starts_with(prefix)).then(|| (f[0].to_owned(), f[2].to_owned()))
        })
        .collect()
}

/// Fails if a job named `prefix…` is still in `squeue` a few seconds on.
fn assert_no_jobs_left(prefix: &str) {
    let t0 = Instant::now();
    loop {
        let left = jobs(prefix);
        if left.is_empty() {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "jobs of ours left in squeue: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A field of `scontrol -o show job ID` (`Partition`, `Account`, `JobState`).
fn scontrol_field(job: &str, field: &str) -> String {
    for _ in 0..20 {
        let out = Command::new("scontrol")
            .args(["-o", "show", "job", job])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(v) = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix(field)?.strip_prefix('='))
        {
            return v.to_owned();
        }
        // Empty output now and then right after a job ends: ask again.
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("scontrol shows no {field} for job {job}");
}

#[test]
fn the_slurm_example_fits_on_gpu_and_transforms_on_cpu() {
    if is_worker() || !slurm("the_slurm_example_fits_on_gpu_and_transforms_on_cpu") {
        return;
    }
    let dir = test_dir("example");
    // The account comes from bobrc, written by our command.
    let rc = dir.join("bobrc.toml");
    let cli = crate::workspace_binary("bin", "bob-pipelines", &[]);
    let status = Command::new(&cli)
        .args(["config", "set", "slurm.account", "testproject"])
        .env("BOBRC", &rc)
        .status()
        .unwrap();
    assert!(status.success());
    let example = crate::workspace_binary("example", "slurm", &[]);
    let run = || {
        let out = Command::new(&example)
            .args([
                "--out",
                dir.join("out").to_str().unwrap(),
                "--samples",
                "60",
            ])
            .args(["--partitions", "6"])
            .current_dir(&dir)
            .env("BOBRC", &rc)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let text = run();
    assert!(
        text.contains("60 samples in, 60 out, 0 failed, 0 not the expected"),
        "{text}"
    );
    // "myfittransformer ran on: fit on `12` [gpu]; 2 transform(s) on `11_1` [default (cpu)]; …"
    let mut checked = 0;
    for line in text.lines().filter(|l| l.contains(" ran on: ")) {
        for part in line.split(": ").nth(1).unwrap().split("; ") {
            let job = part.split('`').nth(1).unwrap();
            let kind = part.rsplit('[').next().unwrap().trim_end_matches(']');
            let partition = if part.starts_with("fit") {
                assert!(line.starts_with("myfittransformer"), "{line}");
                assert_eq!(kind, "gpu", "{line}");
                "gpu"
            } else {
                assert_eq!(kind, "default (cpu)", "{line}");
                "cpu"
            };
            assert_eq!(scontrol_field(job, "Partition"), partition, "job {job}");
            assert_eq!(scontrol_field(job, "Account"), "testproject", "job {job}");
            checked += 1;
        }
    }
    assert!(checked >= 3, "placements checked: {checked}\n{text}");
    assert_no_jobs_left("bob-slurm-example");

    // Again: everything is read from the checkpoints; no job is submitted.
    let text = run();
    assert!(text.contains("60 samples read from checkpoints"), "{text}");
    assert!(!text.contains(" ran on: "), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_worker_job_cancelled_mid_run_costs_the_run_nothing() {
    const TEST: &str = "a_worker_job_cancelled_mid_run_costs_the_run_nothing";
    if !is_worker() && !slurm(TEST) {
        return;
    }
    let dir = test_dir("scancel");
    let ex = on_loopback(launcher(TEST, &dir, cpu_specs(2)));
    let prefix = job_name(TEST);
    let canceller = (!is_worker()).then(|| {
        let prefix = prefix.clone();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut running_since = None;
            while t0.elapsed() < Duration::from_secs(90) {
                if let Some((id, _)) = jobs(&prefix).into_iter().find(|j| j.1 == "RUNNING") {
                    let since = *running_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_millis(1500) {
                        let out = Command::new("scancel").arg(&id).output().unwrap();
                        if out.status.success() {
                            return Some(id);
                        }
                        running_since = None;
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            None
        })
    });
    let out = pipeline(150)
        .fit_transform(samples(800))
        // 80 partitions of 150 ms on two workers: the run is still going when
        // a job has been seen running for 1.5 s, even on a loaded machine.
        .npartitions(80)
        .compute(&ex)
        .unwrap();
    let cancelled = canceller
        .unwrap()
        .join()
        .unwrap()
        .expect("a running worker job was cancelled");
    assert_eq!(bits(&out), reference(800, 80));
    let warnings = &out.report().warnings;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&format!("`{cancelled}` was lost"))),
        "job {cancelled} cancelled, yet: {warnings:?}"
    );
    drop(ex);
    assert_no_jobs_left(&prefix);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs a small pipeline on `slurm` and returns its error, which must come
/// within a minute.
fn refused(slurm: Slurm) -> String {
    refused_by(&on_loopback(slurm))
}

/// Runs a small pipeline on `ex` and returns its error, which must come
/// within a minute.
fn refused_by(ex: &Distributed<Slurm>) -> String {
    let t0 = Instant::now();
    let err = pipeline(0)
        .fit_transform(samples(10))
        .compute(ex)
        .unwrap_err()
        .to_string();
    assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", t0.elapsed());
    err
}

#[test]
fn what_sbatch_refuses_is_told_in_its_words_naming_the_spec() {
    const TEST: &str = "what_sbatch_refuses_is_told_in_its_words_naming_the_spec";
    if is_worker() || !slurm(TEST) {
        return;
    }
    let dir = test_dir("refused");
    let one = |spec: PartitionSpec| PartitionSpecs::new([("default", spec)]).unwrap();
    let err = refused(launcher(
        TEST,
        &dir,
        one(PartitionSpec::new(Some("nosuchpartition"))),
    ));
    assert!(
        err.contains("sbatch refused the job of spec `default` for partition `nosuchpartition`")
            && err.contains("invalid partition specified: nosuchpartition"),
        "{err}"
    );
    let err = refused(
        launcher(TEST, &dir, one(PartitionSpec::new(Some("cpu")))).account("nosuchaccount"),
    );
    assert!(
        err.contains("Invalid account or account/partition combination specified"),
        "{err}"
    );
    // More memory than any node has: refused at once, not left pending.
    let err = refused(launcher(
        TEST,
        &dir,
        one(PartitionSpec::new(Some("cpu")).memory("100G").unwrap()),
    ));
    assert!(
        err.contains("Requested node configuration is not available")
            || err.contains("Memory specification can not be satisfied"),
        "{err}"
    );
    // Three GPUs on a node of two.
    let err = refused(launcher(
        TEST,
        &dir,
        one(PartitionSpec::new(Some("gpu")).gres("gpu:3")),
    ));
    assert!(
        err.contains("spec `default` for partition `gpu`")
            && err.contains("Requested node configuration is not available"),
        "{err}"
    );
    assert_no_jobs_left(&job_name(TEST));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_held_job_is_reported_with_slurms_reason_and_cancelled() {
    const TEST: &str = "a_held_job_is_reported_with_slurms_reason_and_cancelled";
    if is_worker() || !slurm(TEST) {
        return;
    }
    let dir = test_dir("held");
    // `--hold`: the job waits for a release that never comes.
    let specs = PartitionSpecs::new([("default", PartitionSpec::new(Some("cpu")).extra("--hold"))])
        .unwrap();
    let err = refused(launcher(TEST, &dir, specs));
    assert!(
        err.contains("JobHeldUser") && err.contains("cancelled"),
        "{err}"
    );
    assert_no_jobs_left(&job_name(TEST));
    let _ = std::fs::remove_dir_all(&dir);
}

const DRIVER_DIR_ENV: &str = "BOB_PIPELINES_SLURM_TEST_DRIVER_DIR";

/// The helper's folder: the one its parent test gives, else its own.
fn helper_dir(test: &str) -> PathBuf {
    match std::env::var_os(DRIVER_DIR_ENV) {
        Some(d) => PathBuf::from(d),
        None => test_dir(test),
    }
}

/// Starts helper test `helper` as a driver process of its own, with its
/// standard error collected.
fn driver(helper: &str, dir: &Path) -> (std::process::Child, std::thread::JoinHandle<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &format!("slurm::{helper}"),
            "--ignored",
            "--nocapture",
        ])
        .env(DRIVER_DIR_ENV, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let said = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    (child, said)
}

#[test]
#[ignore = "a helper: the driver that `worker_jobs_end_when_their_driver_is_killed` kills"]
fn slurm_driver_child() {
    const TEST: &str = "slurm_driver_child";
    let dir = helper_dir(TEST);
    let ex = on_loopback(helper_launcher(TEST, &dir, cpu_specs(2)))
        .death_timeout(Duration::from_secs(5))
        .heartbeat(Duration::from_millis(200));
    let _ = pipeline(300)
        .fit_transform(samples(500))
        .npartitions(50)
        .compute(&ex);
}

#[test]
fn worker_jobs_end_when_their_driver_is_killed() {
    if is_worker() || !slurm("worker_jobs_end_when_their_driver_is_killed") {
        return;
    }
    let dir = test_dir("driver");
    let (mut child, said) = driver("slurm_driver_child", &dir);
    // The driver's job names carry its pid.
    let prefix = format!("bpt{}", child.id());
    let t0 = Instant::now();
    while jobs(&prefix).iter().filter(|j| j.1 == "RUNNING").count() < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the driver's jobs never ran: {:?}",
            jobs(&prefix)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = said.join();
    let killed = Instant::now();
    // The death timeout is 5 s; a closed connection is noticed at once.
    while !jobs(&prefix).is_empty() {
        assert!(
            killed.elapsed() < Duration::from_secs(12),
            "jobs still in squeue {:?} after their driver was killed: {:?}",
            killed.elapsed(),
            jobs(&prefix)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "a helper: the driver that `ctrl_c_or_sigterm_of_the_driver_cancels_every_job_of_the_run` stops"]
fn slurm_interrupted_driver_child() {
    const TEST: &str = "slurm_interrupted_driver_child";
    let dir = helper_dir(TEST);
    // More jobs than partition cpu has CPUs (8): some run, the rest wait.
    let ex = on_loopback(helper_launcher(TEST, &dir, cpu_specs(10)));
    let _ = pipeline(2000)
        .fit_transform(samples(500))
        .npartitions(50)
        .compute(&ex);
}

#[test]
fn ctrl_c_or_sigterm_of_the_driver_cancels_every_job_of_the_run() {
    if is_worker() || !slurm("ctrl_c_or_sigterm_of_the_driver_cancels_every_job_of_the_run") {
        return;
    }
    for (signal, status) in [("INT", 130), ("TERM", 143)] {
        let dir = test_dir(&format!("interrupt-{signal}"));
        let (mut child, said) = driver("slurm_interrupted_driver_child", &dir);
        let prefix = format!("bpt{}", child.id());
        let t0 = Instant::now();
        loop {
            let listed = jobs(&prefix);
            if listed.iter().any(|j| j.1 == "RUNNING") && listed.iter().any(|j| j.1 == "PENDING") {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the driver never had jobs both running and waiting: {listed:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let kill = Command::new("kill")
            .args(["-s", signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let signalled = Instant::now();
        let ended = loop {
            if let Some(ended) = child.try_wait().unwrap() {
                break ended;
            }
            if signalled.elapsed() > Duration::from_secs(40) {
                let _ = child.kill();
                panic!("SIG{signal}: the driver was still there 40 s after the signal");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr = said.join().unwrap();
        assert_eq!(
            ended.code(),
            Some(status),
            "SIG{signal}: the driver ended with {ended:?}: {stderr}"
        );
        assert!(
            stderr.contains("deleting the Slurm jobs of the run"),
            "SIG{signal}: {stderr}"
        );
        // Cancelled jobs leave squeue's unended list within seconds.
        while !jobs(&prefix).is_empty() {
            assert!(
                signalled.elapsed() < Duration::from_secs(20),
                "SIG{signal}: jobs of the interrupted driver still in squeue: {:?}",
                jobs(&prefix)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_job_that_waits_is_reported_with_slurms_reason_and_the_pending_limit_ends_the_run() {
    const TEST: &str = "a_job_that_waits_is_reported_with_slurms_reason_and_the_pending_limit";
    if is_worker() || !slurm(TEST) {
        return;
    }
    let dir = test_dir("waits");
    // A job that may not start for an hour: it waits, with reason BeginTime.
    let specs = PartitionSpecs::new([(
        "default",
        PartitionSpec::new(Some("cpu")).extra("--begin=now+1hour"),
    )])
    .unwrap();
    let slurm = launcher(TEST, &dir, specs).report_pending_after(Duration::from_secs(1));
    let log = crate::sge::Log::default();
    let ex = on_loopback(slurm)
        .pending_limit(Some(Duration::from_secs(4)))
        .with_progress(Arc::new(bob_pipelines::executor::Bars::lines_to(
            Box::new(log.clone()),
            Duration::from_secs(3600),
        )));
    let err = refused_by(&ex);
    for part in [
        "has waited",
        "longer than the pending limit",
        "BeginTime",
        "Distributed::pending_limit",
    ] {
        assert!(err.contains(part), "{part} missing in: {err}");
    }
    // Said while it waited, before the run gave up.
    let said = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(
        said.contains("warning: job `") && said.contains("BeginTime"),
        "{said}"
    );
    assert_no_jobs_left(&job_name(TEST));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Walltime without lost work: a run three times as long as its jobs' time
/// limit (one minute) ends with the same outputs, each job leaving before
/// its limit (handing what it holds to the driver) and replaced in time.
#[test]
fn a_run_of_three_time_limits_ends_with_no_task_lost_to_them() {
    const TEST: &str = "a_run_of_three_time_limits_ends_with_no_task_lost_to_them";
    if !is_worker() && !slurm(TEST) {
        return;
    }
    let dir = test_dir("walltime");
    let specs = PartitionSpecs::new([(
        "default",
        PartitionSpec::new(Some("cpu"))
            .memory("1G")
            .unwrap()
            .time("1")
            .unwrap()
            .max_jobs(2),
    )])
    .unwrap();
    let ex = on_loopback(launcher(TEST, &dir, specs));
    // 300 partitions of 1 s on two workers: 150 s, two and a half minutes.
    let t0 = Instant::now();
    let out = pipeline(1000)
        .fit_transform(samples(3000))
        .npartitions(300)
        .compute(&ex)
        .unwrap();
    if is_worker() {
        return;
    }
    eprintln!("the run took {:?}", t0.elapsed());
    let r = crate::distributed::outlived_time_limits(&out, 3000, 300);
    for w in &r.workers {
        assert_ne!(
            scontrol_field(&w.worker, "JobState"),
            "TIMEOUT",
            "job {} met its time limit: {w:?}",
            w.worker
        );
    }
    drop(ex);
    assert_no_jobs_left(&job_name(TEST));
    let _ = std::fs::remove_dir_all(&dir);
}
