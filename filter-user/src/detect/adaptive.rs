//! Adaptive thresholds for botnets that stay under every per-source rule: per service (a
//! configured host and path prefix, or "all"), the baseline ([`Baseline`]) learns the normal
//! total rate and the per-source rate distribution; the [`AttackState`] says when the service
//! is under attack; under attack, sources above max(`floor_rps`, `k` × the baseline's high
//! per-source quantile) are decided once per tick, heaviest first, until the blocked rate
//! brings the service back to its capacity (or, without one, to its baseline rate).
//!
//! With fingerprints on, each service also counts the requests of each request fingerprint
//! ([`fingerprint`](super::fingerprint)); under attack, the fingerprints whose share rose far
//! above their learned share are attack fingerprints, and their senders are decided above
//! `fingerprint_factor` × that threshold.
//!
//! Cost per event: a match per service, one probe of a bounded rate table, a fingerprint (one
//! hash of the fields) counted per service it matched, and on the first event of a source in a
//! new window one sketch insert per service. A source's rate is its
//! rate over all the adaptive services it uses (one probe, not one per service: the table is
//! the cost); it enters the sketch of the current second of every service it used, which
//! joins the baseline only if that second was not under attack.

use std::{collections::HashMap, net::IpAddr, time::Duration};

use serde::{Deserialize, Serialize};

use super::{
    attack::{AttackState, Limits, Signals, Transition, Trigger},
    baseline::{self, Baseline, BaselineError, ServiceId},
    fingerprint::{self, Counts, Fingerprint, Fingerprinter},
    rate::{RateKey, RateTable},
    sketch::Histogram,
};
use crate::{
    config::{self, adaptive::Service},
    enforce::{Decision, Origin},
    sensor::{RequestEvent, Signal},
    target::{Target, ip_key},
};

/// The rule name of adaptive decisions.
pub(crate) const ADAPTIVE_RULE: &str = "adaptive";
/// Rate keys of the adaptive table (sources × services).
const TABLE_CAPACITY: usize = 1 << 18;
/// Candidates kept per service and tick.
const MAX_CANDIDATES: usize = 1 << 16;
/// Fingerprints shown per service (the most requested in the last second, and every attack
/// fingerprint).
const SHOWN_FINGERPRINTS: usize = 5;
/// Quantiles shown by `floodgate baseline`.
const SHOWN_QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

/// One service as `status` and `baseline` show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ServiceView {
    /// Name.
    pub name: String,
    /// Host matched ("" any).
    pub host: String,
    /// Path prefix matched ("" any).
    pub path_prefix: String,
    /// `capacity_rps` (0: none).
    pub capacity_rps: f64,
    /// Requests/s over the last second.
    pub rate_rps: f64,
    /// Seconds of normal traffic learned.
    pub learned_secs: f64,
    /// True once `learning` is reached (the baseline is used).
    pub learned: bool,
    /// Normal total rate, requests/s.
    pub baseline_rps: Option<f64>,
    /// Per-source rates counted in the baseline.
    pub source_rates: u64,
    /// Per-source rate quantiles of the baseline: (quantile, requests/s).
    pub source_quantiles: Vec<(f64, f64)>,
    /// The adaptive threshold in force under attack, requests/s.
    pub threshold_rps: Option<f64>,
    /// What put the service under attack, while it is.
    pub attack: Option<Trigger>,
    /// Seconds under attack so far.
    pub attack_secs: f64,
    /// Attacks since start.
    pub attacks: u64,
    /// Adaptive decisions since start.
    pub decided: u64,
    /// The threshold of attack fingerprints' senders under attack, requests/s.
    #[serde(default)]
    pub fingerprint_threshold_rps: Option<f64>,
    /// Fingerprints learned in the baseline.
    #[serde(default)]
    pub fingerprints_learned: usize,
    /// The most requested fingerprints of the last second and the attack fingerprints.
    #[serde(default)]
    pub fingerprints: Vec<FingerprintView>,
    /// Requests whose fingerprint was not counted (too many distinct ones in a second).
    #[serde(default)]
    pub fingerprints_uncounted: f64,
}

