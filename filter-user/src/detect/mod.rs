//! Detection: every request event is matched against the rules, counted into the bounded
//! rate state, and turned into a decision when its key crosses a threshold. Escalation for
//! repeat offenders and prefix aggregation also live here; writing to the maps does not.

use std::{
    collections::HashMap,
    hash::{BuildHasher as _, Hasher as _},
    net::IpAddr,
    time::Duration,
};

pub(crate) mod adaptive;
pub(crate) mod attack;
pub mod baseline;
mod fingerprint;
mod fleet;
mod legit;
pub mod rate;
mod sketch;

use crate::{
    config::{Action, Rule, RuleKey, RuleScope, Settings, Weight},
    enforce::{Decision, Origin},
    sensor::{RequestEvent, Signal},
    target::{Target, for_family, ip_key},
};
use adaptive::Adaptive;
pub(crate) use fleet::PeerSums;
use legit::LegitClients;
use rate::{RateKey, RateTable};

/// Talkers kept for `floodgate top`.
/// The rule name of decisions made by prefix aggregation.
pub(crate) const AGGREGATE_RULE: &str = "aggregate";
const TOP_CAPACITY: usize = 256;
/// Paths kept per talker.
const TOP_PATHS: usize = 4;
/// Share of a rule's threshold from which a source counts as a talker for `top`.
const TOP_MIN_SHARE: f64 = 0.1;

/// One heavy talker for `top`.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct Talker {
    /// Source address.
    pub addr: IpAddr,
    /// Requests/s (smoothed over the last seconds).
    pub rate: f64,
    /// Requests counted since the last tick.
    #[serde(skip)]
    pending: f64,
    /// Samples seen.
    pub samples: u64,
    /// Most-hit paths with their counts.
    pub paths: Vec<(String, u64)>,
}

/// Counters the daemon exports.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DetectStats {
    /// Events processed.
    pub events: u64,
}

/// The detector.
pub struct Detector {
    rules: Vec<Rule>,
    table: RateTable,
    decided: HashMap<Target, u64>,
    offences: HashMap<IpAddr, (u32, u64)>,
    aggregates: HashMap<Target, Vec<(IpAddr, u64)>>,
    top: HashMap<IpAddr, Talker>,
    legit: LegitClients,
    fleet_keys: fleet::FleetKeys,
    adaptive: Adaptive,
    hasher: std::collections::hash_map::RandomState,
    settings: Settings,
    stats: DetectStats,
}

impl Detector {
    /// A detector for `settings`.
    #[must_use]
    pub fn new(settings: &Settings) -> Self {
        Self {
            rules: settings.rules.clone(),
            table: RateTable::new(settings.state.max_tracked),
            decided: HashMap::new(),
            offences: HashMap::new(),
            aggregates: HashMap::new(),
            top: HashMap::new(),
            legit: LegitClients::default(),
            fleet_keys: fleet::FleetKeys::default(),
            adaptive: Adaptive::new(&settings.adaptive),
            hasher: std::collections::hash_map::RandomState::new(),
            settings: settings.clone(),
            stats: DetectStats::default(),
        }
    }

    /// Applies new settings (rules, thresholds, escalation). Rate state is kept when the rules
    /// are unchanged, reset otherwise (rule indices may have moved); decisions stay in the maps.
    pub(crate) fn reconfigure(&mut self, settings: &Settings) {
        let same_rules = self.rules == settings.rules;
        if !same_rules || settings.state.max_tracked != self.settings.state.max_tracked {
            self.table = RateTable::new(settings.state.max_tracked);
        }
        if !same_rules {
            self.fleet_keys = fleet::FleetKeys::default();
        }
        self.rules = settings.rules.clone();
        self.adaptive.reconfigure(&settings.adaptive);
        self.settings = settings.clone();
    }

