//! The worker: the user's own program, started again by a launcher with the
//! scheduler's address in its environment. Its `compute` call lands here.
//!
//! A worker loads the input partitions it is told to from its own copy of
//! the inputs (it built them as the driver did), keeps what its tasks make
//! in memory until the scheduler says no task needs it, and hands it to
//! other workers that ask on its peer port (authenticated with the run's
//! secret, as the scheduler's port is). Only the run's outputs and fitted
//! models go to the driver.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bob_pipelines_graph::{
    self as graph, AnyPartition, Counts, DataCodec, InputPartition, KEYS_SHOWN, Model, Plan,
    Program, name_checkpoint_input, panic_message, program_fingerprint, read_step_outputs,
    save_model, save_outputs,
};
use bob_pipelines_sample::Key;

use super::protocol::{
    Fetch, FromWorker, Held, Input, Next, Output, ReadStats, TaskOp, ToWorker, WorkerEnv, get,
    get_frames, is_timeout, put,
};
use crate::wire::{
    self, Arrival, Listener, MAX_HANDSHAKES, Secret, Stream, WireError, WorkerInfo, read_secret,
};

/// Serves the scheduler named in the environment, then ends the process:
/// status 0 when the scheduler said the work is done, 1 (with the reason on
/// stderr) when it could not be reached, rejected this worker, or went away.
pub(crate) fn serve(plan: Plan<'_>) -> ! {
    let code = match run(plan) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bob-pipelines worker {}: {e}", name());
            1
        }
    };
    std::process::exit(code)
}

/// Whether `program` is not the one the driver runs (the driver's program
/// fingerprint differs): an earlier compute of the same program. A worker
/// the driver kept for its next compute ([`ToWorker::Again`]) does not know
/// that compute's fingerprint: every compute up to the one it served is
/// earlier, and the next is the driver's.
pub(crate) fn earlier_compute(program: &Program) -> bool {
    static PASSED: AtomicBool = AtomicBool::new(false);
    if let Some(served) = WorkerEnv::after_from_env() {
        if PASSED.load(Ordering::Acquire) {
            return false;
        }
        if served == program_fingerprint(program) {
            PASSED.store(true, Ordering::Release);
        }
        return true;
    }
    WorkerEnv::program_from_env().is_some_and(|want| want != program_fingerprint(program))
}

/// Starts this worker again in place (same process, same job), for the
/// driver's next compute after the one whose fingerprint is `served`.
/// Returns only if that fails.
fn again(served: u64) -> std::io::Error {
    use std::os::unix::process::CommandExt as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let mut args = std::env::args_os();
    let _ = args.next();
    std::process::Command::new("/proc/self/exe")
        .args(args)
        .env_remove(WorkerEnv::program_var())
        .env(WorkerEnv::AFTER, format!("{served:016x}"))
        .exec()
}

/// How long ago this process started (an `exec` keeps the time): what its
/// time limit counts from. Zero where `/proc` cannot tell.
fn age() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    // Field 22 (start time, in clock ticks since boot) counts from the
    // command name's closing parenthesis, which may hold spaces.
    let start = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19))
        .and_then(|t| t.parse::<f64>().ok());
    let up = uptime
        .split_whitespace()
        .next()
        .and_then(|u| u.parse::<f64>().ok());
    // SAFETY: sysconf takes no pointer.
    #[allow(unsafe_code)]
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    match (start, up) {
        (Some(start), Some(up)) if ticks > 0 => {
            Duration::from_secs_f64((up - start / ticks as f64).max(0.0))
        }
        _ => Duration::ZERO,
    }
}

fn name() -> String {
    WorkerEnv::from_env()
        .ok()
        .and_then(|e| e.job_id)
        .unwrap_or_else(|| format!("pid-{}", std::process::id()))
}

/// This process's resident memory now and at its peak, in bytes, from
/// `/proc/self/status` (0 where it cannot be read).
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whose bytes a held partition's are: the input's, or a step's output's.
#[derive(Debug, Clone, Copy)]
enum Of {
    Input,
    Step(usize),
}

impl Of {
    fn codec(self, info: &Program) -> &dyn DataCodec {
        match self {
            Of::Input => info.input(),
            Of::Step(s) => info.steps()[s].output(),
        }
    }
}

/// A partition this worker holds for tasks still to run.
struct Entry {
    of: Of,
    part: Mutex<Option<AnyPartition>>,
}

/// What a worker shares between its reader, its task threads and the
/// threads of its peer port.
struct Shared {
    info: Program,
    models: RwLock<Vec<Option<Model>>>,
    /// The partitions it holds, by the task that made them.
    store: Mutex<HashMap<u32, Arc<Entry>>>,
    /// The connection's writing end.
    outbox: Mutex<BufWriter<Stream>>,
    secret: Secret,
    name: String,
    /// Idle connections to other workers' peer ports, by address.
    peers: Mutex<HashMap<String, Vec<TcpStream>>>,
    /// When the handshake with the scheduler ended: answers say when
    /// their runs ended from here (`FromWorker::Done::ended_us`).
    joined: Instant,
}

impl Shared {
    /// Sends a message to the scheduler (frames after it), flushed.
    fn tell(&self, msg: &FromWorker, frames: &[&[u8]]) -> Result<(), WireError> {
        self.queue(msg, frames, true)
    }

    /// Sends a message to the scheduler, flushed unless `flush` is false
    /// (more answers follow at once: they go out together).
    fn queue(&self, msg: &FromWorker, frames: &[&[u8]], flush: bool) -> Result<(), WireError> {
        let mut w = lock(&self.outbox);
        put(&mut *w, msg, frames)?;
        if flush {
            w.flush()?;
        }
        Ok(())
    }

