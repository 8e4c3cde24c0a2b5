//! A work-stealing runner for task DAGs on crossbeam-deque: what the thread
//! pool executor (and, later, each distributed worker) runs tasks with.

use std::num::NonZeroUsize;
use std::sync::PoisonError;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};

use crate::sync::{AtomicBool, AtomicUsize, Mutex, Ordering, Thread, fence};

/// How many ready tasks a thread takes from the shared queue at once: few, so
/// that tasks start roughly in the order they were queued (input partitions
/// are loaded nearly in order, and none is pulled far ahead of need).
const BATCH: usize = 8;

/// Sleeping threads, and the protocol that never loses a wake-up.
///
/// A thread that found no work announces itself (`idle` + 1), then looks
/// once more, and parks only if there is still nothing to do. A thread that
/// makes work (or ends the run) publishes it first, then looks at `idle` and
/// unparks the sleepers. Both sides put a `SeqCst` fence between their write
/// and their read (the store-buffering pattern), so at least one of them sees
/// the other: the sleeper sees the work, or the waker sees the sleeper (and
/// an `unpark` that comes before its `park` makes the `park` return at once).
/// `cargo test --cfg loom` checks this in every interleaving, with no park
/// timeout that could hide a lost wake-up (`tests` below, `loom_*`).
struct Sleepers {
    idle: AtomicUsize,
    threads: Mutex<Vec<Option<Thread>>>,
}

impl Sleepers {
    fn new(threads: usize) -> Self {
        Sleepers {
            idle: AtomicUsize::new(0),
            threads: Mutex::new((0..threads).map(|_| None).collect()),
        }
    }

    /// Thread `me` can be woken from now on.
    fn register(&self, me: usize) {
        let mut threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
        threads[me] = Some(crate::sync::current());
    }

    /// Parks the calling thread unless `nothing_to_do`, asked after the thread
    /// announced itself, says there is something to do after all. Returns
    /// when woken (or spuriously): the caller looks for work again.
    fn sleep(&self, nothing_to_do: impl FnOnce() -> bool) {
        self.idle.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if nothing_to_do() {
            crate::sync::park();
        }
        self.idle.fetch_sub(1, Ordering::SeqCst);
    }

    /// Wakes every sleeping thread; call it after publishing work or the end.
    fn wake_all(&self) {
        fence(Ordering::SeqCst);
        if self.idle.load(Ordering::SeqCst) > 0 {
            let threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
            for t in threads.iter().flatten() {
                t.unpark();
            }
        }
    }
}

/// Where ready tasks wait: crossbeam's deques in the pool, a simpler model
/// under loom (crossbeam's own atomics are not loom's).
trait Queues {
    /// A thread's own end of the queues.
    type Local;
    /// A task for thread `me`, if any waits anywhere.
    fn find(&self, me: usize, local: &Self::Local) -> Option<usize>;
    /// Queues a task that became ready on this thread.
    fn push(&self, local: &Self::Local, task: usize);
    /// Whether no task waits anywhere: a sleeper's last look before it parks.
    fn is_empty(&self, local: &Self::Local) -> bool;
}

/// The pool's queues: a shared injector for the first ready tasks, a LIFO
/// deque per thread, stolen from when a thread runs dry.
struct Deques {
    injector: Injector<usize>,
    stealers: Vec<Stealer<usize>>,
}

impl Queues for Deques {
    type Local = Worker<usize>;

