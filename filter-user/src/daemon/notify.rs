//! systemd's notify protocol (`Type=notify`): READY=1, RELOADING=1, STOPPING=1, STATUS=….
//! A no-op when not started by systemd.

use std::os::unix::net::UnixDatagram;

/// Sends `state` to `$NOTIFY_SOCKET`, if set. Failures are logged, never fatal.
pub(super) fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = UnixDatagram::unbound().and_then(|socket| {
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)
        } else {
            socket.send_to(state.as_bytes(), &path)
        }
    });
    if let Err(err) = result {
        log::warn!("sd_notify {state:?}: {err}");
    }
}

/// `RELOADING=1` with the monotonic timestamp systemd wants alongside it.
#[must_use]
pub(super) fn reloading() -> String {
    format!(
        "RELOADING=1\nMONOTONIC_USEC={}",
        crate::clock::monotonic_ns() / 1000
    )
}
