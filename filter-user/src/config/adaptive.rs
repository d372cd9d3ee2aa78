//! `[adaptive]`: learned baselines, the attack state per service and the adaptive per-source
//! threshold used while a service is under attack (`detect::adaptive` applies them).

use std::path::PathBuf;

use serde::Deserialize;

use super::{Duration, Invalid, SensorFilter, ensure};

/// Services at most (each costs a fixed ~30 KiB of baseline and a match per event).
pub(crate) const MAX_SERVICES: usize = 16;

/// `[adaptive]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Adaptive {
    /// Learn baselines and block under attack.
    pub enabled: bool,
    /// Which evidence counts (as `rules[].sensor`).
    pub sensor: SensorFilter,
    /// The sliding period a baseline covers (time under attack left out).
    pub period: Duration,
    /// Learned time (not under attack) a baseline needs before it is used.
    pub learning: Duration,
    /// Window of the per-source rates.
    pub window: Duration,
    /// Attack when the total rate exceeds the baseline rate by this factor.
    pub attack_factor: f64,
    /// ... and is above this many requests/s (a quiet service's tiny baseline is no yardstick).
    pub min_attack_rps: f64,
    /// Attack when the mean upstream time of the proxy's events exceeds this ("0s": off).
    pub max_upstream_time: Duration,
    /// Attack when the share of 5xx answers among the proxy's events exceeds this (0: off).
    pub max_5xx_share: f64,
    /// The attack ends when every signal stayed under this share of its limit for `calm`.
    pub exit_share: f64,
    /// See `exit_share`.
    pub calm: Duration,
    /// Under attack, no source at or below this rate (requests/s) is ever blocked.
    pub floor_rps: f64,
    /// Under attack, a source is blocked above max(floor_rps, k × the baseline's quantile).
    pub k: f64,
    /// The high quantile of the per-source rates (0.5..1).
    pub quantile: f64,
    /// Learn request fingerprints per service; under attack, hold the senders of attack
    /// fingerprints to `fingerprint_factor` × the adaptive threshold.
    pub fingerprints: bool,
    /// A fingerprint is an attack fingerprint when, under attack, its share of the service's
    /// requests in a second is at least this (0..1) ...
    pub fingerprint_min_share: f64,
    /// ... and more than this many times its learned share (> 1).
    pub fingerprint_rise: f64,
    /// The threshold of an attack fingerprint's senders, as a share of the adaptive one (0..=1).
    pub fingerprint_factor: f64,
    /// TTL of adaptive blocks.
    pub ttl: Duration,
    /// Where the baselines are kept across restarts ("" : not kept).
    pub state_file: PathBuf,
    /// How often the baselines are written (and at shutdown).
    pub save_interval: Duration,
    /// Services with their own baseline; none: one service, "all", covering every request.
    pub services: Vec<Service>,
}

/// `[[adaptive.services]]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Service {
    /// Name shown by `status`, `baseline` and the logs.
    pub name: String,
    /// Host header to match (any case); "" matches every host.
    pub host: String,
    /// Path prefix to match; "" matches every path.
    pub path_prefix: String,
    /// Attack whenever the service gets more than this many requests/s (0: no capacity set).
    pub capacity_rps: f64,
}

impl Default for Service {
    fn default() -> Self {
        Self {
            name: String::new(),
            host: String::new(),
            path_prefix: String::new(),
            capacity_rps: 0.0,
        }
    }
}

impl Default for Adaptive {
    fn default() -> Self {
        Self {
            // Off until the operator has looked at a learned baseline (`floodgate baseline`).
            enabled: false,
            sensor: SensorFilter::Any,
            period: Duration::from_secs(1800),
            learning: Duration::from_secs(600),
            window: Duration::from_secs(2),
            attack_factor: 3.0,
            min_attack_rps: 50.0,
            max_upstream_time: Duration::from_secs(0),
            max_5xx_share: 0.0,
            exit_share: 0.8,
            calm: Duration::from_secs(30),
            floor_rps: 10.0,
            k: 3.0,
            quantile: 0.99,
            fingerprints: true,
            fingerprint_min_share: 0.1,
            fingerprint_rise: 5.0,
            fingerprint_factor: 0.5,
            ttl: Duration::from_secs(600),
            state_file: PathBuf::from("/var/lib/floodgate/baseline.json"),
            save_interval: Duration::from_secs(60),
            services: Vec::new(),
        }
    }
}

