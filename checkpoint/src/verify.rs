//! Checking and counting a features folder from outside a run (the
//! `bob-pipelines checkpoint verify|stats` commands).
//!
//! A features folder holds one folder per step (`features/<step>/…`), maybe
//! the run marker of a running or killed run, and temp files of writers.
//! [`verify`] opens every checkpoint: `.npy` headers are parsed and the file
//! size must be what the header promises (the data is not read), MessagePack
//! files are decoded to their end; temp files whose writer is gone are stale.
//! [`stats`] reads only file metadata.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use crate::files::{is_stale_temp, is_temp};
use crate::layout::FAILED_EXT;
use crate::npy::parse_header;
use crate::{Error, Result};
use crate::{REPORT_FILES, RUN_MARKER};

/// How many bad files a report lists by name, per step and kind.
pub const LISTED: usize = 20;

/// What [`verify`] found in one step's folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepCheck {
    /// The step (its folder's name).
    pub step: String,
    /// Checkpoints that are whole and readable.
    pub ok: usize,
    /// Failure markers (`.failed`): samples that failed at this step.
    pub failed_markers: usize,
    /// Checkpoints that are corrupt or partial: key path and reason (the
    /// first [`LISTED`]).
    pub corrupt: Vec<(String, String)>,
    /// How many are corrupt in all.
    pub corrupt_count: usize,
    /// Temp files whose writer is gone (the first [`LISTED`]).
    pub stale_temps: Vec<String>,
    /// How many in all.
    pub stale_count: usize,
    /// Temp files whose writer may still be writing.
    pub live_temps: usize,
    /// Files that are none of the above (named, the first [`LISTED`]).
    pub unknown: Vec<String>,
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    /// The features folder.
    pub dir: PathBuf,
    /// One entry per step folder, by name.
    pub steps: Vec<StepCheck>,
    /// Whether a run marker is present (a run is going on, or was killed).
    pub run_marker: bool,
    /// Stale temp files in the folder itself (a killed run's marker).
    pub root_stale_temps: Vec<String>,
}

impl Verification {
    /// Whether anything is wrong: corrupt or partial checkpoints, or stale
    /// temp files.
    pub fn is_clean(&self) -> bool {
        self.root_stale_temps.is_empty()
            && self
                .steps
                .iter()
                .all(|s| s.corrupt_count == 0 && s.stale_count == 0)
    }

    /// Checkpoints checked in all.
    pub fn files(&self) -> usize {
        self.steps
            .iter()
            .map(|s| s.ok + s.corrupt_count + s.failed_markers)
            .sum()
    }
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "features: {}", self.dir.display())?;
        writeln!(
            f,
            "{:<28} {:>10} {:>8} {:>8} {:>8}",
            "step", "ok", "failed", "corrupt", "stale"
        )?;
        for s in &self.steps {
            writeln!(
                f,
                "{:<28} {:>10} {:>8} {:>8} {:>8}",
                s.step, s.ok, s.failed_markers, s.corrupt_count, s.stale_count
            )?;
        }
        for s in &self.steps {
            for (key, why) in &s.corrupt {
                writeln!(f, "corrupt: {}/{key}: {why}", s.step)?;
            }
            if s.corrupt_count > s.corrupt.len() {
                writeln!(
                    f,
                    "corrupt: {} more in {}",
                    s.corrupt_count - s.corrupt.len(),
                    s.step
                )?;
            }
            for t in &s.stale_temps {
                writeln!(f, "stale temp file: {}/{t}", s.step)?;
            }
            if s.stale_count > s.stale_temps.len() {
                writeln!(
                    f,
                    "stale temp files: {} more in {}",
                    s.stale_count - s.stale_temps.len(),
                    s.step
                )?;
            }
            if s.live_temps > 0 {
                writeln!(
                    f,
                    "{}: {} temp file(s) of a writer that may still run",
                    s.step, s.live_temps
                )?;
            }
            for u in &s.unknown {
                writeln!(f, "not a checkpoint (left alone): {}/{u}", s.step)?;
            }
        }
        for t in &self.root_stale_temps {
            writeln!(f, "stale temp file: {t}")?;
        }
        if self.run_marker {
            writeln!(
                f,
                "a run marker is present: a run is going on, or was killed (the next run resumes)"
            )?;
        }
        if self.is_clean() {
            write!(f, "clean: {} files checked", self.files())
        } else {
            write!(
                f,
                "NOT clean: corrupt or partial checkpoints are recomputed by the next run; \
                 stale temp files are removed by it (or delete them)"
            )
        }
    }
}

