//! The live dashboard: one page the driver serves while a distributed run
//! computes — per-step progress, the task stream, the workers, warnings and
//! failures — updated every second from a JSON snapshot.
//!
//! It is a [`Progress`] (it sees the run's events, as the bars do, and hands
//! them on), plus a small synchronous HTTP server (`tiny_http`, no async
//! runtime) on 127.0.0.1. The page, its script and its style are in this
//! binary: nothing is fetched from elsewhere. Every request must carry the
//! run's random token (`?token=…`; cluster login nodes are shared): without
//! it, or with another, the answer is 403.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use bob_pipelines_graph::{Done, Error, Names, Report, TaskGraph, TaskKind};
use serde::Serialize;

use crate::progress::{Progress, row_of, rows};

/// Task bars kept for the page's task stream (the most recent).
const STREAM: usize = 2_000;

/// One row of the progress panel.
#[derive(Debug, Clone, Serialize)]
struct StepState {
    name: String,
    total: u64,
    done: u64,
    failed: u64,
    running: u64,
    /// Its fit: `to fit`, `fitting`, `fitted` (none: not fitted in this
    /// run).
    fit: Option<&'static str>,
}

/// One bar of the task stream, as the page gets it.
#[derive(Debug, Clone, Serialize)]
struct BarView<'s> {
    task: &'s str,
    step: usize,
    worker: &'s str,
    start_ms: f64,
    end_ms: f64,
    failed: bool,
}

/// One bar of the task stream, as it is kept: indices, no allocation per
/// task (the run's hot path feeds it).
#[derive(Debug, Clone, Copy)]
struct Bar {
    task: usize,
    step: usize,
    /// Index in `State::names`; 0 is the driver.
    worker: usize,
    start_ms: f64,
    end_ms: f64,
    failed: bool,
}

/// A worker as the page lists it.
#[derive(Debug, Clone, Default, Serialize)]
struct WorkerState {
    kind: String,
    state: String,
    tasks: u64,
    /// Resident memory now and at its peak, in bytes (0: not said yet).
    memory: u64,
    peak: u64,
}

/// What the page shows, and what it is made from.
#[derive(Debug, Default)]
struct State {
    compute: String,
    finished: bool,
    steps: Vec<StepState>,
    stream: VecDeque<Bar>,
    /// By name; the page lists them in name order. A hash map: a task's
    /// end looks its worker up, and a tree's string compares each touch
    /// memory the 128 workers of a big run keep out of the cache.
    workers: HashMap<String, WorkerState>,
    warnings: Vec<String>,
    failures: Vec<String>,
    start: Option<Instant>,
    /// Each task, by index: its state, and while it runs, when it started
    /// and where. One entry per task, so that each event of a task touches
    /// one place in memory (at 128 workers the dashboard's per-task cost is
    /// its cache misses).
    tasks: Vec<TaskCell>,
    /// Each task's id, by index (shared with the graph).
    ids: Vec<Arc<str>>,
    /// Each task's place in the graph panel: row (loads, each step's
    /// transforms, each fit), column (its partition; a fit's is 0).
    cells: Vec<(usize, usize)>,
    /// The graph panel's row names.
    rows: Vec<String>,
}

/// A task as the page sees it.
#[derive(Debug, Clone, Copy)]
struct TaskCell {
    /// `w`aiting, `r`unning, `d`one, `f`ailed.
    state: u8,
    /// Whether it is a fit.
    fit: bool,
    /// Its row in the progress panel: 0 for a load, then its step's.
    row: u32,
    /// Where it runs (`Pending::names` index; 0, the driver, until told).
    worker: u32,
    /// The samples of a load's partition (what its end adds to `done`).
    samples: u64,
    /// When it started, while it runs.
    began: Option<Instant>,
}

