//! Checkpointed pipelines through the facade: resuming, corruption, failed
//! samples, models, bad keys, and NumPy reading our `.npy` files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bob_pipelines::checkpoint::{HashFn, is_temp, walk, write_npy};
use bob_pipelines::estimator::{Error, Slot};
use bob_pipelines::graph::{ModelSource, TaskGraph};
use bob_pipelines::prelude::*;
use ndarray::Array1;
use serde::{Deserialize, Serialize};

/// A folder that is removed when the test ends.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("bp-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Scales by the sample's `gain`, counts the samples it computed, fails keys
/// containing "bad".
struct Scale {
    calls: Arc<AtomicUsize>,
}
impl Transformer for Scale {
    type Input = Array1<f64>;
    type Output = Array1<f64>;
    fn transform(
        &self,
        b: &Batch<'_, Array1<f64>>,
    ) -> Result<Vec<SampleResult<Array1<f64>>>, BoxError> {
        self.calls.fetch_add(b.len(), Ordering::SeqCst);
        let gain: Vec<f64> = b.extra("gain")?;
        Ok(b.iter()
            .zip(gain)
            .zip(b.keys())
            .map(|((x, g), k)| {
                if k.contains("bad") {
                    Err(Failure::new("no face detected"))
                } else {
                    Ok(x * g)
                }
            })
            .collect())
    }
}

/// Learns the mean of every value it sees, counts its fits and its samples.
struct Mean {
    fits: Arc<AtomicUsize>,
    counter: u64,
}
/// The fitted mean. It counts its samples in the test's counter, found by an
/// id that is saved with the model, so a model read from disk counts too.
#[derive(Serialize, Deserialize)]
struct Centered {
    mean: f64,
    counter: u64,
}
impl Fit for Mean {
    type Input = Array1<f64>;
    type Fitted = Centered;
    fn fit(&self, b: &Batch<'_, Array1<f64>>) -> Result<Centered, BoxError> {
        self.fits.fetch_add(1, Ordering::SeqCst);
        let (sum, n) = b
            .iter()
            .fold((0.0, 0usize), |(s, n), x| (s + x.sum(), n + x.len()));
        Ok(Centered {
            mean: sum / n as f64,
            counter: self.counter,
        })
    }
}
impl Transformer for Centered {
    type Input = Array1<f64>;
    type Output = Array1<f64>;
    fn transform(
        &self,
        b: &Batch<'_, Array1<f64>>,
    ) -> Result<Vec<SampleResult<Array1<f64>>>, BoxError> {
        if let Some(c) = registry().lock().unwrap().get(&self.counter) {
            c.fetch_add(b.len(), Ordering::SeqCst);
        }
        Ok(b.iter().map(|x| Ok(x - self.mean)).collect())
    }
}

fn registry() -> &'static Mutex<HashMap<u64, Arc<AtomicUsize>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<u64, Arc<AtomicUsize>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

#[derive(Clone)]
struct Counters {
    id: u64,
    scale: Arc<AtomicUsize>,
    fits: Arc<AtomicUsize>,
    center: Arc<AtomicUsize>,
}

impl Default for Counters {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let c = Counters {
            id: NEXT.fetch_add(1, Ordering::SeqCst),
            scale: Default::default(),
            fits: Default::default(),
            center: Default::default(),
        };
        registry().lock().unwrap().insert(c.id, c.center.clone());
        c
    }
}

impl Counters {
    fn get(&self) -> (usize, usize, usize) {
        (
            self.scale.load(Ordering::SeqCst),
            self.fits.load(Ordering::SeqCst),
            self.center.load(Ordering::SeqCst),
        )
    }
}

fn pipeline(dir: &Path, c: &Counters) -> Pipeline<Array1<f64>, Array1<f64>> {
    Pipeline::new()
        .then(
            Step::new(Scale {
                calls: c.scale.clone(),
            })
            .name("scale")
            .transform_extra("gain", "gain"),
        )
        .then(
            Step::fit(Mean {
                fits: c.fits.clone(),
                counter: c.id,
            })
            .name("center"),
        )
        .checkpoint(
            Checkpoints::new(dir.join("features"))
                .model_dir(dir.join("models"))
                .hash(HashFn::BobHashString),
        )
}

fn samples(n: usize) -> Vec<Sample<Array1<f64>>> {
    (0..n)
        .map(|i| {
            let key = if i % 7 == 3 {
                format!("s{i}/bad")
            } else {
                format!("s{i}/img")
            };
            Sample::new(key, Array1::from_vec(vec![i as f64, 1.0, -(i as f64)]))
                .with_attr("gain", 1.5)
        })
        .collect()
}

