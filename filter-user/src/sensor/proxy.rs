//! The proxy sensor: one event per request from the TLS-terminating proxy on this host (nginx,
//! HAProxy), received on a unix datagram socket the daemon owns. Every datagram carries its
//! sender's credentials (`SO_PASSCRED`); only the configured users count, so a local user
//! cannot get a third party blocked. Datagrams are read in batches into one arena and parsed
//! by [`super::proxy_format`] after the wait, so the loop never awaits while holding them.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
};

use tokio::io::unix::AsyncFd;

use super::proxy_format::{self, MAX_DATAGRAM, ProxyParseError, ProxyRecord};
use super::{RequestEvent, Sensor, Signal};

/// Datagrams read per wake at most, so that a busy feed cannot starve the rest of the loop.
pub(crate) const BATCH: usize = 1024;

/// How the socket is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FeedOptions {
    /// Socket path.
    pub path: PathBuf,
    /// File mode of the socket (who may connect is further limited by `allowed_uids`).
    pub mode: u32,
    /// Group of the socket, if it is to be changed.
    pub gid: Option<u32>,
    /// Users whose datagrams count.
    pub allowed_uids: Vec<u32>,
    /// Receive buffer, bytes.
    pub receive_buffer: usize,
    /// Raise `net.unix.max_dgram_qlen` to this first, when lower (0: leave it).
    pub queue_datagrams: u32,
}

/// Where the kernel keeps the datagram queue length of new unix sockets (per namespace).
const MAX_DGRAM_QLEN: &str = "/proc/sys/net/unix/max_dgram_qlen";

/// Raises the queue length new unix datagram sockets get, when it is lower than `wanted`;
/// a failure is logged (the feed then works with the smaller queue).
fn raise_queue(wanted: u32) {
    if wanted == 0 {
        return;
    }
    let now = std::fs::read_to_string(MAX_DGRAM_QLEN)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok());
    match now {
        Some(now) if now >= wanted => {}
        _ => match std::fs::write(MAX_DGRAM_QLEN, wanted.to_string()) {
            Ok(()) => log::info!(
                "proxy feed: net.unix.max_dgram_qlen raised from {} to {wanted} (proxy.queue_datagrams)",
                now.map_or_else(|| "?".to_owned(), |n| n.to_string())
            ),
            Err(err) => log::warn!(
                "proxy feed: could not raise net.unix.max_dgram_qlen to {wanted} ({err}); the \
                 proxy drops log lines once {} are queued",
                now.map_or_else(|| "?".to_owned(), |n| n.to_string())
            ),
        },
    }
}

/// Errors creating the socket.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyFeedError {
    /// A socket call failed.
    #[error("proxy feed {path}: {call}: {source}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// Which call.
        call: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The path is too long for a unix socket address.
    #[error("proxy feed {0}: path too long for a unix socket (at most 107 bytes)")]
    PathTooLong(PathBuf),
}

/// What a batch held besides its datagrams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BatchStats {
    /// Datagrams from a user not in `allowed_uids`, or without credentials.
    pub refused: u64,
    /// Datagrams longer than [`MAX_DATAGRAM`].
    pub oversized: u64,
    /// Datagrams the kernel dropped because the receive queue was full (`SO_RXQ_OVFL`), since
    /// the last batch.
    pub dropped: u64,
}

/// The bound socket.
pub(crate) struct ProxyFeed {
    socket: AsyncFd<OwnedFd>,
    path: PathBuf,
    allowed_uids: Vec<u32>,
    scratch: Vec<u8>,
    arena: Vec<u8>,
    spans: Vec<(usize, usize)>,
    last_drops: u32,
}

