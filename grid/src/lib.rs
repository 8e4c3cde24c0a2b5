//! What bob-pipelines' cluster launchers (SGE, Slurm) share, written once:
//!
//! - [`Specs`]: named specs of kinds of worker, `default` first, from code or
//!   TOML, validated (a [`Spec`] is a queue spec for SGE, a partition spec
//!   for Slurm); [`Memory`] sizes; [`Resources`] as bob writes them.
//! - [`JobScript`]: the job script's skeleton (directives, prologue, the
//!   worker's environment, its job id, the worker command).
//! - [`Jobs`]: the run's jobs as a launcher tracks them — when each was
//!   submitted, why it waits, how it ended, what Ctrl-C or SIGTERM deletes,
//!   and the end of the run (running jobs get a moment, then everything is
//!   deleted and waited for).
//! - [`bobrc::Rc`]: `~/.config/bobrc.toml` (`sge.project`, `slurm.account`).
//! - [`executor`] and [`this_host`]: a distributed executor set for a
//!   cluster.

pub mod bobrc;
mod builders;
mod cmd;
mod jobs;
mod script;
mod spec;

use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bob_pipelines_executor::distributed::{Distributed, Launcher};

pub use cmd::{job_name, quote, run, said};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drain_signal_comes_a_quarter_before_the_limit_within_bounds() {
        let s = Duration::from_secs;
        assert_eq!(drain_lead(s(60)), s(15));
        assert_eq!(drain_lead(s(3600)), s(60));
        assert_eq!(drain_lead(s(30)), s(10));
        assert_eq!(drain_lead(s(12)), s(6));
    }
}
pub use jobs::{Jobs, Seen};
pub use script::{JobScript, JobSettings, worker_words};
pub use spec::{Memory, Resources, Spec, SpecEdit, Specs, check_common, format_time, parse_time};

/// What goes wrong here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A spec (of a queue, of a partition) is invalid.
    #[error("spec{}: {reason}", if spec.is_empty() { String::new() } else { format!(" `{spec}`") })]
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
    #[must_use]
    pub fn in_spec(self, name: &str) -> Self {
        match self {
            Error::Spec { spec, reason } if spec.is_empty() => Error::Spec {
                spec: name.to_owned(),
                reason,
            },
            e => e,
        }
    }
}

/// How long before a job's time limit `limit` the grid signals it to
/// drain (Slurm's `--signal=B:USR1@T`, SGE's `s_rt`): a quarter of the
/// limit, at least 10 s and at most 60 s (Slurm may signal up to a minute
/// early, and checks limits about every 30 s), never more than half of it.
/// The scheduler gives a worker no task it cannot end before the limit
/// anyway; the signal is for what estimates miss.
pub fn drain_lead(limit: Duration) -> Duration {
    (limit / 4)
        .clamp(Duration::from_secs(10), Duration::from_secs(60))
        .min(limit / 2)
}

/// The distributed executor over `launcher`, set for a cluster: it listens
/// on the address this host's name resolves to and tells workers that name;
/// the secret file goes to `logs`, the job log folder (which the execution
/// hosts see); idle workers are released after 50 s (bob's `wait_count = 5`
/// × `interval = 10 s`), while scaling is decided every second.
pub fn executor<L: Launcher>(launcher: L, name: &str, logs: &Path) -> Distributed<L> {
    let (ip, host) = this_host();
    Distributed::new(launcher)
        .named(name)
        .bind(ip, host)
        .secret_dir(logs.to_owned())
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
