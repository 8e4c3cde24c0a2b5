//! [`Sge`]: workers as Grid Engine jobs, one kind per queue spec.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bob_pipelines_executor::distributed::{
    InterruptGuard, JobState, Launcher, WorkerEnv, WorkerKind, on_interrupt, worker_command,
};
use bob_pipelines_sample::BoxError;

use crate::output::{self, QstatJob};
use crate::spec::QueueSpecs;
use crate::{Error, bobrc};

/// A job we submitted and have not seen end.
#[derive(Debug, Default)]
struct Tracked {
    /// How it ended, once known (asked of `qacct` once).
    ended: Option<String>,
    /// When it was submitted.
    since: Option<Instant>,
    /// Why it waits, once asked of `qstat -j` (it has waited `report_after`).
    why: Option<String>,
}

/// The run's jobs as the Ctrl-C/SIGTERM cleanup sees them, from another
/// thread: submitting holds the lock, so a job is either seen by the
/// cleanup or never submitted.
#[derive(Debug, Default)]
struct Submitted {
    /// Job numbers (an array job's one number covers its tasks).
    numbers: Vec<String>,
    /// The process is leaving on a signal: submit nothing more.
    interrupted: bool,
}

impl Submitted {
    fn delete_all(&mut self) {
        self.interrupted = true;
        let numbers = std::mem::take(&mut self.numbers);
        Sge::qdel(&numbers.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

/// Starts workers as SGE jobs: one kind of worker per queue spec, each job
/// a script with `#$` lines (as bob's and dask-jobqueue's), running this
/// program again with the scheduler's address in its environment.
///
/// One `qstat -u '*' -xml` per poll gives every job's state. Jobs in an
/// error state (`Eqw`) are reported with SGE's reason and deleted; jobs that
/// leave the queue unasked are looked up in `qacct` (exit status 137 or 138:
/// killed by a limit or by `qdel`). [`shutdown`](Launcher::shutdown)
/// deletes every job of the run that is still there.
#[derive(Debug)]
pub struct Sge {
    specs: QueueSpecs,
    kinds: Vec<WorkerKind>,
    project: Option<String>,
    log_dir: PathBuf,
    job_name: String,
    program: Option<PathBuf>,
    args: Option<Vec<OsString>>,
    prologue: Vec<String>,
    jobs: BTreeMap<String, Tracked>,
    /// When `qstat` last failed, and why (said once per failure streak).
    qstat_failing: Option<String>,
    /// Check each job at submit time (`qsub -w e`): a request no queue can
    /// ever satisfy is refused then, in SGE's words.
    validate: bool,
    /// How long a job waits before its reason is asked and reported.
    report_after: Duration,
    /// What Ctrl-C or SIGTERM of the driver deletes, and its registration
    /// (from the first job on).
    submitted: Arc<Mutex<Submitted>>,
    on_interrupt: Option<InterruptGuard>,
}

impl Sge {
    /// Workers from `specs`, the SGE project from `~/.config/bobrc.toml`
    /// (`sge.project`, as bob's `bob config set sge.project NAME` writes),
    /// logs in `./logs` (bob's), at least one `default` worker (bob's
    /// `min_jobs = 1`), and at most each spec's `max_jobs`.
    ///
    /// # Errors
    /// When the bobrc file exists but cannot be read or parsed.
    pub fn new(specs: QueueSpecs) -> Result<Self, Error> {
        let project = bobrc::Rc::load()?.get("sge.project");
        Ok(Self::with_project(specs, project))
    }

    /// As [`new`](Self::new), with the project given (`None`: no `-P`).
    pub fn with_project(specs: QueueSpecs, project: Option<String>) -> Self {
        let fallback = specs.max_jobs();
        let kinds = specs
            .iter()
            .map(|(name, s)| {
                let label = if name == s.queue {
                    name.to_owned()
                } else {
                    format!("{name} ({})", s.queue)
                };
                let mut k = WorkerKind::new(&label, s.max_jobs.unwrap_or(fallback), s.threads);
                k.resources.clone_from(&s.resources);
                k
            })
            .collect::<Vec<_>>();
        let mut sge = Sge {
            specs,
            kinds,
            project: project.filter(|p| !p.trim().is_empty()),
            log_dir: PathBuf::from("logs"),
            job_name: "bob-pipelines".to_owned(),
            program: None,
            args: None,
            prologue: Vec::new(),
            jobs: BTreeMap::new(),
            qstat_failing: None,
            validate: true,
            report_after: Duration::from_secs(60),
            submitted: Arc::default(),
            on_interrupt: None,
        };
        sge.kinds[0].min = 1;
        sge
    }

    /// Keeps at least `n` workers of spec `spec` (0 to release them all when idle).
    ///
    /// # Errors
    /// [`Error::Spec`] for a spec that does not exist.
    pub fn min_jobs(mut self, spec: &str, n: usize) -> Result<Self, Error> {
        let i = self.spec_index(spec)?;
        self.kinds[i].min = n;
        Ok(self)
    }

    /// At most `n` workers of spec `spec` at once.
    ///
    /// # Errors
    /// [`Error::Spec`] for a spec that does not exist.
    pub fn max_jobs(mut self, spec: &str, n: usize) -> Result<Self, Error> {
        let i = self.spec_index(spec)?;
        self.kinds[i].max = n;
        Ok(self)
    }

    fn spec_index(&self, spec: &str) -> Result<usize, Error> {
        self.specs
            .iter()
            .position(|(n, _)| n == spec)
            .ok_or_else(|| Error::Spec {
                spec: spec.to_owned(),
                reason: format!(
                    "no such spec; the specs are {}",
                    self.specs
                        .iter()
                        .map(|(n, _)| n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    /// The SGE project (`-P`), instead of bobrc's.
    #[must_use]
    pub fn project(mut self, project: &str) -> Self {
        self.project = Some(project.to_owned());
        self
    }

    /// Whether `qsub` checks each job against the queues at submit time
    /// (`-w e`, the default): a request no queue can ever satisfy (a
    /// resource beyond every host's, an `h_rt` above the queue's limit) is
    /// refused at once instead of waiting for ever. Turn it off for a site
    /// whose `qsub` is slow to verify.
    #[must_use]
    pub fn validate(mut self, on: bool) -> Self {
        self.validate = on;
        self
    }

    /// After how long a waiting job's reason (SGE's scheduling info) is
    /// asked and shown in the run's progress and report (default 60 s).
    #[must_use]
    pub fn report_pending_after(mut self, after: Duration) -> Self {
        self.report_after = after;
        self
    }

    /// Where jobs write their output (`-o`, `-e`; created if missing). It
    /// must be on a file system the execution hosts see.
    #[must_use]
    pub fn log_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.log_dir = dir.into();
        self
    }

    /// The folder the job logs go to.
    pub fn logs(&self) -> &Path {
        &self.log_dir
    }

    /// The job name prefix (`-N`; the spec's name is appended).
    #[must_use]
    pub fn job_name(mut self, name: &str) -> Self {
        name.clone_into(&mut self.job_name);
        self
    }

    /// Runs another program as the workers (it must build the same pipeline).
    #[must_use]
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = Some(program.into());
        self
    }

    /// Starts workers with these arguments instead of the driver's own.
    #[must_use]
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// A shell line run in each job before the worker starts (bob's
    /// `job_script_prologue`: `module load cuda`, `export X=1`).
    #[must_use]
    pub fn prologue(mut self, line: &str) -> Self {
        self.prologue.push(line.to_owned());
        self
    }

    /// Passes the driver's value of the variable `name` to the workers.
    #[must_use]
    pub fn forward_env(self, name: &str) -> Self {
        match std::env::var(name) {
            Ok(v) => self.prologue(&format!("export {name}={}", quote(&v))),
            Err(_) => self,
        }
    }

    /// The queue specs.
    pub fn specs(&self) -> &QueueSpecs {
        &self.specs
    }

    /// The job script for `n` workers of spec number `kind`, with `env` in
    /// the workers' environment (an array job when `n > 1`).
    ///
    /// # Errors
    /// When the program's path or an argument is not UTF-8.
    pub fn job_script(
        &self,
        kind: usize,
        n: usize,
        env: &[(String, String)],
    ) -> Result<String, Error> {
        let (name, spec) = self.specs.iter().nth(kind).ok_or_else(|| Error::Spec {
            spec: kind.to_string(),
            reason: "no spec with this number".to_owned(),
        })?;
        let (program, args) = worker_command(self.program.as_deref(), self.args.as_deref())
            .map_err(|e| Error::Io {
                what: "finding this program, to start it as the workers".to_owned(),
                source: e,
            })?;
        let text = |s: &std::ffi::OsStr| {
            s.to_str().map(quote).ok_or_else(|| Error::Spec {
                spec: name.to_owned(),
                reason: format!("{s:?} is not UTF-8 and cannot go into a job script"),
            })
        };
        let mut command = vec![text(program.as_os_str())?];
        for a in &args {
            command.push(text(a)?);
        }
        let log = self.log_dir.display().to_string();
        let mut s = String::from("#!/usr/bin/env bash\n");
        let mut line = |l: String| {
            s.push_str("#$ ");
            s.push_str(&l);
            s.push('\n');
        };
        line(format!("-N {}", job_name(&self.job_name, name)));
        line(format!("-q {}", spec.queue));
        if let Some(p) = &self.project {
            line(format!("-P {p}"));
        }
        if let Some(l) = spec.resource_list() {
            line(format!("-l {l}"));
        }
        line(format!("-e {log}/"));
        line(format!("-o {log}/"));
        line("-cwd".to_owned());
        line("-j y".to_owned());
        for extra in &spec.job_extra {
            line(extra.trim().to_owned());
        }
        if n > 1 {
            line(format!("-t 1-{n}"));
        }
        s.push_str("set -e\n");
        for l in &self.prologue {
            s.push_str(l);
            s.push('\n');
        }
        let k = &self.kinds[kind];
        let kind_env = WorkerEnv::worker_vars("", k.threads, &k.resources);
        for (k, v) in env.iter().chain(&kind_env) {
            if k != WorkerEnv::JOB_ID {
                s.push_str(&format!("export {k}={}\n", quote(v)));
            }
        }
        // The worker's name is its job id, known only in the job.
        let id = WorkerEnv::JOB_ID;
        s.push_str(&format!(
            "if [ \"${{SGE_TASK_ID:-undefined}}\" = undefined ]; then export {id}=\"$JOB_ID\"; \
             else export {id}=\"$JOB_ID.$SGE_TASK_ID\"; fi\n"
        ));
        s.push_str("exec ");
        s.push_str(&command.join(" "));
        s.push('\n');
        Ok(s)
    }

    /// `qstat -u '*' -xml`, parsed.
    fn qstat(&mut self) -> Result<Vec<QstatJob>, String> {
        let out = run(Command::new("qstat").args(["-u", "*", "-xml"]), None)
            .map_err(|e| format!("cannot run qstat: {e}"))?;
        if !out.status.success() {
            return Err(format!("qstat failed: {}", said(&out)));
        }
        output::parse_qstat_xml(&String::from_utf8_lossy(&out.stdout))
    }

    /// How a job that left the queue ended, from `qacct`.
    fn accounting(job: &str) -> String {
        let mut cmd = Command::new("qacct");
        match output::split_job_id(job) {
            Some((n, Some(t))) => cmd.args(["-j", &n.to_string(), "-t", &t.to_string()]),
            _ => cmd.args(["-j", job]),
        };
        // Asked once: the scheduler waits meanwhile, and a cluster that
        // buffers accounting (`accounting_flush_time`) has no record yet.
        run(&mut cmd, None)
            .ok()
            .and_then(|out| output::parse_qacct(&String::from_utf8_lossy(&out.stdout)))
            .map_or_else(
                || "left the queue; qacct has no record of it (yet)".to_owned(),
                |a| a.describe(),
            )
    }

    /// Why a job sits in an error state, from `qstat -j`.
    fn error_reason(job: &str) -> String {
        let number = job.split('.').next().unwrap_or(job);
        match run(Command::new("qstat").args(["-j", number]), None) {
            Ok(out) => {
                let reasons = output::error_reasons(&String::from_utf8_lossy(&out.stdout));
                if reasons.is_empty() {
                    "SGE gives no reason (see `qstat -j`)".to_owned()
                } else {
                    reasons.join("; ")
                }
            }
            Err(e) => format!("qstat -j failed: {e}"),
        }
    }

    /// Why no queue can run `script`, from `qsub -w v`: the lines about
    /// what hosts offer, without those about queues the job did not ask for.
    fn verify(script: &str) -> Option<String> {
        let out = run(
            Command::new("qsub").args(["-w", "v"]),
            Some(script.as_bytes()),
        )
        .ok()?;
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = text
            .lines()
            .map(|l| l.trim_start_matches("Unable to run job:").trim())
            .filter(|l| {
                l.contains("cannot run") && !l.contains("not contained in its hard queue list")
            })
            // "Job 440 (-l gpu=3) cannot run at host …": from the request on.
            .map(|l| l.find('(').map_or(l, |i| &l[i..]))
            .collect();
        (!lines.is_empty()).then(|| lines.join("; "))
    }

    /// Why a job waits, from the `scheduling info` of `qstat -j`.
    fn why_waiting(job: &str) -> String {
        let number = job.split('.').next().unwrap_or(job);
        match run(Command::new("qstat").args(["-j", number]), None) {
            Ok(out) => output::scheduling_info(&String::from_utf8_lossy(&out.stdout))
                .unwrap_or_else(|| {
                    "SGE gives no reason (is the scheduler's schedd_job_info on?)".to_owned()
                }),
            Err(e) => format!("qstat -j failed: {e}"),
        }
    }

    /// Our jobs that `qstat` still lists, and whether each is pending
    /// (`None` when `qstat` fails).
    fn still_listed(&mut self) -> Option<Vec<(String, bool)>> {
        let listed = self.qstat().ok()?;
        Some(
            self.jobs
                .iter()
                .filter(|(_, t)| t.ended.is_none())
                .filter_map(|(id, _)| entry(&listed, id).map(|j| (id.clone(), j.pending())))
                .collect(),
        )
    }

    fn qdel(jobs: &[&str]) {
        if jobs.is_empty() {
            return;
        }
        // Deleting a job that is gone says so and fails: nothing to do then.
        let _ = run(Command::new("qdel").args(jobs), None);
    }
}

impl Launcher for Sge {
    fn name(&self) -> String {
        "SGE".to_owned()
    }

    fn kinds(&self) -> &[WorkerKind] {
        &self.kinds
    }

    fn launch(
        &mut self,
        kind: usize,
        n: usize,
        env: &[(String, String)],
    ) -> Result<Vec<String>, BoxError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        std::fs::create_dir_all(&self.log_dir).map_err(|e| {
            format!(
                "cannot create the job log folder {}: {e}",
                self.log_dir.display()
            )
        })?;
        let script = self.job_script(kind, n, env)?;
        if self.on_interrupt.is_none() {
            let submitted = Arc::clone(&self.submitted);
            match on_interrupt("deleting the SGE jobs of the run", move || {
                lock(&submitted).delete_all();
            }) {
                Ok(guard) => self.on_interrupt = Some(guard),
                Err(e) => eprintln!(
                    "bob-pipelines: {e}; Ctrl-C will leave this run's SGE jobs in the queue"
                ),
            }
        }
        let mut submitted = lock(&self.submitted);
        if submitted.interrupted {
            return Err("the driver is leaving on a signal".into());
        }
        let qsub = |validate: bool| {
            let mut qsub = Command::new("qsub");
            qsub.arg("-terse");
            if validate {
                qsub.args(["-w", "e"]);
            }
            run(&mut qsub, Some(script.as_bytes())).map_err(|e| {
                format!("cannot run qsub (is Grid Engine's client installed and on PATH?): {e}")
            })
        };
        let mut out = qsub(self.validate)?;
        if !out.status.success() {
            let (name, queue) = self
                .specs
                .iter()
                .nth(kind)
                .map_or(("?", "?"), |(n, s)| (n, s.queue.as_str()));
            let no_queue = said(&out).contains("no suitable queues");
            let detail = if no_queue {
                Self::verify(&script)
            } else {
                None
            };
            // A load value a host has not reported lately (`mem_free` on a
            // busy host) reads as an unknown resource to `-w e`, and may be
            // back by the time `-w v` looks: not a request that can never
            // run. Submit it unchecked; if it waits, the scheduler says why.
            let only_unreported = no_queue
                && detail
                    .as_deref()
                    .is_none_or(|d| d.split("; ").all(|l| l.contains("unknown resource")));
            if only_unreported {
                out = qsub(false)?;
            }
            if !out.status.success() {
                let why = match detail {
                    Some(d) if !only_unreported => format!("{}: {d}", said(&out)),
                    _ => said(&out),
                };
                return Err(format!(
                    "qsub refused the job of spec `{name}` for queue `{queue}`: {why}"
                )
                .into());
            }
        }
        let ids = output::parse_terse(&String::from_utf8_lossy(&out.stdout))?;
        for id in &ids {
            self.jobs.insert(
                id.clone(),
                Tracked {
                    since: Some(Instant::now()),
                    ..Tracked::default()
                },
            );
            let number = id.split('.').next().unwrap_or(id);
            if !submitted.numbers.iter().any(|n| n == number) {
                submitted.numbers.push(number.to_owned());
            }
        }
        Ok(ids)
    }

    fn cancel(&mut self, job: &str) {
        if let Some(t) = self.jobs.remove(job) {
            if t.ended.is_none() {
                Self::qdel(&[job]);
            }
        }
    }

    fn poll(&mut self) -> Vec<(String, JobState)> {
        let listed = match self.qstat() {
            Ok(l) => {
                self.qstat_failing = None;
                Some(l)
            }
            Err(e) => {
                if self.qstat_failing.as_deref() != Some(e.as_str()) {
                    eprintln!("bob-pipelines: {e}; job states are unknown until it answers");
                    self.qstat_failing = Some(e);
                }
                None
            }
        };
        let mut states = Vec::with_capacity(self.jobs.len());
        let mut stuck = Vec::new();
        for (id, t) in &mut self.jobs {
            if let Some(how) = &t.ended {
                states.push((id.clone(), JobState::Ended(how.clone())));
                continue;
            }
            let Some(listed) = &listed else {
                states.push((id.clone(), JobState::Pending));
                continue;
            };
            let state = match entry(listed, id) {
                Some(j) if j.in_error() => {
                    let how = format!(
                        "stuck in SGE's error state `{}` ({}); deleted",
                        j.state,
                        Self::error_reason(id)
                    );
                    stuck.push(id.clone());
                    t.ended = Some(how.clone());
                    JobState::Ended(how)
                }
                Some(j) if j.pending() => {
                    let waited = t.since.map_or(Duration::ZERO, |s| s.elapsed());
                    if waited < self.report_after {
                        JobState::Pending
                    } else {
                        let why = t.why.get_or_insert_with(|| Self::why_waiting(id));
                        JobState::Waiting {
                            waited,
                            why: why.clone(),
                        }
                    }
                }
                Some(_) => JobState::Running,
                None => {
                    let how = Self::accounting(id);
                    t.ended = Some(how.clone());
                    JobState::Ended(how)
                }
            };
            states.push((id.clone(), state));
        }
        Self::qdel(&stuck.iter().map(String::as_str).collect::<Vec<_>>());
        states
    }

    fn shutdown(&mut self) {
        if self.jobs.is_empty() {
            return;
        }
        // Workers leave on the scheduler's word: give running ones a moment
        // to end cleanly, delete pending ones at once, then delete the rest
        // and wait until the queue no longer lists them.
        let t0 = Instant::now();
        let mut deleted_pending = false;
        let mut deleted_all = false;
        while let Some(left) = self.still_listed() {
            if left.is_empty() || t0.elapsed() > Duration::from_secs(30) {
                break;
            }
            let grace_over = t0.elapsed() > Duration::from_secs(3);
            if (grace_over && !deleted_all) || !deleted_pending {
                let doomed: Vec<&str> = left
                    .iter()
                    .filter(|(_, pending)| grace_over || *pending)
                    .map(|(id, _)| id.as_str())
                    .collect();
                Self::qdel(&doomed);
                deleted_pending = true;
                deleted_all = grace_over;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        self.jobs.clear();
        lock(&self.submitted).numbers.clear();
        self.on_interrupt = None;
    }
}

impl Drop for Sge {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn lock(submitted: &Mutex<Submitted>) -> std::sync::MutexGuard<'_, Submitted> {
    submitted.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The entry of `qstat` for job id `id` (`12`, or an array task `12.3`).
fn entry<'a>(listed: &'a [QstatJob], id: &str) -> Option<&'a QstatJob> {
    let (number, task) = output::split_job_id(id)?;
    listed.iter().find(|j| j.number == number && j.covers(task))
}

/// The job name for spec `spec`: SGE refuses `/ : @ \ * ?` and names that
/// start with a digit.
fn job_name(prefix: &str, spec: &str) -> String {
    let mut name: String = format!("{prefix}-{spec}")
        .chars()
        .map(|c| if "/:@\\*? \t".contains(c) { '_' } else { c })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, 'j');
    }
    name
}

/// `s` as one shell word.
pub(crate) fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Runs a command, with `input` on its standard input.
fn run(cmd: &mut Command, input: Option<&[u8]>) -> std::io::Result<Output> {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(bytes)?;
    }
    child.wait_with_output()
}

/// What a failed command said, on one line.
fn said(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    let text: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "Exiting.")
        .collect();
    format!("{} ({})", text.join(" "), out.status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    #[test]
    fn job_scripts_are_written_as_bob_writes_them() {
        let sge = Sge::with_project(spec::queue_default(), Some("testproject".into()))
            .log_dir("/shared/run/logs")
            .program("/opt/my program")
            .args(["--out", "it's here"])
            .prologue("module load cuda");
        let env = vec![("BOB_PIPELINES_SCHEDULER".to_owned(), "vm:4567".to_owned())];
        let s = sge.job_script(0, 1, &env).unwrap();
        let directives: Vec<&str> = s.lines().filter(|l| l.starts_with("#$")).collect();
        assert_eq!(
            directives,
            [
                "#$ -N bob-pipelines-default",
                "#$ -q q_1day",
                "#$ -P testproject",
                "#$ -l mem_free=8G,q_1day=TRUE",
                "#$ -e /shared/run/logs/",
                "#$ -o /shared/run/logs/",
                "#$ -cwd",
                "#$ -j y",
            ]
        );
        assert!(s.starts_with("#!/usr/bin/env bash\n"));
        assert!(s.contains("\nmodule load cuda\n"));
        assert!(s.contains("\nexport BOB_PIPELINES_SCHEDULER=vm:4567\n"));
        assert!(s.contains("\nexport BOB_PIPELINES_WORKER_RESOURCES=default\n"));
        assert!(
            s.contains("\nexec '/opt/my program' --out 'it'\\''s here'\n"),
            "{s}"
        );

        // A burst of one kind is one array job; extras come verbatim.
        let mth = Sge::with_project(spec::queue_mth(), None)
            .program("/bin/w")
            .args(["x"]);
        let s = mth.job_script(0, 3, &[]).unwrap();
        assert!(s.contains("\n#$ -pe pe_mth 2\n#$ -t 1-3\n"), "{s}");
        assert!(!s.contains("-P "));
        assert!(s.contains("BOB_PIPELINES_WORKER_THREADS=2"));
    }

    #[test]
    fn kinds_follow_the_specs() {
        let sge = Sge::with_project(spec::queue_gpu(), None);
        let k = sge.kinds();
        assert_eq!(k[0].name, "default (q_short_gpu)");
        assert_eq!((k[0].min, k[0].max), (1, 45));
        // A spec without max_jobs gets the largest of its specs (bob's get_max_jobs).
        let gpu = k.iter().find(|k| k.name == "q_gpu").unwrap();
        assert_eq!(
            (gpu.max, gpu.resources.as_slice()),
            (48, &["q_gpu".to_owned()][..])
        );
        assert!(
            Sge::with_project(spec::queue_gpu(), None)
                .min_jobs("nope", 1)
                .is_err()
        );
    }

    #[test]
    fn job_names_and_words_are_safe_for_sge_and_the_shell() {
        assert_eq!(job_name("run 1", "a/b"), "run_1-a_b");
        assert_eq!(job_name("1x", "d"), "j1x-d");
        assert_eq!(quote("plain-word_1.2"), "plain-word_1.2");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b$c"), "'a b$c'");
    }
}
