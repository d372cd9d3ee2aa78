//! The map writer: the only code that writes the block maps, for the daemon's decisions and
//! for the operator's commands alike. It keeps the [`ExpiryIndex`] in step with every write,
//! delete and expiry, applies the full-map policy (evict the daemon-made exact entry closest
//! to expiry, never an operator's) and sweeps expired entries, all without scanning the maps.

use std::{collections::HashMap, time::Instant};

use aya::maps::{HashMap as BpfHashMap, MapData, MapError, lpm_trie::Key, lpm_trie::LpmTrie};
use filter_common::{Addr, BlockEntry, capacity, maps};

use super::{Decision, Origin, index::ExpiryIndex};
use crate::{
    bpf::{
        maps::{MapsError, block_entry, is_missing, map_err, open_map, write_err},
        pins::Pins,
        prefix_hint::PrefixHint,
    },
    clock::monotonic_ns,
    target::Target,
};

/// Entries the sweep removes per call at most (the rest wait for the next sweep), so that a
/// mass expiry cannot stall the loop.
const SWEEP_BATCH: usize = 65_536;
/// A decision for a target already blocked is written only when it extends the block by at
/// least this much.
pub const MIN_EXTENSION: std::time::Duration = std::time::Duration::from_secs(1);
const MIN_EXTENSION_NS: u64 = MIN_EXTENSION.as_nanos() as u64;
/// Stale index entries looked past per eviction before giving up.
const EVICTION_TRIES: usize = 64;
/// Full map with nothing evictable in the index: re-read the maps at most this often, in case
/// another writer (an older daemon, a CLI while we were down) made evictable entries.
const READOPT_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// The entry was stored.
    Stored,
    /// The map was full: this daemon-made entry was evicted to make room.
    Evicted(Target),
    /// A block at least as long was already in force; nothing was written.
    AlreadyInForce,
}

/// The block maps, opened for writing, with the index of what they hold.
pub struct MapWriter {
    exact: BpfHashMap<MapData, Addr, BlockEntry>,
    prefix: LpmTrie<MapData, Addr, BlockEntry>,
    index: ExpiryIndex,
    /// The decisions this daemon wrote that are still in the maps (for `why`).
    decisions: HashMap<Target, Decision>,
    /// When the index was last filled from the maps (`None`: never; an operator's writer).
    adopted: Option<Instant>,
    hint: PrefixHint,
    pins: Pins,
    /// A prefix left the trie since the hint was last rebuilt.
    hint_stale: bool,
}

fn evictable(target: Target, entry: &BlockEntry) -> bool {
    target.is_host()
        && entry.expires_ns != 0
        && Origin::from_reason_code(entry.reason_code).evictable()
}

impl MapWriter {
    /// Opens the pinned block maps. The index starts empty: call [`Self::adopt`] in a
    /// long-running writer (the daemon); a one-shot command does not need it.
    pub fn open(pins: &Pins) -> Result<Self, MapsError> {
        if !pins.loaded() {
            return Err(MapsError::NotLoaded(pins.layout_dir()));
        }
        Ok(Self {
            exact: open_map(pins, maps::BLOCK_EXACT)?,
            prefix: open_map(pins, maps::BLOCK_PREFIX)?,
            index: ExpiryIndex::default(),
            decisions: HashMap::new(),
            adopted: None,
            hint: PrefixHint::open(pins)?,
            pins: pins.clone(),
            hint_stale: false,
        })
    }

    /// Clears the prefix hint's marks that no prefix needs any more (after prefixes left the
    /// trie). `lock_held`: the caller holds the pin lock (a CLI command); else it is taken here,
    /// so that no other writer marks a bucket while the hint is rebuilt.
    pub fn tidy_hint(&mut self, lock_held: bool) -> Result<(), MapsError> {
        if !self.hint_stale {
            return Ok(());
        }
        let _lock = if lock_held {
            None
        } else {
            Some(
                self.pins
                    .lock()
                    .map_err(|e| MapsError::Lock(e.to_string()))?,
            )
        };
        self.hint.rebuild(&self.prefix)?;
        self.hint_stale = false;
        Ok(())
    }

    /// Fills the index from the maps (one pass at start); returns the (exact, prefix) counts.
    /// The prefix hint is rebuilt from the trie at the same time.
    pub fn adopt(&mut self) -> Result<(usize, usize), MapsError> {
        self.hint_stale = true;
        self.tidy_hint(false)?;
        self.index.clear();
        for item in self.exact.iter() {
            let (key, entry) = item.map_err(map_err("iterate", maps::BLOCK_EXACT))?;
            let target = Target::from_key(key, 128);
            self.index
                .insert(target, entry.expires_ns, evictable(target, &entry));
        }
        for item in self.prefix.iter() {
            let (key, entry) = item.map_err(map_err("iterate", maps::BLOCK_PREFIX))?;
            let target = Target::from_key(key.data(), key.prefix_len());
            self.index.insert(target, entry.expires_ns, false);
        }
        let index = &self.index;
        self.decisions.retain(|target, _| index.contains(*target));
        self.adopted = Some(Instant::now());
        Ok(self.index.counts())
    }

