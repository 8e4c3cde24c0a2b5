//! Checkpoints that know what produced them: lineage stamps, changed steps,
//! the kill windows of a refit, a new failure and a renewal (driven exactly by
//! failpoints in a child process), duplicate keys, orphan folders, and
//! `checkpoint verify` on the layout the library writes by default.

use std::path::Path;
use std::process::{Command, Stdio};

use bob_pipelines::checkpoint::{FAILPOINT_ENV, failpoints_enabled, verify::verify};
use bob_pipelines::estimator::{Error, OnChange};
use bob_pipelines::graph::Error as RunError;
use bob_pipelines::prelude::*;
use ndarray::Array1;
use serde::{Deserialize, Serialize};

use crate::checkpoint::TempDir;

const DIR_ENV: &str = "BOB_PIPELINES_LINEAGE_DIR";
const SHIFT_ENV: &str = "BOB_PIPELINES_LINEAGE_SHIFT";
const FAIL_ENV: &str = "BOB_PIPELINES_LINEAGE_FAIL";
const FORCE_ENV: &str = "BOB_PIPELINES_LINEAGE_FORCE";

/// `a · x + b`; fails the key named in `fail` (as a missing image would:
/// nothing about the step says so).
struct Affine {
    a: f64,
    b: f64,
    fail: Option<String>,
}
impl Transformer for Affine {
    type Input = Array1<f64>;
    type Output = Array1<f64>;
    fn transform(
        &self,
        batch: &Batch<'_, Array1<f64>>,
    ) -> Result<Vec<SampleResult<Array1<f64>>>, BoxError> {
        Ok(batch
            .iter()
            .zip(batch.keys())
            .map(|(x, k)| {
                if self.fail.as_deref() == Some(k.as_str()) {
                    Err(Failure::new("no such file"))
                } else {
                    Ok(x * self.a + self.b)
                }
            })
            .collect())
    }
}

/// `Affine` that changes nothing.
fn identity() -> Affine {
    Affine {
        a: 1.0,
        b: 0.0,
        fail: None,
    }
}

/// Learns the mean, plus a shift its author did not declare (new training
/// data would change the model the same way).
struct Mean {
    shift: f64,
}
#[derive(Serialize, Deserialize)]
struct Centered {
    mean: f64,
}
impl Fit for Mean {
    type Input = Array1<f64>;
    type Fitted = Centered;
    fn fit(&self, batch: &Batch<'_, Array1<f64>>) -> Result<Centered, BoxError> {
        let (s, n) = batch
            .iter()
            .fold((0.0, 0usize), |(s, n), x| (s + x.sum(), n + x.len()));
        Ok(Centered {
            mean: s / n as f64 + self.shift,
        })
    }
}
impl Transformer for Centered {
    type Input = Array1<f64>;
    type Output = Array1<f64>;
    fn transform(
        &self,
        batch: &Batch<'_, Array1<f64>>,
    ) -> Result<Vec<SampleResult<Array1<f64>>>, BoxError> {
        Ok(batch.iter().map(|x| Ok(x - self.mean)).collect())
    }
}

/// What a pipeline is made of in these tests.
#[derive(Clone)]
struct Setup {
    a: f64,
    shift: f64,
    fail: Option<String>,
    force: bool,
    on_change: OnChange,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            a: 1.0,
            shift: 0.0,
            fail: None,
            force: false,
            on_change: OnChange::Recompute,
        }
    }
}

fn pipeline(dir: &Path, s: &Setup) -> Pipeline<Array1<f64>, Array1<f64>> {
    let affine = |a: f64, fail: Option<String>| Affine { a, b: 0.5, fail };
    Pipeline::new()
        .then(
            Step::new(affine(s.a, s.fail.clone()))
                .name("scale")
                .param("a", s.a),
        )
        .then(Step::fit(Mean { shift: s.shift }).name("center"))
        .then(Step::new(affine(3.0, None)).name("spread"))
        .checkpoint(
            Checkpoints::new(dir.join("features"))
                .model_dir(dir.join("models"))
                .force(s.force)
                .on_change(s.on_change),
        )
}

fn samples() -> impl ExactSizeIterator<Item = Sample<Array1<f64>>> + Send {
    (0..40).map(|i| Sample::new(format!("s{i}"), Array1::from_vec(vec![i as f64, -1.0])))
}

type Bits = Vec<(String, Result<Vec<u64>, String>)>;

fn bits(out: Outputs<Array1<f64>>) -> Bits {
    out.into_iter()
        .map(|s| match s {
            Ok(s) => (
                s.key().to_string(),
                Ok(s.data().iter().map(|v| v.to_bits()).collect()),
            ),
            Err(f) => (
                f.key().to_string(),
                Err(format!("{}: {}", f.step(), f.reason())),
            ),
        })
        .collect()
}

