//! The seed pipeline on an SGE cluster, as bob's documentation runs it with
//! `SGEMultipleQueuesCluster`: the fit of `myfittransformer` is tagged
//! `q_short_gpu` (bob's `fit_tag`), so it runs on a worker from the
//! `q_short_gpu` queue; the transforms run on `q_1day` workers. The report
//! ends with which job (and queue) ran which step.
//!
//! `cargo run --release --example sge -- [--out DIR] [--samples N] [--partitions P]
//! [--project NAME] [--specs FILE.toml] [--death-timeout SECONDS] …`
//! (`--help` lists them; the standard options of a run come from `RunArgs`)
//!
//! The project comes from `~/.config/bobrc.toml` (`bob-pipelines config set
//! sge.project NAME`, or bob's `bob config set sge.project NAME`) unless
//! `--project` is given. The queue specs are those below unless `--specs`
//! names a TOML file of specs (see `QueueSpecs::from_toml`). Run it where
//! `qsub` works (`scripts/gridengine.sh` sets up a one-host Grid Engine);
//! the folder DIR (default `./bob_pipelines_sge`) must be on a file system
//! the execution hosts see: checkpoints, job logs and the secret file go there.

#[path = "common/seed.rs"]
mod seed;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bob_pipelines::prelude::{BoxError, RunArgs};
use bob_pipelines::sge::{QueueSpec, QueueSpecs, Sge, executor};
use clap::Parser;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// bob's documented two-queue spec (`Q_1DAY_GPU_SPEC`), sized for a small
/// cluster: up to 4 CPU workers, one GPU worker.
fn specs() -> Result<QueueSpecs, bob_pipelines::sge::Error> {
    QueueSpecs::new([
        (
            "default",
            QueueSpec::new("q_1day")
                .memory("4GB")?
                .io_big(true)
                .max_jobs(4),
        ),
        (
            "q_short_gpu",
            QueueSpec::new("q_short_gpu")
                .memory("4GB")?
                .resource_spec("gpu=1")
                .max_jobs(1)
                .provides("q_short_gpu"),
        ),
    ])
}

/// This example's options, and the standard ones of a run.
#[derive(Parser)]
#[command(name = "sge")]
struct Options {
    /// How many samples of the seed.
    #[arg(long, default_value_t = 100)]
    samples: usize,
    /// The SGE project (`-P`), instead of bobrc's `sge.project`.
    #[arg(long, value_name = "NAME")]
    project: Option<String>,
    /// Queue specs in bob's TOML form, instead of the example's two.
    #[arg(long, value_name = "FILE.toml")]
    specs: Option<PathBuf>,
    /// Seconds a worker waits for a scheduler that is gone.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    death_timeout: u64,
    #[command(flatten)]
    run: RunArgs,
}

fn run() -> Result<(), BoxError> {
    let Options {
        samples: n,
        project,
        specs: spec_file,
        death_timeout: death,
        run,
    } = Options::parse();
    if let Some(name) = &run.executor {
        return Err(format!(
            "this example builds its own SGE executor from its specs; it takes no executor name (`{name}`)"
        )
        .into());
    }
    let out_dir = run.out_or("bob_pipelines_sge");
    let specs = match spec_file {
        Some(f) => QueueSpecs::from_toml(
            &std::fs::read_to_string(&f).map_err(|e| format!("reading {}: {e}", f.display()))?,
        )?,
        None => specs()?,
    };
    let mut sge = Sge::new(specs)?
        .log_dir(out_dir.join("logs"))
        .job_name("bob-sge-example");
    if let Some(p) = &project {
        sge = sge.project(p);
    }
    let executor = executor(sge, "sge").death_timeout(Duration::from_secs(death));

    seed::run_on_grid(&run, &out_dir, n, &executor)
}
