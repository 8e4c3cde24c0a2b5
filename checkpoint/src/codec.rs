//! Codecs: how one sample's datum becomes a file and back.

use std::any::{Any, TypeId};
use std::path::Path;
use std::sync::Arc;

use ndarray::{Array, Dimension, Ix0, Ix1, Ix2, Ix3, Ix4, IxDyn};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::npy::{NpyElem, read_npy, write_npy};
use crate::{Error, Result, Writer, files};

/// Why a datum did not become bytes, or bytes a datum.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Not a `.npy` file of the expected element type and dimensions.
    #[error("{0}")]
    Npy(String),
    /// A value MessagePack cannot encode.
    #[error(transparent)]
    MsgPackEncode(#[from] rmp_serde::encode::Error),
    /// MessagePack that does not decode into the type.
    #[error(transparent)]
    MsgPackDecode(#[from] rmp_serde::decode::Error),
    /// Bytes left after the value.
    #[error("{bytes} bytes of garbage after the value")]
    Trailing {
        /// How many.
        bytes: usize,
    },
    /// A codec of the user's own.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// Turns a datum into bytes and back. Implement it for formats of your own
/// (HDF5, images, …); [`Npy`] and [`MsgPack`] come with the crate.
pub trait Codec<T>: Send + Sync + 'static {
    /// The file extension, with its dot (`.npy`).
    fn extension(&self) -> &'static str;

    /// Appends the encoded value to `out`.
    ///
    /// # Errors
    /// Why the value cannot be encoded.
    fn encode(&self, value: &T, out: &mut Vec<u8>) -> std::result::Result<(), CodecError>;

    /// Decodes a whole file. It must refuse truncated, padded or foreign bytes:
    /// a corrupt checkpoint is recomputed, never used.
    ///
    /// # Errors
    /// Why the bytes are not a valid value.
    fn decode(&self, bytes: &[u8]) -> std::result::Result<T, CodecError>;
}

/// MessagePack (rmp-serde, named fields) for any serde type.
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgPack;

impl<T: Serialize + DeserializeOwned + 'static> Codec<T> for MsgPack {
    fn extension(&self) -> &'static str {
        ".msgpack"
    }

    fn encode(&self, value: &T, out: &mut Vec<u8>) -> std::result::Result<(), CodecError> {
        Ok(rmp_serde::encode::write_named(out, value)?)
    }

    fn decode(&self, bytes: &[u8]) -> std::result::Result<T, CodecError> {
        let mut rd = bytes;
        let value = rmp_serde::from_read(&mut rd)?;
        if !rd.is_empty() {
            return Err(CodecError::Trailing { bytes: rd.len() });
        }
        Ok(value)
    }
}

/// NumPy's `.npy` for `ndarray` arrays: `numpy.load` reads the files.
#[derive(Debug, Clone, Copy, Default)]
pub struct Npy;

impl<A: NpyElem, D: Dimension + 'static> Codec<Array<A, D>> for Npy {
    fn extension(&self) -> &'static str {
        ".npy"
    }

    fn encode(
        &self,
        value: &Array<A, D>,
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), CodecError> {
        write_npy(value, out);
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> std::result::Result<Array<A, D>, CodecError> {
        read_npy(bytes).map_err(CodecError::Npy)
    }
}

type DecodeAny = fn(&[u8]) -> std::result::Result<Box<dyn Any>, CodecError>;

/// `.npy` chosen at run time for a type that turned out to be an array.
struct NpyAny<T> {
    encode: fn(&dyn Any, &mut Vec<u8>),
    decode: DecodeAny,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T: 'static> Codec<T> for NpyAny<T> {
    fn extension(&self) -> &'static str {
        ".npy"
    }

    fn encode(&self, value: &T, out: &mut Vec<u8>) -> std::result::Result<(), CodecError> {
        (self.encode)(value, out);
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> std::result::Result<T, CodecError> {
        (self.decode)(bytes)?
            .downcast::<T>()
            .map(|b| *b)
            .map_err(|_| unreachable!("chosen for this very type"))
    }
}