/// A request fingerprint with its share now and in the baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct FingerprintView {
    /// Its id (hex).
    pub id: String,
    /// What it stands for: method, path shape, protocol, user agent.
    pub label: String,
    /// Share of the service's requests: in the last second, or (attack fingerprints) when
    /// it was found to be one.
    pub share: f64,
    /// Its learned share (0: never seen in normal times).
    pub baseline_share: f64,
    /// True for an attack fingerprint.
    pub attack: bool,
}

/// The numbers behind an adaptive decision, for `why`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct AdaptiveWhy {
    /// The service under attack.
    pub service: String,
    /// What put it under attack.
    pub trigger: Option<Trigger>,
    /// Its rate when the source was decided, requests/s.
    pub service_rps: f64,
    /// Its learned normal rate.
    pub baseline_rps: f64,
    /// The rate it was to be brought back to (its capacity, else its baseline).
    pub target_rps: f64,
    /// The quantile of the per-source rates used, and its learned value (requests/s).
    pub quantile: (f64, f64),
    /// `k` and `floor_rps`: the threshold was max(floor, k × quantile).
    pub k: f64,
    /// See `k`.
    pub floor_rps: f64,
    /// The threshold the source was over: the adaptive one, or for the sender of an attack
    /// fingerprint `fingerprint_factor` × it.
    #[serde(default)]
    pub threshold_rps: f64,
    /// The source's request fingerprint and the baseline share it was compared with.
    #[serde(default)]
    pub fingerprint: Option<FingerprintView>,
}

/// Decisions whose numbers are kept for `why`.
const MAX_DETAILS: usize = 1 << 16;

/// What happened in a tick, for the daemon's log and metrics.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Change {
    /// The service.
    pub service: String,
    /// Entered or left.
    pub transition: Transition,
    /// Its rate at the change, requests/s.
    pub rate: f64,
    /// Its baseline rate.
    pub baseline: Option<f64>,
}

struct ServiceState {
    spec: Service,
    host: String,
    baseline: Baseline,
    pending_requests: f64,
    pending_sources: Histogram,
    upstream_sum: f64,
    upstream_n: u64,
    status_n: u64,
    status_5xx: u64,
    rate: f64,
    attack: AttackState,
    /// Source → its highest rate and its last fingerprint, over the lower threshold.
    candidates: HashMap<IpAddr, (f64, Fingerprint)>,
    attacks: u64,
    decided: u64,
    /// Requests per fingerprint this second.
    counts: Counts,
    /// The attack fingerprints of the current attack.
    attack_fingerprints: HashMap<Fingerprint, FingerprintView>,
    /// What `status` shows: the last second's top fingerprints and the attack ones.
    shown_fingerprints: Vec<FingerprintView>,
    uncounted: f64,
}

impl ServiceState {
    fn new(spec: &Service, period_secs: f64) -> Self {
        Self {
            host: spec.host.to_ascii_lowercase(),
            spec: spec.clone(),
            baseline: Baseline::new(period_secs),
            pending_requests: 0.0,
            pending_sources: Histogram::default(),
            upstream_sum: 0.0,
            upstream_n: 0,
            status_n: 0,
            status_5xx: 0,
            rate: 0.0,
            attack: AttackState::default(),
            candidates: HashMap::new(),
            attacks: 0,
            decided: 0,
            counts: Counts::default(),
            attack_fingerprints: HashMap::new(),
            shown_fingerprints: Vec::new(),
            uncounted: 0.0,
        }
    }

