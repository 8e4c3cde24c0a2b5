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

use bob_pipelines::estimator::{Partitioning, Step};
use bob_pipelines::prelude::{BoxError, Pipeline, RunArgs, TaskGraph};
use bob_pipelines::sge::{QueueSpec, QueueSpecs, Sge, executor};
use clap::Parser;
use ndarray::Array2;

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

    let checkpoints = run.checkpoints(&out_dir);
    let mut pipeline: Pipeline<Array2<f64>, Array2<f64>> = Pipeline::new()
        .then(Step::new(seed::MyTransformer).transform_extra("metadata", "metadata"))
        .then(Step::fit(seed::MyFitTransformer).fit_tag("q_short_gpu"))
        .checkpoint(checkpoints);
    let lazy = pipeline
        .fit_transform(seed::samples(n))
        .partitioning(match run.partitioning() {
            Partitioning::Auto => Partitioning::Count(8),
            asked => asked,
        })
        .report_to(run.report.clone());
    if run.dry_run {
        println!("{}", TaskGraph::new(lazy.info()?).plan());
        return Ok(());
    }
    let outputs = lazy.compute(&executor)?;

    // Only the driver gets here: a worker's process ends in `compute`.
    let wrong = outputs
        .samples()
        .filter(|s| s.data() != Array2::<f64>::zeros((2, 2)))
        .count();
    println!(
        "{} samples in, {} out, {} failed, {wrong} not the expected zero matrix",
        outputs.len(),
        outputs.samples().count(),
        outputs.failed().count()
    );
    println!("{}", outputs.report());
    Ok(())
}
