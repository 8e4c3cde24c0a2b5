//! bob.bio's experiment in small, shared by `examples/experiment.rs` and the
//! `experiment` benchmark: a CSV file-list database of generated 8×8 images
//! in groups `train`, `enroll` and `probe`, read lazily; preprocessing,
//! features, a fitted PCA; enrollment by subject (sample sets); cosine
//! scores in bob's 4-column score file.
#![allow(dead_code, reason = "the example and the benchmark use parts")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bob_pipelines::prelude::*;
use bob_pipelines::sample::{FileListDatabase, Meta};
use ndarray::{Array1, Array2, Axis};
use serde::{Deserialize, Serialize};

/// Pixels of an image.
pub(crate) const SIDE: usize = 8;
/// Principal components kept.
pub(crate) const COMPONENTS: usize = 6;

/// The database's shape: subjects in `train`, others in `enroll` and
/// `probe` (as bob.bio's `dev` group: people the model never saw).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) train_subjects: usize,
    pub(crate) dev_subjects: usize,
    pub(crate) images: usize,
}

impl Shape {
    /// 400 images: 25 train subjects × 10, 15 dev subjects × 10 (4 to
    /// enroll, 6 to probe).
    pub(crate) const SMALL: Shape = Shape {
        train_subjects: 25,
        dev_subjects: 15,
        images: 10,
    };
}

/// A reproducible pseudo-random number in [0, 1) from a seed (SplitMix64).
fn noise(seed: u64) -> f32 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
}

/// Image `image` of subject `subject`: the subject's pattern, shifted in
/// brightness, plus noise. Little-endian `f32`s.
fn image(subject: usize, image: usize) -> Vec<u8> {
    let gain = 0.5 + noise((subject * 1000 + image) as u64);
    (0..SIDE * SIDE)
        .flat_map(|p| {
            let pattern = noise((subject * 64 + p) as u64 + 7_000_000);
            let n = noise(((subject * 100 + image) * 64 + p) as u64 + 9_000_000);
            (gain * pattern + 0.15 * n).to_le_bytes()
        })
        .collect()
}

/// Writes `bytes` to `path` unless it holds them already (workers run this
/// again while the driver reads), atomically.
fn write_same(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|b| b == bytes) {
        return Ok(());
    }
    std::fs::create_dir_all(path.parent().expect("a file in a folder"))?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Writes the images under `root/images/` and the file lists
/// `root/default/{train,enroll,probe}.csv` (`key,subject,path`).
pub(crate) fn write_database(root: &Path, shape: Shape) -> std::io::Result<()> {
    let mut lists: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for s in 0..shape.train_subjects + shape.dev_subjects {
        for i in 0..shape.images {
            let group = if s < shape.train_subjects {
                "train"
            } else if i < shape.images * 2 / 5 {
                "enroll"
            } else {
                "probe"
            };
            let path = format!("images/s{s:03}/{i:02}.f32");
            write_same(&root.join(&path), &image(s, i))?;
            lists
                .entry(group)
                .or_insert_with(|| vec!["key,subject,path".to_owned()])
                .push(format!("s{s:03}/{i:02},s{s:03},{path}"));
        }
    }
    for (group, lines) in lists {
        write_same(
            &root.join(format!("default/{group}.csv")),
            (lines.join("\n") + "\n").as_bytes(),
        )?;
    }
    Ok(())
}

/// The database's groups as delayed samples: each image is read when the
/// run reaches it.
pub(crate) struct Groups {
    pub(crate) train: Vec<DelayedSample<Array1<f32>>>,
    pub(crate) enroll: Vec<DelayedSample<Array1<f32>>>,
    pub(crate) probe: Vec<DelayedSample<Array1<f32>>>,
}

/// Opens the database written by [`write_database`].
pub(crate) fn open(root: &Path) -> Result<Groups, BoxError> {
    let db = FileListDatabase::open(root, "default")?.key_column("key");
    let root: Arc<PathBuf> = Arc::new(root.to_owned());
    let load = move |meta: &Meta| -> Result<Array1<f32>, BoxError> {
        let path: String = meta.attr("path")?;
        let bytes = std::fs::read(root.join(&path))?;
        if bytes.len() != SIDE * SIDE * 4 {
            return Err(
                format!("{path}: {} bytes, not an {SIDE}×{SIDE} image", bytes.len()).into(),
            );
        }
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    };
    Ok(Groups {
        train: db.delayed_samples("train", load.clone())?,
        enroll: db.delayed_samples("enroll", load.clone())?,
        probe: db.delayed_samples("probe", load)?,
    })
}

/// Preprocessing: zero mean, unit norm (bob's face cropping and
/// normalisation, in small); sleeps `cost` per image, to stand for real
/// preprocessing in the benchmark.
pub(crate) struct Preprocess {
    pub(crate) cost: Duration,
}

impl Transformer for Preprocess {
    type Input = Array1<f32>;
    type Output = Array1<f32>;
    fn transform(
        &self,
        batch: &Batch<'_, Array1<f32>>,
    ) -> Result<Vec<SampleResult<Array1<f32>>>, BoxError> {
        Ok(batch
            .iter()
            .map(|x| {
                std::thread::sleep(self.cost);
                let centred = x - x.mean().unwrap_or(0.0);
                let norm = centred.dot(&centred).sqrt();
                if norm == 0.0 {
                    Err(Failure::new("a blank image"))
                } else {
                    Ok(centred / norm)
                }
            })
            .collect())
    }
}