    /// The attack fingerprints among this second's counts (the share of `total` requests)
    /// join those of the current attack; each new one is logged.
    fn find_attack_fingerprints(&mut self, cfg: &config::Adaptive) {
        let total = self.counts.total();
        if total <= 0.0 {
            return;
        }
        for (id, count, label) in self.counts.iter() {
            let share = count / total;
            let baseline_share = self.baseline.fingerprints.share(id);
            if share < cfg.fingerprint_min_share
                || share <= cfg.fingerprint_rise * baseline_share
                || self.attack_fingerprints.contains_key(&id)
            {
                continue;
            }
            log::warn!(
                "adaptive: service {} attack fingerprint {} {label}: {:.1} % of {total:.0}                  requests in a second, {:.2} % normally",
                self.spec.name,
                fingerprint::hex(id),
                share * 100.0,
                baseline_share * 100.0
            );
            self.attack_fingerprints.insert(
                id,
                FingerprintView {
                    id: fingerprint::hex(id),
                    label: label.to_owned(),
                    share,
                    baseline_share,
                    attack: true,
                },
            );
        }
    }

    /// The fingerprint `id` as `why` shows it: an attack fingerprint with the numbers that
    /// made it one, else its share this second.
    fn fingerprint_view(&self, id: Fingerprint) -> Option<FingerprintView> {
        if let Some(view) = self.attack_fingerprints.get(&id) {
            return Some(view.clone());
        }
        let total = self.counts.total();
        self.counts.get(id).map(|(count, label)| FingerprintView {
            id: fingerprint::hex(id),
            label: label.to_owned(),
            share: count / total.max(1.0),
            baseline_share: self.baseline.fingerprints.share(id),
            attack: false,
        })
    }

    /// The last second's most requested fingerprints and the attack ones, for `status`.
    fn show_fingerprints(&mut self) {
        let total = self.counts.total().max(1.0);
        let mut shown: Vec<FingerprintView> = self
            .counts
            .top(SHOWN_FINGERPRINTS)
            .into_iter()
            .filter(|(id, _, _)| !self.attack_fingerprints.contains_key(id))
            .map(|(id, count, label)| FingerprintView {
                id: fingerprint::hex(id),
                label: label.to_owned(),
                share: count / total,
                baseline_share: self.baseline.fingerprints.share(id),
                attack: false,
            })
            .collect();
        shown.extend(self.attack_fingerprints.values().cloned());
        shown.sort_by(|a, b| b.attack.cmp(&a.attack).then(b.share.total_cmp(&a.share)));
        self.shown_fingerprints = shown;
    }

    fn id(&self) -> ServiceId {
        (
            self.spec.name.clone(),
            self.spec.host.clone(),
            self.spec.path_prefix.clone(),
        )
    }

    fn matches(&self, event: &RequestEvent<'_>) -> bool {
        event.path.starts_with(self.spec.path_prefix.as_str())
            && (self.host.is_empty()
                || event
                    .host
                    .is_some_and(|h| h.eq_ignore_ascii_case(&self.host)))
    }
}

/// The adaptive detector.
pub(crate) struct Adaptive {
    cfg: config::Adaptive,
    services: Vec<ServiceState>,
    table: RateTable,
    window_ns: u64,
    /// Thresholds per service once learned, updated each tick (f64::INFINITY: learning).
    thresholds: Vec<f64>,
    /// The same for the senders of attack fingerprints (`fingerprint_factor` × thresholds).
    fingerprint_thresholds: Vec<f64>,
    fingerprinter: Fingerprinter,
    /// The numbers behind decisions in force, for `why`.
    details: HashMap<Target, AdaptiveWhy>,
}

fn specs(cfg: &config::Adaptive) -> Vec<Service> {
    if cfg.services.is_empty() {
        vec![Service {
            name: "all".into(),
            ..Service::default()
        }]
    } else {
        cfg.services.clone()
    }
}

impl Adaptive {
    /// Empty baselines for `cfg`'s services.
    pub(crate) fn new(cfg: &config::Adaptive) -> Self {
        let period = cfg.period.0.as_secs_f64();
        let services: Vec<ServiceState> = specs(cfg)
            .iter()
            .map(|s| ServiceState::new(s, period))
            .collect();
        Self {
            thresholds: vec![f64::INFINITY; services.len()],
            fingerprint_thresholds: vec![f64::INFINITY; services.len()],
            fingerprinter: Fingerprinter::default(),
            details: HashMap::new(),
            services,
            table: RateTable::new(if cfg.enabled { TABLE_CAPACITY } else { 8 }),
            window_ns: cfg.window.0.as_nanos().max(1) as u64,
            cfg: cfg.clone(),
        }
    }

