//! Building the task graph, its ids, resources, fingerprint and picture.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use crate::program::{Mode, Program};

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// Loads input partition `partition`: the samples themselves (delayed
    /// samples are read here), or, with `from`, that step's outputs from its
    /// checkpoint (samples whose file is missing or corrupt are recomputed
    /// there and then).
    Load {
        /// The partition.
        partition: usize,
        /// The step whose checkpoint it comes from.
        from: Option<usize>,
    },
    /// Fits step `step` on all of its input partitions.
    Fit {
        /// The step's index.
        step: usize,
    },
    /// Transforms partition `partition` with step `step`.
    Transform {
        /// The step's index.
        step: usize,
        /// The partition.
        partition: usize,
    },
}

/// One task: its stable id, what it does, what it waits for, what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Shared with the report's records of the task's runs.
    id: Arc<str>,
    kind: TaskKind,
    deps: Vec<usize>,
    resource: Option<String>,
    samples: usize,
}

impl Task {
    /// The stable id: `load-3`, `<step>.fit`, `<step>.transform-3`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// [`id`](Self::id), shared.
    pub fn shared_id(&self) -> &Arc<str> {
        &self.id
    }

    /// What it does.
    pub fn kind(&self) -> TaskKind {
        self.kind
    }

    /// The tasks it waits for (indices into the graph).
    pub fn deps(&self) -> &[usize] {
        &self.deps
    }