/// Features: the pixels and their horizontal and vertical differences.
pub(crate) struct Features;

impl Transformer for Features {
    type Input = Array1<f32>;
    type Output = Array1<f64>;
    fn transform(
        &self,
        batch: &Batch<'_, Array1<f32>>,
    ) -> Result<Vec<SampleResult<Array1<f64>>>, BoxError> {
        Ok(batch
            .iter()
            .map(|x| {
                let img = x.view().into_shape_with_order((SIDE, SIDE))?;
                let dx = &img.slice(ndarray::s![.., 1..]) - &img.slice(ndarray::s![.., ..SIDE - 1]);
                let dy = &img.slice(ndarray::s![1.., ..]) - &img.slice(ndarray::s![..SIDE - 1, ..]);
                Ok(x.iter()
                    .chain(dx.iter())
                    .chain(dy.iter())
                    .map(|&v| f64::from(v))
                    .collect())
            })
            .collect())
    }
}

/// PCA: learns the leading principal components of its inputs.
pub(crate) struct Pca {
    pub(crate) components: usize,
}

/// A fitted PCA: the mean and the components (one per row).
#[derive(Serialize, Deserialize)]
pub(crate) struct Projection {
    pub(crate) mean: Array1<f64>,
    pub(crate) components: Array2<f64>,
}

impl Fit for Pca {
    type Input = Array1<f64>;
    type Fitted = Projection;
    fn fit(&self, batch: &Batch<'_, Array1<f64>>) -> Result<Projection, BoxError> {
        let rows: Vec<_> = batch.iter().map(|x| x.view()).collect();
        if rows.len() < 2 {
            return Err(format!("a PCA needs 2 samples or more, not {}", rows.len()).into());
        }
        let x = ndarray::stack(Axis(0), &rows)?;
        let mean = x.mean_axis(Axis(0)).ok_or("no samples")?;
        let centred = &x - &mean;
        let mut cov = centred.t().dot(&centred) / (x.nrows() - 1) as f64;
        // The leading eigenvectors by power iteration, each taken out of the
        // covariance once found.
        let d = cov.nrows();
        let mut components = Array2::zeros((self.components.min(d), d));
        for mut row in components.rows_mut() {
            let mut v = Array1::from_shape_fn(d, |i| 1.0 + i as f64 / d as f64);
            let mut lambda = 0.0;
            for _ in 0..500 {
                let w = cov.dot(&v);
                lambda = w.dot(&w).sqrt();
                if lambda == 0.0 {
                    break;
                }
                v = w / lambda;
            }
            let vv = v.view().insert_axis(Axis(1));
            cov = cov - lambda * vv.dot(&vv.t());
            row.assign(&v);
        }
        Ok(Projection { mean, components })
    }
}

impl Transformer for Projection {
    type Input = Array1<f64>;
    type Output = Array1<f64>;
    fn transform(
        &self,
        batch: &Batch<'_, Array1<f64>>,
    ) -> Result<Vec<SampleResult<Array1<f64>>>, BoxError> {
        Ok(batch
            .iter()
            .map(|x| Ok(self.components.dot(&(x - &self.mean))))
            .collect())
    }
}

/// The experiment's pipeline: `preprocess` (costing `cost` per image) →
/// `features` → `pca`.
pub(crate) fn pipeline(cost: Duration) -> Pipeline<Array1<f32>, Array1<f64>> {
    Pipeline::new()
        .then(Step::new(Preprocess { cost }).name("preprocess"))
        .then(Step::new(Features).name("features"))
        .then(
            Step::fit(Pca {
                components: COMPONENTS,
            })
            .name("pca"),
        )
}

/// A subject's images, not read yet.
pub(crate) type Subject = SampleSet<Array1<f32>, DelayedSample<Array1<f32>>>;

/// The enroll samples as one set per subject.
pub(crate) fn by_subject(
    samples: Vec<DelayedSample<Array1<f32>>>,
) -> Result<Vec<Subject>, BoxError> {
    let mut sets: BTreeMap<String, Vec<DelayedSample<Array1<f32>>>> = BTreeMap::new();
    for s in samples {
        let subject: String = s.meta().attr("subject")?;
        sets.entry(subject).or_default().push(s);
    }
    Ok(sets
        .into_iter()
        .map(|(subject, members)| {
            SampleSet::new(subject.clone(), members).with_attr("subject", subject)
        })
        .collect())
}

/// bob's 4-column score lines (`enrolled probe_subject probe_key score`):
/// the cosine of each probe to each subject's template (the mean of its
/// enrolled features), templates and probes in order.
pub(crate) fn scores(
    enrolled: &[SampleSet<Array1<f64>>],
    probes: &Outputs<Array1<f64>>,
) -> Result<Vec<String>, BoxError> {
    let mut lines = Vec::new();
    for set in enrolled {
        if set.is_empty() {
            continue;
        }
        let sum = set
            .iter()
            .fold(Array1::<f64>::zeros(COMPONENTS), |acc, s| acc + s.data());
        let template: Array1<f64> = sum / set.len() as f64;
        for p in probes.samples() {
            let subject: String = p.attr("subject")?;
            let norms: f64 = (template.dot(&template) * p.data().dot(p.data())).sqrt();
            let cosine = if norms > 0.0 {
                template.dot(p.data()) / norms
            } else {
                0.0
            };
            lines.push(format!("{} {subject} {} {cosine:.6}", set.key(), p.key()));
        }
    }
    Ok(lines)
}
