//! The expiry index: every block entry the map writer wrote or adopted, ordered by expiry.
//! It answers "which entries are due" (the sweep) and "which daemon-made exact entry expires
//! soonest" (full-map eviction) in O(log n), where scanning a million-entry map costs a
//! million syscalls.

use std::collections::{BTreeSet, HashMap};

use crate::target::Target;

/// What the index knows of one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Known {
    /// `CLOCK_MONOTONIC` ns; 0 = never expires.
    expires_ns: u64,
    /// A daemon-made exact entry with an expiry: the full-map policy may evict it.
    evictable: bool,
}

/// Entries by expiry.
#[derive(Debug, Default)]
pub(crate) struct ExpiryIndex {
    known: HashMap<Target, Known>,
    /// Entries with an expiry, soonest first.
    by_expiry: BTreeSet<(u64, Target)>,
    /// The evictable subset of `by_expiry`.
    evictable: BTreeSet<(u64, Target)>,
    hosts: usize,
}

impl ExpiryIndex {
    /// Records (or updates) an entry.
    pub(crate) fn insert(&mut self, target: Target, expires_ns: u64, evictable: bool) {
        self.remove(target);
        let evictable = evictable && expires_ns != 0 && target.is_host();
        self.known.insert(
            target,
            Known {
                expires_ns,
                evictable,
            },
        );
        if target.is_host() {
            self.hosts += 1;
        }
        if expires_ns != 0 {
            self.by_expiry.insert((expires_ns, target));
        }
        if evictable {
            self.evictable.insert((expires_ns, target));
        }
    }

    /// Forgets an entry; false if it was not known.
    pub(crate) fn remove(&mut self, target: Target) -> bool {
        let Some(known) = self.known.remove(&target) else {
            return false;
        };
        if target.is_host() {
            self.hosts -= 1;
        }
        self.by_expiry.remove(&(known.expires_ns, target));
        self.evictable.remove(&(known.expires_ns, target));
        true
    }

    /// True when the entry is known.
    #[must_use]
    pub(crate) fn contains(&self, target: Target) -> bool {
        self.known.contains_key(&target)
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    /// Entries whose expiry is at or before `now_ns`, soonest first, at most `limit`.
    #[must_use]
    pub(crate) fn due(&self, now_ns: u64, limit: usize) -> Vec<Target> {
        self.by_expiry
            .iter()
            .take_while(|(expires, _)| *expires <= now_ns)
            .take(limit)
            .map(|(_, target)| *target)
            .collect()
    }

    /// The evictable entry that expires soonest.
    #[must_use]
    pub(crate) fn soonest_evictable(&self) -> Option<Target> {
        self.evictable.first().map(|(_, target)| *target)
    }

    /// Known (exact, prefix) entries.
    #[must_use]
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.hosts, self.known.len() - self.hosts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> Target {
        text.parse().unwrap()
    }

    #[test]
    fn due_and_eviction_follow_expiry_and_updates() {
        let mut index = ExpiryIndex::default();
        index.insert(t("198.18.0.1"), 300, true);
        index.insert(t("198.18.0.2"), 100, false);
        index.insert(t("198.18.0.3"), 200, true);
        index.insert(t("198.18.0.4"), 0, true);
        index.insert(t("198.18.9.0/24"), 150, true);
        assert_eq!(index.counts(), (4, 1));
        assert_eq!(
            index.due(160, 10),
            vec![t("198.18.0.2"), t("198.18.9.0/24")]
        );
        assert_eq!(index.due(160, 1), vec![t("198.18.0.2")]);
        // Operators' entries, entries without expiry and prefixes are never evicted.
        assert_eq!(index.soonest_evictable(), Some(t("198.18.0.3")));
        // Renewed: moves behind the other.
        index.insert(t("198.18.0.3"), 400, true);
        assert_eq!(index.soonest_evictable(), Some(t("198.18.0.1")));
        assert!(index.remove(t("198.18.0.1")));
        assert!(!index.remove(t("198.18.0.1")));
        assert_eq!(index.soonest_evictable(), Some(t("198.18.0.3")));
        assert_eq!(index.counts(), (3, 1));
        index.clear();
        assert_eq!(index.counts(), (0, 0));
        assert_eq!(index.soonest_evictable(), None);
    }
}