    /// Rate keys tracked now.
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.table.len()
    }

    /// Processing counters.
    #[must_use]
    pub(crate) fn stats(&self) -> DetectStats {
        self.stats
    }

    /// Counts one request event; returns the decisions it triggers.
    pub fn observe(&mut self, event: &RequestEvent<'_>) -> Vec<Decision> {
        self.stats.events += 1;
        self.adaptive.prefetch(event.src);
        let mut decisions = Vec::new();
        let mut heaviest = 0.0f64;
        // The same, over the rules that rate this source alone (not a prefix it is in).
        let mut own_share = 0.0f64;
        let rules = std::mem::take(&mut self.rules);
        for (index, rule) in rules.iter().enumerate() {
            if !matches(rule, event) {
                continue;
            }
            let (target, sub) = match rule.key {
                RuleKey::Source => (Target::host(event.src), 0),
                RuleKey::Prefix => {
                    let len = for_family(event.src, rule.prefix_v4, rule.prefix_v6);
                    (Target::covering(event.src, len), 0)
                }
                RuleKey::SourcePath => (Target::host(event.src), self.sub_hash(event.path)),
                RuleKey::SourceHost => (
                    Target::host(event.src),
                    self.sub_hash(&event.host.unwrap_or("").to_ascii_lowercase()),
                ),
            };
            let key = RateKey {
                addr: target.key(),
                sub,
                rule: index as u8,
            };
            let Some(weight) = weight_of(rule, event) else {
                continue;
            };
            let window_ns = rule.window.0.as_nanos() as u64;
            let estimate = self.table.observe(&key, event.time_ns, window_ns, weight);
            let rate = estimate.rate * unit_of(rule);
            heaviest = heaviest.max(rate / rule.threshold_rps);
            if target.is_host() {
                own_share = own_share.max(rate / rule.threshold_rps);
            }
            if rule.scope == RuleScope::Fleet {
                // Decided once per second on the fleet's sum (`fleet`).
                let share = rate / rule.threshold_rps;
                self.fleet_keys
                    .note(index as u8, target, share, &self.settings.fleet);
                continue;
            }
            if rate <= rule.threshold_rps || u32::from(estimate.samples) < rule.min_samples {
                continue;
            }
            decisions.extend(self.decide(rule, target, rate, event.time_ns));
        }
        self.rules = rules;
        if self.adaptive.observe(event) {
            own_share = own_share.max(1.0);
        }
        // Only heavy talkers (≥ 10 % of a threshold) are tracked for `top`: light clients cost
        // nothing here, and a flood of distinct sources cannot churn the table.
        if heaviest >= TOP_MIN_SHARE {
            self.note_talker(event);
        }
        // Only behaved clients count as legitimate for the guard (see `legit`).
        let decided = self.decided.contains_key(&Target::host(event.src));
        self.legit
            .note(event.src, event.time_ns, own_share, decided);
        let aggregated: Vec<Decision> = decisions
            .iter()
            .filter(|d| d.block && d.target.is_host())
            .filter_map(|d| self.aggregate(d))
            .collect();
        decisions.extend(aggregated);
        decisions
    }

    /// True when some rule counts held connections (the daemon then reads the socket tables).
    #[must_use]
    pub(crate) fn counts_connections(&self) -> bool {
        self.rules.iter().any(|r| r.signal == Signal::Connections)
    }

    /// Applies the `signal = "connections"` rules to the established connections each source
    /// holds now; returns the decisions. The count is a level, not a rate: a key offends while
    /// it holds more than the threshold.
    pub(crate) fn observe_connections(
        &mut self,
        counts: &HashMap<IpAddr, u32>,
        now_ns: u64,
    ) -> Vec<Decision> {
        let mut decisions = Vec::new();
        let rules = std::mem::take(&mut self.rules);
        for rule in rules.iter().filter(|r| r.signal == Signal::Connections) {
            let mut per_target: HashMap<Target, u32> = HashMap::new();
            for (ip, n) in counts {
                let target = match rule.key {
                    RuleKey::Prefix => {
                        Target::covering(*ip, for_family(*ip, rule.prefix_v4, rule.prefix_v6))
                    }
                    _ => Target::host(*ip),
                };
                *per_target.entry(target).or_default() += n;
            }
            for (target, held) in per_target {
                if f64::from(held) > rule.threshold_rps {
                    decisions.extend(self.decide(rule, target, f64::from(held), now_ns));
                }
            }
        }
        self.rules = rules;
        decisions
    }

    /// Forgets a decision (the operator removed the block), so the key can be decided again.
    pub(crate) fn forget(&mut self, target: &Target) {
        self.decided.remove(target);
    }

    fn sub_hash(&self, text: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(text.as_bytes());
        h.finish() | 1
    }

    /// The decision of `rule` for `target` at `rate`, unless one is in force: its TTL
    /// escalated for a repeat offender, remembered as decided, its address a suspect for the
    /// guard.
    fn decide(&mut self, rule: &Rule, target: Target, rate: f64, now_ns: u64) -> Option<Decision> {
        if self
            .decided
            .get(&target)
            .is_some_and(|until| *until > now_ns)
        {
            return None;
        }
        let block = rule.action == Action::Block;
        let (offence, ttl) = self.escalate(target.ip, rule.ttl.0, now_ns, block);
        self.decided
            .insert(target, now_ns.saturating_add(ttl.as_nanos() as u64));
        self.legit.suspect(target.ip, now_ns);
        Some(Decision {
            target,
            rule: rule.name.clone(),
            rate,
            threshold: rule.threshold_rps,
            ttl,
            block,
            crossed_ns: now_ns,
            offence,
            origin: Origin::Rule,
        })
    }

    fn escalate(
        &mut self,
        ip: IpAddr,
        base: Duration,
        now_ns: u64,
        count: bool,
    ) -> (u32, Duration) {
        let memory = self.settings.escalation.memory.0.as_nanos() as u64;
        let entry = self.offences.entry(ip).or_insert((0, now_ns));
        if now_ns.saturating_sub(entry.1) > memory {
            entry.0 = 0;
        }
        if count {
            entry.0 += 1;
            entry.1 = now_ns;
        }
        let offence = entry.0.max(1);
        let factor = self.settings.escalation.factor.powi(offence as i32 - 1);
        let ttl = base
            .mul_f64(factor.min(1e6))
            .min(self.settings.escalation.max_ttl.0.max(base));
        (offence, ttl)
    }

    fn aggregate(&mut self, decision: &Decision) -> Option<Decision> {
        let k = self.settings.aggregation.min_addresses;
        if k == 0 {
            return None;
        }
        let ip = decision.target.ip;
        let len = for_family(
            ip,
            self.settings.aggregation.prefix_v4,
            self.settings.aggregation.prefix_v6,
        );
        let prefix = Target::covering(ip, len);
        let period = self.settings.aggregation.period.0.as_nanos() as u64;
        let now = decision.crossed_ns;
        let members = self.aggregates.entry(prefix).or_default();
        members.retain(|(m, at)| *m != ip && now.saturating_sub(*at) <= period);
        members.push((ip, now));
        if members.len() < k || self.decided.get(&prefix).is_some_and(|until| *until > now) {
            return None;
        }
        members.clear();
        let ttl = self.settings.aggregation.ttl.0;
        self.decided
            .insert(prefix, now.saturating_add(ttl.as_nanos() as u64));
        Some(Decision {
            target: prefix,
            rule: AGGREGATE_RULE.into(),
            rate: decision.rate,
            threshold: decision.threshold,
            ttl,
            block: true,
            crossed_ns: now,
            offence: 1,
            origin: Origin::Aggregate,
        })
    }

    fn note_talker(&mut self, event: &RequestEvent<'_>) {
        let path = event.path;
        if !self.top.contains_key(&event.src) && self.top.len() >= TOP_CAPACITY {
            // Space-saving: replace the quietest talker.
            let quietest = self
                .top
                .iter()
                .min_by(|a, b| (a.1.rate + a.1.pending).total_cmp(&(b.1.rate + b.1.pending)))
                .map(|(ip, _)| *ip);
            if let Some(ip) = quietest {
                self.top.remove(&ip);
            }
        }
        let talker = self.top.entry(event.src).or_insert_with(|| Talker {
            addr: event.src,
            rate: 0.0,
            pending: 0.0,
            samples: 0,
            paths: Vec::new(),
        });
        talker.pending += f64::from(event.weight);
        talker.samples += 1;
        // At most 64 bytes of the path, cut on a character boundary (attacker bytes).
        let mut end = path.len().min(64);
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        let path = &path[..end];
        if let Some(slot) = talker.paths.iter_mut().find(|(p, _)| p == path) {
            slot.1 += u64::from(event.weight);
        } else if talker.paths.len() < TOP_PATHS {
            talker
                .paths
                .push((path.to_owned(), u64::from(event.weight)));
        } else if let Some(min) = talker.paths.iter_mut().min_by_key(|(_, c)| *c) {
            *min = (path.to_owned(), min.1 + u64::from(event.weight));
        }
    }

    /// Once per second: fold the last second into the smoothed talker rates and forget old
    /// decisions, offences and aggregation members.
    pub(crate) fn tick(&mut self, now_ns: u64, elapsed: Duration) {
        let secs = elapsed.as_secs_f64().max(0.001);
        for talker in self.top.values_mut() {
            talker.rate = 0.5 * talker.rate + 0.5 * talker.pending / secs;
            talker.pending = 0.0;
        }
        self.top.retain(|_, t| t.rate >= 0.05);
        self.decided.retain(|_, until| *until > now_ns);
        let memory = self.settings.escalation.memory.0.as_nanos() as u64;
        self.offences
            .retain(|_, (_, at)| now_ns.saturating_sub(*at) <= memory);
        let window = self.settings.guard.window.0.as_nanos() as u64;
        self.legit.expire(now_ns, window);
        let period = self.settings.aggregation.period.0.as_nanos() as u64;
        self.aggregates.retain(|_, m| {
            m.retain(|(_, at)| now_ns.saturating_sub(*at) <= period);
            !m.is_empty()
        });
    }

    /// Legitimate clients seen within the guard window: (inside `target`, in all).
    #[must_use]
    pub(crate) fn legit_clients(&self, target: &Target) -> (usize, usize) {
        self.legit.count(target)
    }

    /// The heaviest talkers, highest rate first.
    #[must_use]
    pub(crate) fn top(&self, limit: usize) -> Vec<Talker> {
        let mut talkers: Vec<Talker> = self.top.values().cloned().collect();
        talkers.sort_by(|a, b| b.rate.total_cmp(&a.rate));
        talkers.truncate(limit);
        for t in &mut talkers {
            t.paths.sort_by_key(|p| std::cmp::Reverse(p.1));
        }
        talkers
    }

    /// Current rate of `ip` under every source-keyed rule: (rule, rate, threshold).
    #[must_use]
    pub(crate) fn rates(&self, ip: IpAddr, now_ns: u64) -> Vec<(String, f64, f64)> {
        self.rules
            .iter()
            .enumerate()
            .filter_map(|(index, rule)| {
                let addr = match rule.key {
                    RuleKey::Source => ip_key(ip),
                    RuleKey::Prefix => {
                        Target::covering(ip, for_family(ip, rule.prefix_v4, rule.prefix_v6)).key()
                    }
                    RuleKey::SourcePath | RuleKey::SourceHost => return None,
                };
                let key = RateKey {
                    addr,
                    sub: 0,
                    rule: index as u8,
                };
                let rate = self
                    .table
                    .peek(&key, now_ns, rule.window.0.as_nanos() as u64)
                    .map_or(0.0, |e| e.rate * unit_of(rule));
                Some((rule.name.clone(), rate, rule.threshold_rps))
            })
            .collect()
    }
}

