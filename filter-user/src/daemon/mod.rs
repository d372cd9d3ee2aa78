//! `floodgate run`: the loop that wires the pipeline together. It loads or re-adopts the
//! pinned filter and attaches it, then one tokio task reads evidence from the sensors, hands
//! it to the detector, passes each decision through the guard to the map writer, answers
//! control requests handed over by the control server's own tasks, keeps the program on its
//! interfaces, and once per second adapts sampling, sweeps expired blocks and updates metrics.
//! SIGHUP and `floodgate reload` (a control request) reload the configuration; SIGTERM/SIGINT stop the daemon while the pinned filter
//! keeps enforcing. The loop holds no detection or map logic of its own.

mod adaptive;
mod control;
mod crowdsec;
mod fleet;
mod links;
pub mod metrics;
mod notify;
mod proxy_feed;
mod reload;

use std::{
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use filter_common::{SAMPLE_PAYLOAD_MAX, config, counter};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use crate::{
    bpf::{
        attach::{self, Adoption},
        maps::Maps,
        pins::Pins,
    },
    cli::args::RunArgs,
    clock::{format_duration, monotonic_ns},
    config::{self as cfg, AttachMode, Settings},
    control::{
        BaselineReply, DecisionView, EvidenceTotals, PacketTotals, ProxyStatus, Reply, Request,
        RuleRate, StatusReply, TalkerRow, TopReply, WhyReply,
    },
    detect::{Detector, rate::RateTable},
    enforce::{Decision, guard, writer::MapWriter, writer::Written},
    sensor::{
        kernel::{KernelSensor, SampleRecord},
        proxy::ProxyFeed,
        proxy_file::FeedFile,
    },
    target::Target,
};
use control::Call;
use links::{Interfaces, LinkEvents};
use metrics as m;
use notify::notify;
use proxy_feed::{ProxyCounts, allowed_uids, open_proxy_feed, proxy_read};

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
pub(crate) fn run(pins: &Pins, args: RunArgs) -> Result<()> {
    let source = match &args.config {
        Some(path) => ConfigSource::File(path.clone()),
        None if std::path::Path::new(cfg::DEFAULT_PATH).exists() => {
            ConfigSource::File(cfg::DEFAULT_PATH.into())
        }
        None => ConfigSource::Embedded,
    };
    let mut settings = source.load()?;
    apply_overrides(&mut settings, &args)?;
    crate::logging::init(settings.log.level);
    if settings.filter.interfaces.is_empty() {
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
        let mut daemon = Daemon::start(pins.clone(), settings, source, &args)?;
        let outcome = daemon.serve().await;
        daemon.stop();
        outcome
    })
}

fn apply_overrides(settings: &mut Settings, args: &RunArgs) -> Result<()> {
    if !args.ifaces.is_empty() {
        settings.filter.interfaces.clone_from(&args.ifaces);
    }
    if args.skb {
        settings.filter.attach_mode = AttachMode::Skb;
    }
    if let Some(listen) = &args.metrics_listen {
        settings.metrics.listen = match listen.as_str() {
            "off" => None,
            text => Some(text.parse().with_context(|| {
                format!("--metrics-listen: '{text}' is not address:port or off")
            })?),
        };
    }
    if let Some(socket) = &args.control_socket {
        settings.control.socket.clone_from(socket);
    }
    Ok(())
}

/// Loads (or adopts) the program and attaches it to every interface; a start that fails
/// after creating the pins removes them again.
fn load_and_attach(pins: &Pins, settings: &Settings) -> Result<()> {
    let _lock = pins.lock()?;
    let loaded = attach::ensure_loaded(pins)?;
    log::info!("program {loaded:?} under {}", pins.layout_dir().display());
    let mode = attach::mode(settings.filter.attach_mode == AttachMode::Skb);
    for iface in &settings.filter.interfaces {
        if settings.filter.wait_for_interfaces && attach::interface_index(iface).is_none() {
            log::warn!(
                "{iface}: no such interface yet; waiting for it (filter.wait_for_interfaces)"
            );
            continue;
        }
        match attach::attach(pins, iface, mode) {
            Ok(attached) => log::info!("{iface}: XDP link {attached:?} ({mode:?} mode)"),
            Err(err) => {
                if loaded == Adoption::Created {
                    let _ = attach::detach_all(pins);
                }
                return Err(err.into());
            }
        }
    }
    Ok(())
}

