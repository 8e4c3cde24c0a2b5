//! Sample metadata: an ordered map of attribute names to serde values, some of
//! which may be loaded on access.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::key::SmallBytes;
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

/// The attributes (metadata) of a sample.
///
/// Values are [`Value`]s (MessagePack's model), read back typed with
/// [`get`](Self::get). An attribute may be *delayed*: its loader runs when it is
/// read, and setting it turns it into a plain attribute.
///
/// Plain attributes are kept MessagePack-encoded in one buffer, inline when it
/// is small (22 bytes: `metadata = 1` takes 10): a million samples carry a
/// million attribute maps, and this way each costs no allocation of its own.
/// Reading decodes straight into the type asked for.
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
    /// `(name, value)` MessagePack pairs, in insertion order, no map header.
    plain: SmallBytes,
    /// Delayed attributes are rare: no space for them unless there are some.
    #[expect(
        clippy::box_collection,
        reason = "one pointer instead of a 24-byte Vec in every sample's metadata"
    )]
    delayed: Option<Box<Vec<(Key, DelayedAttr)>>>,
}

/// The `(name, encoded value)` pairs of a buffer that [`Attrs`] wrote.
fn pairs(mut rest: &[u8]) -> impl Iterator<Item = (&str, &[u8])> {
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (name, after) = rmp::decode::read_str_from_slice(rest).ok()?;
        let mut rd = after;
        skip_value(&mut rd)?;
        let (value, tail) = after.split_at(after.len() - rd.len());
        rest = tail;
        Some((name, value))
    })
}

/// How deep [`skip_value`] lets arrays and maps nest: well within what
/// reading a value back allows, so that every value it passes reads back.
const MAX_NESTING: usize = 256;

/// Moves `rd` past one MessagePack value without making it (what reading
/// it would cost: an allocation for a string, an array or a map, and the
/// walk); `None` when the bytes end before the value does, hold a reserved
/// marker, or nest deeper than [`MAX_NESTING`]. It loops rather than
/// recurses, and each step takes a byte at least, so no length in the
/// bytes can make it run long.
fn skip_value(rd: &mut &[u8]) -> Option<()> {
    use rmp::Marker as M;
    fn take<'a>(rd: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = rd.split_at_checked(n)?;
        *rd = tail;
        Some(head)
    }
    // A big-endian length of `n` bytes.
    fn len(rd: &mut &[u8], n: usize) -> Option<usize> {
        let b = take(rd, n)?;
        Some(b.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x)))
    }
    // Values left at this level, and at each level it is inside.
    let mut values = 1usize;
    let mut outer: Vec<usize> = Vec::new();
    loop {
        values -= 1;
        let marker = M::from_u8(*take(rd, 1)?.first()?);
        // Bytes of this value after its marker, and values inside it.
        let (bytes, inside) = match marker {
            M::FixPos(_) | M::FixNeg(_) | M::Null | M::True | M::False => (0, 0),
            M::U8 | M::I8 => (1, 0),
            M::U16 | M::I16 => (2, 0),
            M::U32 | M::I32 | M::F32 => (4, 0),
            M::U64 | M::I64 | M::F64 => (8, 0),
            M::FixStr(n) => (usize::from(n), 0),
            M::Str8 | M::Bin8 => (len(rd, 1)?, 0),
            M::Str16 | M::Bin16 => (len(rd, 2)?, 0),
            M::Str32 | M::Bin32 => (len(rd, 4)?, 0),
            M::FixArray(n) => (0, usize::from(n)),
            M::Array16 => (0, len(rd, 2)?),
            M::Array32 => (0, len(rd, 4)?),
            M::FixMap(n) => (0, 2 * usize::from(n)),
            M::Map16 => (0, len(rd, 2)?.checked_mul(2)?),
            M::Map32 => (0, len(rd, 4)?.checked_mul(2)?),
            // An extension: its type byte, then its data.
            M::FixExt1 => (2, 0),
            M::FixExt2 => (3, 0),
            M::FixExt4 => (5, 0),
            M::FixExt8 => (9, 0),
            M::FixExt16 => (17, 0),
            M::Ext8 => (len(rd, 1)?.checked_add(1)?, 0),
            M::Ext16 => (len(rd, 2)?.checked_add(1)?, 0),
            M::Ext32 => (len(rd, 4)?.checked_add(1)?, 0),
            M::Reserved => return None,
        };
        take(rd, bytes)?;
        if inside > 0 {
            if outer.len() >= MAX_NESTING {
                return None;
            }
            outer.push(values);
            values = inside;
        }
        while values == 0 {
            match outer.pop() {
                Some(left) => values = left,
                None => return Some(()),
            }
        }
    }
}

