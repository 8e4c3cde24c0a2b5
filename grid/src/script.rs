//! The job script every grid's workers run: directives, then the worker.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use bob_pipelines_executor::distributed::{WorkerEnv, WorkerKind, worker_command};

use crate::{Error, quote};

/// The program and arguments that start a worker (this program again,
/// unless another is given), as shell words for the job script of spec
/// `spec`.
///
/// # Errors
/// When this program cannot be found, or its path or an argument is not
/// UTF-8.
pub fn worker_words(
    program: Option<&Path>,
    args: Option<&[OsString]>,
    spec: &str,
) -> Result<Vec<String>, Error> {
    let (program, args) = worker_command(program, args).map_err(|e| Error::Io {
        what: "finding this program, to start it as the workers".to_owned(),
        source: e,
    })?;
    let text = |s: &OsStr| {
        s.to_str().map(quote).ok_or_else(|| Error::Spec {
            spec: spec.to_owned(),
            reason: format!("{s:?} is not UTF-8 and cannot go into a job script"),
        })
    };
    let mut words = vec![text(program.as_os_str())?];
    for a in &args {
        words.push(text(a)?);
    }
    Ok(words)
}

/// What every grid launcher's jobs share: where they log, their name
/// prefix, the program and arguments they start, and the prologue. The
/// builder methods of [`launcher_builders!`](crate::launcher_builders) set
/// them.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// Where jobs write their output (`./logs` by default).
    pub log_dir: PathBuf,
    /// The job name prefix (`bob-pipelines`; the spec's name is appended).
    pub job_name: String,
    /// Another program to start as the workers (`None`: this one).
    pub program: Option<PathBuf>,
    /// Other arguments for the workers (`None`: the driver's own).
    pub args: Option<Vec<OsString>>,
    /// Shell lines run in each job before the worker starts.
    pub prologue: Vec<String>,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            log_dir: PathBuf::from("logs"),
            job_name: "bob-pipelines".to_owned(),
            program: None,
            args: None,
            prologue: Vec::new(),
        }
    }
}

impl JobSettings {
    /// The worker command for spec `spec`'s jobs, as shell words.
    ///
    /// # Errors
    /// As [`worker_words`].
    pub fn command(&self, spec: &str) -> Result<Vec<String>, Error> {
        worker_words(self.program.as_deref(), self.args.as_deref(), spec)
    }

    /// The job name of spec `spec`'s jobs.
    pub fn job_name(&self, spec: &str) -> String {
        crate::job_name(&self.job_name, spec)
    }
}

/// A worker's job script: `#!/usr/bin/env bash`, the grid's directives
/// (`#$ -q …`, `#SBATCH --partition=…`), `set -e`, the prologue, the
/// workers' environment, the line that names the worker after its job id
/// (known only in the job), and `exec` of the worker command.
#[derive(Debug, Clone)]
pub struct JobScript<'a> {
    /// The directive prefix, with its space (`#$ `, `#SBATCH `).
    pub prefix: &'a str,
    /// The directives, without the prefix.
    pub directives: Vec<String>,
    /// Shell lines run first (bob's `job_script_prologue`).
    pub prologue: &'a [String],
    /// The run's environment for its workers.
    pub env: &'a [(String, String)],
    /// The kind of worker the job starts (its threads and resources).
    pub kind: &'a WorkerKind,
    /// A shell line that exports [`WorkerEnv::JOB_ID`] from the grid's own
    /// variables.
    pub job_id: String,
    /// The worker command, as shell words.
    pub command: Vec<String>,
}

impl JobScript<'_> {
    /// The script's text.
    pub fn render(&self) -> String {
        let mut s = String::from("#!/usr/bin/env bash\n");
        for d in &self.directives {
            s.push_str(self.prefix);
            s.push_str(d);
            s.push('\n');
        }
        s.push_str("set -e\n");
        for l in self.prologue {
            s.push_str(l);
            s.push('\n');
        }
        let kind_env = WorkerEnv::worker_vars("", self.kind);
        for (k, v) in self.env.iter().chain(&kind_env) {
            if k != WorkerEnv::JOB_ID {
                s.push_str(&format!("export {k}={}\n", quote(v)));
            }
        }
        s.push_str(&self.job_id);
        s.push('\n');
        s.push_str("exec ");
        s.push_str(&self.command.join(" "));
        s.push('\n');
        s
    }
}