    fn held(&self, task: u32) -> Option<Arc<Entry>> {
        lock(&self.store).get(&task).cloned()
    }

    /// The bytes of a held partition, for a peer (`None`: not held).
    fn encode(&self, task: u32) -> Option<graph::Result<Vec<u8>>> {
        let entry = self.held(task)?;
        let part = lock(&entry.part);
        part.as_ref().map(|p| entry.of.codec(&self.info).encode(p))
    }
}

/// A task as the reader received it.
struct Work {
    task: u32,
    op: TaskOp,
    inputs: Vec<Input>,
    frames: Vec<Vec<u8>>,
    output: Output,
    /// Transforms to run after it, each on the previous one's output.
    then: Vec<Next>,
    /// A load's first keys (they name the partition in errors), read when
    /// it arrived: loads arrive in partition order, so the forward-only
    /// input is read in that order however the task threads take them.
    /// `None`: the input had passed it.
    keys: Option<Vec<Key>>,
}

fn run(plan: Plan<'_>) -> std::result::Result<(), String> {
    let Plan {
        program: info,
        inputs,
    } = plan;
    if let Some(first) = inputs.first() {
        first.drop_passed();
    }
    let inputs: Vec<Mutex<Option<InputPartition<'_>>>> =
        inputs.into_iter().map(|i| Mutex::new(Some(i))).collect();
    let contract = WorkerEnv::from_env()?;
    let addr = contract.scheduler.clone();
    let secret = read_secret(&contract.secret_file).map_err(|e| {
        format!(
            "reading the secret file {}: {e}",
            contract.secret_file.display()
        )
    })?;
    let threads = contract.threads.get();
    let (heartbeat, death) = (contract.heartbeat, contract.death_timeout);

    // A worker kept from the driver's last compute may wait for the next
    // as long as for a silent scheduler; then it leaves, quietly.
    let kept = WorkerEnv::after_from_env().is_some();
    let mut stream = match connect(&addr, death) {
        Err(_) if kept => return Ok(()),
        connected => connected?,
    };
    stream
        .set_read_timeout(Some(if kept { death } else { Duration::from_secs(30) }))
        .map_err(|e| e.to_string())?;
    // Other workers reach this one on the address it reaches the scheduler
    // from.
    let ip = stream.local_ip().map_err(|e| e.to_string())?;
    let listener = TcpListener::bind((ip, 0)).map_err(|e| format!("binding a peer port: {e}"))?;
    let peer = listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .to_string();
    let fingerprint = program_fingerprint(&info);
    let me = WorkerInfo {
        fingerprint,
        resources: contract.resources,
        threads: u32::try_from(threads).unwrap_or(u32::MAX),
        name: name(),
        peer,
        // A job's time limit counts from its start, also for a worker
        // started again in it.
        lifetime_ms: contract.lifetime.map_or(0, |l| {
            u64::try_from(l.saturating_sub(age()).as_millis())
                .unwrap_or(u64::MAX)
                .max(1)
        }),
    };
    // Before its time limit the grid asks the job to leave (SIGUSR1): it
    // drains instead of dying with its tasks.
    if let Err(e) = crate::distributed::interrupt::drain_on_usr1() {
        eprintln!("bob-pipelines worker: cannot catch SIGUSR1 ({e}): it will not drain");
    }
    let joined = match wire::connect(&mut stream, &secret, me.clone()) {
        Ok(_) => Instant::now(),
        // No next compute came (the driver ended, or works on something
        // else for long): the job is released.
        Err(e) if kept && !matches!(e, WireError::Rejected(_)) => return Ok(()),
        Err(WireError::Rejected(reason)) => {
            return Err(format!(
                "the scheduler at {addr} rejected this worker: {reason}"
            ));
        }
        Err(e) => return Err(format!("handshake with the scheduler at {addr}: {e}")),
    };
    // From now on a scheduler that says nothing for `death` is gone.
    stream
        .set_read_timeout(Some(death))
        .map_err(|e| e.to_string())?;
    stream.tune();
    let shared = Arc::new(Shared {
        models: RwLock::new(vec![None; info.steps().len()]),
        info,
        store: Mutex::new(HashMap::new()),
        outbox: Mutex::new(BufWriter::new(
            stream.try_clone().map_err(|e| e.to_string())?,
        )),
        secret: secret.clone(),
        name: me.name,
        peers: Mutex::new(HashMap::new()),
        joined,
    });
    serve_peers(listener, &shared, fingerprint).map_err(|e| format!("the peer port: {e}"))?;
    {
        let shared = shared.clone();
        std::thread::spawn(move || {
            let mut draining = false;
            loop {
                let (rss, peak) = memory();
                if shared
                    .tell(&FromWorker::Heartbeat { rss, peak }, &[])
                    .is_err()
                {
                    break;
                }
                if !draining && crate::distributed::interrupt::drain_asked() {
                    draining = true;
                    if shared.tell(&FromWorker::Draining, &[]).is_err() {
                        break;
                    }
                }
                std::thread::sleep(heartbeat);
            }
        });
    }

    let (tx, rx) = mpsc::channel::<Work>();
    let rx = Mutex::new(rx);
    let inputs = &inputs;
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let (rx, shared) = (&rx, &*shared);
            scope.spawn(move || {
                loop {
                    let work = lock(rx).recv();
                    let Ok(work) = work else { return };
                    if crate::distributed::interrupt::drain_asked() {
                        // Draining: a run not started goes back.
                        if shared
                            .tell(&FromWorker::Returned { task: work.task }, &[])
                            .is_err()
                        {
                            return;
                        }
                        continue;
                    }
                    if chain(shared, inputs, work).is_err() {
                        return; // the connection is gone; the reader ends the process
                    }
                }
            });
        }
        let outcome = read(&shared, inputs, stream, &tx, (&addr, death));
        // The process ends here, or starts again for the next compute: task
        // threads still running end with it.
        std::process::exit(match outcome {
            Ok(Leave::Exit) => 0,
            Ok(Leave::Again) => {
                let e = again(fingerprint);
                eprintln!(
                    "bob-pipelines worker {}: cannot start again for the next compute: {e}",
                    shared.name
                );
                1
            }
            Err(e) => {
                eprintln!("bob-pipelines worker {}: {e}", shared.name);
                1
            }
        })
    })
}