/// Per-step counts from file metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepStats {
    /// The step (its folder's name).
    pub step: String,
    /// Checkpoint files by extension (`.npy`, `.msgpack`, …).
    pub by_extension: Vec<(String, usize)>,
    /// Failure markers.
    pub failed_markers: usize,
    /// Temp files.
    pub temps: usize,
    /// Bytes of all files.
    pub bytes: u64,
    /// The smallest and largest checkpoint, in bytes.
    pub size_range: Option<(u64, u64)>,
    /// Sub-folders (a hashed layout has up to 1000).
    pub folders: usize,
    /// The oldest and newest modification time.
    pub time_range: Option<(SystemTime, SystemTime)>,
}

impl StepStats {
    /// Checkpoint files (not markers, not temps).
    pub fn files(&self) -> usize {
        self.by_extension.iter().map(|(_, n)| n).sum()
    }
}

/// What [`stats`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// The features folder.
    pub dir: PathBuf,
    /// One entry per step folder, by name.
    pub steps: Vec<StepStats>,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "features: {}", self.dir.display())?;
        for s in &self.steps {
            let kinds: Vec<String> = s
                .by_extension
                .iter()
                .map(|(e, n)| format!("{n} {e}"))
                .collect();
            write!(
                f,
                "{}: {} files ({}), {} failure markers, {} temp files, {}",
                s.step,
                s.files(),
                if kinds.is_empty() {
                    "none".to_owned()
                } else {
                    kinds.join(", ")
                },
                s.failed_markers,
                s.temps,
                human(s.bytes)
            )?;
            if let Some((lo, hi)) = s.size_range {
                write!(f, ", {} to {} each", human(lo), human(hi))?;
            }
            if s.folders > 0 {
                write!(f, ", in {} sub-folders", s.folders)?;
            }
            if let Some((old, new)) = s.time_range {
                let span = new.duration_since(old).unwrap_or_default();
                write!(f, ", written over {:.0?}", span)?;
            }
            writeln!(f)?;
        }
        let total: usize = self.steps.iter().map(StepStats::files).sum();
        let bytes: u64 = self.steps.iter().map(|s| s.bytes).sum();
        write!(
            f,
            "{} steps, {total} files, {}",
            self.steps.len(),
            human(bytes)
        )
    }
}

fn human(bytes: u64) -> String {
    #[allow(
        clippy::cast_precision_loss,
        reason = "a size shown with one decimal needs no more than an f64's precision"
    )]
    let b = bytes as f64;
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", b / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", b / 1_048_576.0),
        _ => format!("{:.2} GiB", b / 1_073_741_824.0),
    }
}