    fn find(&self, me: usize, local: &Worker<usize>) -> Option<usize> {
        local.pop().or_else(|| {
            std::iter::repeat_with(|| {
                self.injector
                    .steal_batch_with_limit_and_pop(local, BATCH)
                    .or_else(|| {
                        self.stealers
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

    fn push(&self, local: &Worker<usize>, task: usize) {
        local.push(task);
    }

    fn is_empty(&self, local: &Worker<usize>) -> bool {
        local.is_empty() && self.injector.is_empty() && self.stealers.iter().all(Stealer::is_empty)
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
    let workers: Vec<Worker<usize>> = (0..threads).map(|_| Worker::new_lifo()).collect();
    let queues = Deques {
        injector: Injector::new(),
        stealers: workers.iter().map(Worker::stealer).collect(),
    };
    for (i, _) in indegree.iter().enumerate().filter(|(_, d)| **d == 0) {
        queues.injector.push(i);
    }
    let state = State::new(threads, indegree, queues, dependents, run);
    std::thread::scope(|scope| {
        let mut workers = workers.into_iter().enumerate();
        let (me, mine) = workers
            .next()
            .unwrap_or_else(|| unreachable!("threads >= 1"));
        for (id, local) in workers {
            let state = &state;
            scope.spawn(move || state.work(id, &local));
        }
        state.work(me, &mine);
    });
    state.into_result()
}

struct State<E, Q, D, F> {
    pending: Vec<AtomicUsize>,
    remaining: AtomicUsize,
    abort: AtomicBool,
    error: Mutex<Option<E>>,
    queues: Q,
    sleepers: Sleepers,
    dependents: D,
    run: F,
}

impl<'d, E, Q, D, F> State<E, Q, D, F>
where
    Q: Queues,
    D: Fn(usize) -> &'d [usize],
    F: Fn(usize) -> Result<(), E>,
{
    fn new(threads: usize, indegree: Vec<usize>, queues: Q, dependents: D, run: F) -> Self {
        State {
            remaining: AtomicUsize::new(indegree.len()),
            pending: indegree.into_iter().map(AtomicUsize::new).collect(),
            abort: AtomicBool::new(false),
            error: Mutex::new(None),
            queues,
            sleepers: Sleepers::new(threads),
            dependents,
            run,
        }
    }

    fn into_result(self) -> Result<(), E> {
        match self
            .error
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn work(&self, me: usize, local: &Q::Local) {
        self.sleepers.register(me);
        #[cfg(not(loom))]
        let backoff = crossbeam_utils::Backoff::new();
        loop {
            if self.abort.load(Ordering::Acquire) {
                return;
            }
            let Some(task) = self.queues.find(me, local) else {
                if self.remaining.load(Ordering::Acquire) == 0 {
                    return;
                }
                // Spin a little first: most waits are short. (Under loom,
                // spinning only multiplies the interleavings.)
                #[cfg(not(loom))]
                if !backoff.is_completed() {
                    backoff.snooze();
                    continue;
                }
                self.sleepers.sleep(|| {
                    !self.abort.load(Ordering::SeqCst)
                        && self.remaining.load(Ordering::SeqCst) != 0
                        && self.queues.is_empty(local)
                });
                continue;
            };
            #[cfg(not(loom))]
            backoff.reset();
            if let Err(e) = (self.run)(task) {
                let mut slot = self.error.lock().unwrap_or_else(PoisonError::into_inner);
                if slot.is_none() {
                    *slot = Some(e);
                }
                drop(slot);
                self.abort.store(true, Ordering::SeqCst);
                self.sleepers.wake_all();
                return;
            }
            let mut woke = false;
            for &d in (self.dependents)(task) {
                if self.pending[d].fetch_sub(1, Ordering::AcqRel) == 1 {
                    self.queues.push(local, d);
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
    #[cfg(not(loom))]
    use std::sync::atomic::{AtomicUsize, Ordering};

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

/// The sleep/wake protocol under loom: every interleaving of two threads
/// over small DAGs, with the real `State::work` loop and a queue model. A lost
/// wake-up is a thread parked for ever, which loom reports as a deadlock.
#[cfg(all(test, loom))]
mod loom_tests {
    use loom::sync::Arc;

    use super::*;

    /// A flag per task, taken by compare-and-swap: lock-free, as crossbeam's
    /// deques are (a lock here would let loom hand a thread's unpark to its
    /// wait for the lock, which no real deque does).
    struct Model {
        ready: [AtomicBool; 3],
    }

    impl Queues for Model {
        type Local = ();
        fn find(&self, _: usize, (): &()) -> Option<usize> {
            (0..self.ready.len()).find(|&t| {
                self.ready[t]
                    .compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            })
        }
        fn push(&self, (): &(), task: usize) {
            self.ready[task].store(true, Ordering::Release);
        }
        fn is_empty(&self, (): &()) -> bool {
            self.ready.iter().all(|r| !r.load(Ordering::Acquire))
        }
    }

    const DEPENDENTS: [&[usize]; 3] = [&[1, 2], &[], &[]];

    /// Task 0, then tasks 1 and 2 (which become ready on one thread while
    /// the other may be going to sleep); `fail` makes task 1 fail.
    fn run_model(fail: bool) {
        // Every interleaving with up to three preemptions (tokio's CI bound):
        // a lost wake-up needs one, between a sleeper's last look and its park.
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(move || {
            let ran: Arc<[AtomicUsize; 3]> = Arc::new([
                AtomicUsize::new(0),
                AtomicUsize::new(0),
                AtomicUsize::new(0),
            ]);
            let counted = ran.clone();
            let state = Arc::new(State::new(
                2,
                vec![0, 1, 1],
                Model {
                    ready: [
                        AtomicBool::new(true),
                        AtomicBool::new(false),
                        AtomicBool::new(false),
                    ],
                },
                |i| DEPENDENTS[i],
                move |i| {
                    counted[i].fetch_add(1, Ordering::SeqCst);
                    if fail && i == 1 { Err(i) } else { Ok(()) }
                },
            ));
            let other = state.clone();
            let helper = loom::thread::spawn(move || other.work(1, &()));
            state.work(0, &());
            helper.join().unwrap();
            let ran: Vec<usize> = ran.iter().map(|r| r.load(Ordering::SeqCst)).collect();
            let state = Arc::try_unwrap(state).unwrap_or_else(|_| panic!("both threads ended"));
            if fail {
                assert_eq!(state.into_result(), Err(1));
                assert!(ran.iter().all(|&r| r <= 1), "{ran:?}");
            } else {
                assert_eq!(state.into_result(), Ok(()));
                assert_eq!(ran, [1, 1, 1]);
            }
        });
    }

    #[test]
    fn loom_no_wake_up_is_lost_and_every_task_runs_once() {
        run_model(false);
    }

    #[test]
    fn loom_an_error_wakes_the_sleepers_and_ends_every_thread() {
        run_model(true);
    }
}