fn decode(mut bytes: &[u8]) -> Value {
    // Only ever called on values this module encoded.
    rmpv::decode::read_value(&mut bytes).unwrap_or(Value::Nil)
}

impl Attrs {
    /// No attributes.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many attributes (plain and delayed).
    pub fn len(&self) -> usize {
        pairs(self.plain.as_bytes()).count() + self.delayed_list().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.plain.as_bytes().is_empty() && self.delayed_list().is_empty()
    }

    /// Whether an attribute of that name exists (plain or delayed).
    pub fn contains(&self, name: &str) -> bool {
        self.find_plain(name).is_some() || self.is_delayed(name)
    }

    /// Whether the attribute exists and is delayed.
    pub fn is_delayed(&self, name: &str) -> bool {
        self.find_delayed(name).is_some()
    }

    /// The attribute names: plain ones in insertion order, then delayed ones.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        pairs(self.plain.as_bytes())
            .map(|(n, _)| n)
            .chain(self.delayed_list().iter().map(|(k, _)| k.as_str()))
    }

    /// Sets a plain attribute, replacing a plain or delayed one of the same name.
    pub fn insert(&mut self, name: &str, value: impl Into<Value>) {
        // The value is written straight after the pairs kept, in one buffer:
        // a sample made with one attribute spends most of its making here.
        self.remove_delayed(name);
        let mut buf = self.without(name);
        rmp::encode::write_str(&mut buf, name)
            .unwrap_or_else(|_| unreachable!("writing to memory cannot fail"));
        rmpv::encode::write_value(&mut buf, &value.into())
            .unwrap_or_else(|_| unreachable!("writing to memory cannot fail"));
        self.plain = SmallBytes::new(buf.as_bytes());
    }

    /// Sets a plain attribute from any serde value.
    ///
    /// # Errors
    /// [`Error::AttrValue`] when the value cannot be represented.
    pub fn insert_serde<V: Serialize + ?Sized>(&mut self, name: &str, value: &V) -> Result<()> {
        let mut buf = Vec::new();
        rmp_serde::encode::write_named(&mut buf, value).map_err(|e| Error::AttrValue {
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
        self.put_plain(name, &buf);
        Ok(())
    }

    /// Sets a delayed attribute: `load` runs each time the attribute is read.
    pub fn insert_delayed<V, E, F>(&mut self, name: &str, load: F)
    where
        V: Serialize,
        E: Into<BoxError>,
        F: Fn() -> std::result::Result<V, E> + Send + Sync + 'static,
    {
        self.insert_delayed_attr(name, DelayedAttr::new(load));
    }

    /// Sets a delayed attribute from an existing loader.
    pub fn insert_delayed_attr(&mut self, name: &str, load: DelayedAttr) {
        self.remove_plain(name);
        let list = self.delayed.get_or_insert_with(Default::default);
        match list.iter_mut().find(|(k, _)| k.as_str() == name) {
            Some(entry) => entry.1 = load,
            None => list.push((Key::from(name), load)),
        }
    }

    /// Removes an attribute; returns whether it existed.
    pub fn remove(&mut self, name: &str) -> bool {
        self.remove_plain(name) | self.remove_delayed(name)
    }

    /// The attribute's value, loading it if it is delayed.
    ///
    /// # Errors
    /// [`Error::MissingAttr`] or [`Error::DelayedAttr`].
    pub fn value(&self, name: &str) -> Result<Value> {
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
        let type_error = |reason: String| Error::AttrType {
            key: key.clone(),
            name: name.to_owned(),
            reason,
        };
        match self.find_plain(name) {
            Some(bytes) => rmp_serde::from_slice(bytes).map_err(|e| type_error(e.to_string())),
            None => rmpv::ext::from_value(self.load_delayed(key, name)?)
                .map_err(|e| type_error(e.to_string())),
        }
    }

    pub(crate) fn value_of(&self, key: &Key, name: &str) -> Result<Value> {
        match self.find_plain(name) {
            Some(bytes) => Ok(decode(bytes)),
            None => self.load_delayed(key, name),
        }
    }

    fn load_delayed(&self, key: &Key, name: &str) -> Result<Value> {
        let load = self.find_delayed(name).ok_or_else(|| Error::MissingAttr {
            key: key.clone(),
            name: name.to_owned(),
            available: self.names().map(str::to_owned).collect(),
        })?;
        load.load().map_err(|source| Error::DelayedAttr {
            key: key.clone(),
            name: name.to_owned(),
            source,
        })
    }

    /// A copy in which every delayed attribute is loaded and plain.
    ///
    /// # Errors
    /// [`Error::DelayedAttr`] from the first loader that fails.
    pub fn resolved(&self) -> Result<Attrs> {
        self.resolved_of(&Key::from(""))
    }

    /// The attributes as one MessagePack buffer of `(name, value)` pairs,
    /// delayed ones loaded: the compact form in which a partition's
    /// attributes cross between processes, read back by
    /// [`from_pairs`](Self::from_pairs) without decoding a value.
    ///
    /// # Errors
    /// [`Error::DelayedAttr`] from the first delayed loader that fails.
    pub fn to_pairs(&self) -> Result<std::borrow::Cow<'_, [u8]>> {
        if self.delayed.is_none() {
            return Ok(std::borrow::Cow::Borrowed(self.plain.as_bytes()));
        }
        Ok(std::borrow::Cow::Owned(
            self.resolved()?.plain.as_bytes().to_vec(),
        ))
    }

    /// Attributes from a buffer that [`to_pairs`](Self::to_pairs) wrote.
    ///
    /// # Errors
    /// [`Error::AttrValue`] when the bytes are not such pairs.
    pub fn from_pairs(bytes: &[u8]) -> Result<Attrs> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let bad = |what: &str| Error::AttrValue {
                name: String::new(),
                reason: format!("not attribute pairs: {what}"),
            };
            let (_, after) = rmp::decode::read_str_from_slice(rest)
                .map_err(|_| bad("no name where one was expected"))?;
            let mut rd = after;
            skip_value(&mut rd).ok_or_else(|| bad("a name without a value"))?;
            rest = rd;
        }
        Ok(Attrs {
            plain: SmallBytes::new(bytes),
            delayed: None,
        })
    }

    pub(crate) fn resolved_of(&self, key: &Key) -> Result<Attrs> {
        let mut out = Attrs {
            plain: self.plain.clone(),
            delayed: None,
        };
        for (name, _) in self.delayed_list() {
            out.insert(name, self.load_delayed(key, name)?);
        }
        Ok(out)
    }

    /// The plain attributes with their values, in order (delayed ones are skipped).
    pub fn plain(&self) -> impl Iterator<Item = (&str, Value)> {
        pairs(self.plain.as_bytes()).map(|(n, v)| (n, decode(v)))
    }

    fn delayed_list(&self) -> &[(Key, DelayedAttr)] {
        self.delayed.as_deref().map_or(&[], Vec::as_slice)
    }

    fn find_plain(&self, name: &str) -> Option<&[u8]> {
        pairs(self.plain.as_bytes()).find_map(|(n, v)| (n == name).then_some(v))
    }

    fn find_delayed(&self, name: &str) -> Option<&DelayedAttr> {
        self.delayed_list()
            .iter()
            .find_map(|(k, d)| (k.as_str() == name).then_some(d))
    }

    /// The pairs of every plain attribute but `name`, in a buffer to go on.
    fn without(&self, name: &str) -> Scratch {
        let mut buf = Scratch::default();
        for (n, v) in pairs(self.plain.as_bytes()).filter(|(n, _)| *n != name) {
            write_pair(&mut buf, n, v);
        }
        buf
    }

    /// Rewrites the buffer without `name`, plus `name = encoded` when given.
    fn rewrite(&mut self, name: &str, encoded: Option<&[u8]>) {
        let mut buf = self.without(name);
        if let Some(v) = encoded {
            write_pair(&mut buf, name, v);
        }
        self.plain = SmallBytes::new(buf.as_bytes());
    }

    fn put_plain(&mut self, name: &str, encoded: &[u8]) {
        self.remove_delayed(name);
        self.rewrite(name, Some(encoded));
    }

    fn remove_plain(&mut self, name: &str) -> bool {
        let found = self.find_plain(name).is_some();
        if found {
            self.rewrite(name, None);
        }
        found
    }

    fn remove_delayed(&mut self, name: &str) -> bool {
        let Some(list) = self.delayed.as_mut() else {
            return false;
        };
        let before = list.len();
        list.retain(|(k, _)| k.as_str() != name);
        let found = list.len() != before;
        if list.is_empty() {
            self.delayed = None;
        }
        found
    }
}