type Flat = Vec<Result<(String, Vec<u64>), (String, String, String)>>;

/// Outputs as bits: "equal" means bit for bit.
fn flat(out: impl IntoIterator<Item = Slot<Array1<f64>>>) -> Flat {
    out.into_iter()
        .map(|s| match s {
            Ok(s) => Ok((
                s.key().to_string(),
                s.data().iter().map(|x| x.to_bits()).collect(),
            )),
            Err(f) => Err((
                f.key().to_string(),
                f.step().to_owned(),
                f.reason().to_owned(),
            )),
        })
        .collect()
}

fn run(
    dir: &Path,
    c: &Counters,
    n: usize,
    ex: &dyn Executor,
) -> Result<(Flat, bob_pipelines::estimator::Report), Error> {
    let mut p = pipeline(dir, c);
    let out = p.fit_transform(samples(n)).partition_size(10).compute(ex)?;
    let report = out.report().clone();
    Ok((flat(out), report))
}

/// The checkpoint files under `dir` (lineage stamps left out), sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    walk(dir, &mut |p| {
        if !p.ends_with(bob_pipelines::checkpoint::lineage::STAMP_FILE) {
            v.push(p.to_path_buf());
        }
    })
    .unwrap();
    v.sort();
    v
}

/// Every folder and file under `dir` with its modification time: a file
/// written, or written and removed, changes its folder's.
fn snapshot(dir: &Path) -> Vec<(PathBuf, std::time::SystemTime)> {
    let mut all = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        all.push((
            d.clone(),
            std::fs::metadata(&d).unwrap().modified().unwrap(),
        ));
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                all.push((p.clone(), e.metadata().unwrap().modified().unwrap()));
            }
        }
    }
    all.sort();
    all
}

/// `dir` mounted read-only at `at` until dropped.
struct ReadOnlyMount(PathBuf);

