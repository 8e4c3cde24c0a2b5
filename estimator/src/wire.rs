//! Partitions on the wire: how a partition of samples crosses a process
//! boundary (scheduler ↔ workers).

use std::fmt;
use std::sync::Arc;

use bob_pipelines_checkpoint::Codec;
use bob_pipelines_sample::{Attrs, Key, Meta, Sample};
use serde::{Deserialize, Serialize};

use crate::outputs::{Failed, Slot};
use crate::step::AnyPartition;
use crate::{Error, Result};

/// Encodes and decodes partitions of one datum type: per sample its key, its
/// attributes (delayed ones loaded) and its datum as MessagePack `bin` — the
/// bytes of the step's codec (`.npy` for arrays), never arrays of numbers.
pub trait PartitionCodec: Send + Sync {
    /// The partition's bytes.
    ///
    /// # Errors
    /// [`Error::Wire`] when a datum does not encode or a delayed attribute
    /// does not load; [`Error::WrongType`] for a partition of another type.
    fn encode(&self, part: &AnyPartition) -> Result<Vec<u8>>;

    /// A partition from its bytes.
    ///
    /// # Errors
    /// [`Error::Wire`] for bytes that are not a partition of this type.
    fn decode(&self, bytes: &[u8]) -> Result<AnyPartition>;

    /// The keys of a partition's first `limit` samples (failed ones
    /// included), in order: what names a partition in a message.
    ///
    /// # Errors
    /// [`Error::WrongType`] for a partition of another type.
    fn keys(&self, part: &AnyPartition, limit: usize) -> Result<Vec<Key>>;
}

/// A shared partition codec.
#[derive(Clone)]
pub struct Wire(pub(crate) Arc<dyn PartitionCodec>);

impl fmt::Debug for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Wire(..)")
    }
}

impl Wire {
    /// The partition codec of datum type `T`, with `codec` for the data.
    pub fn new<T: Send + Sync + 'static>(codec: Arc<dyn Codec<T>>) -> Self {
        Wire(Arc::new(Typed { codec }))
    }

    /// The codec.
    pub fn codec(&self) -> &dyn PartitionCodec {
        &*self.0
    }
}

struct Typed<T> {
    codec: Arc<dyn Codec<T>>,
}

#[derive(Serialize)]
enum SlotRef<'a> {
    Ok {
        key: &'a Key,
        attrs: &'a Attrs,
        #[serde(with = "bob_pipelines_sample::bin")]
        data: Vec<u8>,
    },
    Failed(&'a Failed),
}

#[derive(Deserialize)]
enum SlotOwned {
    Ok {
        key: Key,
        attrs: Attrs,
        #[serde(with = "bob_pipelines_sample::bin")]
        data: Vec<u8>,
    },
    Failed(Failed),
}

fn wire_error(reason: impl fmt::Display) -> Error {
    Error::Wire {
        reason: reason.to_string(),
    }
}

fn slots<T: 'static>(part: &AnyPartition) -> Result<&Vec<Slot<T>>> {
    part.downcast_ref::<Vec<Slot<T>>>()
        .ok_or_else(|| Error::WrongType {
            step: "<wire>".to_owned(),
            expected: std::any::type_name::<Vec<Slot<T>>>(),
        })
}

impl<T: Send + Sync + 'static> PartitionCodec for Typed<T> {
    fn keys(&self, part: &AnyPartition, limit: usize) -> Result<Vec<Key>> {
        Ok(slots::<T>(part)?
            .iter()
            .take(limit)
            .map(|s| match s {
                Ok(s) => s.key().clone(),
                Err(f) => f.key().clone(),
            })
            .collect())
    }

    fn encode(&self, part: &AnyPartition) -> Result<Vec<u8>> {
        let part = slots::<T>(part)?;
        let slots = part
            .iter()
            .map(|s| match s {
                Ok(s) => {
                    let mut data = Vec::new();
                    self.codec
                        .encode(s.data(), &mut data)
                        .map_err(|e| wire_error(format!("sample {:?}: {e}", s.key())))?;
                    Ok(SlotRef::Ok {
                        key: s.key(),
                        attrs: s.attrs(),
                        data,
                    })
                }
                Err(f) => Ok(SlotRef::Failed(f)),
            })
            .collect::<Result<Vec<_>>>()?;
        rmp_serde::to_vec_named(&slots).map_err(wire_error)
    }

    fn decode(&self, bytes: &[u8]) -> Result<AnyPartition> {
        let slots: Vec<SlotOwned> = rmp_serde::from_slice(bytes).map_err(wire_error)?;
        let part = slots
            .into_iter()
            .map(|s| match s {
                SlotOwned::Ok { key, attrs, data } => {
                    let value = self
                        .codec
                        .decode(&data)
                        .map_err(|e| wire_error(format!("sample {key:?}: {e}")))?;
                    Ok(Ok(Sample::from_meta(
                        Arc::new(Meta::with_attrs(key, attrs)),
                        value,
                    )))
                }
                SlotOwned::Failed(f) => Ok(Err(f)),
            })
            .collect::<Result<Vec<Slot<T>>>>()?;
        Ok(Box::new(part))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bob_pipelines_checkpoint::default_codec;
    use ndarray::Array1;

    fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static>(
        part: Vec<Slot<T>>,
    ) -> (Vec<Slot<T>>, usize) {
        let wire = Wire::new(default_codec::<T>());
        let bytes = wire
            .codec()
            .encode(&(Box::new(part) as AnyPartition))
            .unwrap();
        let back = wire.codec().decode(&bytes).unwrap();
        (*back.downcast::<Vec<Slot<T>>>().unwrap(), bytes.len())
    }

    #[test]
    fn array_partitions_cross_as_bin_and_come_back_equal() {
        let part: Vec<Slot<Array1<f32>>> = (0..100)
            .map(|i| {
                if i == 7 {
                    Err(Failed::new(Key::from("s7"), "crop", "no face"))
                } else {
                    Ok(
                        Sample::new(format!("s{i}"), Array1::from_elem(128, i as f32))
                            .with_attr("subject", i % 3),
                    )
                }
            })
            .collect();
        let (back, size) = round_trip(part.clone());
        assert_eq!(back, part);
        // 99 × 512 data bytes plus a .npy header and key per sample: a far
        // cry from the ~5 bytes per number of a MessagePack array.
        let raw = 99 * 512;
        assert!(
            size < raw + 99 * 200,
            "{size} bytes for {raw} bytes of data"
        );
    }

    #[test]
    fn other_types_and_bad_bytes() {
        let part: Vec<Slot<(String, u32)>> = vec![Ok(Sample::new("a", ("x".to_owned(), 3)))];
        assert_eq!(round_trip(part.clone()).0, part);
        let wire = Wire::new(default_codec::<u32>());
        let e = wire.codec().decode(b"\x93\x01\x02\x03").unwrap_err();
        assert!(matches!(e, Error::Wire { .. }), "{e}");
        let wrong: AnyPartition = Box::<Vec<Slot<u8>>>::default();
        assert!(matches!(
            wire.codec().encode(&wrong),
            Err(Error::WrongType { .. })
        ));
    }
}