/// A task's event, kept in order until the page's state is next needed.
#[derive(Debug, Clone, Copy)]
enum TaskEvent {
    Started {
        task: usize,
        at: Instant,
    },
    RanOn {
        task: usize,
        /// `Pending::names` index.
        worker: usize,
    },
    Ended {
        task: usize,
        /// When it began (a distributed task: by its worker's clock);
        /// `None` for a failed task, shown from when it started.
        began: Option<Instant>,
        at: Instant,
        samples: u64,
        failed: u64,
        error: bool,
    },
}

/// Task events applied to the state at once when this many wait.
const APPLY_AT: usize = 8_192;

/// The task events not yet in the state, and who ran tasks. A task's
/// three events are appended here, where the end of the list stays in the
/// cache, and applied together when the page asks for a snapshot, a task
/// fails, the run ends, or [`APPLY_AT`] wait: applied one by one as they
/// came, each touched the state's memory cold (at 128 workers the
/// dashboard cost the scheduler about 3 µs per task).
#[derive(Debug)]
struct Pending {
    events: Vec<TaskEvent>,
    /// Where tasks ran: the driver first, then workers as they are named.
    names: Names,
}

impl Pending {
    /// Nothing pending; the driver is who ran tasks first.
    fn new() -> Self {
        let mut names = Names::default();
        names.number("driver");
        Pending {
            events: Vec::new(),
            names,
        }
    }
}

/// What the page is made from. Locked in this order: `pending`, `state`.
#[derive(Debug)]
struct Shared {
    pending: Mutex<Pending>,
    state: Mutex<State>,
}

impl Shared {
    /// The state with every pending event applied, and the names of who
    /// ran tasks.
    fn current(&self) -> (MutexGuard<'_, Pending>, MutexGuard<'_, State>) {
        let mut pending = lock(&self.pending);
        let mut state = lock(&self.state);
        state.apply(&mut pending);
        (pending, state)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    /// Applies the pending task events, in order.
    fn apply(&mut self, pending: &mut Pending) {
        let start = self.start.unwrap_or_else(Instant::now);
        let ms = |t: Instant| t.saturating_duration_since(start).as_secs_f64() * 1e3;
        for ev in pending.events.drain(..) {
            match ev {
                TaskEvent::Started { task, at } => {
                    let Some(t) = self.tasks.get_mut(task) else {
                        continue;
                    };
                    t.began.get_or_insert(at);
                    t.state = b'r';
                    if let Some(r) = self.steps.get_mut(t.row as usize) {
                        if t.fit {
                            r.fit = Some("fitting");
                        } else {
                            r.running += 1;
                        }
                    }
                }
                TaskEvent::RanOn { task, worker } => {
                    let Some(name) = pending.names.get(worker) else {
                        continue;
                    };
                    match self.workers.get_mut(&**name) {
                        Some(w) => w.tasks += 1,
                        None => self.workers.entry(name.to_string()).or_default().tasks += 1,
                    }
                    if let Some(t) = self.tasks.get_mut(task) {
                        if t.began.is_some() {
                            t.worker = u32::try_from(worker).unwrap_or(0);
                        }
                    }
                }
                TaskEvent::Ended {
                    task,
                    began,
                    at,
                    samples,
                    failed,
                    error,
                } => {
                    let Some(t) = self.tasks.get_mut(task) else {
                        continue;
                    };
                    t.state = if error { b'f' } else { b'd' };
                    let began = began.or(t.began.take()).unwrap_or(at);
                    let worker = std::mem::take(&mut t.worker) as usize;
                    let (row, fit, loaded) = (t.row as usize, t.fit, t.samples);
                    if let Some(r) = self.steps.get_mut(row) {
                        if !fit {
                            r.running = r.running.saturating_sub(1);
                        }
                        if !error {
                            if fit {
                                r.fit = Some("fitted");
                            } else if row == 0 {
                                r.done += loaded;
                            } else {
                                r.done += samples;
                                r.failed += failed;
                            }
                        }
                    }
                    if self.stream.len() == STREAM {
                        self.stream.pop_front();
                    }
                    self.stream.push_back(Bar {
                        task,
                        step: row,
                        worker,
                        start_ms: ms(began),
                        end_ms: ms(at),
                        failed: error,
                    });
                }
            }
        }
    }
}

/// One row of the graph panel: a letter per task, by state.
#[derive(Serialize)]
struct GraphRow<'s> {
    name: &'s str,
    cells: String,
}

