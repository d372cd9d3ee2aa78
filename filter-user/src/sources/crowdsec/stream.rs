//! The LAPI decision stream (`GET /v1/decisions/stream`): its JSON answer parsed into typed
//! decisions. The answer is `{"new": [...], "deleted": [...]}` (either may be `null`); each
//! decision carries `scope` (`Ip`, `Range`, …), `value`, `type` (`ban`, `captcha`…),
//! `duration` (Go syntax: `3h59m58.2s`, negative once expired), `origin` and `scenario`.
//! One bad decision is counted and skipped; only an answer that is not this shape at all is
//! an error.

use std::{net::IpAddr, time::Duration};

use serde::Deserialize;

use crate::{config::crowdsec::Scope, target::Target};

/// Longest TTL taken from a decision (ten years, as for any block).
const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 86_400);

/// The answer as it comes, every field optional so that one odd decision cannot spoil the
/// others.
#[derive(Debug, Deserialize)]
struct RawStream {
    #[serde(default)]
    new: Option<Vec<RawDecision>>,
    #[serde(default)]
    deleted: Option<Vec<RawDecision>>,
}

#[derive(Debug, Deserialize)]
struct RawDecision {
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    origin: Option<String>,
    #[serde(default)]
    scenario: Option<String>,
}

/// One decision Floodgate can enforce.
#[derive(Clone, Debug, PartialEq)]
pub struct CsDecision {
    /// The address (scope `Ip`) or the prefix, host bits cleared (scope `Range`).
    pub target: Target,
    /// The scope it came with.
    pub scope: Scope,
    /// Time left (0 for a deleted decision whose duration ran out).
    pub ttl: Duration,
    /// The scenario (`crowdsecurity/ssh-bf`, or the reason given to `cscli decisions add`).
    pub scenario: String,
    /// `crowdsec`, `cscli`, `CAPI`, `lists`…
    pub origin: String,
}

/// What one answer holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamBatch {
    /// Bans to enforce.
    pub new: Vec<CsDecision>,
    /// Decisions lifted (deleted or expired) since the last poll.
    pub deleted: Vec<CsDecision>,
    /// Decisions skipped: a value, scope or duration that does not parse, a TTL of zero.
    pub malformed: u64,
    /// Decisions of another type (`captcha`…) or a scope not enabled, left alone.
    pub ignored: u64,
}

/// Why an answer could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Not JSON of the stream's shape.
    #[error("the decision stream answer is not {{\"new\": [...], \"deleted\": [...]}}: {0}")]
    Shape(#[from] serde_json::Error),
}

/// Why one decision was skipped.
#[derive(Debug, PartialEq, Eq)]
enum Skip {
    Malformed,
    Ignored,
}

/// Parses one answer; only decisions of `scopes` and of type `ban` are kept.
pub fn parse(body: &[u8], scopes: &[Scope]) -> Result<StreamBatch, StreamError> {
    let raw: RawStream = serde_json::from_slice(body)?;
    let mut batch = StreamBatch::default();
    for (list, deleted) in [(raw.new, false), (raw.deleted, true)] {
        for raw in list.unwrap_or_default() {
            match decision(&raw, scopes, deleted) {
                Ok(d) if deleted => batch.deleted.push(d),
                Ok(d) => batch.new.push(d),
                Err(Skip::Malformed) => batch.malformed += 1,
                Err(Skip::Ignored) => batch.ignored += 1,
            }
        }
    }
    Ok(batch)
}

fn decision(raw: &RawDecision, scopes: &[Scope], deleted: bool) -> Result<CsDecision, Skip> {
    let scope = match raw.scope.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("ip") => Scope::Ip,
        Some("range") => Scope::Range,
        Some(_) => return Err(Skip::Ignored),
        None => return Err(Skip::Malformed),
    };
    if !scopes.contains(&scope) {
        return Err(Skip::Ignored);
    }
    if !raw
        .kind
        .as_deref()
        .ok_or(Skip::Malformed)?
        .eq_ignore_ascii_case("ban")
    {
        return Err(Skip::Ignored);
    }
    let value = raw.value.as_deref().ok_or(Skip::Malformed)?.trim();
    let target = match scope {
        // `cscli decisions import` (1.4) stores every imported decision with scope Ip, ranges
        // too: an Ip value with a prefix length is taken as the prefix it says.
        Scope::Ip if value.contains('/') => range(value).ok_or(Skip::Malformed)?,
        Scope::Ip => Target::host(value.parse::<IpAddr>().map_err(|_| Skip::Malformed)?),
        Scope::Range => range(value).ok_or(Skip::Malformed)?,
    };
    let ttl = go_duration(raw.duration.as_deref().ok_or(Skip::Malformed)?)
        .ok_or(Skip::Malformed)?
        .map_or(Duration::ZERO, |ttl| ttl.min(MAX_TTL));
    if ttl.is_zero() && !deleted {
        return Err(Skip::Malformed);
    }
    Ok(CsDecision {
        target,
        scope,
        ttl,
        scenario: raw.scenario.clone().unwrap_or_default(),
        origin: raw.origin.clone().unwrap_or_default(),
    })
}

/// A `Range` value: `ADDR/LEN`, the whole prefix (host bits cleared, never cut down to the
/// network address alone); an IPv4-mapped IPv6 prefix is taken as the IPv4 prefix it covers.
fn range(value: &str) -> Option<Target> {
    let (addr, len) = value.split_once('/')?;
    let ip: IpAddr = addr.parse().ok()?;
    if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let len: u8 = len.parse().ok()?;
    match ip {
        IpAddr::V4(_) if len > 32 => None,
        IpAddr::V6(_) if len > 128 => None,
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
            (len >= 96).then(|| Target::covering(ip, len - 96))
        }
        _ => Some(Target::covering(ip, len)),
    }
}

