//! `floodgate run`: load or re-adopt the pinned filter, attach it, then one tokio task reads
//! samples from the ring buffer (`AsyncFd`), runs the detector, writes decisions, and once per
//! second adapts sampling, sweeps expired blocks and updates metrics. SIGHUP reloads the
//! configuration; SIGTERM/SIGINT stop the daemon while the pinned filter keeps enforcing.

use std::{
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::maps::{Map, MapData, RingBuf};
use filter_common::{config, counter, maps, reason};
use serde_json::json;
use tokio::{
    io::unix::AsyncFd,
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::UnixListener,
    signal::unix::{SignalKind, signal},
};

use crate::{
    attach,
    cli::RunArgs,
    clock::{format_duration, monotonic_ns},
    config::{self as cfg, Settings},
    detect::{Decision, Detector},
    filter::{Filter, block_entry},
    guard,
    http::SampleRecord,
    metrics as m,
    notify::{notify, reloading},
    pins::Pins,
    target::Target,
};

/// Largest 1-in-N factor.
const MAX_SAMPLE_EVERY: u32 = 1 << 16;

/// Where the configuration came from (re-read on SIGHUP).
#[derive(Clone, Debug)]
enum ConfigSource {
    File(PathBuf),
    Embedded,
}

impl ConfigSource {
    fn load(&self) -> Result<Settings, cfg::ConfigError> {
        match self {
            Self::File(path) => cfg::load_file(path),
            Self::Embedded => cfg::parse(cfg::DEFAULT_TOML, "embedded default configuration"),
        }
    }
}

/// Runs the daemon until SIGTERM/SIGINT.
pub fn run(pins: &Pins, args: RunArgs) -> Result<()> {
    let source = match &args.config {
        Some(path) => ConfigSource::File(path.clone()),
        None if std::path::Path::new(cfg::DEFAULT_PATH).exists() => {
            ConfigSource::File(cfg::DEFAULT_PATH.into())
        }
        None => ConfigSource::Embedded,
    };
    let mut settings = source.load()?;
    apply_overrides(&mut settings, &args)?;
    crate::logging::init(settings.log_level);
    if settings.interfaces.is_empty() {
        bail!(
            "no interface to protect: pass --iface IF or set filter.interfaces in the configuration"
        );
    }
    log::info!("configuration: {source:?}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(async move {
        let mut daemon = Daemon::start(pins.clone(), settings, source, args).await?;
        let outcome = daemon.serve().await;
        daemon.stop();
        outcome
    })
}

fn apply_overrides(settings: &mut Settings, args: &RunArgs) -> Result<()> {
    if !args.ifaces.is_empty() {
        settings.interfaces.clone_from(&args.ifaces);
    }
    if args.skb {
        settings.skb = true;
    }
    if let Some(listen) = &args.metrics_listen {
        settings.metrics_listen = match listen.as_str() {
            "off" => None,
            text => Some(text.parse().with_context(|| {
                format!("--metrics-listen: '{text}' is not address:port or off")
            })?),
        };
    }
    if let Some(socket) = &args.control_socket {
        settings.control_socket.clone_from(socket);
    }
    Ok(())
}

struct Daemon {
    pins: Pins,
    settings: Settings,
    source: ConfigSource,
    detach_on_exit: bool,
    filter: Filter,
    detector: Detector,
    ring: AsyncFd<RingBuf<MapData>>,
    control: Option<UnixListener>,
    last_tick: Instant,
    last_sweep: Instant,
    last_starts: u64,
    sample_every: u32,
}

