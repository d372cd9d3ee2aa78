//! Bounded per-key request-rate state: a fixed-size open-addressing table of 40-byte slots with
//! sliding two-bucket windows. When the probed slots are all taken, the stalest or quietest one
//! is evicted, so a flood of millions of distinct (spoofed) sources cannot grow memory; heavy
//! hitters keep their slots because they are never the quietest.

use filter_common::Addr;

/// Slots probed per key.
const PROBE: usize = 8;

/// What the rate state is kept for: a rule's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RateKey {
    /// Source address or prefix network address (16-byte form).
    pub addr: Addr,
    /// Hash of the path or Host for per-(source, path/host) rules; 0 otherwise.
    pub sub: u64,
    /// Rule index.
    pub rule: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    addr: Addr,
    sub: u64,
    rule: u8,
    used: u8,
    samples: u16,
    window_id: u32,
    current: u32,
    previous: u32,
}
const _: () = assert!(size_of::<Slot>() == 40);

/// The estimate after an observation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Estimate {
    /// Estimated requests per second over the sliding window.
    pub rate: f64,
    /// Verified samples in the current window.
    pub samples: u16,
}

/// The table.
pub struct RateTable {
    slots: Vec<Slot>,
    mask: usize,
    seed: u64,
    len: usize,
    evictions: u64,
}

impl RateTable {
    /// A table with room for at least `capacity` keys (rounded up to a power of two). Memory is
    /// reserved zeroed, so untouched slots cost no resident pages.
    #[must_use]
    pub(crate) fn new(capacity: usize) -> Self {
        let n = capacity.max(PROBE).next_power_of_two();
        let seed = std::collections::hash_map::RandomState::new();
        let seed = std::hash::BuildHasher::hash_one(&seed, 0x5eed_u64) | 1;
        Self {
            slots: vec![Slot::default(); n],
            mask: n - 1,
            seed,
            len: 0,
            evictions: 0,
        }
    }

    /// Bytes of state per tracked key.
    #[must_use]
    pub const fn bytes_per_key() -> usize {
        size_of::<Slot>()
    }

    /// Keys tracked now.
    #[must_use]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Slots (the hard cap).
    #[cfg(test)]
    #[must_use]
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Keys evicted to make room so far.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn evictions(&self) -> u64 {
        self.evictions
    }

    fn hash(&self, key: &RateKey) -> usize {
        let a = u64::from_le_bytes(key.addr[..8].try_into().unwrap_or_default());
        let b = u64::from_le_bytes(key.addr[8..].try_into().unwrap_or_default());
        let mut h = self.seed;
        for word in [a, b, key.sub, u64::from(key.rule)] {
            h = (h ^ word)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .rotate_left(29);
        }
        (h ^ (h >> 32)) as usize
    }

    /// Adds `weight` requests seen at `now_ns` to `key`'s window of `window_ns` and returns the
    /// new estimate.
    pub(crate) fn observe(
        &mut self,
        key: &RateKey,
        now_ns: u64,
        window_ns: u64,
        weight: u32,
    ) -> Estimate {
        let window_id = (now_ns / window_ns) as u32;
        let index = self.slot_for(key, window_id);
        let slot = &mut self.slots[index];
        if slot.used == 0 || (slot.addr, slot.sub, slot.rule) != (key.addr, key.sub, key.rule) {
            if slot.used == 0 {
                self.len += 1;
            } else {
                self.evictions += 1;
            }
            *slot = Slot {
                addr: key.addr,
                sub: key.sub,
                rule: key.rule,
                used: 1,
                window_id,
                ..Slot::default()
            };
        }
        roll(slot, window_id);
        slot.current = slot.current.saturating_add(weight);
        slot.samples = slot.samples.saturating_add(1);
        estimate(slot, now_ns, window_ns)
    }

