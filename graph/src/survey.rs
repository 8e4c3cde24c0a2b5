//! What a checkpointed run finds on disk before it starts, and the marker it
//! keeps while it runs.

use std::path::PathBuf;
use std::sync::Arc;

use bob_pipelines_checkpoint::store::{self, SampleState};
use bob_pipelines_checkpoint::{self as cp, lineage};
use lineage::Stamp;

use crate::checkpoints::{
    CheckpointPlan, Checkpoints, Lineage, OnChange, OnDisk, ckpt_error, folder_error,
};
use crate::program::{InputPartition, Mode, Program};
use crate::step::ProgramStep;
use crate::{Error, Result};

/// The lineage stamps a run of `program` expects, step by step, given each
/// fitted step's model hash: `None` from the first fitted step whose model
/// is not known yet (fitted in this run) on.
pub(crate) fn expected_stamps(program: &Program, hashes: &[Option<String>]) -> Vec<Option<Stamp>> {
    let mut upstream = Some("input".to_owned());
    program
        .steps
        .iter()
        .zip(hashes)
        .map(|(s, hash)| {
            let model = if s.requires_fit() {
                Some(hash.clone()?)
            } else {
                None
            };
            let stamp = stamp_of(s, model, upstream.take()?);
            upstream = Some(stamp.hash());
            Some(stamp)
        })
        .collect()
}

/// The stamp of `step` with model hash `model` after a step whose stamp hash
/// is `upstream`. With no model, for a fitted step, it is the lineage of the
/// step's fit: what its model file's stamp holds.
pub(crate) fn stamp_of(step: &ProgramStep, model: Option<String>, upstream: String) -> Stamp {
    let base = step.type_name().split('<').next().unwrap_or("");
    Stamp {
        step: step.name().to_owned(),
        estimator: base.rsplit("::").next().unwrap_or(base).to_owned(),
        options: step.opts().lineage(),
        version: step.opts().version.clone().unwrap_or_default(),
        model,
        upstream,
    }
}

/// The lineage stamp beside a model file: `<model>.lineage`.
pub(crate) fn model_stamp(model_file: &std::path::Path) -> std::path::PathBuf {
    model_file.with_extension("lineage")
}

/// The hash of a model's bytes, as lineage stamps name it.
pub(crate) fn model_hash(bytes: &[u8]) -> String {
    format!("{:016x}", lineage::fnv64(bytes))
}

/// One partition's survey: its index, the step it starts from, what is on disk.
type Survey = (
    usize,
    Option<usize>,
    Vec<OnDisk>,
    Vec<bob_pipelines_sample::Key>,
);

