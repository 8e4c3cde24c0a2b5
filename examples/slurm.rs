//! The seed pipeline on a Slurm cluster: the example of `sge.rs`, on the
//! grid bob's users have now. The fit of `myfittransformer` is tagged
//! `q_short_gpu` (bob's `fit_tag`, unchanged), which the `gpu` spec
//! provides, so it runs on a worker in partition `gpu` with a GPU; the
//! transforms run on workers of the `cpu` partition. The report ends with
//! which job (and partition) ran which step.
//!
//! `cargo run --release --example slurm -- [--out DIR] [--samples N] [--partitions P]
//! [--account NAME] [--specs FILE.toml] [--death-timeout SECONDS] …`
//! (`--help` lists them; the standard options of a run come from `RunArgs`)
//!
//! The account comes from `~/.config/bobrc.toml` (`bob-pipelines config set
//! slurm.account NAME`) unless `--account` is given. The partition specs are
//! those below unless `--specs` names a TOML file of specs (see
//! `PartitionSpecs::from_toml`). Run it where `sbatch` works
//! (`scripts/slurm.sh` sets up a one-host Slurm); the folder DIR (default
//! `./bob_pipelines_slurm`) must be on a file system the nodes see:
//! checkpoints, job logs and the secret file go there.

#[path = "common/seed.rs"]
mod seed;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bob_pipelines::prelude::{BoxError, RunArgs};
use bob_pipelines::slurm::{PartitionSpec, PartitionSpecs, Slurm, executor};
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

/// Two kinds of worker, sized for a small cluster: up to 4 CPU workers in
/// partition `cpu`, one GPU worker in partition `gpu`, which serves steps
/// tagged as bob tags GPU steps.
fn specs() -> Result<PartitionSpecs, bob_pipelines::slurm::Error> {
    PartitionSpecs::new([
        (
            "default",
            PartitionSpec::new(Some("cpu")).memory("1GB")?.max_jobs(4),
        ),
        (
            "gpu",
            PartitionSpec::new(Some("gpu"))
                .memory("1GB")?
                .gres("gpu:1")
                .max_jobs(1)
                .provides("q_short_gpu"),
        ),
    ])
}

/// This example's options, and the standard ones of a run.
#[derive(Parser)]
#[command(name = "slurm")]
struct Options {
    /// How many samples of the seed.
    #[arg(long, default_value_t = 100)]
    samples: usize,
    /// The account (`--account`), instead of bobrc's `slurm.account`.
    #[arg(long, value_name = "NAME")]
    account: Option<String>,
    /// Partition specs in TOML, instead of the example's two.
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
        account,
        specs: spec_file,
        death_timeout: death,
        run,
    } = Options::parse();
    if let Some(name) = &run.executor {
        return Err(format!(
            "this example builds its own Slurm executor from its specs; it takes no executor name (`{name}`)"
        )
        .into());
    }
    let out_dir = run.out_or("bob_pipelines_slurm");
    let specs = match spec_file {
        Some(f) => PartitionSpecs::from_toml(
            &std::fs::read_to_string(&f).map_err(|e| format!("reading {}: {e}", f.display()))?,
        )?,
        None => specs()?,
    };
    let mut slurm = Slurm::new(specs)?
        .log_dir(out_dir.join("logs"))
        .job_name("bob-slurm-example");
    if let Some(a) = &account {
        slurm = slurm.account(a);
    }
    let executor = executor(slurm, "slurm").death_timeout(Duration::from_secs(death));

    seed::run_on_grid(&run, &out_dir, n, &executor)
}
