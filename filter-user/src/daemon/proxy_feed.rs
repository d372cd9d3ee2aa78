//! The proxy feed in the daemon: the socket and the file opened as configured, their lines
//! parsed into request events for the detector, and what they delivered and lost counted.

use super::{Daemon, metrics as m};
use crate::{
    clock::{monotonic_ns, wall_secs},
    config::Settings,
    sensor::{
        proxy::{self, FeedOptions, ProxyFeed},
        proxy_format::ProxyParseError,
    },
};

/// What a batch of feed lines gave.
#[derive(Default)]
struct LineCounts {
    events: u64,
    cut: u64,
}

/// What the proxy feed delivered and refused since start (for `status`).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ProxyCounts {
    pub(super) events: u64,
    pub(super) refused: u64,
    pub(super) unparsed: u64,
    pub(super) cut: u64,
    pub(super) dropped: u64,
}

/// The uids of `proxy.allowed_users` (names without a user on this host are skipped).
pub(super) fn allowed_uids(settings: &Settings) -> Vec<u32> {
    let mut uids = Vec::new();
    for name in &settings.proxy.allowed_users {
        match proxy::user_id(name) {
            Some(uid) => uids.push(uid),
            None => log::info!("proxy feed: no user {name} on this host; skipped"),
        }
    }
    uids
}

/// Opens the proxy feed socket as configured; a failure is logged and counted, and the daemon
/// goes on with the kernel sensor alone.
pub(super) fn open_proxy_feed(settings: &Settings) -> Option<ProxyFeed> {
    let Some(path) = settings.proxy.socket.clone() else {
        log::info!("proxy feed off ([proxy] socket = \"off\")");
        ::metrics::gauge!(m::PROXY_UP).set(0.0);
        return None;
    };
    let allowed_uids = allowed_uids(settings);
    let gid = match settings.proxy.group.as_str() {
        "" => None,
        name => match proxy::group_id(name) {
            Some(gid) => Some(gid),
            None => {
                log::error!("proxy feed: no group {name} (proxy.group); the socket stays root's");
                None
            }
        },
    };
    let options = FeedOptions {
        path,
        mode: settings.proxy.mode,
        gid,
        allowed_uids,
        receive_buffer: settings.proxy.receive_buffer,
        queue_datagrams: settings.proxy.queue_datagrams,
    };
    match ProxyFeed::bind(&options) {
        Ok(feed) => {
            log::info!(
                "proxy feed on {} (mode {:o}, counting users {:?})",
                options.path.display(),
                options.mode,
                settings.proxy.allowed_users
            );
            ::metrics::gauge!(m::PROXY_UP).set(1.0);
            Some(feed)
        }
        Err(err) => {
            log::error!("{err}; detecting from the kernel sensor only");
            ::metrics::gauge!(m::PROXY_UP).set(0.0);
            None
        }
    }
}

impl Daemon {
    pub(super) fn ingest_proxy(&mut self, stats: proxy::BatchStats) {
        for (why, n) in [
            ("refused", stats.refused),
            ("oversized", stats.oversized),
            ("socket_full", stats.dropped),
        ] {
            if n > 0 {
                ::metrics::counter!(m::PROXY_DROPPED, "why" => why).increment(n);
            }
        }
        if stats.refused > 0 && self.proxy_counts.refused == 0 {
            log::warn!(
                "proxy feed: refused datagrams from a user not in proxy.allowed_users (counted in \
                 {}; logged once)",
                m::PROXY_DROPPED
            );
        }
        self.proxy_counts.refused += stats.refused;
        self.proxy_counts.dropped += stats.dropped + stats.oversized;
        let Some(feed) = self.proxy.take() else {
            return;
        };
        let now = monotonic_ns();
        let mut counts = LineCounts::default();
        for datagram in feed.datagrams() {
            self.observe_proxy_line(datagram, now, None, &mut counts);
        }
        self.proxy = Some(feed);
        self.count_proxy_lines(counts);
    }