impl ReadOnlyMount {
    fn new(dir: &Path, at: &Path) -> Result<Self, String> {
        let mount = |args: &[&std::ffi::OsStr]| {
            let out = std::process::Command::new("mount")
                .args(args)
                .output()
                .map_err(|e| format!("cannot run mount: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
            }
        };
        mount(&["--bind".as_ref(), dir.as_os_str(), at.as_os_str()])?;
        let m = ReadOnlyMount(at.to_path_buf());
        mount(&["-o".as_ref(), "remount,bind,ro".as_ref(), at.as_os_str()])?;
        Ok(m)
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_run_with_nothing_to_compute_writes_nothing_and_reads_a_read_only_share() {
    let t = TempDir::new("nothing-to-write");
    let ex = by_name("threads-p2").unwrap();
    let (first, _) = run(&t.0, &Counters::default(), 50, &ex).unwrap();
    let before = snapshot(&t.0);
    let (again, report) = run(&t.0, &Counters::default(), 50, &ex).unwrap();
    assert_eq!(again, first);
    assert_eq!(report.from_checkpoints, 50);
    assert_eq!(snapshot(&t.0), before, "a run that computes nothing wrote");

    // The same folder on a read-only mount (root can bind-mount one).
    let share = TempDir::new("read-only-share");
    match ReadOnlyMount::new(&t.0, &share.0) {
        Ok(_mounted) => {
            assert!(std::fs::write(share.0.join("probe"), b"x").is_err());
            let (shared, report) = run(&share.0, &Counters::default(), 50, &ex).unwrap();
            assert_eq!(shared, first);
            assert_eq!(report.from_checkpoints, 50);
        }
        Err(why) => eprintln!(
            "not run on a read-only mount (its folder was checked unchanged instead): {why}"
        ),
    }
}

#[test]
fn a_second_run_reads_everything_and_computes_nothing() {
    let t = TempDir::new("resume");
    let c = Counters::default();
    let ex = by_name("threads-p2").unwrap();
    let (first, _) = run(&t.0, &c, 50, &ex).unwrap();
    assert_eq!(
        c.get(),
        (50, 1, 43),
        "50 scaled, one fit, 43 survivors centered"
    );
    // bob's layout and hash: key "s0/img" → sum of code points % 1000.
    let folder = "s0/img".chars().map(|ch| ch as u64).sum::<u64>() % 1000;
    assert!(
        t.0.join(format!("features/center/{folder}/s0/img.npy"))
            .is_file()
    );
    assert!(t.0.join("models/center.msgpack").is_file());
    assert!(
        t.0.join(format!(
            "features/scale/{}/s3/bad.failed",
            "s3/bad".chars().map(|ch| ch as u64).sum::<u64>() % 1000
        ))
        .is_file()
    );

    let mut p = pipeline(&t.0, &c);
    let lazy = p.fit_transform(samples(50)).partition_size(10);
    let plan = TaskGraph::new(lazy.info().unwrap()).plan();
    assert!(plan.is_noop(), "{plan}");
    assert_eq!(plan.steps[1].model, ModelSource::Disk);
    assert_eq!((plan.steps[0].on_disk, plan.steps[0].known_failed), (43, 7));
    let out = lazy.compute(&ex).unwrap();
    assert_eq!(out.report().from_checkpoints, 50);
    assert_eq!(flat(out), first, "bit for bit");
    assert_eq!(c.get(), (50, 1, 43), "nothing computed, nothing fitted");
    assert!(
        files(&t.0)
            .iter()
            .all(|f| !is_temp(&f.file_name().unwrap().to_string_lossy()))
    );
}

#[test]
fn corrupt_files_are_moved_aside_and_only_their_samples_recomputed() {
    let t = TempDir::new("corrupt");
    let c = Counters::default();
    let ex = by_name("single-threaded").unwrap();
    let (first, _) = run(&t.0, &c, 30, &ex).unwrap();
    let center: Vec<PathBuf> = files(&t.0.join("features/center"));
    // Truncated, garbage, and a valid .npy of the wrong dtype.
    let bytes = std::fs::read(&center[0]).unwrap();
    std::fs::write(&center[0], &bytes[..bytes.len() - 5]).unwrap();
    std::fs::write(&center[1], b"garbage bytes, not an array at all").unwrap();
    let mut wrong = Vec::new();
    write_npy(&Array1::<f32>::zeros(3), &mut wrong);
    std::fs::write(&center[2], wrong).unwrap();

    let before = c.get();
    let (again, report) = run(&t.0, &c, 30, &ex).unwrap();
    assert_eq!(
        again, first,
        "corrupt files are never used: the outputs are recomputed"
    );
    let after = c.get();
    assert_eq!(
        (after.0 - before.0, after.1 - before.1, after.2 - before.2),
        (3, 0, 3)
    );
    assert_eq!(report.recomputed, 3);
    assert_eq!(report.warnings.len(), 3, "{:?}", report.warnings);
    for w in &report.warnings {
        assert!(
            w.contains("corrupt checkpoint") && w.contains("moved aside"),
            "{w}"
        );
    }
    let all = report.warnings.join("\n");
    for why in ["truncated", "magic", "dtype is <f4"] {
        assert!(all.contains(why), "{why} missing in: {all}");
    }
    let aside: Vec<_> = files(&t.0)
        .into_iter()
        .filter(|f| f.to_string_lossy().ends_with(".corrupt"))
        .collect();
    assert_eq!(aside.len(), 3);
    // The rewritten files are valid: a third run reads all of them.
    let before = c.get();
    let (third, report) = run(&t.0, &c, 30, &ex).unwrap();
    assert_eq!((third, c.get(), report.recomputed), (first, before, 0));
}

#[test]
fn a_missing_file_is_recomputed_through_the_earlier_steps() {
    let t = TempDir::new("missing");
    let c = Counters::default();
    let ex = by_name("threads-p2").unwrap();
    let (first, _) = run(&t.0, &c, 30, &ex).unwrap();
    let victim = files(&t.0.join("features/center"))[4].clone();
    std::fs::remove_file(&victim).unwrap();
    let before = c.get();
    let (again, _) = run(&t.0, &c, 30, &ex).unwrap();
    assert_eq!(again, first);
    let after = c.get();
    // Its partition restarts from the `scale` checkpoint: only `center` runs, on that partition.
    assert_eq!(after.0 - before.0, 0);
    assert!(
        after.2 - before.2 <= 10 && after.2 > before.2,
        "{before:?} → {after:?}"
    );
    assert!(victim.is_file());
}

/// `n` delayed images, keyed by `key`, each `len` copies of its number;
/// the loader of image 3 fails once `gone` exists (the image is gone).
pub(crate) fn images_the_third_goes(
    n: u32,
    len: usize,
    gone: &Path,
    key: impl Fn(u32) -> String,
) -> Vec<DelayedSample<Array1<f64>>> {
    (0..n)
        .map(|i| {
            let gone = gone.to_path_buf();
            DelayedSample::new(key(i), move || {
                if i == 3 && gone.exists() {
                    Err(std::io::Error::other("the image is gone"))
                } else {
                    Ok(Array1::from_elem(len, f64::from(i)))
                }
            })
        })
        .collect()
}

#[test]
fn a_sample_recomputed_from_a_loader_that_now_fails_counts_as_not_loaded() {
    let t = TempDir::new("reload");
    let gone = t.0.join("k3.gone");
    let inputs = || {
        images_the_third_goes(6, 2, &gone, |i| format!("k{i}"))
            .into_iter()
            .map(|s| s.with_attr("gain", 2.0))
            .collect::<Vec<_>>()
    };
    let pipeline = Pipeline::new()
        .then(
            Step::new(Scale {
                calls: Arc::default(),
            })
            .name("scale")
            .transform_extra("gain", "gain"),
        )
        .checkpoint(Checkpoints::new(t.0.join("features")));
    for name in ["single-threaded", "threads-p2"] {
        let ex = by_name(name).unwrap();
        let _ = std::fs::remove_dir_all(t.0.join("features"));
        let _ = std::fs::remove_file(&gone);
        let out = pipeline.transform(inputs()).compute(&ex).unwrap();
        assert_eq!(out.samples().count(), 6, "{name}");
        // k3's output file is damaged (found when it is read: recomputed
        // from its input), and the image it came from is gone.
        let k3 = files(&t.0.join("features/scale"))
            .into_iter()
            .find(|f| f.file_name().is_some_and(|n| n == "k3.npy"))
            .unwrap();
        std::fs::write(k3, b"not a .npy file").unwrap();
        std::fs::write(&gone, b"").unwrap();
        let out = pipeline.transform(inputs()).compute(&ex).unwrap();
        let report = out.report();
        assert_eq!(
            (
                report.recomputed,
                report.load_failed,
                report.from_checkpoints
            ),
            (1, 1, 5),
            "{name}: {report}"
        );
        let failed: Vec<_> = out.failed().map(|f| f.key().to_string()).collect();
        assert_eq!(failed, ["k3"], "{name}");
        assert!(
            report.to_string().contains("1 samples could not be loaded"),
            "{name}: {report}"
        );
    }
}

#[test]
fn failed_samples_are_never_checkpointed_and_not_retried() {
    let t = TempDir::new("failed");
    let c = Counters::default();
    let ex = by_name("threads-p2").unwrap();
    let (first, _) = run(&t.0, &c, 21, &ex).unwrap();
    let failures: Vec<_> = first.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(failures.len(), 3);
    assert!(
        failures.iter().all(|(k, step, why)| k.ends_with("/bad")
            && step == "scale"
            && why == "no face detected")
    );
    let feature_files = files(&t.0.join("features"));
    assert!(
        feature_files
            .iter()
            .all(|f| !f.to_string_lossy().contains("bad.npy")),
        "never checkpointed"
    );
    let before = c.get();
    let (again, _) = run(&t.0, &c, 21, &ex).unwrap();
    assert_eq!(again, first, "same failures, same places, same reasons");
    assert_eq!(c.get(), before, "known failures are not recomputed");
}

#[test]
fn a_model_on_disk_is_not_refitted_and_force_recomputes_everything() {
    let t = TempDir::new("force");
    let c = Counters::default();
    let ex = by_name("single-threaded").unwrap();
    let (first, _) = run(&t.0, &c, 20, &ex).unwrap();
    // Features of `center` gone, model kept: transform only, no fit.
    std::fs::remove_dir_all(t.0.join("features/center")).unwrap();
    let before = c.get();
    let (again, _) = run(&t.0, &c, 20, &ex).unwrap();
    assert_eq!(again, first);
    assert_eq!(c.get().1, before.1, "the model file means no fit");

    let mut p = pipeline(&t.0, &c);
    p = p.checkpoint(
        Checkpoints::new(t.0.join("features"))
            .model_dir(t.0.join("models"))
            .hash(HashFn::BobHashString)
            .force(true),
    );
    let before = c.get();
    let out = p
        .fit_transform(samples(20))
        .partition_size(10)
        .compute(&ex)
        .unwrap();
    assert_eq!(flat(out), first);
    let after = c.get();
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (20, 1),
        "force: everything again"
    );
}

#[test]
fn a_refit_makes_later_checkpoints_stale() {
    let t = TempDir::new("stale");
    let c = Counters::default();
    let ex = by_name("single-threaded").unwrap();
    let (first, _) = run(&t.0, &c, 20, &ex).unwrap();
    // Change one `scale` output and drop the model: the refit learns another mean,
    // so every `center` output on disk is stale and must not be read.
    let scaled = files(&t.0.join("features/scale"));
    let npy = scaled
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "npy"))
        .unwrap();
    let mut bytes = Vec::new();
    write_npy(&Array1::from_elem(3, 100.0f64), &mut bytes);
    std::fs::write(npy, bytes).unwrap();
    std::fs::remove_file(t.0.join("models/center.msgpack")).unwrap();