struct Daemon {
    pins: Pins,
    settings: Settings,
    source: ConfigSource,
    detach_on_exit: bool,
    maps: Maps,
    writer: MapWriter,
    detector: Detector,
    kernel: KernelSensor,
    interfaces: Interfaces,
    link_events: Option<LinkEvents>,
    proxy: Option<ProxyFeed>,
    proxy_file: Option<FeedFile>,
    /// Why the feed file is not read now (logged once per change).
    proxy_file_problem: Option<String>,
    proxy_file_backlog: u64,
    proxy_counts: ProxyCounts,
    crowdsec: Option<crowdsec::Bouncer>,
    fleet: Option<fleet::Member>,
    calls: mpsc::Receiver<Call>,
    last_tick: Instant,
    last_sweep: Instant,
    last_starts: u64,
    sample_every: u32,
    unparsed: u64,
    /// Kernel samples handed to the detector and block decisions written (for `top`).
    kernel_events: u64,
    blocks_written: u64,
    last_baseline_save: Instant,
}

impl Daemon {
    fn start(pins: Pins, settings: Settings, source: ConfigSource, args: &RunArgs) -> Result<Self> {
        let crowdsec_key = crowdsec::key(&settings)?;
        let fleet_member = fleet::prepare(&settings)?;
        load_and_attach(&pins, &settings)?;
        let maps = Maps::open(&pins)?;
        let mut writer = MapWriter::open(&pins)?;
        let started = Instant::now();
        let (exact, prefix) = writer.adopt()?;
        log::info!(
            "adopted {exact} exact and {prefix} prefix block entries in {:.0} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
        let sample_every = maps.setting(config::SAMPLE_EVERY)?.max(1);
        let last_starts = sampled_evidence(&maps.counters()?);
        let kernel = KernelSensor::open(&pins)?;
        if let Some(listen) = settings.metrics.listen {
            m::install(listen)?;
            m::register_known(&settings);
            m::export_kernel_counters(&maps.counters()?);
            ::metrics::gauge!(m::ACTIVE_BLOCKS, "kind" => "exact").set(exact as f64);
            ::metrics::gauge!(m::ACTIVE_BLOCKS, "kind" => "prefix").set(prefix as f64);
            log::info!("metrics on http://{listen}/metrics");
        }
        let listener = control::bind(&settings.control.socket)?;
        let (tx, calls) = mpsc::channel(64);
        tokio::spawn(control::serve(listener, tx));
        let link_events = match LinkEvents::open() {
            Ok(events) => Some(events),
            Err(err) => {
                log::warn!(
                    "netlink link events unavailable ({err}); checking interfaces each second only"
                );
                None
            }
        };
        let proxy = open_proxy_feed(&settings);
        let proxy_file = settings.proxy.file.as_ref().map(|path| {
            log::info!("proxy feed file {} (followed from its end)", path.display());
            FeedFile::new(path, &allowed_uids(&settings))
        });
        ::metrics::gauge!(m::PROXY_FILE_UP).set(0.0);
        let crowdsec = crowdsec::Bouncer::start(&settings, crowdsec_key);
        let fleet = fleet::Member::start(&settings, fleet_member);
        let mut interfaces = Interfaces::new(
            &settings.filter.interfaces,
            attach::mode(settings.filter.attach_mode == AttachMode::Skb),
        );
        interfaces.check(&pins);
        let detector = Detector::new(&settings);
        let mut daemon = Self {
            pins,
            settings: settings.clone(),
            source,
            detach_on_exit: args.detach_on_exit,
            maps,
            writer,
            detector,
            kernel,
            interfaces,
            link_events,
            proxy,
            proxy_file,
            proxy_file_problem: None,
            proxy_file_backlog: 0,
            proxy_counts: ProxyCounts::default(),
            crowdsec,
            fleet,
            calls,
            last_tick: Instant::now(),
            last_sweep: Instant::now(),
            last_starts,
            sample_every,
            unparsed: 0,
            kernel_events: 0,
            blocks_written: 0,
            last_baseline_save: Instant::now(),
        };
        daemon.load_baselines();
        daemon.apply_kernel_settings(&settings, &[])?;
        daemon.export_gauges();
        Ok(daemon)
    }

    async fn serve(&mut self) -> Result<()> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        // Ready only once the signal handlers exist: a reload (SIGHUP) sent right after READY=1
        // must reload, not kill the daemon with the default action.
        let interfaces = self.settings.filter.interfaces.join(", ");
        notify(&format!("READY=1\nSTATUS=protecting {interfaces}"));
        log::info!(
            "ready: protecting {interfaces} (ports {:?})",
            self.settings.filter.ports
        );
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::new();
        // nginx flushes the file feed every 100 ms at most; reading twice as often keeps the
        // wait short without spinning.
        let mut file_ticker = tokio::time::interval(Duration::from_millis(50));
        file_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = term.recv() => { log::info!("SIGTERM: stopping; the pinned filter keeps enforcing"); break; }
                _ = int.recv() => { log::info!("SIGINT: stopping; the pinned filter keeps enforcing"); break; }
                _ = hup.recv() => { let _ = self.reload(); }
                _ = ticker.tick() => self.tick(),
                read = self.kernel.read(&mut batch) => {
                    let malformed = read.context("ring buffer poll")?;
                    if malformed > 0 {
                        ::metrics::counter!(m::SAMPLES_DROPPED, "why" => "malformed").increment(malformed as u64);
                    }
                    self.ingest(&batch);
                }
                read = proxy_read(self.proxy.as_mut()) => {
                    match read {
                        Ok(stats) => self.ingest_proxy(stats),
                        Err(err) => {
                            log::error!("proxy feed: {err}; closing it, detecting from the kernel sensor only");
                            self.proxy = None;
                            ::metrics::gauge!(m::PROXY_UP).set(0.0);
                        }
                    }
                }
                _ = file_ticker.tick(), if self.proxy_file.is_some() => self.read_proxy_file(),
                Some(event) = crowdsec::next_event(self.crowdsec.as_mut()) => self.crowdsec_event(event),
                Some(event) = fleet::next_event(self.fleet.as_mut()) => self.fleet_event(event),
                Some(call) = self.calls.recv() => {
                    let reply = self.answer(call.request);
                    let _ = call.reply.send(reply);
                }
                changed = link_changed(self.link_events.as_mut()) => {
                    if let Err(err) = changed {
                        log::warn!("netlink link events failed ({err}); checking interfaces each second only");
                        self.link_events = None;
                    }
                    self.interfaces.check(&self.pins);
                }
            }
        }
        Ok(())
    }

    fn ingest(&mut self, batch: &[SampleRecord]) {
        let mut scratch = [0u8; SAMPLE_PAYLOAD_MAX + 2];
        let mut events = 0u64;
        let mut unparsed = 0u64;
        for sample in batch {
            let Some(event) = sample.event(&mut scratch) else {
                unparsed += 1;
                continue;
            };
            events += 1;
            for decision in self.detector.observe(&event) {
                self.apply(&decision);
            }
        }
        self.unparsed += unparsed;
        self.kernel_events += events;
        ::metrics::counter!(m::DETECTOR_EVENTS, "sensor" => "kernel").increment(events);
        if unparsed > 0 {
            ::metrics::counter!(m::SAMPLES_DROPPED, "why" => "unparsed").increment(unparsed);
        }
    }

    /// The guard's verdict on `d`, whatever its origin: the allow list (a failed lookup
    /// refuses, the safe side), the width limit and, for a prefix, the legitimate clients it
    /// would cover.
    fn guard_check(&self, d: &Decision) -> Result<(), guard::Refusal> {
        let allowed = self.maps.is_allowed(d.target.ip).unwrap_or_else(|err| {
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
        guard::check(d, allowed, inside, total, &self.settings)
    }

    fn apply(&mut self, d: &Decision) {
        let action = m::decision_action(d.block);
        ::metrics::counter!(m::DECISIONS, "rule" => d.rule.clone(), "action" => action)
            .increment(1);
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
        if let Err(refusal) = self.guard_check(d) {
            ::metrics::counter!(m::REFUSED, "reason" => refusal.label()).increment(1);
            log::warn!(
                "refused to block {} (rule {}, {:.0} req/s): {refusal}",
                d.target,
                d.rule,
                d.rate
            );
            return;
        }
        match self.writer.write_decision(d) {
            Ok(Written::AlreadyInForce) => return,
            Ok(Written::Stored) => self.blocks_written += 1,
            Ok(Written::Evicted(victim)) => {
                self.blocks_written += 1;
                ::metrics::counter!(m::EVICTIONS).increment(1);
                log::warn!(
                    "block map full ({} entries): evicted {victim} (the daemon's entry closest to expiry) to block {}",
                    filter_common::capacity::BLOCK_EXACT,
                    d.target
                );
            }
            Err(err) => {
                ::metrics::counter!(m::WRITE_FAILURES).increment(1);
                log::error!("could not block {} (rule {}): {err}", d.target, d.rule);
                return;
            }
        }
        self.fleet_publish(d);
        if self.settings.filter.reset_connections {
            reset_connections(d.target);
        }
        let latency = monotonic_ns().saturating_sub(d.crossed_ns) as f64 / 1e9;
        ::metrics::histogram!(m::DETECTION_LATENCY).record(latency);
        log::info!(
            "block {} rule={} rate={:.0}/s threshold={:.0}/s ttl={} offence={} latency={:.0}ms{}",
            d.target,
            d.rule,
            d.rate,
            d.threshold,
            format_duration(d.ttl),
            d.offence,
            latency * 1000.0,
            if d.origin == crate::enforce::Origin::Aggregate {
                " (prefix aggregated from blocked members)"
            } else {
                ""
            }
        );
    }

    fn tick(&mut self) {
        let elapsed = self.last_tick.elapsed();
        self.last_tick = Instant::now();
        let now = monotonic_ns();
        self.detector.tick(now, elapsed);
        self.fleet_tick(now);
        self.adaptive_tick(now, elapsed);
        match self.maps.counters() {
            Ok(counters) => {
                m::export_kernel_counters(&counters);
                let starts = sampled_evidence(&counters);
                self.adapt_sampling(starts.saturating_sub(self.last_starts), elapsed);
                self.last_starts = starts;
            }
            Err(err) => log::warn!("reading counters: {err}"),
        }
        self.export_gauges();
        if self.last_sweep.elapsed() >= self.settings.state.sweep_interval.0 {
            self.last_sweep = Instant::now();
            self.sweep(now);
        }
        // Netlink wakes us on every link change; this catches anything it could not tell.
        self.interfaces.check(&self.pins);
        if self.detector.counts_connections() {
            let mut ports = self.settings.filter.ports.clone();
            ports.extend(&self.settings.filter.tls_ports);
            let held = crate::sensor::connections::count(&ports);
            for decision in self.detector.observe_connections(&held, now) {
                self.apply(&decision);
            }
        }
    }

    /// Keeps samples per second under the budget: N = ceil(request starts per second / budget).
    fn export_gauges(&self) {
        ::metrics::gauge!(m::SAMPLE_EVERY).set(f64::from(self.sample_every));
        ::metrics::gauge!(m::TRACKED).set(self.detector.tracked() as f64);
        ::metrics::gauge!(m::TRACKED_BYTES_PER_KEY).set(RateTable::bytes_per_key() as f64);
        ::metrics::gauge!(m::MEMORY).set(m::resident_bytes() as f64);
    }

    fn adapt_sampling(&mut self, starts: u64, elapsed: Duration) {
        let per_sec = starts as f64 / elapsed.as_secs_f64().max(0.001);
        let wanted = (per_sec / f64::from(self.settings.sampling.budget_per_sec))
            .ceil()
            .clamp(1.0, f64::from(MAX_SAMPLE_EVERY)) as u32;
        if wanted != self.sample_every {
            match self.maps.set_setting(config::SAMPLE_EVERY, wanted) {
                Ok(()) => {
                    log::debug!("sampling 1 in {wanted} ({per_sec:.0} request starts/s)");
                    self.sample_every = wanted;
                }
                Err(err) => log::warn!("setting the sampling factor: {err}"),
            }
        }
    }

    fn sweep(&mut self, now: u64) {
        match self.writer.sweep(now) {
            Ok(removed) if !removed.is_empty() => {
                ::metrics::counter!(m::EXPIRED).increment(removed.len() as u64);
                log::info!("expired {}", summary(&removed));
                for target in &removed {
                    self.detector.forget(target);
                }
                self.fleet_expired(&removed);
            }
            Ok(_) => {}
            Err(err) => log::warn!("sweeping expired blocks: {err}"),
        }
        if let Err(err) = self.writer.tidy_hint(false) {
            log::warn!("tidying the prefix hint: {err}");
        }
        let (exact, prefix) = self.writer.counts();
        ::metrics::gauge!(m::ACTIVE_BLOCKS, "kind" => "exact").set(exact as f64);
        ::metrics::gauge!(m::ACTIVE_BLOCKS, "kind" => "prefix").set(prefix as f64);
    }

    fn answer(&mut self, request: Request) -> Reply {
        match request {
            Request::Top { limit } => Reply::Top(TopReply {
                top: self
                    .detector
                    .top(limit)
                    .into_iter()
                    .map(|t| TalkerRow {
                        key: t.addr,
                        rate: t.rate,
                        samples: t.samples,
                        paths: t.paths.iter().map(|(p, _)| p.clone()).collect(),
                        path_counts: t.paths,
                    })
                    .collect(),
                tracked: self.detector.tracked(),
                bytes_per_client: RateTable::bytes_per_key(),
                sample_every: self.sample_every,
                blocks_written: self.blocks_written,
                evidence: EvidenceTotals {
                    kernel: self.kernel_events,
                    proxy: self.proxy_counts.events,
                },
                packets: self
                    .maps
                    .counters()
                    .map(|c| PacketTotals::from_counters(&c))
                    .unwrap_or_else(|err| {
                        log::warn!("top: reading the packet counters: {err}");
                        PacketTotals::default()
                    }),
            }),
            Request::Why { addr } => Reply::Why(self.why(addr)),
            Request::Status => Reply::Status(Box::new(StatusReply {
                interfaces: self.interfaces.states().to_vec(),
                sample_every: self.sample_every,
                tracked: self.detector.tracked(),
                events: self.detector.stats().events,
                unparsed: self.unparsed,
                rules: self.settings.rules.iter().map(|r| r.name.clone()).collect(),
                known_blocks: self.writer.counts(),
                proxy: (self.proxy.is_some() || self.proxy_file.is_some()).then(|| ProxyStatus {
                    socket: self.proxy.as_ref().map(|feed| feed.path().to_path_buf()),
                    file: self.proxy_file.as_ref().map(|f| f.path().to_path_buf()),
                    file_backlog: self.proxy_file_backlog,
                    file_problem: self.proxy_file_problem.clone(),
                    events: self.proxy_counts.events,
                    refused: self.proxy_counts.refused,
                    unparsed: self.proxy_counts.unparsed,
                    cut: self.proxy_counts.cut,
                    dropped: self.proxy_counts.dropped,
                }),
                crowdsec: self.crowdsec.as_ref().map(crowdsec::Bouncer::status),
                fleet: self.fleet.as_ref().map(fleet::Member::status),
                adaptive: self.detector.adaptive_views(),
            })),
            Request::FleetShare {
                targets,
                ttl_secs,
                reason,
            } => self.fleet_request(Some((ttl_secs, reason)), targets),
            Request::FleetLift { targets } => self.fleet_request(None, targets),
            Request::Baseline => Reply::Baseline(BaselineReply {
                enabled: self.settings.adaptive.enabled,
                state_file: self.settings.adaptive.state_file.clone(),
                services: self.detector.adaptive_views(),
            }),
            Request::Reload => match self.reload() {
                Ok(reloaded) => Reply::Reloaded(reloaded),
                Err(error) => Reply::Error { error },
            },
            Request::Refresh { targets, all } => {
                let refreshed = if all {
                    self.writer.adopt().map(|_| Vec::new())
                } else {
                    self.writer.refresh(&targets)
                };
                match refreshed.and_then(|gone| self.writer.tidy_hint(false).map(|()| gone)) {
                    Ok(gone) => {
                        for target in &gone {
                            self.detector.forget(target);
                        }
                        let (exact, prefix) = self.writer.counts();
                        Reply::Refreshed { exact, prefix }
                    }
                    Err(err) => Reply::Error {
                        error: crate::control::ControlError::Failed {
                            message: err.to_string(),
                        },
                    },
                }
            }
        }
    }

    fn why(&self, addr: IpAddr) -> WhyReply {
        let now = monotonic_ns();
        let rates = self
            .detector
            .rates(addr, now)
            .into_iter()
            .map(|(rule, rate, threshold)| RuleRate {
                rule,
                rate,
                threshold,
            })
            .collect();
        let decision = self.writer.decision_covering(addr).map(|d| {
            let until = d.crossed_ns.saturating_add(d.ttl.as_nanos() as u64);
            let (host, rule) = if d.origin == crate::enforce::Origin::Fleet {
                crate::sources::fleet::value::split_map_reason(&d.rule)
            } else {
                (None, d.rule.as_str())
            };
            DecisionView {
                target: d.target,
                rule: rule.to_owned(),
                origin_host: host.map(str::to_owned),
                origin: d.origin,
                rate: d.rate,
                threshold: d.threshold,
                offence: d.offence,
                ttl_secs: d.ttl.as_secs(),
                ttl_remaining_secs: until.saturating_sub(now).div_ceil(1_000_000_000),
            }
        });
        WhyReply {
            rates,
            decision,
            adaptive: self.detector.adaptive_why(addr),
        }
    }

    fn stop(&mut self) {
        notify("STOPPING=1");
        if self.detector.adaptive().enabled() {
            self.save_baselines();
        }
        let _ = std::fs::remove_file(&self.settings.control.socket);
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

/// Everything the kernel samples from: request starts and TLS ClientHellos.
fn sampled_evidence(counters: &[u64; counter::COUNT as usize]) -> u64 {
    counters[counter::REQUEST_STARTS as usize] + counters[counter::TLS_HELLOS as usize]
}

/// Waits for link events, or forever when there is no netlink socket.
async fn link_changed(events: Option<&mut LinkEvents>) -> std::io::Result<()> {
    match events {
        Some(events) => events.changed().await,
        None => std::future::pending().await,
    }
}

/// "N block(s): a, b, … and M more" for a log line.
fn summary(targets: &[Target]) -> String {
    let shown: Vec<String> = targets.iter().take(8).map(Target::to_string).collect();
    let more = targets.len().saturating_sub(shown.len());
    format!(
        "{} block(s): {}{}",
        targets.len(),
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
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
