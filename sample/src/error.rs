//! The error type of this crate.

use std::path::PathBuf;

use crate::Key;

/// Any error a user's code can return: what loaders and transformers give back.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong with samples, their attributes, batches and databases.
///
/// Every variant names the thing at fault (key, attribute, file and line) so that
/// the message alone tells a user where to look.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A sample has no attribute of that name.
    #[error("sample {key:?} has no attribute `{name}` (it has: {})", list(.available))]
    MissingAttr {
        /// The sample's key (empty for free-standing attributes).
        key: Key,
        /// The attribute asked for.
        name: String,
        /// The attributes the sample does have.
        available: Vec<String>,
    },
    /// An attribute exists but does not convert to the type asked for.
    #[error("attribute `{name}` of sample {key:?} is not of the type asked for: {reason}")]
    AttrType {
        /// The sample's key (empty for free-standing attributes).
        key: Key,
        /// The attribute.
        name: String,
        /// What the conversion said.
        reason: String,
    },
    /// A value could not be turned into an attribute value.
    #[error("attribute `{name}` could not be stored: {reason}")]
    AttrValue {
        /// The attribute.
        name: String,
        /// What the conversion said.
        reason: String,
    },
    /// The loader of a delayed attribute failed.
    #[error("loading delayed attribute `{name}` of sample {key:?} failed: {source}")]
    DelayedAttr {
        /// The sample's key (empty for free-standing attributes).
        key: Key,
        /// The attribute.
        name: String,
        /// The loader's error.
        source: BoxError,
    },
    /// A name was given both as a plain and as a delayed attribute.
    #[error(
        "attribute `{name}` is given both as a plain and as a delayed attribute; give it once \
         (set a delayed attribute later to turn it into a plain one)"
    )]
    AttrTwice {
        /// The attribute.
        name: String,
    },
    /// The loader of a delayed sample or sample set failed.
    #[error("loading the data of sample {key:?} failed: {source}")]
    Load {
        /// The key of the sample (or sample set) whose loader failed.
        key: Key,
        /// The loader's error.
        source: BoxError,
    },
    /// Stacking a batch met a sample whose shape differs from the first one's.
    #[error(
        "cannot stack the batch: sample {key:?} (position {index}) has shape {found:?}, \
         but the first sample has shape {expected:?}"
    )]
    Shape {
        /// Position of the sample in the batch.
        index: usize,
        /// Its key.
        key: Key,
        /// The shape of the first sample.
        expected: Vec<usize>,
        /// The shape of this one.
        found: Vec<usize>,
    },
    /// Stacking an empty batch: the shape of its items is unknown.
    #[error("cannot stack an empty batch: the shape of its items is unknown")]
    EmptyBatch,
    /// A file or folder could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A CSV file is malformed.
    #[error("{}:{line}: {reason}", path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// The 1-based line of the bad record.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// A protocol that the database does not have.
    #[error("unknown protocol `{protocol}` in {}; valid protocols: {}", root.display(), list(.valid))]
    UnknownProtocol {
        /// The database folder.
        root: PathBuf,
        /// The protocol asked for.
        protocol: String,
        /// The protocols that exist (sorted).
        valid: Vec<String>,
    },
    /// A group that the protocol does not have.
    #[error("unknown group `{group}` in protocol `{protocol}`; valid groups: {}", list(.valid))]
    UnknownGroup {
        /// The protocol.
        protocol: String,
        /// The group asked for.
        group: String,
        /// The groups that exist (sorted).
        valid: Vec<String>,
    },
}

pub(crate) fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}
