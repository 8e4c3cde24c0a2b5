//! Executors by name, as bob's `dask.client` entry points.

use std::num::NonZeroUsize;

use bob_pipelines_graph::{Executor, InMemory};

use crate::distributed::{Distributed, LocalProcesses};
use crate::{SingleThreaded, ThreadPool};

/// The environment variable that names the executor.
pub const ENV: &str = "BOB_PIPELINES_EXECUTOR";

/// The executor names, for messages and `--help`.
pub const NAMES: &[&str] = &[
    "single-threaded",
    "in-memory",
    "local-parallel (a worker process per core)",
    "local-pN (N worker processes, e.g. local-p4)",
    "threads (a thread per core, in this process)",
    "threads-pN",
];

/// An executor name that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown executor `{name}`; valid executors: {}", NAMES.join(", "))]
pub struct UnknownExecutor {
    /// The name given.
    pub name: String,
}

/// The executor called `name`, as bob's `dask.client` names:
/// `single-threaded`, `in-memory`; `local-parallel` (a single-threaded
/// worker process per core) and `local-pN` (N of them), which start this
/// program again as workers ([`distributed`](crate::distributed)); `threads`
/// (a thread per core) and `threads-pN` (N threads), pools in this process.
///
/// # Errors
/// [`UnknownExecutor`] listing the valid names (also for `local-p0`).
pub fn by_name(name: &str) -> Result<Box<dyn Executor>, UnknownExecutor> {
    let unknown = || UnknownExecutor {
        name: name.to_owned(),
    };
    let name = name.trim();
    Ok(match name {
        "single-threaded" | "sync" => Box::new(SingleThreaded::new()),
        "in-memory" => Box::new(InMemory),
        "threads" => Box::new(ThreadPool::all_cores()),
        "local-parallel" => Box::new(Distributed::new(LocalProcesses::all_cores()).named(name)),
        other => {
            let (n, threads) = match other.strip_prefix("local-p") {
                Some(n) => (n, false),
                None => (other.strip_prefix("threads-p").ok_or_else(unknown)?, true),
            };
            let n = n.parse::<NonZeroUsize>().map_err(|_| unknown())?;
            if threads {
                Box::new(ThreadPool::new(n).named(other))
            } else {
                Box::new(Distributed::new(LocalProcesses::new(n, NonZeroUsize::MIN)).named(other))
            }
        }
    })
}

/// The executor named by `BOB_PIPELINES_EXECUTOR`, or `default` when it is unset.
///
/// # Errors
/// [`UnknownExecutor`] for a name that does not exist.
pub fn from_env(default: &str) -> Result<Box<dyn Executor>, UnknownExecutor> {
    by_name(&name_from_env(default))
}

/// The executor name in `BOB_PIPELINES_EXECUTOR`, or `default` when it is
/// unset or blank.
pub fn name_from_env(default: &str) -> String {
    pick(std::env::var(ENV).ok(), default)
}

/// The name to use: the variable's value when it is set and not blank.
fn pick(value: Option<String>, default: &str) -> String {
    value
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_overrides_the_default_unless_blank() {
        assert_eq!(pick(Some("local-p4".into()), "single-threaded"), "local-p4");
        assert_eq!(
            pick(Some("  ".into()), "single-threaded"),
            "single-threaded"
        );
        assert_eq!(pick(None, "local-parallel"), "local-parallel");
    }
}