fn write_pair(buf: &mut Scratch, name: &str, encoded: &[u8]) {
    rmp::encode::write_str(buf, name)
        .unwrap_or_else(|_| unreachable!("writing to memory cannot fail"));
    buf.extend(encoded);
}

/// Bytes being written: on the stack while they are few, as most samples'
/// attributes are (a sample made with one attribute allocated twice for
/// these buffers, a fifth of the time it took to make).
struct Scratch {
    small: [u8; 64],
    len: usize,
    /// The bytes, once more than fit in `small`.
    spilled: Option<Vec<u8>>,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            small: [0; 64],
            len: 0,
            spilled: None,
        }
    }
}

impl Scratch {
    fn extend(&mut self, bytes: &[u8]) {
        match &mut self.spilled {
            Some(v) => v.extend_from_slice(bytes),
            None if self.len + bytes.len() <= self.small.len() => {
                self.small[self.len..self.len + bytes.len()].copy_from_slice(bytes);
                self.len += bytes.len();
            }
            None => {
                let mut v = Vec::with_capacity(2 * (self.len + bytes.len()));
                v.extend_from_slice(&self.small[..self.len]);
                v.extend_from_slice(bytes);
                self.spilled = Some(v);
            }
        }
    }

    fn as_bytes(&self) -> &[u8] {
        self.spilled.as_deref().unwrap_or(&self.small[..self.len])
    }
}

