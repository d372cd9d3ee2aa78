//! `[filter]` and `[sampling]`: where the XDP program runs and what it hands the daemon.

use serde::Deserialize;

use super::{Invalid, ensure};

/// `[filter]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Filter {
    /// Interfaces to protect (`--iface` overrides).
    pub interfaces: Vec<String>,
    /// Start even when a listed interface does not exist yet, and attach when it appears
    /// (false: such a start fails).
    pub wait_for_interfaces: bool,
    /// Native or generic XDP.
    pub attach_mode: AttachMode,
    /// Count matches as would-drop instead of dropping.
    pub monitor: bool,
    /// TCP ports whose plaintext HTTP/1.x request starts are counted and sampled.
    pub ports: Vec<u16>,
    /// TCP ports whose TLS ClientHellos are counted and sampled (TLS handshake evidence).
    pub tls_ports: Vec<u16>,
    /// Close the established connections of a source when the daemon blocks it (`ss -K`), so
    /// that requests it already queued stop costing the server.
    pub reset_connections: bool,
}

impl Default for Filter {
    fn default() -> Self {
        Self {
            // None: `--iface` or the file names them.
            interfaces: Vec::new(),
            // A listed interface that does not exist fails the start.
            wait_for_interfaces: false,
            // Native XDP, the fast path.
            attach_mode: AttachMode::Driver,
            // Matches are dropped.
            monitor: false,
            // The usual HTTP ports.
            ports: vec![80, 8080],
            // HTTPS.
            tls_ports: vec![443],
            // A blocked source's queued requests stop costing the server.
            reset_connections: true,
        }
    }
}

impl Filter {
    pub(super) fn validate(&self, path: &str) -> Result<(), Invalid> {
        ensure(
            !self.ports.is_empty() && !self.ports.contains(&0),
            path,
            "ports",
            "needs at least one port, none of them 0",
        )?;
        ensure(
            !self.tls_ports.contains(&0),
            path,
            "tls_ports",
            "ports are 1..=65535",
        )?;
        let mut all: Vec<u16> = self.ports.iter().chain(&self.tls_ports).copied().collect();
        all.sort_unstable();
        all.dedup();
        ensure(
            all.len() <= filter_common::capacity::PORTS as usize,
            path,
            "ports",
            format!(
                "at most {} ports in ports and tls_ports together",
                filter_common::capacity::PORTS
            ),
        )
    }
}

/// `filter.attach_mode`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// Native XDP in the driver.
    Driver,
    /// Generic XDP (any driver, slower).
    Skb,
}

/// `[sampling]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Sampling {
    /// Samples per second the daemon accepts; the 1-in-N factor adapts to stay under it.
    pub budget_per_sec: u32,
    /// Payload bytes copied per sample (1..=256).
    pub payload_bytes: u32,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            // Well under what one core decodes and counts.
            budget_per_sec: 100_000,
            // All the kernel copies: request line, Host, User-Agent.
            payload_bytes: filter_common::SAMPLE_PAYLOAD_MAX as u32,
        }
    }
}

impl Sampling {
    pub(super) fn validate(&self, path: &str) -> Result<(), Invalid> {
        ensure(
            self.budget_per_sec != 0,
            path,
            "budget_per_sec",
            "must be at least 1",
        )?;
        ensure(
            (1..=filter_common::SAMPLE_PAYLOAD_MAX as u32).contains(&self.payload_bytes),
            path,
            "payload_bytes",
            format!("must be 1..={}", filter_common::SAMPLE_PAYLOAD_MAX),
        )
    }
}
