//! `[fleet]`: a fleet of edge hosts sharing block decisions and heavy hitters through NATS
//! JetStream (see `sources::fleet`). Off by default: a host without NATS works as before.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Duration, Invalid, crowdsec::optional_path, ensure};

/// A secret from the configuration file: compared and cloned like a string, never shown by
/// `Debug` (so that no log line of the settings can carry it).
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"<redacted>\"")
        }
    }
}

/// `[fleet]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Fleet {
    /// Join the fleet: publish this host's decisions, enforce the others'.
    pub enabled: bool,
    /// NATS server URLs (`nats://HOST:PORT`, `tls://HOST:PORT`); the client fails over
    /// between them.
    pub servers: Vec<String>,
    /// This host's name in the fleet ("" = the kernel's host name).
    pub host: String,
    /// The JetStream key-value bucket of decisions (made when missing).
    pub bucket: String,
    /// The core NATS subject of the heavy-hitter reports.
    pub rates_subject: String,
    /// User name for user/password authentication ("" = none).
    pub user: String,
    /// Password for `user`, inline; prefer `password_file`.
    pub password: Secret,
    /// A file holding the password for `user` (mode 0600 or 0400).
    #[serde(deserialize_with = "optional_path")]
    pub password_file: Option<PathBuf>,
    /// Token authentication, inline; prefer `token_file`.
    pub token: Secret,
    /// A file holding the token (mode 0600 or 0400).
    #[serde(deserialize_with = "optional_path")]
    pub token_file: Option<PathBuf>,
    /// A NATS credentials file (JWT and nkey seed, `nsc` makes them; mode 0600 or 0400).
    #[serde(deserialize_with = "optional_path")]
    pub credentials_file: Option<PathBuf>,
    /// A file holding an nkey seed (`SU…`; mode 0600 or 0400).
    #[serde(deserialize_with = "optional_path")]
    pub nkey_seed_file: Option<PathBuf>,
    /// Refuse a connection without TLS.
    pub tls_required: bool,
    /// CA certificates (PEM) that the servers' certificates must chain to ("" = the system's).
    #[serde(deserialize_with = "optional_path")]
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; with `tls_key_file`.
    #[serde(deserialize_with = "optional_path")]
    pub tls_cert_file: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS (mode 0600 or 0400).
    #[serde(deserialize_with = "optional_path")]
    pub tls_key_file: Option<PathBuf>,
    /// The bucket's max age: no shared decision lives longer (longer TTLs are cut to it).
    pub max_ttl: Duration,
    /// Publish this host's rule decisions (operator blocks are shared with `--fleet` only).
    pub share_decisions: bool,
    /// Publish this host's heavy hitters each second and add up the peers' for
    /// `scope = "fleet"` rules.
    pub share_rates: bool,
    /// A source is a heavy hitter from this share of a fleet rule's threshold.
    pub report_share: f64,
    /// Heavy hitters reported per second at most (the heaviest first).
    pub report_max: usize,
    /// Time to connect to a server before trying the next one.
    pub connect_timeout: Duration,
}

impl Default for Fleet {
    fn default() -> Self {
        Self {
            // Off: nothing is connected until an operator points the host at NATS.
            enabled: false,
            // A nats-server on this host.
            servers: vec!["nats://127.0.0.1:4222".into()],
            host: String::new(),
            bucket: "floodgate-decisions".into(),
            rates_subject: "floodgate.rates".into(),
            // No authentication.
            user: String::new(),
            password: Secret::default(),
            password_file: None,
            token: Secret::default(),
            token_file: None,
            credentials_file: None,
            nkey_seed_file: None,
            // TLS when a server asks for it (tls:// or the server's tls_required).
            tls_required: false,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            // A day: beyond that a block is a policy, not a flood response.
            max_ttl: Duration::from_secs(86_400),
            share_decisions: true,
            share_rates: true,
            // A quarter of a threshold: four hosts at a quarter each make a fleet offence.
            report_share: 0.25,
            report_max: 1000,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Characters of a host name, bucket or subject token.
fn name_ok(text: &str, extra: &[u8]) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || extra.contains(&b))
}

/// A fleet host name: what `fleet.host` (or the kernel's host name) may be. It is stored in
/// the block entry's reason text, so it is short, and it never holds ':' (the separator).
#[must_use]
pub fn host_ok(host: &str) -> bool {
    host.len() <= 63 && name_ok(host, b".")
}

impl Fleet {
    /// The secret-bearing files, each named by its key.
    pub(crate) fn secret_files(&self) -> Vec<(&'static str, &PathBuf)> {
        [
            ("password_file", &self.password_file),
            ("token_file", &self.token_file),
            ("credentials_file", &self.credentials_file),
            ("nkey_seed_file", &self.nkey_seed_file),
            ("tls_key_file", &self.tls_key_file),
        ]
        .into_iter()
        .filter_map(|(key, path)| path.as_ref().map(|p| (key, p)))
        .collect()
    }