    /// Reads what nginx appended to the feed file.
    pub(super) fn read_proxy_file(&mut self) {
        let Some(mut file) = self.proxy_file.take() else {
            return;
        };
        match file.read() {
            Ok(batch) => {
                if self.proxy_file_problem.take().is_some() {
                    log::info!(
                        "proxy feed file {}: reading it again",
                        file.path().display()
                    );
                }
                ::metrics::gauge!(m::PROXY_FILE_UP).set(1.0);
                ::metrics::gauge!(m::PROXY_FILE_BACKLOG).set(batch.backlog as f64);
                self.proxy_file_backlog = batch.backlog;
                if batch.oversized > 0 {
                    ::metrics::counter!(m::PROXY_DROPPED, "why" => "oversized")
                        .increment(batch.oversized);
                    self.proxy_counts.dropped += batch.oversized;
                }
                let (mono, wall) = (monotonic_ns(), wall_secs());
                let mut counts = LineCounts::default();
                for line in file.lines() {
                    self.observe_proxy_line(line, mono, Some(wall), &mut counts);
                }
                self.count_proxy_lines(counts);
            }
            Err(err) => {
                let problem = err.to_string();
                if self.proxy_file_problem.as_ref() != Some(&problem) {
                    log::error!("{problem}; not reading it (checked again every 50 ms)");
                }
                self.proxy_file_problem = Some(problem);
                ::metrics::gauge!(m::PROXY_FILE_UP).set(0.0);
            }
        }
        self.proxy_file = Some(file);
    }

    /// Parses one request line of the feed and hands its event to the detector. `wall`: the
    /// wall clock now, when the line may have waited (the file feed): the event is then
    /// dated by the proxy's own time, so a batch keeps its spacing.
    fn observe_proxy_line(
        &mut self,
        line: &[u8],
        now: u64,
        wall: Option<f64>,
        counts: &mut LineCounts,
    ) {
        match proxy::parse(line) {
            Ok(record) => {
                counts.cut += u64::from(record.cut);
                let time_ns = match (wall, record.time) {
                    (Some(wall), Some(logged)) => {
                        let waited = (wall - logged).clamp(0.0, 1.0);
                        now.saturating_sub((waited * 1e9) as u64)
                    }
                    _ => now,
                };
                if let Some(event) = proxy::event(&record, time_ns) {
                    counts.events += 1;
                    for decision in self.detector.observe(&event) {
                        self.apply(&decision);
                    }
                }
            }
            Err(err) => {
                let why = match err {
                    ProxyParseError::Oversized => "oversized",
                    ProxyParseError::UnknownFormat => "unknown_format",
                    ProxyParseError::Version => "version",
                    ProxyParseError::Malformed => "malformed",
                    ProxyParseError::BadClient => "bad_client",
                };
                if self.proxy_counts.unparsed == 0 {
                    log::warn!(
                        "proxy feed: a line is not a Floodgate request line ({err}); is the proxy \
                         using `floodgate proxy-snippet`'s format? (counted in {}; logged once)",
                        m::PROXY_DROPPED
                    );
                }
                self.proxy_counts.unparsed += 1;
                ::metrics::counter!(m::PROXY_DROPPED, "why" => why).increment(1);
            }
        }
    }

    fn count_proxy_lines(&mut self, counts: LineCounts) {
        self.proxy_counts.events += counts.events;
        self.proxy_counts.cut += counts.cut;
        ::metrics::counter!(m::PROXY_EVENTS).increment(counts.events);
        ::metrics::counter!(m::DETECTOR_EVENTS, "sensor" => "proxy").increment(counts.events);
        if counts.cut > 0 {
            ::metrics::counter!(m::PROXY_CUT).increment(counts.cut);
        }
    }
}

/// Waits for proxy feed datagrams, or forever when the feed is off.
pub(super) async fn proxy_read(feed: Option<&mut ProxyFeed>) -> std::io::Result<proxy::BatchStats> {
    match feed {
        Some(feed) => feed.read().await,
        None => std::future::pending().await,
    }
}
