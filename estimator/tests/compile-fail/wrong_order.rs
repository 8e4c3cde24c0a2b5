// Steps in the wrong order: the message says which type the step had to read.
//
// expect: `Flatten` is not a step that reads `ArrayBase<OwnedRepr<f64>, Dim<[usize; 1]>>`, the output of the step before it
// expect: check the order of the steps and their `Input` types
use bob_pipelines_estimator::{Batch, BoxError, Pipeline, SampleResult, Transformer};
use ndarray::{Array1, Array2};

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
    let _ = p.then(Flatten).then(Flatten);
}
