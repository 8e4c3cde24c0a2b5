//! Fault injection for crash tests (feature `failpoints`): a named moment of
//! a write sequence where the process dies as a SIGKILL would leave it.

/// The variable that arms a failpoint: `NAME` (the first time the moment
/// comes) or `NAME@N` (the N-th time).
pub const FAILPOINT_ENV: &str = "BOB_PIPELINES_FAILPOINT";

/// Whether this build has failpoints (feature `failpoints`).
pub const fn failpoints_enabled() -> bool {
    cfg!(feature = "failpoints")
}

/// Marks moment `name` of a write sequence. With feature `failpoints` and
/// [`FAILPOINT_ENV`] naming it, the process aborts here (no destructor runs,
/// no buffer is flushed: as after a SIGKILL). Without the feature it costs
/// nothing.
#[inline]
pub fn failpoint(name: &str) {
    #[cfg(feature = "failpoints")]
    armed::hit(name);
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

#[cfg(feature = "failpoints")]
mod armed {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);

    pub(super) fn hit(name: &str) {
        let spec = SPEC.get_or_init(|| {
            let v = std::env::var(super::FAILPOINT_ENV).ok()?;
            Some(match v.split_once('@') {
                Some((n, k)) => (n.to_owned(), k.parse().unwrap_or(1)),
                None => (v, 1),
            })
        });
        if let Some((armed, at)) = spec {
            if armed == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 >= *at {
                eprintln!("failpoint `{name}`: the process dies here");
                std::process::abort();
            }
        }
    }
}