/// Milliseconds of backend time count as weight for `weight = "upstream_time"`.
const UPSTREAM_UNIT: f64 = 1000.0;

/// What `event` adds to `rule`'s count; `None` when the rule cannot weigh it.
fn weight_of(rule: &Rule, event: &RequestEvent<'_>) -> Option<u32> {
    match rule.weight {
        Weight::Requests => Some(event.weight),
        Weight::UpstreamTime => {
            let ms = (event.upstream_secs? * UPSTREAM_UNIT).round();
            Some((ms.clamp(0.0, f64::from(u32::MAX)) as u32).saturating_mul(event.weight))
        }
    }
}

/// The factor from counted weight per second to the rule's threshold unit.
fn unit_of(rule: &Rule) -> f64 {
    match rule.weight {
        Weight::Requests => 1.0,
        Weight::UpstreamTime => 1.0 / UPSTREAM_UNIT,
    }
}

fn matches(rule: &Rule, request: &RequestEvent<'_>) -> bool {
    rule.sensor.accepts(request.sensor)
        && rule.signal == request.signal
        && (rule.status.is_empty()
            || request
                .status
                .is_some_and(|status| rule.status.contains(&status)))
        && rule.protocol.as_deref().is_none_or(|p| {
            request
                .protocol
                .is_some_and(|rp| rp.eq_ignore_ascii_case(p))
        })
        && rule.method.as_deref().is_none_or(|m| m == request.method)
        && rule
            .path_prefix
            .as_deref()
            .is_none_or(|p| request.path.starts_with(p))
        && rule
            .host
            .as_deref()
            .is_none_or(|h| request.host.is_some_and(|rh| rh.eq_ignore_ascii_case(h)))
        && rule.user_agent.as_deref().is_none_or(|ua| {
            request
                .user_agent
                .is_some_and(|r| r.to_ascii_lowercase().contains(ua))
        })
}