fn npy_for<T: 'static, A: NpyElem, D: Dimension + 'static>() -> Option<Arc<dyn Codec<T>>> {
    if TypeId::of::<T>() != TypeId::of::<Array<A, D>>() {
        return None;
    }
    Some(Arc::new(NpyAny::<T> {
        encode: |v, out| {
            if let Some(a) = v.downcast_ref::<Array<A, D>>() {
                write_npy(a, out);
            }
        },
        decode: |bytes| {
            read_npy::<A, D>(bytes)
                .map(|a| Box::new(a) as Box<dyn Any>)
                .map_err(CodecError::Npy)
        },
        _t: std::marker::PhantomData,
    }))
}

/// The codec a step uses unless told otherwise: [`Npy`] for `ndarray` arrays of
/// a NumPy element type (`Array1<f32>`, `Array2<f64>`, `ArrayD<u8>`, …, up to 4
/// dimensions or dynamic), [`MsgPack`] for everything else.
pub fn default_codec<T: Serialize + DeserializeOwned + 'static>() -> Arc<dyn Codec<T>> {
    macro_rules! try_arrays {
        ($($a:ty),*) => {$(
            if let Some(c) = npy_for::<T, $a, Ix0>()
                .or_else(|| npy_for::<T, $a, Ix1>())
                .or_else(|| npy_for::<T, $a, Ix2>())
                .or_else(|| npy_for::<T, $a, Ix3>())
                .or_else(|| npy_for::<T, $a, Ix4>())
                .or_else(|| npy_for::<T, $a, IxDyn>())
            {
                return c;
            }
        )*};
    }
    try_arrays!(f32, f64, i8, i16, i32, i64, u8, u16, u32, u64);
    Arc::new(MsgPack)
}

/// Encodes `value` and writes it atomically to `path`.
///
/// # Errors
/// [`Error::Encode`] or [`Error::Io`].
pub fn save<T: 'static>(
    codec: &dyn Codec<T>,
    writer: &Writer,
    path: &Path,
    value: &T,
) -> Result<()> {
    let mut buf = Vec::new();
    codec.encode(value, &mut buf).map_err(|e| Error::Encode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    writer.write(path, &buf)
}

/// Reads and decodes `path`.
///
/// # Errors
/// [`Error::Io`] (a missing file is `NotFound`), or [`Error::Corrupt`] when the
/// file does not decode.
pub fn load<T: 'static>(codec: &dyn Codec<T>, path: &Path) -> Result<T> {
    let bytes = files::read(path)?;
    codec.decode(&bytes).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    #[test]
    fn arrays_default_to_npy_everything_else_to_msgpack() {
        assert_eq!(default_codec::<Array2<f32>>().extension(), ".npy");
        assert_eq!(default_codec::<ndarray::ArrayD<u8>>().extension(), ".npy");
        assert_eq!(default_codec::<Vec<f32>>().extension(), ".msgpack");
        assert_eq!(default_codec::<String>().extension(), ".msgpack");
        let c = default_codec::<Array2<f64>>();
        let a = array![[1.0, 2.0], [3.0, 4.0]];
        let mut buf = Vec::new();
        c.encode(&a, &mut buf).unwrap();
        assert_eq!(c.decode(&buf).unwrap(), a);
    }

    #[test]
    fn msgpack_refuses_truncated_and_padded_bytes() {
        let c = default_codec::<(String, Vec<u32>)>();
        let v = ("abc".to_owned(), vec![1, 2, 3]);
        let mut buf = Vec::new();
        c.encode(&v, &mut buf).unwrap();
        assert_eq!(c.decode(&buf).unwrap(), v);
        assert!(c.decode(&buf[..buf.len() - 1]).is_err());
        let mut padded = buf.clone();
        padded.push(0);
        assert!(matches!(
            c.decode(&padded),
            Err(CodecError::Trailing { bytes: 1 })
        ));
    }
}