/// How a worker leaves its scheduler.
enum Leave {
    /// The process ends.
    Exit,
    /// It starts again, for the driver's next compute.
    Again,
}

/// Reads the scheduler's messages until it says to leave.
fn read(
    shared: &Shared,
    inputs: &[Mutex<Option<InputPartition<'_>>>],
    stream: Stream,
    tx: &mpsc::Sender<Work>,
    (addr, death): (&str, Duration),
) -> std::result::Result<Leave, String> {
    let info = &shared.info;
    let mut reader = BufReader::new(WaitInPoll(stream));
    // Kept after the compute for the program's next: silence or a closed
    // connection now mean there is no next.
    let mut waiting = false;
    loop {
        let msg: ToWorker = match get(&mut reader) {
            Ok(msg) => msg,
            Err(_) if waiting => return Ok(Leave::Exit),
            Err(e) => return Err(gone(addr, death, &e)),
        };
        match msg {
            ToWorker::Model { step } => {
                let bytes = get_frames(&mut reader, 1).map_err(|e| gone(addr, death, &e))?;
                let step = step as usize;
                let s = info.steps().get(step).ok_or_else(|| {
                    format!("the scheduler sent a model for step {step}, which this program does not have")
                })?;
                let model = s.decode_model(&bytes[0]).map_err(|e| e.to_string())?;
                shared
                    .models
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)[step] = Some(model);
            }
            ToWorker::Run {
                task,
                op,
                inputs: from,
                output,
                then,
            } => {
                let sent = from.iter().filter(|i| matches!(i, Input::Sent)).count();
                let frames = get_frames(&mut reader, u32::try_from(sent).unwrap_or(u32::MAX))
                    .map_err(|e| gone(addr, death, &e))?;
                let keys = match op {
                    TaskOp::Load { partition, .. } => inputs
                        .get(partition as usize)
                        .and_then(|i| lock(i).as_ref().map(|i| i.first_keys(KEYS_SHOWN)))
                        .and_then(std::result::Result::ok),
                    _ => None,
                };
                let work = Work {
                    task,
                    op,
                    inputs: from,
                    frames,
                    output,
                    then,
                    keys,
                };
                if tx.send(work).is_err() {
                    return Err("its task threads stopped".to_owned());
                }
            }
            ToWorker::Free { task } => {
                lock(&shared.store).remove(&task);
            }
            ToWorker::Hand { task } => {
                let bytes = match shared.encode(task) {
                    Some(Ok(b)) => Some(b),
                    Some(Err(e)) => return Err(format!("encoding the output of task {task}: {e}")),
                    None => None,
                };
                let held = bytes.is_some();
                let frames: Vec<&[u8]> = bytes.as_deref().into_iter().collect();
                shared
                    .tell(&FromWorker::Handed { task, held }, &frames)
                    .map_err(|e| gone(addr, death, &e))?;
                lock(&shared.store).remove(&task);
            }
            ToWorker::Heartbeat => {}
            ToWorker::Shutdown => return Ok(Leave::Exit),
            ToWorker::Wait => waiting = true,
            ToWorker::Again => return Ok(Leave::Again),
        }
    }
}

/// The scheduler's connection, read by waiting in `poll(2)` first. A
/// thread blocked in `read` on a Unix socket is woken each time the far end
/// reads what this end wrote (the kernel wakes every sleeper of the socket
/// when room to write comes back), and the far end pays for that wake-up;
/// one blocked in `poll` waits for data only. (At 128 workers those
/// wake-ups were a seventh of the scheduler's CPU.)
struct WaitInPoll(Stream);

impl std::io::Read for WaitInPoll {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Stream::Unix(s) = &self.0 {
            if !wire::wait_readable(s.as_raw_fd(), s.read_timeout()?)? {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
        }
        self.0.read(buf)
    }
}

/// Connects, retrying while the scheduler does not answer yet (a job may
/// start before its scheduler listens, e.g. after a driver restart).
fn connect(addr: &str, patience: Duration) -> std::result::Result<Stream, String> {
    let t0 = Instant::now();
    let mut wait = Duration::from_millis(10);
    loop {
        match Stream::connect(addr) {
            Ok(s) => return Ok(s),
            Err(e) if t0.elapsed() >= patience => {
                return Err(format!(
                    "cannot reach the scheduler at {addr} after {patience:?}: {e}"
                ));
            }
            Err(_) => {
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(1));
            }
        }
    }
}

fn gone(addr: &str, death: Duration, e: &WireError) -> String {
    if is_timeout(e) {
        format!("the scheduler at {addr} was silent for {death:?}; exiting")
    } else {
        format!("the scheduler at {addr} is gone ({e}); exiting")
    }
}