/// The JSON snapshot the page polls.
#[derive(Serialize)]
struct Snapshot<'s> {
    compute: &'s str,
    elapsed_ms: f64,
    finished: bool,
    steps: &'s [StepState],
    stream: Vec<BarView<'s>>,
    workers: BTreeMap<&'s str, &'s WorkerState>,
    warnings: &'s [String],
    failures: &'s [String],
    graph: Vec<GraphRow<'s>>,
}

/// A run's dashboard: its state, fed by the run's events, and the progress
/// it hands them on to.
pub struct Dashboard {
    shared: Arc<Shared>,
    inner: Arc<dyn Progress>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dashboard")
    }
}

impl Dashboard {
    /// A dashboard that also hands every event to `inner`.
    pub fn new(inner: Arc<dyn Progress>) -> Self {
        Dashboard {
            shared: Arc::new(Shared {
                pending: Mutex::new(Pending::new()),
                state: Mutex::new(State::default()),
            }),
            inner,
        }
    }

    /// `f` on the state, every pending task event applied first.
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.shared.current().1)
    }

    /// `f` on the state as it is (for what task events do not touch).
    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut lock(&self.shared.state))
    }

    /// Adds a task event (its worker's name, for `RanOn`, looked up here).
    fn record(&self, event: impl FnOnce(&mut Pending) -> TaskEvent) {
        let mut pending = lock(&self.shared.pending);
        let ev = event(&mut pending);
        pending.events.push(ev);
        if pending.events.len() >= APPLY_AT {
            lock(&self.shared.state).apply(&mut pending);
        }
    }

    /// The page's snapshot, as JSON.
    fn snapshot(shared: &Shared) -> String {
        let (pending, s) = shared.current();
        let name = |i: usize| pending.names.get(i).map_or("driver", |n| &**n);
        let view = Snapshot {
            compute: &s.compute,
            elapsed_ms: s.start.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1e3),
            finished: s.finished,
            steps: &s.steps,
            stream: s
                .stream
                .iter()
                .map(|b| BarView {
                    task: s.ids.get(b.task).map_or("", |id| id),
                    step: b.step,
                    worker: name(b.worker),
                    start_ms: b.start_ms,
                    end_ms: b.end_ms,
                    failed: b.failed,
                })
                .collect(),
            workers: s.workers.iter().map(|(n, w)| (n.as_str(), w)).collect(),
            warnings: &s.warnings,
            failures: &s.failures,
            graph: {
                let mut rows: Vec<Vec<u8>> = vec![Vec::new(); s.rows.len()];
                for (&(r, c), t) in s.cells.iter().zip(&s.tasks) {
                    let st = t.state;
                    let row = &mut rows[r];
                    if row.len() <= c {
                        row.resize(c + 1, b'w');
                    }
                    row[c] = st;
                }
                s.rows
                    .iter()
                    .zip(rows)
                    .map(|(name, cells)| GraphRow {
                        name,
                        cells: String::from_utf8(cells).unwrap_or_default(),
                    })
                    .collect()
            },
        };
        serde_json::to_string(&view).unwrap_or_default()
    }

    /// Serves the page on `addr` (port 0: any free one; 8787 taken: the
    /// next free one up to 8887) until the returned [`Served`] is dropped.
    ///
    /// # Errors
    /// When no port can be bound.
    pub fn serve(&self, addr: SocketAddr) -> std::io::Result<Served> {
        let tries: Vec<SocketAddr> = if addr.port() == DEFAULT_PORT {
            (DEFAULT_PORT..DEFAULT_PORT + 100)
                .map(|p| SocketAddr::new(addr.ip(), p))
                .collect()
        } else {
            vec![addr]
        };
        let mut last = None;
        let server = tries.iter().find_map(|a| match tiny_http::Server::http(a) {
            Ok(s) => Some(s),
            Err(e) => {
                last = Some(e.to_string());
                None
            }
        });
        let server = server.ok_or_else(|| {
            std::io::Error::other(format!(
                "no port for the dashboard at {addr}: {}",
                last.unwrap_or_default()
            ))
        })?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("the dashboard is not on an IP address"))?;
        let token = crate::wire::random_token()?;
        let url = format!("http://{bound}/?token={token}");
        let stop = Arc::new(AtomicBool::new(false));
        let server = Arc::new(server);
        let (state, halt, serving) = (
            Arc::clone(&self.shared),
            Arc::clone(&stop),
            Arc::clone(&server),
        );
        // It waits for requests without a timeout: dropping `Served` wakes
        // it (`unblock`). A 100 ms timeout that it woke to look at its stop
        // flag made every compute end up to 100 ms late.
        let thread = std::thread::spawn(move || {
            while !halt.load(Ordering::Acquire) {
                if let Ok(request) = serving.recv() {
                    let _ = answer(request, &token, &state);
                }
            }
        });
        Ok(Served {
            url,
            stop,
            server,
            thread: Some(thread),
        })
    }
}

