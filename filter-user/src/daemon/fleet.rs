//! The daemon's side of the fleet: it starts the NATS task (`sources::fleet`), hands it this
//! host's decisions and the operator's `--fleet` requests, and turns the peers' decisions into
//! map writes through the same guard and writer as every other origin. A peer's entry carries
//! the `fleet` reason code and `HOST:REASON` as its text, so `block list` and `why` name the
//! host that decided; its TTL is the value's absolute expiry minus now (cut to `max_ttl`).

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use anyhow::Result;

use super::{Daemon, metrics as m};
use crate::{
    clock::monotonic_ns,
    config::{Settings, fleet::Fleet as FleetSettings},
    control::{ControlError, FleetStatus, Reply},
    detect::PeerSums,
    enforce::{Decision, Origin, writer::Written},
    sources::fleet::{
        self as source, Command, Event, auth,
        value::{self, FleetDecision, Hitter, RateReport, SharedOrigin, unix_ms},
    },
    target::Target,
};

/// A peer's heavy-hitter report counts for this long after it came.
pub(super) const REPORT_MAX_AGE: Duration = Duration::from_secs(2);
/// Peers whose reports are kept at once.
const MAX_PEERS: usize = 1024;

/// This host as a member of the fleet.
pub(super) struct Member {
    host: String,
    settings: FleetSettings,
    handle: source::Handle,
    status: FleetStatus,
    /// This host's decisions in the bucket: a peer's deletion lifts them here too.
    shared: HashSet<Target>,
    /// Each peer's latest heavy-hitter report and when it came.
    peers: HashMap<String, (Instant, RateReport)>,
}

/// This host's fleet name and credentials when `[fleet]` is enabled, read before anything is
/// attached: an unreadable or insecure credentials file stops the start with the reason.
pub(super) fn prepare(settings: &Settings) -> Result<Option<(String, auth::Auth)>> {
    if !settings.fleet.enabled {
        return Ok(None);
    }
    let host = auth::host_name(&settings.fleet)?;
    Ok(Some((host, auth::load(&settings.fleet)?)))
}

impl Member {
    /// Registers the metrics and, when prepared (`[fleet]` enabled), starts the NATS task.
    pub(super) fn start(
        settings: &Settings,
        prepared: Option<(String, auth::Auth)>,
    ) -> Option<Self> {
        m::register_fleet(prepared.is_some());
        let Some((host, auth)) = prepared else {
            log::info!("fleet off ([fleet] enabled = false)");
            return None;
        };
        let fleet = &settings.fleet;
        log::info!(
            "fleet: host {host}, servers {}, bucket {} (authentication: {auth:?})",
            fleet.servers.join(", "),
            fleet.bucket
        );
        Some(Self {
            handle: source::spawn(fleet.clone(), auth, host.clone()),
            status: FleetStatus {
                host: host.clone(),
                servers: fleet.servers.clone(),
                bucket: fleet.bucket.clone(),
                up: false,
                last_sync_unix: None,
                last_error: None,
                published: 0,
                publish_failures: 0,
                remote_applied: 0,
                remote_refused: 0,
                remote_deleted: 0,
                peers_reporting: 0,
            },
            host,
            settings: fleet.clone(),
            shared: HashSet::new(),
            peers: HashMap::new(),
        })
    }

    /// For `status`.
    pub(super) fn status(&self) -> FleetStatus {
        let mut status = self.status.clone();
        status.peers_reporting = self
            .peers
            .values()
            .filter(|(at, _)| at.elapsed() <= REPORT_MAX_AGE)
            .count();
        status
    }

    /// Hands a command to the task (never blocks; the task is gone only at shutdown).
    pub(super) fn send(&self, command: Command) {
        let _ = self.handle.commands.send(command);
    }