/// How a task ended, short of an error.
enum Outcome {
    /// Done; `shipped` is the output sent to the driver (when it is),
    /// `read` what a load from checkpoint files read.
    Done {
        counts: Counts,
        keys: Vec<Key>,
        shipped: Option<Vec<u8>>,
        read: Option<ReadStats>,
    },
    /// The input had passed the partition to load.
    CannotLoad,
    /// Input `input` could not be had.
    Unreachable { input: u32, error: String },
}

/// Runs a task and the transforms chained after it, each on the previous
/// one's output, while they succeed; each is answered on its own.
fn chain(
    shared: &Shared,
    inputs: &[Mutex<Option<InputPartition<'_>>>],
    mut work: Work,
) -> std::result::Result<(), WireError> {
    let mut then = std::mem::take(&mut work.then).into_iter().peekable();
    let mut prev = work.task;
    // Answers before the chain's last go out with the next one.
    if !execute(shared, inputs, work, then.peek().is_none())? {
        return Ok(());
    }
    while let Some(next) = then.next() {
        let work = Work {
            task: next.task,
            op: next.op,
            inputs: vec![Input::Here {
                task: prev,
                last: true,
            }],
            frames: Vec::new(),
            output: next.output,
            then: Vec::new(),
            keys: None,
        };
        prev = next.task;
        if !execute(shared, inputs, work, then.peek().is_none())? {
            return Ok(());
        }
    }
    Ok(())
}

/// Runs one task and sends its answer (flushed when `last`, or when it
/// is not done); returns whether it is done.
fn execute(
    shared: &Shared,
    inputs: &[Mutex<Option<InputPartition<'_>>>],
    work: Work,
    last: bool,
) -> std::result::Result<bool, WireError> {
    let t0 = Instant::now();
    let (task, op) = (work.task, work.op);
    let info = &shared.info;
    let outcome =
        catch_unwind(AssertUnwindSafe(|| run_op(shared, inputs, work))).unwrap_or_else(|panic| {
            let message = panic_message(&*panic);
            let what = match op {
                TaskOp::Load { partition, .. } => format!("loading partition {partition}"),
                TaskOp::Fit { step } => {
                    format!("step `{}`: fit", info.steps()[step as usize].name())
                }
                TaskOp::Transform { step } => {
                    format!("step `{}`: transform", info.steps()[step as usize].name())
                }
            };
            Err(graph::Error::Step(
                format!("{what} failed: panicked: {message}").into(),
            ))
        });
    let ended = Instant::now();
    let done = matches!(outcome, Ok(Outcome::Done { .. }));
    match outcome {
        Ok(Outcome::Done {
            counts,
            keys,
            shipped,
            read,
        }) => {
            let frame: Vec<&[u8]> = shipped.as_deref().into_iter().collect();
            shared.queue(
                &FromWorker::Done {
                    task,
                    samples: counts.samples as u64,
                    failed: counts.failed as u64,
                    micros: u64::try_from((ended - t0).as_micros()).unwrap_or(u64::MAX),
                    ended_us: u64::try_from(
                        ended.saturating_duration_since(shared.joined).as_micros(),
                    )
                    .unwrap_or(u64::MAX),
                    keys: keys.iter().map(|k| k.as_str().to_owned()).collect(),
                    shipped: shipped.is_some(),
                    read,
                },
                &frame,
                last,
            )
        }
        Ok(Outcome::CannotLoad) => shared.tell(&FromWorker::CannotLoad { task }, &[]),
        Ok(Outcome::Unreachable { input, error }) => {
            shared.tell(&FromWorker::Unreachable { task, input, error }, &[])
        }
        Err(e) => shared.tell(
            &FromWorker::Failed {
                task,
                error: e.to_string(),
            },
            &[],
        ),
    }?;
    Ok(done)
}

/// An input of a task, had: its own partition, or one held here that a fit
/// reads in place.
enum Got {
    Own(AnyPartition),
    Held(Arc<Entry>),
}

/// Gets `input`, a partition of `codec`'s type; `take`: the task needs its
/// own partition (a transform), not one it may read in place (a fit).
/// `Err((task, why))` when it cannot be had.
fn get_input(
    shared: &Shared,
    input: &Input,
    frames: &mut impl Iterator<Item = Vec<u8>>,
    codec: &dyn DataCodec,
    take: bool,
) -> graph::Result<std::result::Result<Got, (u32, String)>> {
    match input {
        Input::Sent => {
            let bytes = frames.next().unwrap_or_default();
            Ok(Ok(Got::Own(codec.decode(&bytes)?)))
        }
        Input::Peer { task, addr } => {
            let mut part = None;
            let fetched = fetch_many(shared, addr, &[*task], |_, bytes| {
                part = Some(codec.decode(&bytes)?);
                Ok(())
            })?;
            Ok(fetched.and_then(|()| {
                part.map(Got::Own)
                    .ok_or_else(|| (*task, format!("the worker at {addr} sent nothing")))
            }))
        }
        Input::Here { task, last } => {
            let missing = || (*task, format!("`{}` no longer holds it", shared.name));
            let entry = if take && *last {
                lock(&shared.store).remove(task)
            } else {
                shared.held(*task)
            };
            let Some(entry) = entry else {
                return Ok(Err(missing()));
            };
            if !take {
                return Ok(Ok(Got::Held(entry)));
            }
            let mut part = lock(&entry.part);
            if *last {
                return Ok(part.take().map(Got::Own).ok_or_else(missing));
            }
            // Another task reads it too: this one gets a copy.
            let Some(p) = part.as_ref() else {
                return Ok(Err(missing()));
            };
            let bytes = codec.encode(p)?;
            drop(part);
            Ok(Ok(Got::Own(codec.decode(&bytes)?)))
        }
    }
}

/// A load, a fit or a transform.
fn run_op(
    shared: &Shared,
    inputs: &[Mutex<Option<InputPartition<'_>>>],
    work: Work,
) -> graph::Result<Outcome> {
    let info = &shared.info;
    let steps = info.steps();
    let Work {
        task,
        op,
        inputs: from,
        frames,
        output,
        then: _,
        keys,
    } = work;
    let mut frames = frames.into_iter();
    let mut read = None;
    let (out, of, counts, keys) = match op {
        TaskOp::Load {
            partition,
            from: Some(step),
        } => {
            let input = inputs.get(partition as usize).and_then(|i| lock(i).take());
            let (Some(input), Some(_)) = (input, keys) else {
                return Ok(Outcome::CannotLoad);
            };
            let step = step as usize;
            let models = shared.models.read().unwrap_or_else(PoisonError::into_inner);
            let model = |s: usize| models.get(s).cloned().flatten();
            let (part, counts) = match read_step_outputs(info, step, input, &model, true) {
                Ok(r) => r,
                Err(graph::Error::InputTaken { .. }) => return Ok(Outcome::CannotLoad),
                Err(e) => return Err(name_checkpoint_input(info, step, e)),
            };
            drop(models);
            read = Some(counts.into());
            let first = steps[step].output().first_keys(&part, KEYS_SHOWN)?;
            (part, Of::Step(step), Counts::default(), first)
        }
        TaskOp::Load { partition, .. } => {
            let input = inputs.get(partition as usize).and_then(|i| lock(i).take());
            let (Some(input), Some(keys)) = (input, keys) else {
                return Ok(Outcome::CannotLoad);
            };
            let loaded = match input.load() {
                Ok(l) => l,
                Err(graph::Error::InputTaken { .. }) => return Ok(Outcome::CannotLoad),
                Err(e) => return Err(e),
            };
            let counts = Counts {
                samples: info.input().len(&loaded.partition)?,
                failed: loaded.load_failed,
            };
            (loaded.partition, Of::Input, counts, keys)
        }
        TaskOp::Transform { step } => {
            let step = step as usize;
            let codec = info.input_of(step);
            let Some(input) = from.first() else {
                return Err(graph::Error::bug("a transform with no input"));
            };
            let input = match get_input(shared, input, &mut frames, codec, true)? {
                Ok(Got::Own(p)) => p,
                Ok(Got::Held(_)) => return Err(graph::Error::bug("a transform's input in place")),
                Err((input, error)) => return Ok(Outcome::Unreachable { input, error }),
            };
            let model = shared.models.read().unwrap_or_else(PoisonError::into_inner)[step].clone();
            let (out, counts) = steps[step]
                .transform(model.as_ref(), input)
                .map_err(|e| name_checkpoint_input(info, step, e))?;
            save_outputs(info, step, &out)?;
            (out, Of::Step(step), counts, Vec::new())
        }
        TaskOp::Fit { step } => {
            let step = step as usize;
            let codec = info.input_of(step);
            let mut got: Vec<Option<Got>> = (0..from.len()).map(|_| None).collect();
            let mut peers: HashMap<&str, Vec<(usize, u32)>> = HashMap::new();
            for (i, input) in from.iter().enumerate() {
                if let Input::Peer { task, addr } = input {
                    peers.entry(addr.as_str()).or_default().push((i, *task));
                    continue;
                }
                match get_input(shared, input, &mut frames, codec, false)? {
                    Ok(g) => got[i] = Some(g),
                    Err((input, error)) => return Ok(Outcome::Unreachable { input, error }),
                }
            }
            match fetch_from_peers(shared, codec, &peers)? {
                Ok(parts) => {
                    for (i, p) in parts {
                        got[i] = Some(Got::Own(p));
                    }
                }
                Err((input, error)) => return Ok(Outcome::Unreachable { input, error }),
            }
            let got: Vec<Got> = got
                .into_iter()
                .map(|g| g.ok_or_else(|| graph::Error::bug("a fit's input was not had")))
                .collect::<graph::Result<_>>()?;
            // Partitions held here are read in place, under their locks:
            // no other task reads them while their step fits.
            let guards: Vec<Option<MutexGuard<'_, Option<AnyPartition>>>> = got
                .iter()
                .map(|g| match g {
                    Got::Held(e) => Some(lock(&e.part)),
                    Got::Own(_) => None,
                })
                .collect();
            let mut refs = Vec::with_capacity(got.len());
            for (i, (g, guard)) in got.iter().zip(&guards).enumerate() {
                match (g, guard) {
                    (Got::Own(p), _) => refs.push(p),
                    (Got::Held(_), Some(guard)) => match guard.as_ref() {
                        Some(p) => refs.push(p),
                        None => {
                            let input = match &from[i] {
                                Input::Here { task, .. } => *task,
                                _ => 0,
                            };
                            let error = format!("`{}` no longer holds it", shared.name);
                            return Ok(Outcome::Unreachable { input, error });
                        }
                    },
                    (Got::Held(_), None) => return Err(graph::Error::bug("an unlocked input")),
                }
            }
            let model = steps[step]
                .fit(&refs)
                .map_err(|e| name_checkpoint_input(info, step, e))?;
            drop(refs);
            drop(guards);
            // The partitions fetched for the fit are dropped on a thread of
            // their own: freeing a million samples took a fifth of the
            // seed's fit, while the runs that wait for its model could
            // not start.
            let _ = std::thread::Builder::new()
                .name("drop-fit-inputs".to_owned())
                .spawn(move || drop(got));
            let bytes = steps[step].encode_model(&model)?;
            save_model(info, step, &bytes)?;
            shared
                .models
                .write()
                .unwrap_or_else(PoisonError::into_inner)[step] = Some(model);
            return Ok(Outcome::Done {
                counts: Counts::default(),
                keys: Vec::new(),
                shipped: Some(bytes),
                read: None,
            });
        }
    };
    let shipped = match output {
        Output::Send => Some(of.codec(info).encode(&out)?),
        Output::Keep => {
            let entry = Arc::new(Entry {
                of,
                part: Mutex::new(Some(out)),
            });
            lock(&shared.store).insert(task, entry);
            None
        }
        Output::Drop => None,
    };
    Ok(Outcome::Done {
        counts,
        keys,
        shipped,
        read,
    })
}

/// What a fit gets from its peers: its inputs (place, partition), or the
/// first that could not be had.
type FromPeers = graph::Result<std::result::Result<Vec<(usize, AnyPartition)>, (u32, String)>>;

/// Fetched partitions waiting to be decoded, as they come.
struct Arrivals {
    queue: Mutex<Queue>,
    came: std::sync::Condvar,
}

#[derive(Default)]
struct Queue {
    arrived: Vec<Arrived>,
    /// Peers still sending.
    sending: usize,
    /// A decoder failed: the others stop.
    failed: bool,
}

impl Arrivals {
    /// Partitions to come from `peers` peers.
    fn new(peers: usize) -> Self {
        Arrivals {
            queue: Mutex::new(Queue {
                sending: peers,
                ..Queue::default()
            }),
            came: std::sync::Condvar::new(),
        }
    }

    fn push(&self, place: usize, bytes: Vec<u8>) {
        lock(&self.queue).arrived.push((place, bytes));
        self.came.notify_one();
    }

    /// One peer has sent all it will.
    fn sent(&self) {
        lock(&self.queue).sending -= 1;
        self.came.notify_all();
    }

    /// Decodes partitions as they come, until every peer has sent all and
    /// none is left, or a decoder failed.
    fn decode(&self, codec: &dyn DataCodec) -> graph::Result<Vec<(usize, AnyPartition)>> {
        let mut parts = Vec::new();
        loop {
            let next = {
                let mut q = lock(&self.queue);
                loop {
                    if q.failed {
                        return Ok(parts);
                    }
                    if let Some(next) = q.arrived.pop() {
                        break next;
                    }
                    if q.sending == 0 {
                        return Ok(parts);
                    }
                    q = self.came.wait(q).unwrap_or_else(PoisonError::into_inner);
                }
            };
            match codec.decode(&next.1) {
                Ok(p) => parts.push((next.0, p)),
                Err(e) => {
                    lock(&self.queue).failed = true;
                    self.came.notify_all();
                    return Err(e);
                }
            }
        }
    }
}

/// A fetched partition: its place among the fit's inputs, and its bytes.
type Arrived = (usize, Vec<u8>);

/// Says, when dropped, that a peer has sent all it will.
struct Sending<'a>(&'a Arrivals);

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.0.sent();
    }
}

