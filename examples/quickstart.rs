//! The example of bob.pipelines' documentation, in Rust: ten samples of a 2×2
//! zero matrix with `metadata = 1`, a stateless step that receives `metadata` as
//! an extra argument, then a step that learns `[[1, 2], [3, 4]]` and multiplies.
//!
//! `cargo run --release --example quickstart -- [EXECUTOR] [--out DIR] [--dry-run] [--force] …`
//!
//! The options are the standard ones of a run ([`RunArgs`], `--help` lists
//! them). EXECUTOR is an executor name (`single-threaded`, `local-parallel`,
//! `local-p4`, …; default: `$BOB_PIPELINES_EXECUTOR`, else `local-parallel`).
//! Every step's outputs are checkpointed under DIR (default
//! `./bob_pipelines_out`): `features/<step>/<key>.npy` and
//! `models/<step>.msgpack`; a second run reads them and computes nothing.
//! `--dry-run` prints what a run would do; `--force` recomputes everything.
//! The task graph is written to DIR as `pipeline.dot`, and as `pipeline.svg`
//! when Graphviz is installed.

#[path = "common/seed.rs"]
mod seed;

use std::process::ExitCode;

use bob_pipelines::RunArgs;
use bob_pipelines::graph::TaskGraph;
use bob_pipelines::sample::BoxError;

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
    let out_dir = run.out_or("bob_pipelines_out");
    let mut pipeline = seed::pipeline().checkpoint(run.checkpoints(&out_dir));
    println!("pipeline: {}", pipeline.step_names().join(" → "));
    println!("executor: {}", executor.name());
    println!("checkpoints: {}", out_dir.display());
    let lazy = pipeline
        .fit_transform(seed::samples(10))
        .partitioning(run.partitioning())
        .report_to(run.report.clone());

    let graph = TaskGraph::new(lazy.info()?);
    let plan = graph.plan();
    if run.dry_run {
        println!("\ndry run:\n{plan}");
        return Ok(());
    }
    // With `local-parallel`, workers are this program started again: they
    // run up to `compute` and end there, so what only the driver should do
    // (writing the picture) comes after it.
    let outputs = lazy.compute(&executor)?;
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("pipeline.dot"), graph.to_dot())?;
    let picture = match graph.to_svg()? {
        Some(svg) => {
            std::fs::write(out_dir.join("pipeline.svg"), svg)?;
            "pipeline.dot, pipeline.svg"
        }
        None => "pipeline.dot (install graphviz for pipeline.svg)",
    };
    println!(
        "task graph: {} tasks, fingerprint {:016x} → {}/{picture}\n",
        graph.len(),
        graph.fingerprint(),
        out_dir.display()
    );
    for slot in outputs.iter() {
        match slot {
            Ok(s) => println!(
                "sample {:>2}  metadata={}  data={:?}",
                s.key(),
                s.attr::<i64>("metadata")?,
                s.data().as_slice().unwrap_or_default()
            ),
            Err(failed) => println!("{failed}"),
        }
    }
    let fitted = pipeline.model_bytes("myfittransformer")?;
    println!(
        "\n{} samples in, {} out, {} failed; fitted model: {} bytes of MessagePack\n",
        outputs.len(),
        outputs.samples().count(),
        outputs.failed().count(),
        fitted.len()
    );
    println!("{}", outputs.report());
    if plan.is_noop() {
        println!(
            "\nnothing computed: every output was read from the checkpoints in {} (--force recomputes)",
            out_dir.display()
        );
    }
    Ok(())
}
