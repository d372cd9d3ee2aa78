//! CrowdSec bouncer: polls the Local API's decision stream (`GET /v1/decisions/stream`,
//! `X-Api-Key`) on its own task and hands the decisions to the daemon loop, which never waits
//! on HTTP. The first answer after a start or a failure is asked with `startup=true`: it is the
//! whole truth, and the loop removes CrowdSec entries that are not in it. Later answers are
//! deltas, with the whole set asked for again every ten minutes. While the LAPI is down the
//! maps keep what they hold; polls retry with a doubling back-off (up to a minute).

pub mod http;
pub mod stream;

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::sync::mpsc;

use self::{http::Endpoint, stream::CsDecision};
use crate::{config::crowdsec::Crowdsec, target::Target};

/// Decisions handed to the loop per message, so that a blocklist of 100,000 entries is
/// written in slices between the loop's other work.
const CHUNK: usize = 4096;
/// The whole set is asked for again this often: the LAPI's deltas (decisions created since the
/// bouncer's last pull) miss decisions committed while a poll ran, as a large import does.
const FULL_RESYNC: Duration = Duration::from_secs(600);
/// Longest wait between two attempts while the LAPI is down.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What the poller tells the daemon loop.
#[derive(Debug)]
pub(crate) enum Event {
    /// A slice of one answer's decisions.
    Decisions {
        /// Bans to enforce.
        new: Vec<CsDecision>,
        /// Decisions lifted.
        deleted: Vec<CsDecision>,
    },
    /// The `startup=true` answer was handed over entirely; these are all its targets. CrowdSec
    /// entries in the maps that are not among them were lifted while we did not listen.
    StartupDone {
        /// Every target of the startup answer.
        targets: HashSet<Target>,
    },
    /// A poll succeeded.
    Synced {
        /// Unix time of the answer, seconds.
        at_unix: f64,
        /// Decisions of the answer that did not parse.
        malformed: u64,
    },
    /// A poll failed; the maps keep what they hold.
    Failed {
        /// Why (never contains the key).
        error: String,
        /// The LAPI answered, but not with a decision stream.
        malformed_answer: bool,
    },
}

