//! [`Sge`]: workers as Grid Engine jobs, one kind per queue spec.

use std::process::Command;

use bob_pipelines_executor::distributed::{JobState, Launcher, WorkerEnv, WorkerKind};
use bob_pipelines_grid::{JobScript, JobSettings, Jobs, Seen, run, said};
use bob_pipelines_sample::BoxError;

use crate::output::{self, QstatJob};
use crate::spec::QueueSpecs;
use crate::{Error, bobrc};

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
    settings: JobSettings,
    /// The run's jobs: when each was submitted, why it waits, how it
    /// ended, and what Ctrl-C deletes.
    jobs: Jobs,
    /// Check each job at submit time (`qsub -w e`): a request no queue can
    /// ever satisfy is refused then, in SGE's words.
    validate: bool,
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
        let kinds = specs.kinds();
        Sge {
            specs,
            kinds,
            project: project.filter(|p| !p.trim().is_empty()),
            settings: JobSettings::default(),
            jobs: Jobs::new("SGE", |id| id.split('.').next().unwrap_or(id), Self::qdel),
            validate: true,
        }
    }

    bob_pipelines_grid::launcher_builders!("SGE", "-N");

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
        let (name, spec) = self.specs.nth(kind)?;
        let command = self.settings.command(name)?;
        let log = self.settings.log_dir.display().to_string();
        let mut directives = vec![
            format!("-N {}", self.settings.job_name(name)),
            format!("-q {}", spec.queue),
        ];
        if let Some(p) = &self.project {
            directives.push(format!("-P {p}"));
        }
        if let Some(l) = spec.resource_list() {
            directives.push(format!("-l {l}"));
        }
        directives.extend([
            format!("-e {log}/"),
            format!("-o {log}/"),
            "-cwd".to_owned(),
            "-j y".to_owned(),
        ]);
        directives.extend(spec.job_extra.iter().map(|l| l.trim().to_owned()));
        if n > 1 {
            directives.push(format!("-t 1-{n}"));
        }
        // The worker's name is its job id, known only in the job.
        let id = WorkerEnv::JOB_ID;
        Ok(JobScript {
            prefix: "#$ ",
            directives,
            prologue: &self.settings.prologue,
            env,
            kind: &self.kinds[kind],
            job_id: format!(
                "if [ \"${{SGE_TASK_ID:-undefined}}\" = undefined ]; then export {id}=\"$JOB_ID\"; \
                 else export {id}=\"$JOB_ID.$SGE_TASK_ID\"; fi"
            ),
            command,
        }
        .render())
    }

    /// `qstat -u '*' -xml`, parsed.
    fn qstat() -> Result<Vec<QstatJob>, String> {
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

    /// Those of `ids` that `qstat` still lists, and whether each is pending
    /// (`None` when `qstat` fails).
    fn still_listed(ids: &[&str]) -> Option<Vec<(String, bool)>> {
        let listed = Self::qstat().ok()?;
        Some(
            ids.iter()
                .filter_map(|id| entry(&listed, id).map(|j| ((*id).to_owned(), j.pending())))
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
        let script = self.job_script(kind, n, env)?;
        let (name, spec) = self.specs.nth(kind)?;
        let queue = spec.queue.as_str();
        let validate = self.validate;
        self.jobs
            .submit(&self.settings.log_dir, || {
                let qsub =
                    |validate: bool| {
                        let mut qsub = Command::new("qsub");
                        qsub.arg("-terse");
                        if validate {
                            qsub.args(["-w", "e"]);
                        }
                        run(&mut qsub, Some(script.as_bytes())).map_err(|e| {
                    format!("cannot run qsub (is Grid Engine's client installed and on PATH?): {e}")
                })
                    };
                let mut out = qsub(validate)?;
                if !out.status.success() {
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
                        ));
                    }
                }
                output::parse_terse(&String::from_utf8_lossy(&out.stdout))
            })
            .map_err(Into::into)
    }

    fn cancel(&mut self, job: &str) {
        self.jobs.cancel(job);
    }

    fn poll(&mut self) -> Vec<(String, JobState)> {
        let listed = self.jobs.listing(Self::qstat());
        let mut stuck = Vec::new();
        let states = self.jobs.states(
            |id| match listed.as_deref().map(|l| entry(l, id)) {
                None => Seen::Unknown,
                Some(Some(j)) if j.in_error() => {
                    stuck.push(id.to_owned());
                    Seen::Ended(format!(
                        "stuck in SGE's error state `{}` ({}); deleted",
                        j.state,
                        Self::error_reason(id)
                    ))
                }
                Some(Some(j)) if j.pending() => Seen::Pending,
                Some(Some(_)) => Seen::Running,
                Some(None) => Seen::Ended(Self::accounting(id)),
            },
            Self::why_waiting,
        );
        Self::qdel(&stuck.iter().map(String::as_str).collect::<Vec<_>>());
        states
    }

    fn shutdown(&mut self) {
        self.jobs.shutdown(Self::still_listed);
    }
}

impl Drop for Sge {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The entry of `qstat` for job id `id` (`12`, or an array task `12.3`).
fn entry<'a>(listed: &'a [QstatJob], id: &str) -> Option<&'a QstatJob> {
    let (number, task) = output::split_job_id(id)?;
    listed.iter().find(|j| j.number == number && j.covers(task))
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
}