    let mut p = pipeline(&t.0, &c);
    let before = c.get();
    let lazy = p.fit_transform(samples(20)).partition_size(10);
    let plan = TaskGraph::new(lazy.info().unwrap()).plan();
    assert_eq!(plan.steps[1].model, ModelSource::Fit, "{plan}");
    assert_eq!(plan.steps[1].to_compute, 20, "{plan}");
    let again = flat(lazy.compute(&ex).unwrap());
    let after = c.get();
    assert_eq!(
        after.0, before.0,
        "`scale` outputs are still valid and read"
    );
    assert_eq!(
        (after.1 - before.1, after.2 - before.2),
        (1, 17),
        "refit, and all 17 survivors recomputed"
    );
    let changed = again
        .iter()
        .zip(&first)
        .filter(|(a, b)| a.is_ok() && a != b)
        .count();
    assert_eq!(changed, 17, "no stale `center` output was used");
}

#[test]
fn keys_that_escape_the_features_folder_are_refused_before_any_work() {
    let t = TempDir::new("badkeys");
    for key in ["../escape", "/etc/passwd", "a/../../b"] {
        let c = Counters::default();
        let mut p = pipeline(&t.0, &c);
        let s = vec![Sample::new(key, Array1::zeros(3)).with_attr("gain", 1.0)];
        let e = p
            .fit_transform(s)
            .compute(&by_name("single-threaded").unwrap())
            .unwrap_err();
        assert!(e.to_string().contains(&format!("{key:?}")), "{e}");
        assert_eq!(c.get(), (0, 0, 0), "nothing computed for {key}");
    }
    assert!(!t.0.join("escape").exists());
}

