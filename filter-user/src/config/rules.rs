//! `[[rules]]`: what a detection rule matches, how it groups requests and what it does.

use serde::{Deserialize, Deserializer};

use crate::sensor::{Sensor, Signal};

use super::{Duration, Invalid, ensure, prefix_lengths};

/// One `[[rules]]` entry, as the detector uses it: match texts are `None` when empty (match
/// anything) and case-folded the way they are compared.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Rule {
    /// Name (log lines, metrics label, block reason).
    pub name: String,
    /// Which requests are counted together.
    pub key: RuleKey,
    /// Prefix length of IPv4 sources for [`RuleKey::Prefix`].
    pub prefix_v4: u8,
    /// Prefix length of IPv6 sources for [`RuleKey::Prefix`].
    pub prefix_v6: u8,
    /// Only requests with this method (upper case).
    #[serde(deserialize_with = "upper")]
    pub method: Option<String>,
    /// Only requests whose path starts with this.
    #[serde(deserialize_with = "verbatim")]
    pub path_prefix: Option<String>,
    /// Only requests with this Host (lower case; compared case-insensitively).
    #[serde(deserialize_with = "lower")]
    pub host: Option<String>,
    /// Only requests whose User-Agent contains this (lower case; case-insensitive).
    #[serde(deserialize_with = "lower")]
    pub user_agent: Option<String>,
    /// Only evidence from this sensor.
    pub sensor: SensorFilter,
    /// What is counted: requests, or TLS handshakes (kernel sensor, TLS ports).
    pub signal: Signal,
    /// Only responses with one of these statuses (empty: any; the proxy feed knows them).
    pub status: Vec<u16>,
    /// Only requests of this protocol, e.g. "HTTP/2.0" (upper case; empty: any).
    #[serde(deserialize_with = "upper")]
    pub protocol: Option<String>,
    /// What a request weighs: 1, or the seconds the backend spent on it (proxy feed), so that
    /// the threshold is in backend-seconds per second.
    pub weight: Weight,
    /// Requests per second over `window` above which the key offends (handshakes per second
    /// for `signal = "tls_handshakes"`; connections held open at once for `"connections"`).
    pub threshold_rps: f64,
    /// Sliding window length.
    pub window: Duration,
    /// Verified samples a key needs in the window before it can offend (guards against one
    /// heavily weighted sample); 0 is taken as 1.
    #[serde(deserialize_with = "at_least_one")]
    pub min_samples: u32,
    /// Block, or only log and count.
    pub action: Action,
    /// Block duration of a first offence.
    pub ttl: Duration,
    /// Whose requests count: this host's, or the fleet's (this host's plus the latest
    /// heavy-hitter reports of its `[fleet]` peers, added up once per second).
    pub scope: RuleScope,
}

impl Default for Rule {
    /// The values an entry gets for the keys it leaves out (no default name: each rule must
    /// have one).
    fn default() -> Self {
        Self {
            name: String::new(),
            // Per source address.
            key: RuleKey::Source,
            // A /24 and a /64, the usual allocation sizes.
            prefix_v4: 24,
            prefix_v6: 64,
            // Any method, path, Host and User-Agent.
            method: None,
            path_prefix: None,
            host: None,
            user_agent: None,
            // Evidence from every sensor, counted as requests of weight 1, any status.
            sensor: SensorFilter::Any,
            signal: Signal::Requests,
            status: Vec::new(),
            protocol: None,
            weight: Weight::Requests,
            // Far above a person, well below a flood.
            threshold_rps: 100.0,
            window: Duration::from_secs(1),
            min_samples: 8,
            action: Action::Block,
            // Long enough to hurt a flood, short enough to forgive a mistake.
            ttl: Duration::from_secs(600),
            // This host's requests alone.
            scope: RuleScope::Host,
        }
    }
}

/// `rules[].key`: which requests a rule counts together.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum RuleKey {
    /// Per source address.
    #[serde(rename = "source")]
    Source,
    /// Per source prefix.
    #[serde(rename = "prefix")]
    Prefix,
    /// Per source address and path.
    #[serde(rename = "source+path")]
    SourcePath,
    /// Per source address and Host.
    #[serde(rename = "source+host")]
    SourceHost,
}

/// `rules[].scope`: whose requests a rule counts.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RuleScope {
    /// This host's requests, decided on the event that crosses the threshold.
    Host,
    /// The fleet's: this host's rate plus its peers' reported rates of the same source (or
    /// prefix), decided once per second.
    Fleet,
}

/// `rules[].sensor`: which evidence a rule counts.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SensorFilter {
    /// Every sensor. A plaintext request the proxy also logs is then counted twice: give
    /// kernel and proxy evidence rules of their own (as the defaults do).
    Any,
    /// XDP only (plaintext request starts, TLS handshakes).
    Kernel,
    /// The proxy's request feed only (everything inside TLS, HTTP/2, HTTP/3).
    Proxy,
}

impl SensorFilter {
    /// True when events of `sensor` count.
    #[must_use]
    pub fn accepts(self, sensor: Sensor) -> bool {
        match self {
            Self::Any => true,
            Self::Kernel => sensor == Sensor::Kernel,
            Self::Proxy => sensor == Sensor::Proxy,
        }
    }
}

/// `rules[].weight`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Weight {
    /// Each request counts 1: the threshold is in requests per second.
    Requests,
    /// Each request counts the backend's time on it: the threshold is in backend-seconds per
    /// second (requests without an upstream time do not count).
    UpstreamTime,
}

/// `rules[].action`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Block the offending key's source.
    Block,
    /// Log and count only.
    Monitor,
}

