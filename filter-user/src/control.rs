//! The typed protocol between the CLI and the running daemon over its control socket: one
//! JSON request line, one JSON reply line. Both ends use these types, so a field one side
//! sends is a field the other side reads. Requests carry [`PROTOCOL_VERSION`]; a request the
//! daemon cannot read gets a [`Reply::Error`] naming why.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::IpAddr,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    detect::adaptive::{AdaptiveWhy, ServiceView},
    enforce::Origin,
    target::Target,
};

/// Version of this protocol; bumped on an incompatible change.
pub(crate) const PROTOCOL_VERSION: u32 = 1;

/// The default control socket path (the one place it is written down; `[control] socket`
/// and `--socket` override it).
pub(crate) const DEFAULT_SOCKET: &str = "/run/floodgate/control.sock";

/// Environment variable naming the socket for the CLI.
pub(crate) const SOCKET_ENV: &str = "FLOODGATE_CONTROL_SOCKET";

/// Longest request line the daemon reads.
pub(crate) const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// One request line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct RequestLine {
    /// The sender's [`PROTOCOL_VERSION`].
    pub version: u32,
    /// What is asked.
    #[serde(flatten)]
    pub request: Request,
}

/// What the CLI can ask the daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub(crate) enum Request {
    /// The heaviest talkers.
    Top {
        /// How many.
        limit: usize,
    },
    /// Live rates of an address and the decision in force for it.
    Why {
        /// The address.
        addr: IpAddr,
    },
    /// The daemon's own view: interfaces (as the kernel has them), sampling, tracked keys.
    Status,
    /// The operator changed these block entries (or, with `all`, flushed the maps): re-read
    /// them so that the daemon's expiry index stays in step.
    Refresh {
        /// Targets written or removed.
        targets: Vec<Target>,
        /// Every entry may have changed (a flush).
        all: bool,
    },
    /// Re-read the configuration the daemon was started with and apply it (what SIGHUP
    /// does), answering whether it was taken.
    Reload,
    /// Share the operator's blocks of these targets with the fleet (`block add --fleet`; the
    /// CLI wrote them into this host's maps already).
    FleetShare {
        /// The targets blocked.
        targets: Vec<Target>,
        /// Their TTL in seconds (`None`: no expiry here; the fleet's `max_ttl` elsewhere).
        ttl_secs: Option<u64>,
        /// The operator's reason.
        reason: String,
    },
    /// Lift these blocks fleet-wide (`block del --fleet`).
    FleetLift {
        /// The targets.
        targets: Vec<Target>,
    },
    /// The learned baselines and attack state of the adaptive services.
    Baseline,
}

/// The daemon's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub(crate) enum Reply {
    /// Answer to [`Request::Top`].
    Top(TopReply),
    /// Answer to [`Request::Why`].
    Why(WhyReply),
    /// Answer to [`Request::Status`].
    Status(Box<StatusReply>),
    /// Answer to [`Request::Refresh`].
    Refreshed {
        /// Exact entries the daemon now knows.
        exact: usize,
        /// Prefix entries the daemon now knows.
        prefix: usize,
    },
    /// Answer to [`Request::Reload`]: the new configuration is in force.
    Reloaded(ReloadReply),
    /// Answer to [`Request::FleetShare`] and [`Request::FleetLift`]: handed to the fleet
    /// task (published now, or after the reconnection while NATS is unreachable).
    FleetQueued {
        /// Operations queued.
        queued: usize,
        /// Connected to NATS now.
        up: bool,
    },
    /// Answer to [`Request::Baseline`].
    Baseline(BaselineReply),
    /// The request could not be served.
    Error {
        /// Why.
        error: ControlError,
    },
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ControlError {
    /// Not a request of this protocol (bad JSON, unknown `cmd`, missing field).
    #[error("bad request: {message}")]
    BadRequest {
        /// The parser's message.
        message: String,
    },
    /// Another protocol version.
    #[error("protocol version {got} is not supported (the daemon speaks {supported})")]
    UnsupportedVersion {
        /// The request's version.
        got: u32,
        /// The daemon's.
        supported: u32,
    },
    /// The configuration the daemon re-read is invalid; the running one stays in force.
    #[error("invalid configuration, the running one stays in force: {message}")]
    BadConfig {
        /// The configuration error (file, key and reason).
        message: String,
    },
    /// The daemon could not do it.
    #[error("the daemon failed: {message}")]
    Failed {
        /// What went wrong.
        message: String,
    },
}