#[test]
fn in_memory_refuses_a_checkpointed_pipeline() {
    let t = TempDir::new("inmem");
    let mut p = pipeline(&t.0, &Counters::default());
    let e = p
        .fit_transform(samples(3))
        .compute(&InMemory)
        .unwrap_err()
        .to_string();
    assert!(e.contains("single-threaded"), "{e}");
}

#[test]
fn numpy_reads_our_npy_checkpoints() {
    let t = TempDir::new("numpy");
    let c = Counters::default();
    let (out, _) = run(&t.0, &c, 10, &by_name("single-threaded").unwrap()).unwrap();
    let (key, bits) = out.iter().find_map(|r| r.as_ref().ok()).unwrap().clone();
    let folder = key.chars().map(|ch| ch as u64).sum::<u64>() % 1000;
    let path = t.0.join(format!("features/center/{folder}/{key}.npy"));
    let script = "import sys, numpy; a = numpy.load(sys.argv[1]); print(a.dtype, a.shape, ' '.join(repr(float(x)) for x in a))";
    let res = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .output();
    let ok = res.as_ref().is_ok_and(|o| o.status.success());
    if !ok {
        let why = match &res {
            Err(e) => format!("python3 could not run: {e}"),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        };
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !in_ci,
            "CI must have python3 with numpy (scripts/test.sh installs it): {why}"
        );
        eprintln!("skipped the NumPy check: {why}");
        return;
    }
    let text = String::from_utf8(res.unwrap().stdout).unwrap();
    let mut words = text.split_whitespace();
    assert_eq!(words.next(), Some("float64"));
    assert_eq!(words.next(), Some("(3,)"));
    let values: Vec<u64> = words.map(|w| w.parse::<f64>().unwrap().to_bits()).collect();
    assert_eq!(
        values, bits,
        "numpy reads exactly the values the pipeline produced"
    );
}

/// Fails the one key it is told to, doubles the rest.
struct Gate {
    bad: &'static str,
}
impl Transformer for Gate {
    type Input = Array1<f64>;
    type Output = Array1<f64>;
    fn transform(
        &self,
        b: &Batch<'_, Array1<f64>>,
    ) -> Result<Vec<SampleResult<Array1<f64>>>, BoxError> {
        Ok(b.iter()
            .zip(b.keys())
            .map(|(x, k)| {
                if k == self.bad {
                    Err(Failure::new("rejected"))
                } else {
                    Ok(x * 2.0)
                }
            })
            .collect())
    }
}

