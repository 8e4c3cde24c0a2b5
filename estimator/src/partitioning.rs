//! How a run's input samples are cut into partitions.

use crate::{Error, Result};

/// How the input samples are cut into partitions (bob's `ToDaskBag` options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Partitioning {
    /// About 16 partitions of at most 16 384 samples each, and never fewer than
    /// `min(N, 16)`: a small run is spread too (200 samples make 16
    /// partitions of 13). It depends only on the number of samples — never on
    /// this machine — so every process that builds the same pipeline builds
    /// the same graph.
    #[default]
    Auto,
    /// About this many partitions (bob's `npartitions`): partitions of
    /// `ceil(n / k)` samples, as dask cuts them, so there may be fewer than `k`
    /// (5 samples in 4 partitions give 2 + 2 + 1).
    Count(usize),
    /// Partitions of this many samples (bob's `partition_size`).
    Size(usize),
}

/// The most samples [`Partitioning::Auto`] puts in one partition.
pub const MAX_AUTO_PARTITION: usize = 1 << 14;

impl Partitioning {
    /// The lengths of the partitions of `n` samples, in order.
    ///
    /// # Errors
    /// [`Error::Partitioning`] for zero partitions or a partition size of zero.
    pub fn lengths(self, n: usize) -> Result<Vec<usize>> {
        let size = match self {
            Partitioning::Auto => n.div_ceil(16).clamp(1, MAX_AUTO_PARTITION),
            Partitioning::Count(0) => {
                return Err(Error::Partitioning("npartitions must be at least 1".into()));
            }
            Partitioning::Size(0) => {
                return Err(Error::Partitioning(
                    "partition_size must be at least 1".into(),
                ));
            }
            Partitioning::Count(k) => n.div_ceil(k).max(1),
            Partitioning::Size(s) => s,
        };
        let mut lens = vec![size; n / size];
        if n % size != 0 {
            lens.push(n % size);
        }
        Ok(lens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_run_is_spread_and_a_large_one_capped() {
        let auto = |n| Partitioning::Auto.lengths(n).unwrap();
        // 200 samples: 16 partitions (15 × 13 + 5), not one.
        assert_eq!(auto(200).len(), 16);
        assert_eq!(auto(200).iter().sum::<usize>(), 200);
        assert_eq!(auto(5), [1; 5]);
        assert!(auto(0).is_empty());
        let big = auto(1_000_000);
        assert!(big.iter().all(|&l| l <= MAX_AUTO_PARTITION));
        assert_eq!(big.len(), 1_000_000usize.div_ceil(MAX_AUTO_PARTITION));
    }
}