    /// New settings: services that stay (same name, host and prefix) keep their baselines.
    pub(crate) fn reconfigure(&mut self, cfg: &config::Adaptive) {
        if *cfg == self.cfg {
            return;
        }
        let mut next = Self::new(cfg);
        if cfg.period == self.cfg.period {
            for s in &mut next.services {
                if let Some(old) = self.services.iter().find(|o| o.id() == s.id()) {
                    s.baseline = old.baseline.clone();
                }
            }
        }
        *self = next;
    }

    /// True when `[adaptive]` is on.
    pub(crate) fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    /// Starts loading the source's rate slot (called before the rules run, so that the memory
    /// access overlaps their work).
    #[inline]
    pub(crate) fn prefetch(&self, src: IpAddr) {
        if self.cfg.enabled {
            self.table.prefetch(&RateKey {
                addr: ip_key(src),
                sub: 0,
                rule: 0,
            });
        }
    }

    /// Counts one event; true when its source is over an adaptive threshold under attack
    /// (a suspect, not a legitimate client, for the guard).
    pub(crate) fn observe(&mut self, event: &RequestEvent<'_>) -> bool {
        if !self.cfg.enabled
            || event.signal != Signal::Requests
            || !self.cfg.sensor.accepts(event.sensor)
        {
            return false;
        }
        // One pass to count and see which services the event is for, then one rate probe for
        // the source (its rate over every adaptive service it uses), then the sketches.
        let mut matched = 0u32;
        let weight = f64::from(event.weight);
        for (index, s) in self.services.iter_mut().enumerate() {
            if !s.matches(event) {
                continue;
            }
            matched |= 1 << index;
            s.pending_requests += weight;
            if let Some(secs) = event.upstream_secs {
                s.upstream_sum += secs * weight;
                s.upstream_n += u64::from(event.weight);
            }
            if let Some(status) = event.status {
                s.status_n += u64::from(event.weight);
                if status >= 500 {
                    s.status_5xx += u64::from(event.weight);
                }
            }
        }
        if matched == 0 {
            return false;
        }
        let key = RateKey {
            addr: ip_key(event.src),
            sub: 0,
            rule: 0,
        };
        let estimate = self
            .table
            .observe(&key, event.time_ns, self.window_ns, event.weight);
        let id = if self.cfg.fingerprints {
            self.fingerprinter.of(event)
        } else {
            0
        };
        let mut suspect = false;
        for (index, s) in self.services.iter_mut().enumerate() {
            if matched & (1 << index) == 0 {
                continue;
            }
            if self.cfg.fingerprints {
                s.counts.add(id, weight, || fingerprint::label(event));
            }
            if estimate.samples == 1 && estimate.rate <= self.thresholds[index] {
                // First event of the source in this window: its rate over about the last one.
                // A source above the threshold in force is not learned from: the first steps
                // of a slow ramp would otherwise raise the threshold above the bots.
                s.pending_sources.add(estimate.rate);
            }
            if estimate.rate > self.fingerprint_thresholds[index] && estimate.samples >= 2 {
                // Candidates are kept in normal times too (cleared each tick), so that the
                // tick that finds the service under attack can decide at once.
                suspect |= s.attack.under()
                    && (estimate.rate > self.thresholds[index]
                        || s.attack_fingerprints.contains_key(&id));
                if s.candidates.len() < MAX_CANDIDATES || s.candidates.contains_key(&event.src) {
                    let candidate = s.candidates.entry(event.src).or_insert((0.0, id));
                    *candidate = (candidate.0.max(estimate.rate), id);
                }
            }
        }
        suspect
    }