fn gated(dir: &Path, bad: &'static str, force: bool) -> Pipeline<Array1<f64>, Array1<f64>> {
    Pipeline::new()
        .then(Step::new(Gate { bad }).name("gate"))
        .then(Step::new(Gate { bad: "" }).name("again"))
        .checkpoint(Checkpoints::new(dir).force(force))
}

fn plain(n: usize) -> Vec<Sample<Array1<f64>>> {
    (0..n)
        .map(|i| Sample::new(format!("k{i}"), Array1::from_elem(2, i as f64)))
        .collect()
}

#[test]
fn a_sample_that_now_fails_loses_its_old_outputs() {
    let t = TempDir::new("nowfails");
    let ex = by_name("single-threaded").unwrap();
    gated(&t.0, "none", false)
        .transform(plain(6))
        .compute(&ex)
        .unwrap();
    assert!(t.0.join("again/k3.npy").is_file());
    // Rerun with force; k3 is rejected now.
    let out = gated(&t.0, "k3", true)
        .transform(plain(6))
        .compute(&ex)
        .unwrap();
    assert_eq!(out.failed().count(), 1);
    assert!(
        !t.0.join("gate/k3.npy").exists() && !t.0.join("again/k3.npy").exists(),
        "stale outputs removed"
    );
    assert!(t.0.join("gate/k3.failed").is_file());
    // A normal run reads what is on disk: k3 stays failed, never a stale success.
    let out = gated(&t.0, "none", false)
        .transform(plain(6))
        .compute(&ex)
        .unwrap();
    let f: Vec<_> = out.failed().collect();
    assert_eq!(
        (f.len(), f[0].key().as_str(), f[0].step(), f[0].reason()),
        (1, "k3", "gate", "rejected")
    );
    assert_eq!(out.report().from_checkpoints, 6);
}

/// Writes the vector's sum into an attribute.
struct Sum;
impl Transformer for Sum {
    type Input = Array1<f64>;
    type Output = f64;
    fn transform(&self, b: &Batch<'_, Array1<f64>>) -> Result<Vec<SampleResult<f64>>, BoxError> {
        Ok(b.iter().map(|x| Ok(x.sum())).collect())
    }
}

/// Adds extra argument `offset` to every element.
struct Offset;
impl Transformer for Offset {
    type Input = Array1<f64>;
    type Output = Array1<f64>;
    fn transform(
        &self,
        b: &Batch<'_, Array1<f64>>,
    ) -> Result<Vec<SampleResult<Array1<f64>>>, BoxError> {
        let o: Vec<f64> = b.extra("offset")?;
        Ok(b.iter().zip(o).map(|(x, o)| Ok(x + o)).collect())
    }
}

#[test]
fn attributes_written_by_steps_survive_a_resume() {
    let t = TempDir::new("attrs");
    let ex = by_name("single-threaded").unwrap();
    let p = || {
        Pipeline::new()
            .then(Step::new(Sum).name("sum").output_attribute("total"))
            .then(Step::new(Gate { bad: "" }).name("double"))
            .then(
                Step::new(Offset)
                    .name("offset")
                    .transform_extra("offset", "total"),
            )
            .checkpoint(Checkpoints::new(&t.0))
    };
    let first = flat(p().transform(plain(5)).compute(&ex).unwrap());
    let out = p().transform(plain(5)).compute(&ex).unwrap();
    // Resumed past the attribute step (bob's annotate-then-crop): its
    // attribute is read back with the checkpoint, nothing is computed.
    assert_eq!(out.report().from_checkpoints, 5);
    assert!(
        out.report().steps.iter().all(|s| s.samples == 0),
        "{}",
        out.report()
    );
    let total: f64 = out.samples().next().unwrap().attr("total").unwrap();
    assert!(total.is_finite());
    assert_eq!(
        flat(out),
        first,
        "the attribute is there on the second run too"
    );
}

#[test]
fn a_transform_reads_the_model_file_a_fit_wrote() {
    let t = TempDir::new("modelfile");
    let ex = by_name("single-threaded").unwrap();
    let (first, _) = run(&t.0, &Counters::default(), 20, &ex).unwrap();
    // Another program: a fresh pipeline that only transforms.
    let c = Counters::default();
    let fresh = pipeline(&t.0, &c);
    let out = fresh
        .transform(samples(20))
        .partition_size(10)
        .compute(&ex)
        .unwrap();
    assert_eq!(flat(out), first);
    assert_eq!(c.get().1, 0, "no fit");
}

