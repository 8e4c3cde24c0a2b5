//! Checkpoints of a program's steps: the options, what a run finds on disk
//! before it starts (the checkpoint plan), and the per-sample files written
//! and read as plain code over each type's [`DataCodec`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bob_pipelines_checkpoint::{self as cp, Durability, HashFn, Layout, Writer};
use bob_pipelines_sample::{Key, Meta};

use crate::data::{AnyDatum, AnyPartition, AnySlot, DataCodec, Entry, Failed};
use crate::program::{CheckpointPlan, InputPartition, Mode, OnDisk, Program};
use crate::{Error, Result};

/// Where and how a pipeline checkpoints (bob's `wrap(["checkpoint"], …,
/// features_dir=…, model_path=…, hash_fn=…, force=…, attempts=…)`).
///
/// Every step's output for every sample becomes one file,
/// `features_dir/<step>/<hash(key)>/<key><ext>` (`.npy` for `ndarray` arrays,
/// `.msgpack` otherwise), and every fitted model one file,
/// `model_dir/<step>.msgpack`. A later run loads what is on disk instead of
/// computing it, and does not fit a step whose model is on disk, unless
/// [`force`](Self::force).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoints {
    layout: Layout,
    model_dir: Option<PathBuf>,
    force: bool,
    writer: Writer,
}

impl Checkpoints {
    /// Features under `features_dir`, models there too, no hash folders.
    pub fn new(features_dir: impl Into<PathBuf>) -> Self {
        let dir = features_dir.into();
        Checkpoints {
            model_dir: Some(dir.clone()),
            layout: Layout::new(dir, HashFn::None),
            force: false,
            writer: Writer::new(),
        }
    }

    /// Spreads files over sub-folders (bob's `hash_fn`).
    #[must_use]
    pub fn hash(mut self, hash: HashFn) -> Self {
        self.layout = Layout::new(self.layout.features_dir().to_path_buf(), hash);
        self
    }

    /// Saves fitted models in `dir` (bob's `model_path`).
    #[must_use]
    pub fn model_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.model_dir = Some(dir.into());
        self
    }

    /// Saves no models: every run fits again.
    #[must_use]
    pub fn no_models(mut self) -> Self {
        self.model_dir = None;
        self
    }

    /// Recomputes and overwrites everything, models included (bob's `force`).
    #[must_use]
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// How many times a write is tried before the run fails (bob's `attempts`, 10).
    #[must_use]
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.writer = self.writer.attempts(attempts);
        self
    }

    /// What a write waits for (default: rename only; see [`Durability`]).
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.writer = self.writer.durability(durability);
        self
    }

    /// The file layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Whether everything is recomputed.
    pub fn is_forced(&self) -> bool {
        self.force
    }

    /// The writer.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// The models folder, if models are saved.
    pub fn models_folder(&self) -> Option<&std::path::Path> {
        self.model_dir.as_deref()
    }

    /// The model file of a step, if models are saved.
    pub fn model_path(&self, step: &str) -> Option<PathBuf> {
        self.model_dir
            .as_ref()
            .map(|d| d.join(format!("{step}.msgpack")))
    }
}

pub(crate) fn ckpt_error(step: &str, source: cp::Error) -> Error {
    Error::Checkpoint {
        step: step.to_owned(),
        source: Box::new(source),
    }
}

fn folder_error(source: cp::Error) -> Error {
    Error::CheckpointFolder {
        source: Box::new(source),
    }
}

/// What a step's checkpoint says about one sample.
#[derive(Debug)]
pub(crate) enum Found {
    /// Its output, read back.
    Data(AnyDatum),
    /// It failed at this or an earlier step in an earlier run.
    Failed { step: String, reason: String },
    /// Missing or corrupt: compute it again.
    Recompute,
}

/// What saving one step's outputs must keep consistent on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SaveRules {
    /// The saving steps after this one, with their extensions: a sample that
    /// fails here has no valid output there any more.
    pub(crate) later: Vec<(String, &'static str)>,
    /// The names of all saving steps: a failure at any other step (`load`, a
    /// step that does not save) is recorded at the next saving step.
    pub(crate) saving: Vec<String>,
}