    /// Once per second: folds the second into the baselines (when not under attack), moves
    /// the attack states, and decides the heaviest candidates of services under attack
    /// (skipping targets for which `decided` is true). Returns the decisions and changes.
    pub(crate) fn tick(
        &mut self,
        now_ns: u64,
        elapsed: Duration,
        decided: impl Fn(&Target) -> bool,
    ) -> (Vec<Decision>, Vec<Change>) {
        let (mut decisions, mut changes) = (Vec::new(), Vec::new());
        if !self.cfg.enabled {
            return (decisions, changes);
        }
        let secs = elapsed.as_secs_f64().max(0.001);
        let learning = self.cfg.learning.0.as_secs_f64();
        for (index, s) in self.services.iter_mut().enumerate() {
            s.rate = s.pending_requests / secs;
            let learned = s.baseline.learned_secs() >= learning;
            let baseline = s.baseline.rate().filter(|_| learned);
            let limits = Limits {
                baseline_rps: baseline
                    .map(|b| (b * self.cfg.attack_factor).max(self.cfg.min_attack_rps)),
                capacity_rps: s.spec.capacity_rps,
                upstream_secs: self.cfg.max_upstream_time.0.as_secs_f64(),
                share_5xx: self.cfg.max_5xx_share,
                exit_share: self.cfg.exit_share,
                calm_secs: self.cfg.calm.0.as_secs_f64(),
            };
            let signals = Signals {
                rate: s.rate,
                upstream_secs: (s.upstream_n > 0).then(|| s.upstream_sum / s.upstream_n as f64),
                share_5xx: (s.status_n > 0).then(|| s.status_5xx as f64 / s.status_n as f64),
            };
            let transition = s.attack.update(&signals, &limits, secs);
            if let Some(transition) = transition {
                if matches!(transition, Transition::Entered(_)) {
                    s.attacks += 1;
                }
                changes.push(Change {
                    service: s.spec.name.clone(),
                    transition,
                    rate: s.rate,
                    baseline,
                });
            }
            if !s.attack.under() {
                s.attack_fingerprints.clear();
            } else if learned && self.cfg.fingerprints {
                s.find_attack_fingerprints(&self.cfg);
            }
            // A second that was (or just became) under attack is no part of the baseline;
            // nor is the one that ended it (the tail of the flood).
            if !s.attack.under() && transition.is_none() {
                s.baseline.add(s.pending_requests, secs, &s.pending_sources);
                s.baseline
                    .fingerprints
                    .learn(&s.counts, self.cfg.period.0.as_secs_f64());
            }
            s.show_fingerprints();
            s.uncounted += s.counts.uncounted();
            s.pending_requests = 0.0;
            s.pending_sources.clear();
            (s.upstream_sum, s.upstream_n, s.status_n, s.status_5xx) = (0.0, 0, 0, 0);
            let threshold = s
                .baseline
                .quantile(self.cfg.quantile)
                .filter(|_| learned)
                .map(|q| (self.cfg.k * q).max(self.cfg.floor_rps));
            self.thresholds[index] = threshold.unwrap_or(f64::INFINITY);
            self.fingerprint_thresholds[index] = if self.cfg.fingerprints {
                self.thresholds[index] * self.cfg.fingerprint_factor
            } else {
                self.thresholds[index]
            };
            let candidates = std::mem::take(&mut s.candidates);
            let Some(threshold) = threshold.filter(|_| s.attack.under()) else {
                s.counts.clear();
                continue;
            };
            let fingerprint_threshold = self.fingerprint_thresholds[index];
            // Heaviest first, until the rate they add is what the service exceeds its
            // capacity (or, without one, its baseline) by.
            let target_rps = if s.spec.capacity_rps > 0.0 {
                s.spec.capacity_rps
            } else {
                baseline.unwrap_or(0.0)
            };
            let mut excess = s.rate - target_rps;
            let mut heavy: Vec<(IpAddr, (f64, Fingerprint))> = candidates.into_iter().collect();
            heavy.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
            for (ip, (rate, id)) in heavy {
                if excess <= 0.0 {
                    break;
                }
                let attack_fingerprint = s.attack_fingerprints.contains_key(&id);
                let applied = if rate > threshold {
                    threshold
                } else if attack_fingerprint && rate > fingerprint_threshold {
                    fingerprint_threshold
                } else {
                    continue;
                };
                let target = Target::host(ip);
                if decided(&target) {
                    continue;
                }
                let fingerprint = if self.cfg.fingerprints {
                    s.fingerprint_view(id)
                } else {
                    None
                };
                excess -= rate;
                s.decided += 1;
                let q = s.baseline.quantile(self.cfg.quantile).unwrap_or(0.0);
                if self.details.len() < MAX_DETAILS {
                    self.details.insert(
                        target,
                        AdaptiveWhy {
                            service: s.spec.name.clone(),
                            trigger: s.attack.trigger,
                            service_rps: s.rate,
                            baseline_rps: baseline.unwrap_or(0.0),
                            target_rps,
                            quantile: (self.cfg.quantile, q),
                            k: self.cfg.k,
                            floor_rps: self.cfg.floor_rps,
                            threshold_rps: applied,
                            fingerprint: fingerprint.clone(),
                        },
                    );
                }
                let by_fingerprint = fingerprint
                    .filter(|f| f.attack && applied < threshold)
                    .map(|f| {
                        format!(
                            "; attack fingerprint {} {}: {:.1} % of requests, {:.2} % normally, \
                             threshold × {}",
                            f.id,
                            f.label,
                            f.share * 100.0,
                            f.baseline_share * 100.0,
                            self.cfg.fingerprint_factor
                        )
                    })
                    .unwrap_or_default();
                log::info!(
                    "adaptive: {ip} at {rate:.1} req/s on service {} (threshold {threshold:.1} = \
                     max(floor {:.1}, k {:.1} × baseline p{} {:.2}); service at {:.0} req/s, \
                     {} {:.0} req/s{by_fingerprint})",
                    s.spec.name,
                    self.cfg.floor_rps,
                    self.cfg.k,
                    self.cfg.quantile * 100.0,
                    s.baseline.quantile(self.cfg.quantile).unwrap_or(0.0),
                    s.rate,
                    if s.spec.capacity_rps > 0.0 {
                        "capacity"
                    } else {
                        "baseline"
                    },
                    target_rps,
                );
                decisions.push(Decision {
                    target,
                    rule: ADAPTIVE_RULE.into(),
                    rate,
                    threshold: applied,
                    ttl: self.cfg.ttl.0,
                    block: true,
                    crossed_ns: now_ns,
                    offence: 1,
                    origin: Origin::Rule,
                });
            }
            s.counts.clear();
        }
        (decisions, changes)
    }

