//! Executors by name, as bob's `dask.client` entry points.

use std::num::NonZeroUsize;

use bob_pipelines_estimator::{Executor, InMemory};

use crate::{SingleThreaded, ThreadPool};

/// The environment variable that names the executor.
pub const ENV: &str = "BOB_PIPELINES_EXECUTOR";

/// The executor names, for messages and `--help`.
pub const NAMES: &[&str] = &[
    "single-threaded",
    "in-memory",
    "local-parallel",
    "local-pN (N threads, e.g. local-p4)",
    "threads",
    "threads-pN",
];

/// An executor name that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown executor `{name}`; valid executors: {}", NAMES.join(", "))]
pub struct UnknownExecutor {
    /// The name given.
    pub name: String,
}

/// The executor called `name`: `single-threaded`, `in-memory`, `local-parallel`
/// (a thread per core), `local-pN` (N threads); `threads` and `threads-pN` name
/// the same thread pools.
///
/// # Errors
/// [`UnknownExecutor`] listing the valid names (also for `local-p0`).
pub fn by_name(name: &str) -> Result<Box<dyn Executor>, UnknownExecutor> {
    let unknown = || UnknownExecutor {
        name: name.to_owned(),
    };
    Ok(match name.trim() {
        "single-threaded" | "sync" => Box::new(SingleThreaded::new()),
        "in-memory" => Box::new(InMemory),
        "local-parallel" | "threads" => Box::new(ThreadPool::all_cores().named(name.trim())),
        other => {
            let n = other
                .strip_prefix("local-p")
                .or_else(|| other.strip_prefix("threads-p"))
                .ok_or_else(unknown)?;
            let threads = n.parse::<NonZeroUsize>().map_err(|_| unknown())?;
            Box::new(ThreadPool::new(threads).named(other))
        }
    })
}

/// The executor named by `BOB_PIPELINES_EXECUTOR`, or `default` when it is unset.
///
/// # Errors
/// [`UnknownExecutor`] for a name that does not exist.
pub fn from_env(default: &str) -> Result<Box<dyn Executor>, UnknownExecutor> {
    by_name(&pick(std::env::var(ENV).ok(), default))
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
