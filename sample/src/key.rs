//! Sample keys: short strings stored inline, long ones shared.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest byte string kept inline, without a heap allocation.
const INLINE: usize = 22;

/// Bytes stored inline when short, shared behind an [`Arc`] when long: 24 bytes
/// whatever the length, and cloning never copies the bytes.
#[derive(Clone)]
pub(crate) enum SmallBytes {
    Inline { len: u8, buf: [u8; INLINE] },
    Shared(Arc<[u8]>),
}

impl SmallBytes {
    pub(crate) fn new(bytes: &[u8]) -> Self {
        if bytes.len() <= INLINE {
            let mut buf = [0; INLINE];
            buf[..bytes.len()].copy_from_slice(bytes);
            SmallBytes::Inline {
                len: bytes.len() as u8,
                buf,
            }
        } else {
            SmallBytes::Shared(Arc::from(bytes))
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            SmallBytes::Inline { len, buf } => &buf[..usize::from(*len)],
            SmallBytes::Shared(b) => b,
        }
    }
}

impl Default for SmallBytes {
    fn default() -> Self {
        SmallBytes::new(&[])
    }
}

/// The key of a sample: a string that names it uniquely within a run.
///
/// Keys become checkpoint file names (`<key>.npy`), so they are usually relative
/// paths such as `subject01/image03`. A key of up to 22 bytes lives inline (no
/// allocation; a million samples carry a million keys), a longer one is shared
/// behind an [`Arc`], so cloning a key never copies its text.
///
/// ```
/// use bob_pipelines_sample::Key;
///
/// let key = Key::from("subject01/image03");
/// assert_eq!(key, "subject01/image03");
/// assert_eq!(key.len(), 17);
/// ```
#[derive(Clone)]
pub struct Key(SmallBytes);

impl Key {
    /// The key as a string slice.
    #[allow(
        unsafe_code,
        reason = "every use of a key reads it as text: checking its bytes again each time was a \
                  twentieth of a distributed worker's task thread"
    )]
    pub fn as_str(&self) -> &str {
        // SAFETY: a key's bytes are only ever copied from a `&str` (`From<&str>`,
        // the only constructor; deserializing checks bytes first), and the
        // field is private to this module, so they are valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(self.0.as_bytes()) }
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Key(SmallBytes::new(s.as_bytes()))
    }
}

impl From<String> for Key {
    fn from(s: String) -> Self {
        Key::from(s.as_str())
    }
}

impl From<&String> for Key {
    fn from(s: &String) -> Self {
        Key::from(s.as_str())
    }
}

impl From<&Key> for Key {
    fn from(k: &Key) -> Self {
        k.clone()
    }
}

impl Deref for Key {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Key {}

impl PartialEq<str> for Key {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Key {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Key {
    // Must hash like `str` because of `Borrow<str>`.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sample key (a string)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key::from(v))
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Key, E> {
                std::str::from_utf8(v)
                    .map(Key::from)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Bytes(v), &self))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// FNV-1a, 64 bits: stable across processes, machines and versions, unlike
/// std's hashers; for names that must not change between runs (checkpoint
/// folders, lineage stamps, row keys).
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_shared_keys_behave_alike() {
        for s in [
            "",
            "0",
            "exactly-twenty-two-b!!",
            "a much longer key/with/some/folders/in/it",
        ] {
            let k = Key::from(s);
            assert_eq!(k.as_str(), s);
            assert_eq!(k.clone(), k);
            assert_eq!(format!("{k}"), s);
        }
        assert_eq!(std::mem::size_of::<Key>(), 24);
    }

    #[test]
    fn non_ascii_keys_round_trip() {
        let k = Key::from("öäü/日本語");
        assert_eq!(&*k, "öäü/日本語");
        let bytes = rmpv::ext::to_value(&k).unwrap();
        let back: Key = rmpv::ext::from_value(bytes).unwrap();
        assert_eq!(back, k);
    }
}
