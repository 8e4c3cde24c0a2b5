#![doc = include_str!("../README.md")]

mod codec;
mod error;
mod failpoint;
mod files;
mod layout;
pub mod lineage;
mod npy;
pub mod store;
pub mod verify;

pub use codec::{Codec, CodecError, MsgPack, Npy, default_codec, load, save};
pub use error::{Error, Result};

/// The file a checkpointed run keeps in its features folder while it runs: if
/// a run finds one, an earlier run did not finish and may have left temp files.
pub const RUN_MARKER: &str = ".bob-pipelines-running";

/// The run's report files, which a run writes into its features folder
/// beside the step folders: `report.json` and `report.html`.
pub const REPORT_FILES: [&str; 2] = ["report.json", "report.html"];
pub use failpoint::{FAILPOINT_ENV, failpoint, failpoints_enabled};
pub use files::{
    Bytes, Durability, MAP_THRESHOLD, Writer, clean_temps, is_stale_temp, is_temp, owned_name,
    quarantine, read, walk,
};
pub use layout::{FAILED_EXT, HashFn, Layout, check_key};
pub use npy::{Header, MappedArray, NpyElem, parse_header, read_npy, write_npy};
