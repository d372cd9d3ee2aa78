//! The prefix hint: one flag per bucket of addresses ([`filter_common::prefix_hint`]) telling
//! the program whether a prefix entry may cover that bucket, so that it skips the prefix trie
//! for the rest. A bucket is marked before a prefix is written there (a mark costs a lookup,
//! a missing mark would cost a verdict), and cleared only by [`PrefixHint::rebuild`] from the
//! trie itself, under the pin lock, so that no writer's mark is lost.

use aya::maps::{Array, MapData, lpm_trie::LpmTrie};
use filter_common::{Addr, BlockEntry, maps, prefix_hint};

use super::{
    maps::{MapsError, map_err, open_map},
    pins::Pins,
};
use crate::target::Target;

/// The pinned hint array.
pub(crate) struct PrefixHint {
    flags: Array<MapData, u32>,
}

impl PrefixHint {
    /// Opens the pinned hint.
    pub(crate) fn open(pins: &Pins) -> Result<Self, MapsError> {
        Ok(Self {
            flags: open_map(pins, maps::PREFIX_HINT)?,
        })
    }

    /// Marks the buckets a prefix overlaps (before the prefix is written).
    pub(crate) fn mark(&mut self, target: Target) -> Result<(), MapsError> {
        let (first, count) = prefix_hint::buckets_of(&target.key(), target.key_len());
        for bucket in first..first + count {
            self.flags
                .set(bucket, &1, 0)
                .map_err(map_err("write", maps::PREFIX_HINT))?;
        }
        Ok(())
    }

    /// Makes the hint exactly what the prefix trie needs: marks every bucket a prefix
    /// overlaps, clears the others. The caller holds the pin lock. Returns the buckets marked.
    pub(crate) fn rebuild(
        &mut self,
        prefix: &LpmTrie<MapData, Addr, BlockEntry>,
    ) -> Result<usize, MapsError> {
        let mut wanted = vec![false; prefix_hint::BUCKETS as usize];
        for key in prefix.keys() {
            let key = key.map_err(map_err("iterate", maps::BLOCK_PREFIX))?;
            let (first, count) = prefix_hint::buckets_of(&key.data(), key.prefix_len());
            for flag in &mut wanted[first as usize..(first + count) as usize] {
                *flag = true;
            }
        }
        for (bucket, want) in (0..prefix_hint::BUCKETS).zip(&wanted) {
            let now = self
                .flags
                .get(&bucket, 0)
                .map_err(map_err("read", maps::PREFIX_HINT))?
                != 0;
            if now != *want {
                self.flags
                    .set(bucket, &u32::from(*want), 0)
                    .map_err(map_err("write", maps::PREFIX_HINT))?;
            }
        }
        Ok(wanted.iter().filter(|w| **w).count())
    }
}

/// Rebuilds the pinned hint from the pinned prefix trie (the caller holds the pin lock): for a
/// program upgrade that brings the hint to pins that had none.
pub(crate) fn rebuild(pins: &Pins) -> Result<usize, MapsError> {
    let prefix: LpmTrie<MapData, Addr, BlockEntry> = open_map(pins, maps::BLOCK_PREFIX)?;
    PrefixHint::open(pins)?.rebuild(&prefix)
}

#[cfg(test)]
mod tests {
    use filter_common::prefix_hint::{V4_BUCKETS, V6_BUCKETS, bucket, buckets_of};

    use crate::target::Target;

    fn of(text: &str) -> (u32, u32) {
        let t: Target = text.parse().unwrap();
        buckets_of(&t.key(), t.key_len())
    }

    #[test]
    fn a_prefix_marks_the_buckets_of_every_address_it_covers() {
        for (prefix, inside) in [
            ("198.18.5.0/24", "198.18.5.77"),
            ("198.18.0.0/16", "198.18.200.1"),
            ("198.16.0.0/14", "198.19.255.255"),
            ("10.0.0.0/8", "10.255.0.1"),
            ("2001:2:5::/64", "2001:2:5::9"),
            ("2001:2:9::/48", "2001:2:9:ffff::1"),
            ("2001:2::/32", "2001:2:ffff::1"),
            ("2001::/16", "2001:ab::1"),
        ] {
            let (first, count) = of(prefix);
            let ip: Target = inside.parse().unwrap();
            let b = bucket(&ip.key());
            assert!((first..first + count).contains(&b), "{prefix} ∌ {inside}");
        }
        assert_eq!(of("198.18.5.0/24").1, 1);
        assert_eq!(of("10.0.0.0/8").1, 256);
        assert_eq!(
            of("2001::/16"),
            (V4_BUCKETS, V6_BUCKETS),
            "wider than /32: all of v6"
        );
        assert!(of("198.18.5.0/24").0 < V4_BUCKETS && of("2001:2::/48").0 >= V4_BUCKETS);
    }
}