/// What a reload put in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReloadReply {
    /// Where the configuration was read from (a path, or the embedded default).
    pub source: String,
    /// Rule names now in force.
    pub rules: Vec<String>,
    /// HTTP ports now filtered.
    pub ports: Vec<u16>,
    /// Allow entries from the configuration.
    pub allow: usize,
}

/// Heavy talkers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct TopReply {
    /// Highest rate first.
    pub top: Vec<TalkerRow>,
    /// Rate keys tracked.
    pub tracked: usize,
    /// Bytes of rate state per tracked key.
    pub bytes_per_client: usize,
    /// Current 1-in-N sampling factor of the kernel sensor. Added in protocol 1 with a serde
    /// default (as are the totals below), so a reply of an older daemon still reads.
    #[serde(default)]
    pub sample_every: u32,
    /// Block decisions the daemon wrote since it started (rules and aggregation; a decision
    /// already in force is not counted again). `top --watch` shows the rate between replies.
    #[serde(default)]
    pub blocks_written: u64,
    /// Evidence events handed to the detector since start, by sensor.
    #[serde(default)]
    pub evidence: EvidenceTotals,
    /// The kernel's packet outcomes, summed over CPUs (totals since the program was loaded).
    #[serde(default)]
    pub packets: PacketTotals,
}

/// Evidence events since the daemon started, by sensor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EvidenceTotals {
    /// Request starts sampled by the XDP program (verified sockets).
    pub kernel: u64,
    /// Requests reported by the proxy feed.
    pub proxy: u64,
}

/// Packet outcome counters of the pinned per-CPU array, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PacketTotals {
    /// Passed (no entry matched).
    pub passed: u64,
    /// Dropped by an exact block entry.
    pub dropped_exact: u64,
    /// Dropped by a prefix block entry.
    pub dropped_prefix: u64,
    /// Monitor mode: matched, passed.
    pub would_drop: u64,
    /// Matched a block entry but allow-listed: passed.
    pub allowed: u64,
}

/// One talker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct TalkerRow {
    /// Source address.
    pub key: IpAddr,
    /// Requests/s, smoothed.
    pub rate: f64,
    /// Events seen.
    pub samples: u64,
    /// Most-hit paths, most first.
    pub paths: Vec<String>,
    /// The same paths with their request counts.
    pub path_counts: Vec<(String, u64)>,
}

/// Live state of one address.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct WhyReply {
    /// Rate under every source- or prefix-keyed rule.
    pub rates: Vec<RuleRate>,
    /// The decision this daemon wrote that is in force for the address (exact entry first,
    /// then the covering prefix it decided), if any.
    pub decision: Option<DecisionView>,
    /// The numbers behind an adaptive decision for the address, when it is one.
    #[serde(default)]
    pub adaptive: Option<AdaptiveWhy>,
}

/// One rule's view of an address.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct RuleRate {
    /// Rule name.
    pub rule: String,
    /// Requests/s now.
    pub rate: f64,
    /// Its threshold.
    pub threshold: f64,
}

/// A decision as `why` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct DecisionView {
    /// What was blocked.
    pub target: Target,
    /// The rule (or "aggregate").
    pub rule: String,
    /// Who decided.
    pub origin: Origin,
    /// The fleet host that decided, for a fleet peer's decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_host: Option<String>,
    /// Rate at decision, requests/s.
    pub rate: f64,
    /// The threshold it crossed.
    pub threshold: f64,
    /// Repeat-offence number.
    pub offence: u32,
    /// The TTL it was given, seconds.
    pub ttl_secs: u64,
    /// Seconds left.
    pub ttl_remaining_secs: u64,
}

/// The daemon's status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct StatusReply {
    /// Protected interfaces with what the kernel says about them.
    pub interfaces: Vec<InterfaceStatus>,
    /// Current 1-in-N sampling factor.
    pub sample_every: u32,
    /// Rate keys tracked.
    pub tracked: usize,
    /// Events the detector processed.
    pub events: u64,
    /// Kernel samples that were not a parseable request start.
    pub unparsed: u64,
    /// Rule names.
    pub rules: Vec<String>,
    /// Block entries the daemon's index knows (exact, prefix).
    pub known_blocks: (usize, usize),
    /// The proxy feed, when its socket or its file is on.
    pub proxy: Option<ProxyStatus>,
    /// The CrowdSec bouncer, when `[crowdsec]` is enabled.
    #[serde(default)]
    pub crowdsec: Option<CrowdsecStatus>,
    /// The fleet, when `[fleet]` is enabled.
    #[serde(default)]
    pub fleet: Option<FleetStatus>,
    /// The adaptive services (empty when `[adaptive]` is off).
    #[serde(default)]
    pub adaptive: Vec<ServiceView>,
}