/// The step folders of a features folder, checked to be one.
fn step_dirs(dir: &Path) -> Result<(Vec<PathBuf>, bool, Vec<PathBuf>)> {
    let not = |why: String| Error::NotFeatures {
        path: dir.to_owned(),
        reason: why,
    };
    let meta = fs::metadata(dir).map_err(|e| not(format!("cannot be read: {e}")))?;
    if !meta.is_dir() {
        return Err(not("is a file, not a folder".to_owned()));
    }
    let (mut steps, mut marker, mut temps, mut files) = (Vec::new(), false, Vec::new(), Vec::new());
    for entry in fs::read_dir(dir).map_err(|e| not(format!("cannot be listed: {e}")))? {
        let entry = entry.map_err(|e| not(format!("cannot be listed: {e}")))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            // A step folder a run renewed and has not removed yet is stale
            // as a whole, as a temp file is.
            if crate::lineage::is_aside(&name) {
                temps.push(entry.path());
            } else {
                steps.push(entry.path());
            }
        } else if name == RUN_MARKER {
            marker = true;
        } else if REPORT_FILES.contains(&name.as_str()) {
            // The last run's report.
        } else if is_temp(&name) {
            temps.push(entry.path());
        } else if !name.ends_with(".msgpack") && !name.ends_with(".lineage") {
            // Model files (and their lineage) sit beside the step folders by default.
            files.push(name);
        }
    }
    if !files.is_empty() {
        files.sort();
        files.truncate(3);
        return Err(not(format!(
            "it holds files ({}) beside step folders; a features folder holds `<step>/` \
             folders and models (`<step>.msgpack`): is this a step's folder? then give {}",
            files.join(", "),
            dir.parent().unwrap_or(dir).display()
        )));
    }
    if steps
        .iter()
        .any(|s| s.file_name().is_some_and(|n| n == "features"))
    {
        return Err(not(format!(
            "it holds a `features` folder (a run's output folder?): give {} instead",
            dir.join("features").display()
        )));
    }
    if steps.is_empty() {
        return Err(not(
            "it has no step folders (nothing checkpointed here yet, or the wrong folder)"
                .to_owned(),
        ));
    }
    steps.sort();
    Ok((steps, marker, temps))
}

/// Every file under `dir`, with the number of sub-folders.
fn files_under(dir: &Path) -> Result<(Vec<PathBuf>, usize)> {
    let mut files = Vec::new();
    let mut folders = 0usize;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let entries = fs::read_dir(&d).map_err(|source| Error::Io {
            action: "listing",
            path: d.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                folders += 1;
                stack.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    Ok((files, folders))
}

/// Runs `f` on every item on `threads` threads, sharing the work as it goes.
fn par_each<T: Sync>(items: &[T], threads: usize, f: impl Fn(&T) + Sync) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let start = next.fetch_add(256, Ordering::Relaxed);
                    if start >= items.len() {
                        return;
                    }
                    items[start..(start + 256).min(items.len())]
                        .iter()
                        .for_each(&f);
                }
            });
        }
    });
}

fn threads() -> usize {
    // Checking is I/O: more threads than cores hide the disk's latency.
    std::thread::available_parallelism().map_or(4, |n| 4 * n.get())
}

/// Checks one checkpoint file; `Err` says why it is not whole.
pub fn check_file(path: &Path) -> std::result::Result<(), String> {
    let name = path.to_string_lossy();
    if name.ends_with(".npy") {
        use std::io::Read as _;
        let mut file = fs::File::open(path).map_err(|e| e.to_string())?;
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        let mut head = vec![0u8; 4096.min(usize::try_from(len).unwrap_or(4096))];
        file.read_exact(&mut head).map_err(|e| e.to_string())?;
        let h = parse_header(&head)?;
        let item: u64 = h
            .descr
            .trim_start_matches(['<', '>', '|', '='])
            .trim_start_matches(|c: char| c.is_ascii_alphabetic())
            .parse()
            .map_err(|_| format!("unknown dtype `{}`", h.descr))?;
        let elems: u64 = h.shape.iter().map(|&d| d as u64).product();
        let want = h.data_offset as u64 + elems * item;
        if len != want {
            return Err(format!(
                "{len} bytes, but its header ({} {:?}) needs {want}: partial or padded",
                h.descr, h.shape
            ));
        }
        Ok(())
    } else if name.ends_with(".msgpack") {
        let bytes = fs::read(path).map_err(|e| e.to_string())?;
        let mut rd = bytes.as_slice();
        rmp_serde::from_read::<_, serde::de::IgnoredAny>(&mut rd)
            .map_err(|e| format!("not whole MessagePack: {e}"))?;
        if !rd.is_empty() {
            return Err(format!("{} bytes of garbage after the value", rd.len()));
        }
        Ok(())
    } else {
        Err("not a checkpoint this tool knows (.npy, .msgpack)".to_owned())
    }
}

