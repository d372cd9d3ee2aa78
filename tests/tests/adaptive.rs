//! Adaptive detection end to end: nginx in front of a backend of bounded capacity (one request
//! at a time, 2 ms each for the expensive path), the real daemon with `[adaptive]` on and a
//! short learning phase, 50 legitimate clients at 1–3 requests/s on mixed paths (IPv4 and
//! IPv6), then a botnet whose every member stays far under the per-source rules (15–25
//! requests/s each, 300 addresses) but together is ten times the backend's capacity; a flash
//! crowd of legitimate clients; a daemon restarted during the attack; and (`shapes`) a pulsing
//! flood and a slow ramp.

use std::{
    net::IpAddr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use floodgate_tests::{
    ChildGuard, TempPins, blocked_targets,
    botnet::{
        self, EXPENSIVE, FLOOD_SECS, Group, LEARNING_SECS, LEGIT_SECS, Probes, StateDir, all_addrs,
        bot_groups, covered, legit_groups, p99, probe, probe_addrs, recovery, v4, v6,
    },
    floodgate_json, floodgate_ok,
    net::{Daemon, Nginx, Testbed, test_config},
    wait_until,
};

#[path = "adaptive/shapes.rs"]
mod shapes;

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

/// The testbed with the backend and nginx in the server namespace.
struct Bed {
    tb: Testbed,
    _backend: ChildGuard,
    _nginx: Nginx,
    pins: TempPins,
    state: StateDir,
}

impl Bed {
    fn new() -> Self {
        let tb = Testbed::new();
        let (backend, nginx) = botnet::start_site(&tb, env!("CARGO_BIN_EXE_slow-backend"), "", "");
        Self {
            tb,
            _backend: backend,
            _nginx: nginx,
            pins: TempPins::new(),
            state: StateDir::new(),
        }
    }

    fn config(&self) -> String {
        test_config(&botnet::adaptive_section(&self.state.file()))
    }

    fn start_daemon(&self) -> Daemon {
        self.tb.start_daemon(&self.pins, &self.config())
    }

    /// The daemon's view of service `name` (`floodgate baseline --json`).
    fn service(&self, name: &str) -> serde_json::Value {
        botnet::service(&self.pins, name)
    }

    /// Waits until service "site" has learned its baseline.
    fn wait_learned(&self) {
        botnet::wait_learned(&self.pins);
    }

    /// Blocked targets, as networks.
    fn blocks(&self) -> Vec<(IpAddr, u8)> {
        botnet::blocked_networks(&self.pins)
    }
}

/// Runs every group with loadgen for `seconds` (see [`botnet::run_groups`]).
fn run_groups(tb: &Testbed, groups: &[Group], seconds: u32, stagger_ms: u32) {
    botnet::run_groups(tb, LOADGEN, groups, seconds, stagger_ms);
}

#[test]
fn a_botnet_under_the_per_source_rules_is_blocked_and_the_service_recovers() {
    let bed = Bed::new();
    let legit = legit_groups(1);
    let bots = bot_groups();
    let (legit_addrs, bot_addrs, probes_from) =
        (all_addrs(&legit), all_addrs(&bots), probe_addrs());
    assert!(bot_addrs.len() >= 300 && legit_addrs.len() == 50);
    for addrs in [&legit_addrs, &bot_addrs, &probes_from] {
        bed.tb.add_client_addrs(addrs);
    }
    let daemon = bed.start_daemon();
    let start = Instant::now();
    let (stop, probes) = (AtomicBool::new(false), Probes::default());
    let mut flood_at = 0.0;
    let mut all_blocked_after = None;
    std::thread::scope(|scope| {
        scope.spawn(|| run_groups(&bed.tb, &legit, LEGIT_SECS, 20));
        scope.spawn(|| probe(&bed.tb, &probes_from, start, &stop, &probes));
        bed.wait_learned();
        // Four seconds of normal traffic after learning: the idle latency.
        std::thread::sleep(Duration::from_secs(4));
        flood_at = start.elapsed().as_secs_f64();
        let flood = scope.spawn(|| run_groups(&bed.tb, &bots, FLOOD_SECS, 5));
        let blocked_enough = wait_until(Duration::from_secs(u64::from(FLOOD_SECS)), || {
            let blocks = bed.blocks();
            bot_addrs.iter().filter(|b| covered(&blocks, **b)).count() * 100 >= bot_addrs.len() * 95
        });
        if blocked_enough {
            all_blocked_after = Some(start.elapsed().as_secs_f64() - flood_at);
        }
        // The bots' loadgen ends early once their connections are reset; the probes go on
        // until the flood's planned end and a little beyond.
        flood.join().expect("flood");
        let planned_end = Duration::from_secs_f64(flood_at + f64::from(FLOOD_SECS) + 1.0);
        if let Some(left) = planned_end.checked_sub(start.elapsed()) {
            std::thread::sleep(left);
        }
        stop.store(true, Ordering::Relaxed);
    });
    let blocks = bed.blocks();
    let bots_blocked = bot_addrs.iter().filter(|b| covered(&blocks, **b)).count();
    let legit_blocked: Vec<_> = legit_addrs
        .iter()
        .chain(&probes_from)
        .filter(|l| covered(&blocks, **l))
        .collect();
    let probes = probes.into_inner().expect("probes");
    let mut idle: Vec<f64> = probes
        .iter()
        .filter(|(at, ok, _)| *ok && *at >= flood_at - 4.0 && *at < flood_at)
        .map(|p| p.2)
        .collect();
    assert!(!idle.is_empty(), "no idle probes");
    let idle_p99 = p99(&mut idle);
    let flood_end = flood_at + f64::from(FLOOD_SECS);
    let recovered = recovery(&probes, flood_at, flood_end, 2.0 * idle_p99);
    let log = daemon.process.log();
    let per_second: Vec<String> = (0..FLOOD_SECS + 2)
        .map(|i| {
            let at = flood_at + f64::from(i);
            let mut ms: Vec<f64> = probes
                .iter()
                .filter(|p| p.0 >= at && p.0 < at + 1.0)
                .map(|p| if p.1 { p.2 } else { f64::INFINITY })
                .collect();
            if ms.is_empty() {
                return format!("{i}s: -");
            }
            format!("{i}s: p99 {:.1} ms of {}", p99(&mut ms), ms.len())
        })
        .collect();
    eprintln!(
        "legitimate probes after the flood start: {}",
        per_second.join(", ")
    );
    eprintln!(
        "adaptive e2e: {bots_blocked}/{} bots blocked (95 % after {all_blocked_after:?} s), \
         {} legitimate blocked, idle p99 {idle_p99:.1} ms, recovered {recovered:?} s after the \
         flood start",
        bot_addrs.len(),
        legit_blocked.len()
    );
    assert!(
        log.contains("adaptive: service site under attack"),
        "attack logged:\n{log}"
    );
    assert!(
        legit_blocked.is_empty(),
        "legitimate clients blocked: {legit_blocked:?}\n{log}"
    );
    assert!(
        bots_blocked * 100 >= bot_addrs.len() * 95,
        "only {bots_blocked} of {} bots blocked\n{log}",
        bot_addrs.len()
    );
    assert!(
        recovered.is_some_and(|s| s <= 10.0),
        "legitimate p99 not back within 2 × idle ({idle_p99:.1} ms) within 10 s: {recovered:?}"
    );
    // `why` names the adaptive decision with its numbers.
    let why = floodgate_json(&bed.pins, &["why", &bot_addrs[0].to_string(), "--json"]);
    let decision = &why["detector"]["decision"];
    assert_eq!(decision["rule"], "adaptive", "{why}");
    assert!(
        decision["rate"].as_f64() > decision["threshold"].as_f64(),
        "{why}"
    );
    // Never under the floor (10), nor, for the sender of an attack fingerprint, under
    // fingerprint_factor (0.5) × the floor.
    let numbers = &why["detector"]["adaptive"];
    let floor = if numbers["fingerprint"]["attack"] == true {
        5.0
    } else {
        10.0
    };
    assert!(decision["threshold"].as_f64() >= Some(floor), "{why}");
    assert!(
        numbers["service"].is_string() && numbers["quantile"][1].as_f64() < Some(10.0),
        "why names the service and the baseline compared with: {why}"
    );
    let status = floodgate_json(&bed.pins, &["status", "--json"]);
    let services = status["daemon"]["adaptive"].as_array().expect("adaptive");
    assert!(
        services.iter().all(|s| s["attacks"].as_u64() >= Some(1)),
        "{status}"
    );
}

#[test]
fn a_flash_crowd_of_legitimate_clients_is_not_blocked() {
    let bed = Bed::new();
    let legit = legit_groups(1);
    let mut crowd: Vec<Group> = (2..=5).flat_map(legit_groups).collect();
    crowd.extend(legit_groups(1));
    let addrs = all_addrs(&crowd);
    assert_eq!(addrs.len(), 250, "five times the clients");
    bed.tb.add_client_addrs(&addrs);
    let mut daemon = bed.start_daemon();
    std::thread::scope(|scope| {
        let learning = scope.spawn(|| run_groups(&bed.tb, &legit, LEARNING_SECS as u32 + 10, 20));
        bed.wait_learned();
        learning.join().expect("learning clients");
    });
    // The crowd ramps in over 5 s (20 ms apart per group).
    run_groups(&bed.tb, &crowd, 15, 20);
    let log = daemon.process.log();
    let blocked = blocked_targets(&bed.pins);
    assert!(blocked.is_empty(), "blocked: {blocked:?}\n{log}");
    assert!(
        log.contains("adaptive: service site under attack"),
        "five times the baseline rate is an attack, blocked or not:\n{log}"
    );
    let text = floodgate_ok(&bed.pins, &["baseline"]);
    for line in [
        "service       site",
        "service       api (host any, path /api/",
        "per source  p50",
    ] {
        assert!(
            text.contains(line),
            "`floodgate baseline` lacks {line:?}:\n{text}"
        );
    }
    let status = floodgate_ok(&bed.pins, &["status"]);
    assert!(status.contains("service       site"), "{status}");
    daemon.stop();
}

#[test]
fn a_restart_during_the_attack_keeps_the_baseline() {
    let bed = Bed::new();
    let legit = legit_groups(1);
    let bots: Vec<Group> = bot_groups().into_iter().take(2).collect();
    let (legit_addrs, bot_addrs) = (all_addrs(&legit), all_addrs(&bots));
    bed.tb.add_client_addrs(&legit_addrs);
    bed.tb.add_client_addrs(&bot_addrs);
    let mut first = bed.start_daemon();
    let learned_rps = std::thread::scope(|scope| {
        scope.spawn(|| run_groups(&bed.tb, &legit, LEGIT_SECS, 20));
        bed.wait_learned();
        let learned = bed.service("site")["baseline_rps"]
            .as_f64()
            .expect("baseline");
        first.stop();
        assert!(bed.state.file().exists(), "saved at shutdown");
        // The flood starts while no daemon runs; a new one comes up in the middle of it.
        let flood = scope.spawn(|| run_groups(&bed.tb, &bots, FLOOD_SECS, 5));
        std::thread::sleep(Duration::from_secs(2));
        let second = bed.start_daemon();
        let blocked_enough = wait_until(Duration::from_secs(u64::from(FLOOD_SECS)), || {
            let blocks = bed.blocks();
            bot_addrs.iter().filter(|b| covered(&blocks, **b)).count() * 100 >= bot_addrs.len() * 95
        });
        let log = second.process.log();
        assert!(
            log.contains("restored the baselines of 2 service(s)"),
            "{log}"
        );
        assert!(
            blocked_enough,
            "the bots were not blocked after the restart:\n{log}"
        );
        let site = bed.service("site");
        let now = site["baseline_rps"].as_f64().expect("baseline");
        assert!(
            site["learned"] == true && now < 2.0 * learned,
            "the flood was learned as normal: {learned:.0} req/s before, {site}"
        );
        flood.join().expect("flood");
        learned
    });
    let blocks = bed.blocks();
    let legit_blocked: Vec<_> = legit_addrs
        .iter()
        .filter(|l| covered(&blocks, **l))
        .collect();
    assert!(legit_blocked.is_empty(), "{legit_blocked:?}");
    eprintln!("restart: baseline {learned_rps:.0} req/s kept across the restart");
}

#[test]
fn bots_under_the_floor_sharing_one_fingerprint_are_blocked_by_it() {
    let bed = Bed::new();
    let legit = legit_groups(1);
    let bot_addrs: Vec<IpAddr> = (4..=6).flat_map(|third| v4(third, 1..=100)).collect();
    let legit_addrs = all_addrs(&legit);
    bed.tb.add_client_addrs(&legit_addrs);
    bed.tb.add_client_addrs(&bot_addrs);
    let daemon = bed.start_daemon();
    let mut bots_blocked_after = None;
    let mut bot_rate = 0;
    std::thread::scope(|scope| {
        scope.spawn(|| run_groups(&bed.tb, &legit, LEGIT_SECS, 20));
        bed.wait_learned();
        // Each bot between the two thresholds: only its fingerprint can get it blocked.
        let site = bed.service("site");
        let threshold = site["threshold_rps"].as_f64().expect("threshold");
        let lower = site["fingerprint_threshold_rps"]
            .as_f64()
            .expect("fingerprint threshold");
        bot_rate = ((lower + threshold) / 2.0).round() as u32;
        assert!(
            lower + 1.0 < f64::from(bot_rate) && f64::from(bot_rate) + 1.0 < threshold,
            "no room between the thresholds: {site}"
        );
        let bots = vec![Group {
            addrs: bot_addrs.clone(),
            rate: bot_rate,
            path: EXPENSIVE,
        }];
        let start = Instant::now();
        let tb = &bed.tb;
        let flood = scope.spawn(move || run_groups(tb, &bots, FLOOD_SECS, 5));
        if wait_until(Duration::from_secs(u64::from(FLOOD_SECS)), || {
            let blocks = bed.blocks();
            bot_addrs.iter().filter(|b| covered(&blocks, **b)).count() * 100 >= bot_addrs.len() * 95
        }) {
            bots_blocked_after = Some(start.elapsed().as_secs_f64());
        }
        flood.join().expect("flood");
    });
    let blocks = bed.blocks();
    let bots_blocked = bot_addrs.iter().filter(|b| covered(&blocks, **b)).count();
    let legit_blocked: Vec<_> = legit_addrs
        .iter()
        .filter(|l| covered(&blocks, **l))
        .collect();
    let log = daemon.process.log();
    eprintln!(
        "fingerprint e2e: {bots_blocked}/{} bots at {bot_rate} req/s blocked (95 % after \
         {bots_blocked_after:?} s), {} legitimate blocked",
        bot_addrs.len(),
        legit_blocked.len()
    );
    assert!(legit_blocked.is_empty(), "{legit_blocked:?}\n{log}");
    assert!(
        bots_blocked * 100 >= bot_addrs.len() * 95,
        "only {bots_blocked} of {} bots blocked\n{log}",
        bot_addrs.len()
    );
    assert!(log.contains("attack fingerprint"), "logged:\n{log}");
    // `why` names the fingerprint and the baseline share it was compared with.
    let why = floodgate_json(&bed.pins, &["why", &bot_addrs[0].to_string(), "--json"]);
    let f = &why["detector"]["adaptive"]["fingerprint"];
    assert!(
        f["attack"] == true
            && f["label"]
                .as_str()
                .is_some_and(|l| l.starts_with("GET /api/expensive?ms"))
            && f["baseline_share"].as_f64() < Some(0.01)
            && f["share"].as_f64() > Some(0.5),
        "{why}"
    );
    let text = floodgate_ok(&bed.pins, &["why", &bot_addrs[0].to_string()]);
    assert!(text.contains("an attack fingerprint"), "{text}");
}

#[test]
fn ipv6_bots_rotating_through_one_64_get_the_64_blocked() {
    let bed = Bed::new();
    let legit = legit_groups(1);
    let legit_addrs = all_addrs(&legit);
    // Ten rounds of 24 fresh addresses of one /64, 2 s each: no address lives long.
    let rounds: Vec<Vec<IpAddr>> = (0..10u16)
        .map(|r| v6(0x60, r * 24 + 1..=r * 24 + 24))
        .collect();
    bed.tb.add_client_addrs(&legit_addrs);
    bed.tb.add_client_addrs(&rounds.concat());
    let daemon = bed.start_daemon();
    let net: IpAddr = "2001:2:0:60::".parse().expect("net");
    let mut aggregated_in_round = None;
    std::thread::scope(|scope| {
        scope.spawn(|| run_groups(&bed.tb, &legit, LEGIT_SECS, 20));
        bed.wait_learned();
        for (i, round) in rounds.iter().enumerate() {
            let group = [Group {
                addrs: round.clone(),
                rate: 20,
                path: EXPENSIVE,
            }];
            run_groups(&bed.tb, &group, 2, 5);
            if aggregated_in_round.is_none() && bed.blocks().contains(&(net, 64)) {
                aggregated_in_round = Some(i + 1);
            }
        }
    });
    let blocks = bed.blocks();
    let log = daemon.process.log();
    let legit_blocked: Vec<_> = legit_addrs
        .iter()
        .filter(|l| covered(&blocks, **l))
        .collect();
    eprintln!(
        "rotation: the /64 blocked after round {aggregated_in_round:?} of {} ({} addresses each)",
        rounds.len(),
        rounds[0].len()
    );
    assert!(
        aggregated_in_round.is_some_and(|r| r <= 5),
        "2001:2:0:60::/64 not blocked by the fifth round: {aggregated_in_round:?}\n{log}"
    );
    assert!(legit_blocked.is_empty(), "{legit_blocked:?}\n{log}");
    assert!(
        rounds
            .last()
            .expect("rounds")
            .iter()
            .all(|a| covered(&blocks, *a)),
        "the last round's fresh addresses are covered"
    );
}
