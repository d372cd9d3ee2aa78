//! `[[rules]]`: what a detection rule matches, how it groups requests and what it does.

use serde::{Deserialize, Deserializer};

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
    /// Requests per second over `window` above which the key offends.
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
            // Far above a person, well below a flood.
            threshold_rps: 100.0,
            window: Duration::from_secs(1),
            min_samples: 8,
            action: Action::Block,
            // Long enough to hurt a flood, short enough to forgive a mistake.
            ttl: Duration::from_secs(600),
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
        ensure(!self.ttl.0.is_zero(), path, "ttl", "must be positive")
    }
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