fn sockopt(fd: &OwnedFd, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: setsockopt with a pointer to a c_int of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl ProxyFeed {
    /// Creates and binds the socket (replacing a stale one), sets its mode and group.
    pub(crate) fn bind(options: &FeedOptions) -> Result<Self, ProxyFeedError> {
        use std::os::unix::fs::PermissionsExt as _;
        let path = options.path.clone();
        let err = |call: &'static str| {
            let path = path.clone();
            move |source| ProxyFeedError::Socket { path, call, source }
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err("create directory"))?;
        }
        // SAFETY: all-zero is a valid sockaddr_un; family and path are set below.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let bytes = path.as_os_str().as_encoded_bytes();
        if bytes.len() >= addr.sun_path.len() {
            return Err(ProxyFeedError::PathTooLong(path));
        }
        for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
            *dst = *src as libc::c_char;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err("remove stale socket")(e)),
        }
        raise_queue(options.queue_datagrams);
        // SAFETY: plain socket(2); the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            return Err(err("socket")(io::Error::last_os_error()));
        }
        // SAFETY: a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: `addr` is a valid sockaddr_un of the length given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_un>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(err("bind")(io::Error::last_os_error()));
        }
        sockopt(&fd, libc::SO_PASSCRED, 1).map_err(err("SO_PASSCRED"))?;
        sockopt(&fd, libc::SO_RXQ_OVFL, 1).map_err(err("SO_RXQ_OVFL"))?;
        let buffer = libc::c_int::try_from(options.receive_buffer).unwrap_or(libc::c_int::MAX);
        // As root the configured size applies beyond net.core.rmem_max; else the capped one.
        if sockopt(&fd, libc::SO_RCVBUFFORCE, buffer).is_err() {
            sockopt(&fd, libc::SO_RCVBUF, buffer).map_err(err("SO_RCVBUF"))?;
        }
        if let Some(gid) = options.gid {
            std::os::unix::fs::chown(&path, None, Some(gid)).map_err(err("chown"))?;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(options.mode))
            .map_err(err("chmod"))?;
        // SAFETY: the AsyncFd owns the descriptor and keeps it open, unchanged, while it lives.
        let socket = unsafe { AsyncFd::register(fd) }
            .map_err(|e| err("register with tokio")(e.into_parts().1))?;
        Ok(Self {
            socket,
            path,
            allowed_uids: options.allowed_uids.clone(),
            scratch: vec![0; MAX_DATAGRAM + 1],
            arena: Vec::new(),
            spans: Vec::new(),
            last_drops: 0,
        })
    }

    /// The socket path.
    #[must_use]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for datagrams and reads up to [`BATCH`] of them from allowed senders; they are
    /// then available through [`Self::datagrams`].
    pub(crate) async fn read(&mut self) -> io::Result<BatchStats> {
        self.arena.clear();
        self.spans.clear();
        let mut stats = BatchStats::default();
        let mut guard = self.socket.readable_mut().await?;
        let fd = guard.get_inner().as_raw_fd();
        while self.spans.len() < BATCH {
            match recv(fd, &mut self.scratch)? {
                None => {
                    guard.clear_ready();
                    break;
                }
                Some(received) => {
                    if let Some(drops) = received.drops {
                        stats.dropped += u64::from(drops.wrapping_sub(self.last_drops));
                        self.last_drops = drops;
                    }
                    if received.len > MAX_DATAGRAM {
                        stats.oversized += 1;
                        continue;
                    }
                    if !received
                        .uid
                        .is_some_and(|uid| self.allowed_uids.contains(&uid))
                    {
                        stats.refused += 1;
                        continue;
                    }
                    let start = self.arena.len();
                    self.arena.extend_from_slice(&self.scratch[..received.len]);
                    self.spans.push((start, received.len));
                }
            }
        }
        Ok(stats)
    }

    /// The datagrams of the last [`Self::read`].
    pub(crate) fn datagrams(&self) -> impl Iterator<Item = &[u8]> {
        self.spans
            .iter()
            .map(|(start, len)| &self.arena[*start..*start + *len])
    }
}

struct Received {
    len: usize,
    uid: Option<u32>,
    drops: Option<u32>,
}

/// One `recvmsg`; `None` when nothing is queued.
fn recv(fd: i32, buf: &mut [u8]) -> io::Result<Option<Received>> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for SCM_CREDENTIALS and the SO_RXQ_OVFL counter, 8-byte aligned.
    let mut control = [0u64; 16];
    // SAFETY: all-zero is a valid msghdr; the buffers are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    loop {
        // SAFETY: `msg` points at a live iovec and control buffer of the sizes given.
        let n = unsafe { libc::recvmsg(fd, &raw mut msg, libc::MSG_DONTWAIT | libc::MSG_TRUNC) };
        if n >= 0 {
            let mut uid = None;
            let mut drops = None;
            // SAFETY: the CMSG macros walk the control buffer the kernel filled, within
            // msg_controllen; each payload is read unaligned at its own type.
            unsafe {
                let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
                while !cmsg.is_null() {
                    let data = libc::CMSG_DATA(cmsg);
                    match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                        (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) => {
                            let cred: libc::ucred = std::ptr::read_unaligned(data.cast());
                            uid = Some(cred.uid);
                        }
                        (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => {
                            drops = Some(std::ptr::read_unaligned(data.cast::<u32>()));
                        }
                        _ => {}
                    }
                    cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
                }
            }
            // With MSG_TRUNC the length is the datagram's, even when it was longer than `buf`.
            return Ok(Some(Received {
                len: n as usize,
                uid,
                drops,
            }));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) => return Ok(None),
            Some(libc::EINTR) => {}
            _ => return Err(err),
        }
    }
}

/// The request event a proxy record is evidence of (weight 1: every request is logged).
#[must_use]
pub fn event<'a>(record: &'a ProxyRecord<'a>, time_ns: u64) -> Option<RequestEvent<'a>> {
    Some(RequestEvent {
        src: record.client?,
        time_ns,
        weight: 1,
        method: record.method.as_deref().unwrap_or(""),
        path: record.uri.as_deref().unwrap_or(""),
        host: record.host.as_deref(),
        user_agent: record.user_agent.as_deref(),
        sensor: Sensor::Proxy,
        signal: Signal::Requests,
        status: record.status,
        upstream_secs: record.upstream_secs,
        protocol: record.protocol.as_deref(),
    })
}

/// Parses a datagram (see [`proxy_format::parse`]).
pub fn parse(datagram: &[u8]) -> Result<ProxyRecord<'_>, ProxyParseError> {
    proxy_format::parse(datagram)
}

/// The uid of a user name (NSS, as `id -u NAME`); `None` when there is no such user.
#[must_use]
pub(crate) fn user_id(name: &str) -> Option<u32> {
    let c_name = std::ffi::CString::new(name).ok()?;
    // SAFETY: all-zero is a valid passwd to be overwritten.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwnam_r writes into `pwd` and `buf` (of the length given) and sets `result`.
    let rc = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &raw mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &raw mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(pwd.pw_uid)
}

/// The gid of a group name; `None` when there is no such group.
#[must_use]
pub(crate) fn group_id(name: &str) -> Option<u32> {
    let c_name = std::ffi::CString::new(name).ok()?;
    // SAFETY: all-zero is a valid group to be overwritten.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: getgrnam_r writes into `grp` and `buf` (of the length given) and sets `result`.
    let rc = unsafe {
        libc::getgrnam_r(
            c_name.as_ptr(),
            &raw mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &raw mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(grp.gr_gid)
}