/// Checks every file of a features folder (see the module docs).
///
/// # Errors
/// [`Error::NotFeatures`] when `dir` is not a features folder;
/// [`Error::Io`] when a folder cannot be listed.
pub fn verify(dir: &Path) -> Result<Verification> {
    let (steps, run_marker, root_temps) = step_dirs(dir)?;
    let root_stale_temps = root_temps
        .iter()
        .filter(|p| is_stale_temp(p))
        .map(|p| p.display().to_string())
        .collect();
    let mut out = Verification {
        dir: dir.to_owned(),
        run_marker,
        root_stale_temps,
        ..Verification::default()
    };
    for step_dir in steps {
        let (files, _) = files_under(&step_dir)?;
        let check = Mutex::new(StepCheck {
            step: step_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ..StepCheck::default()
        });
        let rel = |p: &Path| {
            p.strip_prefix(&step_dir)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned()
        };
        par_each(&files, threads(), |p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let verdict = if is_temp(&name) {
                Some(is_stale_temp(p))
            } else {
                None
            };
            let result = match verdict {
                Some(_) => Ok(()),
                None if name.ends_with(FAILED_EXT) || name == crate::lineage::STAMP_FILE => Ok(()),
                None if name.ends_with(".npy") || name.ends_with(".msgpack") => check_file(p),
                None => Ok(()),
            };
            let mut c = check
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match (verdict, result) {
                (Some(true), _) => {
                    c.stale_count += 1;
                    if c.stale_temps.len() < LISTED {
                        c.stale_temps.push(rel(p));
                    }
                }
                (Some(false), _) => c.live_temps += 1,
                (None, Err(why)) => {
                    c.corrupt_count += 1;
                    if c.corrupt.len() < LISTED {
                        c.corrupt.push((rel(p), why));
                    }
                }
                (None, Ok(())) if name.ends_with(FAILED_EXT) => c.failed_markers += 1,
                (None, Ok(())) if name == crate::lineage::STAMP_FILE => {}
                (None, Ok(())) if name.ends_with(".npy") || name.ends_with(".msgpack") => {
                    c.ok += 1;
                }
                (None, Ok(())) => {
                    if c.unknown.len() < LISTED {
                        c.unknown.push(rel(p));
                    }
                }
            }
        });
        let mut c = check
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.corrupt.sort();
        c.stale_temps.sort();
        c.unknown.sort();
        out.steps.push(c);
    }
    Ok(out)
}

