//! `Sample`, `DelayedSample` and the metadata they share with their children.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::attrs::{DelayedAttr, Value};
use crate::{Attrs, BoxError, Error, Key, Result};

/// The key and attributes of a sample.
///
/// Held behind an [`Arc`]: a sample made from a parent (a pipeline step's output
/// from its input) shares the parent's `Meta` until one of them changes an
/// attribute, so a million outputs do not copy a million keys and attribute maps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    key: Key,
    attrs: Attrs,
}

impl Meta {
    /// Metadata with a key and these attributes.
    pub fn with_attrs(key: impl Into<Key>, attrs: Attrs) -> Self {
        Meta {
            key: key.into(),
            attrs,
        }
    }

    /// Metadata with a key and no attributes.
    pub fn new(key: impl Into<Key>) -> Self {
        Meta {
            key: key.into(),
            attrs: Attrs::new(),
        }
    }

    /// The key.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The attributes.
    pub fn attrs(&self) -> &Attrs {
        &self.attrs
    }

    /// An attribute converted to `V` (delayed ones are loaded).
    ///
    /// # Errors
    /// [`Error::MissingAttr`] naming the key and the attributes that exist,
    /// [`Error::AttrType`] or [`Error::DelayedAttr`].
    pub fn attr<V: DeserializeOwned>(&self, name: &str) -> Result<V> {
        self.attrs.get_of(&self.key, name)
    }

    /// An attribute's raw value (delayed ones are loaded).
    ///
    /// # Errors
    /// As [`attr`](Self::attr).
    pub fn attr_value(&self, name: &str) -> Result<Value> {
        self.attrs.value_of(&self.key, name)
    }

    /// A copy with every delayed attribute loaded.
    ///
    /// # Errors
    /// [`Error::DelayedAttr`] from the first loader that fails.
    pub fn resolved(&self) -> Result<Meta> {
        Ok(Meta {
            key: self.key.clone(),
            attrs: self.attrs.resolved_of(&self.key)?,
        })
    }
}

/// Accessors and attribute setters shared by every sample-like type, all of which
/// hold their metadata as `meta: Arc<Meta>`.
macro_rules! meta_methods {
    () => {
        /// The key.
        pub fn key(&self) -> &$crate::Key {
            self.meta.key()
        }

        /// The attributes.
        pub fn attrs(&self) -> &$crate::Attrs {
            self.meta.attrs()
        }

        /// The key and attributes together (shared with parent and children).
        pub fn meta(&self) -> &std::sync::Arc<$crate::Meta> {
            &self.meta
        }

        /// An attribute converted to `V` (a delayed one is loaded).
        ///
        /// # Errors
        /// [`Error::MissingAttr`](crate::Error::MissingAttr) naming the key and the
        /// attributes that exist, [`Error::AttrType`](crate::Error::AttrType) or
        /// [`Error::DelayedAttr`](crate::Error::DelayedAttr).
        pub fn attr<V: serde::de::DeserializeOwned>(&self, name: &str) -> $crate::Result<V> {
            self.meta.attr(name)
        }

        /// Mutable attributes; copies them first if they are shared with a parent or child.
        pub fn attrs_mut(&mut self) -> &mut $crate::Attrs {
            std::sync::Arc::make_mut(&mut self.meta).attrs_mut()
        }

        /// Sets a plain attribute (replacing a delayed one of the same name).
        pub fn set_attr(&mut self, name: &str, value: impl Into<$crate::Value>) {
            self.attrs_mut().insert(name, value);
        }

        /// With a plain attribute set.
        #[must_use]
        pub fn with_attr(mut self, name: &str, value: impl Into<$crate::Value>) -> Self {
            self.set_attr(name, value);
            self
        }

        /// With a plain attribute set from any serde value.
        ///
        /// # Errors
        /// [`Error::AttrValue`](crate::Error::AttrValue) when the value cannot be represented.
        pub fn try_with_attr<V: serde::Serialize + ?Sized>(
            mut self,
            name: &str,
            value: &V,
        ) -> $crate::Result<Self> {
            self.attrs_mut().insert_serde(name, value)?;
            Ok(self)
        }

        /// With a delayed attribute: `load` runs each time the attribute is read.
        #[must_use]
        pub fn with_delayed_attr<V, E, F>(mut self, name: &str, load: F) -> Self
        where
            V: serde::Serialize,
            E: Into<$crate::BoxError>,
            F: Fn() -> std::result::Result<V, E> + Send + Sync + 'static,
        {
            self.attrs_mut().insert_delayed(name, load);
            self
        }

        /// With another key (attributes kept).
        #[must_use]
        pub fn with_key(mut self, key: impl Into<$crate::Key>) -> Self {
            std::sync::Arc::make_mut(&mut self.meta).set_key(key.into());
            self
        }
    };
}
pub(crate) use meta_methods;

