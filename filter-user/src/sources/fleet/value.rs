//! What the fleet shares, as typed values: a decision in the key-value bucket (JSON, keyed by
//! its target) and a heavy-hitter report on the rates subject. Everything a peer sends is
//! parsed here and checked before the daemon sees it: a value that does not parse, names
//! another target than its key, or carries an impossible field is an error, never a panic.

use serde::{Deserialize, Serialize};

use crate::{config::fleet::host_ok, target::Target};

/// Longest value or report accepted from the bucket or subject (a decision is ~250 bytes).
pub const MAX_VALUE_BYTES: usize = 4096;
/// Longest report (`report_max` = 10,000 hitters of ~100 bytes).
pub const MAX_REPORT_BYTES: usize = 1 << 20;
/// Longest rule name or reason text shared (longer ones are refused).
const MAX_TEXT: usize = 64;

/// Who made a shared decision on its origin host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharedOrigin {
    /// A detection rule.
    Rule,
    /// Prefix aggregation.
    Aggregate,
    /// An operator (`block add --fleet`).
    Operator,
}

/// One decision in the bucket, under the key [`key_of`] its target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetDecision {
    /// What is blocked.
    pub target: Target,
    /// Unix time (ms, wall clock) at which the block ends everywhere.
    pub expires_ms: u64,
    /// Unix time (µs) at which the origin host decided (for the propagation latency).
    pub decided_us: u64,
    /// The reason text of the block (the rule name, or the operator's reason).
    pub reason: String,
    /// The rule that decided ("" for an operator's block).
    pub rule: String,
    /// Repeat-offence number on the origin host.
    pub offence: u32,
    /// Who decided there.
    pub origin: SharedOrigin,
    /// The host that decided (`fleet.host`).
    pub origin_host: String,
}

/// Why a peer's value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Longer than [`MAX_VALUE_BYTES`] / [`MAX_REPORT_BYTES`].
    #[error("{len} bytes, more than the {max} accepted")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not the JSON of a decision or report.
    #[error("not a fleet value: {message}")]
    Json {
        /// The parser's message.
        message: String,
    },
    /// The key is not the encoding of the value's target.
    #[error("key '{key}' does not name the value's target {target}")]
    KeyMismatch {
        /// The bucket key.
        key: String,
        /// The target in the value.
        target: Target,
    },
    /// A key that names no target.
    #[error("key '{key}' names no address or prefix")]
    BadKey {
        /// The bucket key.
        key: String,
    },
    /// A field out of range (host name, text length, offence).
    #[error("field {field}: {problem}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
}

/// The bucket key of a target: its text with ':' written as '-' and '/' as '_' (NATS keys
/// allow neither ':' nor, in every server version, '/'), e.g. `198.18.0.0_24`,
/// `2001-2--7`.
#[must_use]
pub fn key_of(target: Target) -> String {
    target.to_string().replace(':', "-").replace('/', "_")
}

/// The target a bucket key names (a delete marker carries only its key).
pub fn target_of_key(key: &str) -> Result<Target, ValueError> {
    let bad = || ValueError::BadKey {
        key: key.chars().take(80).collect(),
    };
    if key.len() > 64 || key.contains([':', '/']) {
        return Err(bad());
    }
    let text = key.replace('-', ":").replace('_', "/");
    let target: Target = text.parse().map_err(|_| bad())?;
    // One spelling per target: a key that parses but is not canonical is someone else's.
    if key_of(target) != key {
        return Err(bad());
    }
    Ok(target)
}

fn check_text(field: &'static str, text: &str) -> Result<(), ValueError> {
    if text.len() > MAX_TEXT || text.chars().any(char::is_control) {
        return Err(ValueError::Field {
            field,
            problem: "longer than 64 bytes or with control characters",
        });
    }
    Ok(())
}

/// The JSON of a decision, as it is put into the bucket.
#[must_use]
pub fn encode(value: &FleetDecision) -> Vec<u8> {
    // Strings, integers and enums only: serialising cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Parses a bucket value stored under `key`, checking every field.
pub fn parse_decision(key: &str, bytes: &[u8]) -> Result<FleetDecision, ValueError> {
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(ValueError::TooLong {
            len: bytes.len(),
            max: MAX_VALUE_BYTES,
        });
    }
    let value: FleetDecision = serde_json::from_slice(bytes).map_err(|e| ValueError::Json {
        message: e.to_string(),
    })?;
    if key_of(value.target) != key {
        return Err(ValueError::KeyMismatch {
            key: key.chars().take(80).collect(),
            target: value.target,
        });
    }
    if !host_ok(&value.origin_host) {
        return Err(ValueError::Field {
            field: "origin_host",
            problem: "not a host name (1..=63 letters, digits, '-', '_', '.')",
        });
    }
    check_text("reason", &value.reason)?;
    check_text("rule", &value.rule)?;
    if value.offence == 0 {
        return Err(ValueError::Field {
            field: "offence",
            problem: "offences count from 1",
        });
    }
    Ok(value)
}