    /// Writes a decision: never shortens a block already in force (an operator's permanent
    /// one, say), nor rewrites one it would extend by less than [`MIN_EXTENSION`] (a CrowdSec
    /// resync sends the same decisions again: their hit counters stay), and remembers the
    /// decision for `why`.
    pub fn write_decision(&mut self, decision: &Decision) -> Result<Written, MapsError> {
        let entry = block_entry(
            Some(decision.ttl),
            decision.origin.reason_code(),
            &decision.rule,
        );
        if let Some(existing) = self.entry(decision.target)?
            && existing.in_force(monotonic_ns())
            && (existing.expires_ns == 0
                || existing.expires_ns.saturating_add(MIN_EXTENSION_NS) >= entry.expires_ns)
        {
            return Ok(Written::AlreadyInForce);
        }
        let written = self.write(decision.target, &entry)?;
        self.decisions.insert(decision.target, decision.clone());
        Ok(written)
    }

    /// Writes one entry for an address (exact map) or a prefix (LPM trie). When the exact map
    /// is full, the daemon-made entry closest to expiry is evicted; with nothing evictable the
    /// write fails with [`MapsError::Full`].
    pub fn write(&mut self, target: Target, entry: &BlockEntry) -> Result<Written, MapsError> {
        let entry = BlockEntry {
            key_len: target.key_len() as u16,
            ..*entry
        };
        let written = match self.insert(target, &entry) {
            Ok(()) => Written::Stored,
            Err(MapsError::Full { .. }) if target.is_host() => {
                let Some(victim) = self.evict()? else {
                    return Err(MapsError::Full {
                        map: maps::BLOCK_EXACT,
                        capacity: capacity::BLOCK_EXACT,
                    });
                };
                self.insert(target, &entry)?;
                Written::Evicted(victim)
            }
            Err(err) => return Err(err),
        };
        self.decisions.remove(&target);
        self.index
            .insert(target, entry.expires_ns, evictable(target, &entry));
        Ok(written)
    }

    fn insert(&mut self, target: Target, entry: &BlockEntry) -> Result<(), MapsError> {
        if !target.is_host() {
            // Marked before it is written: the program must never skip a prefix in force.
            self.hint.mark(target)?;
        }
        if target.is_host() {
            self.exact
                .insert(&target.key(), entry, 0)
                .map_err(write_err(maps::BLOCK_EXACT, capacity::BLOCK_EXACT))
        } else {
            let key = Key::new(target.key_len(), target.key());
            self.prefix
                .insert(&key, entry, 0)
                .map_err(write_err(maps::BLOCK_PREFIX, capacity::BLOCK_PREFIX))
        }
    }

    /// The entry stored for exactly this target.
    fn entry(&self, target: Target) -> Result<Option<BlockEntry>, MapsError> {
        let (got, map) = if target.is_host() {
            (self.exact.get(&target.key(), 0), maps::BLOCK_EXACT)
        } else {
            (
                self.prefix
                    .get(&Key::new(target.key_len(), target.key()), 0),
                maps::BLOCK_PREFIX,
            )
        };
        match got {
            Ok(entry) => Ok(Some(entry)),
            Err(err) if is_missing(&err) => Ok(None),
            Err(err) => Err(map_err("lookup", map)(err)),
        }
    }

    /// Removes the daemon-made exact entry closest to expiry; `None` when there is none.
    fn evict(&mut self) -> Result<Option<Target>, MapsError> {
        for _ in 0..EVICTION_TRIES {
            let Some(victim) = self.index.soonest_evictable() else {
                break;
            };
            match self.entry(victim)? {
                Some(entry) if evictable(victim, &entry) => {
                    self.remove_entry(victim)?;
                    return Ok(Some(victim));
                }
                // Rewritten by someone else since: index what is really there.
                Some(entry) => {
                    self.index
                        .insert(victim, entry.expires_ns, evictable(victim, &entry))
                }
                None => {
                    self.index.remove(victim);
                }
            }
        }
        // Nothing known to be evictable. A long-running writer re-reads the maps (rarely): an
        // earlier daemon or an operator may have written entries it never saw.
        if self.adopted.is_some_and(|at| at.elapsed() >= READOPT_AFTER) {
            log::warn!("block map full and no evictable entry known: re-reading the maps");
            self.adopt()?;
            if let Some(victim) = self.index.soonest_evictable() {
                self.remove_entry(victim)?;
                return Ok(Some(victim));
            }
        }
        Ok(None)
    }

    /// Removes exactly this target's entry; false if there was none.
    pub fn remove(&mut self, target: Target) -> Result<bool, MapsError> {
        self.remove_entry(target)
    }

