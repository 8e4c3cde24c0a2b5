// A step whose output type cannot be checkpointed: the compiler names serde,
// at the line that chose the type.
//
// expect: the trait bound `Enroll: serde::Serialize` is not satisfied
// expect: required by a bound in `bob_pipelines_estimator::Transformer::Output`
// expect: #[derive(serde::Serialize)]
use bob_pipelines_estimator::{Batch, BoxError, SampleResult, Transformer};

struct Enroll;
struct MakeEnroll;

impl Transformer for MakeEnroll {
    type Input = Vec<f64>;
    type Output = Enroll;
    fn transform(&self, batch: &Batch<'_, Vec<f64>>) -> Result<Vec<SampleResult<Enroll>>, BoxError> {
        Ok(batch.iter().map(|_| Ok(Enroll)).collect())
    }
}

fn main() {}