fn positive(value: f64) -> bool {
    value.is_finite() && value > 0.0
}

impl Adaptive {
    pub(super) fn validate(&self, path: &str) -> Result<(), Invalid> {
        ensure(
            self.period >= Duration::from_secs(30),
            path,
            "period",
            "must be at least 30s",
        )?;
        ensure(
            self.learning <= self.period,
            path,
            "learning",
            "must not exceed period",
        )?;
        ensure(
            (Duration::from_millis(500)..=Duration::from_secs(60)).contains(&self.window),
            path,
            "window",
            "must be 500ms..=60s",
        )?;
        ensure(
            positive(self.attack_factor) && self.attack_factor >= 1.0,
            path,
            "attack_factor",
            "must be a number ≥ 1",
        )?;
        ensure(
            self.min_attack_rps.is_finite() && self.min_attack_rps >= 0.0,
            path,
            "min_attack_rps",
            "must be a number ≥ 0",
        )?;
        ensure(
            self.max_5xx_share.is_finite() && (0.0..=1.0).contains(&self.max_5xx_share),
            path,
            "max_5xx_share",
            "must be a number in 0..=1",
        )?;
        ensure(
            self.exit_share.is_finite() && self.exit_share > 0.0 && self.exit_share <= 1.0,
            path,
            "exit_share",
            "must be a number in (0, 1]",
        )?;
        ensure(
            positive(self.floor_rps),
            path,
            "floor_rps",
            "must be a number > 0",
        )?;
        ensure(positive(self.k), path, "k", "must be a number > 0")?;
        ensure(
            self.quantile.is_finite() && (0.5..1.0).contains(&self.quantile),
            path,
            "quantile",
            "must be a number in 0.5..1",
        )?;
        ensure(
            self.fingerprint_min_share.is_finite()
                && self.fingerprint_min_share > 0.0
                && self.fingerprint_min_share < 1.0,
            path,
            "fingerprint_min_share",
            "must be a number in (0, 1)",
        )?;
        ensure(
            self.fingerprint_rise.is_finite() && self.fingerprint_rise > 1.0,
            path,
            "fingerprint_rise",
            "must be a number > 1",
        )?;
        ensure(
            self.fingerprint_factor.is_finite()
                && self.fingerprint_factor > 0.0
                && self.fingerprint_factor <= 1.0,
            path,
            "fingerprint_factor",
            "must be a number in (0, 1]",
        )?;
        ensure(
            self.ttl >= Duration::from_secs(1),
            path,
            "ttl",
            "must be at least 1s",
        )?;
        ensure(
            self.save_interval >= Duration::from_secs(1),
            path,
            "save_interval",
            "must be at least 1s",
        )?;
        ensure(
            self.services.len() <= MAX_SERVICES,
            path,
            "services",
            format!("at most {MAX_SERVICES} services"),
        )?;
        for (i, s) in self.services.iter().enumerate() {
            let at = format!("{path}.services[{i}]");
            ensure(
                !s.name.is_empty()
                    && s.name.len() <= 64
                    && s.name.chars().all(|c| c.is_ascii_graphic()),
                &at,
                "name",
                "must be 1..=64 printable ASCII characters",
            )?;
            ensure(
                self.services[..i].iter().all(|o| o.name != s.name),
                &at,
                "name",
                "is not unique",
            )?;
            ensure(
                s.capacity_rps.is_finite() && s.capacity_rps >= 0.0,
                &at,
                "capacity_rps",
                "must be a number ≥ 0",
            )?;
        }
        Ok(())
    }
}
