//! The reference executor: no task graph, everything in memory.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use crate::data::{AnyPartition, Model};
use crate::program::{Executed, Executor, Plan, Program};
use crate::report::Report;
use crate::{Error, Result};

/// Runs a plan in the calling thread without building a task graph: each
/// partition streams through consecutive steps, and only a step fitted in the
/// run waits for all partitions. The leanest executor in memory; the reference
/// the others are compared with. A panicking estimator fails the run with
/// [`Error::TaskPanicked`], named as the task graph would name the task.
#[derive(Debug, Clone, Copy, Default)]
pub struct InMemory;

impl Executor for InMemory {
    fn name(&self) -> String {
        "in-memory".to_owned()
    }

    fn execute(&self, plan: Plan<'_>) -> Result<Executed> {
        let Plan {
            program: info,
            inputs,
        } = plan;
        if info.checkpoint.is_some() {
            return Err(Error::executor(
                &self.name(),
                "it keeps everything in memory and writes no checkpoints; use \
                 `single-threaded` (or any task-graph executor) for a checkpointed pipeline",
            ));
        }
        info.check_models()?;
        let start = Instant::now();
        let mut report = info.empty_report();
        let mut models: Vec<Option<Model>> = info.steps.iter().map(|s| s.model.clone()).collect();
        let n = info.steps.len();
        let stops: Vec<usize> = (0..n).filter(|&i| info.fits(i)).collect();
        let first_stage = stops.first().copied().unwrap_or(n);
        // Fits learn from the first list; every list goes to its own end.
        let fitted_on = info.lists()[0].partitions.clone();
        let stage = |p: usize, steps: std::ops::Range<usize>| {
            let end = info.end_of(p);
            steps.start.min(end)..steps.end.min(end)
        };

        let mut parts = Vec::with_capacity(inputs.len());
        for (p, input) in inputs.into_iter().enumerate() {
            let loaded = input.load()?;
            report.load_failed += loaded.load_failed;
            parts.push(through(
                &info,
                stage(p, 0..first_stage),
                (p, loaded.partition),
                &models,
                &mut report,
            )?);
        }
        for (j, &stop) in stops.iter().enumerate() {
            let t0 = Instant::now();
            let refs: Vec<&AnyPartition> = parts[fitted_on.clone()].iter().collect();
            let step = &info.steps[stop];
            let fitted =
                catch_unwind(AssertUnwindSafe(|| step.fit(&refs))).unwrap_or_else(|panic| {
                    let samples = info.lens[fitted_on.clone()].iter().sum();
                    let task = format!("{}.fit", step.name);
                    Err(Error::panicked(
                        &task,
                        Some(&step.name),
                        (Vec::new(), samples),
                        &*panic,
                    ))
                });
            models[stop] = Some(fitted?);
            report.steps[stop].fitted = true;
            report.steps[stop].fit_time = t0.elapsed();
            let stage_end = stops.get(j + 1).copied().unwrap_or(n);
            parts = parts
                .into_iter()
                .enumerate()
                .map(|(p, part)| {
                    through(
                        &info,
                        stage(p, stop..stage_end),
                        (p, part),
                        &models,
                        &mut report,
                    )
                })
                .collect::<Result<_>>()?;
        }
        if !info.gives_back(0) {
            parts.drain(fitted_on);
        }
        report.total = start.elapsed();
        Ok(Executed {
            parts,
            models,
            report,
        })
    }
}

/// Partition `p` through `steps`.
fn through(
    info: &Program,
    steps: std::ops::Range<usize>,
    (p, mut part): (usize, AnyPartition),
    models: &[Option<Model>],
    report: &mut Report,
) -> Result<AnyPartition> {
    for i in steps {
        let t0 = Instant::now();
        let step = &info.steps[i];
        // Named before the partition goes in: a panic takes it with it.
        let keys = info.input_of(i).first_keys(&part, 3)?;
        let (out, counts) = catch_unwind(AssertUnwindSafe(|| {
            step.transform(models[i].as_ref(), part)
        }))
        .unwrap_or_else(|panic| {
            let task = format!("{}.transform-{p}", step.name);
            let samples = (keys, info.lens[p]);
            Err(Error::panicked(&task, Some(&step.name), samples, &*panic))
        })?;
        report.steps[i].add(counts, t0.elapsed());
        part = out;
    }
    Ok(part)
}
