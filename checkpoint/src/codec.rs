//! Codecs: how one sample's datum becomes a file and back.

use std::any::{Any, TypeId};
use std::path::Path;
use std::sync::Arc;

use ndarray::{Array, Dimension, Ix0, Ix1, Ix2, Ix3, Ix4, IxDyn};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::npy::{NpyElem, parse_header, read_npy, write_npy, write_npy_header};
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

    /// Appends the data of a partition as one column: what crosses the wire
    /// between processes. By default, each value's encoding after its length
    /// (8 bytes, little-endian); [`Npy`] writes same-shaped arrays as one
    /// header and one buffer, [`MsgPack`] as one array.
    ///
    /// # Errors
    /// Why a value cannot be encoded.
    fn encode_column(
        &self,
        values: &[&T],
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), CodecError> {
        encode_each(values, out, |v, out| self.encode(v, out))
    }

    /// The `n` values of a column that [`encode_column`](Self::encode_column)
    /// wrote; bytes left over or missing are an error.
    ///
    /// # Errors
    /// Why the bytes are not `n` valid values.
    fn decode_column(&self, bytes: &[u8], n: usize) -> std::result::Result<Vec<T>, CodecError> {
        decode_each(bytes, n, |b| self.decode(b))
    }
}

/// The default column: each value after its length.
fn encode_each<T>(
    values: &[&T],
    out: &mut Vec<u8>,
    encode: impl Fn(&T, &mut Vec<u8>) -> std::result::Result<(), CodecError>,
) -> std::result::Result<(), CodecError> {
    for v in values {
        let at = out.len();
        out.extend_from_slice(&[0; 8]);
        encode(v, out)?;
        let len = (out.len() - at - 8) as u64;
        out[at..at + 8].copy_from_slice(&len.to_le_bytes());
    }
    Ok(())
}

/// The default column: `n` length-prefixed values.
fn decode_each<T>(
    mut bytes: &[u8],
    n: usize,
    decode: impl Fn(&[u8]) -> std::result::Result<T, CodecError>,
) -> std::result::Result<Vec<T>, CodecError> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let short = || CodecError::Npy(format!("the column ends before value {i} of {n}"));
        let (len, rest) = bytes.split_first_chunk::<8>().ok_or_else(short)?;
        let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| short())?;
        let value = rest.get(..len).ok_or_else(short)?;
        out.push(decode(value)?);
        bytes = &rest[len..];
    }
    if !bytes.is_empty() {
        return Err(CodecError::Trailing { bytes: bytes.len() });
    }
    Ok(out)
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

    fn encode_column(
        &self,
        values: &[&T],
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), CodecError> {
        Ok(rmp_serde::encode::write_named(out, values)?)
    }

    fn decode_column(&self, bytes: &[u8], n: usize) -> std::result::Result<Vec<T>, CodecError> {
        let values: Vec<T> = self.decode(bytes)?;
        if values.len() != n {
            return Err(CodecError::Npy(format!(
                "the column holds {} values where {n} were expected",
                values.len()
            )));
        }
        Ok(values)
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

    fn encode_column(
        &self,
        values: &[&Array<A, D>],
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), CodecError> {
        npy_encode_column(values, out);
        Ok(())
    }

    fn decode_column(
        &self,
        bytes: &[u8],
        n: usize,
    ) -> std::result::Result<Vec<Array<A, D>>, CodecError> {
        npy_decode_column(bytes, n)
    }
}

/// Same-shaped arrays as one `.npy` array of shape `(n, shape…)` after a 1;
/// otherwise a 0 and the arrays one by one.
fn npy_encode_column<A: NpyElem, D: Dimension>(values: &[&Array<A, D>], out: &mut Vec<u8>) {
    let same = values
        .first()
        .is_some_and(|v0| values.iter().all(|v| v.shape() == v0.shape()));
    if !same {
        out.push(0);
        let _ = encode_each(values, out, |v, out| {
            write_npy(v, out);
            Ok(())
        });
        return;
    }
    out.push(1);
    let mut shape = vec![values.len()];
    shape.extend_from_slice(values[0].shape());
    write_npy_header::<A>(&shape, out);
    out.reserve(values.len() * values[0].len() * size_of::<A>());
    for v in values {
        match v.as_slice() {
            Some(s) => out.extend_from_slice(bytemuck::cast_slice(s)),
            None => v
                .iter()
                .for_each(|x| out.extend_from_slice(bytemuck::bytes_of(x))),
        }
    }
}

