//! The report a run leaves beside its checkpoints: `report.json` and
//! `report.html`, for a run that ends and for one that fails.

use bob_pipelines::checkpoint::verify::verify;
use bob_pipelines::prelude::*;
use ndarray::Array1;

use crate::checkpoint::TempDir;
use crate::distributed::{in_folder, pipeline, samples};

/// The report files in `dir/features`, parsed and read.
fn read(dir: &std::path::Path) -> (serde_json::Value, String) {
    let features = dir.join("features");
    let json = std::fs::read_to_string(features.join("report.json")).unwrap();
    let html = std::fs::read_to_string(features.join("report.html")).unwrap();
    (serde_json::from_str(&json).unwrap(), html)
}

#[test]
fn a_run_leaves_its_report_beside_its_checkpoints() {
    let dir = TempDir::new("report-done");
    let mut p = pipeline(0).checkpoint(in_folder(&dir.0));
    let lazy = p.fit_transform(samples(200)).npartitions(4);
    let tasks = bob_pipelines::graph::TaskGraph::new(lazy.info().unwrap()).len();
    let out = lazy.compute(&by_name("threads").unwrap()).unwrap();
    let (json, html) = read(&dir.0);
    assert_eq!(json["status"], "done");
    assert_eq!(json["steps"][0]["name"], "slow");
    assert_eq!(json["steps"][0]["samples"], 200);
    assert_eq!(json["steps"][0]["failed"], out.report().steps[0].failed);
    // The task stream: every task once, each with its thread and times.
    let stream = json["tasks"].as_array().unwrap();
    assert_eq!(stream.len(), tasks);
    for t in stream {
        assert!(t["worker"].as_str().is_some_and(|w| !w.is_empty()), "{t}");
        assert!(t["end_ms"].as_f64() >= t["start_ms"].as_f64(), "{t}");
        assert_eq!(t["failed"], false);
    }
    assert!(
        html.contains("<svg id=\"stream\"") && html.contains("center"),
        "{html}"
    );
    assert_eq!(html.matches("<rect ").count(), tasks);
    // The samples that failed (`slow` fails keys ending in 7), with why.
    let failures = json["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 20, "{json}");
    assert!(
        failures
            .iter()
            .all(|f| f["step"] == "slow" && f["key"].as_str().is_some_and(|k| k.ends_with('7'))),
        "{json}"
    );
    assert!(html.contains("Failed samples"), "{html}");
    // The report files are the folder's own: it still verifies.
    let v = verify(&dir.0.join("features")).unwrap();
    assert!(v.steps.iter().any(|s| s.step == "slow"), "{v:?}");
}

/// Fails the whole batch when it meets sample `s13`.
struct Breaks;
impl Transformer for Breaks {
    type Input = Array1<f64>;
    type Output = Array1<f64>;
    fn transform(
        &self,
        b: &Batch<'_, Array1<f64>>,
    ) -> Result<Vec<SampleResult<Array1<f64>>>, BoxError> {
        if b.keys().any(|k| k.as_str() == "s13") {
            return Err("the disk is full".into());
        }
        Ok(b.iter().map(|x| Ok(x.clone())).collect())
    }
}

#[test]
fn a_failed_run_leaves_its_report_with_the_error() {
    let dir = TempDir::new("report-failed");
    let p = Pipeline::new()
        .then(Step::new(Breaks).name("breaks"))
        .checkpoint(in_folder(&dir.0));
    let e = p
        .transform(samples(40))
        .npartitions(4)
        .compute(&by_name("single-threaded").unwrap())
        .unwrap_err();
    let (json, html) = read(&dir.0);
    assert_eq!(json["status"], "failed");
    let error = json["error"].as_str().unwrap();
    assert!(
        error.contains("the disk is full") && error.contains("breaks.transform-1"),
        "{error}"
    );
    assert!(e.to_string().contains("the disk is full"), "{e}");
    assert!(
        json["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["failed"] == true && t["task"] == "breaks.transform-1"),
        "{json}"
    );
    assert!(html.contains("failed: ") && html.contains("#d00"), "{html}");
}

#[test]
fn a_run_without_checkpoints_leaves_its_report_where_the_program_says() {
    let dir = TempDir::new("report-elsewhere");
    let to = dir.0.join("reports").join("run1");
    let e = Pipeline::new()
        .then(Step::new(Breaks).name("breaks"))
        .transform(samples(40))
        .npartitions(4)
        .report_to(Some(to.clone()))
        .compute(&by_name("threads").unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("the disk is full"), "{e}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(to.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["status"], "failed");
    assert!(
        json["error"]
            .as_str()
            .is_some_and(|e| e.contains("the disk is full")),
        "{json}"
    );
    // A run on threads has no workers to list.
    assert_eq!(json["workers"].as_array().map(Vec::len), Some(0), "{json}");
    assert!(to.join("report.html").is_file());
    // Without checkpoints and without being told, a run writes no report.
    let _ = Pipeline::new()
        .then(Step::new(Breaks).name("breaks"))
        .transform(samples(10))
        .compute(&by_name("threads").unwrap())
        .unwrap();
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1);
}