    /// The services as `status` and `baseline` show them.
    pub(crate) fn views(&self) -> Vec<ServiceView> {
        let learning = self.cfg.learning.0.as_secs_f64();
        self.services
            .iter()
            .map(|s| {
                let learned = s.baseline.learned_secs() >= learning;
                ServiceView {
                    name: s.spec.name.clone(),
                    host: s.spec.host.clone(),
                    path_prefix: s.spec.path_prefix.clone(),
                    capacity_rps: s.spec.capacity_rps,
                    rate_rps: s.rate,
                    learned_secs: s.baseline.learned_secs(),
                    learned,
                    baseline_rps: s.baseline.rate(),
                    source_rates: s.baseline.sources(),
                    source_quantiles: SHOWN_QUANTILES
                        .iter()
                        .filter_map(|q| Some((*q, s.baseline.quantile(*q)?)))
                        .collect(),
                    threshold_rps: s
                        .baseline
                        .quantile(self.cfg.quantile)
                        .filter(|_| learned)
                        .map(|q| (self.cfg.k * q).max(self.cfg.floor_rps)),
                    attack: s.attack.trigger,
                    attack_secs: s.attack.under_secs,
                    attacks: s.attacks,
                    decided: s.decided,
                    fingerprint_threshold_rps: s
                        .baseline
                        .quantile(self.cfg.quantile)
                        .filter(|_| learned && self.cfg.fingerprints)
                        .map(|q| {
                            (self.cfg.k * q).max(self.cfg.floor_rps) * self.cfg.fingerprint_factor
                        }),
                    fingerprints_learned: s.baseline.fingerprints.len(),
                    fingerprints: s.shown_fingerprints.clone(),
                    fingerprints_uncounted: s.uncounted,
                }
            })
            .collect()
    }

