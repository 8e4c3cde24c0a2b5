//! Sample metadata: an ordered map of attribute names to serde values, some of
//! which may be loaded on access.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{BoxError, Error, Key, Result};

/// An attribute value: MessagePack's data model, the project's wire format.
pub use rmpv::Value;

/// Converts any serde value into an attribute [`Value`].
///
/// # Errors
/// [`Error::AttrValue`] when the value's `Serialize` implementation fails.
pub fn to_value<V: Serialize + ?Sized>(name: &str, value: &V) -> Result<Value> {
    rmpv::ext::to_value(value).map_err(|e| Error::AttrValue {
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

type LoadFn = dyn Fn() -> std::result::Result<Value, BoxError> + Send + Sync;

/// The loader of a *delayed attribute*: called each time the attribute is read.
///
/// bob's `DelayedSample(..., delayed_attributes={"annotations": load})`: heavy
/// metadata (annotations, a second modality) stays on disk until a step asks.
#[derive(Clone)]
pub struct DelayedAttr(Arc<LoadFn>);

impl DelayedAttr {
    /// A delayed attribute whose value `load` computes (any serde type).
    pub fn new<V, E, F>(load: F) -> Self
    where
        V: Serialize,
        E: Into<BoxError>,
        F: Fn() -> std::result::Result<V, E> + Send + Sync + 'static,
    {
        DelayedAttr(Arc::new(move || {
            let v = load().map_err(Into::into)?;
            rmpv::ext::to_value(v).map_err(|e| Box::new(e) as BoxError)
        }))
    }

    fn load(&self) -> std::result::Result<Value, BoxError> {
        (self.0)()
    }
}

impl fmt::Debug for DelayedAttr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<delayed>")
    }
}

#[derive(Clone, Debug)]
enum Slot {
    Plain(Value),
    Delayed(DelayedAttr),
}

/// The attributes (metadata) of a sample, in insertion order.
///
/// Values are [`Value`]s (MessagePack's model), read back typed with
/// [`get`](Self::get). An attribute may be *delayed*: its loader runs when it is
/// read, and setting it turns it into a plain attribute.
///
/// ```
/// use bob_pipelines_sample::Attrs;
///
/// let mut attrs = Attrs::new();
/// attrs.insert("subject", "s01");
/// attrs.insert("age", 31);
/// attrs.insert_delayed("annotations", || Ok::<_, std::io::Error>(vec![10, 20]));
/// assert_eq!(attrs.get::<u32>("age")?, 31);
/// assert_eq!(attrs.get::<Vec<u8>>("annotations")?, vec![10, 20]);
/// assert!(attrs.get::<u32>("height").is_err());
/// # Ok::<(), bob_pipelines_sample::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Attrs {
    // A sample has a handful of attributes: a vector beats a map in size and speed.
    entries: Vec<(Key, Slot)>,
}

impl Attrs {
    /// No attributes.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many attributes (plain and delayed).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether an attribute of that name exists (plain or delayed).
    pub fn contains(&self, name: &str) -> bool {
        self.position(name).is_some()
    }

    /// Whether the attribute exists and is delayed.
    pub fn is_delayed(&self, name: &str) -> bool {
        self.position(name)
            .is_some_and(|i| matches!(self.entries[i].1, Slot::Delayed(_)))
    }

    /// The attribute names, in insertion order.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// Sets a plain attribute, replacing a plain or delayed one of the same name.
    pub fn insert(&mut self, name: &str, value: impl Into<Value>) {
        self.put(name, Slot::Plain(value.into()));
    }

    /// Sets a plain attribute from any serde value.
    ///
    /// # Errors
    /// [`Error::AttrValue`] when the value cannot be represented.
    pub fn insert_serde<V: Serialize + ?Sized>(&mut self, name: &str, value: &V) -> Result<()> {
        let v = to_value(name, value)?;
        self.put(name, Slot::Plain(v));
        Ok(())
    }

    /// Sets a delayed attribute: `load` runs each time the attribute is read.
    pub fn insert_delayed<V, E, F>(&mut self, name: &str, load: F)
    where
        V: Serialize,
        E: Into<BoxError>,
        F: Fn() -> std::result::Result<V, E> + Send + Sync + 'static,
    {
        self.put(name, Slot::Delayed(DelayedAttr::new(load)));
    }

    /// Sets a delayed attribute from an existing loader.
    pub fn insert_delayed_attr(&mut self, name: &str, load: DelayedAttr) {
        self.put(name, Slot::Delayed(load));
    }

    /// Removes an attribute; returns whether it existed.
    pub fn remove(&mut self, name: &str) -> bool {
        match self.position(name) {
            Some(i) => {
                self.entries.remove(i);
                true
            }
            None => false,
        }
    }

