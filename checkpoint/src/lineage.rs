//! Lineage stamps: what produced the files of a step's folder.
//!
//! A step folder holds one small file, [`STAMP_FILE`], that says which step
//! wrote the folder's outputs: its name, its estimator, the options that
//! change what it computes, the version its author gave it, the hash of its
//! fitted model, and the hash of the stamp of the step before it. A run
//! reuses a folder's files only when its stamp is the one the run expects.
//!
//! The stamp changes in one order only ([`renew`]): the folder is moved
//! aside (one rename, so none of its files is read again), a fresh folder is
//! made, the new stamp is written into it, and only then are outputs written.
//! A kill between any two of these leaves either the old stamp over the old
//! files (the next run renews again) or the new stamp over new files only.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::files::{is_stale_temp, owned_name};
use crate::{Error, Result, Writer};

/// The name of the stamp file in a step folder.
pub const STAMP_FILE: &str = ".lineage";

/// The first line of every stamp file: its format.
const HEADER: &str = "bob-pipelines lineage 1";

/// What produced a step's outputs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stamp {
    /// The step's name.
    pub step: String,
    /// Its estimator's type (the last path segment).
    pub estimator: String,
    /// What of its options changes what it computes (extra arguments,
    /// declared parameters), as text.
    pub options: String,
    /// The version its author gave it, for code changes the program cannot
    /// see (empty when none).
    pub version: String,
    /// The hash of its fitted model (16 hex digits), for a fitted step.
    pub model: Option<String>,
    /// The hash of the stamp of the step before it, or `input` for the first.
    pub upstream: String,
}

impl Stamp {
    /// The stamp as its file holds it: one `key value` line per field.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{HEADER}\nstep {}\nestimator {}\noptions {}\nversion {}\n",
            self.step, self.estimator, self.options, self.version
        );
        if let Some(m) = &self.model {
            s.push_str(&format!("model {m}\n"));
        }
        s.push_str(&format!("upstream {}\n", self.upstream));
        s
    }

    /// A stamp from its file's text; `None` for text that is not a stamp.
    pub fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()? != HEADER {
            return None;
        }
        let mut stamp = Stamp::default();
        for line in lines {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            let value = value.to_owned();
            match key {
                "step" => stamp.step = value,
                "estimator" => stamp.estimator = value,
                "options" => stamp.options = value,
                "version" => stamp.version = value,
                "model" => stamp.model = Some(value),
                "upstream" => stamp.upstream = value,
                _ => return None,
            }
        }
        Some(stamp)
    }

    /// A hash of the whole stamp (16 hex digits): what the next step's stamp
    /// names as its upstream.
    pub fn hash(&self) -> String {
        format!("{:016x}", fnv64(self.to_text().as_bytes()))
    }

    /// What differs between `self` (expected) and `old` (on disk), in words.
    pub fn changes(&self, old: &Stamp) -> Vec<String> {
        let mut out = Vec::new();
        let mut field = |what: &str, old: &str, new: &str| {
            if old != new {
                out.push(format!("{what}: {} → {}", shown(old), shown(new)));
            }
        };
        field("step", &old.step, &self.step);
        field("estimator", &old.estimator, &self.estimator);
        field("options", &old.options, &self.options);
        field("version", &old.version, &self.version);
        field(
            "model hash",
            old.model.as_deref().unwrap_or(""),
            self.model.as_deref().unwrap_or(""),
        );
        if out.is_empty() && old.upstream != self.upstream {
            out.push("an upstream step changed".to_owned());
        }
        out
    }
}

fn shown(s: &str) -> &str {
    if s.is_empty() { "(none)" } else { s }
}

pub use bob_pipelines_sample::fnv64;

/// What a stamp file says: `Ok(None)` when there is none.
///
/// # Errors
/// [`Error::Io`] when the file exists but cannot be read. A file that is not
/// a stamp reads as a stamp that matches nothing.
pub fn read_stamp_file(path: &Path) -> Result<Option<Stamp>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(Stamp::parse(&text).unwrap_or_else(|| Stamp {
            step: "(unreadable stamp)".to_owned(),
            ..Stamp::default()
        }))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            action: "reading",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// What a step folder's stamp file says: `Ok(None)` when the folder has none.
///
/// # Errors
/// [`Error::Io`] when the file exists but cannot be read. A file that is not
/// a stamp reads as a stamp that matches nothing.
pub fn read_stamp(step_dir: &Path) -> Result<Option<Stamp>> {
    read_stamp_file(&step_dir.join(STAMP_FILE))
}

/// Writes `stamp` into `step_dir` (made if missing), atomically.
///
/// # Errors
/// As [`Writer::write`].
pub fn write_stamp(step_dir: &Path, stamp: &Stamp, writer: &Writer) -> Result<()> {
    write_stamp_file(&step_dir.join(STAMP_FILE), stamp, writer)
}

/// Writes `stamp` to the file `path`, atomically.
///
/// # Errors
/// As [`Writer::write`].
pub fn write_stamp_file(path: &Path, stamp: &Stamp, writer: &Writer) -> Result<()> {
    writer.write(path, stamp.to_text().as_bytes())
}