/// A fit's inputs held by other workers (by peer address: place among the
/// fit's inputs, task), fetched from every peer at once, each on a thread
/// of its own. The fit's thread, which would wait, decodes them as they
/// come, and each peer's thread helps once its peer has sent all: decoding
/// a partition takes longer than encoding it (the seed's fit: 0.25 s of
/// decoding against 0.1 s of encoding on the peer), and the fit waits for
/// the last.
fn fetch_from_peers(
    shared: &Shared,
    codec: &dyn DataCodec,
    peers: &HashMap<&str, Vec<(usize, u32)>>,
) -> FromPeers {
    let arrivals = &Arrivals::new(peers.len());
    std::thread::scope(|scope| {
        let handles: Vec<_> = peers
            .iter()
            .map(|(addr, wanted)| {
                scope.spawn(move || {
                    let tasks: Vec<u32> = wanted.iter().map(|w| w.1).collect();
                    let fetched = {
                        // Said even if fetching panics: no decoder waits for ever.
                        let _sent = Sending(arrivals);
                        fetch_many(shared, addr, &tasks, |k, bytes| {
                            arrivals.push(wanted[k].0, bytes);
                            Ok(())
                        })
                    };
                    (fetched, arrivals.decode(codec))
                })
            })
            .collect();
        let mut parts = arrivals.decode(codec);
        let mut unreachable = None;
        for h in handles {
            let (fetched, decoded) = h.join().unwrap_or_else(|panic| {
                let e = graph::Error::Step(
                    format!(
                        "decoding a fetched partition panicked: {}",
                        panic_message(&*panic)
                    )
                    .into(),
                );
                (Ok(Ok(())), Err(e))
            });
            match (fetched?, decoded) {
                (_, Err(e)) => parts = Err(e),
                (Err(first), Ok(_)) if unreachable.is_none() => unreachable = Some(first),
                (_, Ok(more)) => {
                    if let Ok(p) = &mut parts {
                        p.extend(more);
                    }
                }
            }
        }
        let parts = parts?;
        Ok(unreachable.map_or(Ok(parts), Err))
    })
}

