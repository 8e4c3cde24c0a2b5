//! [`Slurm`]: workers as Slurm jobs, one kind per partition spec.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use bob_pipelines_executor::distributed::{JobState, Launcher, WorkerEnv, WorkerKind};
use bob_pipelines_grid::{JobScript, JobSettings, Jobs, Seen, run, said};
use bob_pipelines_sample::BoxError;

use crate::output::{self, Listed, SQUEUE_FORMAT};
use crate::spec::PartitionSpecs;
use crate::{Error, bobrc};

/// Starts workers as Slurm jobs: one kind of worker per partition spec, each
/// job a script with `#SBATCH` lines, running this program again with the
/// scheduler's address in its environment; several workers of one kind
/// are one job array.
///
/// One `squeue` per poll gives every job's state and pending reason. A job
/// that ends is looked up in `scontrol` (while Slurm remembers it) or
/// `sacct`, and its end told in plain words (TIMEOUT, OUT_OF_MEMORY,
/// NODE_FAIL, a signal, an exit status). A job held or waiting for what
/// will never come by itself (`JobHeldUser`, `DependencyNeverSatisfied`, …)
/// is cancelled and reported. [`shutdown`](Launcher::shutdown) cancels
/// every job of the run that is still there.
#[derive(Debug)]
pub struct Slurm {
    specs: PartitionSpecs,
    kinds: Vec<WorkerKind>,
    account: Option<String>,
    settings: JobSettings,
    jobs: Jobs,
}

impl Slurm {
    /// Workers from `specs`, charged to bobrc's `slurm.account` (as bob's
    /// `bob config set slurm.account NAME` writes it) unless a spec has its
    /// own, logs in `./logs`, at least one `default` worker, and at most each
    /// spec's `max_jobs`.
    ///
    /// # Errors
    /// When the bobrc file exists but cannot be read or parsed.
    pub fn new(specs: PartitionSpecs) -> Result<Self, Error> {
        let account = bobrc::Rc::load()?.get("slurm.account");
        Ok(Self::with_account(specs, account))
    }

    /// As [`new`](Self::new), with the account given (`None`: none asked,
    /// the user's default).
    pub fn with_account(specs: PartitionSpecs, account: Option<String>) -> Self {
        let kinds = specs.kinds();
        Slurm {
            specs,
            kinds,
            account: account.filter(|a| !a.trim().is_empty()),
            settings: JobSettings::default(),
            jobs: Jobs::new("Slurm", number, Self::scancel),
        }
    }

    bob_pipelines_grid::launcher_builders!("Slurm", "--job-name");

    /// The account (`--account`), instead of bobrc's.
    #[must_use]
    pub fn account(mut self, account: &str) -> Self {
        self.account = Some(account.to_owned());
        self
    }

    /// The partition specs.
    pub fn specs(&self) -> &PartitionSpecs {
        &self.specs
    }

