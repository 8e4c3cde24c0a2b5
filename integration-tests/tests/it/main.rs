//! Workspace-wide tests, through the facade only, built as one test binary.

mod browser;
mod checkpoint;
mod crash;
mod distributed;
mod iris;
mod lineage;
mod lists;
mod report;
mod seed;
mod sge;
mod slurm;

use std::path::PathBuf;
use std::process::Command;

/// A binary of this workspace (`kind` "example" or "bin"), built with
/// `features` if it is missing (this test binary is
/// `target/<profile>/deps/it-…`; the others sit beside `deps`).
pub(crate) fn workspace_binary(kind: &str, name: &str, features: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().unwrap().parent().unwrap();
    let path = if kind == "example" {
        profile.join("examples").join(name)
    } else {
        profile.join(name)
    };
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let flag = if kind == "example" {
            "--example"
        } else {
            "--bin"
        };
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--workspace", flag, name]);
        if !features.is_empty() {
            cmd.args(["--features", &features.join(",")]);
        }
        assert!(cmd.status().unwrap().success(), "cannot build {name}");
    }
    path
}

/// Whether what a test needs is here; if not, says why the test is skipped
/// (and fails under `CI=true`, where the test command installs it).
pub(crate) fn available_or_skip(available: bool, test: &str, why: &str) -> bool {
    if !available {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true, yet {why}"
        );
        eprintln!("skipped {test}: {why}");
    }
    available
}