impl Meta {
    pub(crate) fn attrs_mut(&mut self) -> &mut Attrs {
        &mut self.attrs
    }

    /// Sets attribute `name` (a plain one, replacing any of that name).
    pub fn set_attr(&mut self, name: &str, value: impl Into<Value>) {
        self.attrs.insert(name, value);
    }

    pub(crate) fn set_key(&mut self, key: Key) {
        self.key = key;
    }

    /// Key plus plain and delayed attributes; a name in both is an error.
    pub(crate) fn from_parts(
        key: Key,
        attrs: impl IntoIterator<Item = (String, Value)>,
        delayed: impl IntoIterator<Item = (String, DelayedAttr)>,
    ) -> Result<Meta> {
        let mut meta = Meta::new(key);
        for (name, value) in attrs {
            meta.attrs.insert(&name, value);
        }
        for (name, load) in delayed {
            if meta.attrs.contains(&name) {
                return Err(Error::AttrTwice { name });
            }
            meta.attrs.insert_delayed_attr(&name, load);
        }
        Ok(meta)
    }
}

/// A datum with its key and metadata: what flows through a pipeline.
///
/// The datum is typed (`Sample<Array2<f64>>`); the metadata is a small map of
/// serde values read back typed with [`attr`](Self::attr). A sample made from a
/// parent with [`child`](Self::child) inherits the parent's key and attributes,
/// and attributes it sets afterwards override the parent's without changing it.
///
/// ```
/// use bob_pipelines_sample::Sample;
///
/// let parent = Sample::new("s01/img1", vec![0u8; 4]).with_attr("subject", "s01");
/// let child = parent.child(4usize).with_attr("subject", "anonymous");
/// assert_eq!(child.key(), "s01/img1");
/// assert_eq!(child.attr::<String>("subject")?, "anonymous");
/// assert_eq!(parent.attr::<String>("subject")?, "s01");
/// # Ok::<(), bob_pipelines_sample::Error>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct Sample<T> {
    data: T,
    meta: Arc<Meta>,
}

impl<T> Sample<T> {
    /// A sample with a key, a datum and no attributes.
    pub fn new(key: impl Into<Key>, data: T) -> Self {
        Sample {
            data,
            meta: Arc::new(Meta::new(key)),
        }
    }

    /// A sample of `data` with the given (possibly shared) metadata.
    pub fn from_meta(meta: Arc<Meta>, data: T) -> Self {
        Sample { data, meta }
    }

    /// The datum.
    pub fn data(&self) -> &T {
        &self.data
    }

    /// The datum, mutably.
    pub fn data_mut(&mut self) -> &mut T {
        &mut self.data
    }

    /// The datum, dropping key and attributes.
    pub fn into_data(self) -> T {
        self.data
    }

    /// The datum and the metadata.
    pub fn into_parts(self) -> (T, Arc<Meta>) {
        (self.data, self.meta)
    }

    /// A sample of another datum that inherits this one's key and attributes
    /// (shared, not copied: bob's `Sample(data, parent=self)`).
    pub fn child<U>(&self, data: U) -> Sample<U> {
        Sample {
            data,
            meta: Arc::clone(&self.meta),
        }
    }

    /// Replaces the datum, keeping key and attributes.
    pub fn replace_data<U>(self, data: U) -> Sample<U> {
        Sample {
            data,
            meta: self.meta,
        }
    }

    /// Maps the datum, keeping key and attributes.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Sample<U> {
        Sample {
            data: f(self.data),
            meta: self.meta,
        }
    }

    meta_methods!();
}

impl<T: fmt::Debug> fmt::Debug for Sample<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sample")
            .field("key", self.key())
            .field("attrs", self.attrs())
            .field("data", &self.data)
            .finish()
    }
}

#[derive(Serialize)]
struct SampleRef<'a, T> {
    key: &'a Key,
    attrs: &'a Attrs,
    data: &'a T,
}

#[derive(Deserialize)]
struct SampleOwned<T> {
    key: Key,
    attrs: Attrs,
    data: T,
}

/// Serialized as `{key, attrs, data}`; delayed attributes are loaded first.
impl<T: Serialize> Serialize for Sample<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        SampleRef {
            key: self.key(),
            attrs: self.attrs(),
            data: &self.data,
        }
        .serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sample<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = SampleOwned::deserialize(d)?;
        Ok(Sample {
            data: s.data,
            meta: Arc::new(Meta {
                key: s.key,
                attrs: s.attrs,
            }),
        })
    }
}