    pub(super) fn validate(&self, path: &str) -> Result<(), Invalid> {
        ensure(
            (std::time::Duration::from_secs(60)..=std::time::Duration::from_secs(30 * 86_400))
                .contains(&self.max_ttl.0),
            path,
            "max_ttl",
            "must be 1m..=30d",
        )?;
        ensure(
            (std::time::Duration::from_millis(100)..=std::time::Duration::from_secs(60))
                .contains(&self.connect_timeout.0),
            path,
            "connect_timeout",
            "must be 100ms..=60s",
        )?;
        ensure(
            self.report_share > 0.0 && self.report_share <= 1.0,
            path,
            "report_share",
            "must be in (0, 1]",
        )?;
        ensure(
            (1..=10_000).contains(&self.report_max),
            path,
            "report_max",
            "must be 1..=10000",
        )?;
        ensure(
            self.host.is_empty() || host_ok(&self.host),
            path,
            "host",
            "1..=63 letters, digits, '-', '_' or '.'",
        )?;
        ensure(
            name_ok(&self.bucket, b""),
            path,
            "bucket",
            "letters, digits, '-' and '_'",
        )?;
        ensure(
            self.rates_subject.split('.').all(|t| name_ok(t, b"")),
            path,
            "rates_subject",
            "dot-separated tokens of letters, digits, '-' and '_' (no wildcards)",
        )?;
        for url in &self.servers {
            ensure(
                url.parse::<async_nats::ServerAddr>().is_ok(),
                path,
                "servers",
                format!("'{url}' is not a NATS URL (nats://HOST:PORT or tls://HOST:PORT)"),
            )?;
        }
        let methods = [
            !self.user.is_empty(),
            !self.token.0.is_empty() || self.token_file.is_some(),
            self.credentials_file.is_some(),
            self.nkey_seed_file.is_some(),
        ];
        ensure(
            methods.iter().filter(|m| **m).count() <= 1,
            path,
            "user",
            "set at most one authentication: user (+ password), token, credentials_file or \
             nkey_seed_file",
        )?;
        let has_password = !self.password.0.is_empty() || self.password_file.is_some();
        ensure(
            self.user.is_empty() != has_password,
            path,
            "password",
            "user needs exactly one of password and password_file (and they need a user)",
        )?;
        ensure(
            self.password.0.is_empty() || self.password_file.is_none(),
            path,
            "password",
            "set one of password and password_file",
        )?;
        ensure(
            self.token.0.is_empty() || self.token_file.is_none(),
            path,
            "token",
            "set one of token and token_file",
        )?;
        ensure(
            self.tls_cert_file.is_some() == self.tls_key_file.is_some(),
            path,
            "tls_cert_file",
            "set both tls_cert_file and tls_key_file, or neither",
        )?;
        for (key, file) in self
            .secret_files()
            .into_iter()
            .chain(self.tls_ca_file.as_ref().map(|p| ("tls_ca_file", p)))
            .chain(self.tls_cert_file.as_ref().map(|p| ("tls_cert_file", p)))
        {
            ensure(file.is_absolute(), path, key, "must be an absolute path")?;
        }
        ensure(
            !self.enabled || !self.servers.is_empty(),
            path,
            "servers",
            "name at least one server",
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    #[test]
    fn fleet_settings_are_checked() {
        let err = |text: &str| parse(text, "t").unwrap_err().to_string();
        assert!(err("[fleet]\nservers = [\"http://x\"]").contains("fleet.servers"));
        assert!(err("[fleet]\nhost = \"a:b\"").contains("fleet.host"));
        assert!(err("[fleet]\nbucket = \"a.b\"").contains("fleet.bucket"));
        assert!(err("[fleet]\nrates_subject = \"a.>\"").contains("fleet.rates_subject"));
        assert!(err("[fleet]\nuser = \"u\"").contains("fleet.password"));
        assert!(err("[fleet]\npassword = \"p\"").contains("fleet.password"));
        assert!(
            err("[fleet]\nuser = \"u\"\npassword = \"p\"\ntoken = \"t\"").contains("fleet.user")
        );
        assert!(err("[fleet]\ntoken_file = \"rel/t\"").contains("fleet.token_file"));
        assert!(err("[fleet]\ntls_cert_file = \"/c\"").contains("fleet.tls_cert_file"));
        assert!(err("[fleet]\nmax_ttl = \"90d\"").contains("fleet.max_ttl"));
        assert!(err("[fleet]\nreport_share = 0.0").contains("fleet.report_share"));
        let s = parse(
            "[fleet]\nenabled = true\nservers = [\"nats://198.18.0.1:4222\", \"tls://h:4443\"]\n\
             user = \"fg\"\npassword_file = \"/etc/floodgate/nats.pass\"",
            "t",
        )
        .unwrap();
        assert!(s.fleet.enabled);
        assert_eq!(s.fleet.servers.len(), 2);
    }

    #[test]
    fn a_secret_is_never_shown() {
        let s = parse(
            "[fleet]\nuser = \"fg\"\npassword = \"hunter2-secret\"\n[crowdsec]\n",
            "t",
        )
        .unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert_eq!(s.fleet.password.0, "hunter2-secret");
    }
}
