//! SGE, on a real Grid Engine (`scripts/gridengine.sh` sets one up; the
//! README's test command runs it when it can). Without one these tests say
//! they are skipped, except under `CI=true`, where that is a failure.
//!
//! Workers are jobs that run this test binary again with the test's name,
//! as in `distributed`: the test's folder reaches them through the job
//! script ([`TEST_DIR_ENV`]). Every test checks that no job of its own is
//! left in `qstat` afterwards.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bob_pipelines::executor::Silent;
use bob_pipelines::executor::distributed::{Distributed, is_worker};
use bob_pipelines::sge::output::{QstatJob, parse_qacct, parse_qstat_xml};
use bob_pipelines::sge::{QueueSpec, QueueSpecs, Sge};

use crate::distributed::{bits, pipeline, reference, samples};

/// The variable that gives an SGE test's workers its folder.
pub(crate) const TEST_DIR_ENV: &str = "BOB_PIPELINES_SGE_TEST_DIR";

/// Whether Grid Engine answers; if not, says why the test is skipped (and
/// fails under CI, where the test command must have started it).
fn grid_engine(test: &str) -> bool {
    let ok = Command::new("qstat")
        .args(["-u", "*", "-xml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    crate::available_or_skip(
        ok,
        &format!("sge::{test}"),
        "Grid Engine is not running here (`qstat` fails); `sudo scripts/gridengine.sh` sets one \
         up, and `scripts/test.sh` runs it when it is root",
    )
}

/// The test's folder: made here in the driver, given to the workers.
fn test_dir(test: &str) -> PathBuf {
    if is_worker() {
        return PathBuf::from(std::env::var_os(TEST_DIR_ENV).expect("the job script sets it"));
    }
    let dir = std::env::temp_dir().join(format!("bp-sge-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A job name unique to this test and process (SGE's `-N`).
fn job_name(test: &str) -> String {
    let short: String = test
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    format!("bpt{}{short}", std::process::id())
}

/// Workers that run `test` from this binary, in `dir`, on loopback.
fn launcher(test: &str, dir: &Path, specs: QueueSpecs, ignored: bool) -> Sge {
    let mut args = vec![
        "--exact".to_owned(),
        format!("sge::{test}"),
        "--nocapture".to_owned(),
    ];
    if ignored {
        args.push("--ignored".to_owned());
    }
    Sge::with_project(specs, Some("testproject".to_owned()))
        .log_dir(dir.join("logs"))
        .job_name(&job_name(test))
        .args(args)
        .prologue(&format!("export {TEST_DIR_ENV}='{}'", dir.display()))
}

/// The distributed executor over `sge`, listening on 127.0.0.1 only.
fn on_loopback(sge: Sge) -> Distributed<Sge> {
    let logs = sge.logs().to_owned();
    Distributed::new(sge)
        .named("sge")
        .bind(std::net::Ipv4Addr::LOCALHOST.into(), None)
        .secret_dir(logs)
        .with_progress(Arc::new(Silent))
}

fn cpu_specs(queue: &str, max: usize) -> QueueSpecs {
    QueueSpecs::new([(
        "default",
        QueueSpec::new(queue).memory("1G").unwrap().max_jobs(max),
    )])
    .unwrap()
}

/// Our jobs in `qstat` (name starting with `prefix`).
fn jobs(prefix: &str) -> Vec<QstatJob> {
    let out = Command::new("qstat")
        .args(["-u", "*", "-xml"])
        .output()
        .unwrap();
    parse_qstat_xml(&String::from_utf8_lossy(&out.stdout))
        .unwrap()
        .into_iter()
        .filter(|j| j.name.starts_with(prefix))
        .collect()
}

/// Fails if a job named `prefix…` is still in `qstat` a few seconds on.
fn assert_no_jobs_left(prefix: &str) {
    let t0 = Instant::now();
    loop {
        let left = jobs(prefix);
        if left.is_empty() {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "jobs of ours left in qstat: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `qacct` for a job id (`12` or `12.3`): parsed, and as printed.
fn qacct(job: &str) -> (bob_pipelines::sge::output::Accounting, String) {
    let mut cmd = Command::new("qacct");
    match job.split_once('.') {
        Some((j, t)) => cmd.args(["-j", j, "-t", t]),
        None => cmd.args(["-j", job]),
    };
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let acct =
        parse_qacct(&text).unwrap_or_else(|| panic!("no qacct record for job {job}: {out:?}"));
    (acct, text)
}

#[test]
fn the_sge_example_fits_on_q_short_gpu_and_transforms_on_q_1day() {
    if is_worker() || !grid_engine("the_sge_example_fits_on_q_short_gpu_and_transforms_on_q_1day") {
        return;
    }
    let dir = test_dir("example");
    // The project comes from bobrc, written by our command as bob's would.
    let rc = dir.join("bobrc.toml");
    let cli = crate::workspace_binary("bin", "bob-pipelines", &[]);
    let status = Command::new(&cli)
        .args(["config", "set", "sge.project", "testproject"])
        .env("BOBRC", &rc)
        .status()
        .unwrap();
    assert!(status.success());
    let example = crate::workspace_binary("example", "sge", &[]);
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

    // "myfittransformer ran on: fit on `12` [q_short_gpu]; 2 transform(s) on `11.1` [default (q_1day)]; …"
    let mut checked = 0;
    for line in text.lines().filter(|l| l.contains(" ran on: ")) {
        for part in line.split(": ").nth(1).unwrap().split("; ") {
            let job = part.split('`').nth(1).unwrap();
            let kind = part.rsplit('[').next().unwrap().trim_end_matches(']');
            let queue = if part.starts_with("fit") {
                assert!(line.starts_with("myfittransformer"), "{line}");
                assert_eq!(kind, "q_short_gpu", "{line}");
                "q_short_gpu"
            } else {
                assert_eq!(kind, "default (q_1day)", "{line}");
                "q_1day"
            };
            let (acct, raw) = qacct(job);
            assert_eq!(acct.queue, queue, "job {job}: {acct:?}");
            assert_eq!(acct.exit_status, 0, "job {job}: {acct:?}");
            assert!(
                raw.lines()
                    .any(|l| l.split_whitespace().eq(["project", "testproject"])),
                "job {job} did not run under bobrc's project: {raw}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "placements checked: {checked}\n{text}");
    assert_no_jobs_left("bob-sge-example");

    // Again: everything is read from the checkpoints; no job is submitted.
    let text = run();
    assert!(text.contains("60 samples read from checkpoints"), "{text}");
    assert!(!text.contains(" ran on: "), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_worker_job_deleted_mid_run_costs_the_run_nothing() {
    const TEST: &str = "a_worker_job_deleted_mid_run_costs_the_run_nothing";
    if !is_worker() && !grid_engine(TEST) {
        return;
    }
    let dir = test_dir("qdel");
    let ex = on_loopback(launcher(TEST, &dir, cpu_specs("q_1day", 2), false));
    let prefix = job_name(TEST);
    let deleter = (!is_worker()).then(|| {
        let prefix = prefix.clone();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut running_since = None;
            while t0.elapsed() < Duration::from_secs(90) {
                if let Some(j) = jobs(&prefix).into_iter().find(|j| j.state == "r") {
                    let since = *running_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_millis(1500) {
                        let id = match &j.tasks {
                            Some(t) => format!("{}.{t}", j.number),
                            None => j.number.to_string(),
                        };
                        let out = Command::new("qdel").arg(&id).output().unwrap();
                        if out.status.success() {
                            return Some(id);
                        }
                        // It ended between qstat and qdel: take the next one.
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
    let deleted = deleter
        .unwrap()
        .join()
        .unwrap()
        .expect("a running worker job was deleted");
    assert_eq!(bits(&out), reference(800, 80));
    let warnings = &out.report().warnings;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&format!("`{deleted}` was lost"))),
        "job {deleted} deleted, yet: {warnings:?}"
    );
    drop(ex);
    assert_no_jobs_left(&prefix);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_job_stuck_in_eqw_is_reported_deleted_and_not_waited_on() {
    const TEST: &str = "a_job_stuck_in_eqw_is_reported_deleted_and_not_waited_on";
    if is_worker() || !grid_engine(TEST) {
        return;
    }
    let dir = test_dir("eqw");
    // An output file in a folder that does not exist: SGE puts the job in Eqw.
    let specs = QueueSpecs::new([(
        "default",
        QueueSpec::new("all.q").job_extra("-o /nonexistent/bob-pipelines/x.out"),
    )])
    .unwrap();
    let ex = on_loopback(launcher(TEST, &dir, specs, false));
    let t0 = Instant::now();
    let err = pipeline(0)
        .fit_transform(samples(20))
        .npartitions(2)
        .compute(&ex)
        .unwrap_err()
        .to_string();
    assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", t0.elapsed());
    eprintln!("the error: {err}");
    assert!(err.contains("Eqw"), "{err}");
    assert!(err.contains("/nonexistent/bob-pipelines/x.out"), "{err}");
    assert!(err.contains("deleted"), "{err}");
    drop(ex);
    assert_no_jobs_left(&job_name(TEST));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_queue_or_project_is_qsubs_error_told_to_the_user() {
    const TEST: &str = "an_unknown_queue_or_project_is_qsubs_error_told_to_the_user";
    if is_worker() || !grid_engine(TEST) {
        return;
    }
    let dir = test_dir("unknown");
    let run = |sge: Sge| {
        pipeline(0)
            .fit_transform(samples(10))
            .compute(&on_loopback(sge))
            .unwrap_err()
            .to_string()
    };
    let err = run(launcher(TEST, &dir, cpu_specs("nosuchqueue", 1), false));
    // bob's `-l …,nosuchqueue=TRUE` is what qsub trips on first.
    assert!(err.contains("Unable to run job"), "{err}");
    assert!(err.contains("\"nosuchqueue\""), "{err}");
    assert!(err.contains("qsub refused"), "{err}");
    let err = run(launcher(TEST, &dir, cpu_specs("all.q", 1), false).project("nosuchproject"));
    assert!(err.contains("\"nosuchproject\" does not exist"), "{err}");
    assert_no_jobs_left(&job_name(TEST));
    let _ = std::fs::remove_dir_all(&dir);
}

const DRIVER_JOB_ENV: &str = "BOB_PIPELINES_SGE_TEST_DRIVER_DIR";

#[test]
#[ignore = "a helper: the driver that `worker_jobs_end_when_their_driver_is_killed` kills"]
fn sge_driver_child() {
    const TEST: &str = "sge_driver_child";
    let dir = match std::env::var_os(DRIVER_JOB_ENV) {
        Some(d) => PathBuf::from(d),
        None => test_dir(TEST),
    };
    let ex = on_loopback(launcher(TEST, &dir, cpu_specs("all.q", 2), true))
        .death_timeout(Duration::from_secs(5))
        .heartbeat(Duration::from_millis(200));
    let _ = pipeline(300)
        .fit_transform(samples(500))
        .npartitions(50)
        .compute(&ex);
}

#[test]
fn worker_jobs_end_when_their_driver_is_killed() {
    if is_worker() || !grid_engine("worker_jobs_end_when_their_driver_is_killed") {
        return;
    }
    let dir = test_dir("driver");
    let mut driver = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sge::sge_driver_child",
            "--ignored",
            "--nocapture",
        ])
        .env(DRIVER_JOB_ENV, &dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The driver's job names carry its pid.
    let prefix = format!("bpt{}", driver.id());
    let t0 = Instant::now();
    while jobs(&prefix).iter().filter(|j| j.state == "r").count() < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the driver's jobs never ran: {:?}",
            jobs(&prefix)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    driver.kill().unwrap();
    driver.wait().unwrap();
    let killed = Instant::now();
    // The death timeout is 5 s; a closed connection is noticed at once, and
    // SGE takes about a second to forget an ended job.
    while !jobs(&prefix).is_empty() {
        assert!(
            killed.elapsed() < Duration::from_secs(12),
            "jobs still in qstat {:?} after their driver was killed: {:?}",
            killed.elapsed(),
            jobs(&prefix)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "worker jobs gone {:?} after the driver was killed",
        killed.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "a helper: the driver that `ctrl_c_or_sigterm_of_the_driver_deletes_every_job_of_the_run` stops"]
fn sge_interrupted_driver_child() {
    const TEST: &str = "sge_interrupted_driver_child";
    let dir = match std::env::var_os(DRIVER_JOB_ENV) {
        Some(d) => PathBuf::from(d),
        None => test_dir(TEST),
    };
    // More jobs than all.q has slots: some run, the rest wait in the queue.
    let ex = on_loopback(launcher(TEST, &dir, cpu_specs("all.q", 6), true));
    let _ = pipeline(2000)
        .fit_transform(samples(500))
        .npartitions(50)
        .compute(&ex);
}

#[test]
fn ctrl_c_or_sigterm_of_the_driver_deletes_every_job_of_the_run() {
    if is_worker() || !grid_engine("ctrl_c_or_sigterm_of_the_driver_deletes_every_job_of_the_run") {
        return;
    }
    for (signal, status) in [("INT", 130), ("TERM", 143)] {
        let dir = test_dir(&format!("interrupt-{signal}"));
        let mut driver = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sge::sge_interrupted_driver_child",
                "--ignored",
                "--nocapture",
            ])
            .env(DRIVER_JOB_ENV, &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = driver.stderr.take().unwrap();
        let said = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        });
        let prefix = format!("bpt{}", driver.id());
        let t0 = Instant::now();
        loop {
            let listed = jobs(&prefix);
            let running = listed.iter().filter(|j| j.state == "r").count();
            if running >= 1 && listed.iter().any(|j| j.pending()) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the driver never had jobs both running and waiting: {listed:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let kill = Command::new("kill")
            .args(["-s", signal, &driver.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let signalled = Instant::now();
        let ended = loop {
            if let Some(ended) = driver.try_wait().unwrap() {
                break ended;
            }
            if signalled.elapsed() > Duration::from_secs(40) {
                let _ = driver.kill();
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
            stderr.contains("deleting the SGE jobs of the run"),
            "SIG{signal}: {stderr}"
        );
        // The driver waited for nothing: the queue forgets deleted jobs
        // within a second or two of `qdel`.
        while !jobs(&prefix).is_empty() {
            assert!(
                signalled.elapsed() < Duration::from_secs(20),
                "SIG{signal}: jobs of the interrupted driver still in qstat: {:?}",
                jobs(&prefix)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "SIG{signal}: driver gone and its jobs deleted {:?} after the signal",
            signalled.elapsed()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Runs the test pipeline on `ex`: it must fail within 20 s, saying each of
/// `parts`.
fn fails_soon_saying(ex: &Distributed<Sge>, parts: &[&str]) {
    let t0 = Instant::now();
    let e = pipeline(0)
        .fit_transform(samples(20))
        .compute(ex)
        .unwrap_err()
        .to_string();
    for part in parts {
        assert!(e.contains(part), "{part} missing in: {e}");
    }
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
}

/// A spec asking q_short_gpu for three GPUs, where the host has two.
fn three_gpus() -> QueueSpecs {
    QueueSpecs::new([(
        "default",
        QueueSpec::new("q_short_gpu")
            .memory("1G")
            .unwrap()
            .resource_spec("gpu=3")
            .max_jobs(1),
    )])
    .unwrap()
}

#[test]
fn a_request_no_host_can_satisfy_is_refused_at_submit_time_in_sges_words() {
    const TEST: &str = "a_request_no_host_can_satisfy_is_refused_at_submit_time_in_sges_words";
    if is_worker() || !grid_engine(TEST) {
        return;
    }
    let dir = test_dir("impossible");
    let ex = on_loopback(launcher(TEST, &dir, three_gpus(), false));
    fails_soon_saying(
        &ex,
        &[
            "refused the job of spec `default`",
            "no suitable queues",
            "(-l gpu=3",
            "offers only hc:gpu=2",
        ],
    );
    assert_no_jobs_left(&job_name(TEST));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_job_that_waits_is_reported_with_sges_reason_and_the_pending_limit_ends_the_run() {
    const TEST: &str = "a_job_that_waits_is_reported_with_sges_reason_and_the_pending_limit_ends";
    if is_worker() || !grid_engine(TEST) {
        return;
    }
    let dir = test_dir("waits");
    // Not checked at submit time: the job waits for ever.
    let sge = launcher(TEST, &dir, three_gpus(), false)
        .validate(false)
        .report_pending_after(Duration::from_secs(1));
    let log = Log::default();
    let ex = on_loopback(sge)
        .pending_limit(Some(Duration::from_secs(4)))
        .with_progress(Arc::new(bob_pipelines::executor::Bars::lines_to(
            Box::new(log.clone()),
            Duration::from_secs(3600),
        )));
    fails_soon_saying(
        &ex,
        &[
            "has waited",
            "longer than the pending limit",
            "(-l gpu=3",
            "offers only hc:gpu=2",
            "Distributed::pending_limit",
        ],
    );
    // Said while it waited, before the run gave up.
    let said = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(
        said.contains("warning: job `") && said.contains("offers only hc:gpu=2"),
        "{said}"
    );
    assert_no_jobs_left(&job_name(TEST));
    let _ = std::fs::remove_dir_all(&dir);
}

/// What progress lines wrote, shared with the test.
#[derive(Clone, Default)]
pub(crate) struct Log(pub(crate) Arc<std::sync::Mutex<Vec<u8>>>);
impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Walltime without lost work: a run three times as long as its jobs' time
/// limit (`h_rt` of 40 s, `s_rt` 10 s before) ends with the same outputs,
/// each job leaving before its limit (handing what it holds to the driver)
/// and replaced in time.
#[test]
fn a_run_of_three_time_limits_ends_with_no_task_lost_to_them() {
    const TEST: &str = "a_run_of_three_time_limits_ends_with_no_task_lost_to_them";
    if !is_worker() && !grid_engine(TEST) {
        return;
    }
    let dir = test_dir("walltime");
    let specs = QueueSpecs::new([(
        "default",
        QueueSpec::new("all.q")
            .memory("1G")
            .unwrap()
            .time("0:40")
            .unwrap()
            .max_jobs(2),
    )])
    .unwrap();
    let ex = on_loopback(launcher(TEST, &dir, specs, false));
    // 240 partitions of 1 s on two workers: two minutes.
    let t0 = Instant::now();
    let out = pipeline(1000)
        .fit_transform(samples(2400))
        .npartitions(240)
        .compute(&ex)
        .unwrap();
    if is_worker() {
        return;
    }
    eprintln!("the run took {:?}", t0.elapsed());
    let r = crate::distributed::outlived_time_limits(&out, 2400, 240);
    drop(ex);
    for w in &r.workers {
        let (acct, raw) = qacct(&w.worker);
        assert_eq!(acct.exit_status, 0, "job {} ended badly: {raw}", w.worker);
    }
    assert_no_jobs_left(&job_name(TEST));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A program of three computes (fit, then two transforms) on one executor
/// submits one wave of jobs: the workers of the first compute serve the
/// next two in the same jobs.
#[test]
fn a_program_of_three_computes_submits_one_wave_of_jobs() {
    const TEST: &str = "a_program_of_three_computes_submits_one_wave_of_jobs";
    if !is_worker() && !grid_engine(TEST) {
        return;
    }
    let dir = test_dir("waves");
    let ex = on_loopback(launcher(TEST, &dir, cpu_specs("q_1day", 2), false));
    let prefix = job_name(TEST);
    let mut p = pipeline(20).checkpoint(
        bob_pipelines::prelude::Checkpoints::new(dir.join("features"))
            .model_dir(dir.join("models")),
    );
    let fit = p.fit(samples(200)).npartitions(10).compute(&ex).unwrap();
    let first = p
        .transform(samples(200))
        .npartitions(10)
        .compute(&ex)
        .unwrap();
    let second = p
        .transform(samples(300))
        .npartitions(10)
        .compute(&ex)
        .unwrap();
    assert_eq!(bits(&first), reference(200, 10));
    let mut alone = pipeline(0);
    let one = bob_pipelines::prelude::SingleThreaded::new();
    alone
        .fit(samples(200))
        .npartitions(10)
        .compute(&one)
        .unwrap();
    let expected = alone
        .transform(samples(300))
        .npartitions(10)
        .compute(&one)
        .unwrap();
    assert_eq!(bits(&second), bits(&expected));
    // `qsub` calls: the job numbers of the workers submitted, over the
    // three computes (an array's tasks share theirs).
    let submitted = |r: &bob_pipelines::estimator::Report| -> Vec<String> {
        r.workers
            .iter()
            .filter(|w| w.states.iter().any(|s| s.state == "submitted"))
            .map(|w| w.worker.split('.').next().unwrap_or_default().to_owned())
            .collect()
    };
    assert!(
        !submitted(fit.report()).is_empty(),
        "{:?}",
        fit.report().workers
    );
    for out in [&first, &second] {
        let r = out.report();
        assert!(submitted(r).is_empty(), "new jobs: {:?}", r.workers);
        assert!(
            r.workers
                .iter()
                .all(|w| w.states[0].state == "kept from the program's last compute"),
            "{:?}",
            r.workers
        );
        // Every fit and transform ran on a kept worker (outputs read from
        // the checkpoints are the driver's loads).
        let kept: Vec<&str> = r.workers.iter().map(|w| w.worker.as_str()).collect();
        let elsewhere: Vec<(&str, &str)> = r
            .tasks
            .iter()
            .filter(|t| t.step.is_some() && !kept.contains(&&*t.worker))
            .map(|t| (&*t.task, &*t.worker))
            .collect();
        assert!(elsewhere.is_empty(), "{kept:?}: {elsewhere:?}");
    }
    drop(ex);
    assert_no_jobs_left(&prefix);
    let _ = std::fs::remove_dir_all(&dir);
}