type LoadFn<T> = dyn Fn() -> std::result::Result<T, BoxError> + Send + Sync;

/// How a delayed value is produced: each time, or once and kept.
pub(crate) enum Loader<T> {
    Fresh(Arc<LoadFn<T>>),
    Cached {
        load: Arc<LoadFn<T>>,
        cell: Arc<OnceLock<T>>,
        clone: fn(&T) -> T,
    },
}

impl<T> Clone for Loader<T> {
    fn clone(&self) -> Self {
        match self {
            Loader::Fresh(l) => Loader::Fresh(l.clone()),
            Loader::Cached { load, cell, clone } => Loader::Cached {
                load: load.clone(),
                cell: cell.clone(),
                clone: *clone,
            },
        }
    }
}

impl<T> Loader<T> {
    pub(crate) fn new<E, F>(load: F) -> Self
    where
        E: Into<BoxError>,
        F: Fn() -> std::result::Result<T, E> + Send + Sync + 'static,
    {
        Loader::Fresh(Arc::new(move || load().map_err(Into::into)))
    }

    pub(crate) fn cached(self) -> Self
    where
        T: Clone,
    {
        match self {
            Loader::Fresh(load) => Loader::Cached {
                load,
                cell: Arc::new(OnceLock::new()),
                clone: T::clone,
            },
            cached => cached,
        }
    }

    pub(crate) fn is_cached(&self) -> bool {
        matches!(self, Loader::Cached { .. })
    }

    pub(crate) fn load(&self, key: &Key) -> Result<T> {
        let run = |load: &LoadFn<T>| {
            load().map_err(|source| Error::Load {
                key: key.clone(),
                source,
            })
        };
        match self {
            Loader::Fresh(load) => run(load.as_ref()),
            Loader::Cached { load, cell, clone } => {
                if let Some(v) = cell.get() {
                    return Ok(clone(v));
                }
                let v = run(load.as_ref())?;
                // Two threads may race to load: either value is the same datum.
                Ok(clone(cell.get_or_init(|| v)))
            }
        }
    }
}

/// A sample whose datum is loaded on access: bob's `DelayedSample`.
///
/// The loader runs each time the data is asked for, so millions of delayed
/// samples cost only their metadata until a pipeline reaches them; a
/// [`cached`](Self::cached) sample keeps the datum after its first load.
///
/// ```
/// use bob_pipelines_sample::DelayedSample;
///
/// let s = DelayedSample::new("img1", || Ok::<_, std::io::Error>(vec![1.0f32, 2.0]))
///     .with_attr("subject", "s01")
///     .with_delayed_attr("annotations", || Ok::<_, std::io::Error>([10, 12]));
/// let loaded = s.load()?;              // a plain Sample<Vec<f32>>
/// assert_eq!(loaded.data(), &[1.0, 2.0]);
/// assert_eq!(loaded.attr::<[u32; 2]>("annotations")?, [10, 12]);
/// # Ok::<(), bob_pipelines_sample::Error>(())
/// ```
pub struct DelayedSample<T> {
    loader: Loader<T>,
    meta: Arc<Meta>,
}

impl<T> Clone for DelayedSample<T> {
    fn clone(&self) -> Self {
        DelayedSample {
            loader: self.loader.clone(),
            meta: self.meta.clone(),
        }
    }
}

impl<T> DelayedSample<T> {
    /// A delayed sample whose datum `load` produces.
    pub fn new<E, F>(key: impl Into<Key>, load: F) -> Self
    where
        E: Into<BoxError>,
        F: Fn() -> std::result::Result<T, E> + Send + Sync + 'static,
    {
        DelayedSample {
            loader: Loader::new(load),
            meta: Arc::new(Meta::new(key)),
        }
    }

    /// A delayed sample with plain and delayed attributes given at once, as bob's
    /// `DelayedSample(load, delayed_attributes=..., **kwargs)`.
    ///
    /// # Errors
    /// [`Error::AttrTwice`] when a name is both plain and delayed.
    pub fn from_parts<E, F>(
        key: impl Into<Key>,
        load: F,
        attrs: impl IntoIterator<Item = (String, Value)>,
        delayed: impl IntoIterator<Item = (String, DelayedAttr)>,
    ) -> Result<Self>
    where
        E: Into<BoxError>,
        F: Fn() -> std::result::Result<T, E> + Send + Sync + 'static,
    {
        Ok(DelayedSample {
            loader: Loader::new(load),
            meta: Arc::new(Meta::from_parts(key.into(), attrs, delayed)?),
        })
    }