/// How long a peer may take to send a partition it was asked for.
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);

/// The outputs of `tasks` from the worker whose peer port is `addr`, all
/// asked for at once (it encodes the next while this one decodes), each
/// handed to `got` (with its place in `tasks`) as it comes. `Ok(Err((task,
/// why)))` when one cannot be had; `Err` is `got`'s own.
fn fetch_many(
    shared: &Shared,
    addr: &str,
    tasks: &[u32],
    mut got: impl FnMut(usize, Vec<u8>) -> graph::Result<()>,
) -> graph::Result<std::result::Result<(), (u32, String)>> {
    let first = tasks.first().copied().unwrap_or_default();
    let pooled = lock(&shared.peers).get_mut(addr).and_then(Vec::pop);
    let mut conn = match pooled {
        Some(c) => c,
        None => match dial(shared, addr) {
            Ok(c) => c,
            Err(e) => return Ok(Err((first, format!("connecting to {addr}: {e}")))),
        },
    };
    let asked = (|| -> std::result::Result<(), WireError> {
        let mut asks = Vec::new();
        for &task in tasks {
            put(&mut asks, &Fetch { task }, &[])?;
        }
        conn.write_all(&asks)?;
        Ok(())
    })();
    if let Err(e) = asked {
        return Ok(Err((first, format!("asking the worker at {addr}: {e}"))));
    }
    for (i, &task) in tasks.iter().enumerate() {
        let answer = match get::<Held>(&mut conn) {
            Ok(Held::Here) => get_frames(&mut conn, 1).map(|mut f| f.pop()),
            Ok(Held::Missing) => Ok(None),
            Err(e) => Err(e),
        };
        match answer {
            Ok(Some(bytes)) => got(i, bytes)?,
            Ok(None) => {
                return Ok(Err((
                    task,
                    format!("the worker at {addr} no longer holds it"),
                )));
            }
            Err(e) => {
                return Ok(Err((
                    task,
                    format!("fetching from the worker at {addr}: {e}"),
                )));
            }
        }
    }
    lock(&shared.peers)
        .entry(addr.to_owned())
        .or_default()
        .push(conn);
    Ok(Ok(()))
}

