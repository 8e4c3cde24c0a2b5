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
//! - [`bobrc::Rc`]: `~/.config/bobrc.toml`, where `sge.project` lives.
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

pub mod bobrc;
mod launcher;
pub mod output;
mod spec;

use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::time::Duration;

use bob_pipelines_executor::distributed::Distributed;

pub use launcher::Sge;
pub use spec::{
    Memory, QueueSpec, QueueSpecs, SpecEdit, queue_default, queue_gpu, queue_iobig, queue_mth,
};

/// What goes wrong here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A queue spec is invalid.
    #[error("queue spec{}: {reason}", if spec.is_empty() { String::new() } else { format!(" `{spec}`") })]
    Spec {
        /// The spec's name (empty when not known yet).
        spec: String,
        /// What is wrong, and what is expected.
        reason: String,
    },
    /// The settings file is unusable.
    #[error("settings file {}: {reason}", path.display())]
    Rc {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

impl Error {
    /// The same error, naming spec `name` if it names none.
    pub(crate) fn in_spec(self, name: &str) -> Self {
        match self {
            Error::Spec { spec, reason } if spec.is_empty() => Error::Spec {
                spec: name.to_owned(),
                reason,
            },
            e => e,
        }
    }
}

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

/// The distributed executor over `sge`, set for a cluster: it listens on the
/// address this host's name resolves to and tells workers that name; the
/// secret file goes to the job log folder (which the execution hosts see);
/// idle workers are released after 50 s (bob's `wait_count = 5` ×
/// `interval = 10 s`), while scaling is decided every second.
pub fn executor(sge: Sge, name: &str) -> Distributed<Sge> {
    let (ip, host) = this_host();
    let secret_dir = sge.logs().to_owned();
    Distributed::new(sge)
        .named(name)
        .bind(ip, host)
        .secret_dir(secret_dir)
        .interval(Duration::from_secs(1))
        .wait_count(50)
}

/// This host's address as its name resolves (where workers on other hosts
/// reach it), and the name; loopback when the name does not resolve.
pub fn this_host() -> (IpAddr, Option<String>) {
    let name = std::process::Command::new("hostname")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|n| !n.is_empty());
    let Some(name) = name else {
        return (IpAddr::V4(Ipv4Addr::LOCALHOST), None);
    };
    let ip = (name.as_str(), 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.find(|a| a.is_ipv4()).map(|a| a.ip()))
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    (ip, Some(name))
}
