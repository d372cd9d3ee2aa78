//! `[guard]`: the limits of the collateral-damage guard, the last check before a decision is
//! written (`enforce::guard` applies them).

use serde::Deserialize;

use super::{Duration, Invalid, ensure, prefix_lengths};

/// `[guard]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Guard {
    /// No IPv4 prefix shorter (wider) than this is ever blocked by the daemon.
    pub max_prefix_v4: u8,
    /// No IPv6 prefix shorter (wider) than this is ever blocked by the daemon.
    pub max_prefix_v6: u8,
    /// A prefix block may cover at most this share of the legitimate clients seen in `window`.
    pub max_legit_share: f64,
    /// How long a client counts as recently seen.
    pub window: Duration,
}

impl Default for Guard {
    fn default() -> Self {
        Self {
            // Nothing wider than a /16 or a /48 (a site).
            max_prefix_v4: 16,
            max_prefix_v6: 48,
            // A prefix block may take out a few bystanders, never a tenth of the real users.
            max_legit_share: 0.1,
            window: Duration::from_secs(600),
        }
    }
}

impl Guard {
    pub(super) fn validate(&self, path: &str) -> Result<(), Invalid> {
        prefix_lengths(
            path,
            "max_prefix_v4",
            self.max_prefix_v4,
            self.max_prefix_v6,
        )?;
        ensure(
            self.max_legit_share.is_finite() && (0.0..=1.0).contains(&self.max_legit_share),
            path,
            "max_legit_share",
            "must be a number in 0..=1",
        )
    }
}
