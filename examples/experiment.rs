//! A whole bob.bio experiment in one run: fit on `train`, enroll subjects,
//! score probes — one task graph, one set of workers, one compute.
//!
//! `cargo run --release --example experiment -- [EXECUTOR] [--out DIR] …`
//!
//! The options are the standard ones of a run (`RunArgs`; `--help` lists
//! them). EXECUTOR is any executor name (default: `$BOB_PIPELINES_EXECUTOR`,
//! else `local-parallel`). Under DIR (default `./bob_pipelines_experiment`):
//! - `db/default/{train,enroll,probe}.csv` and `db/images/`: a CSV file-list
//!   database of 400 generated 8×8 images, 25 subjects in `train`, 15 others
//!   in `enroll` (4 images each) and `probe` (6 each), read lazily;
//! - `features/<step>/<key>.npy`, `models/pca.msgpack`: the checkpoints;
//! - `scores-dev.txt`: bob's 4-column score file (enrolled subject, probe's
//!   subject, probe's key, cosine score).
//!
//! The pipeline is `preprocess` → `features` → `pca` (fitted on `train`);
//! `enroll` goes through it as one sample set per subject, `probe` as
//! samples, both in the same graph as the fit. Run it again: it computes
//! nothing and says so.

use std::process::ExitCode;
use std::time::Duration;

use bob_pipelines::prelude::*;

#[path = "common/experiment.rs"]
mod experiment;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), BoxError> {
    let run = RunArgs::parse();
    let executor = run.executor_or("local-parallel")?;
    let out = run.out_or("bob_pipelines_experiment");
    let db = out.join("db");
    experiment::write_database(&db, experiment::Shape::SMALL)?;
    let groups = experiment::open(&db)?;

    let mut pipeline = experiment::pipeline(Duration::ZERO).checkpoint(run.checkpoints(&out));
    let lazy = pipeline
        .fit(groups.train)
        .named("train")
        .and_transform_sets("enroll", experiment::by_subject(groups.enroll)?)?
        .and_transform("probe", groups.probe)
        .partitioning(run.partitioning())
        .report_to(run.report.clone());
    let plan = TaskGraph::new(lazy.info()?).plan();
    if run.dry_run {
        println!("{plan}");
        return Ok(());
    }
    println!("executor: {}", executor.name());
    // With `local-parallel`, workers are this program started again: they
    // end in `compute`.
    let mut outputs = lazy.compute(&executor)?;
    let enrolled = outputs.take_sets("enroll").ok_or("no enroll list")?;
    let probes = outputs.take_list("probe").ok_or("no probe list")?;
    let lines = experiment::scores(enrolled.sets(), &probes)?;
    std::fs::write(out.join("scores-dev.txt"), lines.join("\n") + "\n")?;
    // How often the true subject scores best: a check that the PCA learnt
    // something from people it never saw.
    let mut best: std::collections::BTreeMap<&str, (f64, bool)> = Default::default();
    for line in &lines {
        let f: Vec<&str> = line.split(' ').collect();
        let score: f64 = f[3].parse()?;
        let e = best.entry(f[2]).or_insert((f64::NEG_INFINITY, false));
        if score > e.0 {
            *e = (score, f[0] == f[1]);
        }
    }
    let right = best.values().filter(|(_, ok)| *ok).count();
    println!(
        "{} enrolled subjects, {} probes, {} scores → {}",
        enrolled.sets().len(),
        probes.samples().count(),
        lines.len(),
        out.join("scores-dev.txt").display()
    );
    println!(
        "rank-1 identification: {right} of {} probes ({:.1} %)",
        best.len(),
        100.0 * right as f64 / best.len().max(1) as f64
    );
    println!("\n{}", outputs.report());
    if plan.is_noop() {
        println!(
            "\nnothing computed: every output was read from the checkpoints in {} (--force recomputes)",
            out.display()
        );
    }
    Ok(())
}