    /// Hints the CPU to load `key`'s first slot, so that a later [`RateTable::observe`] of it
    /// finds it in cache (the table is larger than the cache: its probe is a memory access).
    #[inline]
    pub(crate) fn prefetch(&self, key: &RateKey) {
        #[cfg(target_arch = "x86_64")]
        {
            let slot: *const Slot = &raw const self.slots[self.hash(key) & self.mask];
            // SAFETY: SSE is part of the x86_64 baseline, and a prefetch never dereferences
            // its pointer (which points into the table anyway); it has no effect on memory.
            unsafe {
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                    slot.cast(),
                );
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = key;
    }

    /// The current estimate for `key` without adding to it.
    #[must_use]
    pub(crate) fn peek(&self, key: &RateKey, now_ns: u64, window_ns: u64) -> Option<Estimate> {
        let start = self.hash(key);
        (0..PROBE)
            .map(|i| &self.slots[(start + i) & self.mask])
            .find(|s| s.used != 0 && (s.addr, s.sub, s.rule) == (key.addr, key.sub, key.rule))
            .map(|s| {
                let mut s = *s;
                roll(&mut s, (now_ns / window_ns) as u32);
                estimate(&s, now_ns, window_ns)
            })
    }

    /// The slot holding `key`, else a free one, else the stalest/quietest probed slot.
    fn slot_for(&self, key: &RateKey, window_id: u32) -> usize {
        let start = self.hash(key);
        let mut victim = start & self.mask;
        let mut victim_score = u64::MAX;
        for i in 0..PROBE {
            let index = (start + i) & self.mask;
            let slot = &self.slots[index];
            if slot.used == 0 {
                return index;
            }
            if (slot.addr, slot.sub, slot.rule) == (key.addr, key.sub, key.rule) {
                return index;
            }
            // Stale slots score 0; live ones by how much they currently count.
            let score = if window_id.saturating_sub(slot.window_id) > 1 {
                0
            } else {
                u64::from(slot.current) + u64::from(slot.previous) + 1
            };
            if score < victim_score {
                victim_score = score;
                victim = index;
            }
        }
        victim
    }
}

fn roll(slot: &mut Slot, window_id: u32) {
    match window_id.saturating_sub(slot.window_id) {
        0 => {}
        1 => {
            slot.previous = slot.current;
            slot.current = 0;
            slot.samples = 0;
        }
        _ => {
            slot.previous = 0;
            slot.current = 0;
            slot.samples = 0;
        }
    }
    slot.window_id = slot.window_id.max(window_id);
}

fn estimate(slot: &Slot, now_ns: u64, window_ns: u64) -> Estimate {
    let into = (now_ns % window_ns) as f64 / window_ns as f64;
    let count = f64::from(slot.previous) * (1.0 - into) + f64::from(slot.current);
    Estimate {
        rate: count / (window_ns as f64 / 1e9),
        samples: slot.samples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn key(n: u32) -> RateKey {
        let mut addr = [0u8; 16];
        addr[12..].copy_from_slice(&n.to_be_bytes());
        RateKey {
            addr,
            sub: 0,
            rule: 0,
        }
    }

    #[test]
    fn steady_rate_is_estimated() {
        let mut t = RateTable::new(1024);
        let mut last = None;
        // 200 requests/s for 3 s, each sample standing for 4 requests (50 samples/s).
        for i in 0..150u64 {
            last = Some(t.observe(&key(1), 10 * SEC + i * SEC / 50, SEC, 4));
        }
        let e = last.unwrap();
        assert!((e.rate - 200.0).abs() < 20.0, "{e:?}");
        assert!(e.samples >= 40);
    }

    #[test]
    fn old_windows_are_forgotten() {
        let mut t = RateTable::new(1024);
        for i in 0..100 {
            t.observe(&key(1), SEC + i, SEC, 1);
        }
        let later = t.observe(&key(1), 5 * SEC, SEC, 1);
        assert!(later.rate <= 1.0, "{later:?}");
        assert_eq!(later.samples, 1);
    }

    #[test]
    fn memory_is_bounded_and_heavy_hitters_survive() {
        let mut t = RateTable::new(4096);
        let cap = t.capacity();
        for round in 0..50u64 {
            // The heavy hitter.
            for _ in 0..10 {
                t.observe(&key(7), SEC + round, SEC, 1);
            }
            // 2,000 new distinct sources each round: 100,000 in all.
            for n in 0..2000u32 {
                t.observe(&key(1000 + round as u32 * 2000 + n), SEC + round, SEC, 1);
            }
        }
        assert_eq!(t.capacity(), cap);
        assert!(t.len() <= cap);
        assert!(t.evictions() > 0);
        let heavy = t.peek(&key(7), SEC + 50, SEC).expect("heavy hitter kept");
        assert!(heavy.rate >= 400.0, "{heavy:?}");
    }
}
