//! `[state]`, `[metrics]`, `[log]` and `[control]`: the daemon's own bounds and endpoints.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
};

use serde::{Deserialize, Deserializer, de::Error as _};

use super::{Duration, Invalid, ensure};

/// `[state]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct State {
    /// Hard cap of tracked rate keys (memory ≈ 40 bytes each).
    pub max_tracked: usize,
    /// How often expired block entries are removed from the maps.
    pub sweep_interval: Duration,
}

impl Default for State {
    fn default() -> Self {
        Self {
            // About 40 MiB of rate state.
            max_tracked: 1 << 20,
            // Expired entries stop dropping at expiry regardless; this only frees the slots.
            sweep_interval: Duration::from_secs(1),
        }
    }
}

impl State {
    pub(super) fn validate(&self, path: &str) -> Result<(), Invalid> {
        ensure(
            (1024..=1 << 26).contains(&self.max_tracked),
            path,
            "max_tracked",
            "must be 1024..=67108864",
        )?;
        ensure(
            self.sweep_interval >= Duration::from_millis(100),
            path,
            "sweep_interval",
            "must be at least 100ms",
        )
    }
}

/// `[metrics]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Metrics {
    /// Listen address of the Prometheus endpoint; `None` (written "off" or "") disables it.
    #[serde(deserialize_with = "listen")]
    pub listen: Option<SocketAddr>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            // Local only: the exporter has no authentication.
            listen: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 9477))),
        }
    }
}

fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    match String::deserialize(d)?.as_str() {
        "off" | "" => Ok(None),
        text => text
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("'{text}' is not an address:port or \"off\""))),
    }
}

/// `[log]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// error, warn, info, debug, trace or off, in any case (`RUST_LOG` overrides).
    #[serde(deserialize_with = "level")]
    pub level: log::LevelFilter,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            // Decisions, reloads and refusals; no per-sample lines.
            level: log::LevelFilter::Info,
        }
    }
}

fn level<'de, D: Deserializer<'de>>(d: D) -> Result<log::LevelFilter, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        D::Error::custom(format!(
            "'{text}' is not one of error, warn, info, debug, trace, off"
        ))
    })
}

/// `[control]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Control {
    /// Unix socket path (mode 0600).
    pub socket: PathBuf,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            // Under the daemon's runtime directory.
            socket: PathBuf::from(crate::control::DEFAULT_SOCKET),
        }
    }
}
