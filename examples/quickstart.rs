//! The example of bob.pipelines' documentation, in Rust: ten samples of a 2×2
//! zero matrix with `metadata = 1`, a stateless step that receives `metadata` as
//! an extra argument, then a step that learns `[[1, 2], [3, 4]]` and multiplies.
//!
//! `cargo run --release --example quickstart`

#[path = "common/seed.rs"]
mod seed;

use bob_pipelines::prelude::InMemory;

use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), bob_pipelines::estimator::Error> {
    let mut pipeline = seed::pipeline();
    println!("pipeline: {}", pipeline.step_names().join(" → "));
    let outputs = pipeline
        .fit_transform(seed::samples(10))
        .compute(&InMemory)?;
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
    Ok(())
}
