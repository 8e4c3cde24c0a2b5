//! Checkpoints of a program's steps: the options, what a run finds on disk
//! before it starts (the checkpoint plan), and the per-sample files written
//! and read as plain code over each type's [`DataCodec`].

use std::path::PathBuf;
use std::sync::Arc;

use bob_pipelines_checkpoint::{self as cp, Durability, HashFn, Layout, Writer, store};
use bob_pipelines_sample::{Key, Meta};

use crate::data::{AnyDatum, AnyPartition, AnySlot, DataCodec, Entry, Failed};
use crate::step::ProgramStep;
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
    on_change: OnChange,
    retry_failed: bool,
}

/// What a run does with checkpoints that another version of a step wrote
/// (its options, version or model changed, or a step before it did).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnChange {
    /// Computes them again (the old files are moved aside first).
    #[default]
    Recompute,
    /// Fails the run before it starts, naming the step and what changed.
    Error,
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
            on_change: OnChange::Recompute,
            retry_failed: false,
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

    /// What to do with checkpoints another version of a step wrote (default:
    /// [`OnChange::Recompute`]).
    #[must_use]
    pub fn on_change(mut self, on_change: OnChange) -> Self {
        self.on_change = on_change;
        self
    }

    /// Tries again the samples that failed in an earlier run (their failure
    /// markers are not read): a missing file restored, a transient error
    /// gone. By default a known failure is reported, not retried.
    #[must_use]
    pub fn retry_failed(mut self, retry: bool) -> Self {
        self.retry_failed = retry;
        self
    }

    /// Whether known failures are tried again.
    pub fn retries_failed(&self) -> bool {
        self.retry_failed
    }

    /// What is done with checkpoints another version of a step wrote.
    pub fn when_changed(&self) -> OnChange {
        self.on_change
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

pub(crate) fn folder_error(source: cp::Error) -> Error {
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
/// A step whose output goes to `attribute` checkpoints the attribute's value
/// instead of the (unchanged) datum.
pub(crate) fn save(
    data: &dyn DataCodec,
    ck: &Checkpoints,
    (step, attribute): (&str, Option<&str>),
    rules: &SaveRules,
    part: &AnyPartition,
) -> Result<()> {
    let err = |e| ckpt_error(step, e);
    let ext = attribute.map_or(data.extension(), |_| crate::step::ATTR_EXT);
    let mut buf = Vec::new();
    for (i, entry) in data.entries(part)?.into_iter().enumerate() {
        match entry {
            Entry::Sample(meta) => {
                buf.clear();
                let encoded = match attribute {
                    Some(name) => meta
                        .attr_value(name)
                        .map_err(|e| e.to_string())
                        .and_then(|v| {
                            rmp_serde::encode::write_named(&mut buf, &v).map_err(|e| e.to_string())
                        }),
                    None => data
                        .encode_datum(part, i, &mut buf)
                        .map_err(|e| e.to_string()),
                };
                encoded.map_err(|reason| {
                    err(cp::Error::Encode {
                        path: ck.layout.step_dir(step).join(meta.key().as_str()),
                        reason,
                    })
                })?;
                store::write_output(&ck.layout, &ck.writer, (step, meta.key(), ext), &buf)
                    .map_err(err)?;
            }
            Entry::Failed(f) if f.step() == step || !rules.saving.iter().any(|s| s == f.step()) => {
                let stale = std::iter::once((step, ext))
                    .chain(rules.later.iter().map(|(s, e)| (s.as_str(), *e)));
                store::write_failure(
                    &ck.layout,
                    &ck.writer,
                    (step, f.key()),
                    (f.step(), f.reason()),
                    stale,
                )
                .map_err(err)?;
            }
            Entry::Failed(_) => {}
        }
    }
    Ok(())
}

/// What one checkpoint file holds.
enum Read<T> {
    /// A valid value.
    Valid(T),
    /// No file.
    Missing,
    /// A corrupt file, now moved aside (a warning says so).
    MovedAside,
}

/// Reads and decodes sample `key`'s file `path` of `step`; a file that does
/// not decode is moved aside, with a warning naming the key and both paths.
fn read_file<T, E: std::fmt::Display>(
    (step, key, path): (&str, &Key, &std::path::Path),
    decode: impl FnOnce(&[u8]) -> std::result::Result<T, E>,
    warnings: &mut Vec<String>,
) -> Result<Read<T>> {
    let Some(bytes) = store::read_if_present(path).map_err(|e| ckpt_error(step, e))? else {
        return Ok(Read::Missing);
    };
    let why = match decode(&bytes) {
        Ok(v) => return Ok(Read::Valid(v)),
        Err(e) => e.to_string(),
    };
    drop(bytes);
    let aside = cp::quarantine(path).map_err(|e| ckpt_error(step, e))?;
    warnings.push(format!(
        "step `{step}`, sample {key:?}: corrupt checkpoint {}: {why}; moved aside to {} and \
         recomputed",
        path.display(),
        aside.display()
    ));
    Ok(Read::MovedAside)
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
            Ok(
                match read_file((step, key, &path), |b| data.decode_datum(b), warnings)? {
                    Read::Valid(v) => Found::Data(v),
                    Read::Missing => store::failure(&ck.layout, earlier, key).map_or(
                        Found::Recompute,
                        |(step, reason)| Found::Failed { step, reason },
                    ),
                    Read::MovedAside => Found::Recompute,
                },
            )
        })
        .collect()
}