fn npy_decode_column<A: NpyElem, D: Dimension>(
    bytes: &[u8],
    n: usize,
) -> std::result::Result<Vec<Array<A, D>>, CodecError> {
    match bytes.split_first() {
        Some((0, rest)) => decode_each(rest, n, |b| read_npy(b).map_err(CodecError::Npy)),
        Some((1, rest)) => {
            // One header for the partition; each array is one copy of its
            // bytes into an allocation of its own.
            let h = parse_header(rest).map_err(CodecError::Npy)?;
            if h.descr != A::DESCR || h.fortran_order {
                return Err(CodecError::Npy(format!(
                    "the column's dtype is {} where C-order {} was expected",
                    h.descr,
                    A::DESCR
                )));
            }
            let shape = &h.shape;
            let mut dim = D::zeros(shape.len().saturating_sub(1));
            if shape.first() != Some(&n) || dim.ndim() != shape.len() - 1 {
                return Err(CodecError::Npy(format!(
                    "the column's shape {shape:?} is not of {n} arrays of {} dimensions",
                    dim.ndim()
                )));
            }
            dim.slice_mut().copy_from_slice(&shape[1..]);
            let too_big = || CodecError::Npy(format!("the column's shape {shape:?} is too large"));
            let count = dim.size_checked().ok_or_else(too_big)?;
            let each = count.checked_mul(size_of::<A>()).ok_or_else(too_big)?;
            let total = n.checked_mul(each).ok_or_else(too_big)?;
            let data = &rest[h.data_offset..];
            if data.len() != total {
                return Err(CodecError::Npy(format!(
                    "the column holds {} data bytes where its shape {shape:?} needs {total}",
                    data.len()
                )));
            }
            let mut out = Vec::with_capacity(n);
            for chunk in data.chunks_exact(each.max(1)).take(n) {
                let mut values = vec![A::zeroed(); count];
                bytemuck::cast_slice_mut::<A, u8>(&mut values).copy_from_slice(chunk);
                let a = Array::from_shape_vec(dim.clone(), values)
                    .map_err(|e| CodecError::Npy(e.to_string()))?;
                out.push(a);
            }
            while out.len() < n {
                // Arrays with no element: no bytes to chunk.
                out.push(
                    Array::from_shape_vec(dim.clone(), Vec::new())
                        .map_err(|e| CodecError::Npy(e.to_string()))?,
                );
            }
            Ok(out)
        }
        _ => Err(CodecError::Npy("not a column of arrays".to_owned())),
    }
}

type DecodeAny = fn(&[u8]) -> std::result::Result<Box<dyn Any>, CodecError>;
type DecodeColumn = fn(&[u8], usize) -> std::result::Result<Box<dyn Any>, CodecError>;

/// `.npy` chosen at run time for a type that turned out to be an array.
struct NpyAny<T> {
    encode: fn(&dyn Any, &mut Vec<u8>),
    decode: DecodeAny,
    encode_column: fn(&[&dyn Any], &mut Vec<u8>),
    decode_column: DecodeColumn,
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

    fn encode_column(
        &self,
        values: &[&T],
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), CodecError> {
        let values: Vec<&dyn Any> = values.iter().map(|v| *v as &dyn Any).collect();
        (self.encode_column)(&values, out);
        Ok(())
    }

    fn decode_column(&self, bytes: &[u8], n: usize) -> std::result::Result<Vec<T>, CodecError> {
        (self.decode_column)(bytes, n)?
            .downcast::<Vec<T>>()
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
        encode_column: |values, out| {
            let arrays: Vec<&Array<A, D>> = values
                .iter()
                .filter_map(|v| v.downcast_ref::<Array<A, D>>())
                .collect();
            npy_encode_column(&arrays, out);
        },
        decode_column: |bytes, n| {
            npy_decode_column::<A, D>(bytes, n).map(|v| Box::new(v) as Box<dyn Any>)
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

    /// A codec of the user's own: only `encode` and `decode`, so the column
    /// is the default one.
    struct Plain;
    impl Codec<u32> for Plain {
        fn extension(&self) -> &'static str {
            ".u32"
        }
        fn encode(&self, v: &u32, out: &mut Vec<u8>) -> std::result::Result<(), CodecError> {
            out.extend_from_slice(&v.to_le_bytes());
            Ok(())
        }
        fn decode(&self, b: &[u8]) -> std::result::Result<u32, CodecError> {
            Ok(u32::from_le_bytes(
                b.try_into()
                    .map_err(|_| CodecError::Npy("not 4 bytes".into()))?,
            ))
        }
    }

    #[test]
    fn columns_round_trip_in_each_codec_and_refuse_the_wrong_count() {
        let arrays = [array![1.0f64, 2.0], array![3.0, 4.0], array![5.0, 6.0]];
        let refs: Vec<_> = arrays.iter().collect();
        let mut col = Vec::new();
        Npy.encode_column(&refs, &mut col).unwrap();
        assert_eq!(col[0], 1, "same shapes: one header");
        let back: Vec<ndarray::Array1<f64>> = Npy.decode_column(&col, 3).unwrap();
        assert_eq!(back, arrays);
        assert!(Codec::<ndarray::Array1<f64>>::decode_column(&Npy, &col, 2).is_err());
        let scalars = [ndarray::arr0(7i64), ndarray::arr0(8)];
        let mut col = Vec::new();
        Npy.encode_column(&scalars.iter().collect::<Vec<_>>(), &mut col)
            .unwrap();
        let back: Vec<ndarray::Array0<i64>> = Npy.decode_column(&col, 2).unwrap();
        assert_eq!(back, scalars);

        let words = ["a".to_owned(), "bc".to_owned()];
        let mut col = Vec::new();
        MsgPack
            .encode_column(&words.iter().collect::<Vec<_>>(), &mut col)
            .unwrap();
        assert_eq!(
            Codec::<String>::decode_column(&MsgPack, &col, 2).unwrap(),
            words
        );
        assert!(Codec::<String>::decode_column(&MsgPack, &col, 3).is_err());

        let mut col = Vec::new();
        Plain.encode_column(&[&1, &2, &3], &mut col).unwrap();
        assert_eq!(Plain.decode_column(&col, 3).unwrap(), [1, 2, 3]);
        assert!(Plain.decode_column(&col, 2).is_err(), "bytes left over");
        assert!(
            Plain.decode_column(&col[..col.len() - 1], 3).is_err(),
            "cut short"
        );
    }

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
