//! Data with its type erased: partitions, models, failed samples, and the one
//! handle per datum type that turns them into bytes and back.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use bob_pipelines_checkpoint::{Codec, CodecError};
use bob_pipelines_sample::{Attrs, Key, Meta, Sample};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A partition of samples with its data type erased: a `Vec<Slot<T>>`.
pub type AnyPartition = Box<dyn Any + Send>;
/// A fitted transformer with its type erased.
pub type Model = Arc<dyn Any + Send + Sync>;
/// One datum with its type erased.
pub type AnyDatum = Box<dyn Any + Send>;
/// One sample of an erased partition: its metadata and datum, or why it failed.
pub type AnySlot = std::result::Result<(Arc<Meta>, AnyDatum), Failed>;

/// A sample that failed: its key, the step where it failed and why.
///
/// One pointer wide, so that a slot of a million-sample output costs no more
/// than the sample it stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failed(Box<FailedInner>);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FailedInner {
    key: Key,
    step: String,
    reason: String,
}

impl Failed {
    /// A failure of sample `key` at `step`.
    pub fn new(key: Key, step: impl Into<String>, reason: impl Into<String>) -> Self {
        Failed(Box::new(FailedInner {
            key,
            step: step.into(),
            reason: reason.into(),
        }))
    }

    /// The sample's key.
    pub fn key(&self) -> &Key {
        &self.0.key
    }

    /// The step that failed it (`load` when its data could not be loaded).
    pub fn step(&self) -> &str {
        &self.0.step
    }

    /// Why.
    pub fn reason(&self) -> &str {
        &self.0.reason
    }
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sample {:?} failed at step `{}`: {}",
            self.key(),
            self.step(),
            self.reason()
        )
    }
}

/// One position of a pipeline's output: the sample, or why it failed.
pub type Slot<T> = std::result::Result<Sample<T>, Failed>;

/// Valid samples and failures of one step on one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Valid samples the step transformed.
    pub samples: usize,
    /// Samples that failed at this step.
    pub failed: usize,
}

/// One sample of an erased partition, seen without its datum.
#[derive(Debug, Clone, Copy)]
pub enum Entry<'p> {
    /// A valid sample: its key and attributes.
    Sample(&'p Arc<Meta>),
    /// A failed one.
    Failed(&'p Failed),
}

impl Entry<'_> {
    /// The sample's key.
    pub fn key(&self) -> &Key {
        match self {
            Entry::Sample(m) => m.key(),
            Entry::Failed(f) => f.key(),
        }
    }
}

/// Everything that is done to data of one type without knowing the type,
/// erased once where the type is still known (a pipeline's `then`, for each
/// step's output and for the pipeline's input): the checkpoint file of one
/// datum, and the bytes of a whole partition on the wire. Checkpoint IO and
/// the wire are plain code over these bytes.
pub trait DataCodec: Send + Sync {
    /// The datum's type name.
    fn type_name(&self) -> &'static str;

    /// The extension of one datum's file, with its dot (`.npy`).
    fn extension(&self) -> &'static str;

