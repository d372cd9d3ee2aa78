//! Fleet-wide rates: rules with `scope = "fleet"` are counted here like any rule, but decided
//! once per second on the sum of this host's rate and its peers' latest reported rates for the
//! same key. The detector keeps the keys that reach a share of a fleet rule's threshold (its
//! heavy hitters, which the daemon publishes) and takes the peers' sums as plain input: it
//! knows nothing of NATS.

use std::collections::HashMap;

use super::{Detector, unit_of};
use crate::{config::RuleScope, enforce::Decision, target::Target};

/// Keys kept per report slot: room for the reported ones and those about to be.
const KEYS_PER_REPORTED: usize = 4;

/// One heavy hitter: a fleet rule's key and its rate here.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LocalHitter {
    /// The rule's name.
    pub rule: String,
    /// The key (an address, or a prefix for `key = "prefix"`).
    pub target: Target,
    /// Its rate here, in the rule's unit per second.
    pub rate: f64,
    /// Samples behind it in the current window.
    pub samples: u32,
}

/// The peers' added-up rates: (rule name, key) → (rate, samples).
pub(crate) type PeerSums = HashMap<(String, Target), (f64, u32)>;

/// The keys of fleet rules that reached the reporting share recently.
#[derive(Debug, Default)]
pub(crate) struct FleetKeys {
    keys: HashMap<(u8, Target), ()>,
}

impl FleetKeys {
    /// Notes a key of fleet rule `rule` at `share` of its threshold (kept when it is at least
    /// the reporting share and there is room).
    pub(crate) fn note(
        &mut self,
        rule: u8,
        target: Target,
        share: f64,
        settings: &crate::config::Fleet,
    ) {
        if share < settings.report_share {
            return;
        }
        if self.keys.len() < settings.report_max * KEYS_PER_REPORTED {
            self.keys.insert((rule, target), ());
        }
    }
}

impl Detector {
    /// True when some rule has `scope = "fleet"`.
    #[must_use]
    pub(crate) fn has_fleet_rules(&self) -> bool {
        self.rules.iter().any(|r| r.scope == RuleScope::Fleet)
    }

    /// This host's rate for fleet rule `index` and `target` now: (rate, samples).
    fn fleet_local(&self, index: usize, target: Target, now_ns: u64) -> (f64, u32) {
        let rule = &self.rules[index];
        let key = super::RateKey {
            addr: target.key(),
            sub: 0,
            rule: index as u8,
        };
        self.table
            .peek(&key, now_ns, rule.window.0.as_nanos() as u64)
            .map_or((0.0, 0), |e| (e.rate * unit_of(rule), u32::from(e.samples)))
    }

    /// This host's heavy hitters of its fleet rules now, heaviest first, at most
    /// `fleet.report_max`; keys that fell below the reporting share are forgotten.
    pub(crate) fn fleet_report(&mut self, now_ns: u64) -> Vec<LocalHitter> {
        let keys = std::mem::take(&mut self.fleet_keys.keys);
        let mut hitters = Vec::new();
        for (rule, target) in keys.into_keys() {
            let index = usize::from(rule);
            if index >= self.rules.len() || self.rules[index].scope != RuleScope::Fleet {
                continue;
            }
            let (rate, samples) = self.fleet_local(index, target, now_ns);
            if rate / self.rules[index].threshold_rps < self.settings.fleet.report_share {
                continue;
            }
            self.fleet_keys.keys.insert((rule, target), ());
            hitters.push(LocalHitter {
                rule: self.rules[index].name.clone(),
                target,
                rate,
                samples,
            });
        }
        hitters.sort_by(|a, b| b.rate.total_cmp(&a.rate));
        hitters.truncate(self.settings.fleet.report_max);
        hitters
    }

