//! Slurm workers for bob-pipelines' distributed scheduler: a pipeline's
//! steps routed by resource across a Slurm cluster's partitions, as the SGE
//! launcher routes them across queues.
//!
//! - [`PartitionSpec`] / [`PartitionSpecs`]: what each kind of worker asks
//!   for (partition, CPUs, memory, GRES, time limit, account, QOS, extra
//!   `#SBATCH` lines, `max_jobs`, the resources it provides), from code or
//!   TOML, validated; presets [`partitions_default`] and
//!   [`partitions_gpu`].
//! - [`Slurm`], a [`Launcher`](bob_pipelines_executor::distributed::Launcher):
//!   `sbatch --parsable` with job arrays for several workers of one kind,
//!   one `squeue` per poll for every job of the run, ends in plain words
//!   from `scontrol` or `sacct`, held jobs cancelled and reported, every
//!   job cancelled when the run ends or the driver is interrupted.
//! - [`by_name`]: the executors `slurm` and `slurm-gpu`, with bobrc's
//!   `slurm.account` and `slurm.partition`.
//!
//! ```no_run
//! use bob_pipelines_slurm::{PartitionSpec, PartitionSpecs, Slurm, executor};
//!
//! let specs = PartitionSpecs::new([
//!     ("default", PartitionSpec::new(Some("cpu")).memory("8GB")?.max_jobs(16)),
//!     ("gpu", PartitionSpec::new(Some("gpu")).gres("gpu:1").max_jobs(2).provides("gpu")),
//! ])?;
//! let slurm = executor(Slurm::new(specs)?.account("biometrics"), "slurm");
//! // pipeline.transform(samples).compute(&slurm)?
//! # Ok::<(), bob_pipelines_slurm::Error>(())
//! ```

mod launcher;
pub mod output;
mod spec;

use bob_pipelines_executor::distributed::Distributed;

pub use bob_pipelines_grid::{Error, Memory, SpecEdit, bobrc, format_time, parse_time};
pub use launcher::Slurm;
pub use spec::{
    PartitionSpec, PartitionSpecs, RawPartitionSpec, partitions_default, partitions_gpu,
};

/// The names of the Slurm executors, for messages and `--help`.
pub const NAMES: &[&str] = &[
    "slurm (CPU workers, GPU steps on partition gpu)",
    "slurm-gpu (GPU workers)",
];

/// The Slurm executor called `name` (`slurm`, `slurm-gpu`), or `None` for
/// another name. The account comes from bobrc's `slurm.account`, the
/// partition of untagged (`slurm`) or CPU (`slurm-gpu`) work from
/// `slurm.partition` (else the cluster's default); logs and the secret file
/// go to `./logs`.
///
/// # Errors
/// When the bobrc file cannot be read.
pub fn by_name(name: &str) -> Option<Result<Distributed<Slurm>, Error>> {
    let name = name.trim();
    if !matches!(name, "slurm" | "slurm-gpu") {
        return None;
    }
    Some(bobrc::Rc::load().map(|rc| {
        let partition = rc.get("slurm.partition").filter(|p| !p.trim().is_empty());
        let specs = if name == "slurm" {
            partitions_default(partition.as_deref())
        } else {
            partitions_gpu(partition.as_deref())
        };
        executor(Slurm::with_account(specs, rc.get("slurm.account")), name)
    }))
}

/// The distributed executor over `slurm`, set for a cluster
/// ([`bob_pipelines_grid::executor`]): the secret file goes to the job log
/// folder, which the nodes see.
pub fn executor(slurm: Slurm, name: &str) -> Distributed<Slurm> {
    let logs = slurm.logs().to_owned();
    bob_pipelines_grid::executor(slurm, name, &logs)
}