impl Daemon {
    async fn start(
        pins: Pins,
        settings: Settings,
        source: ConfigSource,
        args: RunArgs,
    ) -> Result<Self> {
        {
            let _lock = pins.lock()?;
            let loaded = attach::ensure_loaded(&pins)?;
            log::info!("program {:?} under {}", loaded, pins.layout_dir().display());
            for iface in &settings.interfaces {
                let mode = attach::mode(settings.skb);
                let attached = attach::attach(&pins, iface, mode)?;
                log::info!("{iface}: XDP link {attached:?} ({mode:?} mode)");
            }
        }
        let filter = Filter::open(&pins)?;
        let sample_every = filter.setting(config::SAMPLE_EVERY)?.max(1);
        let last_starts = filter.counters()?[counter::REQUEST_STARTS as usize];
        let ring_path = pins.map(maps::SAMPLES);
        let ring = MapData::from_pin(&ring_path)
            .with_context(|| format!("open {}", ring_path.display()))?;
        let ring = RingBuf::try_from(Map::from_map_data(ring)?)?;
        // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged, for as long as the
        // AsyncFd (which owns the RingBuf) lives.
        let ring = unsafe { AsyncFd::register(ring) }
            .map_err(|e| anyhow::anyhow!("register ring buffer with tokio: {e}"))?;
        if let Some(listen) = settings.metrics_listen {
            m::install(listen)?;
            log::info!("metrics on http://{listen}/metrics");
        }
        let control = bind_control(&settings.control_socket)?;
        let detector = Detector::new(&settings);
        let mut daemon = Self {
            pins,
            settings: settings.clone(),
            source,
            detach_on_exit: args.detach_on_exit,
            filter,
            detector,
            ring,
            control: Some(control),
            last_tick: Instant::now(),
            last_sweep: Instant::now(),
            last_starts,
            sample_every,
        };
        daemon.apply_kernel_settings(&settings, &[])?;
        Ok(daemon)
    }