    /// The samples of a partition, without their data.
    ///
    /// # Errors
    /// [`Error::Bug`] for a partition of another type.
    fn entries<'p>(&self, part: &'p AnyPartition) -> Result<Vec<Entry<'p>>>;

    /// How many samples a partition has (failed ones included).
    ///
    /// # Errors
    /// [`Error::Bug`] for a partition of another type.
    fn len(&self, part: &AnyPartition) -> Result<usize> {
        Ok(self.entries(part)?.len())
    }

    /// The keys of a partition's first `limit` samples (failed ones
    /// included): what names it in messages.
    ///
    /// # Errors
    /// [`Error::Bug`] for a partition of another type.
    fn first_keys(&self, part: &AnyPartition, limit: usize) -> Result<Vec<Key>>;

    /// Appends the datum of the `i`-th sample (a valid one) to `out`.
    ///
    /// # Errors
    /// [`Error::Codec`] when the datum does not encode; [`Error::Bug`] for a
    /// partition of another type or an `i` that is no valid sample.
    fn encode_datum(&self, part: &AnyPartition, i: usize, out: &mut Vec<u8>) -> Result<()>;

    /// A datum from the bytes of one file.
    ///
    /// # Errors
    /// The codec's, when the bytes are not a valid datum.
    fn decode_datum(&self, bytes: &[u8]) -> std::result::Result<AnyDatum, CodecError>;

    /// A partition from its samples, in order.
    ///
    /// # Errors
    /// [`Error::Bug`] for a datum of another type.
    fn build(&self, slots: Vec<AnySlot>) -> Result<AnyPartition>;

    /// A partition's samples, in order (the inverse of [`build`](Self::build)).
    ///
    /// # Errors
    /// [`Error::Bug`] for a partition of another type.
    fn split(&self, part: AnyPartition) -> Result<Vec<AnySlot>>;

    /// A partition's bytes on the wire: per sample its key, its attributes
    /// (delayed ones loaded) and its datum's file bytes (`.npy` for arrays).
    ///
    /// # Errors
    /// [`Error::Codec`] naming the sample whose datum does not encode;
    /// [`Error::Bug`] for a partition of another type.
    fn encode(&self, part: &AnyPartition) -> Result<Vec<u8>>;

    /// A partition from its bytes on the wire.
    ///
    /// # Errors
    /// [`Error::Partition`] for bytes that are not such a partition;
    /// [`Error::Codec`] naming a sample whose datum does not decode.
    fn decode(&self, bytes: &[u8]) -> Result<AnyPartition>;
}

impl fmt::Debug for dyn DataCodec + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataCodec({}, {})", self.type_name(), self.extension())
    }
}

/// The handle of datum type `T`, whose files `codec` writes.
pub fn data_codec<T: Send + Sync + 'static>(codec: Arc<dyn Codec<T>>) -> Arc<dyn DataCodec> {
    Arc::new(Typed { codec })
}

struct Typed<T> {
    codec: Arc<dyn Codec<T>>,
}

/// A partition on the wire, in columns: the valid samples' keys (one
/// after the other, and their lengths), their attributes (each sample's
/// compact pairs, `Attrs::to_pairs`, one after the other, and their
/// lengths), and their data as one column of the codec's (one header and
/// one buffer for same-shaped arrays); failed samples with their
/// positions. Lengths are little-endian `u32`s in a byte string: a
/// partition's keys are read with one UTF-8 check and no MessagePack
/// string or integer per sample.
#[derive(Serialize)]
struct ColumnsRef<'a> {
    len: usize,
    #[serde(with = "bob_pipelines_sample::bin")]
    keys: Vec<u8>,
    #[serde(with = "bob_pipelines_sample::bin")]
    key_lens: Vec<u8>,
    #[serde(with = "bob_pipelines_sample::bin")]
    attrs: Vec<u8>,
    #[serde(with = "bob_pipelines_sample::bin")]
    attr_lens: Vec<u8>,
    failed: Vec<(usize, &'a Failed)>,
    #[serde(with = "bob_pipelines_sample::bin")]
    data: Vec<u8>,
}

/// [`ColumnsRef`] read back: the byte columns are read in place.
#[derive(Deserialize)]
struct ColumnsIn<'a> {
    len: usize,
    keys: &'a [u8],
    key_lens: &'a [u8],
    attrs: &'a [u8],
    attr_lens: &'a [u8],
    failed: Vec<(usize, Failed)>,
    data: &'a [u8],
}

/// Appends `len` to a column of lengths.
fn put_len(lens: &mut Vec<u8>, len: usize) -> std::result::Result<(), String> {
    let len = u32::try_from(len).map_err(|_| format!("{len} bytes is over 4 GiB"))?;
    lens.extend_from_slice(&len.to_le_bytes());
    Ok(())
}

/// The ranges of a column of `total` bytes that a column of `n` lengths
/// cuts, or why it cannot.
fn cut(
    total: usize,
    lens: &[u8],
    n: usize,
) -> std::result::Result<impl Iterator<Item = std::ops::Range<usize>> + '_, String> {
    if n.checked_mul(4) != Some(lens.len()) {
        return Err(format!("{} bytes of lengths for {n} samples", lens.len()));
    }
    let lens = lens
        .chunks_exact(4)
        .map(|l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize);
    let sum: u64 = lens.clone().map(|l| l as u64).sum();
    if sum != total as u64 {
        return Err(format!("lengths of {sum} bytes for {total} bytes"));
    }
    let mut at = 0;
    Ok(lens.map(move |l| {
        at += l;
        at - l..at
    }))
}