fn run(dir: &Path, s: &Setup) -> Result<(Bits, bob_pipelines::estimator::Report), Error> {
    let mut p = pipeline(dir, s);
    let out = p
        .fit_transform(samples())
        .npartitions(4)
        .compute(&by_name("single-threaded").unwrap())?;
    let report = out.report().clone();
    Ok((bits(out), report))
}

/// The outputs of an uninterrupted run of `s` in a folder of its own.
fn reference(s: &Setup) -> Bits {
    let t = TempDir::new("lineage-ref");
    run(&t.0, s).unwrap().0
}

#[test]
fn a_changed_parameter_makes_its_and_every_later_steps_checkpoints_stale() {
    let t = TempDir::new("lineage-param");
    run(&t.0, &Setup::default()).unwrap();
    let changed = Setup {
        a: 2.0,
        ..Setup::default()
    };
    // The dry run says what changed.
    let p = pipeline(&t.0, &changed);
    let dry = p.transform(samples()).npartitions(4);
    let plan = TaskGraph::new(dry.info().unwrap()).plan().to_string();
    assert!(plan.contains("stale checkpoints"), "{plan}");
    assert!(
        plan.contains("params=[a=1.0]") && plan.contains("params=[a=2.0]"),
        "{plan}"
    );
    drop(dry);

    let (out, report) = run(&t.0, &changed).unwrap();
    assert_eq!(out, reference(&changed), "nothing of the old step is read");
    assert_eq!(report.from_checkpoints, 0);
    // The old files are gone with the folders moved aside.
    let root: Vec<String> = std::fs::read_dir(t.0.join("features"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(root.iter().all(|n| !n.contains(".stale")), "{root:?}");
    // And the next run reads everything back.
    let (again, report) = run(&t.0, &changed).unwrap();
    assert_eq!(again, out);
    assert_eq!(report.from_checkpoints, 40);
}

#[test]
fn a_run_told_to_stop_on_changes_names_the_step_and_what_changed() {
    let t = TempDir::new("lineage-stop");
    run(&t.0, &Setup::default()).unwrap();
    let e = run(
        &t.0,
        &Setup {
            a: 2.0,
            on_change: OnChange::Error,
            ..Setup::default()
        },
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Run(RunError::Changed { .. })), "{msg}");
    for part in [
        "step `scale`",
        "params=[a=1.0]",
        "params=[a=2.0]",
        "remove that folder",
    ] {
        assert!(msg.contains(part), "{part} missing in: {msg}");
    }
}

#[test]
fn a_new_version_of_a_step_is_noticed() {
    let t = TempDir::new("lineage-version");
    let p = |v: &str| {
        Pipeline::new()
            .then(Step::new(identity()).name("scale").version(v))
            .checkpoint(Checkpoints::new(t.0.join("features")))
    };
    let ex = by_name("single-threaded").unwrap();
    p("1").transform(samples()).compute(&ex).unwrap();
    let out = p("1").transform(samples()).compute(&ex).unwrap();
    assert_eq!(out.report().from_checkpoints, 40);
    let out = p("2").transform(samples()).compute(&ex).unwrap();
    assert_eq!(
        out.report().from_checkpoints,
        0,
        "version 2 reads nothing of version 1"
    );
}

#[test]
fn duplicate_keys_are_refused_before_any_work() {
    let t = TempDir::new("lineage-dup");
    let mut p = pipeline(&t.0, &Setup::default());
    let samples = (0..10).map(|i| {
        let key = if i == 7 {
            "s2".to_owned()
        } else {
            format!("s{i}")
        };
        Sample::new(key, Array1::from_vec(vec![i as f64]))
    });
    let e = p
        .fit_transform(samples)
        .compute(&by_name("single-threaded").unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"s2\"") && e.contains("samples 2 and 7"), "{e}");
    assert!(!t.0.join("features/scale").exists(), "nothing was written");
}

#[test]
fn a_folder_of_a_step_the_pipeline_no_longer_has_is_named() {
    let t = TempDir::new("lineage-orphan");
    let p = |name: &str| {
        Pipeline::new()
            .then(Step::new(identity()).name(name))
            .checkpoint(Checkpoints::new(t.0.join("features")))
    };
    let ex = by_name("single-threaded").unwrap();
    p("addoffset").transform(samples()).compute(&ex).unwrap();
    let out = p("addoffset-1").transform(samples()).compute(&ex).unwrap();
    let w = out.report().warnings.join("\n");
    assert!(
        w.contains("features/addoffset") && w.contains("step `addoffset`,"),
        "{w}"
    );
}