pub use bob_pipelines_checkpoint::RUN_MARKER;

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
    // transform reads the model of a step that has none in memory — provided
    // the model was fitted on the inputs this run gives it: its lineage stamp
    // names the stamp of the step before it. Once a step is fitted in this
    // run, nothing after it can be checked before it is, and later models are
    // fitted again.
    let mut from_disk = vec![false; n];
    let mut hashes: Vec<Option<String>> = vec![None; n];
    let mut upstream = Some("input".to_owned());
    let mut model_changed = None;
    for i in 0..n {
        let mode = info.mode;
        let step = &mut info.steps[i];
        let wanted = match mode {
            Mode::Transform => step.model.is_none(),
            Mode::Fit | Mode::FitTransform => !force,
        };
        let path = options
            .model_path(&step.name)
            .filter(|_| wanted && step.requires_fit());
        let bytes = match &path {
            Some(path) => store::read_if_present(path).map_err(|e| ckpt_error(&step.name, e))?,
            None => None,
        };
        if let (Some(path), Some(bytes)) = (path, bytes) {
            match step.decode_model(&bytes) {
                Ok(model) => {
                    let want = upstream.clone().map(|up| stamp_of(step, None, up));
                    let have = lineage::read_stamp_file(&model_stamp(&path))
                        .map_err(|e| ckpt_error(&step.name, e))?;
                    let fitted_on_these = match (have, want) {
                        (Some(have), Some(want)) if have == want => true,
                        (None, Some(_)) => {
                            warnings.push(format!(
                                "step `{}`: its model file has no lineage stamp (an older \
                                     version of bob-pipelines wrote it) and is taken as current",
                                step.name
                            ));
                            true
                        }
                        (Some(have), Some(want)) => {
                            let changes = want.changes(&have);
                            // Said after the step folders: a change before
                            // this step is the one to name first.
                            if options.when_changed() == OnChange::Error {
                                model_changed.get_or_insert(Error::Changed {
                                    step: step.name.clone(),
                                    changes: changes.clone(),
                                    dir: path.clone(),
                                });
                            }
                            warnings.push(format!(
                                "step `{}`: its model was fitted on other inputs ({}): \
                                     fitted again",
                                step.name,
                                changes.join("; ")
                            ));
                            false
                        }
                        (_, None) => false,
                    };
                    if fitted_on_these {
                        step.model = Some(model);
                        from_disk[i] = true;
                        hashes[i] = Some(model_hash(&bytes));
                    }
                }
                Err(e) => {
                    drop(bytes);
                    let aside = cp::quarantine(&path).map_err(|e| ckpt_error(&step.name, e))?;
                    warnings.push(format!(
                        "{e}; model file moved aside to {} and refitted",
                        aside.display()
                    ));
                }
            }
        }
        let refit = mode != Mode::Transform && step.requires_fit() && !from_disk[i];
        // A model held in memory and not fitted again is hashed as it is saved.
        if step.requires_fit() && hashes[i].is_none() && !refit {
            if let Some(m) = &step.model {
                hashes[i] = Some(model_hash(&step.encode_model(m)?));
            }
        }
        upstream = match upstream {
            Some(up) if !step.requires_fit() => Some(stamp_of(step, None, up).hash()),
            Some(up) if !refit => hashes[i]
                .clone()
                .map(|h| stamp_of(step, Some(h), up).hash()),
            _ => None,
        };
    }

    let mut plan = CheckpointPlan::without_disk(options, &info.steps, inputs.len());
    plan.from_disk = from_disk;
    info.checkpoint = Some(Arc::new(plan.clone()));
    let stamps = expected_stamps(info, &hashes);
    let layout = options.layout();
    for i in (0..n).filter(|&i| plan.saves[i]) {
        let dir = layout.step_dir(&info.steps[i].name);
        plan.lineage[i] = match &stamps[i] {
            None => Lineage::AfterFit,
            Some(want) => {
                match lineage::read_stamp(&dir).map_err(|e| ckpt_error(&info.steps[i].name, e))? {
                    Some(have) if &have == want => Lineage::Current,
                    Some(have) => Lineage::Stale(want.changes(&have)),
                    None if lineage::has_files(&dir) => {
                        warnings.push(format!(
                            "step `{}`: its checkpoints have no lineage stamp (an older version of \
                         bob-pipelines wrote them) and are taken as current; remove {} to \
                         compute them again",
                            info.steps[i].name,
                            dir.display()
                        ));
                        Lineage::Unstamped
                    }
                    None => Lineage::Fresh,
                }
            }
        };
        if let (Lineage::Stale(changes), OnChange::Error) =
            (&plan.lineage[i], options.when_changed())
        {
            return Err(Error::Changed {
                step: info.steps[i].name.clone(),
                changes: changes.clone(),
                dir,
            });
        }
    }
    if let Some(e) = model_changed {
        return Err(e);
    }
    let names: Vec<&str> = info.steps.iter().map(|s| s.name()).collect();
    for (dir, step) in lineage::orphans(layout.features_dir(), &names) {
        warnings.push(format!(
            "{} holds checkpoints of step `{step}`, which this pipeline does not have (renamed? \
             the pipeline's steps: {}); they are not read",
            dir.display(),
            names.join(", ")
        ));
    }
    plan.warnings = warnings;
    plan.model_hashes = hashes;
    plan.stamps = stamps;
    // A partition may start from step s only if nothing before s is lost by
    // skipping it: no step up to s is refitted in this run (its outputs, and
    // all later ones, are stale) and none writes an attribute that is not
    // checkpointed (a saved attribute is set again when s is read).
    let first_fit = (0..n).find(|&i| info.fits(i)).unwrap_or(n);
    let first_attr = (0..n)
        .find(|&i| info.steps[i].output_attribute().is_some() && !plan.saves[i])
        .unwrap_or(n);
    let is_attr: Vec<bool> = info
        .steps
        .iter()
        .map(|s| s.output_attribute().is_some())
        .collect();
    // Nor is anything read at or after a step whose files another version wrote.
    let first_stale = (0..n)
        .find(|&i| matches!(plan.lineage[i], Lineage::Stale(_)))
        .unwrap_or(n);
    let usable_end = first_fit.min(first_attr).min(first_stale);

    // A run that did not finish may have left temp files: only then walk the
    // step folders to remove them (a walk costs more than the run's own checks).
    if store::unfinished(layout.features_dir()) {
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
    let survey =
        |p: usize| -> Result<(Option<usize>, Vec<OnDisk>, Vec<bob_pipelines_sample::Key>)> {
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
            for i in (0..n).filter(|&i| plan.saves[i] && i < first_stale) {
                let mut complete = true;
                for (k, base) in bases.iter().enumerate() {
                    match store::sample_state(&dirs[i], base, exts[i], &mut path) {
                        SampleState::Output => stats[i].on_disk += 1,
                        SampleState::Failed => {
                            stats[i].known_failed += 1;
                            failed_before[k] = true;
                        }
                        SampleState::Missing if !failed_before[k] => complete = false,
                        SampleState::Missing => {}
                    }
                }
                // A partition starts at a datum, never at an attribute.
                if complete && !force && i < usable_end.min(info.end_of(p)) && !is_attr[i] {
                    start = Some(i);
                }
            }
            Ok((start, stats, keys))
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
                        let (start, stats, keys) = survey(p)?;
                        mine.push((p, start, stats, keys));
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
    let mut all_keys = vec![Vec::new(); inputs.len()];
    for part in surveys {
        let mut part = part?;
        part.sort_by_key(|s| s.0);
        for (p, start, stats, keys) in part {
            all_keys[p] = keys;
            plan.starts[p] = start;
            for (total, s) in plan.stats.iter_mut().zip(stats) {
                total.on_disk += s.on_disk;
                total.known_failed += s.known_failed;
            }
        }
    }
    // Two samples with one key would write one set of files, and a later run
    // would read one sample's data for both: refuse before any work.
    let mut seen = std::collections::HashMap::with_capacity(all_keys.iter().map(Vec::len).sum());
    for (position, key) in all_keys.iter().flatten().enumerate() {
        if let Some(first) = seen.insert(key, position) {
            return Err(Error::DuplicateKey {
                key: key.clone(),
                first,
                second: position,
            });
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
    /// [`Error::Checkpoint`](crate::Error::Checkpoint) or [`Error::CheckpointFolder`](crate::Error::CheckpointFolder) naming what
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
    /// [`Error::CheckpointFolder`](crate::Error::CheckpointFolder) when the features folder cannot be written.
    pub fn write(program: &Program) -> Result<Self> {
        let Some(c) = program.checkpoint().filter(|_| !program.writes_nothing()) else {
            return Ok(RunMarker(None));
        };
        let root = c.options().layout().features_dir();
        let path = store::begin_run(root, c.options().writer()).map_err(folder_error)?;
        // Before any output is written: stale folders renewed, new ones stamped.
        for (i, stamp) in c.stamps.iter().enumerate().take(program.transform_end()) {
            if let (true, Some(stamp)) = (c.saves[i], stamp) {
                ensure_stamp(c, program.steps[i].name(), stamp, true)?;
            }
        }
        Ok(RunMarker(Some(path)))
    }

    /// The run finished: nothing of it is left half-written, and the step
    /// folders it renewed are gone with their stale files.
    pub fn done(self) {
        if let Some(path) = self.0 {
            store::end_run(&path);
        }
    }
}

/// Makes a step's folder hold `stamp` before any output of it is written: a
/// folder with another stamp is renewed (its files moved aside), one with no
/// stamp is stamped — its files adopted when `adopt` (what an older version
/// of this library wrote, taken as current), else renewed.
pub(crate) fn ensure_stamp(
    ck: &CheckpointPlan,
    step: &str,
    stamp: &Stamp,
    adopt: bool,
) -> Result<()> {
    let dir = ck.options.layout().step_dir(step);
    let writer = ck.options.writer();
    match lineage::read_stamp(&dir).map_err(|e| ckpt_error(step, e))? {
        Some(have) if &have == stamp => Ok(()),
        None if adopt || !lineage::has_files(&dir) => lineage::write_stamp(&dir, stamp, writer),
        _ => lineage::renew(&dir, stamp, writer),
    }
    .map_err(|e| ckpt_error(step, e))
}