static ASIDE: AtomicU64 = AtomicU64::new(0);

const ASIDE_MARK: &str = ".stale";

/// Moves `step_dir` aside (its files are stale: none will be read again),
/// makes it afresh and writes `stamp` into it — in that order (see the
/// module docs). The folder moved aside is named after this process, and
/// [`remove_aside`] removes it.
///
/// # Errors
/// [`Error::Io`] when the folder cannot be moved or made; as [`write_stamp`].
pub fn renew(step_dir: &Path, stamp: &Stamp, writer: &Writer) -> Result<()> {
    if step_dir.exists() {
        let name = step_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let n = ASIDE.fetch_add(1, Ordering::Relaxed);
        let aside =
            step_dir.with_file_name(owned_name(&format!("{name}{ASIDE_MARK}"), &n.to_string()));
        fs::rename(step_dir, &aside).map_err(|source| Error::Io {
            action: "moving aside",
            path: step_dir.to_path_buf(),
            source,
        })?;
        crate::failpoint("lineage.moved-aside");
    }
    fs::create_dir_all(step_dir).map_err(|source| Error::Io {
        action: "creating",
        path: step_dir.to_path_buf(),
        source,
    })?;
    write_stamp(step_dir, stamp, writer)
}

/// Whether a step folder holds anything but its stamp.
pub fn has_files(step_dir: &Path) -> bool {
    fs::read_dir(step_dir)
        .is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.file_name() != STAMP_FILE)))
}

/// Whether `name` is a step folder moved aside by [`renew`].
pub fn is_aside(name: &str) -> bool {
    name.starts_with('.') && name.contains(&format!("{ASIDE_MARK}.tmp-"))
}

/// Removes the step folders that [`renew`] moved aside in `features_dir`:
/// those of processes that are gone, and this process's own when `own`.
/// Returns how many.
pub fn remove_aside(features_dir: &Path, own: bool) -> usize {
    let Ok(entries) = fs::read_dir(features_dir) else {
        return 0;
    };
    let mine = owned_name("", "");
    let mine = mine.trim_start_matches('.');
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            is_aside(&name) && (is_stale_temp(p) || (own && name.contains(mine)))
        })
        .filter(|p| fs::remove_dir_all(p).is_ok())
        .count()
}

/// The step folders of `features_dir` whose stamp names a step that is not in
/// `steps`: outputs no step of this pipeline reads (a step renamed, or a
/// pipeline changed), with the step each stamp names.
pub fn orphans(features_dir: &Path, steps: &[&str]) -> Vec<(PathBuf, String)> {
    let Ok(entries) = fs::read_dir(features_dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, String)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || steps.contains(&name.as_str()) {
                return None;
            }
            let stamp = read_stamp(&e.path()).ok()??;
            Some((e.path(), stamp.step))
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(model: &str) -> Stamp {
        Stamp {
            step: "center".into(),
            estimator: "Mean".into(),
            options: "fit_extra=[y=subject]".into(),
            version: String::new(),
            model: Some(model.into()),
            upstream: "input".into(),
        }
    }

    #[test]
    fn stamps_round_trip_and_say_what_changed() {
        let a = stamp("00aa");
        assert_eq!(Stamp::parse(&a.to_text()), Some(a.clone()));
        assert_eq!(Stamp::parse("something else"), None);
        let mut b = stamp("00bb");
        b.version = "2".into();
        assert_eq!(
            b.changes(&a),
            ["version: (none) → 2", "model hash: 00aa → 00bb"]
        );
        let mut c = a.clone();
        c.upstream = "1234".into();
        assert_eq!(c.changes(&a), ["an upstream step changed"]);
        assert_ne!(a.hash(), c.hash());
    }

    #[test]
    fn a_renewed_folder_holds_the_new_stamp_and_none_of_the_old_files() {
        let root = std::env::temp_dir().join(format!("bp-lineage-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let dir = root.join("center");
        fs::create_dir_all(dir.join("ab")).unwrap();
        fs::write(dir.join("ab/s1.npy"), b"old").unwrap();
        write_stamp(&dir, &stamp("00aa"), &Writer::new()).unwrap();
        renew(&dir, &stamp("00bb"), &Writer::new()).unwrap();
        assert_eq!(read_stamp(&dir).unwrap(), Some(stamp("00bb")));
        assert!(!dir.join("ab/s1.npy").exists());
        let aside: Vec<_> = fs::read_dir(&root).unwrap().flatten().collect();
        assert_eq!(aside.len(), 2, "the folder, and the old one moved aside");
        assert_eq!(remove_aside(&root, false), 0, "this process is alive");
        assert_eq!(remove_aside(&root, true), 1);
        assert_eq!(orphans(&root, &["center"]), []);
        let found = orphans(&root, &["centre"]);
        assert_eq!(found, [(dir.clone(), "center".to_owned())]);
        fs::remove_dir_all(&root).unwrap();
    }
}
