//! The pipeline of bob.pipelines' documentation ("the seed"), shared by the
//! examples, the benchmark and the integration tests.
#![allow(dead_code, reason = "each example uses part of the seed")]

use bob_pipelines::prelude::*;
use ndarray::{Array2, array};
use serde::{Deserialize, Serialize};

/// Stateless: receives each sample's `metadata` attribute as an extra argument
/// and returns the datum unchanged (bob's `MyTransformer`).
pub(crate) struct MyTransformer;

impl Transformer for MyTransformer {
    type Input = Array2<f64>;
    type Output = Array2<f64>;

    fn transform(
        &self,
        batch: &Batch<'_, Array2<f64>>,
    ) -> Result<Vec<SampleResult<Array2<f64>>>, BoxError> {
        let metadata: Vec<i64> = batch.extra("metadata")?;
        Ok(batch
            .iter()
            .zip(metadata)
            .map(|(x, _metadata)| Ok(x.clone()))
            .collect())
    }
}

/// Learns `[[1, 2], [3, 4]]` and multiplies every datum by it (bob's
/// `MyFitTranformer`).
pub(crate) struct MyFitTransformer;

/// What [`MyFitTransformer`] learns.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FittedMatrix {
    pub(crate) model: Array2<f64>,
}

impl Fit for MyFitTransformer {
    type Input = Array2<f64>;
    type Fitted = FittedMatrix;

    fn fit(&self, _batch: &Batch<'_, Array2<f64>>) -> Result<FittedMatrix, BoxError> {
        Ok(FittedMatrix {
            model: array![[1.0, 2.0], [3.0, 4.0]],
        })
    }
}

impl Transformer for FittedMatrix {
    type Input = Array2<f64>;
    type Output = Array2<f64>;

    fn transform(
        &self,
        batch: &Batch<'_, Array2<f64>>,
    ) -> Result<Vec<SampleResult<Array2<f64>>>, BoxError> {
        Ok(batch.iter().map(|x| Ok(x.dot(&self.model))).collect())
    }
}

/// `n` samples of a 2×2 zero matrix, keys `"0"`, `"1"`, …, attribute
/// `metadata = 1`, made as they are reached (a worker skips the others'
/// without making them).
pub(crate) fn samples(n: usize) -> impl ExactSizeIterator<Item = Sample<Array2<f64>>> + Send {
    indexed(n, |i| {
        Sample::new(i.to_string(), Array2::zeros((2, 2))).with_attr("metadata", 1)
    })
}

/// `MyTransformer` (with `metadata` as extra argument), then `MyFitTransformer`.
pub(crate) fn pipeline() -> Pipeline<Array2<f64>, Array2<f64>> {
    Pipeline::new()
        .then(Step::new(MyTransformer).transform_extra("metadata", "metadata"))
        .then(MyFitTransformer)
}

/// The grid examples' run (`sge.rs`, `slurm.rs`): the seed pipeline with
/// the fit of `MyFitTransformer` tagged `q_short_gpu` (bob's `fit_tag`), so
/// it runs on a GPU worker, over `n` samples in 8 partitions (unless `run`
/// says otherwise), checkpointed as `run` says under `out_dir`, on
/// `executor`. Prints what came out and the report; with `--dry-run`, only
/// what it would do.
pub(crate) fn run_on_grid(
    run: &RunArgs,
    out_dir: &std::path::Path,
    n: usize,
    executor: &dyn Executor,
) -> Result<(), BoxError> {
    use bob_pipelines::estimator::Partitioning;
    let mut pipeline: Pipeline<Array2<f64>, Array2<f64>> = Pipeline::new()
        .then(Step::new(MyTransformer).transform_extra("metadata", "metadata"))
        .then(Step::fit(MyFitTransformer).fit_tag("q_short_gpu"))
        .checkpoint(run.checkpoints(out_dir));
    let lazy = pipeline
        .fit_transform(samples(n))
        .partitioning(match run.partitioning() {
            Partitioning::Auto => Partitioning::Count(8),
            asked => asked,
        })
        .report_to(run.report.clone());
    if run.dry_run {
        println!("{}", TaskGraph::new(lazy.info()?).plan());
        return Ok(());
    }
    let outputs = lazy.compute(executor)?;

    // Only the driver gets here: a worker's process ends in `compute`.
    let wrong = outputs
        .samples()
        .filter(|s| s.data() != Array2::<f64>::zeros((2, 2)))
        .count();
    println!(
        "{} samples in, {} out, {} failed, {wrong} not the expected zero matrix",
        outputs.len(),
        outputs.samples().count(),
        outputs.failed().count()
    );
    println!("{}", outputs.report());
    Ok(())
}
