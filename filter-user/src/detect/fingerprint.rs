//! Request fingerprints: what kind of client sent a request, from what every event carries —
//! method, path shape (segments with digits or long tokens folded to `*`, query values
//! dropped), user agent and, for the proxy's events, the HTTP protocol. The same client
//! software asking for the same kind of resource has one fingerprint whatever the ids in its
//! URLs.
//!
//! Per service, [`Shares`] learns each fingerprint's normal share of the requests (part of the
//! baseline, kept across restarts); each second [`Counts`] counts them. Under attack, a
//! fingerprint whose share this second is at least `fingerprint_min_share` and rose to more
//! than `fingerprint_rise` × its normal share is an attack fingerprint (`detect::adaptive`
//! holds its senders to a lower threshold). Ids are XXH3 of the fields, stable across
//! restarts and versions, so that a saved baseline keeps its meaning.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::sensor::{RequestEvent, Sensor};

/// A fingerprint id.
pub(crate) type Fingerprint = u64;

/// Fingerprints a baseline keeps (the most common; the rest count as unknown, share 0).
pub(crate) const MAX_LEARNED: usize = 1024;
/// Distinct fingerprints counted per service and second (beyond, not counted one by one).
const MAX_COUNTED: usize = 4096;
/// Bytes of the path shape, and of the user agent, that make the fingerprint.
const MAX_SHAPE: usize = 128;
const MAX_AGENT: usize = 160;
/// Path segments longer than this are ids or tokens (folded like numbers).
const MAX_WORD: usize = 24;
/// Learned shares below this are forgotten.
const MIN_SHARE: f64 = 1e-6;

/// Emits the shape of `path` (see the module docs), at most [`MAX_SHAPE`] bytes.
fn shape(path: &str, out: &mut Vec<u8>) {
    let start = out.len();
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        if segment.len() > MAX_WORD || segment.bytes().any(|b| b.is_ascii_digit()) {
            out.push(b'*');
        } else {
            out.extend_from_slice(segment.as_bytes());
        }
        if out.len() - start >= MAX_SHAPE {
            break;
        }
    }
    if !query.is_empty() {
        for (i, pair) in query.split('&').enumerate() {
            out.push(if i == 0 { b'?' } else { b'&' });
            let key = pair.split_once('=').map_or(pair, |(k, _)| k);
            out.extend_from_slice(&key.as_bytes()[..key.len().min(MAX_WORD)]);
            if out.len() - start >= MAX_SHAPE {
                break;
            }
        }
    }
    out.truncate(start + MAX_SHAPE.min(out.len() - start));
}

/// The fields of `event` that make its fingerprint, NUL-separated, into `buf` (cleared).
fn fields(event: &RequestEvent<'_>, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&event.method.as_bytes()[..event.method.len().min(16)]);
    buf.push(0);
    shape(event.path, buf);
    buf.push(0);
    let agent = event.user_agent.unwrap_or("").as_bytes();
    buf.extend_from_slice(&agent[..agent.len().min(MAX_AGENT)]);
    buf.push(0);
    if event.sensor == Sensor::Proxy {
        let protocol = event.protocol.unwrap_or("").as_bytes();
        buf.extend_from_slice(&protocol[..protocol.len().min(16)]);
    }
}

/// Computes fingerprints, reusing one buffer.
#[derive(Debug, Default)]
pub(crate) struct Fingerprinter {
    buf: Vec<u8>,
}

impl Fingerprinter {
    /// The fingerprint of `event`.
    pub(crate) fn of(&mut self, event: &RequestEvent<'_>) -> Fingerprint {
        fields(event, &mut self.buf);
        xxhash_rust::xxh3::xxh3_64(&self.buf)
    }
}

/// What a fingerprint stands for, readable: `GET /api/items/*?ms HTTP/2.0 "curl/8.0"`.
pub(crate) fn label(event: &RequestEvent<'_>) -> String {
    let mut shaped = Vec::with_capacity(64);
    shape(event.path, &mut shaped);
    let mut out = format!(
        "{} {}",
        event.method.chars().take(16).collect::<String>(),
        String::from_utf8_lossy(&shaped)
    );
    if event.sensor == Sensor::Proxy
        && let Some(p) = event.protocol
    {
        out.push(' ');
        out.extend(p.chars().take(16));
    }
    let agent: String = event.user_agent.unwrap_or("").chars().take(64).collect();
    out.push_str(&format!(" {agent:?}"));
    out
}