    /// Applies the fleet rules to this host's rate plus `peers` (the peers' latest reports
    /// added up); returns the decisions. Run once per second.
    pub(crate) fn observe_fleet(&mut self, peers: &PeerSums, now_ns: u64) -> Vec<Decision> {
        let mut decisions = Vec::new();
        for index in 0..self.rules.len() {
            if self.rules[index].scope != RuleScope::Fleet {
                continue;
            }
            let name = self.rules[index].name.clone();
            let mut keys: Vec<Target> = self
                .fleet_keys
                .keys
                .keys()
                .filter(|(rule, _)| usize::from(*rule) == index)
                .map(|(_, target)| *target)
                .collect();
            keys.extend(
                peers
                    .keys()
                    .filter(|(rule, _)| *rule == name)
                    .map(|(_, target)| *target),
            );
            keys.sort_unstable();
            keys.dedup();
            for target in keys {
                let (rate, samples) = self.fleet_local(index, target, now_ns);
                let (peer_rate, peer_samples) = peers
                    .get(&(name.clone(), target))
                    .copied()
                    .unwrap_or((0.0, 0));
                let rule = &self.rules[index];
                let (total, samples) = (rate + peer_rate, samples.saturating_add(peer_samples));
                if total <= rule.threshold_rps || samples < rule.min_samples {
                    continue;
                }
                let rule = rule.clone();
                decisions.extend(self.decide(&rule, target, total, now_ns));
            }
        }
        decisions
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::{config, sensor::RequestEvent};

    fn event(src: IpAddr, t: u64) -> RequestEvent<'static> {
        RequestEvent {
            src,
            time_ns: t,
            weight: 1,
            method: "GET",
            path: "/",
            host: None,
            user_agent: None,
            sensor: crate::sensor::Sensor::Kernel,
            signal: crate::sensor::Signal::Requests,
            status: None,
            upstream_secs: None,
            protocol: None,
        }
    }

    #[test]
    fn a_source_under_every_host_threshold_is_caught_by_the_sum() {
        let text = "[[rules]]\nname = \"host-flood\"\nthreshold_rps = 100.0\n\
                    [[rules]]\nname = \"fleet-flood\"\nscope = \"fleet\"\nthreshold_rps = 150.0\n";
        let settings = config::parse(text, "t").unwrap();
        let mut d = Detector::new(&settings);
        assert!(d.has_fleet_rules());
        let (spread, person): (IpAddr, IpAddr) = (
            "198.18.2.50".parse().unwrap(),
            "198.18.0.10".parse().unwrap(),
        );
        // 60 requests/s for 2 s here; a person at 5 requests/s.
        let s = 1_000_000_000u64;
        for i in 0..120u64 {
            let t = s + i * s / 60;
            assert!(
                d.observe(&event(spread, t)).is_empty(),
                "no decision per event"
            );
            if i % 12 == 0 {
                assert!(d.observe(&event(person, t)).is_empty());
            }
        }
        let now = 3 * s;
        let report = d.fleet_report(now);
        assert_eq!(report.len(), 1, "{report:?}");
        assert_eq!(report[0].target, Target::host(spread));
        assert!((40.0..80.0).contains(&report[0].rate), "{report:?}");
        assert!(
            d.observe_fleet(&PeerSums::new(), now).is_empty(),
            "60 alone is under 150"
        );
        // Two peers at 60 each: 180 in all.
        let peers = PeerSums::from([(("fleet-flood".into(), Target::host(spread)), (120.0, 120))]);
        let decisions = d.observe_fleet(&peers, now);
        assert_eq!(decisions.len(), 1, "{decisions:?}");
        assert_eq!(decisions[0].rule, "fleet-flood");
        assert!(decisions[0].rate > 150.0);
        assert!(d.observe_fleet(&peers, now).is_empty(), "decided once");
        // A peers-only key (not heavy here) is decided on the peers' sum alone.
        let other = Target::host("198.18.2.51".parse().unwrap());
        let peers = PeerSums::from([(("fleet-flood".into(), other), (200.0, 50))]);
        assert_eq!(d.observe_fleet(&peers, now).len(), 1);
    }

    #[test]
    fn an_ipv6_prefix_rule_adds_up_per_prefix() {
        let text = "[[rules]]\nname = \"fleet-prefix\"\nscope = \"fleet\"\nkey = \"prefix\"\n\
                    threshold_rps = 100.0\n[fleet]\nreport_share = 0.5\n";
        let settings = config::parse(text, "t").unwrap();
        let mut d = Detector::new(&settings);
        let s = 1_000_000_000u64;
        // Two addresses of one /64 at 30 requests/s each: 60 here, over half of 100.
        for i in 0..60u64 {
            let t = s + i * s / 30;
            for src in ["2001:2:0:7::1", "2001:2:0:7::2"] {
                assert!(d.observe(&event(src.parse().unwrap(), t)).is_empty());
            }
        }
        let now = 3 * s;
        let report = d.fleet_report(now);
        let prefix: Target = "2001:2:0:7::/64".parse().unwrap();
        assert_eq!(report.len(), 1, "{report:?}");
        assert_eq!(report[0].target, prefix);
        let peers = PeerSums::from([(("fleet-prefix".into(), prefix), (50.0, 50))]);
        let decisions = d.observe_fleet(&peers, now);
        assert_eq!(decisions.len(), 1, "{decisions:?}");
        assert_eq!(decisions[0].target, prefix);
    }
}
