// A closure step whose output cannot be checkpointed: the compiler names serde.
//
// expect: the trait bound `Enroll: serde::Serialize` is not satisfied
// expect: #[derive(serde::Serialize)]
use bob_pipelines_estimator::{Pipeline, Step};

struct Enroll;

fn main() {
    let p: Pipeline<f64, f64> = Pipeline::new();
    let _ = p.then(Step::map("enroll", |_: &f64| Enroll));
}