/// The fleet connection and what it shared and enforced since the daemon started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct FleetStatus {
    /// This host's name in the fleet.
    pub host: String,
    /// The NATS servers.
    pub servers: Vec<String>,
    /// The decision bucket.
    pub bucket: String,
    /// Connected, with the bucket watched.
    pub up: bool,
    /// Unix time at which the last full read of the bucket finished.
    pub last_sync_unix: Option<f64>,
    /// Why the last session ended, while it is down.
    pub last_error: Option<String>,
    /// This host's decisions and deletions handed to the fleet task.
    pub published: u64,
    /// Operations that failed to publish (queued again for the next session).
    pub publish_failures: u64,
    /// Peers' decisions written to the maps.
    pub remote_applied: u64,
    /// Peers' decisions refused (malformed, or by the guard).
    pub remote_refused: u64,
    /// Peers' entries removed (deleted in the bucket, or gone at a sync).
    pub remote_deleted: u64,
    /// Peers whose heavy-hitter report is at most 2 s old.
    pub peers_reporting: usize,
}

/// The adaptive detector's baselines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct BaselineReply {
    /// `[adaptive] enabled`.
    pub enabled: bool,
    /// Where the baselines are kept.
    pub state_file: PathBuf,
    /// The services.
    pub services: Vec<ServiceView>,
}

/// The CrowdSec bouncer's connection and what it enforced since the daemon started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct CrowdsecStatus {
    /// The LAPI URL.
    pub lapi_url: String,
    /// True after a successful poll, false after a failed one (or before the first).
    pub up: bool,
    /// Unix time of the last successful poll, seconds.
    pub last_sync_unix: Option<f64>,
    /// Why the last poll failed, while it is down.
    pub last_error: Option<String>,
    /// Decisions written to the maps.
    pub applied: u64,
    /// Entries removed because CrowdSec lifted them.
    pub deleted: u64,
    /// Decisions refused by the guard.
    pub refused: u64,
    /// Decisions that did not parse.
    pub malformed: u64,
    /// Failed polls.
    pub poll_failures: u64,
}

/// What the proxy feed delivered and refused since the daemon started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProxyStatus {
    /// The socket, when it is open.
    pub socket: Option<PathBuf>,
    /// The file followed, when it is on.
    pub file: Option<PathBuf>,
    /// Bytes of the file not read yet.
    pub file_backlog: u64,
    /// Why the file is not read now (untrusted, unreadable), if it is not.
    pub file_problem: Option<String>,
    /// Requests received (socket and file) and handed to the detector.
    pub events: u64,
    /// Datagrams from users not in `proxy.allowed_users`.
    pub refused: u64,
    /// Datagrams and lines that were no request line of this format.
    pub unparsed: u64,
    /// Datagrams cut by the sender but used for their leading fields.
    pub cut: u64,
    /// Datagrams and lines lost: oversized, or dropped by the kernel with the receive queue
    /// full.
    pub dropped: u64,
}

/// One protected interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InterfaceStatus {
    /// Interface name.
    pub name: String,
    /// True when the kernel has our program attached to it now.
    pub attached: bool,
    /// Times the program was re-attached after the interface came back.
    pub reattached: u64,
}

impl PacketTotals {
    /// The outcome counters out of the pinned counter array.
    #[must_use]
    pub(crate) fn from_counters(counters: &[u64; filter_common::counter::COUNT as usize]) -> Self {
        use filter_common::counter;
        let at = |index: u32| counters[index as usize];
        Self {
            passed: at(counter::PASSED),
            dropped_exact: at(counter::DROPPED_EXACT),
            dropped_prefix: at(counter::DROPPED_PREFIX),
            would_drop: at(counter::WOULD_DROP),
            allowed: at(counter::ALLOWED),
        }
    }
}

