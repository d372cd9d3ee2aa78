//! `[proxy]`: where the TLS-terminating proxy (nginx, HAProxy) writes its request feed: a
//! file nginx appends to (buffered, the cheap way) and a datagram socket (HAProxy, or nginx's
//! syslog).

use std::path::PathBuf;

use serde::{Deserialize, Deserializer, de::Error as _};

use super::{Invalid, ensure};

/// `[proxy]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Proxy {
    /// Unix datagram socket of the feed; `None` (written "off") disables it.
    #[serde(deserialize_with = "off_or_path")]
    pub socket: Option<PathBuf>,
    /// File nginx appends its request lines to, followed by the daemon; `None` ("off")
    /// disables it.
    #[serde(deserialize_with = "off_or_path")]
    pub file: Option<PathBuf>,
    /// File mode of the socket, octal text ("0666"). Who counts is decided by
    /// `allowed_users`, checked on every datagram; the mode only decides who may send at all.
    #[serde(deserialize_with = "octal")]
    pub mode: u32,
    /// Group to give the socket ("" leaves it root's).
    pub group: String,
    /// Users whose datagrams count (names; unknown names are skipped with a warning).
    pub allowed_users: Vec<String>,
    /// Receive buffer of the socket, bytes: how much the feed absorbs while the daemon is busy.
    pub receive_buffer: usize,
    /// Datagrams the socket may queue: the daemon raises `net.unix.max_dgram_qlen` (of its
    /// network namespace) to this before it creates the socket, when it is lower; 0 leaves it.
    pub queue_datagrams: u32,
}

impl Default for Proxy {
    fn default() -> Self {
        Self {
            // On by default: nothing arrives until a proxy is configured to send.
            socket: Some(PathBuf::from("/run/floodgate/requests.sock")),
            // On by default too; the package's tmpfiles.d entry makes it exist from boot, so
            // an nginx that logs to it starts before the daemon.
            file: Some(PathBuf::from("/run/floodgate/requests.log")),
            // Anyone may send; only the allowed users' datagrams count (the rest are counted as
            // refused), so a misconfigured proxy user shows up in the metrics.
            mode: 0o666,
            group: String::new(),
            // root and the users Debian's nginx and HAProxy packages run as.
            allowed_users: ["root", "www-data", "nginx", "haproxy"]
                .map(String::from)
                .to_vec(),
            // 8 MiB: tens of thousands of log lines.
            receive_buffer: 8 << 20,
            // The kernel's default (10 to 512) drops lines at a few thousand requests/s.
            queue_datagrams: 4096,
        }
    }
}

impl Proxy {
    pub(super) fn validate(&self, path: &str) -> Result<(), Invalid> {
        ensure(
            self.mode <= 0o777,
            path,
            "mode",
            "must be an octal file mode 0..=0777",
        )?;
        ensure(
            (4096..=1 << 30).contains(&self.receive_buffer),
            path,
            "receive_buffer",
            "must be 4096..=1073741824 bytes",
        )?;
        ensure(
            self.queue_datagrams <= 1 << 20,
            path,
            "queue_datagrams",
            "must be 0..=1048576",
        )?;
        ensure(
            self.socket
                .as_ref()
                .is_none_or(|s| s.is_absolute() && s.as_os_str().len() < 108),
            path,
            "socket",
            "must be an absolute path of at most 107 bytes, or \"off\"",
        )?;
        ensure(
            self.file.as_ref().is_none_or(|f| f.is_absolute()),
            path,
            "file",
            "must be an absolute path, or \"off\"",
        )?;
        ensure(
            self.file.is_none() || self.file != self.socket,
            path,
            "file",
            "must not be the socket's path",
        )
    }
}

fn off_or_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let text = String::deserialize(d)?;
    Ok(match text.as_str() {
        "off" | "" => None,
        _ => Some(PathBuf::from(text)),
    })
}

fn octal<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let text = String::deserialize(d)?;
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .map_err(|_| D::Error::custom(format!("'{text}' is not an octal mode like \"0660\"")))
}