/// Why the bouncer key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file cannot be read.
    #[error("crowdsec.api_key_file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Group or others may read (or write) the key file.
    #[error(
        "crowdsec.api_key_file {path}: refusing a key file that group or others can access \
         (mode {mode:o}; chmod 600)"
    )]
    Insecure {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file holds no usable key.
    #[error("crowdsec.api_key_file {path}: no key in it (one line of printable ASCII)")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// The bouncer key: `api_key`, or the first line of `api_key_file` (mode 0600/0400 only).
pub fn load_key(settings: &Crowdsec) -> Result<String, KeyError> {
    let Some(path) = &settings.api_key_file else {
        return Ok(settings.api_key.clone());
    };
    read_key_file(path)
}

fn read_key_file(path: &Path) -> Result<String, KeyError> {
    use std::os::unix::fs::PermissionsExt as _;
    let read = |source| KeyError::Read {
        path: path.into(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Insecure {
            path: path.into(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    let key = text.lines().next().unwrap_or("").trim();
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(KeyError::Empty { path: path.into() });
    }
    Ok(key.to_owned())
}

/// The stream's path and query: the configured scopes and filters, `startup=true` when the
/// whole set is wanted.
fn stream_query(settings: &Crowdsec, startup: bool) -> String {
    let scopes: Vec<String> = settings
        .scopes
        .iter()
        .map(|s| s.as_str().to_ascii_lowercase())
        .collect();
    let mut query = format!(
        "/v1/decisions/stream?startup={startup}&scopes={}",
        scopes.join(",")
    );
    for (key, words) in [
        ("origins", &settings.origins),
        ("scenarios_containing", &settings.scenarios_containing),
        (
            "scenarios_not_containing",
            &settings.scenarios_not_containing,
        ),
    ] {
        if !words.is_empty() {
            let words: Vec<String> = words.iter().map(|w| percent_encode(w)).collect();
            query.push_str(&format!("&{key}={}", words.join(",")));
        }
    }
    query
}

fn percent_encode(word: &str) -> String {
    let mut out = String::new();
    for b in word.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Starts the poller on its own task; it runs until the receiver is dropped.
pub(crate) fn spawn(settings: Crowdsec, key: String) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        // Validated with the configuration; a failure here still only stops the poller.
        match Endpoint::parse(&settings.lapi_url) {
            Ok(endpoint) => poll(&endpoint, &settings, &key, &tx).await,
            Err(err) => {
                let _ = tx
                    .send(Event::Failed {
                        error: err.to_string(),
                        malformed_answer: false,
                    })
                    .await;
            }
        }
    });
    rx
}

async fn poll(endpoint: &Endpoint, settings: &Crowdsec, key: &str, tx: &mpsc::Sender<Event>) {
    let interval = settings.poll_interval.0;
    let mut startup = true;
    let mut backoff = interval;
    let mut last_full = tokio::time::Instant::now();
    loop {
        if last_full.elapsed() >= FULL_RESYNC {
            startup = true;
        }
        let outcome = poll_once(endpoint, settings, key, startup, tx).await;
        let wait = match outcome {
            Ok(()) => {
                if startup {
                    last_full = tokio::time::Instant::now();
                }
                startup = false;
                backoff = interval;
                interval
            }
            Err(Some(event)) => {
                if tx.send(event).await.is_err() {
                    return;
                }
                // Ask for the whole set again: decisions may have been lifted meanwhile.
                startup = true;
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF.max(interval));
                wait
            }
            // The daemon stopped listening.
            Err(None) => return,
        };
        tokio::time::sleep(wait).await;
    }
}

/// One poll; `Err(Some(failure))` to report, `Err(None)` when the loop is gone.
async fn poll_once(
    endpoint: &Endpoint,
    settings: &Crowdsec,
    key: &str,
    startup: bool,
    tx: &mpsc::Sender<Event>,
) -> Result<(), Option<Event>> {
    let body = endpoint
        .get(&stream_query(settings, startup), key, settings.timeout.0)
        .await
        .map_err(|err| {
            Some(Event::Failed {
                error: err.to_string(),
                malformed_answer: false,
            })
        })?;
    let scopes = settings.scopes.clone();
    // A blocklist answer is tens of megabytes: parse it off the loop's thread.
    let parsed = tokio::task::spawn_blocking(move || stream::parse(&body, &scopes))
        .await
        .map_err(|err| {
            Some(Event::Failed {
                error: format!("parsing the answer: {err}"),
                malformed_answer: true,
            })
        })?;
    let batch = parsed.map_err(|err| {
        Some(Event::Failed {
            error: err.to_string(),
            malformed_answer: true,
        })
    })?;
    let targets: Option<HashSet<Target>> =
        startup.then(|| batch.new.iter().map(|d| d.target).collect());
    let mut new = batch.new.into_iter().peekable();
    let mut deleted = batch.deleted.into_iter().peekable();
    while new.peek().is_some() || deleted.peek().is_some() {
        let event = Event::Decisions {
            new: new.by_ref().take(CHUNK).collect(),
            deleted: deleted.by_ref().take(CHUNK).collect(),
        };
        tx.send(event).await.map_err(|_| None)?;
    }
    if let Some(targets) = targets {
        tx.send(Event::StartupDone { targets })
            .await
            .map_err(|_| None)?;
    }
    let at_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    tx.send(Event::Synced {
        at_unix,
        malformed: batch.malformed,
    })
    .await
    .map_err(|_| None)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn key_file_rules() {
        let dir = std::env::temp_dir().join(format!("floodgate-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, "s3cret-key\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_key_file(&file).unwrap(), "s3cret-key");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_key_file(&file).unwrap_err();
        assert!(
            matches!(err, KeyError::Insecure { mode: 0o644, .. }),
            "{err}"
        );
        assert!(!err.to_string().contains("s3cret"), "{err}");
        std::fs::write(&file, "\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(matches!(read_key_file(&file), Err(KeyError::Empty { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn queries() {
        let mut s = Crowdsec::default();
        assert_eq!(
            stream_query(&s, true),
            "/v1/decisions/stream?startup=true&scopes=ip,range"
        );
        s.origins = vec!["cscli".into(), "CAPI".into()];
        s.scenarios_not_containing = vec!["a/b&c".into()];
        assert_eq!(
            stream_query(&s, false),
            "/v1/decisions/stream?startup=false&scopes=ip,range&origins=cscli,CAPI\
             &scenarios_not_containing=a%2Fb%26c"
        );
    }
}