/// The port the dashboard asks for first (dask's).
pub const DEFAULT_PORT: u16 = 8787;

/// The variable that turns the dashboard off (`off`) or puts it elsewhere
/// (`ADDR:PORT`).
pub const ENV: &str = "BOB_PIPELINES_DASHBOARD";

/// A dashboard being served: its URL (with the token); dropping it stops
/// the server.
pub struct Served {
    /// Where the page is, token included.
    pub url: String,
    stop: Arc<AtomicBool>,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one request: the page, the snapshot, 403 without the token, 404.
fn answer(request: tiny_http::Request, token: &str, state: &Shared) -> std::io::Result<()> {
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let given = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .unwrap_or("");
    let typed = |body: String, content_type: &str| {
        let r = tiny_http::Response::from_string(body);
        match tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()) {
            Ok(h) => r.with_header(h),
            Err(()) => r,
        }
    };
    if given != token {
        return request.respond(
            tiny_http::Response::from_string(
                "403: this dashboard needs its token (see the URL the run printed)",
            )
            .with_status_code(403),
        );
    }
    match path {
        "/" => request.respond(typed(PAGE.to_owned(), "text/html; charset=utf-8")),
        "/state.json" => request.respond(typed(Dashboard::snapshot(state), "application/json")),
        _ => request.respond(tiny_http::Response::from_string("404").with_status_code(404)),
    }
}

impl Progress for Dashboard {
    fn started(&self, graph: &TaskGraph) {
        let info = graph.program();
        let (names, totals) = rows(graph);
        let mut steps: Vec<StepState> = names
            .into_iter()
            .zip(totals)
            .map(|(name, total)| StepState {
                name: name.to_owned(),
                total,
                done: 0,
                failed: 0,
                running: 0,
                fit: None,
            })
            .collect();
        for t in graph.tasks() {
            if let TaskKind::Fit { step } = t.kind() {
                steps[step + 1].fit = Some("to fit");
            }
        }
        let samples: usize = info.partition_lens().iter().sum();
        // The graph panel: loads, then each step's fit and transforms.
        let mut rows = vec!["load".to_owned()];
        let mut row_of_step = Vec::new();
        for (i, st) in info.steps().iter().enumerate() {
            let fits = graph
                .tasks()
                .iter()
                .any(|t| matches!(t.kind(), TaskKind::Fit { step } if step == i));
            if fits {
                rows.push(format!("{}.fit", st.name()));
            }
            rows.push(st.name().to_owned());
            row_of_step.push(rows.len() - 1);
        }
        let cells = graph
            .tasks()
            .iter()
            .map(|t| match t.kind() {
                TaskKind::Load { partition, .. } => (0, partition),
                TaskKind::Transform { step, partition } => (row_of_step[step], partition),
                TaskKind::Fit { step } => (row_of_step[step] - 1, 0),
            })
            .collect();
        let tasks = (0..graph.len())
            .map(|i| {
                let t = graph.task(i);
                TaskCell {
                    state: b'w',
                    fit: matches!(t.kind(), TaskKind::Fit { .. }),
                    row: u32::try_from(row_of(graph, i)).unwrap_or(0),
                    worker: 0,
                    samples: t.samples() as u64,
                    began: None,
                }
            })
            .collect();
        *lock(&self.shared.pending) = Pending::new();
        self.with_state(|s| {
            *s = State {
                compute: format!(
                    "{:?} of {samples} samples in {} partitions{}",
                    info.mode(),
                    info.npartitions(),
                    info.lists_line()
                ),
                steps,
                start: Some(Instant::now()),
                ids: graph
                    .tasks()
                    .iter()
                    .map(|t| t.shared_id().clone())
                    .collect(),
                tasks,
                cells,
                rows,
                ..State::default()
            };
        });
        self.inner.started(graph);
    }