#[test]
fn a_sample_that_failed_to_load_is_remembered() {
    let t = TempDir::new("loadfail");
    let ex = by_name("single-threaded").unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let inputs = || {
        (0..8)
            .map(|i| {
                DelayedSample::new(format!("k{i}"), move || {
                    if i == 5 {
                        Err(std::io::Error::other("unreadable image"))
                    } else {
                        Ok(Array1::from_elem(2, i as f64))
                    }
                })
            })
            .collect::<Vec<_>>()
    };
    let p = || {
        Pipeline::new()
            .then(
                Step::new(Scale {
                    calls: calls.clone(),
                })
                .name("scale")
                .transform_extra("gain", "gain"),
            )
            .checkpoint(Checkpoints::new(&t.0))
    };
    // `Scale` wants a gain: give every sample one through a delayed attribute.
    let with_gain = || {
        inputs()
            .into_iter()
            .map(|s| s.with_attr("gain", 2.0))
            .collect::<Vec<_>>()
    };
    let first = flat(p().transform(with_gain()).compute(&ex).unwrap());
    assert_eq!(first.iter().filter(|r| r.is_err()).count(), 1);
    let before = calls.load(Ordering::SeqCst);
    let out = p().transform(with_gain()).compute(&ex).unwrap();
    assert_eq!(
        out.report().from_checkpoints,
        8,
        "the partition resumes despite its unloadable sample"
    );
    assert_eq!(calls.load(Ordering::SeqCst), before);
    let again = flat(out);
    assert_eq!(again, first);
    assert!(
        matches!(&again[5], Err((k, step, why)) if k == "k5" && step == "load" && why.contains("unreadable image"))
    );
}

/// Doubles its input.
struct Embed;
impl Transformer for Embed {
    type Input = Array1<f64>;
    type Output = Array1<f64>;
    fn transform(
        &self,
        b: &Batch<'_, Array1<f64>>,
    ) -> Result<Vec<SampleResult<Array1<f64>>>, BoxError> {
        Ok(b.iter().map(|x| Ok(x * 2.0)).collect())
    }
}

/// Learns the mean vector of a stacked batch.
struct MeanVector;
#[derive(Serialize, Deserialize)]
struct Shift(Vec<f64>);
impl Fit for MeanVector {
    type Input = Array1<f64>;
    type Fitted = Shift;
    fn fit(&self, b: &Batch<'_, Array1<f64>>) -> Result<Shift, BoxError> {
        let stacked = b.to_array()?;
        Ok(Shift(stacked.mean_axis(ndarray::Axis(0)).unwrap().to_vec()))
    }
}
impl Transformer for Shift {
    type Input = Array1<f64>;
    type Output = Array1<f64>;
    fn transform(
        &self,
        b: &Batch<'_, Array1<f64>>,
    ) -> Result<Vec<SampleResult<Array1<f64>>>, BoxError> {
        Ok(b.iter()
            .map(|x| Ok(x - &Array1::from(self.0.clone())))
            .collect())
    }
}

#[test]
fn a_datum_of_another_shape_read_back_names_its_file_and_how_to_recompute_it() {
    let t = TempDir::new("odd-shape");
    let pipeline = || {
        Pipeline::new()
            .then(Step::new(Embed).name("embed"))
            .then(Step::fit(MeanVector).name("shift"))
            .checkpoint(Checkpoints::new(t.0.join("features")).model_dir(t.0.join("models")))
    };
    let samples = || (0..10).map(|i| Sample::new(format!("s{i}"), Array1::from(vec![i as f64; 3])));
    let ex = by_name("threads-p2").unwrap();
    pipeline().fit_transform(samples()).compute(&ex).unwrap();

    // Another version of `embed` wrote 2 values for s3; the model is refitted.
    let odd = files(&t.0.join("features/embed"))
        .into_iter()
        .find(|p| p.ends_with("s3.npy"))
        .unwrap();
    let mut bytes = Vec::new();
    write_npy(&Array1::from(vec![1.0f64, 2.0]), &mut bytes);
    std::fs::write(&odd, bytes).unwrap();
    std::fs::remove_file(t.0.join("models/shift.msgpack")).unwrap();

    let e = pipeline()
        .fit_transform(samples())
        .compute(&ex)
        .unwrap_err()
        .to_string();
    for part in [
        "`shift.fit`",
        "\"s3\"",
        "shape [2]",
        &odd.display().to_string(),
        "delete the file",
    ] {
        assert!(e.contains(part), "{part} missing in: {e}");
    }
}