/// Counts the files of a features folder from their metadata.
///
/// # Errors
/// As [`verify`].
pub fn stats(dir: &Path) -> Result<Stats> {
    let (steps, _, _) = step_dirs(dir)?;
    let mut out = Stats {
        dir: dir.to_owned(),
        steps: Vec::new(),
    };
    for step_dir in steps {
        let (files, folders) = files_under(&step_dir)?;
        let s = Mutex::new(StepStats {
            step: step_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            folders,
            ..StepStats::default()
        });
        par_each(&files, threads(), |p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let meta = fs::metadata(p).ok();
            let mut s = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let size = meta.as_ref().map_or(0, fs::Metadata::len);
            s.bytes += size;
            if let Some(t) = meta.and_then(|m| m.modified().ok()) {
                s.time_range = Some(match s.time_range {
                    Some((lo, hi)) => (lo.min(t), hi.max(t)),
                    None => (t, t),
                });
            }
            if name == crate::lineage::STAMP_FILE {
                // A step folder's own stamp is no checkpoint.
            } else if is_temp(&name) {
                s.temps += 1;
            } else if name.ends_with(FAILED_EXT) {
                s.failed_markers += 1;
            } else {
                let ext = name
                    .rfind('.')
                    .map_or_else(|| "(none)".to_owned(), |i| name[i..].to_owned());
                match s.by_extension.iter_mut().find(|(e, _)| *e == ext) {
                    Some((_, n)) => *n += 1,
                    None => s.by_extension.push((ext, 1)),
                }
                s.size_range = Some(match s.size_range {
                    Some((lo, hi)) => (lo.min(size), hi.max(size)),
                    None => (size, size),
                });
            }
        });
        let mut s = s
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.by_extension.sort();
        out.steps.push(s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::write_npy;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bp-verify-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn npy(path: &Path, n: usize) {
        let mut bytes = Vec::new();
        write_npy(&ndarray::Array1::<f64>::zeros(n), &mut bytes);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn a_clean_folder_is_clean_and_bad_files_are_named() {
        let d = tmpdir("clean");
        for i in 0..10 {
            npy(&d.join(format!("scale/{:03}/k{i}.npy", i % 3)), 4);
        }
        fs::create_dir_all(d.join("model")).unwrap();
        fs::write(
            d.join("model/m.msgpack"),
            rmp_serde::to_vec(&(1, "a")).unwrap(),
        )
        .unwrap();
        fs::write(d.join("scale/000/k9.failed"), b"why").unwrap();
        let v = verify(&d).unwrap();
        assert!(v.is_clean(), "{v}");
        assert_eq!((v.steps[1].ok, v.steps[1].failed_markers), (10, 1));
        assert_eq!(v.files(), 12);

        // Cut one file short, pad another, break a MessagePack file, leave
        // a dead writer's temp file.
        let cut = d.join("scale/001/k1.npy");
        let bytes = fs::read(&cut).unwrap();
        fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
        let padded = d.join("scale/002/k2.npy");
        let mut bytes = fs::read(&padded).unwrap();
        bytes.push(0);
        fs::write(&padded, bytes).unwrap();
        fs::write(d.join("model/m.msgpack"), [0x92, 0x01]).unwrap();
        fs::write(d.join("scale/000/.k3.npy.tmp-otherhost-1-0"), b"x").unwrap();
        let old = SystemTime::now() - std::time::Duration::from_secs(3 * 24 * 3600);
        fs::File::options()
            .write(true)
            .open(d.join("scale/000/.k3.npy.tmp-otherhost-1-0"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let v = verify(&d).unwrap();
        assert!(!v.is_clean());
        let scale = &v.steps[1];
        assert_eq!(
            (scale.ok, scale.corrupt_count, scale.stale_count),
            (8, 2, 1)
        );
        let text = v.to_string();
        assert!(
            text.contains("scale/001/k1.npy") && text.contains("partial"),
            "{text}"
        );
        assert!(text.contains("scale/002/k2.npy"), "{text}");
        assert!(
            text.contains("model/m.msgpack") && text.contains("MessagePack"),
            "{text}"
        );
        assert!(text.contains("000/.k3.npy.tmp-otherhost-1-0"), "{text}");
        assert!(text.contains("NOT clean"), "{text}");

        let s = stats(&d).unwrap();
        assert_eq!(s.steps[1].files(), 10);
        assert_eq!(
            (
                s.steps[1].failed_markers,
                s.steps[1].temps,
                s.steps[1].folders
            ),
            (1, 1, 3)
        );
        assert!(s.to_string().contains("2 steps, 11 files"), "{s}");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn what_is_not_a_features_folder_is_told() {
        let d = tmpdir("not");
        let e = verify(&d.join("missing")).unwrap_err().to_string();
        assert!(e.contains("missing") && e.contains("cannot be read"), "{e}");
        let e = verify(&d).unwrap_err().to_string();
        assert!(e.contains("no step folders"), "{e}");
        npy(&d.join("k1.npy"), 2);
        fs::create_dir_all(d.join("sub")).unwrap();
        let e = stats(&d).unwrap_err().to_string();
        let parent = d.parent().unwrap().display().to_string();
        assert!(
            e.contains("k1.npy") && e.contains(&format!("give {parent}")),
            "{e}"
        );
        let e = verify(&d.join("k1.npy")).unwrap_err().to_string();
        assert!(e.contains("is a file"), "{e}");
        let out = tmpdir("out");
        npy(&out.join("features/step/k.npy"), 2);
        let e = verify(&out).unwrap_err().to_string();
        assert!(e.contains("give") && e.contains("features"), "{e}");
        assert!(verify(&out.join("features")).unwrap().is_clean());
        let _ = fs::remove_dir_all(&out);
        let _ = fs::remove_dir_all(&d);
    }
}
