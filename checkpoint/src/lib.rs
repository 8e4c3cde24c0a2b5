#![doc = include_str!("../README.md")]

mod codec;
mod error;
mod files;
mod layout;
mod npy;
pub mod verify;

pub use codec::{Codec, CodecError, MsgPack, Npy, default_codec, load, save};
pub use error::{Error, Result};
pub use files::{
    Bytes, Durability, MAP_THRESHOLD, Writer, clean_temps, is_stale_temp, is_temp, owned_name,
    quarantine, read, walk,
};
pub use layout::{FAILED_EXT, HashFn, Layout, check_key};
pub use npy::{Header, MappedArray, NpyElem, parse_header, read_npy, write_npy};
