//! Evidence sources. Each sensor turns its input into [`RequestEvent`]s, the one evidence type
//! the detector consumes; the detector never sees where an event came from except through
//! [`Sensor`].

pub(crate) mod connections;
pub mod http;
pub mod kernel;
pub mod proxy;
pub mod proxy_file;
pub mod proxy_format;

use std::net::IpAddr;

/// Which sensor produced an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sensor {
    /// XDP, on a verified (established) connection: plaintext request starts, TLS
    /// ClientHellos.
    Kernel,
    /// The TLS-terminating proxy's request feed: every request, inside TLS too.
    Proxy,
}

/// What an event counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// HTTP requests.
    Requests,
    /// TLS handshakes begun (ClientHellos) on an established connection.
    TlsHandshakes,
    /// Established connections a source holds open at once (a count, not a rate).
    Connections,
}

/// One piece of request evidence: who sent what, when, standing for how many requests.
#[derive(Clone, Copy, Debug)]
pub struct RequestEvent<'a> {
    /// Client address (IPv4-mapped addresses are already folded to IPv4).
    pub src: IpAddr,
    /// `CLOCK_MONOTONIC` ns when it was seen.
    pub time_ns: u64,
    /// Requests this event stands for (the sampling factor; 1 for exact sensors).
    pub weight: u32,
    /// Request method.
    pub method: &'a str,
    /// Request path (with query).
    pub path: &'a str,
    /// Host header, if seen.
    pub host: Option<&'a str>,
    /// User-Agent header, if seen.
    pub user_agent: Option<&'a str>,
    /// Where it came from.
    pub sensor: Sensor,
    /// What it counts.
    pub signal: Signal,
    /// Response status, when the sensor knows it (the proxy).
    pub status: Option<u16>,
    /// Seconds the backend spent on it, when the sensor knows it (the proxy).
    pub upstream_secs: Option<f64>,
    /// `HTTP/1.1`, `HTTP/2.0`, `HTTP/3.0`, when the sensor knows it.
    pub protocol: Option<&'a str>,
}
