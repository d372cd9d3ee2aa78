//! The TOML configuration: every key has a documented default (`default-config.toml` is the
//! embedded default and the example file), unknown keys are errors, and validation names the
//! key and the problem.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration as StdDuration,
};

use serde::Deserialize;

mod duration;

pub use self::duration::{Duration, DurationError};
use crate::target::Target;

/// Default configuration path.
pub const DEFAULT_PATH: &str = "/etc/floodgate/floodgate.toml";

/// The embedded default configuration (also the documented example, packaged as
/// /usr/share/doc/floodgate/floodgate.toml.example).
pub const DEFAULT_TOML: &str = include_str!("../../default-config.toml");

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, unknown key or wrong type (toml's message names the key and line).
    #[error("{origin}: {message}")]
    Parse {
        /// File or "embedded default".
        origin: String,
        /// The parser's message.
        message: String,
    },
    /// A value out of range or inconsistent.
    #[error("{origin}: {key}: {problem}")]
    Invalid {
        /// File or "embedded default".
        origin: String,
        /// Dotted key.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// The file is writable by others: anyone could rewrite the rules.
    #[error("{path}: refusing a configuration writable by group or others (chmod go-w)")]
    Insecure {
        /// The file.
        path: PathBuf,
    },
}

/// The whole configuration, as read.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where and how the XDP program runs.
    pub filter: FilterConfig,
    /// Kernel-side sampling of request starts.
    pub sampling: SamplingConfig,
    /// Daemon state bounds.
    pub state: StateConfig,
    /// Prometheus exporter.
    pub metrics: MetricsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Control socket for `floodgate top` / `why`.
    pub control: ControlConfig,
    /// Addresses and prefixes that are never blocked.
    pub allow: Vec<String>,
    /// Detection rules, evaluated for every sample.
    pub rules: Vec<RuleConfig>,
    /// Longer blocks for repeat offenders.
    pub escalation: EscalationConfig,
    /// Blocking a whole prefix when many of its addresses offend.
    pub aggregation: AggregationConfig,
    /// Collateral-damage guard.
    pub guard: GuardConfig,
}

/// `[guard]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    /// No IPv4 prefix shorter (wider) than this is ever blocked by the daemon.
    pub max_prefix_v4: u8,
    /// No IPv6 prefix shorter (wider) than this is ever blocked by the daemon.
    pub max_prefix_v6: u8,
    /// A prefix block may cover at most this share of the legitimate clients seen in `window`.
    pub max_legit_share: f64,
    /// How long a client counts as recently seen.
    pub window: String,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            max_prefix_v4: 16,
            max_prefix_v6: 48,
            max_legit_share: 0.1,
            window: "10m".into(),
        }
    }
}

/// `[filter]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {
    /// Interfaces to protect (`--iface` overrides).
    pub interfaces: Vec<String>,
    /// Start even when a listed interface does not exist yet, and attach when it appears
    /// (false: such a start fails).
    pub wait_for_interfaces: bool,
    /// "driver" (native XDP) or "skb" (generic).
    pub attach_mode: String,
    /// Count matches as would-drop instead of dropping.
    pub monitor: bool,
    /// TCP ports whose request starts are sampled.
    pub ports: Vec<u16>,
    /// Close the established connections of a source when the daemon blocks it (`ss -K`), so
    /// that requests it already queued stop costing the server.
    pub reset_connections: bool,
}

/// `[sampling]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingConfig {
    /// Samples per second the daemon accepts; the 1-in-N factor adapts to stay under it.
    pub budget_per_sec: u32,
    /// Payload bytes copied per sample (1..=256).
    pub payload_bytes: u32,
}

/// `[state]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// Hard cap of tracked rate keys (memory ≈ 40 bytes each).
    pub max_tracked: usize,
    /// How often expired block entries are removed from the maps.
    pub sweep_interval: String,
}

/// `[metrics]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Listen address of the Prometheus endpoint; "off" disables it.
    pub listen: String,
}

/// `[log]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// error, warn, info, debug or trace (`RUST_LOG` overrides).
    pub level: String,
}

/// `[control]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// Unix socket path (mode 0600).
    pub socket: PathBuf,
}

