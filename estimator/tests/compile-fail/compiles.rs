// The control: the same shapes, right, compile. A harness that fails every
// case would otherwise pass.
use bob_pipelines_estimator::{Batch, BoxError, Pipeline, SampleResult, Step, Transformer};
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Enroll(f64);
struct Flatten;

impl Transformer for Flatten {
    type Input = Array2<f64>;
    type Output = Array1<f64>;
    fn transform(&self, batch: &Batch<'_, Array2<f64>>) -> Result<Vec<SampleResult<Array1<f64>>>, BoxError> {
        Ok(batch.iter().map(|x| Ok(x.iter().copied().collect())).collect())
    }
}

fn main() {
    let p: Pipeline<Array2<f64>, Array2<f64>> = Pipeline::new();
    let _ = p
        .then(Flatten)
        .then(Step::map("sum", |x: &Array1<f64>| x.sum()))
        .then(Step::map("enroll", |x: &f64| Enroll(*x)));
}
