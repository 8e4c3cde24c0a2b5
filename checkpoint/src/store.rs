//! The files of a run: every file a checkpointed run reads, writes or
//! removes goes through here or `lineage`, in the orders
//! `HAZARDS.md` lists. What to read and write is the caller's to decide.

use std::fs;
use std::path::{Path, PathBuf};

use crate::files::{Bytes, clean_temps, read};
use crate::layout::{FAILED_EXT, Layout};
use crate::{Error, RUN_MARKER, Result, Writer, failpoint, lineage};

/// What is on disk for one sample at one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleState {
    /// Its output.
    Output,
    /// No output, a failure marker.
    Failed,
    /// Neither.
    Missing,
}

/// What is on disk for the sample whose relative path (without extension) is
/// `base` in `step_dir`, with outputs of extension `ext`: one `stat`, two at
/// most (a walk costs more on most file systems, and far more on NFS).
/// `scratch` is reused between calls.
pub fn sample_state(step_dir: &Path, base: &str, ext: &str, scratch: &mut PathBuf) -> SampleState {
    let mut has = |ext: &str| {
        scratch.clear();
        scratch.push(step_dir);
        scratch.push(base);
        scratch.as_mut_os_string().push(ext);
        scratch.is_file()
    };
    if has(ext) {
        SampleState::Output
    } else if has(FAILED_EXT) {
        SampleState::Failed
    } else {
        SampleState::Missing
    }
}

/// Writes a sample's output of `step`, then removes the failure marker an
/// earlier run left (a kill between the two leaves both, and readers prefer
/// the output: the new one).
///
/// # Errors
/// As [`Writer::write`], or [`Error::Io`] for a marker that cannot be removed.
pub fn write_output(
    layout: &Layout,
    writer: &Writer,
    (step, key, ext): (&str, &str, &str),
    bytes: &[u8],
) -> Result<()> {
    writer.write(&layout.feature_path(step, key, ext)?, bytes)?;
    remove(&layout.failure_path(step, key)?)
}

/// Records that a sample failed at `failed_at` (the reason in `reason`), in
/// `step`'s folder: its outputs of `stale` (this step and every later one:
/// `(step, extension)`) are removed first, then the marker is written — a
/// kill between the two leaves neither, and the sample is computed again.
///
/// # Errors
/// As [`Writer::write`], or [`Error::Io`] for an output that cannot be removed.
pub fn write_failure<'s>(
    layout: &Layout,
    writer: &Writer,
    (step, key): (&str, &str),
    (failed_at, reason): (&str, &str),
    stale: impl IntoIterator<Item = (&'s str, &'s str)>,
) -> Result<()> {
    for (s, ext) in stale {
        remove(&layout.feature_path(s, key, ext)?)?;
    }
    failpoint("checkpoint.failure.outputs-removed");
    let marker = layout.failure_path(step, key)?;
    writer.write(&marker, format!("{failed_at}\n{reason}").as_bytes())
}

/// The failure recorded for `key` at the first of `steps` that has a marker
/// for it: the step where the sample failed, and why.
pub fn failure(layout: &Layout, steps: &[String], key: &str) -> Option<(String, String)> {
    steps.iter().find_map(|s| {
        let text = fs::read_to_string(layout.failure_path(s, key).ok()?).ok()?;
        let (step, reason) = text.split_once('\n').unwrap_or((s.as_str(), text.as_str()));
        Some((step.to_owned(), reason.to_owned()))
    })
}

/// A file's bytes, or `None` when it does not exist.
///
/// # Errors
/// [`Error::Io`] for a file that exists but cannot be read.
pub fn read_if_present(path: &Path) -> Result<Option<Bytes>> {
    match read(path) {
        Ok(b) => Ok(Some(b)),
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes a file that may not exist.
fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
            action: "removing",
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Whether the last run in `features_dir` did not finish (its marker is
/// there): it may have left temp files.
pub fn unfinished(features_dir: &Path) -> bool {
    features_dir.join(RUN_MARKER).exists()
}

/// Begins a run that writes in `features_dir`: the temp file of a marker
/// whose writer was killed and the step folders moved aside by processes
/// that are gone are removed, and the marker is written. Returns its path.
///
/// # Errors
/// As [`Writer::write`].
pub fn begin_run(features_dir: &Path, writer: &Writer) -> Result<PathBuf> {
    // A run killed while writing its marker left the marker's temp file
    // (and no marker to say so): the root holds no other temp.
    clean_temps(features_dir, false)?;
    lineage::remove_aside(features_dir, false);
    let path = features_dir.join(RUN_MARKER);
    writer.write(&path, std::process::id().to_string().as_bytes())?;
    Ok(path)
}

/// Ends a run that succeeded: the step folders it moved aside go, with their
/// stale files, and so does its marker.
pub fn end_run(marker: &Path) {
    if let Some(root) = marker.parent() {
        lineage::remove_aside(root, true);
    }
    let _ = fs::remove_file(marker);
}

/// Removes the failure markers of `features_dir` (of step `step` only, when
/// given), so that the next run tries those samples again. Returns how many.
///
/// # Errors
/// [`Error::NotFeatures`] naming the step folders there are, when `step` is
/// not one of them; [`Error::Io`] for a folder or marker that cannot be
/// listed or removed.
pub fn clean_failed(features_dir: &Path, step: Option<&str>) -> Result<usize> {
    let dirs: Vec<PathBuf> = match step {
        Some(s) => {
            let dir = features_dir.join(s);
            if !dir.is_dir() {
                let mut steps: Vec<String> = fs::read_dir(features_dir)
                    .map(|d| {
                        d.flatten()
                            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .filter(|n| !n.starts_with('.'))
                            .collect()
                    })
                    .unwrap_or_default();
                steps.sort();
                return Err(Error::NotFeatures {
                    path: features_dir.to_path_buf(),
                    reason: format!(
                        "it has no step folder `{s}`; its steps: {}",
                        if steps.is_empty() {
                            "none".to_owned()
                        } else {
                            steps.join(", ")
                        }
                    ),
                });
            }
            vec![dir]
        }
        None => vec![features_dir.to_path_buf()],
    };
    let mut removed = 0;
    let mut failed = None;
    for dir in dirs {
        crate::files::walk(&dir, &mut |p| {
            let is_marker = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(FAILED_EXT));
            if is_marker {
                match fs::remove_file(p) {
                    Ok(()) => removed += 1,
                    Err(source) => {
                        failed.get_or_insert(Error::Io {
                            action: "removing",
                            path: p.to_path_buf(),
                            source,
                        });
                    }
                }
            }
        })?;
    }
    failed.map_or(Ok(removed), Err)
}
