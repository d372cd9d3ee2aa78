//! Learned baselines: per service, the total request rate and the distribution of per-source
//! rates over the last `period` of time *not under attack*, kept in [`SLOTS`] slots that
//! rotate by learned time (so an attack, or the daemon being down, pauses the baseline
//! instead of ageing it), and the normal share of each request fingerprint. Persisted to a state file (JSON, written atomically) so that a
//! restart during an attack starts from what was learned before it, not from the attack.
//! A file that is too large, not ours, of another version or inconsistent is refused with a
//! [`BaselineError`]; nothing in it can make the daemon panic.

use std::{
    collections::VecDeque,
    io::Write as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{
    fingerprint::{Learned, Shares},
    sketch::{BUCKETS, Histogram},
};

/// Slots a baseline's period is cut into.
pub(crate) const SLOTS: usize = 30;
/// The `format` of our state files.
pub(crate) const FORMAT: &str = "floodgate-baseline";
/// Version of the state file.
pub(crate) const VERSION: u32 = 1;
/// Largest state file read.
pub(crate) const MAX_FILE_BYTES: u64 = 4 << 20;
/// Largest request count one slot may hold (a sanity bound for files).
const MAX_REQUESTS: f64 = 1e15;

/// Why a state file was not read or written.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// Reading, writing or renaming failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Larger than [`MAX_FILE_BYTES`].
    #[error("{bytes} bytes is larger than a baseline file can be ({MAX_FILE_BYTES})")]
    TooLarge {
        /// Its size.
        bytes: u64,
    },
    /// Not JSON of the state file's shape.
    #[error("not a baseline file: {message}")]
    Parse {
        /// The parser's message.
        message: String,
    },
    /// JSON, but another program's.
    #[error("not a floodgate baseline file (format '{format}')")]
    Foreign {
        /// The format it names.
        format: String,
    },
    /// Ours, of another version.
    #[error("baseline file version {got} (this daemon reads {VERSION})")]
    Version {
        /// The version it names.
        got: u32,
    },
    /// Ours, but a value is out of range.
    #[error("inconsistent baseline file: {what}")]
    Invalid {
        /// What is wrong.
        what: String,
    },
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Slot {
    requests: f64,
    secs: f64,
    sources: Histogram,
}

/// One service's baseline.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Baseline {
    slots: VecDeque<Slot>,
    slot_secs: f64,
    /// The normal share of each request fingerprint.
    pub(crate) fingerprints: Shares,
}

impl Baseline {
    /// An empty baseline covering `period_secs` of learned time.
    #[must_use]
    pub(crate) fn new(period_secs: f64) -> Self {
        Self {
            slots: VecDeque::from([Slot::default()]),
            slot_secs: (period_secs / SLOTS as f64).max(1.0),
            fingerprints: Shares::default(),
        }
    }

    /// Adds `secs` of normal traffic: `requests` in all and the per-source rates `sources`.
    pub(crate) fn add(&mut self, requests: f64, secs: f64, sources: &Histogram) {
        if self.slots.back().is_none_or(|s| s.secs >= self.slot_secs) {
            self.slots.push_back(Slot::default());
            while self.slots.len() > SLOTS {
                self.slots.pop_front();
            }
        }
        if let Some(slot) = self.slots.back_mut() {
            slot.requests += requests;
            slot.secs += secs;
            slot.sources.merge(sources);
        }
    }

    /// Seconds of normal traffic learned (at most the period).
    #[must_use]
    pub(crate) fn learned_secs(&self) -> f64 {
        self.slots.iter().map(|s| s.secs).sum()
    }

    /// The normal total rate, requests/s.
    #[must_use]
    pub(crate) fn rate(&self) -> Option<f64> {
        let secs = self.learned_secs();
        (secs > 0.0).then(|| self.slots.iter().map(|s| s.requests).sum::<f64>() / secs)
    }

