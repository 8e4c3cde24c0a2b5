//! The dashboard and the report in a real browser: headless Chromium
//! (Debian's `chromium`, which the README's test command installs). Skipped,
//! saying why, where there is none; under `CI=true` that is a failure.
//! The screenshots are kept in `target/dashboard-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bob_pipelines::executor::distributed::is_worker;
use bob_pipelines::prelude::*;

use crate::checkpoint::TempDir;
use crate::distributed::{bits, dashboard_url, in_folder, pipeline, reference, run_dir, samples};

/// Chromium, or why not.
fn chromium() -> Result<PathBuf, String> {
    ["chromium", "chromium-browser"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
        .ok_or_else(|| "no `chromium` on PATH (scripts/test.sh installs it as root)".to_owned())
}

/// Chromium, or `None` after saying why the test is skipped (a failure
/// under `CI=true`).
fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    match chromium() {
        Ok(c) => Some(c),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test} needs a browser under CI=true: {why}")
        }
        Err(why) => {
            eprintln!("skipped {test}: {why}");
            None
        }
    }
}

/// Headless Chromium on `url` with `args`, its scripts given 1.5 s: what it
/// printed (the DOM, with `--dump-dom`). A Chromium that printed nothing
/// (it happens on a loaded machine) is run once more.
fn chrome(chromium: &Path, args: &[&str], url: &str) -> String {
    let (out, err) = chrome_once(chromium, args, url);
    if !out.is_empty() || !args.contains(&"--dump-dom") {
        return out;
    }
    let (again, err2) = chrome_once(chromium, args, url);
    assert!(
        !again.is_empty(),
        "chromium printed nothing for {url}, twice: {err}\n{err2}"
    );
    again
}

/// One run of headless Chromium: what it printed, and its standard error.
fn chrome_once(chromium: &Path, args: &[&str], url: &str) -> (String, String) {
    let profile = TempDir::new("chromium-profile");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=1500",
            // However slow the machine, the page stops loading after 20 s.
            "--timeout=20000",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(out).unwrap_or_default());
    let errors = std::thread::spawn(move || std::io::read_to_string(err).unwrap_or_default());
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("chromium did not end within 60 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (reader.join().unwrap(), errors.join().unwrap())
}

/// The `done` count of step `step` in the dashboard's DOM.
fn done(dom: &str, step: &str) -> u64 {
    let row = dom
        .split(&format!("<td>{step}</td>"))
        .nth(1)
        .unwrap_or_else(|| panic!("no row for {step} in: {dom}"));
    row.split("class=\"done\">")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count for {step} in: {row}"))
}

/// Whether `path` is a PNG image.
fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.starts_with(b"\x89PNG"))
}

#[test]
fn the_dashboard_and_the_report_in_a_real_browser() {
    const TEST: &str = "the_dashboard_and_the_report_in_a_real_browser";
    // The driver's folder, the same in its workers (their program must be
    // the driver's).
    let dir = run_dir("browser");
    let ex = bob_pipelines::executor::distributed::Distributed::new(
        bob_pipelines::executor::distributed::LocalProcesses::new(
            std::num::NonZeroUsize::new(2).unwrap(),
            std::num::NonZeroUsize::MIN,
        )
        .args(["--exact", &format!("browser::{TEST}"), "--nocapture"]),
    )
    .with_progress(std::sync::Arc::new(bob_pipelines::executor::Silent))
    .dashboard(Some("127.0.0.1:0".parse().unwrap()));
    // 40 partitions of 300 ms on two workers: 6 s, the browser's time.
    let mut p = pipeline(300).checkpoint(in_folder(&dir));
    let compute =
        |p: &mut Pipeline<_, _>| p.fit_transform(samples(400)).npartitions(40).compute(&ex);
    if is_worker() {
        let _ = compute(&mut p);
        return;
    }
    let Some(chromium) = chromium_or_skip(TEST) else {
        return;
    };
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let (out, first, second) = std::thread::scope(|scope| {
        let run = scope.spawn(|| compute(&mut p));
        let url = dashboard_url(&ex);
        let first = chrome(&chromium, &["--dump-dom"], &url);
        let shot = shots.join("dashboard-mid-run.png");
        chrome(
            &chromium,
            &[
                &format!("--screenshot={}", shot.display()),
                "--window-size=1280,1000",
            ],
            &url,
        );
        assert!(is_png(&shot), "no screenshot at {}", shot.display());
        let second = chrome(&chromium, &["--dump-dom"], &url);
        (run.join().unwrap().unwrap(), first, second)
    });
    assert_eq!(bits(&out), reference(400, 40));
    // The page, as the browser ran it: progress advances, workers listed.
    let (a, b) = (done(&first, "slow"), done(&second, "slow"));
    assert!(a < 400 && a < b, "the slow step's count went {a} then {b}");
    assert!(
        first.contains("<tr class=\"worker\"><td>local-"),
        "no worker listed: {first}"
    );
    assert!(
        second
            .split("<td class=\"memory\">")
            .skip(1)
            .any(|m| m.split("</td>").next().is_some_and(|m| m.ends_with(" MiB"))),
        "no worker's memory: {second}"
    );
    assert!(first.contains("<rect "), "no task stream: {first}");
    // The task graph: done tasks, and some not done yet.
    assert!(
        first.contains("class=\"cell-d\"") && first.contains("class=\"cell-w\""),
        "no task graph: {first}"
    );

    // The report the run left, opened too.
    let report = dir.join("features/report.html");
    let page = chrome(
        &chromium,
        &["--dump-dom"],
        &format!("file://{}", report.display()),
    );
    assert!(
        page.contains("id=\"stream\"")
            && page.contains(">slow<")
            && page.contains("<tr class=\"worker\"><td>local-"),
        "{page}"
    );
    let shot = shots.join("report.png");
    chrome(
        &chromium,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1000",
        ],
        &format!("file://{}", report.display()),
    );
    assert!(is_png(&shot), "no screenshot at {}", shot.display());
    let _ = std::fs::remove_dir_all(&dir);
}