/// Errors talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nobody answers on the socket.
    #[error("the floodgate daemon is not running (no answer on {path}: {source})")]
    DaemonDown {
        /// The socket.
        path: PathBuf,
        /// Why the connection failed.
        #[source]
        source: std::io::Error,
    },
    /// The exchange failed half way.
    #[error("control socket {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The reply is not of this protocol.
    #[error("control socket {path}: unreadable reply: {message}")]
    BadReply {
        /// The socket.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// The daemon refused the request.
    #[error("the daemon refused the request: {0}")]
    Refused(#[from] ControlError),
}

/// The socket the CLI talks to: `--socket`, else `$FLOODGATE_CONTROL_SOCKET`, else the
/// configuration's `[control] socket` (when readable), else [`DEFAULT_SOCKET`].
#[must_use]
pub(crate) fn socket_path(flag: Option<&Path>, configured: Option<PathBuf>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os(SOCKET_ENV).map(PathBuf::from))
        .or(configured)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// Sends one request and reads the reply; a [`Reply::Error`] becomes [`ClientError::Refused`].
pub(crate) fn request(socket: &Path, request: Request) -> Result<Reply, ClientError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::DaemonDown {
        path: socket.to_path_buf(),
        source,
    })?;
    let io = |source| ClientError::Io {
        path: socket.to_path_buf(),
        source,
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    let line = RequestLine {
        version: PROTOCOL_VERSION,
        request,
    };
    let text = serde_json::to_string(&line).map_err(|e| ClientError::BadReply {
        path: socket.to_path_buf(),
        message: e.to_string(),
    })?;
    writeln!(stream, "{text}").map_err(io)?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).map_err(io)?;
    match serde_json::from_str::<Reply>(&reply) {
        Ok(Reply::Error { error }) => Err(ClientError::Refused(error)),
        Ok(reply) => Ok(reply),
        Err(e) => Err(ClientError::BadReply {
            path: socket.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// Parses one request line as the daemon does.
pub(crate) fn parse_request(line: &str) -> Result<Request, ControlError> {
    #[derive(Deserialize)]
    struct Version {
        version: Option<u32>,
    }
    let version = serde_json::from_str::<Version>(line)
        .map_err(|e| ControlError::BadRequest {
            message: e.to_string(),
        })?
        .version;
    match version {
        Some(PROTOCOL_VERSION) => {}
        Some(got) => {
            return Err(ControlError::UnsupportedVersion {
                got,
                supported: PROTOCOL_VERSION,
            });
        }
        None => {
            return Err(ControlError::BadRequest {
                message: format!("no protocol version (this daemon speaks {PROTOCOL_VERSION})"),
            });
        }
    }
    serde_json::from_str::<RequestLine>(line)
        .map(|l| l.request)
        .map_err(|e| ControlError::BadRequest {
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_get_typed_errors() {
        for request in [
            Request::Top { limit: 5 },
            Request::Why {
                addr: "2001:2::1".parse().unwrap(),
            },
            Request::Status,
            Request::Refresh {
                targets: vec!["198.18.0.0/24".parse().unwrap()],
                all: false,
            },
            Request::Reload,
            Request::Baseline,
        ] {
            let line = serde_json::to_string(&RequestLine {
                version: PROTOCOL_VERSION,
                request: request.clone(),
            })
            .unwrap();
            assert_eq!(parse_request(&line).unwrap(), request, "{line}");
        }
        assert!(matches!(
            parse_request(r#"{"version":1,"cmd":"reboot"}"#),
            Err(ControlError::BadRequest { .. })
        ));
        assert!(matches!(
            parse_request(r#"{"version":7,"cmd":"status"}"#),
            Err(ControlError::UnsupportedVersion { got: 7, .. })
        ));
        assert!(matches!(
            parse_request(r#"{"cmd":"status"}"#),
            Err(ControlError::BadRequest { .. })
        ));
        assert!(matches!(
            parse_request("\u{0}garbage"),
            Err(ControlError::BadRequest { .. })
        ));
        let reply = Reply::Error {
            error: ControlError::UnsupportedVersion {
                got: 7,
                supported: 1,
            },
        };
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), reply);
        for reply in [
            Reply::Reloaded(ReloadReply {
                source: "/etc/floodgate/floodgate.toml".into(),
                rules: vec!["flood".into()],
                ports: vec![80],
                allow: 1,
            }),
            Reply::Error {
                error: ControlError::BadConfig {
                    message: "filter.ports: 0 is not a port".into(),
                },
            },
        ] {
            let text = serde_json::to_string(&reply).unwrap();
            assert_eq!(
                serde_json::from_str::<Reply>(&text).unwrap(),
                reply,
                "{text}"
            );
        }
    }
}