/// Writes a transformed partition: every output, and a failure marker for
/// every sample that failed here (or at a step that keeps no files). Failed
/// samples are never checkpointed, and what they leave must not be read: a
/// new output removes an old marker, and a new failure removes the sample's
/// old outputs of this and every later step.
pub(crate) fn save(
    data: &dyn DataCodec,
    ck: &Checkpoints,
    step: &str,
    rules: &SaveRules,
    part: &AnyPartition,
) -> Result<()> {
    let err = |e| ckpt_error(step, e);
    let mut buf = Vec::new();
    for (i, entry) in data.entries(part)?.into_iter().enumerate() {
        match entry {
            Entry::Sample(meta) => {
                let path = ck
                    .layout
                    .feature_path(step, meta.key(), data.extension())
                    .map_err(err)?;
                buf.clear();
                data.encode_datum(part, i, &mut buf).map_err(|e| {
                    err(cp::Error::Encode {
                        path: path.clone(),
                        reason: e.to_string(),
                    })
                })?;
                ck.writer.write(&path, &buf).map_err(err)?;
                remove(&ck.layout.failure_path(step, meta.key()).map_err(err)?).map_err(err)?;
            }
            Entry::Failed(f) if f.step() == step || !rules.saving.iter().any(|s| s == f.step()) => {
                let marker = ck.layout.failure_path(step, f.key()).map_err(err)?;
                let text = format!("{}\n{}", f.step(), f.reason());
                ck.writer.write(&marker, text.as_bytes()).map_err(err)?;
                let stale = std::iter::once((step, data.extension()))
                    .chain(rules.later.iter().map(|(s, e)| (s.as_str(), *e)));
                for (s, ext) in stale {
                    remove(&ck.layout.feature_path(s, f.key(), ext).map_err(err)?).map_err(err)?;
                }
            }
            Entry::Failed(_) => {}
        }
    }
    Ok(())
}