    /// The value this host publishes for a decision lasting `ttl` (cut to `max_ttl`).
    fn value(
        &self,
        target: Target,
        ttl: Option<Duration>,
        origin: SharedOrigin,
        rule: &str,
        reason: &str,
        offence: u32,
    ) -> FleetDecision {
        let now = unix_ms();
        let ttl = ttl.map_or(self.settings.max_ttl.0, |t| t.min(self.settings.max_ttl.0));
        FleetDecision {
            target,
            expires_ms: now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
            decided_us: value::unix_us(),
            reason: reason.chars().take(32).collect(),
            rule: rule.chars().take(32).collect(),
            offence: offence.max(1),
            origin,
            origin_host: self.host.clone(),
        }
    }
}

/// Waits for the fleet task's next event, or forever when the fleet is off.
pub(super) async fn next_event(member: Option<&mut Member>) -> Option<Event> {
    match member {
        Some(f) => f.handle.events.recv().await,
        None => std::future::pending().await,
    }
}

impl Daemon {
    pub(super) fn fleet_event(&mut self, event: Event) {
        let Some(f) = self.fleet.as_mut() else {
            return;
        };
        match event {
            Event::Up => {
                log::info!(
                    "fleet: connected to NATS; reading the bucket {}",
                    f.status.bucket
                );
                f.status.up = true;
                f.status.last_error = None;
                ::metrics::gauge!(m::FLEET_UP).set(1.0);
            }
            Event::Down { error } => {
                if f.status.up || f.status.last_error.is_none() {
                    log::warn!(
                        "fleet: {error}; enforcing and detecting alone, reconnecting with back-off"
                    );
                } else {
                    log::debug!("fleet: {error}");
                }
                f.status.up = false;
                f.status.last_error = Some(error);
                ::metrics::gauge!(m::FLEET_UP).set(0.0);
            }
            Event::PublishFailed { count, error } => {
                if f.status.up {
                    log::warn!(
                        "fleet: {count} decision(s) not published ({error}); kept for later"
                    );
                } else {
                    log::debug!("fleet: {count} decision(s) queued ({error})");
                }
                f.status.publish_failures += count;
                ::metrics::counter!(m::FLEET_PUBLISH_FAILURES).increment(count);
            }
            Event::Report(Ok(report)) => {
                // Bounded: a peer inventing host names cannot grow the table.
                if f.peers.len() < MAX_PEERS || f.peers.contains_key(&report.host) {
                    f.peers
                        .insert(report.host.clone(), (Instant::now(), report));
                }
            }
            Event::Report(Err(err)) => log::debug!("fleet: a peer's rate report refused: {err}"),
            Event::Put { key, value } => match value {
                Ok(value) => self.fleet_apply(&value),
                Err(err) => self.fleet_refuse(&key, "malformed", &err.to_string()),
            },
            Event::Deleted { target } => match target {
                Ok(target) => self.fleet_deleted(target),
                Err(err) => self.fleet_refuse("?", "malformed", &err.to_string()),
            },
            Event::Synced { present } => self.fleet_synced(&present),
        }
    }

    fn fleet_refuse(&mut self, what: &str, label: &'static str, why: &str) {
        log::warn!("fleet: refused a peer's decision {what}: {why}");
        ::metrics::counter!(m::FLEET_REFUSED, "reason" => label).increment(1);
        if let Some(f) = self.fleet.as_mut() {
            f.status.remote_refused += 1;
        }
    }