    fn task_started(&self, graph: &TaskGraph, task: usize) {
        let at = Instant::now();
        self.record(|_| TaskEvent::Started { task, at });
        self.inner.task_started(graph, task);
    }

    fn task_ran_on(&self, graph: &TaskGraph, task: usize, worker: &str) {
        self.record(|p| TaskEvent::RanOn {
            task,
            worker: p.names.number(worker),
        });
        self.inner.task_ran_on(graph, task, worker);
    }

    fn task_finished(&self, graph: &TaskGraph, done: &Done) {
        // Where and when it ran, not when the driver heard: answers to a
        // worker's chain of runs come together.
        self.record(|_| TaskEvent::Ended {
            task: done.task,
            began: done.ended.checked_sub(done.elapsed),
            at: done.ended,
            samples: done.counts.samples as u64,
            failed: done.counts.failed as u64,
            error: false,
        });
        self.inner.task_finished(graph, done);
    }

    fn task_failed(&self, graph: &TaskGraph, task: usize, error: &Error) {
        let at = Instant::now();
        self.record(|_| TaskEvent::Ended {
            task,
            began: None,
            at,
            samples: 0,
            failed: 0,
            error: true,
        });
        self.with(|s| s.failures.push(error.to_string()));
        self.inner.task_failed(graph, task, error);
    }

    fn finished(&self, report: &Report) {
        self.with(|s| s.finished = true);
        self.inner.finished(report);
    }

    fn warning(&self, message: &str) {
        self.with_state(|s| s.warnings.push(message.to_owned()));
        self.inner.warning(message);
    }

    fn worker_said(&self, worker: &str, line: &str) {
        self.inner.worker_said(worker, line);
    }

    fn worker_state(&self, worker: &str, kind: &str, state: &str) {
        self.with_state(|s| {
            let w = s.workers.entry(worker.to_owned()).or_default();
            w.kind = kind.to_owned();
            w.state = state.to_owned();
        });
        self.inner.worker_state(worker, kind, state);
    }

    fn worker_memory(&self, worker: &str, rss: u64, peak: u64) {
        self.with_state(|s| {
            if let Some(w) = s.workers.get_mut(worker) {
                w.memory = rss;
                w.peak = peak;
            }
        });
        self.inner.worker_memory(worker, rss, peak);
    }

    fn info(&self, line: &str) {
        self.inner.info(line);
    }
}

