//! Keeping the filter on its interfaces. A netlink socket subscribed to link events wakes the
//! loop whenever an interface appears, changes or goes; the loop then asks the kernel, for
//! each protected interface, whether our link is attached to it now, and attaches again when
//! an interface came back (a driver reset, a bond or VLAN rebuild, a container's veth).

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use aya::programs::XdpMode;
use tokio::io::unix::AsyncFd;

use super::metrics as m;
use crate::{
    bpf::{attach, pins::Pins},
    control::InterfaceStatus,
};

/// Link-change notifications from the kernel (`RTMGRP_LINK`).
pub(super) struct LinkEvents {
    socket: AsyncFd<OwnedFd>,
}

impl LinkEvents {
    /// Subscribes to link events.
    pub(super) fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: all-zero is a valid sockaddr_nl; the fields that matter are set below.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = libc::RTMGRP_LINK as u32;
        // SAFETY: `addr` is a valid sockaddr_nl of the length given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the AsyncFd owns the descriptor and keeps it open, unchanged, while it lives.
        let socket = unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)?;
        Ok(Self { socket })
    }

    /// Waits for link events and drains them (their content does not matter: every change
    /// leads to the same check). An overflow (`ENOBUFS`) counts as a change too.
    pub(super) async fn changed(&mut self) -> io::Result<()> {
        let mut guard = self.socket.readable_mut().await?;
        let mut buf = [0u8; 8192];
        loop {
            // SAFETY: recv into a buffer we own, of the length given.
            let n = unsafe {
                libc::recv(
                    guard.get_inner().as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n >= 0 {
                continue;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EAGAIN) => break,
                Some(libc::ENOBUFS | libc::EINTR) => continue,
                _ => return Err(err),
            }
        }
        guard.clear_ready();
        Ok(())
    }
}

/// The protected interfaces and what the kernel last said about them.
pub(super) struct Interfaces {
    mode: XdpMode,
    states: Vec<InterfaceStatus>,
}

impl Interfaces {
    /// Tracks `names`, attached in `mode`.
    #[must_use]
    pub(super) fn new(names: &[String], mode: XdpMode) -> Self {
        Self {
            mode,
            states: names
                .iter()
                .map(|name| InterfaceStatus {
                    name: name.clone(),
                    attached: false,
                    reattached: 0,
                })
                .collect(),
        }
    }

    /// Asks the kernel about every interface, attaches where one is back, logs each loss and
    /// each re-attach once, and updates the metrics.
    pub(super) fn check(&mut self, pins: &Pins) {
        for state in &mut self.states {
            let was = state.attached;
            let mut now = attach::is_attached(pins, &state.name);
            if !now && attach::interface_index(&state.name).is_some() {
                let _lock = pins.lock();
                match attach::reattach(pins, &state.name, self.mode) {
                    Ok(_) => {
                        now = attach::is_attached(pins, &state.name);
                        if now {
                            state.reattached += 1;
                            metrics::counter!(m::REATTACHED, "interface" => state.name.clone())
                                .increment(1);
                            log::warn!(
                                "{}: the interface is back; XDP program attached again",
                                state.name
                            );
                        }
                    }
                    Err(err) if was => log::error!(
                        "{}: the interface is back but attaching failed: {err}",
                        state.name
                    ),
                    Err(err) => log::debug!("{}: attach failed: {err}", state.name),
                }
            }
            if was && !now {
                log::error!(
                    "{}: the XDP program is no longer attached (interface gone or replaced): \
                     UNPROTECTED until it returns",
                    state.name
                );
            }
            state.attached = now;
            metrics::gauge!(m::INTERFACE_ATTACHED, "interface" => state.name.clone()).set(if now {
                1.0
            } else {
                0.0
            });
        }
    }

    /// What the kernel last said, per interface.
    #[must_use]
    pub(super) fn states(&self) -> &[InterfaceStatus] {
        &self.states
    }
}
