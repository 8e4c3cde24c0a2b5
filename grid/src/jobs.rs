//! The run's jobs as a grid launcher tracks them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bob_pipelines_executor::distributed::{InterruptGuard, JobState, on_interrupt};

/// How the grid's listing shows one of our jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Waiting to start.
    Pending,
    /// Started.
    Running,
    /// Ended (it left the listing, or sits in an error state and is
    /// deleted), and how, in plain words.
    Ended(String),
    /// The listing could not be had this time.
    Unknown,
}

/// A job we submitted and have not seen end.
#[derive(Debug)]
struct Tracked {
    /// How it ended, once known (asked of the grid once).
    ended: Option<String>,
    since: Instant,
    /// Why it waits, once asked (it has waited `report_after`).
    why: Option<String>,
}

/// What Ctrl-C or SIGTERM of the driver deletes, seen from the signal's
/// thread: submitting holds the lock, so a job is either seen by the
/// cleanup or never submitted.
#[derive(Debug)]
struct Submitted {
    /// Job numbers (an array's one number covers its tasks).
    numbers: Vec<String>,
    /// The process is leaving on a signal: submit nothing more.
    interrupted: bool,
    delete: fn(&[&str]),
}

impl Submitted {
    fn delete_all(&mut self) {
        self.interrupted = true;
        let numbers = std::mem::take(&mut self.numbers);
        (self.delete)(&numbers.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

fn lock(s: &Mutex<Submitted>) -> MutexGuard<'_, Submitted> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The run's jobs on a grid: when each was submitted, why it waits, how it
/// ended; the Ctrl-C/SIGTERM cleanup that deletes them; and the end of the
/// run, which deletes what is left.
#[derive(Debug)]
pub struct Jobs {
    grid: &'static str,
    tracked: BTreeMap<String, Tracked>,
    submitted: Arc<Mutex<Submitted>>,
    on_interrupt: Option<InterruptGuard>,
    /// A job id's number (`12` of SGE's `12.3`, of Slurm's `12_3`).
    number: fn(&str) -> &str,
    delete: fn(&[&str]),
    /// How long a job waits before its reason is asked and reported.
    pub report_after: Duration,
    /// When the grid's listing last failed, and why (said once per failure
    /// streak).
    failing: Option<String>,
}

impl Jobs {
    /// The jobs of a run on `grid` (its name, for messages), whose ids'
    /// numbers `number` gives, and which `delete` deletes (`qdel`,
    /// `scancel`: it must not fail on jobs that are gone).
    pub fn new(grid: &'static str, number: fn(&str) -> &str, delete: fn(&[&str])) -> Self {
        Jobs {
            grid,
            tracked: BTreeMap::new(),
            submitted: Arc::new(Mutex::new(Submitted {
                numbers: Vec::new(),
                interrupted: false,
                delete,
            })),
            on_interrupt: None,
            number,
            delete,
            report_after: Duration::from_secs(60),
            failing: None,
        }
    }

    /// The grid's listing, or `None` when it failed: said on stderr once per
    /// streak of failures (job states are unknown meanwhile, not ended).
    pub fn listing<T>(&mut self, listing: Result<T, String>) -> Option<T> {
        match listing {
            Ok(l) => {
                self.failing = None;
                Some(l)
            }
            Err(e) => {
                if self.failing.as_deref() != Some(e.as_str()) {
                    eprintln!("bob-pipelines: {e}; job states are unknown until it answers");
                    self.failing = Some(e);
                }
                None
            }
        }
    }

    /// Submits with `submit` (which returns the new job ids), after making
    /// the job log folder `logs` and making sure Ctrl-C or SIGTERM of the
    /// driver deletes the run's jobs; the ids are tracked from now.
    ///
    /// # Errors
    /// `submit`'s, or the driver is leaving on a signal.
    pub fn submit<E: From<String>>(
        &mut self,
        logs: &std::path::Path,
        submit: impl FnOnce() -> Result<Vec<String>, E>,
    ) -> Result<Vec<String>, E> {
        std::fs::create_dir_all(logs).map_err(|e| {
            E::from(format!(
                "cannot create the job log folder {}: {e}",
                logs.display()
            ))
        })?;
        if self.on_interrupt.is_none() {
            let submitted = Arc::clone(&self.submitted);
            let what = format!("deleting the {} jobs of the run", self.grid);
            match on_interrupt(&what, move || lock(&submitted).delete_all()) {
                Ok(guard) => self.on_interrupt = Some(guard),
                Err(e) => eprintln!(
                    "bob-pipelines: {e}; Ctrl-C will leave this run's {} jobs in the queue",
                    self.grid
                ),
            }
        }
        let mut submitted = lock(&self.submitted);
        if submitted.interrupted {
            return Err(E::from("the driver is leaving on a signal".to_owned()));
        }
        let ids = submit()?;
        for id in &ids {
            self.tracked.insert(
                id.clone(),
                Tracked {
                    ended: None,
                    since: Instant::now(),
                    why: None,
                },
            );
            let number = (self.number)(id);
            if !submitted.numbers.iter().any(|n| n == number) {
                submitted.numbers.push(number.to_owned());
            }
        }
        Ok(ids)
    }

    /// The jobs not seen to end, by id.
    pub fn live(&self) -> impl Iterator<Item = &str> {
        self.tracked
            .iter()
            .filter(|(_, t)| t.ended.is_none())
            .map(|(id, _)| id.as_str())
    }

    /// Whether no job is tracked.
    pub fn is_empty(&self) -> bool {
        self.tracked.is_empty()
    }

    /// The state of every tracked job, from what the grid's listing showed
    /// (`seen`; called for jobs not known to have ended). `why` asks the
    /// grid why a job waits, once, after [`report_after`](Self::report_after).
    pub fn states(
        &mut self,
        mut seen: impl FnMut(&str) -> Seen,
        mut why: impl FnMut(&str) -> String,
    ) -> Vec<(String, JobState)> {
        let report_after = self.report_after;
        let mut states = Vec::with_capacity(self.tracked.len());
        for (id, t) in &mut self.tracked {
            if let Some(how) = &t.ended {
                states.push((id.clone(), JobState::Ended(how.clone())));
                continue;
            }
            let state = match seen(id) {
                Seen::Unknown => JobState::Pending,
                Seen::Pending if t.since.elapsed() < report_after => JobState::Pending,
                Seen::Pending => JobState::Waiting {
                    waited: t.since.elapsed(),
                    why: t.why.get_or_insert_with(|| why(id)).clone(),
                },
                Seen::Running => JobState::Running,
                Seen::Ended(how) => {
                    t.ended = Some(how.clone());
                    JobState::Ended(how)
                }
            };
            states.push((id.clone(), state));
        }
        states
    }

    /// Stops job `id` (its worker was lost, or it is not needed), unless it
    /// has ended.
    pub fn cancel(&mut self, id: &str) {
        if let Some(t) = self.tracked.remove(id) {
            if t.ended.is_none() {
                (self.delete)(&[id]);
            }
        }
    }

    /// The run is over. Workers leave on the scheduler's word: running jobs
    /// get 3 s to end cleanly, pending ones are deleted at once, then the
    /// rest, and the grid is asked until it lists none of them (at most
    /// 30 s). `still_listed` gives those of `ids` the grid still lists, and
    /// whether each is pending (`None` when it cannot tell).
    pub fn shutdown(
        &mut self,
        mut still_listed: impl FnMut(&[&str]) -> Option<Vec<(String, bool)>>,
    ) {
        if self.tracked.is_empty() {
            return;
        }
        let ids: Vec<String> = self.live().map(str::to_owned).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let t0 = Instant::now();
        let mut deleted_pending = false;
        let mut deleted_all = false;
        while let Some(left) = still_listed(&ids) {
            if left.is_empty() || t0.elapsed() > Duration::from_secs(30) {
                break;
            }
            let grace_over = t0.elapsed() > Duration::from_secs(3);
            if (grace_over && !deleted_all) || !deleted_pending {
                let doomed: Vec<&str> = left
                    .iter()
                    .filter(|(_, pending)| grace_over || *pending)
                    .map(|(id, _)| id.as_str())
                    .collect();
                (self.delete)(&doomed);
                deleted_pending = true;
                deleted_all = grace_over;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        self.tracked.clear();
        lock(&self.submitted).numbers.clear();
        self.on_interrupt = None;
    }
}
