// `Step::new` given a type that is no estimator.
//
// expect: `Scale` is not a `Transformer`
// expect: a closure becomes a step with `Step::map("name", |x: &T| ...)`
use bob_pipelines_estimator::Step;

struct Scale;

fn main() {
    let _ = Step::new(Scale);
}