/// One `[[rules]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleConfig {
    /// Name (log lines, metrics label, block reason).
    pub name: String,
    /// "source", "prefix", "source+path" or "source+host".
    pub key: String,
    /// Prefix length of IPv4 sources for `key = "prefix"`.
    pub prefix_v4: u8,
    /// Prefix length of IPv6 sources for `key = "prefix"`.
    pub prefix_v6: u8,
    /// Only requests with this method (empty: any).
    pub method: String,
    /// Only requests whose path starts with this (empty: any).
    pub path_prefix: String,
    /// Only requests with this Host (empty: any; case-insensitive).
    pub host: String,
    /// Only requests whose User-Agent contains this (empty: any; case-insensitive).
    pub user_agent: String,
    /// Requests per second over `window` above which the key offends.
    pub threshold_rps: f64,
    /// Sliding window length.
    pub window: String,
    /// Verified samples a key needs in the window before it can offend (guards against one
    /// heavily weighted sample).
    pub min_samples: u32,
    /// "block" or "monitor" (log and count only).
    pub action: String,
    /// Block duration of a first offence.
    pub ttl: String,
}

/// `[escalation]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscalationConfig {
    /// Each repeat offence multiplies the TTL by this (1: no escalation).
    pub factor: f64,
    /// TTL ceiling.
    pub max_ttl: String,
    /// An offence is forgotten after this long.
    pub memory: String,
}

/// `[aggregation]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AggregationConfig {
    /// Block the prefix when this many of its addresses are blocked within `period` (0: off).
    pub min_addresses: usize,
    /// The period.
    pub period: String,
    /// IPv4 prefix length aggregated to.
    pub prefix_v4: u8,
    /// IPv6 prefix length aggregated to.
    pub prefix_v6: u8,
    /// TTL of a prefix block.
    pub ttl: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            filter: FilterConfig::default(),
            sampling: SamplingConfig::default(),
            state: StateConfig::default(),
            metrics: MetricsConfig::default(),
            log: LogConfig::default(),
            control: ControlConfig::default(),
            allow: Vec::new(),
            rules: default_rules(),
            escalation: EscalationConfig::default(),
            aggregation: AggregationConfig::default(),
            guard: GuardConfig::default(),
        }
    }
}

/// The rules used when a file has no `rules` key: one per-source flood rule.
/// (`rules = []` turns detection off.)
fn default_rules() -> Vec<RuleConfig> {
    vec![RuleConfig {
        name: "per-source-flood".into(),
        ..RuleConfig::default()
    }]
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            wait_for_interfaces: false,
            attach_mode: "driver".into(),
            monitor: false,
            ports: vec![80, 8080],
            reset_connections: true,
        }
    }
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            budget_per_sec: 100_000,
            payload_bytes: 256,
        }
    }
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            max_tracked: 1 << 20,
            sweep_interval: "1s".into(),
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9477".into(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from(crate::control::DEFAULT_SOCKET),
        }
    }
}

impl Default for RuleConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            key: "source".into(),
            prefix_v4: 24,
            prefix_v6: 64,
            method: String::new(),
            path_prefix: String::new(),
            host: String::new(),
            user_agent: String::new(),
            threshold_rps: 100.0,
            window: "1s".into(),
            min_samples: 8,
            action: "block".into(),
            ttl: "10m".into(),
        }
    }
}

impl Default for EscalationConfig {
    fn default() -> Self {
        Self {
            factor: 2.0,
            max_ttl: "24h".into(),
            memory: "24h".into(),
        }
    }
}

impl Default for AggregationConfig {
    fn default() -> Self {
        Self {
            min_addresses: 16,
            period: "60s".into(),
            prefix_v4: 24,
            prefix_v6: 64,
            ttl: "10m".into(),
        }
    }
}

/// Which requests a rule counts together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKey {
    /// Per source address.
    Source,
    /// Per source prefix.
    Prefix,
    /// Per source address and path.
    SourcePath,
    /// Per source address and Host.
    SourceHost,
}