    /// The resource it needs (bob's `fit_tag` / `transform_tag`), if any.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// How many input samples it touches.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The index of the step it runs, if any.
    pub fn step(&self) -> Option<usize> {
        match self.kind {
            TaskKind::Load { .. } => None,
            TaskKind::Fit { step } | TaskKind::Transform { step, .. } => Some(step),
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// The task graph of a run: tasks in a topological order (every task after
/// the tasks it depends on).
#[derive(Debug, Clone)]
pub struct TaskGraph {
    info: Program,
    tasks: Vec<Task>,
    dependents: Vec<Vec<usize>>,
    outputs: Vec<usize>,
    fingerprint: u64,
}

impl TaskGraph {
    /// The graph of a run. A fit learns from the first list's partitions
    /// only; every other list goes through every step, each transform after
    /// the fit of its step (the steps before the first fit start at once).
    pub fn new(info: &Program) -> Self {
        let lens = info.partition_lens();
        let steps = info.steps();
        let any_fit = (0..steps.len()).any(|i| info.fits(i));
        let mut tasks: Vec<Task> = Vec::new();
        let push = |tasks: &mut Vec<Task>, t: Task| {
            tasks.push(t);
            tasks.len() - 1
        };
        // Ids name the list (`probe:load-0`) and the partition within it.
        let prefix: Vec<(String, usize)> = (0..lens.len())
            .map(|p| {
                let list = &info.lists()[info.list_of(p)];
                let name = if list.name.is_empty() {
                    String::new()
                } else {
                    format!("{}:", list.name)
                };
                (name, p - list.partitions.start)
            })
            .collect();
        // A `fit` with nothing to fit has nothing to load from its list.
        let needed = |p: usize| info.list_of(p) > 0 || info.mode() != Mode::Fit || any_fit;
        let start = |p: usize| info.checkpoint().and_then(|c| c.start(p));
        let mut current: Vec<Option<usize>> = lens
            .iter()
            .enumerate()
            .map(|(p, &n)| {
                let (list, q) = &prefix[p];
                needed(p).then(|| {
                    let from = start(p);
                    push(
                        &mut tasks,
                        Task {
                            id: match from {
                                Some(s) => format!("{list}{}.load-{q}", steps[s].name()),
                                None => format!("{list}load-{q}"),
                            }
                            .into(),
                            kind: TaskKind::Load { partition: p, from },
                            deps: vec![],
                            resource: None,
                            samples: n,
                        },
                    )
                })
            })
            .collect();
        let first = info.lists()[0].partitions.clone();
        for (s, step) in steps.iter().enumerate() {
            let fit = info.fits(s).then(|| {
                push(
                    &mut tasks,
                    Task {
                        id: format!("{}.fit", step.name()).into(),
                        kind: TaskKind::Fit { step: s },
                        deps: current[first.clone()].iter().flatten().copied().collect(),
                        resource: step.opts().fit_tag.clone(),
                        samples: lens[first.clone()].iter().sum(),
                    },
                )
            });
            for (p, cur) in current.iter_mut().enumerate() {
                let Some(c) = cur else { continue };
                if s >= info.end_of(p) || start(p).is_some_and(|from| s <= from) {
                    continue; // past its end, or read from the checkpoint
                }
                let mut deps = vec![*c];
                deps.extend(fit);
                let (list, q) = &prefix[p];
                *c = push(
                    &mut tasks,
                    Task {
                        id: format!("{list}{}.transform-{q}", step.name()).into(),
                        kind: TaskKind::Transform {
                            step: s,
                            partition: p,
                        },
                        deps,
                        resource: step.opts().transform_tag.clone(),
                        samples: lens[p],
                    },
                );
            }
        }
        let outputs = (0..lens.len())
            .filter(|&p| info.gives_back(info.list_of(p)))
            .filter_map(|p| current[p])
            .collect();
        let mut dependents = vec![Vec::new(); tasks.len()];
        for (i, t) in tasks.iter().enumerate() {
            for &d in &t.deps {
                dependents[d].push(i);
            }
        }
        let fingerprint = fingerprint(info, &tasks);
        TaskGraph {
            info: info.clone(),
            tasks,
            dependents,
            outputs,
            fingerprint,
        }
    }

    /// Steps, mode and partitions the graph was built from.
    pub fn program(&self) -> &Program {
        &self.info
    }

    /// How many tasks.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether there are no tasks.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The tasks, in a topological order.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// Task `i`.
    ///
    /// # Panics
    /// If `i` is out of bounds.
    pub fn task(&self, i: usize) -> &Task {
        &self.tasks[i]
    }

    /// The tasks that wait for task `i`.
    pub fn dependents(&self, i: usize) -> &[usize] {
        &self.dependents[i]
    }

    /// The tasks whose results are the run's output partitions, in order.
    pub fn outputs(&self) -> &[usize] {
        &self.outputs
    }

    /// The task with this id.
    pub fn find(&self, id: &str) -> Option<usize> {
        self.tasks.iter().position(|t| &*t.id == id)
    }

    /// A hash of everything that shapes the graph: step names and estimator
    /// type names, options, mode, partitions, tasks and edges. The same program
    /// over the same samples computes the same fingerprint; driver and workers
    /// compare it. For a checkpointed pipeline the graph, and so the
    /// fingerprint, also depends on what was on disk when it was planned.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Which tasks need which resource (bob's `get_resource_requirements`).
    pub fn resources(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in &self.tasks {
            if let Some(r) = &t.resource {
                out.entry(r.clone()).or_default().push(t.id.to_string());
            }
        }
        out
    }

    /// The graph in Graphviz's DOT language.
    pub fn to_dot(&self) -> String {
        let mut s = String::from(
            "digraph pipeline {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", \
             fontname=\"Helvetica\", fillcolor=\"#e8eef7\"];\n",
        );
        for t in &self.tasks {
            // A partition is numbered within its list, which the label names.
            let local = |p: usize| {
                let list = &self.info.lists()[self.info.list_of(p)];
                let name = if list.name.is_empty() {
                    String::new()
                } else {
                    format!("{} ", list.name)
                };
                format!("{name}#{}", p - list.partitions.start)
            };
            let (label, extra) = match t.kind {
                TaskKind::Load {
                    partition,
                    from: None,
                } => (
                    format!("load {}\\n{} samples", local(partition), t.samples),
                    ", fillcolor=\"#eeeeee\"",
                ),
                TaskKind::Load {
                    partition,
                    from: Some(s),
                } => (
                    format!(
                        "{} checkpoint\\nload {}",
                        self.info.steps()[s].name(),
                        local(partition)
                    ),
                    ", fillcolor=\"#d9f0d3\", shape=folder",
                ),
                TaskKind::Fit { step } => (
                    format!("{}\\nfit", self.info.steps()[step].name()),
                    ", shape=ellipse, fillcolor=\"#f9d9b8\"",
                ),
                TaskKind::Transform { step, partition } => (
                    format!(
                        "{}\\ntransform {}",
                        self.info.steps()[step].name(),
                        local(partition)
                    ),
                    "",
                ),
            };
            let resource = t
                .resource
                .as_ref()
                .map(|r| format!("\\n[{}]", escape(r)))
                .unwrap_or_default();
            let color = if t.resource.is_some() {
                ", color=\"#b2182b\", penwidth=2"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "  \"{}\" [label=\"{}{resource}\"{extra}{color}];",
                escape(&t.id),
                escape_label(&label)
            );
        }
        for t in &self.tasks {
            for &d in &t.deps {
                let _ = writeln!(
                    s,
                    "  \"{}\" -> \"{}\";",
                    escape(&self.tasks[d].id),
                    escape(&t.id)
                );
            }
        }
        s.push_str("}\n");
        s
    }

    /// The graph as SVG, drawn by Graphviz's `dot`; `None` when `dot` is not
    /// installed (`apt-get install graphviz`).
    ///
    /// # Errors
    /// When `dot` is installed but fails.
    pub fn to_svg(&self) -> std::io::Result<Option<String>> {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let mut child = match Command::new("dot")
            .arg("-Tsvg")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let dot = self.to_dot();
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("no stdin"))?;
        // Write from another thread: dot may fill its stdout before reading all input.
        let writer = std::thread::spawn(move || stdin.write_all(dot.as_bytes()));
        let out = child.wait_with_output()?;
        writer
            .join()
            .map_err(|_| std::io::Error::other("writer thread panicked"))??;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "dot failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Escapes quotes but keeps the `\n` line breaks of a label.
fn escape_label(s: &str) -> String {
    s.replace('"', "\\\"")
}

/// FNV-1a, 64 bits: stable across processes, machines and Rust versions
/// (std's hashers promise none of that).
struct Fnv(u64);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so that ("ab", "c") and ("a", "bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }

    /// A number, in one step rather than eight: a program's partition
    /// sizes are hashed in every worker process (20 000 partitions on 128
    /// workers took a fifth of a second of two cores byte by byte).
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }
}

/// Mode and steps: names, estimator type names and options.
fn hash_steps(info: &Program) -> Fnv {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    h.write(format!("{:?}", info.mode()).as_bytes());
    for s in info.steps() {
        h.write(s.name().as_bytes());
        // The last path segment: `std::any::type_name`'s full text is not
        // promised to stay the same across Rust versions.
        let base = s.type_name().split('<').next().unwrap_or("");
        h.write(base.rsplit("::").next().unwrap_or(base).as_bytes());
        h.write(format!("{:?}", s.opts()).as_bytes());
    }
    h
}

/// A hash of the program a run computes, as a distributed driver and its
/// workers both see it: mode, steps (names, estimator types, options),
/// partition sizes and checkpoint options — nothing that depends on what is
/// on disk, so a worker started late (to replace a lost one) agrees with a
/// driver that planned before files changed. Driver and workers compare it
/// at the handshake.
pub fn program_fingerprint(info: &Program) -> u64 {
    let mut h = hash_steps(info);
    for &n in info.partition_lens() {
        h.write_u64(n as u64);
    }
    if let Some(c) = info.checkpoint() {
        h.write(format!("{:?}", c.options()).as_bytes());
    }
    h.0
}

fn fingerprint(info: &Program, tasks: &[Task]) -> u64 {
    let mut h = hash_steps(info);
    for t in tasks {
        h.write(t.id.as_bytes());
        h.write(t.resource.as_deref().unwrap_or("").as_bytes());
        h.write(&(t.samples as u64).to_le_bytes());
        for &d in &t.deps {
            h.write(&(d as u64).to_le_bytes());
        }
    }
    h.0
}

/// How a step gets its model in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelSource {
    /// The step has no model (a stateless transformer).
    None,
    /// Fitted in this run.
    Fit,
    /// Read from its model file.
    Disk,
    /// The model the pipeline already holds.
    Memory,
}

/// One step of a dry run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRunStep {
    /// The step.
    pub name: String,
    /// Where its model comes from.
    pub model: ModelSource,
    /// Whether it writes checkpoints.
    pub checkpointed: bool,
    /// Samples whose output is on disk.
    pub on_disk: usize,
    /// Samples this run will transform (or read again: missing, corrupt).
    pub to_compute: usize,
    /// Samples that failed at this step in an earlier run (no output on disk).
    pub known_failed: usize,
    /// Why its checkpoints on disk are stale (another version of it, or of a
    /// step before it, wrote them), if they are.
    pub stale: Option<String>,
}

/// One list of samples of a dry run of several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRunList {
    /// The list, as the report names it.
    pub list: crate::report::ListReport,
    /// Its partitions that start from a step's checkpoint.
    pub from_checkpoints: usize,
    /// Samples this run will put through a step, summed over the steps.
    pub to_compute: usize,
}

