//! The error type of this crate.

use std::path::PathBuf;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong with checkpoints.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key that cannot be a relative file path under the features folder.
    #[error("sample key {key:?} cannot be a checkpoint path: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why (absolute, `..`, empty, …).
        reason: &'static str,
    },
    /// A folder given as a features folder is not one.
    #[error("{} is not a features folder: {reason}", path.display())]
    NotFeatures {
        /// The folder.
        path: std::path::PathBuf,
        /// Why not, and what to give instead.
        reason: String,
    },
    /// A file operation failed (after every retry).
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The last error.
        source: std::io::Error,
    },
    /// A file stands where a folder of the path should be: every write
    /// there fails until it is moved.
    #[error(
        "cannot write {}: {} is a file where a folder should be; move or remove it (or choose \
         another folder)",
        path.display(),
        file.display()
    )]
    InTheWay {
        /// The file that was to be written.
        path: PathBuf,
        /// The file in the way.
        file: PathBuf,
    },
    /// A checkpoint file that is not what it must be: truncated, garbage, or
    /// another type or shape.
    #[error("corrupt checkpoint {}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A value the codec cannot encode.
    #[error("cannot encode for {}: {reason}", path.display())]
    Encode {
        /// The file it was for.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}