/// Removes a file that may not exist.
fn remove(path: &Path) -> std::result::Result<(), cp::Error> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(cp::Error::Io {
            action: "removing",
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Reads a partition's outputs of `step`; `earlier` are the checkpointed steps
/// up to and including it, whose failure markers count. Corrupt files are moved
/// aside (a warning each) and their samples marked for recomputation.
pub(crate) fn load(
    data: &dyn DataCodec,
    ck: &Checkpoints,
    step: &str,
    earlier: &[String],
    keys: &[Key],
    warnings: &mut Vec<String>,
) -> Result<Vec<Found>> {
    keys.iter()
        .map(|key| {
            let path = ck
                .layout
                .feature_path(step, key, data.extension())
                .map_err(|e| ckpt_error(step, e))?;
            let read = cp::read(&path).and_then(|bytes| {
                data.decode_datum(&bytes).map_err(|e| cp::Error::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })
            });
            match read {
                Ok(v) => Ok(Found::Data(v)),
                Err(cp::Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    Ok(failure_marker(ck, earlier, key).unwrap_or(Found::Recompute))
                }
                Err(e @ cp::Error::Corrupt { .. }) => {
                    let aside = cp::quarantine(&path).map_err(|e| ckpt_error(step, e))?;
                    warnings.push(format!(
                        "step `{step}`, sample {key:?}: {e}; moved aside to {} and recomputed",
                        aside.display()
                    ));
                    Ok(Found::Recompute)
                }
                Err(e) => Err(ckpt_error(step, e)),
            }
        })
        .collect()
}

/// The failure recorded for `key` at one of `steps`: a marker holds the step
/// where the sample failed, a newline, and why.
fn failure_marker(ck: &Checkpoints, steps: &[String], key: &Key) -> Option<Found> {
    steps.iter().find_map(|s| {
        let path = ck.layout.failure_path(s, key).ok()?;
        let text = std::fs::read_to_string(&path).ok()?;
        let (step, reason) = text.split_once('\n').unwrap_or((s.as_str(), text.as_str()));
        Some(Found::Failed {
            step: step.to_owned(),
            reason: reason.to_owned(),
        })
    })
}

/// Puts a partition together from what was read, the input samples' metadata
/// and the recomputed samples (in order, one per `Recompute`).
pub(crate) fn assemble(
    data: &dyn DataCodec,
    found: Vec<Found>,
    metas: Vec<Option<std::result::Result<Arc<Meta>, Failed>>>,
    recomputed: Option<AnyPartition>,
) -> Result<AnyPartition> {
    let mut recomputed = match recomputed {
        Some(p) => data.split(p)?.into_iter(),
        None => Vec::new().into_iter(),
    };
    let slots: Vec<AnySlot> = found
        .into_iter()
        .zip(metas)
        .filter_map(|(found, meta)| match (found, meta) {
            (Found::Recompute, _) => recomputed.next(),
            (_, Some(Err(f))) => Some(Err(f)),
            (Found::Data(v), Some(Ok(meta))) => Some(Ok((meta, v))),
            (Found::Failed { step, reason }, Some(Ok(meta))) => {
                Some(Err(Failed::new(meta.key().clone(), step, reason)))
            }
            (_, None) => None,
        })
        .collect();
    data.build(slots)
}

/// One partition's survey: its index, the step it starts from, what is on disk.
type Survey = (usize, Option<usize>, Vec<OnDisk>);

/// The file a checkpointed run keeps in its features folder while it runs: if
/// a run finds one, an earlier run did not finish and may have left temp files.
pub const RUN_MARKER: &str = ".bob-pipelines-running";

/// Decides, before any task runs, what a checkpointed run reads and writes:
/// which steps save, which models come from their files (no fit), and for each
/// partition the last step whose outputs are all on disk — its work before that
/// step is pruned. Changes nothing on disk but removing dead writers' temp
/// files and moving a corrupt model file aside.
pub(crate) fn checkpoint_plan(
    options: &Checkpoints,
    info: &mut Program,
    inputs: &[InputPartition<'_>],
) -> Result<CheckpointPlan> {
    let n = info.steps.len();
    let force = options.is_forced();
    let mut warnings = Vec::new();

    // Models on disk: a fit run does not fit a step whose model file exists
    // (unless forced; a corrupt one is moved aside and refitted), and a
    // transform reads the model of a step that has none in memory.
    let mut from_disk = vec![false; n];
    for (i, step) in info.steps.iter_mut().enumerate() {
        let wanted = match info.mode {
            Mode::Transform => step.model.is_none(),
            Mode::Fit | Mode::FitTransform => !force,
        };
        let Some(path) = options
            .model_path(&step.name)
            .filter(|_| wanted && step.requires_fit())
        else {
            continue;
        };
        match cp::read(&path) {
            Ok(bytes) => match step.decode_model(&bytes) {
                Ok(model) => {
                    step.model = Some(model);
                    from_disk[i] = true;
                }
                Err(e) => {
                    drop(bytes);
                    let aside = cp::quarantine(&path).map_err(|e| ckpt_error(&step.name, e))?;
                    warnings.push(format!(
                        "{e}; model file moved aside to {} and refitted",
                        aside.display()
                    ));
                }
            },
            Err(cp::Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ckpt_error(&step.name, e)),
        }
    }

    let mut plan = CheckpointPlan::without_disk(options, &info.steps, inputs.len());
    plan.from_disk = from_disk;
    plan.warnings = warnings;
    info.checkpoint = Some(Arc::new(plan.clone()));
    // A partition may start from step s only if nothing before s is lost by
    // skipping it: no step up to s is refitted in this run (its outputs, and
    // all later ones, are stale) and none writes an attribute (attributes are
    // not in checkpoints).
    let first_fit = (0..n).find(|&i| info.fits(i)).unwrap_or(n);
    let first_attr = (0..n)
        .find(|&i| info.steps[i].checkpoint_extension().is_none())
        .unwrap_or(n);
    let usable_end = first_fit.min(first_attr).min(info.transform_end());

    // A run that did not finish may have left temp files: only then walk the
    // step folders to remove them (a walk costs more than the run's own checks).
    let layout = options.layout();
    if layout.features_dir().join(RUN_MARKER).exists() {
        for (step, _) in info.steps.iter().zip(&plan.saves).filter(|(_, s)| **s) {
            cp::clean_temps(&layout.step_dir(&step.name), true)
                .map_err(|e| ckpt_error(&step.name, e))?;
        }
        if let Some(dir) = options.models_folder() {
            cp::clean_temps(dir, false).map_err(folder_error)?;
        }
    }

    let exts: Vec<&str> = info
        .steps
        .iter()
        .map(|s| s.checkpoint_extension().unwrap_or(""))
        .collect();
    let dirs: Vec<PathBuf> = info
        .steps
        .iter()
        .map(|s| layout.step_dir(&s.name))
        .collect();
    // What is on disk for one partition: a `stat` per key and step (a walk of
    // the step folders costs more on most file systems, and far more on NFS).
    let survey = |p: usize| -> Result<(Option<usize>, Vec<OnDisk>)> {
        let keys = inputs[p].keys()?;
        // A key that cannot be a file name fails the run now, not after hours.
        let bases = keys
            .iter()
            .map(|key| layout.relative(key, "").map_err(folder_error))
            .collect::<Result<Vec<String>>>()?;
        let mut stats = vec![OnDisk::default(); n];
        let mut start = None;
        let mut failed_before = vec![false; keys.len()];
        let mut path = PathBuf::new();
        for i in (0..n).filter(|&i| plan.saves[i]) {
            let mut complete = true;
            for (k, base) in bases.iter().enumerate() {
                let mut has = |ext: &str| {
                    path.clone_from(&dirs[i]);
                    path.push(format!("{base}{ext}"));
                    path.is_file()
                };
                if has(exts[i]) {
                    stats[i].on_disk += 1;
                } else if has(cp::FAILED_EXT) {
                    stats[i].known_failed += 1;
                    failed_before[k] = true;
                } else if !failed_before[k] {
                    complete = false;
                }
            }
            if complete && !force && i < usable_end {
                start = Some(i);
            }
        }
        Ok((start, stats))
    };
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let surveys: Vec<Result<Vec<Survey>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.min(inputs.len()).max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let p = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if p >= inputs.len() {
                            return Ok(mine);
                        }
                        let (start, stats) = survey(p)?;
                        mine.push((p, start, stats));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    for part in surveys {
        for (p, start, stats) in part? {
            plan.starts[p] = start;
            for (total, s) in plan.stats.iter_mut().zip(stats) {
                total.on_disk += s.on_disk;
                total.known_failed += s.known_failed;
            }
        }
    }
    Ok(plan)
}

impl Program {
    /// Checkpoints with `options`, as the disk is now: which steps save,
    /// which models are read from their files (no fit), and where each
    /// partition starts. Changes nothing on disk but removing dead writers'
    /// temp files (after an unfinished run) and moving a corrupt model file
    /// aside. This asks every input partition for its keys.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] or [`Error::CheckpointFolder`] naming what
    /// could not be read, a key that cannot be a file name included.
    pub fn checkpoint_from_disk(
        &mut self,
        options: &Checkpoints,
        inputs: &[InputPartition<'_>],
    ) -> Result<()> {
        let plan = checkpoint_plan(options, self, inputs)?;
        self.checkpoint = Some(Arc::new(plan));
        Ok(())
    }

    /// Checkpoints with `options` without looking at the disk: which steps
    /// save, nothing read, every partition from its input. What a worker
    /// process uses: the driver alone surveys the disk and decides.
    pub fn checkpoint_without_disk(&mut self, options: &Checkpoints) {
        let plan = CheckpointPlan::without_disk(options, &self.steps, self.lens.len());
        self.checkpoint = Some(Arc::new(plan));
    }
}

/// The marker a checkpointed run keeps in its features folder while it runs
/// ([`RUN_MARKER`]): if the run dies, the next one knows to look for the temp
/// files it left. Dropped without [`done`](Self::done), it stays.
#[derive(Debug)]
#[must_use = "a marker that is never done says the run did not finish"]
pub struct RunMarker(Option<PathBuf>);

impl RunMarker {
    /// Writes the marker for a run of `program`, unless the program
    /// checkpoints nothing or writes nothing ([`Program::writes_nothing`]),
    /// so a finished folder on a read-only share can be read.
    ///
    /// # Errors
    /// [`Error::CheckpointFolder`] when the features folder cannot be written.
    pub fn write(program: &Program) -> Result<Self> {
        let Some(c) = program.checkpoint().filter(|_| !program.writes_nothing()) else {
            return Ok(RunMarker(None));
        };
        let root = c.options().layout().features_dir();
        // A run killed while writing its marker left the marker's temp file
        // (and no marker to say so): the root holds no other temp.
        cp::clean_temps(root, false).map_err(folder_error)?;
        let path = root.join(RUN_MARKER);
        c.options()
            .writer()
            .write(&path, std::process::id().to_string().as_bytes())
            .map_err(folder_error)?;
        Ok(RunMarker(Some(path)))
    }

    /// The run finished: nothing of it is left half-written.
    pub fn done(self) {
        if let Some(path) = self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}