impl fmt::Display for DryRunList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; {} partition(s) from checkpoints, {} sample-steps to compute",
            self.list, self.from_checkpoints, self.to_compute
        )
    }
}

/// What a run would do, step by step, without doing it (`--dry-run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRun {
    /// The lists of samples, when there are several.
    pub lists: Vec<DryRunList>,
    /// One entry per step.
    pub steps: Vec<DryRunStep>,
    /// Tasks in the graph.
    pub tasks: usize,
}

impl DryRun {
    /// Whether the run computes nothing (everything comes from checkpoints).
    pub fn is_noop(&self) -> bool {
        self.steps
            .iter()
            .all(|s| s.to_compute == 0 && s.model != ModelSource::Fit)
    }
}

impl fmt::Display for DryRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lists {
            writeln!(f, "list {l}")?;
        }
        for s in &self.steps {
            let model = match s.model {
                ModelSource::None => "",
                ModelSource::Fit => "fit; ",
                ModelSource::Disk => "model on disk; ",
                ModelSource::Memory => "model in memory; ",
            };
            if let Some(why) = &s.stale {
                writeln!(
                    f,
                    "step `{}`: {model}stale checkpoints ({why}): {} to compute",
                    s.name, s.to_compute
                )?;
            } else if s.checkpointed {
                writeln!(
                    f,
                    "step `{}`: {model}{} samples on disk, {} to compute, {} known failed",
                    s.name, s.on_disk, s.to_compute, s.known_failed
                )?;
            } else {
                writeln!(
                    f,
                    "step `{}`: {model}{} to compute (not checkpointed)",
                    s.name, s.to_compute
                )?;
            }
        }
        write!(f, "{} tasks", self.tasks)
    }
}

