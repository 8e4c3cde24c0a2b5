//! A work-stealing runner for task DAGs on crossbeam-deque: what the thread
//! pool executor (and, later, each distributed worker) runs tasks with.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::Duration;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::Backoff;

/// How many ready tasks a thread takes from the shared queue at once: few, so
/// that tasks start roughly in the order they were queued (input partitions
/// are loaded nearly in order, and none is pulled far ahead of need).
const BATCH: usize = 8;

/// Sleeping threads, woken when work appears.
struct Sleepers {
    idle: AtomicUsize,
    threads: Vec<OnceLock<Thread>>,
}

impl Sleepers {
    fn wake_all(&self) {
        if self.idle.load(Ordering::Acquire) > 0 {
            for t in self.threads.iter().filter_map(OnceLock::get) {
                t.unpark();
            }
        }
    }
}

/// Runs a DAG of `indegree.len()` tasks on `threads` threads (the calling
/// thread is one of them). Task `i` runs once, after every task it depends on;
/// `dependents(i)` lists the tasks that wait for it. The first error stops
/// every thread before it takes another task, and is returned.
///
/// `run` must not panic (callers catch panics and turn them into errors).
pub(crate) fn run_dag<'d, E, D, F>(
    threads: NonZeroUsize,
    indegree: Vec<usize>,
    dependents: D,
    run: F,
) -> Result<(), E>
where
    E: Send,
    D: Fn(usize) -> &'d [usize] + Sync,
    F: Fn(usize) -> Result<(), E> + Sync,
{
    let n = indegree.len();
    if n == 0 {
        return Ok(());
    }
    let threads = threads.get().min(n);
    let injector = Injector::new();
    for (i, _) in indegree.iter().enumerate().filter(|(_, d)| **d == 0) {
        injector.push(i);
    }
    let state = State {
        pending: indegree.into_iter().map(AtomicUsize::new).collect(),
        remaining: AtomicUsize::new(n),
        abort: AtomicBool::new(false),
        error: Mutex::new(None),
        injector,
        sleepers: Sleepers {
            idle: AtomicUsize::new(0),
            threads: (0..threads).map(|_| OnceLock::new()).collect(),
        },
        dependents,
        run,
    };
    let workers: Vec<Worker<usize>> = (0..threads).map(|_| Worker::new_lifo()).collect();
    let stealers: Vec<Stealer<usize>> = workers.iter().map(Worker::stealer).collect();
    std::thread::scope(|scope| {
        let mut workers = workers.into_iter().enumerate();
        let (me, mine) = workers
            .next()
            .unwrap_or_else(|| unreachable!("threads >= 1"));
        for (id, local) in workers {
            let (state, stealers) = (&state, &stealers);
            scope.spawn(move || state.work(id, &local, stealers));
        }
        state.work(me, &mine, &stealers);
    });
    match state
        .error
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

struct State<E, D, F> {
    pending: Vec<AtomicUsize>,
    remaining: AtomicUsize,
    abort: AtomicBool,
    error: Mutex<Option<E>>,
    injector: Injector<usize>,
    sleepers: Sleepers,
    dependents: D,
    run: F,
}

impl<'d, E, D, F> State<E, D, F>
where
    D: Fn(usize) -> &'d [usize],
    F: Fn(usize) -> Result<(), E>,
{
    fn find(&self, me: usize, local: &Worker<usize>, stealers: &[Stealer<usize>]) -> Option<usize> {
        local.pop().or_else(|| {
            std::iter::repeat_with(|| {
                self.injector
                    .steal_batch_with_limit_and_pop(local, BATCH)
                    .or_else(|| {
                        stealers
                            .iter()
                            .enumerate()
                            .filter(|(j, _)| *j != me)
                            .map(|(_, s)| s.steal())
                            .collect::<Steal<usize>>()
                    })
            })
            .find(|s| !s.is_retry())
            .and_then(Steal::success)
        })
    }

    fn work(&self, me: usize, local: &Worker<usize>, stealers: &[Stealer<usize>]) {
        let _ = self.sleepers.threads[me].set(std::thread::current());
        let backoff = Backoff::new();
        loop {
            if self.abort.load(Ordering::Acquire) {
                return;
            }
            let Some(task) = self.find(me, local, stealers) else {
                if self.remaining.load(Ordering::Acquire) == 0 {
                    return;
                }
                if backoff.is_completed() {
                    // Long tasks elsewhere: sleep until woken (or briefly, so a
                    // missed wake-up costs latency, never a hang).
                    self.sleepers.idle.fetch_add(1, Ordering::AcqRel);
                    std::thread::park_timeout(Duration::from_millis(1));
                    self.sleepers.idle.fetch_sub(1, Ordering::AcqRel);
                } else {
                    backoff.snooze();
                }
                continue;
            };
            backoff.reset();
            if let Err(e) = (self.run)(task) {
                let mut slot = self.error.lock().unwrap_or_else(PoisonError::into_inner);
                if slot.is_none() {
                    *slot = Some(e);
                }
                self.abort.store(true, Ordering::Release);
                self.sleepers.wake_all();
                return;
            }
            let mut woke = false;
            for &d in (self.dependents)(task) {
                if self.pending[d].fetch_sub(1, Ordering::AcqRel) == 1 {
                    local.push(d);
                    woke = true;
                }
            }
            if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 || woke {
                self.sleepers.wake_all();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    #[test]
    fn every_task_runs_once_after_its_dependencies() {
        // A diamond lattice: task i depends on i-1 and i-7 (when they exist).
        let n = 2000;
        let mut indegree = vec![0; n];
        let mut dependents = vec![Vec::new(); n];
        for (i, deg) in indegree.iter_mut().enumerate() {
            for d in [i.checked_sub(1), i.checked_sub(7)].into_iter().flatten() {
                *deg += 1;
                dependents[d].push(i);
            }
        }
        let done: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
        let order = AtomicUsize::new(0);
        let stamp: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
        for threads in [1, 2, 4] {
            order.store(0, Ordering::SeqCst);
            done.iter().for_each(|d| d.store(0, Ordering::SeqCst));
            run_dag::<(), _, _>(
                nz(threads),
                indegree.clone(),
                |i| &dependents[i],
                |i| {
                    stamp[i].store(order.fetch_add(1, Ordering::SeqCst), Ordering::SeqCst);
                    done[i].fetch_add(1, Ordering::SeqCst);
                    Ok(())
                },
            )
            .unwrap();
            assert!(done.iter().all(|d| d.load(Ordering::SeqCst) == 1));
            for i in 0..n {
                for d in [i.checked_sub(1), i.checked_sub(7)].into_iter().flatten() {
                    assert!(stamp[d].load(Ordering::SeqCst) < stamp[i].load(Ordering::SeqCst));
                }
            }
        }
    }

    #[test]
    fn the_first_error_stops_the_run() {
        let n = 10_000;
        let ran = AtomicUsize::new(0);
        let r = run_dag(
            nz(2),
            vec![0; n],
            |_| &[],
            |i| {
                ran.fetch_add(1, Ordering::SeqCst);
                if i == 100 { Err(i) } else { Ok(()) }
            },
        );
        assert_eq!(r, Err(100));
        assert!(
            ran.load(Ordering::SeqCst) < n,
            "threads stopped before running everything"
        );
    }
}
