//! The iris example (linfa: scaler → PCA(2) → logistic regression) checked
//! against scikit-learn by `tests/iris_sklearn.py`, which reads the Rust
//! run's `.npy` checkpoints with numpy. Without python3, numpy and
//! scikit-learn the test says it is skipped, except under `CI=true`.

use std::process::Command;

#[test]
fn the_iris_pipeline_matches_scikit_learn() {
    let have = Command::new("python3")
        .args(["-c", "import numpy, sklearn"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !crate::available_or_skip(
        have,
        "iris::the_iris_pipeline_matches_scikit_learn",
        "python3 with numpy and scikit-learn is missing (scripts/test.sh installs them with pip)",
    ) {
        return;
    }
    let example = crate::workspace_binary("example", "iris", &["bob-pipelines/linfa"]);
    let out = std::env::temp_dir().join(format!("bp-iris-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    // On worker processes: the fit and the prediction are two computes.
    let run = Command::new(&example)
        .args(["local-p2", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        text.contains("test accuracy: ") && text.contains("of 75 correct; 0 failed"),
        "{text}"
    );
    for (group, rows) in [("train", 76), ("test", 76)] {
        let csv =
            std::fs::read_to_string(out.join(format!("iris_db/default/{group}.csv"))).unwrap();
        assert_eq!(
            csv.lines().count(),
            rows,
            "{group}.csv: a header and 75 rows"
        );
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/iris_sklearn.py");
    let check = Command::new("python3")
        .arg(script)
        .arg(&out)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    eprintln!("scikit-learn agrees: {report}");
    let _ = std::fs::remove_dir_all(&out);
}