/// The hex form of a fingerprint id (as `why`, `baseline` and the state file show it).
pub(crate) fn hex(id: Fingerprint) -> String {
    format!("{id:016x}")
}

/// Requests per fingerprint over one second of one service.
#[derive(Clone, Debug, Default)]
pub(crate) struct Counts {
    /// Probed on every event: foldhash (fast, seeded per process, so that nobody can choose
    /// fingerprints that collide in the table) rather than SipHash.
    by_id: HashMap<Fingerprint, (f64, String), foldhash::fast::RandomState>,
    /// Requests of fingerprints beyond [`MAX_COUNTED`].
    uncounted: f64,
    /// Requests in all.
    total: f64,
}

impl Counts {
    /// Counts `weight` requests of `id`; `label` is called the first time `id` is seen.
    pub(crate) fn add(&mut self, id: Fingerprint, weight: f64, label: impl FnOnce() -> String) {
        self.total += weight;
        if let Some(entry) = self.by_id.get_mut(&id) {
            entry.0 += weight;
        } else if self.by_id.len() < MAX_COUNTED {
            self.by_id.insert(id, (weight, label()));
        } else {
            self.uncounted += weight;
        }
    }

    /// Requests counted.
    pub(crate) fn total(&self) -> f64 {
        self.total
    }

    /// The requests and label of `id`, if counted.
    pub(crate) fn get(&self, id: Fingerprint) -> Option<(f64, &str)> {
        self.by_id
            .get(&id)
            .map(|(count, label)| (*count, label.as_str()))
    }

    /// Requests not counted by fingerprint (too many distinct ones).
    pub(crate) fn uncounted(&self) -> f64 {
        self.uncounted
    }

    /// The `n` most requested: (id, requests, label).
    pub(crate) fn top(&self, n: usize) -> Vec<(Fingerprint, f64, &str)> {
        let mut all: Vec<_> = self
            .by_id
            .iter()
            .map(|(id, (count, label))| (*id, *count, label.as_str()))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (Fingerprint, f64, &str)> {
        self.by_id
            .iter()
            .map(|(id, (count, label))| (*id, *count, label.as_str()))
    }

    pub(crate) fn clear(&mut self) {
        self.by_id.clear();
        self.uncounted = 0.0;
        self.total = 0.0;
    }
}

/// A fingerprint's learned share.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Learned {
    /// Share of the service's requests, 0..=1.
    pub share: f64,
    /// What it stands for.
    pub label: String,
}

/// The normal share of each fingerprint: a running mean over the learned seconds, which
/// becomes an exponential average with the baseline's period as its time constant once that
/// much was learned.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Shares {
    by_id: HashMap<Fingerprint, Learned>,
    secs: f64,
}

impl Shares {
    /// Learns one normal second of `counts`, the mean being over at most `period_secs`.
    pub(crate) fn learn(&mut self, counts: &Counts, period_secs: f64) {
        let total = counts.total();
        if total <= 0.0 {
            return;
        }
        self.secs = (self.secs + 1.0).min(period_secs.max(1.0));
        let alpha = 1.0 / self.secs;
        for learned in self.by_id.values_mut() {
            learned.share *= 1.0 - alpha;
        }
        for (id, count, label) in counts.iter() {
            let add = alpha * count / total;
            if let Some(learned) = self.by_id.get_mut(&id) {
                learned.share += add;
            } else if self.by_id.len() < MAX_LEARNED {
                self.by_id.insert(
                    id,
                    Learned {
                        share: add,
                        label: label.to_owned(),
                    },
                );
            }
        }
        self.by_id.retain(|_, l| l.share >= MIN_SHARE);
    }

    /// The learned share of `id` (0 when unknown).
    pub(crate) fn share(&self, id: Fingerprint) -> f64 {
        self.by_id.get(&id).map_or(0.0, |l| l.share)
    }