#[test]
fn a_failure_that_went_away_is_tried_again_when_asked() {
    let t = TempDir::new("retry");
    let restored = t.0.join("k5.present");
    let ex = by_name("single-threaded").unwrap();
    let inputs = || {
        (0..8)
            .map(|i| {
                let restored = restored.clone();
                DelayedSample::new(format!("k{i}"), move || {
                    if i == 5 && !restored.exists() {
                        Err(std::io::Error::other("No such file or directory"))
                    } else {
                        Ok(Array1::from_elem(2, i as f64))
                    }
                })
                .with_attr("gain", 2.0)
            })
            .collect::<Vec<_>>()
    };
    let p = |retry: bool| {
        let calls = Arc::new(AtomicUsize::new(0));
        Pipeline::new()
            .then(
                Step::new(Scale { calls })
                    .name("scale")
                    .transform_extra("gain", "gain"),
            )
            .checkpoint(Checkpoints::new(t.0.join("features")).retry_failed(retry))
    };
    let k5 = |out: &Outputs<Array1<f64>>| out.iter().nth(5).unwrap().is_ok();
    let out = p(false).transform(inputs()).compute(&ex).unwrap();
    assert!(!k5(&out));
    // The file is back; a plain rerun still reports the known failure, and
    // says how to try it again.
    std::fs::write(&restored, b"").unwrap();
    let out = p(false).transform(inputs()).compute(&ex).unwrap();
    assert!(!k5(&out));
    assert_eq!(out.report().known_failed, 1);
    let shown = out.report().to_string();
    assert!(
        shown.contains("retry_failed(true)") && shown.contains("clean --failed"),
        "{shown}"
    );
    // Asked, it tries again: only k5 is computed.
    let out = p(true).transform(inputs()).compute(&ex).unwrap();
    assert!(k5(&out), "{}", out.report());
    assert_eq!(out.report().recomputed, 1);
    assert_eq!(
        p(false)
            .transform(inputs())
            .compute(&ex)
            .unwrap()
            .report()
            .known_failed,
        0
    );

    // The command's way: remove the markers, of one step or all.
    std::fs::remove_file(&restored).unwrap();
    let features = t.0.join("features");
    std::fs::remove_dir_all(&features).unwrap();
    let out = p(false).transform(inputs()).compute(&ex).unwrap();
    assert!(!k5(&out));
    let e = bob_pipelines::checkpoint::store::clean_failed(&features, Some("sacle")).unwrap_err();
    assert!(
        e.to_string()
            .contains("no step folder `sacle`; its steps: scale"),
        "{e}"
    );
    let n = bob_pipelines::checkpoint::store::clean_failed(&features, Some("scale")).unwrap();
    assert_eq!(n, 1);
    std::fs::write(&restored, b"").unwrap();
    assert!(k5(&p(false).transform(inputs()).compute(&ex).unwrap()));
}

#[test]
fn sets_of_delayed_samples_resume_without_loading_an_image() {
    let t = TempDir::new("lazysets");
    let ex = by_name("threads").unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    // Ten subjects of ten images each, every image read through a loader.
    let sets = || {
        (0..10)
            .map(|s| {
                let images = (0..10)
                    .map(|i| {
                        let loads = loads.clone();
                        DelayedSample::new(format!("s{s}/img{i}"), move || {
                            loads.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, std::io::Error>(Array1::from_elem(2, (s * 10 + i) as f64))
                        })
                        .with_attr("gain", 2.0)
                    })
                    .collect();
                SampleSet::new(format!("s{s}"), images).with_attr("template_id", s)
            })
            .collect::<Vec<_>>()
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let p = Pipeline::new()
        .then(
            Step::new(Scale {
                calls: calls.clone(),
            })
            .name("scale")
            .transform_extra("gain", "gain"),
        )
        .checkpoint(Checkpoints::new(&t.0));
    let first = p.transform_sets(sets(), &ex).unwrap();
    assert_eq!(loads.load(Ordering::SeqCst), 100);
    assert_eq!(calls.load(Ordering::SeqCst), 100);

    let again = p.transform_sets(sets(), &ex).unwrap();
    assert_eq!(
        loads.load(Ordering::SeqCst),
        100,
        "a resumed set loaded images"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 100);
    assert_eq!(again.report().from_checkpoints, 100);
    assert_eq!(again.sets(), first.sets());
    let s3 = &again.sets()[3];
    assert_eq!(s3.attr::<u32>("template_id").unwrap(), 3);
    assert_eq!(s3.samples()[4].key(), "s3/img4");
    assert_eq!(s3.samples()[4].data(), &Array1::from_elem(2, 68.0));
}