/// A validated rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Name.
    pub name: String,
    /// Grouping.
    pub key: RuleKey,
    /// Prefix lengths for [`RuleKey::Prefix`].
    pub prefix_v4: u8,
    /// IPv6 prefix length for [`RuleKey::Prefix`].
    pub prefix_v6: u8,
    /// Method filter (upper case), if any.
    pub method: Option<String>,
    /// Path prefix filter, if any.
    pub path_prefix: Option<String>,
    /// Host filter (lower case), if any.
    pub host: Option<String>,
    /// User-Agent substring (lower case), if any.
    pub user_agent: Option<String>,
    /// Threshold in requests per second.
    pub threshold_rps: f64,
    /// Window.
    pub window: StdDuration,
    /// Minimum verified samples.
    pub min_samples: u32,
    /// True: block; false: monitor only.
    pub block: bool,
    /// First-offence TTL.
    pub ttl: StdDuration,
}

/// The validated configuration the daemon runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Interfaces.
    pub interfaces: Vec<String>,
    /// Wait for missing interfaces instead of failing the start.
    pub wait_for_interfaces: bool,
    /// SKB mode.
    pub skb: bool,
    /// Monitor mode.
    pub monitor: bool,
    /// Protected ports.
    pub ports: Vec<u16>,
    /// Close a blocked source's established connections.
    pub reset_connections: bool,
    /// Sample budget per second.
    pub sample_budget: u32,
    /// Payload bytes per sample.
    pub payload_bytes: u32,
    /// Rate state cap.
    pub max_tracked: usize,
    /// Sweep interval.
    pub sweep_interval: StdDuration,
    /// Metrics listen address (None: off).
    pub metrics_listen: Option<SocketAddr>,
    /// Log level.
    pub log_level: log::LevelFilter,
    /// Control socket.
    pub control_socket: PathBuf,
    /// Allow list from the configuration.
    pub allow: Vec<Target>,
    /// Rules.
    pub rules: Vec<Rule>,
    /// TTL escalation factor.
    pub escalation_factor: f64,
    /// TTL ceiling.
    pub max_ttl: StdDuration,
    /// Offence memory.
    pub offence_memory: StdDuration,
    /// Aggregation threshold (0: off).
    pub aggregate_min: usize,
    /// Aggregation period.
    pub aggregate_period: StdDuration,
    /// Aggregation prefix lengths.
    pub aggregate_v4: u8,
    /// IPv6 aggregation prefix length.
    pub aggregate_v6: u8,
    /// Prefix block TTL.
    pub aggregate_ttl: StdDuration,
    /// Widest IPv4 prefix the daemon may block.
    pub guard_max_prefix_v4: u8,
    /// Widest IPv6 prefix the daemon may block.
    pub guard_max_prefix_v6: u8,
    /// Largest share of recent legitimate clients a prefix block may cover.
    pub guard_max_legit_share: f64,
    /// How long a client counts as recently seen.
    pub guard_window: StdDuration,
}

/// Loads and validates a file (refusing one writable by group or others).
pub fn load_file(path: &Path) -> Result<Settings, ConfigError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(ConfigError::Insecure { path: path.into() });
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses and validates TOML text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Settings, ConfigError> {
    let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
        origin: origin.into(),
        message: e.to_string().trim().replace('\n', " "),
    })?;
    validate(&config, origin)
}