impl Rule {
    fn validate(&self, path: &str) -> Result<(), Invalid> {
        ensure(
            (1..=filter_common::REASON_TEXT_LEN).contains(&self.name.len()),
            path,
            "name",
            format!("must be 1..={} bytes", filter_common::REASON_TEXT_LEN),
        )?;
        prefix_lengths(path, "prefix_v4", self.prefix_v4, self.prefix_v6)?;
        ensure(
            self.threshold_rps.is_finite() && self.threshold_rps > 0.0,
            path,
            "threshold_rps",
            "must be a positive number",
        )?;
        ensure(
            (Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&self.window),
            path,
            "window",
            "must be 100ms..=1h",
        )?;
        ensure(
            self.status.iter().all(|s| (100..=599).contains(s)),
            path,
            "status",
            "statuses are 100..=599",
        )?;
        let proxy_only = !self.status.is_empty() || self.weight == Weight::UpstreamTime;
        ensure(
            !(proxy_only && self.sensor == SensorFilter::Kernel),
            path,
            "sensor",
            "status and weight = \"upstream_time\" are known only to the proxy feed; use \
             sensor = \"proxy\" or \"any\"",
        )?;
        let no_request = matches!(self.signal, Signal::TlsHandshakes | Signal::Connections);
        ensure(
            !(no_request
                && (self.sensor == SensorFilter::Proxy
                    || proxy_only
                    || self.method.is_some()
                    || self.path_prefix.is_some()
                    || self.host.is_some()
                    || self.user_agent.is_some()
                    || self.protocol.is_some()
                    || !matches!(self.key, RuleKey::Source | RuleKey::Prefix))),
            path,
            "signal",
            "a TLS handshake or a held connection carries no request: signal = \
             \"tls_handshakes\" or \"connections\" takes no method, path, host, user agent, \
             protocol, status or upstream weight, a key of source or prefix, and the kernel sensor",
        )?;
        ensure(
            !(self.scope == RuleScope::Fleet
                && (self.signal == Signal::Connections
                    || !matches!(self.key, RuleKey::Source | RuleKey::Prefix))),
            path,
            "scope",
            "a fleet rule adds up rates of a source or prefix across hosts: it takes key = \
             \"source\" or \"prefix\" and a signal of requests or tls_handshakes",
        )?;
        ensure(!self.ttl.0.is_zero(), path, "ttl", "must be positive")
    }
}

/// The rules a file without a `rules` key gets (`rules = []` turns detection off).
#[must_use]
pub(super) fn defaults() -> Vec<Rule> {
    vec![
        // Plaintext floods, from the kernel's samples.
        Rule {
            name: "per-source-flood".into(),
            sensor: SensorFilter::Kernel,
            ..Rule::default()
        },
        // Floods inside TLS, HTTP/2 and HTTP/3, from the proxy's feed.
        Rule {
            name: "per-source-flood-proxy".into(),
            sensor: SensorFilter::Proxy,
            ..Rule::default()
        },
        // New TLS sessions without keep-alive: no proxy needed.
        Rule {
            name: "tls-handshake-flood".into(),
            sensor: SensorFilter::Kernel,
            signal: Signal::TlsHandshakes,
            threshold_rps: 50.0,
            ..Rule::default()
        },
        // Connections held open (slowloris): more at once than a NAT'd office needs.
        Rule {
            name: "connection-hog".into(),
            sensor: SensorFilter::Kernel,
            signal: Signal::Connections,
            threshold_rps: 256.0,
            min_samples: 1,
            ..Rule::default()
        },
        // Credential stuffing: failed logins.
        Rule {
            name: "failed-auth".into(),
            sensor: SensorFilter::Proxy,
            status: vec![401, 403],
            threshold_rps: 5.0,
            window: Duration::from_secs(10),
            min_samples: 20,
            ..Rule::default()
        },
        // Path scanning: many not-found answers. Monitor only: a broken client looks the same.
        Rule {
            name: "not-found-scan".into(),
            sensor: SensorFilter::Proxy,
            status: vec![404],
            threshold_rps: 20.0,
            window: Duration::from_secs(10),
            min_samples: 50,
            action: Action::Monitor,
            ..Rule::default()
        },
        // One source costing the backend more than half a second per second. Monitor only:
        // a legitimate heavy report looks the same; switch to block where it cannot be one.
        Rule {
            name: "backend-time".into(),
            sensor: SensorFilter::Proxy,
            weight: Weight::UpstreamTime,
            threshold_rps: 0.5,
            window: Duration::from_secs(10),
            min_samples: 20,
            action: Action::Monitor,
            ..Rule::default()
        },
    ]
}

/// Each rule, then the names' uniqueness (`path` is the list's key).
pub(super) fn validate(rules: &[Rule], path: &str) -> Result<(), Invalid> {
    for (i, rule) in rules.iter().enumerate() {
        let at = format!("{path}[{i}]");
        rule.validate(&at)?;
        ensure(
            !rules[..i].iter().any(|earlier| earlier.name == rule.name),
            &at,
            "name",
            format!("'{}' is used by an earlier rule", rule.name),
        )?;
    }
    Ok(())
}

/// Empty text is `None` (match anything); the rest is folded by `fold`.
fn match_text<'de, D: Deserializer<'de>>(
    d: D,
    fold: fn(&str) -> String,
) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    Ok((!text.is_empty()).then(|| fold(&text)))
}

fn upper<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match_text(d, str::to_ascii_uppercase)
}

fn lower<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match_text(d, str::to_ascii_lowercase)
}

fn verbatim<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match_text(d, str::to_owned)
}

fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Ok(u32::deserialize(d)?.max(1))
}