/// A new, authenticated connection to a peer port.
fn dial(shared: &Shared, addr: &str) -> std::result::Result<TcpStream, WireError> {
    let to: SocketAddr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| WireError::Malformed(format!("no address for {addr}")))?;
    let mut conn = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.set_write_timeout(Some(Duration::from_secs(10)))?;
    let me = WorkerInfo {
        fingerprint: program_fingerprint(&shared.info),
        resources: Vec::new(),
        threads: 0,
        name: shared.name.clone(),
        peer: String::new(),
        lifetime_ms: 0,
    };
    wire::connect(&mut conn, &shared.secret, me)?;
    conn.set_read_timeout(Some(FETCH_TIMEOUT))?;
    let _ = conn.set_nodelay(true);
    Ok(conn)
}

/// Serves other workers on `listener`: each authenticated connection asks
/// for partitions this worker holds. A refused connection is told to the
/// scheduler, which names it in the report.
fn serve_peers(
    listener: TcpListener,
    shared: &Arc<Shared>,
    fingerprint: u64,
) -> std::io::Result<()> {
    let shared = shared.clone();
    let secret = shared.secret.clone();
    wire::accept_peers(
        Listener::Tcp(listener),
        secret,
        fingerprint,
        (Duration::from_secs(5), MAX_HANDSHAKES),
        move |arrival| {
            let what = match arrival {
                Arrival::Joined { stream, .. } => {
                    let shared = shared.clone();
                    std::thread::spawn(move || serve_peer(&shared, stream));
                    return true;
                }
                Arrival::Refused { peer, error } => format!("from {peer}: {error}"),
                Arrival::TurnedAway => {
                    format!("closed at once: {MAX_HANDSHAKES} others were in their handshake")
                }
            };
            shared.tell(&FromWorker::Refused { what }, &[]).is_ok()
        },
        Arc::new(AtomicBool::new(false)),
    )
}

