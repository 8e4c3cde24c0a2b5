//! The worker: the user's own program, started again by a launcher with the
//! scheduler's address in its environment. Its `compute` call lands here.

use std::io::{BufReader, BufWriter, Write};
use std::net::TcpStream;
use std::panic::{AssertUnwindSafe, catch_unwind};

use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bob_pipelines_graph::{
    self as graph, AnyPartition, Counts, Model, Program, name_checkpoint_input, panic_message,
    program_fingerprint, save_model, save_outputs,
};

use super::protocol::{FromWorker, TaskOp, ToWorker, WorkerEnv, get, get_frames, is_timeout, put};
use crate::wire::{self, WireError, WorkerInfo, read_secret};

/// Serves the scheduler named in the environment, then ends the process:
/// status 0 when the scheduler said the work is done, 1 (with the reason on
/// stderr) when it could not be reached, rejected this worker, or went away.
pub(crate) fn serve(program: Program) -> ! {
    let code = match run(program) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bob-pipelines worker {}: {e}", name());
            1
        }
    };
    std::process::exit(code)
}

/// Whether `program` is not the one the driver runs (the driver's program
/// fingerprint differs): an earlier compute of the same program.
pub(crate) fn earlier_compute(program: &Program) -> bool {
    WorkerEnv::program_from_env().is_some_and(|want| want != program_fingerprint(program))
}

fn name() -> String {
    WorkerEnv::from_env()
        .ok()
        .and_then(|e| e.job_id)
        .unwrap_or_else(|| format!("pid-{}", std::process::id()))
}

type Models = Arc<RwLock<Vec<Option<Model>>>>;
/// The connection's writing end, shared by the task threads and the heartbeat.
type Outbox = Arc<Mutex<BufWriter<TcpStream>>>;

struct Work {
    task: u32,
    op: TaskOp,
    inputs: Vec<Vec<u8>>,
}

fn run(info: Program) -> std::result::Result<(), String> {
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

    let mut stream = connect(&addr, death)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let me = WorkerInfo {
        fingerprint: program_fingerprint(&info),
        resources: contract.resources,
        threads: u32::try_from(threads).unwrap_or(u32::MAX),
        name: name(),
    };
    wire::connect(&mut stream, &secret, me).map_err(|e| match e {
        WireError::Rejected(reason) => {
            format!("the scheduler at {addr} rejected this worker: {reason}")
        }
        e => format!("handshake with the scheduler at {addr}: {e}"),
    })?;
    // From now on a scheduler that says nothing for `death` is gone.
    stream
        .set_read_timeout(Some(death))
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let writer: Outbox = Arc::new(Mutex::new(BufWriter::new(
        stream.try_clone().map_err(|e| e.to_string())?,
    )));
    let models: Models = Arc::new(RwLock::new(vec![None; info.steps().len()]));
    let info = Arc::new(info);

    let (tx, rx) = mpsc::channel::<Work>();
    let rx = Arc::new(Mutex::new(rx));
    for _ in 0..threads {
        let (rx, info, models, writer) = (rx.clone(), info.clone(), models.clone(), writer.clone());
        std::thread::spawn(move || {
            loop {
                let work = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                let Ok(work) = work else { return };
                if execute(&info, &models, &writer, work).is_err() {
                    return; // the connection is gone; the reader ends the process
                }
            }
        });
    }
    {
        let writer = writer.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(heartbeat);
                let mut w = writer.lock().unwrap_or_else(PoisonError::into_inner);
                if put(&mut *w, &FromWorker::Heartbeat, &[]).is_err() || w.flush().is_err() {
                    return;
                }
            }
        });
    }

    let mut reader = BufReader::new(stream);
    loop {
        let msg: ToWorker = get(&mut reader).map_err(|e| gone(&addr, death, &e))?;
        match msg {
            ToWorker::Model { step } => {
                let bytes = get_frames(&mut reader, 1).map_err(|e| gone(&addr, death, &e))?;
                let step = step as usize;
                let s = info
                    .steps()
                    .get(step)
                    .ok_or_else(|| format!("the scheduler sent a model for step {step}, which this program does not have"))?;
                let model = s.decode_model(&bytes[0]).map_err(|e| e.to_string())?;
                models.write().unwrap_or_else(PoisonError::into_inner)[step] = Some(model);
            }
            ToWorker::Run { task, op, inputs } => {
                let inputs = get_frames(&mut reader, inputs).map_err(|e| gone(&addr, death, &e))?;
                if tx.send(Work { task, op, inputs }).is_err() {
                    return Err("its task threads stopped".to_owned());
                }
            }
            ToWorker::Heartbeat => {}
            ToWorker::Shutdown => return Ok(()),
        }
    }
}