    async fn serve(&mut self) -> Result<()> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        // Ready only once the signal handlers exist: a reload (SIGHUP) sent right after READY=1
        // must reload, not kill the daemon with the default action.
        let interfaces = self.settings.interfaces.join(", ");
        notify(&format!("READY=1\nSTATUS=protecting {interfaces}"));
        log::info!(
            "ready: protecting {interfaces} (ports {:?})",
            self.settings.ports
        );
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let control = self.control.take().context("control socket")?;
        loop {
            tokio::select! {
                _ = term.recv() => { log::info!("SIGTERM: stopping; the pinned filter keeps enforcing"); break; }
                _ = int.recv() => { log::info!("SIGINT: stopping; the pinned filter keeps enforcing"); break; }
                _ = hup.recv() => self.reload(),
                _ = ticker.tick() => self.tick(),
                ready = self.ring.readable_mut() => {
                    let mut guard = ready.context("ring buffer poll")?;
                    let mut batch = Vec::new();
                    {
                        let ring = guard.get_inner_mut();
                        while let Some(item) = ring.next() {
                            if let Some(sample) = SampleRecord::decode(&item) {
                                batch.push(sample);
                            }
                            if batch.len() >= 4096 { break; }
                        }
                    }
                    if batch.len() < 4096 {
                        guard.clear_ready();
                    }
                    drop(guard);
                    self.ingest(&batch);
                }
                accepted = control.accept() => {
                    if let Ok((stream, _)) = accepted {
                        self.answer(stream).await;
                    }
                }
            }
        }
        Ok(())
    }

    fn ingest(&mut self, batch: &[SampleRecord]) {
        metrics::counter!(m::DETECTOR_SAMPLES).increment(batch.len() as u64);
        for sample in batch {
            for decision in self.detector.observe(sample) {
                self.apply(&decision);
            }
        }
    }

    fn apply(&mut self, d: &Decision) {
        let action = if d.block { "block" } else { "monitor" };
        metrics::counter!(m::DECISIONS, "rule" => d.rule.clone(), "action" => action).increment(1);
        if !d.block {
            log::info!(
                "monitor: {} over rule {} at {:.0} req/s (threshold {:.0}); not blocked (action = monitor)",
                d.target,
                d.rule,
                d.rate,
                d.threshold
            );
            return;
        }
        let allowed = self.filter.is_allowed(d.target.ip).unwrap_or_else(|err| {
            log::warn!(
                "allow list lookup for {}: {err}; refusing to block it",
                d.target
            );
            true
        });
        let (inside, total) = if d.target.is_host() {
            (0, 0)
        } else {
            self.detector.legit_clients(&d.target)
        };
        if let Err(refusal) = guard::check(d, allowed, inside, total, &self.settings) {
            let reason = match refusal {
                guard::Refusal::AllowListed => "allow_listed",
                guard::Refusal::TooWide { .. } => "too_wide",
                guard::Refusal::Collateral { .. } => "collateral",
            };
            metrics::counter!(m::REFUSED, "reason" => reason).increment(1);
            log::warn!(
                "refused to block {} (rule {}, {:.0} req/s): {refusal}",
                d.target,
                d.rule,
                d.rate
            );
            return;
        }
        let code = if d.aggregate {
            reason::AGGREGATE
        } else {
            reason::RULE
        };
        let entry = block_entry(Some(d.ttl), code, &d.rule);
        // Never shorten a block already in force (e.g. an operator's permanent one).
        if let Ok(Some(existing)) = self.filter.block_entry(d.target)
            && existing.in_force(monotonic_ns())
            && (existing.expires_ns == 0 || existing.expires_ns >= entry.expires_ns)
        {
            return;
        }
        if let Err(err) = self.write_block(d.target, &entry) {
            metrics::counter!(m::WRITE_FAILURES).increment(1);
            log::error!("could not block {} (rule {}): {err}", d.target, d.rule);
            return;
        }
        if self.settings.reset_connections {
            reset_connections(d.target);
        }
        let latency = monotonic_ns().saturating_sub(d.crossed_ns) as f64 / 1e9;
        metrics::histogram!(m::DETECTION_LATENCY).record(latency);
        log::info!(
            "block {} rule={} rate={:.0}/s threshold={:.0}/s ttl={} offence={} latency={:.0}ms{}",
            d.target,
            d.rule,
            d.rate,
            d.threshold,
            format_duration(d.ttl),
            d.offence,
            latency * 1000.0,
            if d.aggregate {
                " (prefix aggregated from blocked members)"
            } else {
                ""
            }
        );
    }

    /// Writes a decision. When the exact map is full, the documented policy applies: the
    /// daemon-made entry closest to expiry is evicted (operators' entries never are), logged and
    /// counted; with nothing evictable the write fails loudly.
    fn write_block(
        &mut self,
        target: Target,
        entry: &filter_common::BlockEntry,
    ) -> Result<(), crate::filter::FilterError> {
        match self.filter.block(target, entry) {
            Err(crate::filter::FilterError::Full { map, capacity }) if target.is_host() => {
                let victim = self.filter.evict_soonest_rule_block()?;
                let Some(victim) = victim else {
                    return Err(crate::filter::FilterError::Full { map, capacity });
                };
                metrics::counter!(m::EVICTIONS).increment(1);
                log::warn!(
                    "block map {map} full ({capacity} entries): evicted {victim} (the daemon's entry closest to expiry) to block {target}"
                );
                self.filter.block(target, entry)
            }
            other => other,
        }
    }

    fn tick(&mut self) {
        let elapsed = self.last_tick.elapsed();
        self.last_tick = Instant::now();
        let now = monotonic_ns();
        self.detector.tick(now, elapsed);
        match self.filter.counters() {
            Ok(counters) => {
                for index in counter::OUTCOMES {
                    metrics::counter!(m::PACKETS, "outcome" => counter::NAMES[index as usize])
                        .absolute(counters[index as usize]);
                }
                let starts = counters[counter::REQUEST_STARTS as usize];
                metrics::counter!(m::REQUEST_STARTS).absolute(starts);
                metrics::counter!(m::SAMPLES, "fate" => "taken")
                    .absolute(counters[counter::SAMPLES as usize]);
                metrics::counter!(m::SAMPLES, "fate" => "lost")
                    .absolute(counters[counter::SAMPLES_LOST as usize]);
                metrics::counter!(m::SAMPLES, "fate" => "unverified")
                    .absolute(counters[counter::SAMPLES_UNVERIFIED as usize]);
                self.adapt_sampling(starts.saturating_sub(self.last_starts), elapsed);
                self.last_starts = starts;
            }
            Err(err) => log::warn!("reading counters: {err}"),
        }
        metrics::gauge!(m::SAMPLE_EVERY).set(f64::from(self.sample_every));
        metrics::gauge!(m::TRACKED).set(self.detector.table().len() as f64);
        metrics::gauge!(m::TRACKED_BYTES_PER_KEY)
            .set(crate::rate::RateTable::bytes_per_key() as f64);
        metrics::gauge!(m::MEMORY).set(m::resident_bytes() as f64);
        if self.last_sweep.elapsed() >= self.settings.sweep_interval {
            self.last_sweep = Instant::now();
            self.sweep();
        }
    }

    /// Keeps samples per second under the budget: N = ceil(request starts per second / budget).
    fn adapt_sampling(&mut self, starts: u64, elapsed: Duration) {
        let per_sec = starts as f64 / elapsed.as_secs_f64().max(0.001);
        let wanted = (per_sec / f64::from(self.settings.sample_budget))
            .ceil()
            .clamp(1.0, f64::from(MAX_SAMPLE_EVERY)) as u32;
        if wanted != self.sample_every {
            match self.filter.set_setting(config::SAMPLE_EVERY, wanted) {
                Ok(()) => {
                    log::debug!("sampling 1 in {wanted} ({per_sec:.0} request starts/s)");
                    self.sample_every = wanted;
                }
                Err(err) => log::warn!("setting the sampling factor: {err}"),
            }
        }
    }

    fn sweep(&mut self) {
        match self.filter.sweep_expired() {
            Ok(removed) if !removed.is_empty() => {
                metrics::counter!(m::EXPIRED).increment(removed.len() as u64);
                let shown: Vec<String> = removed.iter().take(8).map(Target::to_string).collect();
                let more = removed.len().saturating_sub(shown.len());
                log::info!(
                    "expired {} block(s): {}{}",
                    removed.len(),
                    shown.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                );
                for target in &removed {
                    self.detector.forget(target);
                }
            }
            Ok(_) => {}
            Err(err) => log::warn!("sweeping expired blocks: {err}"),
        }
        let (exact, prefix) = self.filter.block_counts();
        metrics::gauge!(m::ACTIVE_BLOCKS, "kind" => "exact").set(exact as f64);
        metrics::gauge!(m::ACTIVE_BLOCKS, "kind" => "prefix").set(prefix as f64);
    }

    /// Writes ports, sample size, monitor flag and the configuration's allow list (removing
    /// entries that an earlier configuration added and this one dropped).
    fn apply_kernel_settings(
        &mut self,
        settings: &Settings,
        previous_allow: &[Target],
    ) -> Result<()> {
        let _lock = self.pins.lock()?;
        self.filter.set_ports(&settings.ports)?;
        self.filter
            .set_setting(config::SAMPLE_BYTES, settings.payload_bytes)?;
        self.filter
            .set_setting(config::MONITOR, u32::from(settings.monitor))?;
        for gone in previous_allow
            .iter()
            .filter(|t| !settings.allow.contains(t))
        {
            self.filter.disallow(*gone)?;
        }
        for target in &settings.allow {
            self.filter.allow(*target)?;
        }
        Ok(())
    }

    fn reload(&mut self) {
        notify(&reloading());
        match self.source.load() {
            Ok(mut new) => {
                // Interfaces and listeners are fixed at start; everything else applies now.
                new.interfaces.clone_from(&self.settings.interfaces);
                new.skb = self.settings.skb;
                new.metrics_listen = self.settings.metrics_listen;
                new.control_socket.clone_from(&self.settings.control_socket);
                let previous_allow = self.settings.allow.clone();
                match self.apply_kernel_settings(&new, &previous_allow) {
                    Ok(()) => {
                        self.detector.reconfigure(&new);
                        log::info!(
                            "reloaded {:?}: {} rules, ports {:?}",
                            self.source,
                            new.rules.len(),
                            new.ports
                        );
                        self.settings = new;
                    }
                    Err(err) => {
                        log::error!("reload: applying the new configuration failed: {err:#}")
                    }
                }
            }
            Err(err) => {
                log::error!("reload rejected, the running configuration stays in force: {err}")
            }
        }
        notify("READY=1");
    }

    async fn answer(&self, stream: tokio::net::UnixStream) {
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        let read = tokio::time::timeout(
            Duration::from_secs(1),
            BufReader::new(read).read_line(&mut line),
        )
        .await;
        if !matches!(read, Ok(Ok(n)) if n > 0) {
            return;
        }
        let reply = match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(request) => self.control_reply(&request),
            Err(err) => json!({ "error": format!("bad request: {err}") }),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            write.write_all(format!("{reply}\n").as_bytes()),
        )
        .await;
    }

    fn control_reply(&self, request: &serde_json::Value) -> serde_json::Value {
        match request["cmd"].as_str() {
            Some("top") => {
                let limit = request["limit"].as_u64().unwrap_or(20) as usize;
                let rows: Vec<serde_json::Value> = self
                    .detector
                    .top(limit)
                    .into_iter()
                    .map(|t| {
                        json!({
                            "key": t.addr.map(|a| a.to_string()).unwrap_or_default(),
                            "rule": "*",
                            "rate": t.rate,
                            "samples": t.samples,
                            "paths": t.paths.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
                            "path_counts": t.paths,
                        })
                    })
                    .collect();
                json!({ "top": rows, "tracked": self.detector.table().len(), "bytes_per_client": crate::rate::RateTable::bytes_per_key() })
            }
            Some("why") => match request["addr"]
                .as_str()
                .and_then(|a| a.parse::<IpAddr>().ok())
            {
                Some(ip) => {
                    let rates: Vec<serde_json::Value> = self
                        .detector
                        .rates(ip, monotonic_ns())
                        .into_iter()
                        .map(|(rule, rate, threshold)| json!({ "rule": rule, "rate": rate, "threshold": threshold }))
                        .collect();
                    json!({ "rates": rates })
                }
                None => json!({ "error": "why needs an addr" }),
            },
            Some("status") => json!({
                "interfaces": self.settings.interfaces,
                "sample_every": self.sample_every,
                "tracked": self.detector.table().len(),
                "samples": self.detector.stats().samples,
                "unparsed": self.detector.stats().unparsed,
                "rules": self.settings.rules.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
            }),
            _ => json!({ "error": "unknown cmd (top, why, status)" }),
        }
    }

    fn stop(&mut self) {
        notify("STOPPING=1");
        let _ = std::fs::remove_file(&self.settings.control_socket);
        if self.detach_on_exit {
            let detached = self
                .pins
                .lock()
                .map_err(anyhow::Error::from)
                .and_then(|_lock| Ok(attach::detach_all(&self.pins)?));
            match detached {
                Ok(ifaces) => log::info!(
                    "detached from {} and removed the pins (--detach-on-exit)",
                    ifaces.join(", ")
                ),
                Err(err) => log::error!("detach on exit: {err:#}"),
            }
        }
    }
}

/// Closes the target's established connections to this host (`ss -K dst TARGET`) without
/// waiting: the block stops new packets, this stops the work already queued.
fn reset_connections(target: Target) {
    match tokio::process::Command::new("ss")
        .args(["-K", "dst", &target.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(mut child) => {
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
        }
        Err(err) => log::warn!("closing connections of {target} (ss -K): {err}"),
    }
}

fn bind_control(path: &std::path::Path) -> Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    // A stale socket from a crashed daemon: only remove it if nobody answers on it.
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another floodgate daemon answers on {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("remove stale {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("bind control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}