    /// A delayed sample whose loader derives from a parent's metadata.
    pub fn from_meta<E, F>(meta: Arc<Meta>, load: F) -> Self
    where
        E: Into<BoxError>,
        F: Fn() -> std::result::Result<T, E> + Send + Sync + 'static,
    {
        DelayedSample {
            loader: Loader::new(load),
            meta,
        }
    }

    /// Keeps the datum in memory after its first load.
    #[must_use]
    pub fn cached(mut self) -> Self
    where
        T: Clone,
    {
        self.loader = self.loader.cached();
        self
    }

    /// Whether the datum is kept after its first load.
    pub fn is_cached(&self) -> bool {
        self.loader.is_cached()
    }

    /// Loads the datum.
    ///
    /// # Errors
    /// [`Error::Load`] naming the key, with the loader's error.
    pub fn load_data(&self) -> Result<T> {
        self.loader.load(self.meta.key())
    }

    /// Loads the datum into a plain [`Sample`] with the same (shared) metadata;
    /// delayed attributes stay delayed.
    ///
    /// # Errors
    /// As [`load_data`](Self::load_data).
    pub fn load(&self) -> Result<Sample<T>> {
        Ok(Sample {
            data: self.load_data()?,
            meta: self.meta.clone(),
        })
    }

    meta_methods!();
}

impl<T> fmt::Debug for DelayedSample<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DelayedSample")
            .field("key", self.key())
            .field("attrs", self.attrs())
            .field("cached", &self.is_cached())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn child_shares_metadata_until_it_overrides() {
        let parent = Sample::new("k", 1u8).with_attr("a", 1).with_attr("b", 2);
        let child = parent.child("x");
        assert!(Arc::ptr_eq(parent.meta(), child.meta()));
        let child = child.with_attr("b", 3).with_attr("c", 4);
        assert!(!Arc::ptr_eq(parent.meta(), child.meta()));
        assert_eq!(child.attr::<i32>("a").unwrap(), 1);
        assert_eq!(child.attr::<i32>("b").unwrap(), 3);
        assert_eq!(parent.attr::<i32>("b").unwrap(), 2);
        assert!(parent.attr::<i32>("c").is_err());
    }

    #[test]
    fn delayed_sample_loads_each_time_unless_cached() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let s = DelayedSample::new("k", move || {
            c.fetch_add(1, Ordering::SeqCst);
            Ok::<_, BoxError>(vec![1u8, 2])
        });
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        s.load_data().unwrap();
        s.load_data().unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let cached = s.cached();
        cached.load_data().unwrap();
        cached.load().unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn plain_and_delayed_attribute_of_one_name_is_an_error() {
        let e = DelayedSample::from_parts(
            "k",
            || Ok::<_, BoxError>(0),
            [("a".to_owned(), Value::from(1))],
            [("a".to_owned(), DelayedAttr::new(|| Ok::<_, BoxError>(2)))],
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::AttrTwice { ref name } if name == "a"),
            "{e}"
        );
    }

    #[test]
    fn setting_a_delayed_attribute_makes_it_plain() {
        let s = DelayedSample::new("k", || Ok::<_, BoxError>(0))
            .with_delayed_attr("a", || Err::<u8, _>(std::io::Error::other("unreadable")));
        assert!(s.attr::<u8>("a").is_err());
        let s = s.with_attr("a", 7);
        assert!(!s.attrs().is_delayed("a"));
        assert_eq!(s.attr::<u8>("a").unwrap(), 7);
    }

    #[test]
    fn load_failure_names_the_key() {
        let s = DelayedSample::<u8>::new("subj/7", || Err(std::io::Error::other("no such file")));
        let e = s.load().unwrap_err().to_string();
        assert!(e.contains("subj/7") && e.contains("no such file"), "{e}");
    }

    #[test]
    fn sample_serde_round_trip() {
        let s = Sample::new("k", vec![1.0f64, 2.0])
            .with_attr("m", 1)
            .with_delayed_attr("d", || Ok::<_, BoxError>("lazy"));
        let v = rmpv::ext::to_value(&s).unwrap();
        let back: Sample<Vec<f64>> = rmpv::ext::from_value(v).unwrap();
        assert_eq!(back.key(), "k");
        assert_eq!(back.data(), &[1.0, 2.0]);
        assert_eq!(back.attr::<String>("d").unwrap(), "lazy");
    }
}