    /// The job script for `n` workers of spec number `kind`, with `env` in
    /// the workers' environment (a job array when `n > 1`).
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
        let mut directives = vec![format!("--job-name={}", self.settings.job_name(name))];
        directives.extend(spec.options(self.account.as_deref()));
        if n > 1 {
            directives.push(format!("--output={log}/%x.%A_%a.out"));
            directives.push(format!("--array=1-{n}"));
        } else {
            directives.push(format!("--output={log}/%x.%j.out"));
        }
        // The worker's name is its job id, known only in the job: an array's
        // task is `<array>_<task>`, as squeue lists it.
        let id = WorkerEnv::JOB_ID;
        Ok(JobScript {
            prefix: "#SBATCH ",
            directives,
            prologue: &self.settings.prologue,
            env,
            kind: &self.kinds[kind],
            job_id: format!(
                "if [ -n \"${{SLURM_ARRAY_TASK_ID:-}}\" ]; then \
                 export {id}=\"${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}\"; \
                 else export {id}=\"$SLURM_JOB_ID\"; fi"
            ),
            command,
        }
        .render())
    }

    /// Our jobs as `squeue` lists them, by id (array tasks one by one).
    fn squeue() -> Result<HashMap<String, Listed>, String> {
        let out = run(
            Command::new("squeue").args(["--me", "-h", "-r", "-t", "all", "-o", SQUEUE_FORMAT]),
            None,
        )
        .map_err(|e| format!("cannot run squeue: {e}"))?;
        if !out.status.success() {
            return Err(format!("squeue failed: {}", said(&out)));
        }
        Ok(output::parse_squeue(&String::from_utf8_lossy(&out.stdout))?
            .into_iter()
            .map(|l| (l.id.clone(), l))
            .collect())
    }

    /// How job `id` ended: `scontrol` while Slurm remembers it, else
    /// `sacct`.
    fn end_of(id: &str) -> String {
        for _ in 0..3 {
            // Empty output now and then, right after an end: ask again.
            if let Ok(out) = run(
                Command::new("scontrol").args(["-o", "show", "job", id]),
                None,
            ) {
                if let Some(end) = output::parse_scontrol(&String::from_utf8_lossy(&out.stdout)) {
                    return end.describe();
                }
                if !out.status.success() {
                    break; // purged: sacct knows
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let sacct = run(
            Command::new("sacct").args(["-n", "-P", "-j", id, "-o", "JobID,State,ExitCode"]),
            None,
        );
        sacct
            .ok()
            .and_then(|out| output::parse_sacct(&String::from_utf8_lossy(&out.stdout), id))
            .map_or_else(
                || "left the queue; neither scontrol nor sacct knows how it ended".to_owned(),
                |e| e.describe(),
            )
    }

    /// Those of `ids` that `squeue` still lists unended, and whether each is
    /// pending (`None` when `squeue` fails).
    fn still_listed(ids: &[&str]) -> Option<Vec<(String, bool)>> {
        let listed = Self::squeue().ok()?;
        Some(
            ids.iter()
                .filter_map(|id| listed.get(*id))
                .filter(|l| !l.ended())
                .map(|l| (l.id.clone(), l.pending()))
                .collect(),
        )
    }

    fn scancel(jobs: &[&str]) {
        if jobs.is_empty() {
            return;
        }
        // scancel says nothing, and exits 0, for jobs that are gone.
        let _ = run(Command::new("scancel").args(jobs), None);
    }
}

/// A job id's number: `12` of an array's task `12_3`.
fn number(id: &str) -> &str {
    id.split('_').next().unwrap_or(id)
}

impl Launcher for Slurm {
    fn name(&self) -> String {
        "Slurm".to_owned()
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
        let partition = spec.partition.as_deref().map_or_else(
            || "the default partition".to_owned(),
            |p| format!("partition `{p}`"),
        );
        self.jobs
            .submit(&self.settings.log_dir, || {
                let out = run(
                    Command::new("sbatch").arg("--parsable"),
                    Some(script.as_bytes()),
                )
                .map_err(|e| {
                    format!("cannot run sbatch (is Slurm's client installed and on PATH?): {e}")
                })?;
                if !out.status.success() {
                    return Err(format!(
                        "sbatch refused the job of spec `{name}` for {partition}: {}",
                        said(&out)
                    ));
                }
                let id = output::parse_sbatch(&String::from_utf8_lossy(&out.stdout))?;
                Ok(if n > 1 {
                    (1..=n).map(|t| format!("{id}_{t}")).collect()
                } else {
                    vec![id]
                })
            })
            .map_err(Into::into)
    }

    fn cancel(&mut self, job: &str) {
        self.jobs.cancel(job);
    }

    fn poll(&mut self) -> Vec<(String, JobState)> {
        let listed = self.jobs.listing(Self::squeue());
        let mut stuck = Vec::new();
        let states = self.jobs.states(
            |id| match listed.as_ref().map(|l| l.get(id)) {
                None => Seen::Unknown,
                Some(Some(j)) if j.stuck() => {
                    stuck.push(id.to_owned());
                    Seen::Ended(format!(
                        "waiting for what will not come by itself (Slurm's reason: {}); cancelled",
                        j.reason
                    ))
                }
                Some(Some(j)) if j.pending() => Seen::Pending,
                Some(Some(j)) if j.ended() => Seen::Ended(Self::end_of(id)),
                Some(Some(_)) => Seen::Running,
                Some(None) => Seen::Ended(Self::end_of(id)),
            },
            |id| {
                listed
                    .as_ref()
                    .and_then(|l| l.get(id))
                    .map_or_else(|| "Slurm gives no reason".to_owned(), |j| j.reason.clone())
            },
        );
        Self::scancel(&stuck.iter().map(String::as_str).collect::<Vec<_>>());
        states
    }

    fn shutdown(&mut self) {
        self.jobs.shutdown(Self::still_listed);
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{PartitionSpec, partitions_default};

    #[test]
    fn job_scripts_have_sbatch_lines_and_name_the_worker_after_its_job() {
        let slurm =
            Slurm::with_account(partitions_default(Some("cpu")), Some("testproject".into()))
                .log_dir("/shared/run/logs")
                .program("/opt/my program")
                .args(["--out", "it's here"])
                .prologue("module load cuda");
        let env = vec![("BOB_PIPELINES_SCHEDULER".to_owned(), "vm:4567".to_owned())];
        let s = slurm.job_script(0, 1, &env).unwrap();
        let directives: Vec<&str> = s.lines().filter(|l| l.starts_with("#SBATCH")).collect();
        assert_eq!(
            directives,
            [
                "#SBATCH --job-name=bob-pipelines-default",
                "#SBATCH --partition=cpu",
                "#SBATCH --account=testproject",
                "#SBATCH --cpus-per-task=1",
                "#SBATCH --mem=8192M",
                "#SBATCH --output=/shared/run/logs/%x.%j.out",
            ]
        );
        assert!(s.starts_with("#!/usr/bin/env bash\n"));
        assert!(s.contains("\nmodule load cuda\n"));
        assert!(s.contains("\nexport BOB_PIPELINES_SCHEDULER=vm:4567\n"));
        assert!(s.contains(
            "export BOB_PIPELINES_JOB_ID=\"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\""
        ));
        assert!(
            s.contains("\nexec '/opt/my program' --out 'it'\\''s here'\n"),
            "{s}"
        );

        // Several workers of a kind are one array.
        let s = slurm.job_script(1, 3, &[]).unwrap();
        assert!(s.contains("#SBATCH --gres=gpu:1\n"), "{s}");
        assert!(
            s.contains("#SBATCH --output=/shared/run/logs/%x.%A_%a.out\n#SBATCH --array=1-3\n"),
            "{s}"
        );
    }

    #[test]
    fn kinds_follow_the_specs() {
        let specs = crate::PartitionSpecs::new([
            ("default", PartitionSpec::new(Some("cpu"))),
            (
                "gpu",
                PartitionSpec::new(Some("gpu")).provides("gpu").max_jobs(2),
            ),
        ])
        .unwrap();
        let slurm = Slurm::with_account(specs, None);
        let k = slurm.kinds();
        assert_eq!(
            (k[0].name.as_str(), k[0].min, k[0].max),
            ("default (cpu)", 1, 2)
        );
        assert_eq!(
            (k[1].name.as_str(), k[1].resources.as_slice()),
            ("gpu", &["gpu".to_owned()][..])
        );
        assert!(
            Slurm::with_account(partitions_default(None), None)
                .min_jobs("nope", 1)
                .is_err()
        );
        assert_eq!(number("12_3"), "12");
    }
}
