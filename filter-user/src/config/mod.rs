//! The TOML configuration: one struct per section, deserialized straight into the [`Settings`]
//! the daemon runs with. Every key has a documented default (`default-config.toml` is the
//! embedded default and the example file, and a test proves it equals [`Settings::default`]),
//! unknown keys are errors, closed sets of words are enums, and every error names the key.
//!
//! Reading happens in two steps: serde turns text into typed values (a word outside its set,
//! a duration or address that does not parse: [`ConfigError::Parse`]), then each section's
//! `validate` checks ranges and consistency ([`ConfigError::Invalid`]).

pub mod adaptive;
pub mod crowdsec;
mod duration;
mod escalation;
mod filter;
pub mod fleet;
mod guard;
mod proxy;
mod rules;
mod service;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use self::{
    adaptive::Adaptive,
    crowdsec::Crowdsec,
    duration::{Duration, DurationError},
    escalation::{Aggregation, Escalation},
    filter::{AttachMode, Filter, Sampling},
    fleet::Fleet,
    guard::Guard,
    proxy::Proxy,
    rules::{Action, Rule, RuleKey, RuleScope, SensorFilter, Weight},
    service::{Control, Log, Metrics, State},
};
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
    /// TOML syntax, an unknown key, a wrong type or a value that does not parse (a word
    /// outside its set, a duration, an address); the message names the line and the key.
    #[error("{origin}: {message}")]
    Parse {
        /// File or "embedded default".
        origin: String,
        /// Line, dotted key and the parser's message.
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

/// The validated configuration the daemon runs with, one field per TOML section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Addresses and prefixes that are never blocked, by rules or by hand.
    pub allow: Vec<Target>,
    /// `[filter]`: where and how the XDP program runs.
    pub filter: Filter,
    /// `[sampling]`: kernel-side sampling of request starts.
    pub sampling: Sampling,
    /// `[state]`: daemon state bounds.
    pub state: State,
    /// `[metrics]`: the Prometheus exporter.
    pub metrics: Metrics,
    /// `[log]`: logging.
    pub log: Log,
    /// `[control]`: the control socket of `floodgate top` / `why`.
    pub control: Control,
    /// `[proxy]`: the request feed of the TLS-terminating proxy.
    pub proxy: Proxy,
    /// `[[rules]]`: detection rules, evaluated for every sample.
    pub rules: Vec<Rule>,
    /// `[escalation]`: longer blocks for repeat offenders.
    pub escalation: Escalation,
    /// `[aggregation]`: blocking a whole prefix when many of its addresses offend.
    pub aggregation: Aggregation,
    /// `[guard]`: the collateral-damage guard.
    pub guard: Guard,
    /// `[crowdsec]`: enforcing the decisions of a CrowdSec Local API.
    pub crowdsec: Crowdsec,
    /// `[fleet]`: sharing decisions and heavy hitters with other hosts through NATS.
    pub fleet: Fleet,
    /// `[adaptive]`: learned baselines and adaptive thresholds under attack.
    pub adaptive: Adaptive,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            // Nothing is allow-listed.
            allow: Vec::new(),
            filter: Filter::default(),
            sampling: Sampling::default(),
            state: State::default(),
            metrics: Metrics::default(),
            log: Log::default(),
            control: Control::default(),
            proxy: Proxy::default(),
            // A file without a `rules` key gets these; `rules = []` turns detection off.
            rules: rules::defaults(),
            escalation: Escalation::default(),
            aggregation: Aggregation::default(),
            guard: Guard::default(),
            crowdsec: Crowdsec::default(),
            fleet: Fleet::default(),
            adaptive: Adaptive::default(),
        }
    }
}

impl Settings {
    /// Range and consistency checks, section by section.
    fn validate(&self) -> Result<(), Invalid> {
        self.filter.validate("filter")?;
        self.sampling.validate("sampling")?;
        self.state.validate("state")?;
        self.proxy.validate("proxy")?;
        rules::validate(&self.rules, "rules")?;
        self.escalation.validate("escalation")?;
        self.aggregation.validate("aggregation")?;
        self.guard.validate("guard")?;
        self.crowdsec.validate("crowdsec")?;
        self.fleet.validate("fleet")?;
        self.adaptive.validate("adaptive")
    }
}

/// A value that parsed but is out of range; [`parse`] adds the origin.
#[derive(Debug)]
struct Invalid {
    key: String,
    problem: String,
}

/// `Ok` when `ok`, else `problem` with the key `path.field`.
fn ensure(ok: bool, path: &str, field: &str, problem: impl Into<String>) -> Result<(), Invalid> {
    if ok {
        return Ok(());
    }
    Err(Invalid {
        key: format!("{path}.{field}"),
        problem: problem.into(),
    })
}

/// The one check of a pair of prefix lengths (`field` names the IPv4 one).
fn prefix_lengths(path: &str, field: &str, v4: u8, v6: u8) -> Result<(), Invalid> {
    ensure(
        v4 <= 32 && v6 <= 128,
        path,
        field,
        "prefix lengths are 0..=32 (v4) and 0..=128 (v6)",
    )
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
    let settings = deserialize(text).map_err(|message| ConfigError::Parse {
        origin: origin.into(),
        message,
    })?;
    settings
        .validate()
        .map_err(|Invalid { key, problem }| ConfigError::Invalid {
            origin: origin.into(),
            key,
            problem,
        })?;
    Ok(settings)
}

/// TOML text to typed settings; an error is one line naming the line and the dotted key
/// (with the index of a `[[rules]]` entry, which toml's own message does not give).
fn deserialize(text: &str) -> Result<Settings, String> {
    let document = toml::Deserializer::parse(text).map_err(|e| describe(&e, "", text))?;
    serde_path_to_error::deserialize(document)
        .map_err(|e| describe(e.inner(), &e.path().to_string(), text))
}

fn describe(error: &toml::de::Error, path: &str, text: &str) -> String {
    let mut out = String::new();
    if let Some(span) = error.span() {
        let before = text.as_bytes().get(..span.start).unwrap_or(text.as_bytes());
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        out.push_str(&format!("line {line}: "));
    }
    if !path.is_empty() && path != "." {
        out.push_str(path);
        out.push_str(": ");
    }
    out.push_str(&error.message().trim().replace('\n', " "));
    out
}
