//! A real machine-learning pipeline with linfa, as scikit-learn users know it:
//! the iris data as a bob-style CSV file-list database, then
//! `StandardScaler` → `PCA(2)` → logistic regression, fitted on `train`,
//! predicting `test`, every step checkpointed.
//!
//! `cargo run --release --features linfa --example iris -- [EXECUTOR] [--out DIR] …`
//!
//! The options are the standard ones of a run (`RunArgs`; `--help` lists
//! them). EXECUTOR is any executor name (default: `$BOB_PIPELINES_EXECUTOR`,
//! else `threads`). Under DIR (default `./bob_pipelines_iris`):
//! - `iris_db/default/{train,test}.csv`: the database, protocol `default`,
//!   75 rows per group (every other row of the 150, so 25 per species each),
//!   written from the copy of the public iris data in `examples/data/`;
//! - `features/<step>/<key>.npy`, `models/<step>.msgpack`: the checkpoints;
//! - `pca_components.npy`, `pca_singular_values.npy`, `predictions.csv`: for
//!   comparison with scikit-learn (`integration-tests/tests/iris_sklearn.py`).
//!
//! It prints the test accuracy, the PCA explained variance and each step's
//! timing. The measurements are strings in the CSV files and are converted to
//! numbers on reading (bob's `Str_To_Types`); the species stays a string and
//! is the classifier's label.

use std::path::Path;
use std::process::ExitCode;

use bob_pipelines::checkpoint::write_npy;
use bob_pipelines::estimator::Step;
use bob_pipelines::linfa::logistic::MultiLogisticRegression;
use bob_pipelines::linfa::preprocessing::linear_scaling::LinearScaler;
use bob_pipelines::linfa::reduction::Pca;
use bob_pipelines::linfa::{Features, Fitted, Projects, classify, project, transform};
use bob_pipelines::prelude::*;
use bob_pipelines::sample::{ColumnType, FileListDatabase, Meta};
use ndarray::Array1;

/// The 150 rows of Fisher's iris data (UCI's copy, as linfa-datasets ships it).
const IRIS: &str = include_str!("data/iris.csv");
const MEASURES: [&str; 4] = ["sepal_length", "sepal_width", "petal_length", "petal_width"];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` to `path` unless it already holds it (a worker process runs
/// this again while the driver reads the files), atomically.
fn write_same(path: &Path, text: &str) -> std::io::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    std::fs::create_dir_all(path.parent().expect("a file in a folder"))?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// The database: `root/default/train.csv` and `test.csv`, every other row.
fn write_database(root: &Path) -> std::io::Result<()> {
    let mut lines = IRIS.lines();
    let header = format!("key,{}", lines.next().expect("a header"));
    let (mut train, mut test) = (vec![header.clone()], vec![header]);
    for (i, row) in lines.enumerate() {
        let line = format!("iris{:03},{row}", i + 1);
        if i % 2 == 0 { &mut train } else { &mut test }.push(line);
    }
    write_same(&root.join("default/train.csv"), &(train.join("\n") + "\n"))?;
    write_same(&root.join("default/test.csv"), &(test.join("\n") + "\n"))
}

/// A sample's features, from its row's (converted) columns.
fn features(meta: &Meta) -> Result<Features, BoxError> {
    let x: Result<Vec<f64>, _> = MEASURES.iter().map(|m| meta.attr::<f64>(m)).collect();
    Ok(Array1::from(x?))
}

fn run() -> Result<(), BoxError> {
    let run = RunArgs::parse();
    let executor = run.executor_or("threads")?;
    let out = run.out_or("bob_pipelines_iris");

    let db_root = out.join("iris_db");
    write_database(&db_root)?;
    let db = MEASURES
        .iter()
        .fold(FileListDatabase::open(&db_root, "default")?, |db, m| {
            db.column_type(m, ColumnType::Float)
        })
        .key_column("key");
    let train = db.delayed_samples("train", features)?;
    let test = db.delayed_samples("test", features)?;

    let logistic = MultiLogisticRegression::default()
        .max_iterations(1000)
        .gradient_tolerance(1e-8);
    let mut pipeline = Pipeline::new()
        .then(Step::fit(transform(LinearScaler::standard())).name("scaler"))
        .then(Step::fit(project(Pca::params(2))).name("pca"))
        .then(
            Step::fit(classify::<_, String, _>(logistic).labels_from("species")).name("classifier"),
        )
        .checkpoint(run.checkpoints(&out));
    println!("pipeline: {}", pipeline.step_names().join(" → "));
    println!("executor: {}", executor.name());

    if run.dry_run {
        println!("{}", TaskGraph::new(pipeline.fit(train).info()?).plan());
        return Ok(());
    }
    let partitioning = run.partitioning();
    let fitted = pipeline
        .fit(train)
        .partitioning(partitioning)
        .report_to(run.report.clone())
        .compute(&executor)?;
    let predicted = pipeline
        .transform(test)
        .partitioning(partitioning)
        .report_to(run.report.clone())
        .compute(&executor)?;

    // Only the driver gets here.
    let mut right = 0;
    let mut lines = vec!["key,species,predicted".to_owned()];
    for s in predicted.samples() {
        let truth: String = s.attr("species")?;
        right += usize::from(truth == *s.data());
        lines.push(format!("{},{truth},{}", s.key(), s.data()));
    }
    write_same(&out.join("predictions.csv"), &(lines.join("\n") + "\n"))?;
    let n = predicted.samples().count();
    println!(
        "test accuracy: {:.4} ({right} of {n} correct; {} failed)",
        right as f64 / n as f64,
        predicted.failed().count()
    );

    let pca: &Fitted<Pca<f64>, Projects> = pipeline.fitted("pca")?;
    let sigma = pca.model.singular_values();
    let train_n = 75.0;
    // Variance along each component, as scikit-learn's `explained_variance_`;
    // the standardized data's total variance is 4 × n/(n − 1).
    let variance = sigma.mapv(|s| s * s / (train_n - 1.0));
    let total = MEASURES.len() as f64 * train_n / (train_n - 1.0);
    println!(
        "PCA explained variance: {:.6?} (ratio {:.6?})",
        variance.to_vec(),
        variance.mapv(|v| v / total).to_vec()
    );
    let mut bytes = Vec::new();
    write_npy(pca.model.components(), &mut bytes);
    std::fs::write(out.join("pca_components.npy"), &bytes)?;
    bytes.clear();
    write_npy(sigma, &mut bytes);
    std::fs::write(out.join("pca_singular_values.npy"), &bytes)?;

    println!("\nfit on train:\n{}", fitted.report());
    println!("\npredict test:\n{}", predicted.report());
    Ok(())
}
