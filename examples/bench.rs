//! Benchmarks. Each prints one JSON object per line with a `"bench"` field.
//!
//! `cargo run --release --example bench -- pipeline [N]`: the seed pipeline
//! (`fit_transform`) in memory, single-threaded, over N samples (default
//! 1 000 000) of a 2×2 f64 matrix with one metadata attribute: samples/s and the
//! process's peak RSS. Samples are generated as the pipeline consumes them, as a
//! lazy database would give them.

#[path = "common/seed.rs"]
mod seed;

use bob_pipelines::prelude::InMemory;

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map(String::as_str).unwrap_or("pipeline");
    let n = args.get(1).map(|s| s.parse().expect("N must be a number"));
    match which {
        "pipeline" => pipeline(n.unwrap_or(1_000_000)),
        other => {
            eprintln!("unknown benchmark `{other}`; valid: pipeline");
            std::process::exit(2);
        }
    }
}

fn pipeline(n: usize) {
    let mut pipeline = seed::pipeline();
    let t0 = Instant::now();
    let out = pipeline
        .fit_transform(seed::samples(n))
        .compute(&InMemory)
        .expect("the seed pipeline runs");
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(out.samples().count(), n);
    println!(
        "{{\"bench\":\"pipeline\",\"executor\":\"in-memory\",\"n\":{n},\"samples_per_s\":{:.0},\"peak_rss_mib\":{:.1}}}",
        n as f64 / secs,
        peak_rss_mib()
    );
}

/// The process's peak resident set size (`VmHWM`), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}