/// The values a step whose output goes to an attribute saved for `keys`:
/// `None` where the file is missing or corrupt (that sample is computed
/// again; a corrupt file is moved aside, with a warning).
///
/// # Errors
/// [`Error::Checkpoint`] for a file that exists but cannot be read.
pub(crate) fn load_attribute(
    ck: &Checkpoints,
    step: &str,
    keys: &[Key],
    warnings: &mut Vec<String>,
) -> Result<Vec<Option<bob_pipelines_sample::Value>>> {
    keys.iter()
        .map(|key| {
            let path = ck
                .layout
                .feature_path(step, key, crate::step::ATTR_EXT)
                .map_err(|e| ckpt_error(step, e))?;
            let decode = |b: &[u8]| rmp_serde::from_slice(b);
            Ok(match read_file((step, key, &path), decode, warnings)? {
                Read::Valid(v) => Some(v),
                Read::Missing | Read::MovedAside => None,
            })
        })
        .collect()
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

/// What a run finds on disk and will write: decided once, before the graph.
#[derive(Debug, Clone)]
pub struct CheckpointPlan {
    pub(crate) options: Checkpoints,
    pub(crate) saves: Vec<bool>,
    pub(crate) from_disk: Vec<bool>,
    pub(crate) starts: Vec<Option<usize>>,
    pub(crate) stats: Vec<OnDisk>,
    pub(crate) warnings: Vec<String>,
    pub(crate) rules: Vec<SaveRules>,
    /// Each step's model hash before the run (fitted steps with a model).
    pub(crate) model_hashes: Vec<Option<String>>,
    /// What each step's folder holds, by its lineage stamp.
    pub(crate) lineage: Vec<Lineage>,
    /// The stamps this run expects, where they are known before it starts.
    pub(crate) stamps: Vec<Option<bob_pipelines_checkpoint::lineage::Stamp>>,
}

/// What a step folder's lineage stamp says, before a run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Lineage {
    /// The step writes no checkpoints, or its folder does not exist yet.
    #[default]
    Fresh,
    /// Written by this very step: its files are reused.
    Current,
    /// Files with no stamp (an older version of this library wrote them):
    /// taken as current, and stamped when the run writes.
    Unstamped,
    /// Written by another version of the step: every file is stale, and the
    /// folder is renewed before the run writes. The changes, in words.
    Stale(Vec<String>),
    /// Known only once a fit of this run is done (the step, or one before
    /// it, is fitted in this run).
    AfterFit,
}

/// What is on disk for one step, counted over this run's samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OnDisk {
    /// Samples whose output file is there.
    pub on_disk: usize,
    /// Samples with no output but a failure marker of this step.
    pub known_failed: usize,
}

impl CheckpointPlan {
    /// Which steps write checkpoints: those not switched off whose output is
    /// the datum (an attribute is not a checkpoint).
    pub(crate) fn saving_steps(steps: &[ProgramStep]) -> Vec<bool> {
        steps
            .iter()
            .map(|s| s.opts.checkpoint != Some(false) && s.checkpoint_extension().is_some())
            .collect()
    }

    /// The plan of a run that has not looked at the disk: which steps save
    /// and how, nothing read, every partition from its input. What a worker
    /// process uses: the driver alone surveys the disk and decides.
    pub fn without_disk(options: &Checkpoints, steps: &[ProgramStep], npartitions: usize) -> Self {
        let n = steps.len();
        let saves = Self::saving_steps(steps);
        let saving: Vec<String> = (0..n)
            .filter(|&i| saves[i])
            .map(|i| steps[i].name.clone())
            .collect();
        let rules = (0..n)
            .map(|i| SaveRules {
                later: (i + 1..n)
                    .filter(|&j| saves[j])
                    .map(|j| {
                        (
                            steps[j].name.clone(),
                            steps[j].checkpoint_extension().unwrap_or(""),
                        )
                    })
                    .collect(),
                saving: saving.clone(),
            })
            .collect();
        CheckpointPlan {
            options: options.clone(),
            saves,
            from_disk: vec![false; n],
            starts: vec![None; npartitions],
            stats: vec![OnDisk::default(); n],
            warnings: Vec::new(),
            rules,
            model_hashes: vec![None; n],
            lineage: vec![Lineage::Fresh; n],
            stamps: vec![None; n],
        }
    }

    /// The options.
    pub fn options(&self) -> &Checkpoints {
        &self.options
    }

    /// Whether step `i` writes checkpoints in this run.
    pub fn saves(&self, i: usize) -> bool {
        self.saves[i]
    }

    /// Whether step `i`'s model was read from its model file (no fit).
    pub fn model_from_disk(&self, i: usize) -> bool {
        self.from_disk[i]
    }

    /// The step whose checkpoint partition `p` is loaded from (`None`: from
    /// the input samples). Work before it is pruned.
    pub fn start(&self, p: usize) -> Option<usize> {
        self.starts[p]
    }

    /// What step `i`'s folder holds, by its lineage stamp.
    pub fn lineage(&self, i: usize) -> &Lineage {
        &self.lineage[i]
    }

    /// What is on disk for step `i`.
    pub fn stats(&self, i: usize) -> OnDisk {
        self.stats[i]
    }

    /// The file that holds step `i`'s output for `key`, when step `i`
    /// writes checkpoints.
    pub fn output_file(&self, steps: &[ProgramStep], i: usize, key: &str) -> Option<PathBuf> {
        let ext = steps[i].checkpoint_extension().filter(|_| self.saves[i])?;
        self.options
            .layout()
            .feature_path(&steps[i].name, key, ext)
            .ok()
    }

    /// The checkpointed steps up to and including `i` (whose failure markers
    /// count for a sample loaded at `i`).
    pub fn saving_steps_through(&self, steps: &[ProgramStep], i: usize) -> Vec<String> {
        (0..=i)
            .filter(|&s| self.saves[s])
            .map(|s| steps[s].name.clone())
            .collect()
    }
}
