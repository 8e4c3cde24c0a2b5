//! SGE (Grid Engine) workers for bob-pipelines' distributed scheduler: what
//! bob's `SGEMultipleQueuesCluster` does, with what it lacked.
//!
//! - [`QueueSpec`] / [`QueueSpecs`]: bob's spec fields (`queue`, `memory`,
//!   `io_big`, `resource_spec`, `max_jobs`, `resources`, `job_extra`), its
//!   presets ([`queue_default`], [`queue_gpu`], [`queue_iobig`],
//!   [`queue_mth`]), a builder, and TOML files, all validated.
//! - [`Sge`], a [`Launcher`](bob_pipelines_executor::distributed::Launcher):
//!   job scripts with `#$` lines and bob's `-l` composition, `qsub -terse`,
//!   array jobs for bursts, one `qstat -u '*' -xml` per poll, `Eqw` and
//!   killed jobs reported in plain words, every job deleted when the run ends.
//!   Each spec is a kind of worker: tasks tagged `q_short_gpu` get workers
//!   from the spec that provides it, `max_jobs` is enforced per spec.
//! - [`bobrc::Rc`] (from `bob-pipelines-grid`): `~/.config/bobrc.toml`,
//!   where `sge.project` lives.
//! - [`executor`]: bob's `sge`, `sge-gpu`, `sge-io-big` and `sge-demanding`.
//!
//! ```no_run
//! use bob_pipelines_sge::{QueueSpec, QueueSpecs, Sge, executor};
//!
//! let specs = QueueSpecs::new([
//!     ("default", QueueSpec::new("q_1day").memory("8GB")?.max_jobs(16)),
//!     ("gpu", QueueSpec::new("q_short_gpu").memory("30GB")?.max_jobs(2).provides("q_short_gpu")),
//! ])?;
//! let sge = executor(Sge::new(specs)?.project("biometrics"), "sge");
//! // pipeline.transform(samples).compute(&sge)?
//! # Ok::<(), bob_pipelines_sge::Error>(())
//! ```

mod launcher;
pub mod output;
mod spec;

use bob_pipelines_executor::distributed::Distributed;

pub use bob_pipelines_grid::{Error, Memory, SpecEdit, bobrc, this_host};
pub use launcher::Sge;
pub use spec::{QueueSpec, QueueSpecs, RawSpec, queue_default, queue_gpu, queue_iobig, queue_mth};

/// The names of bob's SGE executors, for messages and `--help`.
pub const NAMES: &[&str] = &[
    "sge (bob's QUEUE_DEFAULT)",
    "sge-gpu (QUEUE_GPU)",
    "sge-io-big (QUEUE_IOBIG, every job kept)",
    "sge-demanding (QUEUE_MTH)",
];

/// bob's SGE executor called `name` (`sge`, `sge-gpu`, `sge-io-big`,
/// `sge-demanding`), or `None` for another name. The project comes from
/// bobrc's `sge.project`; logs and the secret file go to `./logs`.
///
/// # Errors
/// When the bobrc file cannot be read.
pub fn by_name(name: &str) -> Option<Result<Distributed<Sge>, Error>> {
    let specs = match name.trim() {
        "sge" => queue_default(),
        "sge-gpu" => queue_gpu(),
        "sge-io-big" => queue_iobig(),
        "sge-demanding" => queue_mth(),
        _ => return None,
    };
    let iobig = name.trim() == "sge-io-big";
    Some(Sge::new(specs).and_then(|sge| {
        let sge = if iobig {
            // bob's sge_io_big keeps every job it can have, adaptive or not.
            let n = sge.specs().max_jobs();
            sge.min_jobs("default", n)?
        } else {
            sge
        };
        Ok(executor(sge, name.trim()))
    }))
}

/// The distributed executor over `sge`, set for a cluster
/// ([`bob_pipelines_grid::executor`]): the secret file goes to the job log
/// folder, which the execution hosts see.
pub fn executor(sge: Sge, name: &str) -> Distributed<Sge> {
    let logs = sge.logs().to_owned();
    bob_pipelines_grid::executor(sge, name, &logs)
}