    /// Reads the state file into the services it names (others keep learning from nothing);
    /// returns how many services were restored. Does nothing without a state file.
    pub(crate) fn load(&mut self) -> Result<usize, BaselineError> {
        if !self.cfg.enabled || self.cfg.state_file.as_os_str().is_empty() {
            return Ok(0);
        }
        let saved = match baseline::load(&self.cfg.state_file, self.cfg.period.0.as_secs_f64()) {
            Err(BaselineError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(0);
            }
            other => other?,
        };
        let mut restored = 0;
        for (id, b) in saved {
            if let Some(s) = self.services.iter_mut().find(|s| s.id() == id) {
                s.baseline = b;
                restored += 1;
            }
        }
        Ok(restored)
    }

    /// Writes the baselines to the state file (nothing without one).
    pub(crate) fn save(&self, unix_secs: u64) -> Result<(), BaselineError> {
        if !self.cfg.enabled || self.cfg.state_file.as_os_str().is_empty() {
            return Ok(());
        }
        let all: Vec<(ServiceId, &Baseline)> = self
            .services
            .iter()
            .map(|s| (s.id(), &s.baseline))
            .collect();
        baseline::save(&self.cfg.state_file, &all, unix_secs)
    }

    /// The configured state file and how often it is written.
    pub(crate) fn state_file(&self) -> (&std::path::Path, Duration) {
        (&self.cfg.state_file, self.cfg.save_interval.0)
    }
}

impl super::Detector {
    /// Once per second, after [`super::Detector::tick`]: the adaptive decisions (with the
    /// prefix aggregates they complete) and the attack state changes.
    pub(crate) fn adaptive_tick(
        &mut self,
        now_ns: u64,
        elapsed: Duration,
    ) -> (Vec<Decision>, Vec<Change>) {
        let decided = &self.decided;
        let (decisions, changes) = self.adaptive.tick(now_ns, elapsed, |t| {
            decided.get(t).is_some_and(|until| *until > now_ns)
        });
        // Every source decided in this tick is a suspect before any aggregate is weighed:
        // the guard must not count the rest of the botnet as the prefix's legitimate users.
        for d in &decisions {
            self.decided
                .insert(d.target, now_ns.saturating_add(d.ttl.as_nanos() as u64));
            self.legit.suspect(d.target.ip, now_ns);
        }
        let decided = &self.decided;
        self.adaptive.details.retain(|t, _| decided.contains_key(t));
        let mut all = Vec::with_capacity(decisions.len());
        for d in decisions {
            let aggregate = self.aggregate(&d);
            all.push(d);
            all.extend(aggregate);
        }
        (all, changes)
    }

    /// The adaptive services as `status` and `baseline` show them (empty when off).
    pub(crate) fn adaptive_views(&self) -> Vec<ServiceView> {
        if self.adaptive.enabled() {
            self.adaptive.views()
        } else {
            Vec::new()
        }
    }

    /// The numbers behind the adaptive decision in force for `ip`, if any.
    pub(crate) fn adaptive_why(&self, ip: IpAddr) -> Option<AdaptiveWhy> {
        self.adaptive.details.get(&Target::host(ip)).cloned()
    }

    /// The adaptive state (for the daemon's state file and metrics).
    pub(crate) fn adaptive(&self) -> &Adaptive {
        &self.adaptive
    }

    /// Restores baselines from the state file; see [`Adaptive::load`].
    pub(crate) fn load_baselines(&mut self) -> Result<usize, BaselineError> {
        self.adaptive.load()
    }
}

#[cfg(test)]
#[path = "adaptive_tests.rs"]
mod tests;