/// The page: HTML, style and script in one, nothing fetched but the
/// snapshot.
const PAGE: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>bob-pipelines</title>
<style>body{font:14px sans-serif;margin:1.5em}table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left}
.bar{background:#eee;width:300px;height:12px;position:relative}.fill{background:#4a8;height:12px}.failed{color:#c00}</style></head>
<body><h1>bob-pipelines</h1><p id="compute"></p>
<h2>Progress</h2><table id="steps"></table>
<h2>Task stream</h2><svg id="stream" width="1000" height="40"></svg>
<h2>Task graph</h2><p>a square per task: waiting, <span style="color:#e90">running</span>, <span style="color:#4a8">done</span>, <span style="color:#d00">failed</span></p><svg id="graph" width="1000" height="20"></svg>
<h2>Workers</h2><table id="workers"></table>
<h2>Warnings</h2><ul id="warnings"></ul><h2>Failures</h2><ul id="failures" class="failed"></ul>
<script>
const token=new URLSearchParams(location.search).get('token');
function esc(s){return String(s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));}
async function tick(){
 // A run that ended takes its server with it: give up on a poll after 2 s.
 let c=new AbortController(),t=setTimeout(()=>c.abort(),2000),r,s;
 try{r=await fetch('state.json?token='+encodeURIComponent(token),{signal:c.signal});if(!r.ok)return;s=await r.json();}
 catch(e){return;}finally{clearTimeout(t);}
 document.getElementById('compute').textContent=s.compute+' — '+(s.elapsed_ms/1000).toFixed(1)+' s'+(s.finished?' — finished':'');
 document.getElementById('steps').innerHTML='<tr><th>step</th><th></th><th>done</th><th>failed</th><th>running</th><th>samples/s</th><th>fit</th></tr>'+
  s.steps.map(x=>'<tr class="step"><td>'+esc(x.name)+'</td><td><div class="bar"><div class="fill" style="width:'+(x.total?300*x.done/x.total:0)+'px"></div></div></td><td class="done">'+x.done+'/'+x.total+'</td><td>'+x.failed+'</td><td>'+x.running+'</td><td>'+(s.elapsed_ms>0?Math.round(1000*x.done/s.elapsed_ms):0)+'</td><td>'+esc(x.fit||'')+'</td></tr>').join('');
 let g=document.getElementById('graph'),colour={w:'#ddd',r:'#e90',d:'#4a8',f:'#d00'};
 g.setAttribute('height',12*s.graph.length+4);
 g.innerHTML=s.graph.map((row,i)=>'<text x="0" y="'+(12*i+10)+'" font-size="10">'+esc(row.name)+'</text>'+
  [...row.cells].map((c,j)=>'<rect class="cell-'+c+'" x="'+(150+j*(Math.min(10,840/Math.max(1,row.cells.length))))+'" y="'+(12*i+1)+'" width="'+Math.max(1,Math.min(10,840/Math.max(1,row.cells.length))-1)+'" height="10" fill="'+colour[c]+'"></rect>').join('')).join('');
 let rows=[...new Set(s.stream.map(b=>b.worker))],end=Math.max(1,...s.stream.map(b=>b.end_ms)),svg=document.getElementById('stream');
 svg.setAttribute('height',20*rows.length+10);
 svg.innerHTML=rows.map((w,i)=>'<text x="0" y="'+(20*i+14)+'" font-size="11">'+esc(w)+'</text>').join('')+
  s.stream.map(b=>'<rect x="'+(150+840*b.start_ms/end)+'" y="'+(20*rows.indexOf(b.worker)+3)+'" width="'+Math.max(0.5,840*(b.end_ms-b.start_ms)/end)+'" height="14" fill="'+(b.failed?'#d00':'hsl('+(b.step*67%360)+',60%,55%)')+'"><title>'+esc(b.task)+'</title></rect>').join('');
 const mib=b=>b?(b/1048576).toFixed(0)+' MiB':'';
 document.getElementById('workers').innerHTML='<tr><th>worker</th><th>kind</th><th>state</th><th>tasks</th><th>memory</th><th>peak</th></tr>'+
  Object.entries(s.workers).map(([n,w])=>'<tr class="worker"><td>'+esc(n)+'</td><td>'+esc(w.kind)+'</td><td>'+esc(w.state)+'</td><td>'+w.tasks+'</td><td class="memory">'+mib(w.memory)+'</td><td>'+mib(w.peak)+'</td></tr>').join('');
 document.getElementById('warnings').innerHTML=s.warnings.map(w=>'<li>'+esc(w)+'</li>').join('');
 document.getElementById('failures').innerHTML=s.failures.map(w=>'<li>'+esc(w)+'</li>').join('');
}
tick();setInterval(tick,1000);
</script></body></html>"#;

