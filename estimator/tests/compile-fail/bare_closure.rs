// A closure handed to `then` as it is: the message says how to make it a step.
//
// expect: is not a step that reads `f64`, the output of the step before it
// expect: a closure is not a step: wrap it in `Step::map("name", |x: &f64| ...)`
use bob_pipelines_estimator::Pipeline;

fn main() {
    let p: Pipeline<f64, f64> = Pipeline::new();
    let _ = p.then(|x: &f64| x * 2.0);
}