    /// The `q` quantile of the per-source rates.
    #[must_use]
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let mut all = Histogram::default();
        for s in &self.slots {
            all.merge(&s.sources);
        }
        all.quantile(q)
    }

    /// Per-source rates counted.
    #[must_use]
    pub(crate) fn sources(&self) -> u64 {
        self.slots.iter().map(|s| s.sources.total()).sum()
    }

    fn to_file(&self) -> Vec<SlotFile> {
        self.slots
            .iter()
            .map(|s| SlotFile {
                requests: s.requests,
                secs: s.secs,
                sources: s.sources.sparse(),
            })
            .collect()
    }

    fn from_file(file: &ServiceFile, period_secs: f64) -> Result<Self, BaselineError> {
        let invalid = |what: &str| BaselineError::Invalid { what: what.into() };
        let slots = &file.slots;
        if slots.len() > SLOTS {
            return Err(invalid("more slots than a baseline has"));
        }
        let mut b = Self::new(period_secs);
        b.slots.clear();
        for s in slots {
            if !(s.requests.is_finite() && (0.0..=MAX_REQUESTS).contains(&s.requests)) {
                return Err(invalid("a request count out of range"));
            }
            if !(s.secs.is_finite() && (0.0..=1e7).contains(&s.secs)) {
                return Err(invalid("a slot length out of range"));
            }
            let mut sources = Histogram::default();
            for (bucket, count) in &s.sources {
                if !sources.set(usize::from(*bucket), *count) {
                    return Err(invalid(&format!(
                        "bucket {bucket} (a sketch has {BUCKETS})"
                    )));
                }
            }
            b.slots.push_back(Slot {
                requests: s.requests,
                secs: s.secs,
                sources,
            });
        }
        if b.slots.is_empty() {
            b.slots.push_back(Slot::default());
        }
        b.fingerprints = Shares::from_file(file.fingerprint_secs, &file.fingerprints)
            .map_err(|what| invalid(&what))?;
        Ok(b)
    }
}

/// The state file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    /// Always [`FORMAT`].
    format: String,
    /// [`VERSION`].
    version: u32,
    /// Unix time it was written, seconds.
    saved_unix: u64,
    /// Services, by name, host and path prefix.
    services: Vec<ServiceFile>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceFile {
    name: String,
    host: String,
    path_prefix: String,
    slots: Vec<SlotFile>,
    /// Seconds the fingerprint shares were learned over (files of earlier builds have none).
    #[serde(default)]
    fingerprint_secs: f64,
    /// (id in hex, learned share and label).
    #[serde(default)]
    fingerprints: Vec<(String, Learned)>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotFile {
    requests: f64,
    secs: f64,
    sources: Vec<(u16, u32)>,
}

/// What a service is, as the state file names it.
pub(crate) type ServiceId = (String, String, String);

/// Baselines of services, as written to and read from the state file.
pub(crate) type Saved = Vec<(ServiceId, Baseline)>;

/// Reads a state file's bytes (public for the fuzz target): the baselines by service, each
/// covering `period_secs`.
///
/// # Errors
/// When the bytes are not a consistent state file of this version.
pub fn parse(bytes: &[u8], period_secs: f64) -> Result<usize, BaselineError> {
    parse_saved(bytes, period_secs).map(|saved| saved.len())
}

pub(crate) fn parse_saved(bytes: &[u8], period_secs: f64) -> Result<Saved, BaselineError> {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(BaselineError::TooLarge {
            bytes: bytes.len() as u64,
        });
    }
    let file: StateFile = serde_json::from_slice(bytes).map_err(|e| BaselineError::Parse {
        message: e.to_string(),
    })?;
    if file.format != FORMAT {
        return Err(BaselineError::Foreign {
            format: file.format.chars().take(64).collect(),
        });
    }
    if file.version != VERSION {
        return Err(BaselineError::Version { got: file.version });
    }
    if file.services.len() > crate::config::adaptive::MAX_SERVICES {
        return Err(BaselineError::Invalid {
            what: "more services than a configuration can have".into(),
        });
    }
    file.services
        .iter()
        .map(|s| {
            Ok((
                (s.name.clone(), s.host.clone(), s.path_prefix.clone()),
                Baseline::from_file(s, period_secs)?,
            ))
        })
        .collect()
}

