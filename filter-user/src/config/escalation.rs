//! `[escalation]` and `[aggregation]`: how decisions grow for repeat offenders and for
//! prefixes with many offending addresses.

use serde::Deserialize;

use super::{Duration, Invalid, ensure, prefix_lengths};

/// `[escalation]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Escalation {
    /// Each repeat offence multiplies the TTL by this (1: no escalation).
    pub factor: f64,
    /// TTL ceiling.
    pub max_ttl: Duration,
    /// An offence is forgotten after this long.
    pub memory: Duration,
}

impl Default for Escalation {
    fn default() -> Self {
        Self {
            // 10m, 20m, 40m, … for the default rule.
            factor: 2.0,
            // A day at most, and a day to be forgiven.
            max_ttl: Duration::from_secs(86_400),
            memory: Duration::from_secs(86_400),
        }
    }
}

impl Escalation {
    pub(super) fn validate(&self, path: &str) -> Result<(), Invalid> {
        ensure(
            self.factor.is_finite() && self.factor >= 1.0,
            path,
            "factor",
            "must be a number ≥ 1",
        )
    }
}

/// `[aggregation]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Aggregation {
    /// Block the prefix when this many of its addresses are blocked within `period` (0: off).
    pub min_addresses: usize,
    /// The period.
    pub period: Duration,
    /// IPv4 prefix length aggregated to.
    pub prefix_v4: u8,
    /// IPv6 prefix length aggregated to.
    pub prefix_v6: u8,
    /// TTL of a prefix block.
    pub ttl: Duration,
}

impl Default for Aggregation {
    fn default() -> Self {
        Self {
            // 16 addresses of one /24 or /64 within a minute: a prefix, not a crowd.
            min_addresses: 16,
            period: Duration::from_secs(60),
            prefix_v4: 24,
            prefix_v6: 64,
            // As long as a first-offence block of the default rule.
            ttl: Duration::from_secs(600),
        }
    }
}

impl Aggregation {
    pub(super) fn validate(&self, path: &str) -> Result<(), Invalid> {
        prefix_lengths(path, "prefix_v4", self.prefix_v4, self.prefix_v6)?;
        ensure(
            self.min_addresses != 1,
            path,
            "min_addresses",
            "1 would turn every block into a prefix block; use 0 (off) or ≥ 2",
        )
    }
}