impl<T: Send + Sync + 'static> Typed<T> {
    fn slots<'p>(&self, part: &'p AnyPartition) -> Result<&'p Vec<Slot<T>>> {
        part.downcast_ref::<Vec<Slot<T>>>()
            .ok_or_else(|| self.wrong_partition())
    }

    fn wrong_partition(&self) -> Error {
        Error::bug(format!(
            "a partition that is not a {} reached its codec",
            std::any::type_name::<Vec<Slot<T>>>()
        ))
    }

    fn partition_error(reason: impl fmt::Display) -> Error {
        Error::Partition {
            expected: std::any::type_name::<Vec<Slot<T>>>(),
            reason: reason.to_string(),
        }
    }
}

impl<T: Send + Sync + 'static> DataCodec for Typed<T> {
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }

    fn extension(&self) -> &'static str {
        self.codec.extension()
    }

    fn entries<'p>(&self, part: &'p AnyPartition) -> Result<Vec<Entry<'p>>> {
        Ok(self
            .slots(part)?
            .iter()
            .map(|s| match s {
                Ok(s) => Entry::Sample(s.meta()),
                Err(f) => Entry::Failed(f),
            })
            .collect())
    }

    fn len(&self, part: &AnyPartition) -> Result<usize> {
        Ok(self.slots(part)?.len())
    }

    fn first_keys(&self, part: &AnyPartition, limit: usize) -> Result<Vec<Key>> {
        Ok(self
            .slots(part)?
            .iter()
            .take(limit)
            .map(|s| match s {
                Ok(s) => s.key().clone(),
                Err(f) => f.key().clone(),
            })
            .collect())
    }

    fn encode_datum(&self, part: &AnyPartition, i: usize, out: &mut Vec<u8>) -> Result<()> {
        match self.slots(part)?.get(i) {
            Some(Ok(s)) => self
                .codec
                .encode(s.data(), out)
                .map_err(|source| Error::Codec {
                    key: s.key().clone(),
                    source,
                }),
            _ => Err(Error::bug(format!(
                "sample {i} of a partition is not a valid one"
            ))),
        }
    }

    fn decode_datum(&self, bytes: &[u8]) -> std::result::Result<AnyDatum, CodecError> {
        Ok(Box::new(self.codec.decode(bytes)?))
    }

    fn build(&self, slots: Vec<AnySlot>) -> Result<AnyPartition> {
        let part = slots
            .into_iter()
            .map(|s| match s {
                Ok((meta, datum)) => datum
                    .downcast::<T>()
                    .map(|d| Ok(Sample::from_meta(meta, *d)))
                    .map_err(|_| {
                        Error::bug(format!(
                            "a datum that is not a {} joined its partition",
                            std::any::type_name::<T>()
                        ))
                    }),
                Err(f) => Ok(Err(f)),
            })
            .collect::<Result<Vec<Slot<T>>>>()?;
        Ok(Box::new(part))
    }

    fn split(&self, part: AnyPartition) -> Result<Vec<AnySlot>> {
        let part = part
            .downcast::<Vec<Slot<T>>>()
            .map_err(|_| self.wrong_partition())?;
        Ok(part
            .into_iter()
            .map(|s| {
                s.map(|s| {
                    let (data, meta) = s.into_parts();
                    (meta, Box::new(data) as AnyDatum)
                })
            })
            .collect())
    }

    fn encode(&self, part: &AnyPartition) -> Result<Vec<u8>> {
        let part = self.slots(part)?;
        let mut columns = ColumnsRef {
            len: part.len(),
            keys: Vec::new(),
            key_lens: Vec::with_capacity(4 * part.len()),
            attrs: Vec::new(),
            attr_lens: Vec::with_capacity(4 * part.len()),
            failed: Vec::new(),
            data: Vec::new(),
        };
        let mut values = Vec::with_capacity(part.len());
        let mut keys = Vec::with_capacity(part.len());
        for (i, s) in part.iter().enumerate() {
            match s {
                Ok(s) => {
                    let too_big =
                        |e: String| Self::partition_error(format!("sample {:?}: {e}", s.key()));
                    let pairs = s.attrs().to_pairs().map_err(|e| too_big(e.to_string()))?;
                    put_len(&mut columns.key_lens, s.key().as_str().len()).map_err(too_big)?;
                    put_len(&mut columns.attr_lens, pairs.len()).map_err(too_big)?;
                    columns.keys.extend_from_slice(s.key().as_str().as_bytes());
                    columns.attrs.extend_from_slice(&pairs);
                    keys.push(s.key());
                    values.push(s.data());
                }
                Err(f) => columns.failed.push((i, f)),
            }
        }
        if let Err(source) = self.codec.encode_column(&values, &mut columns.data) {
            // Name the sample: the first whose datum does not encode alone.
            let mut scratch = Vec::new();
            let culprit = values
                .iter()
                .position(|v| self.codec.encode(v, &mut scratch).is_err())
                .unwrap_or(0);
            return Err(Error::Codec {
                key: keys
                    .get(culprit)
                    .map_or_else(|| Key::from(""), |k| (*k).clone()),
                source,
            });
        }
        rmp_serde::to_vec(&columns).map_err(Self::partition_error)
    }

    fn decode(&self, bytes: &[u8]) -> Result<AnyPartition> {
        let c: ColumnsIn<'_> = rmp_serde::from_slice(bytes).map_err(Self::partition_error)?;
        let valid = c.len.checked_sub(c.failed.len()).ok_or_else(|| {
            Self::partition_error(format!("{} samples, {} failed", c.len, c.failed.len()))
        })?;
        let keys = std::str::from_utf8(c.keys)
            .map_err(|e| Self::partition_error(format!("its keys: {e}")))?;
        let key_ranges = cut(c.keys.len(), c.key_lens, valid)
            .map_err(|e| Self::partition_error(format!("its keys: {e}")))?;
        let attr_ranges = cut(c.attrs.len(), c.attr_lens, valid)
            .map_err(|e| Self::partition_error(format!("its attributes: {e}")))?;
        let values = self
            .codec
            .decode_column(c.data, valid)
            .map_err(|e| Self::partition_error(format!("its data column: {e}")))?;
        // Attributes the same as the sample before's are that sample's
        // again, not read a second time: samples of a list often share
        // theirs.
        let mut before: Option<(&[u8], Attrs)> = None;
        // One pass: each sample is made where it stays.
        let mut samples = key_ranges
            .zip(attr_ranges)
            .zip(values)
            .map(|((key, pairs), value)| {
                // A piece of valid UTF-8, unless it cuts a character.
                let key = keys.get(key).ok_or_else(|| {
                    Self::partition_error("a key's length cuts a character".to_owned())
                })?;
                let pairs = &c.attrs[pairs];
                let attrs = match &before {
                    Some((same, attrs)) if *same == pairs => attrs.clone(),
                    _ => {
                        let attrs = Attrs::from_pairs(pairs)
                            .map_err(|e| Self::partition_error(e.to_string()))?;
                        before = Some((pairs, attrs.clone()));
                        attrs
                    }
                };
                Ok(Sample::from_meta(
                    Arc::new(Meta::with_attrs(key, attrs)),
                    value,
                ))
            });
        let mut failed = c.failed.into_iter().peekable();
        let mut part: Vec<Slot<T>> = Vec::with_capacity(c.len);
        for i in 0..c.len {
            match failed.next_if(|(at, _)| *at == i) {
                Some((_, f)) => part.push(Err(f)),
                None => part.push(Ok(samples.next().ok_or_else(|| {
                    Self::partition_error("a failed sample's position is out of order")
                })??)),
            }
        }
        if failed.next().is_some() {
            return Err(Self::partition_error(
                "a failed sample's position is out of range",
            ));
        }
        Ok(Box::new(part))
    }
}