/// Answers one peer's fetches until it leaves.
fn serve_peer(shared: &Shared, stream: Stream) {
    stream.tune();
    let _ = stream.set_read_timeout(None);
    let Ok(w) = stream.try_clone() else { return };
    let mut r = BufReader::new(stream);
    let mut w = BufWriter::new(w);
    while let Ok(Fetch { task }) = get::<Fetch>(&mut r) {
        let sent = match shared.encode(task) {
            Some(Ok(bytes)) => put(&mut w, &Held::Here, &[&bytes]),
            Some(Err(_)) | None => put(&mut w, &Held::Missing, &[]),
        };
        if sent.is_err() || w.flush().is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use bob_pipelines_estimator::{Batch, BoxError, Pipeline, SampleResult, Step, Transformer};
    use bob_pipelines_sample::Sample;

    use super::*;

    #[test]
    fn the_schedulers_unix_socket_is_read_after_poll_and_its_timeout_holds() {
        use std::io::Read as _;
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut r = WaitInPoll(Stream::Unix(ours));
        let mut buf = [0u8; 8];
        // Nothing sent: the read ends at the socket's timeout, as a
        // blocking read would.
        let t0 = Instant::now();
        let e = r.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
        assert!(
            t0.elapsed() >= Duration::from_millis(40),
            "{:?}",
            t0.elapsed()
        );
        theirs.write_all(b"run").unwrap();
        assert_eq!(r.read(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"run");
        // The far end closed: the end of the stream, not a wait.
        drop(theirs);
        assert_eq!(r.read(&mut buf).unwrap(), 0);
    }

    struct Same;
    impl Transformer for Same {
        type Input = u32;
        type Output = u32;
        fn transform(&self, b: &Batch<'_, u32>) -> Result<Vec<SampleResult<u32>>, BoxError> {
            Ok(b.iter().map(|x| Ok(*x)).collect())
        }
    }

    #[test]
    fn fetched_partitions_decode_once_whichever_thread_takes_them_and_bad_bytes_are_an_error() {
        let codec = graph::data_codec(bob_pipelines_checkpoint::default_codec::<u32>());
        let codec = &*codec;
        let part = |i: usize| -> Vec<u8> {
            let p: AnyPartition = Box::new(vec![Ok::<_, graph::Failed>(Sample::new(
                format!("k{i}"),
                i as u32,
            ))]);
            codec.encode(&p).unwrap()
        };
        // Two peers of 50 partitions each: the waiting thread and both
        // peers' threads decode; every partition comes out once, whole.
        let two = Arrivals::new(2);
        let decoded: Vec<(usize, AnyPartition)> = std::thread::scope(|scope| {
            let peers: Vec<_> = (0..2)
                .map(|p| {
                    let (two, part) = (&two, &part);
                    scope.spawn(move || {
                        {
                            let _sent = Sending(two);
                            for k in 0..50 {
                                two.push(p * 50 + k, part(p * 50 + k));
                            }
                        }
                        two.decode(codec).unwrap()
                    })
                })
                .collect();
            let mut all = two.decode(codec).unwrap();
            for h in peers {
                all.extend(h.join().unwrap());
            }
            all
        });
        let mut places: Vec<usize> = decoded
            .into_iter()
            .map(|(at, p)| {
                let p = p.downcast::<Vec<graph::Slot<u32>>>().unwrap();
                assert_eq!(*p[0].as_ref().unwrap().data(), at as u32);
                at
            })
            .collect();
        places.sort_unstable();
        assert_eq!(places, (0..100).collect::<Vec<_>>());
        // Damaged bytes from a peer whose thread then dies: an error, and
        // the waiting thread does not wait for ever.
        let one = Arrivals::new(1);
        let outcome = std::thread::scope(|scope| {
            scope.spawn(|| {
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    let _sent = Sending(&one);
                    one.push(0, part(0));
                    one.push(1, b"not a partition".to_vec());
                    panic!("a peer's thread dies");
                }));
            });
            one.decode(codec)
        });
        assert!(
            matches!(outcome, Err(graph::Error::Partition { .. })),
            "{outcome:?}"
        );
    }

    /// A worker's shared state over a one-step program, holding task 5's
    /// output (the input partition `[7, 8]`), whose scheduler is the far
    /// end of the returned connection.
    fn worker(secret: &Secret) -> (Arc<Shared>, TcpStream) {
        let p = Pipeline::new().then(Step::new(Same).name("same"));
        let samples = (7..9u32).map(|i| Sample::new(format!("k{i}"), i));
        let info = p.transform(samples).npartitions(1).info().unwrap().clone();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let outbox = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (scheduler, _) = listener.accept().unwrap();
        let part: AnyPartition = Box::new(vec![
            Ok::<_, graph::Failed>(Sample::new("k7", 7u32)),
            Ok(Sample::new("k8", 8u32)),
        ]);
        let shared = Arc::new(Shared {
            models: RwLock::new(vec![None]),
            info,
            store: Mutex::new(HashMap::from([(
                5,
                Arc::new(Entry {
                    of: Of::Input,
                    part: Mutex::new(Some(part)),
                }),
            )])),
            outbox: Mutex::new(BufWriter::new(Stream::Tcp(outbox))),
            secret: secret.clone(),
            name: "test".to_owned(),
            peers: Mutex::new(HashMap::new()),
            joined: Instant::now(),
        });
        (shared, scheduler)
    }

    #[test]
    fn a_peer_port_refuses_strangers_tells_the_scheduler_and_serves_peers() {
        let secret = Secret::random().unwrap();
        let (shared, scheduler) = worker(&secret);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        serve_peers(listener, &shared, program_fingerprint(&shared.info)).unwrap();

        // Garbage, a huge length prefix, and the wrong secret.
        for junk in [
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            (1u32 << 30).to_le_bytes().to_vec(),
        ] {
            let mut c = TcpStream::connect(&addr).unwrap();
            c.write_all(&junk).unwrap();
        }
        let (impostor, _) = worker(&Secret::random().unwrap());
        let mut missing = None;
        let fetched = fetch_many(&impostor, &addr, &[5], |_, _| {
            missing = Some(());
            Ok(())
        })
        .unwrap();
        assert!(fetched.is_err() && missing.is_none(), "{fetched:?}");
        let mut r = BufReader::new(scheduler);
        r.get_ref()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        for _ in 0..3 {
            match get::<FromWorker>(&mut r).unwrap() {
                FromWorker::Refused { what } => assert!(what.contains("from 127.0.0.1"), "{what}"),
                other => panic!("{other:?}"),
            }
        }

        // A peer with the secret gets the partition, then learns what is
        // not held.
        let (peer, _keep) = worker(&secret);
        let codec = peer.info.input();
        let mut got = Vec::new();
        let ok = fetch_many(&peer, &addr, &[5], |_, bytes| {
            got = codec.first_keys(&codec.decode(&bytes)?, 5)?;
            Ok(())
        })
        .unwrap();
        assert_eq!(ok, Ok(()));
        let keys: Vec<&str> = got.iter().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["k7", "k8"]);
        let gone = fetch_many(&peer, &addr, &[6], |_, _| Ok(())).unwrap();
        assert!(
            matches!(&gone, Err((6, why)) if why.contains("no longer holds it")),
            "{gone:?}"
        );
    }
}