impl TaskGraph {
    /// What the run would do: per step, how many samples are on disk, to
    /// compute and known failed, and where its model comes from.
    pub fn plan(&self) -> DryRun {
        let info = &self.info;
        let ck = info.checkpoint();
        let steps = info
            .steps()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let to_compute = self
                    .tasks
                    .iter()
                    .filter(|t| matches!(t.kind, TaskKind::Transform { step, .. } if step == i))
                    .map(|t| t.samples)
                    .sum();
                let stats = ck.map(|c| c.stats(i)).unwrap_or_default();
                DryRunStep {
                    name: s.name().to_owned(),
                    model: if !s.requires_fit() {
                        ModelSource::None
                    } else if info.fits(i) {
                        ModelSource::Fit
                    } else if ck.is_some_and(|c| c.model_from_disk(i)) {
                        ModelSource::Disk
                    } else {
                        ModelSource::Memory
                    },
                    checkpointed: ck.is_some_and(|c| c.saves(i)),
                    on_disk: stats.on_disk,
                    to_compute,
                    known_failed: stats.known_failed,
                    stale: match ck.map(|c| c.lineage(i)) {
                        Some(crate::Lineage::Stale(changes)) => Some(changes.join("; ")),
                        _ => None,
                    },
                }
            })
            .collect();
        let lists = info
            .list_reports()
            .into_iter()
            .zip(info.lists())
            .map(|(list, l)| {
                let mine = |p: usize| l.partitions.contains(&p);
                DryRunList {
                    list,
                    from_checkpoints: l
                        .partitions
                        .clone()
                        .filter(|&p| ck.and_then(|c| c.start(p)).is_some())
                        .count(),
                    to_compute: self
                        .tasks
                        .iter()
                        .filter(|t| matches!(t.kind, TaskKind::Transform { partition, .. } if mine(partition)))
                        .map(|t| t.samples)
                        .sum(),
                }
            })
            .collect();
        DryRun {
            lists,
            steps,
            tasks: self.tasks.len(),
        }
    }
}