/// How the fitted model of one step becomes bytes and back (MessagePack,
/// named fields): what a model file holds and what a worker receives.
pub trait ModelCodec: Send + Sync {
    /// The model's bytes.
    ///
    /// # Errors
    /// [`Error::Model`] naming `step`.
    fn encode(&self, step: &str, model: &Model) -> Result<Vec<u8>>;

    /// A model from its bytes.
    ///
    /// # Errors
    /// [`Error::Model`] naming `step`.
    fn decode(&self, step: &str, bytes: &[u8]) -> Result<Model>;
}

/// The model codec of fitted type `M`.
pub fn model_codec<M>() -> Arc<dyn ModelCodec>
where
    M: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    Arc::new(TypedModel::<M>(std::marker::PhantomData))
}

struct TypedModel<M>(std::marker::PhantomData<fn() -> M>);

impl<M> ModelCodec for TypedModel<M>
where
    M: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    fn encode(&self, step: &str, model: &Model) -> Result<Vec<u8>> {
        let model = model.downcast_ref::<M>().ok_or_else(|| {
            Error::bug(format!(
                "the model of step `{step}` is not a {}",
                std::any::type_name::<M>()
            ))
        })?;
        rmp_serde::to_vec_named(model).map_err(|e| Error::Model {
            step: step.to_owned(),
            action: "encoded",
            reason: e.to_string(),
        })
    }

    fn decode(&self, step: &str, bytes: &[u8]) -> Result<Model> {
        let m: M = rmp_serde::from_slice(bytes).map_err(|e| Error::Model {
            step: step.to_owned(),
            action: "decoded",
            reason: e.to_string(),
        })?;
        Ok(Arc::new(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bob_pipelines_checkpoint::default_codec;
    use ndarray::Array1;

    fn round_trip<T: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static>(
        part: Vec<Slot<T>>,
    ) -> (Vec<Slot<T>>, usize) {
        let data = data_codec(default_codec::<T>());
        let bytes = data.encode(&(Box::new(part) as AnyPartition)).unwrap();
        let back = data.decode(&bytes).unwrap();
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
        // Same-shaped arrays: one .npy header and one buffer for the whole
        // partition, then a key and attributes per sample; a far cry from a
        // header per sample, or the ~5 bytes per number of MessagePack.
        let raw = 99 * 512;
        assert!(size < raw + 99 * 32, "{size} bytes for {raw} bytes of data");
    }

    #[test]
    fn attributes_shared_by_samples_in_a_row_come_back_as_each_had_them() {
        // Runs of the same attributes, short and long (shared, past the
        // inline size), none, a failure inside a run, and a change back.
        let long = "a path longer than twenty-two bytes/image.png";
        let attrs: [&[(&str, &str)]; 10] = [
            &[("subject", "a")],
            &[("subject", "a")],
            &[("subject", "a")],
            &[("subject", "b")],
            &[("subject", "a")],
            &[],
            &[("path", long)],
            &[("path", long)],
            &[("path", long), ("subject", "a")],
            &[("subject", "a")],
        ];
        let mut part: Vec<Slot<u32>> = attrs
            .iter()
            .enumerate()
            .map(|(i, pairs)| {
                let mut s = Sample::new(format!("s{i}"), i as u32);
                for (name, value) in *pairs {
                    s = s.with_attr(name, *value);
                }
                Ok(s)
            })
            .collect();
        part.insert(2, Err(Failed::new(Key::from("gone"), "crop", "no face")));
        let (back, _) = round_trip(part.clone());
        assert_eq!(back, part);
    }

    #[test]
    fn columns_keep_every_shape_and_failures_at_their_places() {
        use ndarray::Array2;
        // Ragged arrays go one by one; failures first, last and in a row.
        let part: Vec<Slot<Array2<f64>>> = (0..9)
            .map(|i| {
                if [0, 4, 5, 8].contains(&i) {
                    Err(Failed::new(Key::from(format!("k{i}")), "step", "why"))
                } else {
                    Ok(Sample::new(
                        format!("k{i}"),
                        Array2::from_elem((i, 2), i as f64),
                    ))
                }
            })
            .collect();
        assert_eq!(round_trip(part.clone()).0, part);
        // Arrays with no element, a transposed (non-standard) view's owner,
        // nothing valid at all, and nothing at all.
        let empty: Vec<Slot<Array2<f64>>> = (0..3)
            .map(|i| Ok(Sample::new(format!("e{i}"), Array2::zeros((0, 4)))))
            .collect();
        assert_eq!(round_trip(empty.clone()).0, empty);
        let t = Array2::from_shape_fn((3, 2), |(i, j)| (i * 2 + j) as f64).reversed_axes();
        let transposed: Vec<Slot<Array2<f64>>> =
            vec![Ok(Sample::new("t", t.clone())), Ok(Sample::new("u", t))];
        assert_eq!(round_trip(transposed.clone()).0, transposed);
        let all_failed: Vec<Slot<Array2<f64>>> = vec![Err(Failed::new(Key::from("f"), "s", "r"))];
        assert_eq!(round_trip(all_failed.clone()).0, all_failed);
        assert!(round_trip(Vec::<Slot<Array2<f64>>>::new()).0.is_empty());
    }

    #[test]
    fn a_damaged_column_is_a_partition_error_not_a_panic() {
        use ndarray::Array1;
        let data = data_codec(default_codec::<Array1<f32>>());
        let part: Vec<Slot<Array1<f32>>> = (0..4)
            .map(|i| Ok(Sample::new(format!("s{i}"), Array1::from_elem(8, 1.0))))
            .collect();
        let bytes = data.encode(&(Box::new(part) as AnyPartition)).unwrap();
        // Every truncation, and a flipped byte anywhere, is refused or decodes
        // to a partition of the right length: never a panic.
        for cut in 0..bytes.len() {
            if let Ok(p) = data.decode(&bytes[..cut]) {
                panic!(
                    "{cut} bytes decoded: {:?}",
                    p.downcast_ref::<Vec<Slot<Array1<f32>>>>()
                );
            }
        }
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x5a;
            if let Ok(p) = data.decode(&bad) {
                let p = p.downcast::<Vec<Slot<Array1<f32>>>>().unwrap();
                assert_eq!(p.len(), 4, "byte {at}");
            }
        }
    }

    #[test]
    fn keys_of_any_script_come_back_and_a_length_inside_a_character_is_refused() {
        let part: Vec<Slot<u32>> = ["é-1", "顔/2", "", "plain"]
            .iter()
            .zip(0..)
            .map(|(k, i)| Ok(Sample::new(*k, i)))
            .collect();
        assert_eq!(round_trip(part.clone()).0, part);
        // "é" is two bytes: lengths of one and one cut it in half.
        let data = data_codec(default_codec::<u32>());
        let mut column = Vec::new();
        default_codec::<u32>()
            .encode_column(&[&1, &2], &mut column)
            .unwrap();
        let columns = ColumnsRef {
            len: 2,
            keys: "é".as_bytes().to_vec(),
            key_lens: [1u32, 1].iter().flat_map(|l| l.to_le_bytes()).collect(),
            attrs: Vec::new(),
            attr_lens: vec![0; 8],
            failed: Vec::new(),
            data: column,
        };
        let e = data
            .decode(&rmp_serde::to_vec(&columns).unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("cuts a character"), "{e}");
    }

    #[test]
    fn other_types_and_bad_bytes() {
        let part: Vec<Slot<(String, u32)>> = vec![Ok(Sample::new("a", ("x".to_owned(), 3)))];
        assert_eq!(round_trip(part.clone()).0, part);
        let data = data_codec(default_codec::<u32>());
        let e = data.decode(b"\x93\x01\x02\x03").unwrap_err();
        assert!(matches!(e, Error::Partition { .. }), "{e}");
        let wrong: AnyPartition = Box::<Vec<Slot<u8>>>::default();
        assert!(matches!(data.encode(&wrong), Err(Error::Bug { .. })));
    }

    #[test]
    fn a_partition_splits_into_erased_samples_and_builds_back() {
        let part: Vec<Slot<u32>> = vec![
            Ok(Sample::new("a", 1)),
            Err(Failed::new(Key::from("b"), "x", "no")),
            Ok(Sample::new("c", 3)),
        ];
        let data = data_codec(default_codec::<u32>());
        let erased: AnyPartition = Box::new(part.clone());
        let keys = data.first_keys(&erased, 2).unwrap();
        assert_eq!(keys, [Key::from("a"), Key::from("b")]);
        let mut buf = Vec::new();
        data.encode_datum(&erased, 2, &mut buf).unwrap();
        let three = data.decode_datum(&buf).unwrap();
        assert_eq!(*three.downcast::<u32>().unwrap(), 3);
        let back = data.build(data.split(erased).unwrap()).unwrap();
        assert_eq!(*back.downcast::<Vec<Slot<u32>>>().unwrap(), part);
    }
}