/// A Go `time.Duration` text (`1h2m3.5s`, `150ms`, `-4m`, `0s`): `Some(None)` for a zero or
/// negative span (expired), `None` when it does not parse.
pub(crate) fn go_duration(text: &str) -> Option<Option<Duration>> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(None);
    }
    if rest.is_empty() || rest.len() > 64 {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        if number.is_empty() || number.bytes().filter(|&b| b == b'.').count() > 1 || number == "." {
            return None;
        }
        let number: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * scale;
        rest = tail;
    }
    if !total.is_finite() {
        return None;
    }
    if negative || total <= 0.0 {
        return Some(None);
    }
    Some(Some(Duration::from_secs_f64(
        total.min(MAX_TTL.as_secs_f64()),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Scope; 2] = [Scope::Ip, Scope::Range];

    #[test]
    fn go_durations() {
        let s = |t: &str| go_duration(t).map(|d| d.map(|d| d.as_millis()));
        assert_eq!(s("3h59m58.5s"), Some(Some(14_398_500)));
        assert_eq!(s("150ms"), Some(Some(150)));
        assert_eq!(s("4m"), Some(Some(240_000)));
        assert_eq!(s("-4m1s"), Some(None));
        assert_eq!(s("0s"), Some(None));
        assert_eq!(s("0"), Some(None));
        for bad in ["", "4", "h", "1x", "1..2s", "-", "1h-2m", "s1"] {
            assert_eq!(go_duration(bad), None, "{bad}");
        }
        assert_eq!(s("9999999999999h"), Some(Some(MAX_TTL.as_millis())));
    }

    #[test]
    fn stream_answers() {
        let body = br#"{"new":[
            {"duration":"3h59m59s","id":1,"origin":"cscli","scenario":"manual 'ban' from 'x'","scope":"Ip","type":"ban","value":"198.18.0.7"},
            {"duration":"1h","origin":"crowdsec","scenario":"crowdsecurity/ssh-bf","scope":"Range","type":"ban","value":"198.18.5.9/24"},
            {"duration":"1h","origin":"CAPI","scenario":"x","scope":"range","type":"ban","value":"2001:2:0:7::/64"},
            {"duration":"1h","origin":"CAPI","scenario":"x","scope":"Ip","type":"ban","value":"::ffff:198.18.0.9"},
            {"duration":"1h","scope":"Ip","type":"captcha","value":"198.18.0.8"},
            {"duration":"1h","scope":"Country","type":"ban","value":"FR"},
            {"duration":"1h","scope":"Ip","type":"ban","value":"2001:2:2:1::/64"},
            {"duration":"1h","scope":"Ip","type":"ban","value":"198.18.0.300"},
            {"duration":"1h","scope":"Range","type":"ban","value":"198.18.0.0/33"},
            {"duration":"soon","scope":"Ip","type":"ban","value":"198.18.0.1"},
            {"duration":"-1s","scope":"Ip","type":"ban","value":"198.18.0.1"},
            {"scope":"Ip","type":"ban","value":"198.18.0.1"},
            17
        ],"deleted":[{"duration":"-2m","origin":"cscli","scenario":"s","scope":"Ip","type":"ban","value":"198.18.0.6"}]}"#;
        // A decision of the wrong JSON type spoils the list: the whole answer is refused.
        assert!(parse(body, &ALL).is_err());
        let body = String::from_utf8_lossy(body).replace(",\n            17", "");
        let batch = parse(body.as_bytes(), &ALL).unwrap();
        let targets: Vec<String> = batch.new.iter().map(|d| d.target.to_string()).collect();
        assert_eq!(
            targets,
            [
                "198.18.0.7",
                "198.18.5.0/24",
                "2001:2:0:7::/64",
                "198.18.0.9",
                "2001:2:2:1::/64"
            ]
        );
        assert_eq!(batch.new[1].scenario, "crowdsecurity/ssh-bf");
        assert_eq!(
            batch.new[0].ttl,
            Duration::from_secs(3 * 3600 + 59 * 60 + 59)
        );
        assert_eq!((batch.malformed, batch.ignored), (5, 2));
        assert_eq!(batch.deleted.len(), 1);
        assert_eq!(batch.deleted[0].ttl, Duration::ZERO);
        let only_ip = parse(body.as_bytes(), &[Scope::Ip]).unwrap();
        assert_eq!(only_ip.new.len(), 3);
        assert_eq!(
            parse(br#"{"new":null,"deleted":null}"#, &ALL).unwrap(),
            StreamBatch::default()
        );
        assert!(parse(b"<html>", &ALL).is_err());
    }

    #[test]
    fn ranges_keep_the_whole_prefix() {
        assert_eq!(
            range("198.18.7.77/24").unwrap().to_string(),
            "198.18.7.0/24"
        );
        assert_eq!(range("2001:2::1/48").unwrap().to_string(), "2001:2::/48");
        assert_eq!(
            range("::ffff:198.18.0.0/112").unwrap().to_string(),
            "198.18.0.0/16"
        );
        assert_eq!(range("198.18.0.1/32").unwrap().to_string(), "198.18.0.1");
        for bad in [
            "198.18.0.0",
            "198.18.0.0/",
            "198.18.0.0/+8",
            "x/8",
            "::/129",
            "::ffff:0:0/95",
        ] {
            assert_eq!(range(bad), None, "{bad}");
        }
    }
}
