//! Where each sample's checkpoint lives: `features_dir/<step>/<hash(key)>/<key><ext>`.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// How keys are spread over sub-folders, so that no folder holds millions of files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HashFn {
    /// No sub-folder: `features_dir/<step>/<key><ext>` (bob's default).
    #[default]
    None,
    /// bob's `hash_string`: the sum of the key's code points modulo 1000, so key
    /// `"0"` goes to folder `48`. Compatible with bob's layout, but keys that are
    /// anagrams share a folder and short keys crowd low numbers.
    BobHashString,
    /// FNV-1a of the key modulo 1000, as three digits (`007`): uniform.
    Uniform,
}

impl HashFn {
    /// The sub-folder of `key`, if any.
    pub fn folder(self, key: &str) -> Option<String> {
        match self {
            HashFn::None => None,
            HashFn::BobHashString => {
                Some((key.chars().map(|c| c as u64).sum::<u64>() % 1000).to_string())
            }
            HashFn::Uniform => Some(format!(
                "{:03}",
                bob_pipelines_sample::fnv64(key.as_bytes()) % 1000
            )),
        }
    }
}

/// Checks that a key is a relative path that stays inside its folder.
///
/// # Errors
/// [`Error::InvalidKey`] for empty and absolute keys, `..` and `.` components,
/// empty components, and NUL bytes.
pub fn check_key(key: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("it is empty");
    }
    if key.contains('\0') {
        return bad("it contains a NUL byte");
    }
    if key.starts_with('/') || Path::new(key).is_absolute() {
        return bad("it is absolute; keys must be relative paths");
    }
    // Raw components: `Path::components` would silently drop an inner `.`.
    for part in key.split('/') {
        match part {
            "" => return bad("it has an empty path component"),
            ".." => return bad("it contains `..`; keys must stay inside the features folder"),
            "." => return bad("it contains `.`; keys must be plain relative paths"),
            _ => {}
        }
    }
    Ok(())
}

/// The checkpoint layout of a run: a features folder and a hash function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    features_dir: PathBuf,
    hash: HashFn,
}

impl Layout {
    /// Features under `features_dir`, spread with `hash`.
    pub fn new(features_dir: impl Into<PathBuf>, hash: HashFn) -> Self {
        Layout {
            features_dir: features_dir.into(),
            hash,
        }
    }

    /// The features folder.
    pub fn features_dir(&self) -> &Path {
        &self.features_dir
    }

    /// The hash function.
    pub fn hash(&self) -> HashFn {
        self.hash
    }

    /// The folder of one step.
    pub fn step_dir(&self, step: &str) -> PathBuf {
        self.features_dir.join(step)
    }

    /// The checkpoint file of `key` at `step`: `<step>/<hash(key)>/<key><ext>`.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] (see [`check_key`]).
    pub fn feature_path(&self, step: &str, key: &str, ext: &str) -> Result<PathBuf> {
        Ok(self.step_dir(step).join(self.relative(key, ext)?))
    }

    /// The same file relative to its step's folder (`<hash(key)>/<key><ext>`).
    ///
    /// # Errors
    /// [`Error::InvalidKey`] (see [`check_key`]).
    pub fn relative(&self, key: &str, ext: &str) -> Result<String> {
        check_key(key)?;
        Ok(match self.hash.folder(key) {
            Some(folder) => format!("{folder}/{key}{ext}"),
            None => format!("{key}{ext}"),
        })
    }

    /// The file that records that `key` failed at `step` (failed samples are
    /// never checkpointed; this marker only says why, for plans and reports).
    ///
    /// # Errors
    /// [`Error::InvalidKey`].
    pub fn failure_path(&self, step: &str, key: &str) -> Result<PathBuf> {
        self.feature_path(step, key, FAILED_EXT)
    }
}

/// The extension of failure markers.
pub const FAILED_EXT: &str = ".failed";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bob_hash_string_matches_bob() {
        // bob.pipelines: hash_string("0") == "48" (ord("0") == 48).
        assert_eq!(HashFn::BobHashString.folder("0").as_deref(), Some("48"));
        assert_eq!(HashFn::BobHashString.folder("ab").as_deref(), Some("195"));
        assert_eq!(
            HashFn::BobHashString.folder(&"z".repeat(20)).as_deref(),
            Some("440")
        );
        assert_eq!(HashFn::None.folder("x"), None);
        let u = HashFn::Uniform.folder("subject01/img3").unwrap();
        assert_eq!(u.len(), 3);
    }

    #[test]
    fn paths_follow_the_layout_and_bad_keys_are_refused() {
        let l = Layout::new("/f", HashFn::BobHashString);
        assert_eq!(
            l.feature_path("pca", "0", ".npy").unwrap(),
            Path::new("/f/pca/48/0.npy")
        );
        let n = Layout::new("/f", HashFn::None);
        assert_eq!(
            n.feature_path("pca", "s1/img.png", ".npy").unwrap(),
            Path::new("/f/pca/s1/img.png.npy")
        );
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/./b",
            "a\0b",
        ] {
            let e = n.feature_path("pca", bad, ".npy").unwrap_err();
            assert!(matches!(e, Error::InvalidKey { .. }), "{bad:?}: {e}");
        }
    }
}