    /// Fingerprints learned.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// For the state file: seconds learned and every fingerprint.
    pub(crate) fn to_file(&self) -> (f64, Vec<(String, Learned)>) {
        let mut all: Vec<_> = self
            .by_id
            .iter()
            .map(|(id, l)| (hex(*id), l.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        (self.secs, all)
    }

    /// From the state file; an error names what is out of range.
    pub(crate) fn from_file(secs: f64, all: &[(String, Learned)]) -> Result<Self, String> {
        if !(secs.is_finite() && (0.0..=1e7).contains(&secs)) {
            return Err("fingerprint seconds out of range".into());
        }
        if all.len() > MAX_LEARNED {
            return Err(format!("more than {MAX_LEARNED} fingerprints"));
        }
        let mut by_id = HashMap::with_capacity(all.len());
        for (id, learned) in all {
            let parsed = (id.len() == 16)
                .then(|| u64::from_str_radix(id, 16).ok())
                .flatten()
                .ok_or_else(|| "a fingerprint id that is not 16 hex digits".to_owned())?;
            if !(learned.share.is_finite() && (0.0..=1.0).contains(&learned.share)) {
                return Err("a fingerprint share out of 0..=1".into());
            }
            if learned.label.len() > 512 {
                return Err("a fingerprint label longer than 512 bytes".into());
            }
            by_id.insert(parsed, learned.clone());
        }
        Ok(Self { by_id, secs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensor::Signal;

    fn event<'a>(path: &'a str, agent: Option<&'a str>) -> RequestEvent<'a> {
        RequestEvent {
            src: "198.18.0.1".parse().unwrap(),
            time_ns: 0,
            weight: 1,
            method: "GET",
            path,
            host: None,
            user_agent: agent,
            sensor: Sensor::Proxy,
            signal: Signal::Requests,
            status: None,
            upstream_secs: None,
            protocol: Some("HTTP/2.0"),
        }
    }

    #[test]
    fn ids_and_values_fold_and_clients_differ() {
        let mut f = Fingerprinter::default();
        let a = f.of(&event("/api/items/123?page=2&q=x", Some("curl/8.0")));
        let b = f.of(&event("/api/items/98765?page=7&q=yy", Some("curl/8.0")));
        assert_eq!(a, b, "ids and query values fold");
        assert_ne!(a, f.of(&event("/api/items/123?page=2", Some("curl/8.0"))));
        assert_ne!(
            a,
            f.of(&event("/api/items/123?page=2&q=x", Some("Mozilla")))
        );
        assert_ne!(
            a,
            f.of(&event("/api/orders/1?page=2&q=x", Some("curl/8.0")))
        );
        let token = "/s/abcdefghijklmnopqrstuvwxyzabcdef";
        assert_eq!(
            f.of(&event(token, None)),
            f.of(&event("/s/ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ", None))
        );
        assert_eq!(
            label(&event("/api/items/123?page=2&q=x", Some("curl/8.0"))),
            "GET /api/items/*?page&q HTTP/2.0 \"curl/8.0\""
        );
        // Stable across runs and versions (a saved baseline keeps its meaning).
        assert_eq!(hex(f.of(&event("/", None))), hex(f.of(&event("/", None))));
        let long = "/x".repeat(10_000) + "?" + &"k=v&".repeat(10_000);
        let _ = f.of(&event(&long, Some(&"u".repeat(10_000))));
        assert!(f.buf.len() <= 16 + MAX_SHAPE + MAX_AGENT + 20);
    }

    #[test]
    fn shares_learn_a_running_mean_and_read_back() {
        let mut s = Shares::default();
        let mut c = Counts::default();
        for _ in 0..10 {
            c.clear();
            c.add(1, 3.0, || "a".into());
            c.add(2, 1.0, || "b".into());
            s.learn(&c, 60.0);
        }
        assert!((s.share(1) - 0.75).abs() < 1e-9, "{s:?}");
        assert!((s.share(2) - 0.25).abs() < 1e-9);
        assert_eq!(s.share(3), 0.0);
        let (secs, all) = s.to_file();
        assert_eq!(Shares::from_file(secs, &all).unwrap(), s);
        let bad = vec![(
            "zz".to_owned(),
            Learned {
                share: 0.5,
                label: String::new(),
            },
        )];
        assert!(Shares::from_file(1.0, &bad).is_err());
        let bad = vec![(
            hex(1),
            Learned {
                share: 2.0,
                label: String::new(),
            },
        )];
        assert!(Shares::from_file(1.0, &bad).is_err());
    }
}
