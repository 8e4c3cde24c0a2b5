//! What a checkpointed run finds on disk before it starts, and the marker it
//! keeps while it runs.

use std::path::PathBuf;
use std::sync::Arc;

use bob_pipelines_checkpoint as cp;

use crate::Result;
use crate::checkpoints::{CheckpointPlan, Checkpoints, OnDisk, ckpt_error, folder_error};
use crate::program::{InputPartition, Mode, Program};

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