/// Reads the state file at `path`.
pub(crate) fn load(path: &Path, period_secs: f64) -> Result<Saved, BaselineError> {
    let io = |op, source| BaselineError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(|e| io("stat", e))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(BaselineError::TooLarge { bytes: meta.len() });
    }
    let bytes = std::fs::read(path).map_err(|e| io("read", e))?;
    parse_saved(&bytes, period_secs)
}

/// Writes `baselines` to `path` atomically (a temporary file in the same directory, synced,
/// renamed over it), creating the directory (mode 0700) if needed.
pub(crate) fn save(
    path: &Path,
    baselines: &[(ServiceId, &Baseline)],
    saved_unix: u64,
) -> Result<(), BaselineError> {
    let io = |op, path: &Path, source| BaselineError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let file = StateFile {
        format: FORMAT.into(),
        version: VERSION,
        saved_unix,
        services: baselines
            .iter()
            .map(|((name, host, path_prefix), b)| {
                let (fingerprint_secs, fingerprints) = b.fingerprints.to_file();
                ServiceFile {
                    name: name.clone(),
                    host: host.clone(),
                    path_prefix: path_prefix.clone(),
                    slots: b.to_file(),
                    fingerprint_secs,
                    fingerprints,
                }
            })
            .collect(),
    };
    let text = serde_json::to_vec(&file).map_err(|e| BaselineError::Parse {
        message: e.to_string(),
    })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        use std::os::unix::fs::DirBuilderExt as _;
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io("create", dir, e))?;
        }
    }
    let tmp = path.with_extension("tmp");
    let mut out = std::fs::File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
    out.write_all(&text).map_err(|e| io("write", &tmp, e))?;
    out.sync_all().map_err(|e| io("sync", &tmp, e))?;
    drop(out);
    std::fs::rename(&tmp, path).map_err(|e| io("rename", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learned() -> Baseline {
        let mut b = Baseline::new(60.0);
        let mut h = Histogram::default();
        for i in 0..50 {
            h.add(1.0 + f64::from(i % 3));
        }
        let mut fingerprints = super::super::fingerprint::Counts::default();
        fingerprints.add(7, 3.0, || "GET /api/* \"curl\"".into());
        for _ in 0..120 {
            b.add(100.0, 1.0, &h);
            b.fingerprints.learn(&fingerprints, 60.0);
        }
        b
    }

    #[test]
    fn the_period_slides_by_learned_time() {
        let b = learned();
        assert_eq!(b.learned_secs(), 60.0, "the oldest slots rotated out");
        assert_eq!(b.rate(), Some(100.0));
        assert!(b.quantile(0.99).unwrap() <= 3.5);
        assert_eq!(Baseline::new(60.0).rate(), None);
    }

    #[test]
    fn a_saved_baseline_reads_back_and_a_foreign_or_corrupt_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("fg-baseline-{}", std::process::id()));
        let path = dir.join("sub/baseline.json");
        let b = learned();
        let id: ServiceId = ("all".into(), String::new(), String::new());
        save(&path, &[(id.clone(), &b)], 1).unwrap();
        let saved = load(&path, 60.0).unwrap();
        assert_eq!(saved, vec![(id, b)]);
        let text = std::fs::read_to_string(&path).unwrap();
        for (bytes, want) in [
            (b"\x00\xffgarbage".to_vec(), "not a baseline file"),
            (
                text.replace(FORMAT, "something-else").into_bytes(),
                "not a floodgate baseline file",
            ),
            (
                text.replace("\"version\":1", "\"version\":9").into_bytes(),
                "version 9",
            ),
            (
                text.replacen("\"sources\":[[", "\"sources\":[[999,1],[", 1)
                    .into_bytes(),
                "inconsistent",
            ),
            (
                text.as_bytes()[..text.len() / 2].to_vec(),
                "not a baseline file",
            ),
        ] {
            let err = parse_saved(&bytes, 60.0).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        let err = parse_saved(&vec![b' '; MAX_FILE_BYTES as usize + 1], 60.0).unwrap_err();
        assert!(matches!(err, BaselineError::TooLarge { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
