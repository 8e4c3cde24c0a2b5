//! The compiler's messages for the usual mistakes of a pipeline author, checked.
//!
//! Each file of `tests/compile-fail/` is a program that must not compile, and
//! its `// expect:` lines are what the compiler's output must say; the
//! `compiles.rs` control must compile. The programs are checked by cargo as a
//! crate of their own (path dependencies on this workspace, its lock file), in
//! a target folder of their own beside this workspace's.
//!
//! Only substrings are checked, not whole snapshots: the messages are ours,
//! the surrounding layout is the compiler's and changes with its version.

use std::path::{Path, PathBuf};
use std::process::Command;

const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/compile-fail");
const CONTROL: &str = "compiles";

/// A crate with one binary per case, written once per test run.
fn write_crate(root: &Path, cases: &[(String, PathBuf)]) {
    let estimator = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = estimator
        .parent()
        .expect("the estimator crate is in the workspace");
    let mut manifest = format!(
        "[package]\nname = \"compile-fail\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
         [dependencies]\nbob-pipelines-estimator = {{ path = {:?} }}\n\
         ndarray = {{ version = \"0.16\", features = [\"serde\"] }}\n\
         serde = {{ version = \"1\", features = [\"derive\"] }}\n\n[workspace]\n",
        estimator.display().to_string()
    );
    for (name, path) in cases {
        manifest.push_str(&format!(
            "\n[[bin]]\nname = {name:?}\npath = {:?}\n",
            path.display().to_string()
        ));
    }
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("Cargo.toml"), manifest).unwrap();
    // The workspace's versions, so the check resolves nothing anew.
    std::fs::copy(workspace.join("Cargo.lock"), root.join("Cargo.lock")).unwrap();
}

fn check(root: &Path, target: &Path, bin: &str) -> (bool, String) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .args([
            "check",
            "--quiet",
            "--color=never",
            "--bin",
            bin,
            "--target-dir",
        ])
        .arg(target)
        .output()
        .expect("cargo runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn expectations(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("// expect: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn mistakes_get_messages_in_the_users_words() {
    let mut cases: Vec<(String, PathBuf)> = std::fs::read_dir(CASES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    cases.sort();
    assert!(
        cases.iter().any(|(n, _)| n == CONTROL),
        "{CONTROL}.rs is missing"
    );

    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let root = tmp.join("compile-fail");
    let target = tmp.join("compile-fail-target");
    write_crate(&root, &cases);

    // The control first: it also builds the dependencies once for the others.
    let (ok, stderr) = check(&root, &target, CONTROL);
    assert!(ok, "the control case does not compile:\n{stderr}");

    let mut wrong = Vec::new();
    for (name, path) in cases.iter().filter(|(n, _)| n != CONTROL) {
        let expected = expectations(path);
        assert!(!expected.is_empty(), "{name}.rs has no `// expect:` line");
        let (ok, stderr) = check(&root, &target, name);
        if ok {
            wrong.push(format!("{name}.rs compiles, but must not"));
            continue;
        }
        for e in expected.iter().filter(|e| !stderr.contains(e.as_str())) {
            wrong.push(format!(
                "{name}.rs: the compiler did not say {e:?}; it said:\n{stderr}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}
