//! The daemon's side of the CrowdSec bouncer: it starts the poller (`sources::crowdsec`) and
//! turns its events into map writes, each decision through the same guard and writer as the
//! detector's. Entries carry the `crowdsec` reason code and the scenario; a CrowdSec delete
//! lifts only an entry CrowdSec wrote.

use std::collections::HashSet;

use anyhow::Result;
use tokio::sync::mpsc;

use super::{Daemon, metrics as m};
use crate::{
    clock::monotonic_ns,
    config::Settings,
    control::CrowdsecStatus,
    enforce::{Decision, Origin, writer::Written},
    sources::crowdsec::{self as source, Event, stream::CsDecision},
    target::Target,
};

/// Refusals logged one by one per batch; the rest are summed up (a blocklist may hold
/// thousands of allow-listed or too-wide entries).
const LOGGED_REFUSALS: usize = 5;

/// The bouncer's state in the daemon.
pub(super) struct Bouncer {
    events: mpsc::Receiver<Event>,
    status: CrowdsecStatus,
}

/// The bouncer key when `[crowdsec]` is enabled, read before anything is attached: an
/// unreadable or insecure key file stops the start with the reason.
pub(super) fn key(settings: &Settings) -> Result<Option<String>> {
    if !settings.crowdsec.enabled {
        return Ok(None);
    }
    Ok(Some(source::load_key(&settings.crowdsec)?))
}

impl Bouncer {
    /// Registers the metrics and, with a key (`[crowdsec]` enabled), starts polling.
    pub(super) fn start(settings: &Settings, key: Option<String>) -> Option<Self> {
        let cs = &settings.crowdsec;
        m::register_crowdsec(cs.enabled);
        let Some(key) = key else {
            log::info!("crowdsec bouncer off ([crowdsec] enabled = false)");
            return None;
        };
        log::info!(
            "crowdsec bouncer: polling {} every {} (scopes {:?})",
            cs.lapi_url,
            crate::clock::format_duration(cs.poll_interval.0),
            cs.scopes
        );
        Some(Self {
            events: source::spawn(cs.clone(), key),
            status: CrowdsecStatus {
                lapi_url: cs.lapi_url.clone(),
                up: false,
                last_sync_unix: None,
                last_error: None,
                applied: 0,
                deleted: 0,
                refused: 0,
                malformed: 0,
                poll_failures: 0,
            },
        })
    }

    /// For `status`.
    pub(super) fn status(&self) -> CrowdsecStatus {
        self.status.clone()
    }
}

/// Waits for the poller's next event, or forever when the bouncer is off.
pub(super) async fn next_event(bouncer: Option<&mut Bouncer>) -> Option<Event> {
    match bouncer {
        Some(b) => b.events.recv().await,
        None => std::future::pending().await,
    }
}

impl Daemon {
    pub(super) fn crowdsec_event(&mut self, event: Event) {
        match event {
            Event::Decisions { new, deleted } => {
                self.crowdsec_delete(&deleted);
                self.crowdsec_apply(&new);
            }
            Event::StartupDone { targets } => self.crowdsec_reconcile(&targets),
            Event::Synced { at_unix, malformed } => {
                let Some(b) = self.crowdsec.as_mut() else {
                    return;
                };
                if !b.status.up {
                    log::info!("crowdsec: LAPI {} answered; in sync", b.status.lapi_url);
                }
                if malformed > 0 {
                    log::warn!(
                        "crowdsec: {malformed} decision(s) of the answer did not parse (bad value, \
                         scope or duration); skipped and counted"
                    );
                }
                b.status.up = true;
                b.status.last_sync_unix = Some(at_unix);
                b.status.last_error = None;
                b.status.malformed += malformed;
                ::metrics::gauge!(m::CROWDSEC_UP).set(1.0);
                ::metrics::gauge!(m::CROWDSEC_LAST_SYNC).set(at_unix);
                ::metrics::counter!(m::CROWDSEC_DECISIONS, "action" => "malformed")
                    .increment(malformed);
            }
            Event::Failed {
                error,
                malformed_answer,
            } => {
                let Some(b) = self.crowdsec.as_mut() else {
                    return;
                };
                if b.status.up || b.status.poll_failures == 0 {
                    log::warn!(
                        "crowdsec: polling the LAPI failed: {error}; the maps keep enforcing what \
                         they hold, retrying with back-off"
                    );
                } else {
                    log::debug!("crowdsec: polling the LAPI failed again: {error}");
                }
                b.status.up = false;
                b.status.poll_failures += 1;
                b.status.last_error = Some(error);
                ::metrics::gauge!(m::CROWDSEC_UP).set(0.0);
                ::metrics::counter!(m::CROWDSEC_POLL_FAILURES).increment(1);
                if malformed_answer {
                    b.status.malformed += 1;
                    ::metrics::counter!(m::CROWDSEC_DECISIONS, "action" => "malformed")
                        .increment(1);
                }
            }
        }
    }

