//! `[crowdsec]`: Floodgate as a CrowdSec bouncer. The daemon polls the Local API's decision
//! stream and enforces its `Ip` and `Range` bans in XDP (see `sources::crowdsec`).

use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use super::{Duration, Invalid, ensure};

/// A CrowdSec decision scope Floodgate can enforce.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One address (`cscli decisions add --ip`): the exact map.
    #[serde(alias = "ip")]
    Ip,
    /// A CIDR prefix (`cscli decisions add --range`): the prefix map.
    #[serde(alias = "range")]
    Range,
}

impl Scope {
    /// The word the LAPI uses (in its `scopes` filter and in decisions).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ip => "Ip",
            Self::Range => "Range",
        }
    }
}

/// `[crowdsec]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Crowdsec {
    /// Poll the LAPI and enforce its decisions.
    pub enabled: bool,
    /// Base URL of the Local API (`http://HOST:PORT`).
    pub lapi_url: String,
    /// The bouncer key (`cscli bouncers add NAME`); prefer `api_key_file`.
    pub api_key: String,
    /// A file holding the bouncer key (mode 0600 or 0400: one readable by group or others is
    /// refused); written "" for none.
    #[serde(deserialize_with = "optional_path")]
    pub api_key_file: Option<PathBuf>,
    /// Time between two polls of the decision stream.
    pub poll_interval: Duration,
    /// Time one poll may take (connect, request, answer) before it counts as failed.
    pub timeout: Duration,
    /// Decision scopes to enforce.
    pub scopes: Vec<Scope>,
    /// Only decisions of these origins (`crowdsec`, `cscli`, `CAPI`, `lists`…); empty: all.
    pub origins: Vec<String>,
    /// Only decisions whose scenario contains one of these words; empty: all.
    pub scenarios_containing: Vec<String>,
    /// No decision whose scenario contains one of these words.
    pub scenarios_not_containing: Vec<String>,
}

impl Default for Crowdsec {
    fn default() -> Self {
        Self {
            // Off: nothing is polled until an operator points it at a LAPI.
            enabled: false,
            // The LAPI of a crowdsec package on this host.
            lapi_url: "http://127.0.0.1:8080".into(),
            api_key: String::new(),
            api_key_file: None,
            // The firewall bouncer polls every 10 s; 2 s keeps a new ban close to real time.
            poll_interval: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
            scopes: vec![Scope::Ip, Scope::Range],
            origins: Vec::new(),
            scenarios_containing: Vec::new(),
            scenarios_not_containing: Vec::new(),
        }
    }
}

impl Crowdsec {
    pub(super) fn validate(&self, path: &str) -> Result<(), Invalid> {
        ensure(
            (std::time::Duration::from_millis(100)..=std::time::Duration::from_secs(3600))
                .contains(&self.poll_interval.0),
            path,
            "poll_interval",
            "must be 100ms..=1h",
        )?;
        ensure(
            (std::time::Duration::from_millis(100)..=std::time::Duration::from_secs(600))
                .contains(&self.timeout.0),
            path,
            "timeout",
            "must be 100ms..=10m",
        )?;
        let words = self
            .origins
            .iter()
            .chain(&self.scenarios_containing)
            .chain(&self.scenarios_not_containing);
        for word in words {
            ensure(
                !word.is_empty() && word.bytes().all(|b| b.is_ascii_graphic() && b != b','),
                path,
                "origins/scenarios_containing/scenarios_not_containing",
                format!("'{word}': a filter word is printable ASCII without ',' or spaces"),
            )?;
        }
        if !self.enabled {
            return Ok(());
        }
        crate::sources::crowdsec::http::Endpoint::parse(&self.lapi_url).map_err(|err| Invalid {
            key: format!("{path}.lapi_url"),
            problem: err.to_string(),
        })?;
        ensure(
            !self.scopes.is_empty(),
            path,
            "scopes",
            "enable at least Ip or Range",
        )?;
        ensure(
            self.api_key.is_empty() != self.api_key_file.is_none(),
            path,
            "api_key",
            "set exactly one of api_key and api_key_file",
        )?;
        ensure(
            self.api_key.bytes().all(|b| b.is_ascii_graphic()),
            path,
            "api_key",
            "must be printable ASCII without spaces",
        )?;
        ensure(
            self.api_key_file.as_ref().is_none_or(|f| f.is_absolute()),
            path,
            "api_key_file",
            "must be an absolute path",
        )
    }
}

pub(super) fn optional_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let text = String::deserialize(d)?;
    Ok((!text.is_empty()).then(|| PathBuf::from(text)))
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    #[test]
    fn an_enabled_bouncer_needs_one_key_and_an_http_url() {
        let err = |text: &str| parse(text, "t").unwrap_err().to_string();
        assert!(err("[crowdsec]\nenabled = true").contains("crowdsec.api_key: set exactly one"));
        assert!(
            err("[crowdsec]\nenabled = true\napi_key = \"k\"\napi_key_file = \"/k\"")
                .contains("set exactly one")
        );
        assert!(
            err("[crowdsec]\nenabled = true\napi_key = \"k\"\nlapi_url = \"https://x\"")
                .contains("crowdsec.lapi_url")
        );
        assert!(err("[crowdsec]\npoll_interval = \"10ms\"").contains("crowdsec.poll_interval"));
        assert!(err("[crowdsec]\nscopes = [\"Country\"]").contains("scopes"));
        let s = parse(
            "[crowdsec]\nenabled = true\napi_key_file = \"/etc/k\"\nscopes = [\"ip\"]",
            "t",
        )
        .unwrap();
        assert_eq!(s.crowdsec.scopes, [super::Scope::Ip]);
    }
}