    /// The attribute's value, loading it if it is delayed.
    ///
    /// # Errors
    /// [`Error::MissingAttr`] or [`Error::DelayedAttr`].
    pub fn value(&self, name: &str) -> Result<Cow<'_, Value>> {
        self.value_of(&Key::from(""), name)
    }

    /// The attribute converted to `V`, loading it if it is delayed.
    ///
    /// # Errors
    /// [`Error::MissingAttr`], [`Error::DelayedAttr`] or [`Error::AttrType`].
    pub fn get<V: DeserializeOwned>(&self, name: &str) -> Result<V> {
        self.get_of(&Key::from(""), name)
    }

    /// Like [`get`](Self::get), with the owning sample's key in the errors.
    pub(crate) fn get_of<V: DeserializeOwned>(&self, key: &Key, name: &str) -> Result<V> {
        let value = self.value_of(key, name)?.into_owned();
        rmpv::ext::from_value(value).map_err(|e| Error::AttrType {
            key: key.clone(),
            name: name.to_owned(),
            reason: e.to_string(),
        })
    }

    pub(crate) fn value_of(&self, key: &Key, name: &str) -> Result<Cow<'_, Value>> {
        let i = self.position(name).ok_or_else(|| Error::MissingAttr {
            key: key.clone(),
            name: name.to_owned(),
            available: self.names().map(str::to_owned).collect(),
        })?;
        match &self.entries[i].1 {
            Slot::Plain(v) => Ok(Cow::Borrowed(v)),
            Slot::Delayed(d) => d.load().map(Cow::Owned).map_err(|source| Error::DelayedAttr {
                key: key.clone(),
                name: name.to_owned(),
                source,
            }),
        }
    }

    /// A copy in which every delayed attribute is loaded and plain.
    ///
    /// # Errors
    /// [`Error::DelayedAttr`] from the first loader that fails.
    pub fn resolved(&self) -> Result<Attrs> {
        self.resolved_of(&Key::from(""))
    }

    pub(crate) fn resolved_of(&self, key: &Key) -> Result<Attrs> {
        let entries = self
            .entries
            .iter()
            .map(|(name, _)| Ok((name.clone(), Slot::Plain(self.value_of(key, name)?.into_owned()))))
            .collect::<Result<_>>()?;
        Ok(Attrs { entries })
    }

    /// The plain attributes with their values, in order (delayed ones are skipped).
    pub fn plain(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().filter_map(|(k, s)| match s {
            Slot::Plain(v) => Some((k.as_str(), v)),
            Slot::Delayed(_) => None,
        })
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|(k, _)| k.as_str() == name)
    }

    fn put(&mut self, name: &str, slot: Slot) {
        match self.position(name) {
            Some(i) => self.entries[i].1 = slot,
            None => self.entries.push((Key::from(name), slot)),
        }
    }
}

impl fmt::Debug for Attrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, s) in &self.entries {
            match s {
                Slot::Plain(v) => m.entry(&k.as_str(), v),
                Slot::Delayed(d) => m.entry(&k.as_str(), d),
            };
        }
        m.finish()
    }
}

/// Plain attributes compare by value; delayed ones are equal only to themselves.
impl PartialEq for Attrs {
    fn eq(&self, other: &Self) -> bool {
        self.entries.len() == other.entries.len()
            && self.entries.iter().zip(&other.entries).all(|((ka, a), (kb, b))| {
                ka == kb
                    && match (a, b) {
                        (Slot::Plain(x), Slot::Plain(y)) => x == y,
                        (Slot::Delayed(x), Slot::Delayed(y)) => Arc::ptr_eq(&x.0, &y.0),
                        _ => false,
                    }
            })
    }
}

/// Serialized as a map; delayed attributes are loaded first, so what crosses a
/// process boundary or lands on disk is always plain data.
impl Serialize for Attrs {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeMap};
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (k, _) in &self.entries {
            let v = self.value(k).map_err(S::Error::custom)?;
            map.serialize_entry(k.as_str(), v.as_ref())?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Attrs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let entries: Vec<(Key, Value)> = deserializer.deserialize_map(PairsVisitor)?;
        Ok(Attrs {
            entries: entries.into_iter().map(|(k, v)| (k, Slot::Plain(v))).collect(),
        })
    }
}

struct PairsVisitor;

impl<'de> serde::de::Visitor<'de> for PairsVisitor {
    type Value = Vec<(Key, Value)>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of attribute names to values")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(pair) = map.next_entry::<Key, Value>()? {
            out.push(pair);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn delayed_attribute_loads_on_every_read_until_set() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let mut attrs = Attrs::new();
        attrs.insert_delayed("annot", move || {
            c.fetch_add(1, Ordering::SeqCst);
            Ok::<_, BoxError>("eyes")
        });
        assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing is loaded before a read");
        assert_eq!(attrs.get::<String>("annot").unwrap(), "eyes");
        assert_eq!(attrs.get::<String>("annot").unwrap(), "eyes");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        attrs.insert("annot", "nose");
        assert!(!attrs.is_delayed("annot"));
        assert_eq!(attrs.get::<String>("annot").unwrap(), "nose");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn failing_loader_and_wrong_type_are_errors_naming_the_attribute() {
        let mut attrs = Attrs::new();
        attrs.insert_delayed("x", || Err::<u8, _>(std::io::Error::other("disk gone")));
        attrs.insert("n", "not a number");
        let e = attrs.get::<u8>("x").unwrap_err().to_string();
        assert!(e.contains("`x`") && e.contains("disk gone"), "{e}");
        let e = attrs.get::<u8>("n").unwrap_err().to_string();
        assert!(e.contains("`n`"), "{e}");
        let e = attrs.get::<u8>("nope").unwrap_err().to_string();
        assert!(e.contains("`nope`") && e.contains("x, n"), "{e}");
    }

    #[test]
    fn serde_round_trip_resolves_delayed_attributes() {
        let mut attrs = Attrs::new();
        attrs.insert("a", 1);
        attrs.insert_delayed("b", || Ok::<_, BoxError>(vec![1.5f64, 2.5]));
        let bytes = rmp_roundtrip(&attrs);
        assert_eq!(bytes.get::<i32>("a").unwrap(), 1);
        assert_eq!(bytes.get::<Vec<f64>>("b").unwrap(), vec![1.5, 2.5]);
        assert!(!bytes.is_delayed("b"));
        assert_eq!(bytes, attrs.resolved().unwrap());
    }

    fn rmp_roundtrip(a: &Attrs) -> Attrs {
        let v = rmpv::ext::to_value(a).unwrap();
        rmpv::ext::from_value(v).unwrap()
    }
}
