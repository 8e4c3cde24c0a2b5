//! linfa models as steps: fitted, checkpointed, and refusing bad input.

use bob_pipelines_estimator::{Checkpoints, InMemory, Pipeline, Step};
use bob_pipelines_executor::SingleThreaded;
use bob_pipelines_linfa::{Features, classify, project, transform};
use bob_pipelines_sample::Sample;
use linfa_logistic::MultiLogisticRegression;
use linfa_preprocessing::linear_scaling::LinearScaler;
use linfa_reduction::Pca;
use ndarray::{Array1, array};

/// Two classes of 3-d points, labelled in attribute `target`.
fn samples(n: usize) -> Vec<Sample<Features>> {
    (0..n)
        .map(|i| {
            let c = (i % 2) as f64;
            let t = i as f64;
            let x = array![
                3.0 * c + (0.37 * t).sin(),
                1.0 - c + t.cos(),
                c + 0.1 * (0.5 * t).sin()
            ];
            Sample::new(format!("s{i}"), x).with_attr("target", i % 2)
        })
        .collect()
}

fn pipeline() -> Pipeline<Features, usize> {
    Pipeline::new()
        .then(Step::fit(transform(LinearScaler::standard())).name("scaler"))
        .then(Step::fit(project(Pca::params(2))).name("pca"))
        .then(
            Step::fit(
                classify::<_, usize, _>(MultiLogisticRegression::default()).labels_from("target"),
            )
            .name("logistic"),
        )
}

#[test]
fn a_fitted_pipeline_predicts_and_its_models_come_back_from_checkpoints() {
    let dir = std::env::temp_dir().join(format!("bp-linfa-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ck = || Checkpoints::new(dir.join("features")).model_dir(dir.join("models"));
    let mut p = pipeline().checkpoint(ck());
    let out = p
        .fit_transform(samples(60))
        .compute(&SingleThreaded::new())
        .unwrap();
    let right = out
        .samples()
        .filter(|s| *s.data() == s.attr::<usize>("target").unwrap())
        .count();
    assert!(right >= 54, "{right} of 60 right");
    for step in ["scaler", "pca", "logistic"] {
        assert!(
            dir.join(format!("models/{step}.msgpack")).exists(),
            "{step}"
        );
    }
    // A new pipeline reads the three models and predicts the same, unfitted.
    let q = pipeline().checkpoint(ck().force(false));
    let fresh: Vec<Sample<Features>> = samples(60)
        .into_iter()
        .map(|s| Sample::new(format!("new-{}", s.key()), s.data().clone()))
        .collect();
    let again = q.transform(fresh).compute(&SingleThreaded::new()).unwrap();
    let before: Vec<usize> = out.samples().map(|s| *s.data()).collect();
    let after: Vec<usize> = again.samples().map(|s| *s.data()).collect();
    assert_eq!(before, after);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn data_of_the_wrong_width_names_the_step_and_the_width() {
    let mut p = pipeline();
    p.fit(samples(20)).compute(&InMemory).unwrap();
    let wide = vec![Sample::new(
        "too-wide",
        Array1::from(vec![1.0, 2.0, 3.0, 4.0]),
    )];
    let err = p
        .transform(wide)
        .compute(&InMemory)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`scaler`"), "{err}");
    assert!(
        err.contains("fitted on 3 features") && err.contains("has 4"),
        "{err}"
    );
    assert!(err.contains("too-wide"), "{err}");
}

#[test]
fn a_sample_without_its_label_is_named() {
    let mut data = samples(20);
    data[7] = Sample::new("no-label", data[7].data().clone());
    let err = pipeline()
        .fit(data)
        .compute(&InMemory)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no-label") && err.contains("target"), "{err}");
}

#[test]
fn linfa_steps_are_named_after_their_estimators() {
    let p = Pipeline::new()
        .then(transform(LinearScaler::standard()))
        .then(project(Pca::params(2)));
    assert_eq!(p.step_names(), ["linearscaler", "pca"]);
}