/// Connects, retrying while the scheduler does not answer yet (a job may
/// start before its scheduler listens, e.g. after a driver restart).
fn connect(addr: &str, patience: Duration) -> std::result::Result<TcpStream, String> {
    let t0 = Instant::now();
    let mut wait = Duration::from_millis(10);
    loop {
        match TcpStream::connect(addr) {
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

/// Runs one task and sends its answer.
fn execute(
    info: &Program,
    models: &Models,
    writer: &Outbox,
    work: Work,
) -> std::result::Result<(), WireError> {
    let t0 = Instant::now();
    let Work { task, op, inputs } = work;
    let outcome = catch_unwind(AssertUnwindSafe(|| run_op(info, models, op, inputs)))
        .unwrap_or_else(|panic| {
            let message = panic_message(&*panic);
            let (step, what) = match op {
                TaskOp::Fit { step } => (step, "fit"),
                TaskOp::Transform { step } => (step, "transform"),
            };
            let step = info.steps()[step as usize].name();
            Err(graph::Error::Step(
                format!("step `{step}`: {what} failed: panicked: {message}").into(),
            ))
        });
    let mut w = writer.lock().unwrap_or_else(PoisonError::into_inner);
    match outcome {
        Ok((counts, bytes)) => put(
            &mut *w,
            &FromWorker::Done {
                task,
                samples: counts.samples as u64,
                failed: counts.failed as u64,
                micros: u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX),
            },
            &[&bytes],
        )?,
        Err(e) => put(
            &mut *w,
            &FromWorker::Failed {
                task,
                error: e.to_string(),
            },
            &[],
        )?,
    }
    w.flush()?;
    Ok(())
}

/// A fit or a transform on decoded inputs; returns the encoded result.
fn run_op(
    info: &Program,
    models: &Models,
    op: TaskOp,
    inputs: Vec<Vec<u8>>,
) -> graph::Result<(Counts, Vec<u8>)> {
    let steps = info.steps();
    match op {
        TaskOp::Transform { step } => {
            let step = step as usize;
            let bytes = inputs.into_iter().next().unwrap_or_default();
            let input = info.input_of(step).decode(&bytes)?;
            drop(bytes);
            let model = models.read().unwrap_or_else(PoisonError::into_inner)[step].clone();
            let (out, counts) = steps[step]
                .transform(model.as_ref(), input)
                .map_err(|e| name_checkpoint_input(info, step, e))?;
            save_outputs(info, step, &out)?;
            let bytes = steps[step].output().encode(&out)?;
            Ok((counts, bytes))
        }
        TaskOp::Fit { step } => {
            let step = step as usize;
            let data = info.input_of(step);
            let parts = inputs
                .iter()
                .map(|b| data.decode(b))
                .collect::<graph::Result<Vec<AnyPartition>>>()?;
            drop(inputs);
            let refs: Vec<&AnyPartition> = parts.iter().collect();
            let model = steps[step]
                .fit(&refs)
                .map_err(|e| name_checkpoint_input(info, step, e))?;
            drop(parts);
            let bytes = steps[step].encode_model(&model)?;
            save_model(info, step, &bytes)?;
            models.write().unwrap_or_else(PoisonError::into_inner)[step] = Some(model);
            Ok((Counts::default(), bytes))
        }
    }
}