#[cfg(test)]
mod tests {
    use filter_common::SAMPLE_PAYLOAD_MAX;

    use super::*;
    use crate::{config, sensor::http::parse_request};

    /// Feeds one kernel-style event carrying `payload` to the detector.
    fn observe(
        d: &mut Detector,
        src: &str,
        t_ns: u64,
        weight: u32,
        payload: &[u8],
    ) -> Vec<Decision> {
        let mut scratch = [0u8; SAMPLE_PAYLOAD_MAX + 2];
        let request = parse_request(payload, &mut scratch).expect("a request start");
        d.observe(&RequestEvent {
            src: src.parse().unwrap(),
            time_ns: t_ns,
            weight,
            method: request.method,
            path: request.path,
            host: request.host,
            user_agent: request.user_agent,
            sensor: crate::sensor::Sensor::Kernel,
            signal: crate::sensor::Signal::Requests,
            status: None,
            upstream_secs: None,
            protocol: None,
        })
    }

    const GET: &[u8] = b"GET /api/items HTTP/1.1\r\nHost: shop\r\nUser-Agent: bot/1\r\n\r\n";

    #[test]
    fn a_flooder_is_decided_once_and_a_slow_client_never() {
        let settings = config::parse("", "t").unwrap();
        let mut d = Detector::new(&settings);
        let mut decisions = Vec::new();
        // Flooder: 1,000 req/s for 2 s. Slow client: 5 req/s.
        for i in 0..2000u64 {
            let t = 1_000_000_000 + i * 1_000_000;
            decisions.extend(observe(&mut d, "198.18.1.1", t, 1, GET));
            if i % 200 == 0 {
                decisions.extend(observe(&mut d, "198.18.1.2", t, 1, GET));
            }
        }
        assert_eq!(decisions.len(), 1, "{decisions:?}");
        assert_eq!(decisions[0].target.to_string(), "198.18.1.1");
        assert_eq!(decisions[0].rule, "per-source-flood");
        assert!(decisions[0].rate > 100.0);
        assert_eq!(decisions[0].ttl, Duration::from_secs(600));
        assert_eq!(d.top(1)[0].addr, "198.18.1.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_source_holding_too_many_connections_is_decided_once() {
        let text = "[[rules]]\nname = \"hog\"\nsignal = \"connections\"\nthreshold_rps = 50.0\n";
        let settings = config::parse(text, "t").unwrap();
        let mut d = Detector::new(&settings);
        assert!(d.counts_connections());
        let hog: IpAddr = "198.18.2.1".parse().unwrap();
        let office: IpAddr = "198.18.0.10".parse().unwrap();
        let counts = HashMap::from([(hog, 300), (office, 40)]);
        let decisions = d.observe_connections(&counts, 1_000_000_000);
        assert_eq!(decisions.len(), 1, "{decisions:?}");
        assert_eq!(decisions[0].target, Target::host(hog));
        assert_eq!(decisions[0].rate, 300.0);
        assert!(
            d.observe_connections(&counts, 2_000_000_000).is_empty(),
            "once"
        );
        // Request events never match a connections rule.
        assert!(observe(&mut d, "198.18.2.1", 3_000_000_000, 1000, GET).is_empty());
    }

    #[test]
    fn one_heavy_sample_is_not_enough() {
        let settings = config::parse("", "t").unwrap();
        let mut d = Detector::new(&settings);
        // One sample standing for 10,000 requests: rate looks huge, but one sample is no proof.
        assert!(observe(&mut d, "198.18.1.3", 1_000_000_000, 10_000, GET).is_empty());
    }

    #[test]
    fn repeat_offenders_escalate_and_prefixes_aggregate() {
        let text =
            "[aggregation]\nmin_addresses = 3\n[escalation]\nfactor = 3.0\nmax_ttl = \"1h\"\n";
        let settings = config::parse(text, "t").unwrap();
        let mut d = Detector::new(&settings);
        let mut all = Vec::new();
        for (round, base) in [(0u64, 1_000_000_000u64), (1, 700_000_000_000)] {
            for host in 1..=3 {
                for i in 0..300u64 {
                    all.extend(observe(
                        &mut d,
                        &format!("198.18.7.{host}"),
                        base + i * 1_000_000,
                        1,
                        GET,
                    ));
                }
            }
            let _ = round;
            d.tick(base + 650_000_000_000, Duration::from_secs(1));
        }
        let first: Vec<_> = all
            .iter()
            .filter(|x| x.target.to_string() == "198.18.7.1")
            .collect();
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].ttl, Duration::from_secs(600));
        assert_eq!(first[1].ttl, Duration::from_secs(1800));
        assert!(
            all.iter()
                .any(|x| x.origin == Origin::Aggregate && x.target.to_string() == "198.18.7.0/24")
        );
    }

    #[test]
    fn flood_members_not_yet_blocked_are_no_legitimate_clients_of_their_prefix() {
        // 250 flooders in one /24 at 200 requests/s each (threshold 100), among behaved
        // clients: 2 in the same /24, 20 elsewhere, at 1 request/s for 5 s before the flood.
        let settings = config::parse("", "t").unwrap();
        let mut d = Detector::new(&settings);
        let s = 1_000_000_000u64;
        let behaved: Vec<String> = (1..=20)
            .map(|i| format!("198.18.9.{i}"))
            .chain(["198.18.5.253".into(), "198.18.5.254".into()])
            .collect();
        for t in 0..5 {
            for ip in &behaved {
                assert!(observe(&mut d, ip, t * s, 1, GET).is_empty());
            }
        }
        let net: Target = "198.18.5.0/24".parse().unwrap();
        let mut seen_at_aggregate = None;
        'flood: for i in 0..400u64 {
            for host in 1..=250u64 {
                let t = 5 * s + i * 5_000_000 + host * 10_000;
                let decisions = observe(&mut d, &format!("198.18.5.{host}"), t, 1, GET);
                if decisions.iter().any(|x| x.origin == Origin::Aggregate) {
                    seen_at_aggregate = Some(d.legit_clients(&net));
                    break 'flood;
                }
            }
        }
        let (inside, total) = seen_at_aggregate.expect("the /24 was aggregated");
        assert_eq!((inside, total), (2, 22), "only the behaved clients count");
        let aggregate = Decision {
            target: net,
            rule: "aggregate".into(),
            rate: 0.0,
            threshold: 0.0,
            ttl: Duration::from_secs(60),
            block: true,
            crossed_ns: 0,
            offence: 1,
            origin: Origin::Aggregate,
        };
        assert!(crate::enforce::guard::check(&aggregate, false, inside, total, &settings).is_ok());
    }

    #[test]
    fn a_multibyte_character_at_the_path_cut_is_no_panic() {
        let settings = config::parse("", "t").unwrap();
        let mut d = Detector::new(&settings);
        // 'ʮ' spans bytes 63..65 of the path: found by the fuzzer as a daemon crash.
        let request = format!("GET /{}ʮ HTTP/1.1\r\n\r\n", "a".repeat(62));
        for i in 0..200u64 {
            let _ = observe(
                &mut d,
                "198.18.1.9",
                1_000_000_000 + i * 1_000_000,
                1,
                request.as_bytes(),
            );
        }
        assert!(d.top(1)[0].paths[0].0.len() <= 64);
    }

    #[test]
    fn rules_match_on_method_path_host_and_agent() {
        let text = "[[rules]]\nname = \"login\"\nmethod = \"post\"\npath_prefix = \"/login\"\nhost = \"SHOP\"\nuser_agent = \"BOT\"\n";
        let settings = config::parse(text, "t").unwrap();
        let rule = &settings.rules[0];
        let mut scratch = [0u8; SAMPLE_PAYLOAD_MAX + 2];
        let r = parse_request(
            b"POST /login/x HTTP/1.1\r\nHost: shop\r\nUser-Agent: evilbot\r\n\r\n",
            &mut scratch,
        )
        .unwrap();
        assert!(matches(rule, &event(&r)));
        let mut scratch = [0u8; SAMPLE_PAYLOAD_MAX + 2];
        let r = parse_request(b"GET /login HTTP/1.1\r\nHost: shop\r\n\r\n", &mut scratch).unwrap();
        assert!(!matches(rule, &event(&r)));
    }

    fn event<'a>(r: &crate::sensor::http::RequestStart<'a>) -> RequestEvent<'a> {
        RequestEvent {
            src: "198.18.0.1".parse().unwrap(),
            time_ns: 1,
            weight: 1,
            method: r.method,
            path: r.path,
            host: r.host,
            user_agent: r.user_agent,
            sensor: crate::sensor::Sensor::Kernel,
            signal: crate::sensor::Signal::Requests,
            status: None,
            upstream_secs: None,
            protocol: None,
        }
    }
}
