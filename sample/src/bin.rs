//! Byte buffers as MessagePack `bin`: `#[serde(with = "bob_pipelines_sample::bin")]`
//! on a `Vec<u8>` field. Serde's default writes a `Vec<u8>` as an array of
//! numbers, up to twice the size and far slower to read.

use serde::{Deserializer, Serializer};

/// Serializes bytes as one byte string.
///
/// # Errors
/// The serializer's.
pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(bytes)
}

/// Deserializes a byte string.
///
/// # Errors
/// The deserializer's, for anything that is not a byte string.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte string")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }
    d.deserialize_bytes(Visitor)
}
