//! The daemon's control socket: one JSON request line, one JSON reply line. `floodgate top`
//! and `floodgate why` use it for live rate state; everything else reads the pinned maps.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

/// Environment variable naming the socket for the CLI (the daemon's path comes from its config).
pub const SOCKET_ENV: &str = "FLOODGATE_CONTROL_SOCKET";

/// The socket the CLI talks to.
#[must_use]
pub fn default_socket() -> PathBuf {
    std::env::var_os(SOCKET_ENV).map_or_else(
        || PathBuf::from("/run/floodgate/control.sock"),
        PathBuf::from,
    )
}

/// Sends one request and reads the reply.
pub fn request(socket: &Path, request: &serde_json::Value) -> std::io::Result<serde_json::Value> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    writeln!(stream, "{request}")?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(std::io::Error::other)
}