    /// A peer's decision: through the guard into the maps, for the time its value has left.
    fn fleet_apply(&mut self, value: &FleetDecision) {
        let Some(f) = self.fleet.as_mut() else {
            return;
        };
        let now_ms = unix_ms();
        if value.origin_host == f.host {
            // Our own, read back (a restart's sync): a peer may lift it later.
            if value.expires_ms > now_ms {
                f.shared.insert(value.target);
            }
            return;
        }
        if value.expires_ms <= now_ms {
            log::debug!(
                "fleet: {} from {} expired already",
                value.target,
                value.origin_host
            );
            return;
        }
        let ttl = Duration::from_millis(value.expires_ms - now_ms).min(f.settings.max_ttl.0);
        let d = Decision {
            target: value.target,
            rule: value::map_reason(value),
            rate: 0.0,
            threshold: 0.0,
            ttl,
            block: true,
            crossed_ns: monotonic_ns(),
            offence: value.offence,
            origin: Origin::Fleet,
        };
        if let Err(refusal) = self.guard_check(&d) {
            let what = format!("{} from {}", value.target, value.origin_host);
            self.fleet_refuse(&what, refusal.label(), &refusal.to_string());
            return;
        }
        match self.writer.write_decision(&d) {
            Ok(Written::AlreadyInForce) => {}
            Ok(written) => {
                if let Written::Evicted(victim) = written {
                    ::metrics::counter!(m::EVICTIONS).increment(1);
                    log::warn!(
                        "block map full: evicted {victim} to block {} (fleet)",
                        d.target
                    );
                }
                ::metrics::counter!(m::FLEET_APPLIED).increment(1);
                if let Some(f) = self.fleet.as_mut() {
                    f.status.remote_applied += 1;
                }
                let propagation_us = value::unix_us().saturating_sub(value.decided_us);
                log::info!(
                    "fleet: block {} from {} ({} '{}', offence {}) ttl={} propagation={:.1}ms",
                    d.target,
                    value.origin_host,
                    match value.origin {
                        SharedOrigin::Rule => "rule",
                        SharedOrigin::Aggregate => "aggregate",
                        SharedOrigin::Operator => "operator",
                    },
                    value.reason,
                    value.offence,
                    crate::clock::format_duration(ttl),
                    propagation_us as f64 / 1000.0
                );
            }
            Err(err) => {
                ::metrics::counter!(m::WRITE_FAILURES).increment(1);
                log::error!("fleet: could not block {}: {err}", d.target);
            }
        }
    }

    /// A key deleted in the bucket: the peers' entry goes; this host's own one too when it
    /// was shared (a peer lifted it fleet-wide).
    fn fleet_deleted(&mut self, target: Target) {
        let Some(f) = self.fleet.as_mut() else {
            return;
        };
        let removed = if f.shared.remove(&target) {
            self.writer.remove(target)
        } else {
            self.writer.remove_from(target, Origin::Fleet)
        };
        match removed {
            Ok(true) => self.fleet_removed(&[target]),
            Ok(false) => {}
            Err(err) => log::warn!("fleet: removing {target}: {err}"),
        }
    }

    fn fleet_removed(&mut self, targets: &[Target]) {
        log::info!("fleet: lifted {}", super::summary(targets));
        for target in targets {
            self.detector.forget(target);
        }
        if let Err(err) = self.writer.tidy_hint(false) {
            log::warn!("tidying the prefix hint: {err}");
        }
        if let Some(f) = self.fleet.as_mut() {
            f.status.remote_deleted += targets.len() as u64;
        }
    }

    /// After the bucket was read entirely: peers' entries it no longer holds were deleted
    /// while this host was not listening.
    fn fleet_synced(&mut self, present: &HashSet<Target>) {
        let at = unix_ms() as f64 / 1000.0;
        if let Some(f) = self.fleet.as_mut() {
            f.status.last_sync_unix = Some(at);
            f.shared.retain(|t| present.contains(t));
        }
        ::metrics::gauge!(m::FLEET_LAST_SYNC).set(at);
        log::info!(
            "fleet: in sync ({} decision(s) in the bucket)",
            present.len()
        );
        match self.writer.targets_from(Origin::Fleet) {
            Ok(ours) => {
                let mut stale = Vec::new();
                for target in ours.into_iter().filter(|t| !present.contains(t)) {
                    match self.writer.remove(target) {
                        Ok(true) => stale.push(target),
                        Ok(false) => {}
                        Err(err) => log::warn!("fleet: removing {target}: {err}"),
                    }
                }
                if !stale.is_empty() {
                    self.fleet_removed(&stale);
                }
            }
            Err(err) => log::warn!("fleet: reading the maps to reconcile: {err}"),
        }
    }