fn validate(c: &Config, origin: &str) -> Result<Settings, ConfigError> {
    let invalid = |key: &str, problem: String| ConfigError::Invalid {
        origin: origin.into(),
        key: key.into(),
        problem,
    };
    let duration = |key: &str, text: &str| {
        text.parse::<Duration>()
            .map(|d| d.0)
            .map_err(|e| invalid(key, e.to_string()))
    };
    let skb = match c.filter.attach_mode.as_str() {
        "driver" => false,
        "skb" => true,
        other => {
            return Err(invalid(
                "filter.attach_mode",
                format!("'{other}' is not one of driver, skb"),
            ));
        }
    };
    if c.filter.ports.is_empty() || c.filter.ports.contains(&0) {
        return Err(invalid(
            "filter.ports",
            "needs at least one port, none of them 0".into(),
        ));
    }
    if c.filter.ports.len() > filter_common::capacity::PORTS as usize {
        return Err(invalid(
            "filter.ports",
            format!("at most {} ports", filter_common::capacity::PORTS),
        ));
    }
    if c.sampling.budget_per_sec == 0 {
        return Err(invalid(
            "sampling.budget_per_sec",
            "must be at least 1".into(),
        ));
    }
    if !(1..=filter_common::SAMPLE_PAYLOAD_MAX as u32).contains(&c.sampling.payload_bytes) {
        return Err(invalid(
            "sampling.payload_bytes",
            format!("must be 1..={}", filter_common::SAMPLE_PAYLOAD_MAX),
        ));
    }
    if c.state.max_tracked < 1024 || c.state.max_tracked > 1 << 26 {
        return Err(invalid(
            "state.max_tracked",
            "must be 1024..=67108864".into(),
        ));
    }
    let sweep_interval = duration("state.sweep_interval", &c.state.sweep_interval)?;
    if sweep_interval < StdDuration::from_millis(100) {
        return Err(invalid(
            "state.sweep_interval",
            "must be at least 100ms".into(),
        ));
    }
    let metrics_listen = match c.metrics.listen.as_str() {
        "off" | "" => None,
        text => Some(text.parse::<SocketAddr>().map_err(|_| {
            invalid(
                "metrics.listen",
                format!("'{text}' is not an address:port or \"off\""),
            )
        })?),
    };
    let log_level = c.log.level.parse::<log::LevelFilter>().map_err(|_| {
        invalid(
            "log.level",
            format!(
                "'{}' is not one of error, warn, info, debug, trace, off",
                c.log.level
            ),
        )
    })?;
    let allow = c
        .allow
        .iter()
        .enumerate()
        .map(|(i, text)| {
            text.parse::<Target>()
                .map_err(|e| invalid(&format!("allow[{i}]"), e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut rules = Vec::new();
    for (i, r) in c.rules.iter().enumerate() {
        let at = |field: &str| format!("rules[{i}].{field}");
        if r.name.is_empty() || r.name.len() > filter_common::REASON_TEXT_LEN {
            return Err(invalid(
                &at("name"),
                format!("must be 1..={} bytes", filter_common::REASON_TEXT_LEN),
            ));
        }
        if c.rules[..i].iter().any(|o| o.name == r.name) {
            return Err(invalid(
                &at("name"),
                format!("'{}' is used by an earlier rule", r.name),
            ));
        }
        let key = match r.key.as_str() {
            "source" => RuleKey::Source,
            "prefix" => RuleKey::Prefix,
            "source+path" => RuleKey::SourcePath,
            "source+host" => RuleKey::SourceHost,
            other => {
                return Err(invalid(
                    &at("key"),
                    format!("'{other}' is not one of source, prefix, source+path, source+host"),
                ));
            }
        };
        if r.prefix_v4 > 32 || r.prefix_v6 > 128 {
            return Err(invalid(
                &at("prefix_v4"),
                "prefix lengths are 0..=32 (v4) and 0..=128 (v6)".into(),
            ));
        }
        if !(r.threshold_rps.is_finite() && r.threshold_rps > 0.0) {
            return Err(invalid(
                &at("threshold_rps"),
                "must be a positive number".into(),
            ));
        }
        let window = duration(&at("window"), &r.window)?;
        if window < StdDuration::from_millis(100) || window > StdDuration::from_secs(3600) {
            return Err(invalid(&at("window"), "must be 100ms..=1h".into()));
        }
        let block = match r.action.as_str() {
            "block" => true,
            "monitor" => false,
            other => {
                return Err(invalid(
                    &at("action"),
                    format!("'{other}' is not one of block, monitor"),
                ));
            }
        };
        let ttl = duration(&at("ttl"), &r.ttl)?;
        if ttl.is_zero() {
            return Err(invalid(&at("ttl"), "must be positive".into()));
        }
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        rules.push(Rule {
            name: r.name.clone(),
            key,
            prefix_v4: r.prefix_v4,
            prefix_v6: r.prefix_v6,
            method: opt(&r.method.to_ascii_uppercase()),
            path_prefix: opt(&r.path_prefix),
            host: opt(&r.host.to_ascii_lowercase()),
            user_agent: opt(&r.user_agent.to_ascii_lowercase()),
            threshold_rps: r.threshold_rps,
            window,
            min_samples: r.min_samples.max(1),
            block,
            ttl,
        });
    }
    if !(c.escalation.factor.is_finite() && c.escalation.factor >= 1.0) {
        return Err(invalid("escalation.factor", "must be a number ≥ 1".into()));
    }
    let a = &c.aggregation;
    if a.prefix_v4 > 32 || a.prefix_v6 > 128 {
        return Err(invalid(
            "aggregation.prefix_v4",
            "prefix lengths are 0..=32 (v4) and 0..=128 (v6)".into(),
        ));
    }
    if a.min_addresses == 1 {
        return Err(invalid(
            "aggregation.min_addresses",
            "1 would turn every block into a prefix block; use 0 (off) or ≥ 2".into(),
        ));
    }
    let g = &c.guard;
    if g.max_prefix_v4 > 32 || g.max_prefix_v6 > 128 {
        return Err(invalid(
            "guard.max_prefix_v4",
            "prefix lengths are 0..=32 (v4) and 0..=128 (v6)".into(),
        ));
    }
    if !(g.max_legit_share.is_finite() && (0.0..=1.0).contains(&g.max_legit_share)) {
        return Err(invalid(
            "guard.max_legit_share",
            "must be a number in 0..=1".into(),
        ));
    }
    Ok(Settings {
        interfaces: c.filter.interfaces.clone(),
        wait_for_interfaces: c.filter.wait_for_interfaces,
        skb,
        monitor: c.filter.monitor,
        ports: c.filter.ports.clone(),
        reset_connections: c.filter.reset_connections,
        sample_budget: c.sampling.budget_per_sec,
        payload_bytes: c.sampling.payload_bytes,
        max_tracked: c.state.max_tracked,
        sweep_interval,
        metrics_listen,
        log_level,
        control_socket: c.control.socket.clone(),
        allow,
        rules,
        escalation_factor: c.escalation.factor,
        max_ttl: duration("escalation.max_ttl", &c.escalation.max_ttl)?,
        offence_memory: duration("escalation.memory", &c.escalation.memory)?,
        aggregate_min: a.min_addresses,
        aggregate_period: duration("aggregation.period", &a.period)?,
        aggregate_v4: a.prefix_v4,
        aggregate_v6: a.prefix_v6,
        aggregate_ttl: duration("aggregation.ttl", &a.ttl)?,
        guard_max_prefix_v4: g.max_prefix_v4,
        guard_max_prefix_v6: g.max_prefix_v6,
        guard_max_legit_share: g.max_legit_share,
        guard_window: duration("guard.window", &g.window)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let s = parse(DEFAULT_TOML, "default").unwrap();
        assert_eq!(s.ports, vec![80, 8080]);
        assert!(!s.rules.is_empty());
        assert_eq!(s.sample_budget, 100_000);
    }

    #[test]
    fn a_file_without_rules_gets_the_default_rule() {
        let s = parse("[filter]\nports = [8080]", "t.toml").unwrap();
        assert_eq!(s.rules.len(), 1);
        assert_eq!(s.rules[0].name, "per-source-flood");
        assert!(parse("rules = []", "t.toml").unwrap().rules.is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[filter]\nports = [0]", "filter.ports"),
            ("[filter]\nattach_mode = \"hw\"", "filter.attach_mode"),
            ("[sampling]\npayload_bytes = 999", "sampling.payload_bytes"),
            ("allow = [\"198.18.0.1/24\"]", "allow[0]"),
            (
                "[[rules]]\nname = \"x\"\nthreshold_rps = -1",
                "rules[0].threshold_rps",
            ),
            ("[[rules]]\nname = \"x\"\nkey = \"cookie\"", "rules[0].key"),
            ("[[rules]]\nname = \"x\"\nttl = \"soon\"", "rules[0].ttl"),
            ("[metrics]\nlisten = \"everywhere\"", "metrics.listen"),
            ("[filter]\nbogus = 1", "bogus"),
            ("[filter]\nports = \"80\"", "ports"),
        ];
        for (text, key) in cases {
            let err = parse(text, "t.toml").unwrap_err().to_string();
            assert!(err.contains(key), "{text:?} → {err}");
        }
    }
}
