//! What an estimator sees: the valid samples of a partition.

use std::sync::Arc;

use bob_pipelines_sample::{Attrs, Key, Meta, Stack, Stacked};
use serde::de::DeserializeOwned;

use crate::{Error, Op, Result};

/// The source of an extra argument that names the sample's datum rather than
/// an attribute, as in bob (`transform_extra_arguments=(("y", "data"),)`). It
/// is the datum the sample carries into the step, also when the step reads an
/// attribute instead (`input_attribute`).
pub const DATA: &str = "data";

/// Sample `i`'s datum as MessagePack, for extra arguments that name [`DATA`].
pub(crate) type EncodeDatum<'a> = dyn Fn(usize) -> std::result::Result<Vec<u8>, String> + Sync + 'a;

/// The context a batch is built in: which step, which operation, how extra
/// arguments map to sample attributes, and how to reach the samples' datums.
pub(crate) struct BatchCtx<'a> {
    pub(crate) step: &'a str,
    pub(crate) op: Op,
    pub(crate) extra: &'a [(String, String)],
    pub(crate) datum: &'a EncodeDatum<'a>,
}

/// The samples an estimator fits on or transforms, failed ones already left out.
///
/// The data are borrowed, never copied: `iter()` and `get(i)` give `&T`, and
/// [`to_array`](Self::to_array) stacks them into one `ndarray` array (bob's
/// `SampleBatch`). Keys and attributes are there too, and *extra arguments*:
/// `batch.extra::<V>("metadata")` reads, for every sample, the attribute the step
/// maps argument `metadata` to (bob's `transform_extra_arguments`).
pub struct Batch<'a, T> {
    data: Vec<&'a T>,
    metas: Vec<&'a Arc<Meta>>,
    ctx: &'a BatchCtx<'a>,
}

impl<T> std::fmt::Debug for Batch<'_, T> {
    // Data need not implement Debug: show what the batch knows of itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("step", &self.ctx.step)
            .field("samples", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl<'a, T> Batch<'a, T> {
    pub(crate) fn new(data: Vec<&'a T>, metas: Vec<&'a Arc<Meta>>, ctx: &'a BatchCtx<'a>) -> Self {
        debug_assert_eq!(data.len(), metas.len());
        Batch { data, metas, ctx }
    }

    /// How many samples.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The datum of sample `i`.
    pub fn get(&self, i: usize) -> Option<&'a T> {
        self.data.get(i).copied()
    }

    /// The data, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &'a T> + '_ {
        self.data.iter().copied()
    }

    /// The data as a slice of references.
    pub fn data(&self) -> &[&'a T] {
        &self.data
    }

    /// The key of sample `i`.
    ///
    /// # Panics
    /// If `i` is out of bounds.
    pub fn key(&self, i: usize) -> &'a Key {
        self.metas[i].key()
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &'a Key> + '_ {
        self.metas.iter().map(|m| m.key())
    }

    /// The attributes of sample `i`.
    ///
    /// # Panics
    /// If `i` is out of bounds.
    pub fn attrs(&self, i: usize) -> &'a Attrs {
        self.metas[i].attrs()
    }

    /// The name of the step this batch runs in.
    pub fn step(&self) -> &str {
        self.ctx.step
    }

    /// Extra argument `argument` for every sample, in order: the value of the
    /// sample attribute the step maps it to, or the sample's datum when it maps
    /// it to [`DATA`] (`"data"`, as in bob).
    ///
    /// # Errors
    /// [`Error::UnmappedExtra`] when the step maps no attribute to `argument`;
    /// [`Error::Extra`] naming the first sample that lacks the attribute or whose
    /// value does not convert to `V`.
    pub fn extra<V: DeserializeOwned>(&self, argument: &str) -> Result<Vec<V>> {
        let attribute = self.attribute_of(argument)?;
        let failed = |source| Error::Extra {
            step: self.ctx.step.to_owned(),
            argument: argument.to_owned(),
            source: Box::new(source),
        };
        if attribute == DATA {
            return (0..self.len())
                .map(|i| {
                    let not_v = |reason: String| {
                        failed(bob_pipelines_sample::Error::AttrType {
                            key: self.key(i).clone(),
                            name: DATA.to_owned(),
                            reason,
                        })
                    };
                    let bytes = (self.ctx.datum)(i).map_err(not_v)?;
                    rmp_serde::from_slice(&bytes).map_err(|e| not_v(e.to_string()))
                })
                .collect();
        }
        self.metas
            .iter()
            .map(|m| m.attr::<V>(attribute).map_err(failed))
            .collect()
    }

    /// Whether the step maps an attribute to extra argument `argument`.
    pub fn has_extra(&self, argument: &str) -> bool {
        self.attribute_of(argument).is_ok()
    }

    fn attribute_of(&self, argument: &str) -> Result<&str> {
        self.ctx
            .extra
            .iter()
            .find(|(arg, _)| arg == argument)
            .map(|(_, attr)| attr.as_str())
            .ok_or_else(|| Error::UnmappedExtra {
                step: self.ctx.step.to_owned(),
                op: self.ctx.op,
                argument: argument.to_owned(),
                mapped: self.ctx.extra.iter().map(|(a, _)| a.clone()).collect(),
            })
    }

    /// The data stacked into one array of shape `(N, item shape...)`.
    ///
    /// # Errors
    /// [`Error::Sample`] wrapping a shape error that names the first odd sample,
    /// or an empty-batch error.
    pub fn to_array(&self) -> Result<Stacked<T>>
    where
        T: Stack,
    {
        Ok(bob_pipelines_sample::stack(
            self.keys().zip(self.data.iter().copied()),
        )?)
    }
}
