//! The seed example of bob.pipelines' documentation, end to end.

#[path = "../../../examples/common/seed.rs"]
mod pipeline;

use bob_pipelines::estimator::Error;
use bob_pipelines::prelude::*;
use ndarray::{Array2, array};

#[test]
fn seed_pipeline_fits_and_multiplies_keeping_keys_and_metadata() {
    let mut p = pipeline::pipeline();
    assert_eq!(p.step_names(), ["mytransformer", "myfittransformer"]);
    let out = p
        .fit_transform(pipeline::samples(10))
        .compute(&InMemory)
        .unwrap();
    assert_eq!(out.len(), 10);
    for (i, s) in out.samples().enumerate() {
        assert_eq!(s.key().as_str(), i.to_string());
        assert_eq!(s.attr::<i64>("metadata").unwrap(), 1);
        assert_eq!(s.data(), &Array2::<f64>::zeros((2, 2)));
    }
    // The fitted model is serde data: decode what the pipeline would checkpoint.
    let bytes = p.model_bytes("myfittransformer").unwrap();
    let fitted: pipeline::FittedMatrix = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(fitted.model, array![[1.0, 2.0], [3.0, 4.0]]);

    // Non-zero data shows the multiplication: I · M = M, 2I · M = 2M.
    let eye = vec![
        Sample::new("eye", Array2::<f64>::eye(2)).with_attr("metadata", 1),
        Sample::new("two", Array2::<f64>::eye(2) * 2.0).with_attr("metadata", 7),
    ];
    let out = p.transform(eye).compute(&InMemory).unwrap().into_samples();
    assert_eq!(out[0].data(), &array![[1.0, 2.0], [3.0, 4.0]]);
    assert_eq!(out[1].data(), &array![[2.0, 4.0], [6.0, 8.0]]);
    assert_eq!(out[1].attr::<i64>("metadata").unwrap(), 7);
}

#[test]
fn seed_pipeline_without_metadata_names_step_and_key() {
    let mut p = pipeline::pipeline();
    let samples = vec![
        Sample::new("ok", Array2::<f64>::zeros((2, 2))).with_attr("metadata", 1),
        Sample::new("no-meta", Array2::<f64>::zeros((2, 2))),
    ];
    let e = p.fit_transform(samples).compute(&InMemory).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Extra { .. }), "{msg}");
    assert!(
        msg.contains("`mytransformer`")
            && msg.contains("\"no-meta\"")
            && msg.contains("`metadata`"),
        "{msg}"
    );
    assert!(!p.is_fitted(), "a failed fit leaves no model behind");
}
