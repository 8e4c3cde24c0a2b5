//! A fast hash for the small keys the run's bookkeeping looks up once per
//! task (worker names, numbers), where the standard library's SipHash, made
//! to resist crafted keys, cost more than the look-up it served. The keys
//! come from the program and from workers that showed the run's secret.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// A multiply-rotate hash of eight bytes at a time (the scheme of the Rust
/// compiler's own maps): a few instructions per word, well spread in the
/// high bits a `HashMap` uses first.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

/// An odd constant with bits well mixed.
const K: u64 = 0xf135_7aea_2e62_a9c5;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("eight bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        // The last multiply leaves the low bits weak: bring high ones down.
        self.0.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use super::FastMap;

    #[test]
    fn names_and_tuples_of_every_length_are_found_and_told_apart() {
        let mut m: FastMap<String, usize> = FastMap::default();
        let names: Vec<String> = (0..2000)
            .map(|i| format!("{}{i}", "w".repeat(i % 19)))
            .chain(["".to_owned(), "\0".to_owned(), "\0\0".to_owned()])
            .collect();
        for (i, n) in names.iter().enumerate() {
            assert_eq!(m.insert(n.clone(), i), None, "{n:?} is new");
        }
        for (i, n) in names.iter().enumerate() {
            assert_eq!(m.get(n.as_str()), Some(&i));
        }
        let mut t: FastMap<(usize, usize, bool), usize> = FastMap::default();
        for s in 0..50 {
            for w in 0..50 {
                t.insert((s, w, s % 2 == 0), s * 50 + w);
            }
        }
        assert_eq!(t.len(), 2500);
        assert_eq!(t.get(&(7, 9, false)), Some(&359));
        assert_eq!(t.get(&(7, 9, true)), None);
    }
}
