//! The legitimate clients the collateral guard protects: sources seen recently that behaved.
//!
//! A source counts as legitimate only when it has been known for at least [`MIN_KNOWN_NS`]
//! and has never come near a threshold: once a rule that rates the source itself (not a
//! prefix it is in) sees it above [`BEHAVED_SHARE`] of its threshold, or it is decided, it is
//! a suspect for the guard window and never counts, even after its rate falls (a blocked flooder sends nothing, which looks calm). Without this, the
//! members of a flood that had not crossed yet when aggregation was tried counted as the
//! legitimate users of their own prefix, and the guard refused the aggregate.

use std::{collections::HashMap, net::IpAddr};

use crate::target::Target;

/// Sources kept (legitimate and suspects, each); beyond, new ones are not tracked.
const CAP: usize = 1 << 16;
/// Share of a rule's threshold above which a source is a suspect, not a legitimate client.
pub(crate) const BEHAVED_SHARE: f64 = 0.5;
/// How long a source must have been seen before it counts: a flood's members ramp up through
/// the low shares in their first moments, as every new client does.
pub(crate) const MIN_KNOWN_NS: u64 = 1_000_000_000;

#[derive(Clone, Copy, Debug)]
struct Seen {
    first_ns: u64,
    last_ns: u64,
}

/// Recently seen sources, split into behaved ones and suspects.
#[derive(Debug, Default)]
pub(crate) struct LegitClients {
    behaved: HashMap<IpAddr, Seen>,
    /// Source → last time it was above [`BEHAVED_SHARE`] or decided.
    suspects: HashMap<IpAddr, u64>,
}

impl LegitClients {
    /// Notes one event of `src`; `share` is its highest rate / threshold over the rules it
    /// matched, `decided` whether it is blocked (or reported) now.
    pub(crate) fn note(&mut self, src: IpAddr, time_ns: u64, share: f64, decided: bool) {
        if decided || share > BEHAVED_SHARE {
            self.suspect(src, time_ns);
            return;
        }
        if self.suspects.contains_key(&src) {
            return;
        }
        if let Some(seen) = self.behaved.get_mut(&src) {
            seen.last_ns = time_ns;
        } else if self.behaved.len() < CAP {
            self.behaved.insert(
                src,
                Seen {
                    first_ns: time_ns,
                    last_ns: time_ns,
                },
            );
        }
    }

    /// Marks `src` as a suspect (it was decided).
    pub(crate) fn suspect(&mut self, src: IpAddr, time_ns: u64) {
        self.behaved.remove(&src);
        if let Some(at) = self.suspects.get_mut(&src) {
            *at = time_ns;
        } else if self.suspects.len() < CAP {
            self.suspects.insert(src, time_ns);
        }
    }

    /// Forgets what was seen longer than `window_ns` before `now_ns`.
    pub(crate) fn expire(&mut self, now_ns: u64, window_ns: u64) {
        self.behaved
            .retain(|_, seen| now_ns.saturating_sub(seen.last_ns) <= window_ns);
        self.suspects
            .retain(|_, at| now_ns.saturating_sub(*at) <= window_ns);
    }

    /// Legitimate clients: (inside `target`, in all).
    pub(crate) fn count(&self, target: &Target) -> (usize, usize) {
        let known = self
            .behaved
            .iter()
            .filter(|(_, seen)| seen.last_ns.saturating_sub(seen.first_ns) >= MIN_KNOWN_NS);
        let (mut inside, mut total) = (0, 0);
        for (ip, _) in known {
            total += 1;
            inside += usize::from(target.contains(*ip));
        }
        (inside, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_known_behaved_clients_count() {
        let mut l = LegitClients::default();
        let net: Target = "198.18.2.0/24".parse().unwrap();
        // A steady client, seen over two seconds at 10 % of a threshold.
        l.note(ip("198.18.2.100"), 0, 0.1, false);
        l.note(ip("198.18.2.100"), 2 * S, 0.1, false);
        // A newcomer seen once, and a flooder that ramped through low shares first.
        l.note(ip("198.18.2.101"), 2 * S, 0.1, false);
        l.note(ip("198.18.2.1"), 0, 0.2, false);
        l.note(ip("198.18.2.1"), S, 0.9, false);
        l.note(ip("198.18.2.1"), 2 * S, 0.0, false);
        assert_eq!(l.count(&net), (1, 1));
        // A decided source never counts, and its suspicion outlives its calm.
        l.note(ip("198.18.2.100"), 3 * S, 0.1, true);
        assert_eq!(l.count(&net), (0, 0));
        l.expire(20 * S, 10 * S);
        l.note(ip("198.18.2.1"), 21 * S, 0.1, false);
        l.note(ip("198.18.2.1"), 23 * S, 0.1, false);
        assert_eq!(l.count(&net), (1, 1), "forgiven after the window");
    }
}