    /// The sweep removed these expired entries: this host's shared ones are over.
    pub(super) fn fleet_expired(&mut self, removed: &[Target]) {
        if let Some(f) = self.fleet.as_mut() {
            for target in removed {
                f.shared.remove(target);
            }
        }
    }

    /// Shares a decision this host's detector made and wrote.
    pub(super) fn fleet_publish(&mut self, d: &Decision) {
        let Some(f) = self.fleet.as_mut() else {
            return;
        };
        let origin = match d.origin {
            Origin::Rule => SharedOrigin::Rule,
            Origin::Aggregate => SharedOrigin::Aggregate,
            _ => return,
        };
        if !f.settings.share_decisions {
            return;
        }
        let value = f.value(d.target, Some(d.ttl), origin, &d.rule, &d.rule, d.offence);
        f.shared.insert(d.target);
        f.status.published += 1;
        f.send(Command::Publish(value));
    }

    /// Once per second: publishes this host's heavy hitters and applies the fleet rules to
    /// this host's rates plus the peers' latest reports (at most [`REPORT_MAX_AGE`] old).
    /// Without `[fleet]` the fleet rules see this host's rates alone.
    pub(super) fn fleet_tick(&mut self, now_ns: u64) {
        if let Some(f) = self.fleet.as_mut() {
            f.peers.retain(|_, (at, _)| at.elapsed() <= REPORT_MAX_AGE);
        }
        if !self.detector.has_fleet_rules() {
            return;
        }
        let mut sums = PeerSums::new();
        if let Some(f) = self.fleet.as_mut()
            && f.settings.share_rates
        {
            let hitters = self.detector.fleet_report(now_ns);
            if !hitters.is_empty() {
                f.send(Command::Report(RateReport {
                    host: f.host.clone(),
                    at_ms: unix_ms(),
                    hitters: hitters
                        .into_iter()
                        .map(|h| Hitter {
                            rule: h.rule,
                            target: h.target,
                            rate: h.rate,
                            samples: h.samples,
                        })
                        .collect(),
                }));
            }
            for (_, report) in f.peers.values() {
                for h in &report.hitters {
                    let sum = sums.entry((h.rule.clone(), h.target)).or_insert((0.0, 0));
                    sum.0 += h.rate;
                    sum.1 = sum.1.saturating_add(h.samples);
                }
            }
        } else {
            // Keeps the heavy-hitter keys fresh (they are what the fleet rules look at).
            let _ = self.detector.fleet_report(now_ns);
        }
        for decision in self.detector.observe_fleet(&sums, now_ns) {
            self.apply(&decision);
        }
    }

    /// `block add --fleet` / `block del --fleet`.
    pub(super) fn fleet_request(
        &mut self,
        share: Option<(Option<u64>, String)>,
        targets: Vec<Target>,
    ) -> Reply {
        let Some(f) = self.fleet.as_mut() else {
            return Reply::Error {
                error: ControlError::Failed {
                    message: "[fleet] is not enabled on this host".into(),
                },
            };
        };
        let queued = targets.len();
        for target in targets {
            let command = match &share {
                Some((ttl_secs, reason)) => {
                    let ttl = ttl_secs.filter(|s| *s > 0).map(Duration::from_secs);
                    f.shared.insert(target);
                    Command::Publish(f.value(target, ttl, SharedOrigin::Operator, "", reason, 1))
                }
                None => {
                    f.shared.remove(&target);
                    Command::Delete(target)
                }
            };
            f.status.published += 1;
            f.send(command);
        }
        Reply::FleetQueued {
            queued,
            up: f.status.up,
        }
    }
}