#[cfg(test)]
mod tests {
    use bob_pipelines_estimator::{BoxError, Pipeline, SampleResult, Step, Transformer};
    use bob_pipelines_graph::Counts;
    use bob_pipelines_sample::Sample;

    use super::*;
    use crate::progress::Silent;

    struct Same;
    impl Transformer for Same {
        type Input = u32;
        type Output = u32;
        fn transform(
            &self,
            b: &bob_pipelines_estimator::Batch<'_, u32>,
        ) -> Result<Vec<SampleResult<u32>>, BoxError> {
            Ok(b.iter().map(|x| Ok(*x)).collect())
        }
    }

    fn done(task: usize, samples: usize, failed: usize) -> Done {
        Done {
            task,
            counts: Counts { samples, failed },
            elapsed: std::time::Duration::ZERO,
            ended: Instant::now(),
        }
    }

    #[test]
    fn task_events_show_in_order_in_the_snapshot_however_many_wait() {
        let p = Pipeline::new().then(Step::new(Same).name("same"));
        let samples: Vec<_> = (0..4u32).map(|i| Sample::new(format!("k{i}"), i)).collect();
        let g = TaskGraph::new(p.transform(samples).npartitions(2).info().unwrap());
        let d = Dashboard::new(Arc::new(Silent));
        d.started(&g);
        let load = (0..g.len())
            .find(|&t| matches!(g.task(t).kind(), TaskKind::Load { .. }))
            .unwrap();
        let transform = g.dependents(load)[0];
        d.worker_state("w1", "default", "connected");
        d.task_started(&g, load);
        d.task_started(&g, transform);
        d.task_ran_on(&g, load, "w1");
        d.task_ran_on(&g, transform, "w1");
        d.task_finished(&g, &done(load, 2, 0));
        let json: serde_json::Value =
            serde_json::from_str(&Dashboard::snapshot(&d.shared)).unwrap();
        // One load of two samples done, its transform running on w1.
        assert_eq!(json["steps"][0]["done"], 2, "{json}");
        assert_eq!(json["steps"][1]["running"], 1, "{json}");
        assert_eq!(json["workers"]["w1"]["tasks"], 2, "{json}");
        assert_eq!(json["workers"]["w1"]["state"], "connected", "{json}");
        assert_eq!(json["stream"][0]["worker"], "w1", "{json}");
        assert_eq!(json["stream"][0]["task"], g.task(load).id(), "{json}");
        // More events than wait at once: applied as they pile up, and
        // still in order.
        for _ in 0..APPLY_AT {
            d.task_started(&g, transform);
        }
        d.task_finished(&g, &done(transform, 2, 1));
        d.task_failed(&g, transform, &bob_pipelines_graph::Error::bug("test"));
        let json: serde_json::Value =
            serde_json::from_str(&Dashboard::snapshot(&d.shared)).unwrap();
        assert_eq!(json["steps"][1]["done"], 2, "{json}");
        assert_eq!(json["steps"][1]["failed"], 1, "{json}");
        assert_eq!(json["stream"].as_array().unwrap().len(), 3, "{json}");
        assert_eq!(json["stream"][2]["failed"], true, "{json}");
        assert_eq!(json["failures"].as_array().unwrap().len(), 1, "{json}");
        // The graph panel: the load done, the transform failed.
        let cells: Vec<String> = json["graph"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["cells"].as_str().unwrap().to_owned())
            .collect();
        assert!(
            cells[0].starts_with('d') && cells[1].starts_with('f'),
            "{cells:?}"
        );
    }
}