#[test]
fn verify_accepts_the_default_layout_with_models_beside_the_steps() {
    let t = TempDir::new("lineage-verify");
    let mut p = Pipeline::new()
        .then(Step::new(identity()).name("scale"))
        .then(Step::fit(Mean { shift: 0.0 }).name("center"))
        .checkpoint(Checkpoints::new(t.0.clone()));
    p.fit_transform(samples())
        .compute(&by_name("single-threaded").unwrap())
        .unwrap();
    assert!(
        t.0.join("center.msgpack").is_file(),
        "the model sits beside"
    );
    let v = verify(&t.0).unwrap();
    assert!(v.is_clean() && v.files() == 80, "{v}");
    assert!(v.steps.iter().all(|s| s.unknown.is_empty()), "{v}");
    // A step's own folder is not a features folder, and the hint names the one.
    let e = verify(&t.0.join("scale")).unwrap_err().to_string();
    assert!(e.contains(&format!("give {}", t.0.display())), "{e}");
}

/// A child process: runs the pipeline set up by the environment in the
/// folder it names, and writes its outputs there.
#[test]
#[ignore = "a helper that the failpoint tests of `lineage` run in child processes"]
fn lineage_child() {
    let dir = std::path::PathBuf::from(std::env::var(DIR_ENV).unwrap());
    let s = Setup {
        shift: std::env::var(SHIFT_ENV).map_or(0.0, |v| v.parse().unwrap()),
        fail: std::env::var(FAIL_ENV).ok(),
        force: std::env::var(FORCE_ENV).is_ok(),
        ..Setup::default()
    };
    let (out, _) = run(&dir, &s).unwrap();
    std::fs::write(dir.join("result.json"), format!("{out:?}")).unwrap();
}

/// Runs the child with `vars`; returns whether it ended well.
fn child(dir: &Path, vars: &[(&str, &str)]) -> bool {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "lineage::lineage_child",
        "--ignored",
        "--test-threads",
        "1",
    ])
    .env(DIR_ENV, dir)
    .env_remove(FAILPOINT_ENV)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    for (k, v) in vars {
        c.env(k, v);
    }
    c.status().unwrap().success()
}

fn failpoints_or_skip(test: &str) -> bool {
    crate::available_or_skip(
        failpoints_enabled(),
        test,
        "this build has no failpoints (the test command builds with --all-features)",
    )
}

fn result(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("result.json")).unwrap()
}

/// A first run; then new training data (the model changes, nothing about
/// the step does), refitted by a child that dies at `failpoint`; then a
/// rerun, which must end as an uninterrupted run with the new model.
fn refit_killed_at(name: &str, failpoint: &str) -> TempDir {
    let t = TempDir::new(name);
    assert!(child(&t.0, &[]));
    std::fs::remove_file(t.0.join("models/center.msgpack")).unwrap();
    let killed = child(&t.0, &[(SHIFT_ENV, "1"), (FAILPOINT_ENV, failpoint)]);
    assert!(!killed, "the child died at {failpoint}");
    assert!(child(&t.0, &[(SHIFT_ENV, "1")]));
    let want = reference(&Setup {
        shift: 1.0,
        ..Setup::default()
    });
    assert_eq!(result(&t.0), format!("{want:?}"));
    t
}

#[test]
fn a_refit_killed_after_its_model_is_saved_never_serves_the_old_models_outputs() {
    if failpoints_or_skip("a_refit_killed_after_its_model_is_saved…") {
        let t = refit_killed_at("lineage-refit", "model.saved");
        assert!(t.0.join("models/center.msgpack").is_file());
    }
}

#[test]
fn a_new_failure_killed_between_its_removal_and_its_marker_is_never_read_as_the_old_output() {
    if !failpoints_or_skip("a_new_failure_killed…") {
        return;
    }
    let t = TempDir::new("lineage-failure");
    assert!(child(&t.0, &[]));
    // s5's image went missing: recomputed (force), it now fails at `scale`.
    let killed = child(
        &t.0,
        &[
            (FAIL_ENV, "s5"),
            (FORCE_ENV, "1"),
            (FAILPOINT_ENV, "checkpoint.failure.outputs-removed"),
        ],
    );
    assert!(!killed, "the child died at the failpoint");
    assert!(child(&t.0, &[(FAIL_ENV, "s5")]));
    let got = result(&t.0);
    assert!(
        got.contains("(\"s5\", Err(\"scale: no such file\"))"),
        "s5's old output came back: {got}"
    );
}

#[test]
fn a_renewal_killed_after_the_folder_is_moved_aside_ends_right() {
    if !failpoints_or_skip("a_renewal_killed…") {
        return;
    }
    // The refit's model differs: `center` and `spread` are renewed; the
    // child dies after the first folder is moved aside, before its stamp.
    let t = refit_killed_at("lineage-renew", "lineage.moved-aside");
    let left: Vec<String> = std::fs::read_dir(t.0.join("features"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".stale"))
        .collect();
    assert!(left.is_empty(), "folders moved aside are removed: {left:?}");
}