    fn crowdsec_apply(&mut self, decisions: &[CsDecision]) {
        let now = monotonic_ns();
        let (mut applied, mut refused, mut failed) = (0u64, 0u64, 0u64);
        for cs in decisions {
            let d = Decision {
                target: cs.target,
                rule: cs.scenario.clone(),
                rate: 0.0,
                threshold: 0.0,
                ttl: cs.ttl,
                block: true,
                crossed_ns: now,
                offence: 1,
                origin: Origin::Crowdsec,
            };
            if let Err(refusal) = self.guard_check(&d) {
                ::metrics::counter!(m::REFUSED, "reason" => refusal.label()).increment(1);
                if refused < LOGGED_REFUSALS as u64 {
                    log::warn!(
                        "crowdsec: refused to block {} (scenario '{}'): {refusal}",
                        d.target,
                        d.rule
                    );
                }
                refused += 1;
                continue;
            }
            match self.writer.write_decision(&d) {
                Ok(Written::Stored) => applied += 1,
                // Already enforced (a resync sends every decision again): nothing new.
                Ok(Written::AlreadyInForce) => {}
                Ok(Written::Evicted(victim)) => {
                    ::metrics::counter!(m::EVICTIONS).increment(1);
                    log::warn!(
                        "block map full: evicted {victim} to block {} (crowdsec)",
                        d.target
                    );
                    applied += 1;
                }
                Err(err) => {
                    ::metrics::counter!(m::WRITE_FAILURES).increment(1);
                    if failed == 0 {
                        log::error!("crowdsec: could not block {}: {err}", d.target);
                    }
                    failed += 1;
                }
            }
        }
        if refused > LOGGED_REFUSALS as u64 {
            log::warn!("crowdsec: refused {refused} decisions of this batch in all");
        }
        if failed > 1 {
            log::error!("crowdsec: {failed} decisions of this batch could not be written");
        }
        if applied > 0 {
            log::info!(
                "crowdsec: enforcing {applied} decision(s){}",
                decisions.first().map_or_else(String::new, |d| format!(
                    " (first {} '{}' for {})",
                    d.target,
                    d.scenario,
                    crate::clock::format_duration(d.ttl)
                ))
            );
        }
        ::metrics::counter!(m::CROWDSEC_DECISIONS, "action" => "applied").increment(applied);
        ::metrics::counter!(m::CROWDSEC_DECISIONS, "action" => "refused").increment(refused);
        if let Some(b) = self.crowdsec.as_mut() {
            b.status.applied += applied;
            b.status.refused += refused;
        }
    }

    fn crowdsec_delete(&mut self, decisions: &[CsDecision]) {
        let targets: Vec<Target> = decisions.iter().map(|d| d.target).collect();
        self.crowdsec_remove(&targets);
    }

    /// Removes the CrowdSec entries among `targets` (others' entries stay).
    fn crowdsec_remove(&mut self, targets: &[Target]) {
        let mut removed = Vec::new();
        for target in targets {
            match self.writer.remove_from(*target, Origin::Crowdsec) {
                Ok(true) => removed.push(*target),
                Ok(false) => {}
                Err(err) => log::warn!("crowdsec: removing {target}: {err}"),
            }
        }
        if removed.is_empty() {
            return;
        }
        log::info!("crowdsec: lifted {}", super::summary(&removed));
        for target in &removed {
            self.detector.forget(target);
        }
        if let Err(err) = self.writer.tidy_hint(false) {
            log::warn!("tidying the prefix hint: {err}");
        }
        ::metrics::counter!(m::CROWDSEC_DECISIONS, "action" => "deleted")
            .increment(removed.len() as u64);
        if let Some(b) = self.crowdsec.as_mut() {
            b.status.deleted += removed.len() as u64;
        }
    }

    /// After a `startup=true` answer: CrowdSec entries that it does not hold were lifted while
    /// we were not listening.
    fn crowdsec_reconcile(&mut self, truth: &HashSet<Target>) {
        match self.writer.targets_from(Origin::Crowdsec) {
            Ok(ours) => {
                let stale: Vec<Target> = ours.into_iter().filter(|t| !truth.contains(t)).collect();
                if !stale.is_empty() {
                    log::info!(
                        "crowdsec: {} entries are no longer in the LAPI's decisions",
                        stale.len()
                    );
                }
                self.crowdsec_remove(&stale);
            }
            Err(err) => log::warn!("crowdsec: reading the maps to reconcile: {err}"),
        }
    }
}
