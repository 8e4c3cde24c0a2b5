//! The standard options of a program that runs a pipeline, for clap: a
//! program gets `[EXECUTOR] --out DIR --dry-run --force --partitions N
//! --partition-size SIZE --retry-failed --report DIR` without writing a
//! parser.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use clap::{Args, FromArgMatches as _};

use crate::estimator::{Checkpoints, Executor, Partitioning};
use crate::{ExecutorError, all_names, by_name, from_env};

/// Where a run goes, where its checkpoints are kept, and how it is cut.
///
/// Alone, [`RunArgs::parse`] reads the command line; in a program with
/// options of its own, flatten it into the program's clap parser
/// (`#[command(flatten)] run: RunArgs`).
///
/// ```no_run
/// use bob_pipelines::RunArgs;
/// use bob_pipelines::prelude::*;
/// # fn pipeline() -> Pipeline<f64, f64> { Pipeline::new() }
/// # fn samples() -> Vec<Sample<f64>> { vec![] }
///
/// fn main() -> Result<(), BoxError> {
///     let run = RunArgs::parse();
///     let executor = run.executor_or("local-parallel")?;
///     let mut pipeline = pipeline().checkpoint(run.checkpoints("results"));
///     let lazy = pipeline
///         .fit_transform(samples())
///         .partitioning(run.partitioning())
///         .report_to(run.report.clone());
///     if run.dry_run {
///         println!("{}", TaskGraph::new(lazy.info()?).plan());
///         return Ok(());
///     }
///     println!("{}", lazy.compute(&executor)?.report());
///     Ok(())
/// }
/// ```
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
// This text is for the API docs, not for the program's `--help`.
#[command(about = None, long_about = None)]
pub struct RunArgs {
    /// Where to run: an executor name (single-threaded, threads,
    /// local-parallel, local-pN, sge, …). Default: $BOB_PIPELINES_EXECUTOR,
    /// else the program's own.
    #[arg(value_name = "EXECUTOR")]
    pub executor: Option<String>,
    /// The output folder: checkpoints in DIR/features, models in DIR/models.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print what the run would compute and what it would read from the
    /// checkpoints, and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Compute everything again, whatever the checkpoints hold.
    #[arg(long)]
    pub force: bool,
    /// Cut the input into about N partitions (default: automatic).
    #[arg(long, value_name = "N", conflicts_with = "partition_size")]
    pub partitions: Option<NonZeroUsize>,
    /// Cut the input into partitions of SIZE samples.
    #[arg(long, value_name = "SIZE")]
    pub partition_size: Option<NonZeroUsize>,
    /// Try again the samples that failed in an earlier run (a failure is
    /// otherwise remembered in the checkpoints).
    #[arg(long)]
    pub retry_failed: bool,
    /// Write the run's report.json and report.html into DIR (default: next
    /// to the checkpoints).
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
}

impl RunArgs {
    /// The options from the command line. `--help` prints them with the
    /// executor names; a wrong option prints why and ends the program.
    pub fn parse() -> Self {
        let name = std::env::args_os()
            .next()
            .as_deref()
            .map(Path::new)
            .and_then(Path::file_name)
            .map_or_else(
                || "program".to_owned(),
                |n| n.to_string_lossy().into_owned(),
            );
        let matches = Self::command(name).get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    /// The options from `args` (the program's name first), for tests and for
    /// programs that assemble their arguments.
    ///
    /// # Errors
    /// clap's error for an unknown or malformed option.
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Self::command("program".to_owned()).try_get_matches_from(args)?;
        Self::from_arg_matches(&matches)
    }

    fn command(name: String) -> clap::Command {
        let after = format!("Executors: {}.", all_names().join(", "));
        Self::augment_args(clap::Command::new(name).after_help(after))
    }

    /// The executor named on the command line, else `$BOB_PIPELINES_EXECUTOR`,
    /// else `default`.
    ///
    /// # Errors
    /// [`ExecutorError`] for an unknown name, listing the known ones.
    pub fn executor_or(&self, default: &str) -> Result<Box<dyn Executor>, ExecutorError> {
        match &self.executor {
            Some(name) => by_name(name),
            None => from_env(default),
        }
    }

    /// The output folder given, else `default`.
    pub fn out_or(&self, default: impl AsRef<Path>) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| default.as_ref().to_path_buf())
    }

    /// Checkpoints under the output folder (`default` unless `--out` was
    /// given): `features/` and `models/`, with `--force` and
    /// `--retry-failed`.
    pub fn checkpoints(&self, default: impl AsRef<Path>) -> Checkpoints {
        let out = self.out_or(default);
        Checkpoints::new(out.join("features"))
            .model_dir(out.join("models"))
            .force(self.force)
            .retry_failed(self.retry_failed)
    }

    /// The partitioning asked for, else [`Partitioning::Auto`].
    pub fn partitioning(&self) -> Partitioning {
        match (self.partitions, self.partition_size) {
            (Some(n), _) => Partitioning::Count(n.get()),
            (None, Some(size)) => Partitioning::Size(size.get()),
            (None, None) => Partitioning::Auto,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<RunArgs, String> {
        RunArgs::try_parse_from(std::iter::once("prog").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_standard_options_become_a_runs_settings() {
        let run = parse(&[
            "local-p2",
            "--out",
            "res",
            "--force",
            "--retry-failed",
            "--partitions",
            "8",
            "--report",
            "rep",
        ])
        .unwrap();
        assert_eq!(run.report.as_deref(), Some(Path::new("rep")));
        assert_eq!(run.executor_or("threads").unwrap().name(), "local-p2");
        assert_eq!(run.out_or("elsewhere"), Path::new("res"));
        assert_eq!(run.partitioning(), Partitioning::Count(8));
        let c = run.checkpoints("elsewhere");
        assert_eq!(c.layout().features_dir(), Path::new("res/features"));
        assert_eq!(c.models_folder(), Some(Path::new("res/models")));
        assert!(c.is_forced() && c.retries_failed());

        let none = parse(&[]).unwrap();
        assert_eq!(none, RunArgs::default());
        assert_eq!(none.out_or("results"), Path::new("results"));
        assert_eq!(none.partitioning(), Partitioning::Auto);
        assert!(!none.checkpoints("r").is_forced());
        assert_eq!(
            parse(&["--partition-size", "100"]).unwrap().partitioning(),
            Partitioning::Size(100)
        );
    }

    #[test]
    fn bad_options_say_what_is_wrong() {
        let e = parse(&["--partitions", "0"]).unwrap_err();
        assert!(e.contains("--partitions") && e.contains('0'), "{e}");
        let e = parse(&["--partitions", "2", "--partition-size", "5"]).unwrap_err();
        assert!(e.contains("cannot be used with"), "{e}");
        let e = parse(&["--froce"]).unwrap_err();
        assert!(e.contains("--froce") && e.contains("--force"), "{e}");
        let e = parse(&["nosuch"])
            .unwrap()
            .executor_or("threads")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nosuch") && e.contains("local-parallel"), "{e}");
    }
}