    fn remove_entry(&mut self, target: Target) -> Result<bool, MapsError> {
        let (removed, map) = if target.is_host() {
            (self.exact.remove(&target.key()), maps::BLOCK_EXACT)
        } else {
            (
                self.prefix
                    .remove(&Key::new(target.key_len(), target.key())),
                maps::BLOCK_PREFIX,
            )
        };
        self.index.remove(target);
        self.decisions.remove(&target);
        if !target.is_host() {
            self.hint_stale = true;
        }
        match removed {
            Ok(()) => Ok(true),
            Err(err) if is_missing(&err) => Ok(false),
            Err(err) => Err(map_err("remove", map)(err)),
        }
    }

    /// Removes this target's entry only when `origin` wrote it (a CrowdSec delete never lifts
    /// an operator's or a rule's block of the same target); false if there was none of it.
    pub(crate) fn remove_from(
        &mut self,
        target: Target,
        origin: Origin,
    ) -> Result<bool, MapsError> {
        match self.entry(target)? {
            Some(entry) if Origin::from_reason_code(entry.reason_code) == origin => {
                self.remove_entry(target)
            }
            _ => Ok(false),
        }
    }

    /// Every target in the maps that `origin` wrote (one pass over both maps).
    pub(crate) fn targets_from(&self, origin: Origin) -> Result<Vec<Target>, MapsError> {
        let code = origin.reason_code();
        let mut out = Vec::new();
        for item in self.exact.iter() {
            let (key, entry) = item.map_err(map_err("iterate", maps::BLOCK_EXACT))?;
            if entry.reason_code == code {
                out.push(Target::from_key(key, 128));
            }
        }
        for item in self.prefix.iter() {
            let (key, entry) = item.map_err(map_err("iterate", maps::BLOCK_PREFIX))?;
            if entry.reason_code == code {
                out.push(Target::from_key(key.data(), key.prefix_len()));
            }
        }
        Ok(out)
    }

    /// Removes every block entry; returns how many.
    pub(crate) fn flush(&mut self) -> Result<usize, MapsError> {
        let exact: Vec<Addr> = self
            .exact
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err("iterate", maps::BLOCK_EXACT))?;
        let prefixes: Vec<Key<Addr>> = self
            .prefix
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err("iterate", maps::BLOCK_PREFIX))?;
        let ignore_missing = |e: MapError| if is_missing(&e) { Ok(()) } else { Err(e) };
        for key in &exact {
            self.exact
                .remove(key)
                .or_else(ignore_missing)
                .map_err(map_err("remove", maps::BLOCK_EXACT))?;
        }
        for key in &prefixes {
            self.prefix
                .remove(key)
                .or_else(ignore_missing)
                .map_err(map_err("remove", maps::BLOCK_PREFIX))?;
        }
        self.index.clear();
        self.decisions.clear();
        self.hint_stale |= !prefixes.is_empty();
        Ok(exact.len() + prefixes.len())
    }

    /// Removes the entries that expired by `now_ns` (the index says which; each is checked
    /// against the map, since another writer may have renewed it). Returns the targets removed.
    pub(crate) fn sweep(&mut self, now_ns: u64) -> Result<Vec<Target>, MapsError> {
        let mut removed = Vec::new();
        for target in self.index.due(now_ns, SWEEP_BATCH) {
            match self.entry(target)? {
                Some(entry) if !entry.in_force(now_ns) => {
                    if self.remove_entry(target)? {
                        removed.push(target);
                    }
                }
                Some(entry) => {
                    self.index
                        .insert(target, entry.expires_ns, evictable(target, &entry));
                }
                None => {
                    self.index.remove(target);
                    self.decisions.remove(&target);
                }
            }
        }
        Ok(removed)
    }

    /// Re-reads these targets from the maps after another writer (the operator's CLI)
    /// changed them; returns the ones that are gone.
    pub(crate) fn refresh(&mut self, targets: &[Target]) -> Result<Vec<Target>, MapsError> {
        let mut gone = Vec::new();
        for target in targets {
            match self.entry(*target)? {
                Some(entry) => {
                    self.decisions.remove(target);
                    self.index
                        .insert(*target, entry.expires_ns, evictable(*target, &entry));
                }
                None => {
                    self.index.remove(*target);
                    self.decisions.remove(target);
                    gone.push(*target);
                }
            }
        }
        Ok(gone)
    }

    /// The decision this daemon wrote that decides `ip`'s fate: its own exact entry first,
    /// else the longest prefix it decided that covers it.
    #[must_use]
    pub(crate) fn decision_covering(&self, ip: std::net::IpAddr) -> Option<&Decision> {
        self.decisions.get(&Target::host(ip)).or_else(|| {
            self.decisions
                .values()
                .filter(|d| !d.target.is_host() && d.target.contains(ip))
                .max_by_key(|d| d.target.len)
        })
    }

    /// Entries known to the index: (exact, prefix).
    #[must_use]
    pub(crate) fn counts(&self) -> (usize, usize) {
        self.index.counts()
    }
}