/// One heavy hitter of a report: a fleet rule's key and its rate on the reporting host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hitter {
    /// The fleet rule (by name: rule order may differ between hosts).
    pub rule: String,
    /// The source (or prefix, for `key = "prefix"`).
    pub target: Target,
    /// Its rate on the reporting host, in the rule's unit per second.
    pub rate: f64,
    /// Samples behind that rate in the current window.
    pub samples: u32,
}

/// A host's heavy hitters, published once per second on the rates subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RateReport {
    /// The reporting host.
    pub host: String,
    /// Unix time (ms) of the report.
    pub at_ms: u64,
    /// The heaviest sources of its fleet rules.
    pub hitters: Vec<Hitter>,
}

/// Parses a peer's report, checking every field.
pub fn parse_report(bytes: &[u8]) -> Result<RateReport, ValueError> {
    if bytes.len() > MAX_REPORT_BYTES {
        return Err(ValueError::TooLong {
            len: bytes.len(),
            max: MAX_REPORT_BYTES,
        });
    }
    let report: RateReport = serde_json::from_slice(bytes).map_err(|e| ValueError::Json {
        message: e.to_string(),
    })?;
    if !host_ok(&report.host) {
        return Err(ValueError::Field {
            field: "host",
            problem: "not a host name",
        });
    }
    for h in &report.hitters {
        check_text("rule", &h.rule)?;
        if !(h.rate.is_finite() && h.rate >= 0.0 && h.rate < 1e12) {
            return Err(ValueError::Field {
                field: "rate",
                problem: "not a finite rate",
            });
        }
    }
    Ok(report)
}

/// The reason text of a fleet entry in the block map: `HOST:REASON`, cut to the map's
/// 32 bytes (the whole value is in the bucket).
#[must_use]
pub fn map_reason(value: &FleetDecision) -> String {
    format!("{}:{}", value.origin_host, value.reason)
}

/// The origin host and reason out of a fleet entry's reason text.
#[must_use]
pub fn split_map_reason(text: &str) -> (Option<&str>, &str) {
    match text.split_once(':') {
        Some((host, reason)) => (Some(host), reason),
        None => (None, text),
    }
}

/// Unix time now, in µs (the propagation figure: `decided_us` to the map write).
#[must_use]
pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Unix time now, in ms.
#[must_use]
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(target: &str) -> FleetDecision {
        FleetDecision {
            target: target.parse().unwrap(),
            expires_ms: 2_000_000_000_000,
            decided_us: 1_999_999_000_000_000,
            reason: "per-source-flood".into(),
            rule: "per-source-flood".into(),
            offence: 1,
            origin: SharedOrigin::Rule,
            origin_host: "edge-a".into(),
        }
    }

    #[test]
    fn keys_round_trip_for_both_families() {
        for text in [
            "198.18.0.7",
            "198.18.4.0/24",
            "2001:2::7",
            "2001:2:0:9::/64",
            "::1",
        ] {
            let target: Target = text.parse().unwrap();
            let key = key_of(target);
            assert!(
                key.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
                "{key}"
            );
            assert_eq!(target_of_key(&key).unwrap(), target, "{key}");
        }
        assert!(target_of_key("198.18.0.7_32").is_err(), "not canonical");
        assert!(target_of_key("nonsense").is_err());
        assert!(target_of_key("198.18.0.1_24").is_err(), "host bits");
    }

    #[test]
    fn values_round_trip_and_garbage_is_refused() {
        let v = decision("2001:2:0:9::/64");
        let json = serde_json::to_vec(&v).unwrap();
        assert_eq!(parse_decision(&key_of(v.target), &json).unwrap(), v);
        assert!(matches!(
            parse_decision("198.18.0.9", &json),
            Err(ValueError::KeyMismatch { .. })
        ));
        assert!(matches!(
            parse_decision("x", b"{not json"),
            Err(ValueError::Json { .. })
        ));
        let mut bad = decision("198.18.0.7");
        bad.origin_host = "a:b".into();
        let json = serde_json::to_vec(&bad).unwrap();
        assert!(matches!(
            parse_decision("198.18.0.7", &json),
            Err(ValueError::Field {
                field: "origin_host",
                ..
            })
        ));
        let long = vec![b' '; MAX_VALUE_BYTES + 1];
        assert!(matches!(
            parse_decision("198.18.0.7", &long),
            Err(ValueError::TooLong { .. })
        ));
        assert_eq!(
            split_map_reason(&map_reason(&decision("198.18.0.7"))),
            (Some("edge-a"), "per-source-flood")
        );
    }

    #[test]
    fn reports_are_checked() {
        let r = RateReport {
            host: "edge-b".into(),
            at_ms: 1,
            hitters: vec![Hitter {
                rule: "fleet-flood".into(),
                target: "198.18.2.1".parse().unwrap(),
                rate: 60.0,
                samples: 60,
            }],
        };
        let json = serde_json::to_vec(&r).unwrap();
        assert_eq!(parse_report(&json).unwrap(), r);
        let nan = String::from_utf8(json).unwrap().replace("60.0", "1e999");
        assert!(parse_report(nan.as_bytes()).is_err());
    }
}