impl std::io::Write for Scratch {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.extend(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A value shown as its data (`7`, `"alice"`, `[1, 2]`), not as MessagePack's
/// variants (`Integer(PosInt(7))`).
struct Shown(Value);

impl fmt::Debug for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Attrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in self.plain() {
            m.entry(&k, &Shown(v));
        }
        for (k, d) in self.delayed_list() {
            m.entry(&k.as_str(), d);
        }
        m.finish()
    }
}

/// Plain attributes compare by value; delayed ones are equal only to themselves.
impl PartialEq for Attrs {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.delayed_list(), other.delayed_list());
        self.plain.as_bytes() == other.plain.as_bytes()
            && a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|((ka, x), (kb, y))| ka == kb && Arc::ptr_eq(&x.0, &y.0))
    }
}

/// Serialized as a map; delayed attributes are loaded first, so what crosses a
/// process boundary or lands on disk is always plain data.
impl Serialize for Attrs {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeMap};
        let mut map = serializer.serialize_map(None)?;
        for (k, v) in self.plain() {
            map.serialize_entry(k, &v)?;
        }
        for (k, _) in self.delayed_list() {
            let v = self.value(k).map_err(S::Error::custom)?;
            map.serialize_entry(k.as_str(), &v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Attrs {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let entries: Vec<(Key, Value)> = deserializer.deserialize_map(PairsVisitor)?;
        let mut attrs = Attrs::new();
        for (k, v) in entries {
            attrs.insert(&k, v);
        }
        Ok(attrs)
    }
}

struct PairsVisitor;

impl<'de> serde::de::Visitor<'de> for PairsVisitor {
    type Value = Vec<(Key, Value)>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of attribute names to values")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
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
    fn skipping_a_value_goes_exactly_where_reading_it_would() {
        use rmpv::{Integer, Value as V};
        let values = vec![
            V::Nil,
            V::Boolean(true),
            V::from(7),
            V::from(-3),
            V::from(200u8),
            V::from(-200i16),
            V::from(70_000u32),
            V::from(-70_000i32),
            V::Integer(Integer::from(u64::MAX)),
            V::Integer(Integer::from(i64::MIN)),
            V::F32(1.5),
            V::F64(-2.25),
            V::from("short"),
            V::from("s".repeat(40)),
            V::from("m".repeat(300)),
            V::from("l".repeat(70_000)),
            V::Binary(vec![1; 3]),
            V::Binary(vec![2; 300]),
            V::Binary(vec![3; 70_000]),
            V::Array(vec![V::from(1), V::from("two"), V::Array(vec![V::Nil])]),
            V::Array((0..20).map(V::from).collect()),
            V::Array((0..70_000).map(|_| V::Nil).collect()),
            V::Map(vec![(V::from("a"), V::Map(vec![(V::from(1), V::from(2))]))]),
            V::Map((0..20).map(|i| (V::from(i), V::from(i))).collect()),
            V::Map((0..70_000).map(|i| (V::from(i), V::Nil)).collect()),
        ]
        .into_iter()
        .chain([1usize, 2, 4, 8, 16, 3, 300, 70_000].map(|n| V::Ext(5, vec![9; n])));
        for v in values {
            let mut bytes = Vec::new();
            rmpv::encode::write_value(&mut bytes, &v).unwrap();
            let mut rd = bytes.as_slice();
            assert_eq!(skip_value(&mut rd), Some(()), "{v}");
            assert!(rd.is_empty(), "{v}: {} bytes left", rd.len());
            // A value cut short is no value.
            let cuts = [0, 1, bytes.len() / 2, bytes.len() - 1];
            for cut in cuts.into_iter().filter(|&c| c < bytes.len()) {
                let mut rd = &bytes[..cut];
                assert_eq!(skip_value(&mut rd), None, "{v} cut at {cut}");
            }
        }
        // Nesting: as deep as allowed, and one deeper.
        for depth in [MAX_NESTING, MAX_NESTING + 1] {
            let mut bytes = vec![0x91; depth]; // an array of one, nested
            bytes.push(0xc0);
            let mut rd = bytes.as_slice();
            let ok = skip_value(&mut rd).is_some();
            assert_eq!(ok, depth <= MAX_NESTING, "{depth} deep");
            let mut back = bytes.as_slice();
            assert!(rmpv::decode::read_value(&mut back).is_ok(), "reads back");
        }
        // Bytes of any kind: what skipping passes, reading reads, to the
        // same place; what reading reads, skipping passes, but for the
        // reserved marker 0xc1, which reading takes for nil.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut passed = 0;
        for _ in 0..20_000 {
            let n = (next() % 24) as usize;
            let bytes: Vec<u8> = (0..n).map(|_| (next() >> 24) as u8).collect();
            let (mut skip, mut read) = (bytes.as_slice(), bytes.as_slice());
            let skipped = skip_value(&mut skip).is_some();
            let was_read = rmpv::decode::read_value_ref(&mut read).is_ok();
            if skipped {
                passed += 1;
                assert!(was_read, "{bytes:02x?}");
                assert_eq!(skip.len(), read.len(), "{bytes:02x?}");
            } else if was_read {
                assert!(bytes.contains(&0xc1), "{bytes:02x?}");
            }
        }
        assert!(passed > 5_000, "only {passed} of 20 000 were values");
    }

    #[test]
    fn many_and_long_attributes_are_kept_whole_and_in_order() {
        // Past the 64 bytes written on the stack: values, and the buffer of
        // pairs each change rewrites.
        let long = "x".repeat(200);
        let mut a = Attrs::new();
        for i in 0..20 {
            a.insert(&format!("attr{i}"), i);
        }
        a.insert("long", long.as_str());
        a.insert("attr3", "three");
        assert!(a.remove("attr0"));
        let got: Vec<(String, Value)> = a.plain().map(|(n, v)| (n.to_owned(), v)).collect();
        assert_eq!(got.len(), 20);
        assert_eq!(got[0], ("attr1".to_owned(), Value::from(1)));
        assert_eq!(got[18], ("long".to_owned(), Value::from(long.as_str())));
        assert_eq!(got[19], ("attr3".to_owned(), Value::from("three")));
        let back = Attrs::from_pairs(&a.to_pairs().unwrap()).unwrap();
        assert_eq!(back.value("long").unwrap(), Value::from(long.as_str()));
    }

    #[test]
    fn attributes_cross_as_their_pairs_with_delayed_ones_loaded() {
        let mut a = Attrs::new();
        a.insert("subject", "s01");
        a.insert_serde("box", &[1, 2, 3, 4]).unwrap();
        a.insert_delayed("annotations", || Ok::<_, BoxError>(vec![10u32, 12]));
        let pairs = a.to_pairs().unwrap();
        let back = Attrs::from_pairs(&pairs).unwrap();
        assert_eq!(back.get::<String>("subject").unwrap(), "s01");
        assert_eq!(back.get::<[u8; 4]>("box").unwrap(), [1, 2, 3, 4]);
        assert_eq!(back.get::<Vec<u32>>("annotations").unwrap(), [10, 12]);
        assert!(!back.is_delayed("annotations"));
        assert!(Attrs::from_pairs(&[]).unwrap().is_empty());

        // A failing loader is an error naming the attribute, not a panic.
        let mut broken = Attrs::new();
        broken.insert_delayed("img", || Err::<u8, BoxError>("no such file".into()));
        let e = broken.to_pairs().unwrap_err().to_string();
        assert!(e.contains("img") && e.contains("no such file"), "{e}");
        // Bytes that are not pairs are refused, at every cut.
        for cut in 1..pairs.len() {
            let _ = Attrs::from_pairs(&pairs[..cut]);
        }
        assert!(Attrs::from_pairs(b"\x01\x02").is_err());
        assert!(
            Attrs::from_pairs(b"\xa1a").is_err(),
            "a name without a value"
        );
    }

    #[test]
    fn delayed_attribute_loads_on_every_read_until_set() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let mut attrs = Attrs::new();
        attrs.insert_delayed("annot", move || {
            c.fetch_add(1, Ordering::SeqCst);
            Ok::<_, BoxError>("eyes")
        });
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "nothing is loaded before a read"
        );
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
        assert!(e.contains("`nope`") && e.contains("n, x"), "{e}");
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

    #[test]
    fn debug_shows_values_not_messagepack_variants() {
        let mut a = Attrs::new();
        a.insert("age", 7);
        a.insert("name", "alice");
        let shown = format!("{a:?}");
        assert_eq!(shown, r#"{"age": 7, "name": "alice"}"#);
    }
}
