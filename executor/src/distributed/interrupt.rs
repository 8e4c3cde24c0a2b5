//! Ctrl-C or SIGTERM of a driver that has jobs on a cluster: delete them, then
//! leave.
//!
//! Without this, the default action of SIGINT and SIGTERM ends the driver at
//! once, no destructor runs, and the run's pending jobs stay in the queue: an
//! array task that starts hours later waits for a driver that is gone.
//!
//! A cluster launcher registers a cleanup ([`on_interrupt`]) while it has
//! jobs. The first registration installs a handler for both signals that
//! only writes the signal's number to a socket (all a handler may safely
//! do); a thread reading the other end runs every registered cleanup
//! (`qdel`/`scancel` of the run's jobs), then ends the process with status
//! 128 + signal, as the shell reports a process killed by it. A second signal
//! during the cleanup ends the process at once. With nothing registered when
//! a signal comes, the process ends as it would have without this module.

// The one place of the workspace that installs a signal handler: `sigaction`
// and the handler's `write` and `_exit` are foreign functions.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::fd::IntoRawFd as _;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

type Cleanup = Box<dyn Fn() + Send + Sync>;

struct Registry {
    next: u64,
    cleanups: BTreeMap<u64, (String, Cleanup)>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    cleanups: BTreeMap::new(),
});

/// The socket end the handler writes to (-1 until installed).
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);
/// The first signal received (0: none yet).
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// Whether the handler and its thread are in place (`Err`: they could not be).
static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

/// Keeps a cleanup registered; dropping it unregisters the cleanup (the
/// launcher's jobs are gone, or it deleted them itself).
#[derive(Debug)]
#[must_use = "the cleanup is unregistered when the guard is dropped"]
pub struct InterruptGuard {
    id: u64,
}

impl Drop for InterruptGuard {
    fn drop(&mut self) {
        registry().cleanups.remove(&self.id);
    }
}

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `cleanup` if the process gets SIGINT or SIGTERM while the guard
/// lives, before the process ends. `what` names it in the message printed
/// then ("deleting the SGE jobs of the run").
///
/// # Errors
/// When the handler cannot be installed (no socket pair, `sigaction`
/// refused), with the reason; the caller goes on without it.
pub fn on_interrupt(
    what: &str,
    cleanup: impl Fn() + Send + Sync + 'static,
) -> Result<InterruptGuard, String> {
    INSTALLED.get_or_init(install).clone()?;
    let mut r = registry();
    let id = r.next;
    r.next += 1;
    r.cleanups.insert(id, (what.to_owned(), Box::new(cleanup)));
    Ok(InterruptGuard { id })
}

fn install() -> Result<(), String> {
    let (mut read, write) =
        UnixStream::pair().map_err(|e| format!("no socket pair for the signal handler: {e}"))?;
    std::thread::Builder::new()
        .name("bob-pipelines-interrupt".to_owned())
        .spawn(move || {
            let mut sig = [0u8; 1];
            if read.read_exact(&mut sig).is_ok() {
                interrupted(i32::from(sig[0]));
            }
        })
        .map_err(|e| format!("no thread for the signal handler: {e}"))?;
    WRITE_FD.store(write.into_raw_fd(), Ordering::SeqCst);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        set_action(sig, on_signal as *const () as libc::sighandler_t)
            .map_err(|e| format!("cannot handle signal {sig}: {e}"))?;
    }
    Ok(())
}

fn set_action(sig: i32, handler: libc::sighandler_t) -> std::io::Result<()> {
    // SAFETY: a zeroed `sigaction` is a valid value of the plain C struct;
    // its fields are then set as sigaction(2) documents, and the pointers
    // given point to live locals.
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(sig, &action, std::ptr::null_mut())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The handler: async-signal-safe calls only (an atomic swap, `write`,
/// `_exit`).
extern "C" fn on_signal(sig: libc::c_int) {
    if RECEIVED.swap(sig, Ordering::SeqCst) != 0 {
        // SAFETY: `_exit` is async-signal-safe and takes any status.
        unsafe { libc::_exit(128 + sig) };
    }
    let byte = u8::try_from(sig).unwrap_or(u8::MAX);
    // SAFETY: `write` is async-signal-safe; the descriptor is the socket
    // end stored before the handler was installed, and the buffer is a live
    // one-byte local. A failed write leaves nothing to do in a handler.
    unsafe {
        libc::write(
            WRITE_FD.load(Ordering::SeqCst),
            std::ptr::from_ref(&byte).cast(),
            1,
        );
    }
}

/// Whether this worker was asked to drain (SIGUSR1: Slurm's `--signal`,
/// SGE's `s_rt`, before the job's time limit).
static DRAIN: AtomicBool = AtomicBool::new(false);

/// A worker's SIGUSR1 asks it to drain ([`drain_asked`]) instead of ending
/// it (the signal's default).
///
/// # Errors
/// When `sigaction` refuses.
pub(crate) fn drain_on_usr1() -> std::io::Result<()> {
    set_action(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t)
}

/// Whether SIGUSR1 came (see [`drain_on_usr1`]).
pub(crate) fn drain_asked() -> bool {
    DRAIN.load(Ordering::SeqCst)
}

/// The handler: an atomic store, async-signal-safe.
extern "C" fn on_usr1(_sig: libc::c_int) {
    DRAIN.store(true, Ordering::SeqCst);
}

/// On the handler's thread: the cleanups, then the end of the process.
fn interrupted(sig: i32) {
    let name = if sig == libc::SIGINT {
        "Ctrl-C (SIGINT)"
    } else {
        "SIGTERM"
    };
    let r = registry();
    if r.cleanups.is_empty() {
        drop(r);
        // Nothing of ours to clean: end as the signal's default would.
        let _ = set_action(sig, libc::SIG_DFL);
        // SAFETY: `raise` with a valid signal number; its default action
        // ends the process.
        unsafe { libc::raise(sig) };
        std::process::exit(128 + sig);
    }
    let whats: Vec<&str> = r.cleanups.values().map(|(w, _)| w.as_str()).collect();
    eprintln!(
        "bob-pipelines: {name}: {} before leaving (press Ctrl-C again to leave at once)",
        whats.join("; ")
    );
    for (what, cleanup) in r.cleanups.values() {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(cleanup)).is_err() {
            eprintln!("bob-pipelines: {what}: failed; see above");
        }
    }
    std::process::exit(128 + sig);
}
