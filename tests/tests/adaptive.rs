//! Adaptive detection end to end: nginx in front of a backend of bounded capacity (one request
//! at a time, 2 ms each for the expensive path), the real daemon with `[adaptive]` on and a
//! short learning phase, 50 legitimate clients at 1–3 requests/s on mixed paths (IPv4 and
//! IPv6), then a botnet whose every member stays far under the per-source rules (15–25
//! requests/s each, 300 addresses) but together is ten times the backend's capacity; a flash
//! crowd of legitimate clients; a daemon restarted during the attack; and (`shapes`) a pulsing
//! flood and a slow ramp.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use floodgate_tests::{
    ChildGuard, TempPins, blocked_targets, floodgate_json, floodgate_ok,
    net::{Daemon, Nginx, SERVER_V4, SERVER_V6, Testbed, test_config, timed_get},
    unique, wait_until,
};

#[path = "adaptive/shapes.rs"]
mod shapes;

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");
/// The learning phase the test configuration asks for.
const LEARNING_SECS: u64 = 20;
/// How long the legitimate clients run in all (loadgen's bound is 60 s).
const LEGIT_SECS: u32 = 55;
/// How long the botnet floods.
const FLOOD_SECS: u32 = 15;
const EXPENSIVE: &str = "/api/expensive?ms=2";

/// A temporary directory for the state file, removed on drop.
struct StateDir(PathBuf);

impl StateDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("fg-adaptive-"));
        std::fs::create_dir_all(&dir).expect("state dir");
        Self(dir)
    }

    fn file(&self) -> PathBuf {
        self.0.join("baseline.json")
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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
        let backend = ChildGuard::spawn(
            &unique("backend"),
            tb.server
                .cmd(env!("CARGO_BIN_EXE_slow-backend"))
                .arg("127.0.0.1:8081")
                .env("SLOW_BACKEND_SERIAL", "1"),
        );
        let nginx = tb.start_nginx_full(
            "",
            "upstream backend { server 127.0.0.1:8081; keepalive 64; }",
            "location / { return 200 \"ok\\n\"; }\n\
             location /api/ { proxy_pass http://backend; proxy_http_version 1.1; \
               proxy_set_header Connection \"\"; }",
        );
        Self {
            tb,
            _backend: backend,
            _nginx: nginx,
            pins: TempPins::new(),
            state: StateDir::new(),
        }
    }

    fn config(&self) -> String {
        test_config(&format!(
            "[adaptive]\nenabled = true\nperiod = \"60s\"\nlearning = \"{LEARNING_SECS}s\"\n\
             calm = \"5s\"\nsave_interval = \"2s\"\nstate_file = \"{}\"\n\
             [[adaptive.services]]\nname = \"site\"\n\
             [[adaptive.services]]\nname = \"api\"\npath_prefix = \"/api/\"\ncapacity_rps = 400.0\n",
            self.state.file().display()
        ))
    }

    fn start_daemon(&self) -> Daemon {
        self.tb.start_daemon(&self.pins, &self.config())
    }

    /// The daemon's view of service `name` (`floodgate baseline --json`).
    fn service(&self, name: &str) -> serde_json::Value {
        let reply = floodgate_json(&self.pins, &["baseline", "--json"]);
        reply["services"]
            .as_array()
            .expect("services")
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no service {name}: {reply}"))
            .clone()
    }

    /// Waits until service "site" has learned its baseline.
    fn wait_learned(&self) {
        assert!(
            wait_until(Duration::from_secs(LEARNING_SECS * 3), || self
                .service("site")["learned"]
                == true),
            "the baseline was not learned: {}",
            self.service("site")
        );
    }

    /// Blocked targets, as networks.
    fn blocks(&self) -> Vec<(IpAddr, u8)> {
        blocked_targets(&self.pins)
            .iter()
            .map(|t| match t.split_once('/') {
                Some((ip, len)) => (ip.parse().expect("ip"), len.parse().expect("len")),
                None => {
                    let ip: IpAddr = t.parse().expect("ip");
                    (ip, if ip.is_ipv4() { 32 } else { 128 })
                }
            })
            .collect()
    }
}

fn covered(blocks: &[(IpAddr, u8)], ip: IpAddr) -> bool {
    blocks.iter().any(|(net, len)| match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
            u32::from(*n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(*len)).unwrap_or(0);
            u128::from(*n) & mask == u128::from(a) & mask
        }
        _ => false,
    })
}

/// A group of sources sending one path at one rate.
struct Group {
    addrs: Vec<IpAddr>,
    rate: u32,
    path: &'static str,
}

fn v4(third: u8, range: std::ops::RangeInclusive<u8>) -> Vec<IpAddr> {
    range
        .map(|i| format!("198.18.{third}.{i}").parse().expect("v4"))
        .collect()
}

fn v6(net: u16, range: std::ops::RangeInclusive<u16>) -> Vec<IpAddr> {
    range
        .map(|i| format!("2001:2:0:{net:x}::{i:x}").parse().expect("v6"))
        .collect()
}

/// 50 legitimate clients at 1–3 requests/s on mixed paths; `base` picks their /24 and /64 so
/// that a flash crowd can add other ones.
fn legit_groups(base: u8) -> Vec<Group> {
    let b = u16::from(base);
    vec![
        Group {
            addrs: v4(base, 1..=20),
            rate: 1,
            path: "/api/items?ms=1",
        },
        Group {
            addrs: v4(base, 21..=35),
            rate: 2,
            path: "/static/app.js",
        },
        Group {
            addrs: v4(base, 36..=40),
            rate: 3,
            path: "/",
        },
        Group {
            addrs: v6(b, 1..=10),
            rate: 2,
            path: "/api/items?ms=1",
        },
    ]
}

/// 300 bots at 15–25 requests/s each on the expensive path, 201 IPv4 and 99 IPv6.
fn bot_groups() -> Vec<Group> {
    let mut groups = Vec::new();
    for (i, rate) in [15u32, 20, 25].into_iter().enumerate() {
        let i = i as u8;
        groups.push(Group {
            addrs: v4(4 + i, 1..=67),
            rate,
            path: EXPENSIVE,
        });
        groups.push(Group {
            addrs: v6(0x40 + u16::from(i), 1..=33),
            rate,
            path: EXPENSIVE,
        });
    }
    groups
}

fn all_addrs(groups: &[Group]) -> Vec<IpAddr> {
    groups.iter().flat_map(|g| g.addrs.clone()).collect()
}

/// Runs every group with loadgen (open loop: on schedule whatever the answers) for `seconds`
/// on scoped threads; returns once all have finished.
fn run_groups(tb: &Testbed, groups: &[Group], seconds: u32, stagger_ms: u32) {
    std::thread::scope(|scope| {
        for g in groups {
            for family in [true, false] {
                let addrs: Vec<String> = g
                    .addrs
                    .iter()
                    .filter(|a| a.is_ipv4() == family)
                    .map(ToString::to_string)
                    .collect();
                if addrs.is_empty() {
                    continue;
                }
                let dst = if family {
                    SocketAddr::new(SERVER_V4.into(), 80)
                } else {
                    SocketAddr::new(SERVER_V6.into(), 80)
                };
                scope.spawn(move || {
                    let out = tb
                        .client
                        .cmd(LOADGEN)
                        .arg(dst.to_string())
                        .arg(g.rate.to_string())
                        .arg(seconds.to_string())
                        .arg("1000")
                        .args(&addrs)
                        .env("LOADGEN_OPEN", "1")
                        .env("LOADGEN_PATH", g.path)
                        .env("LOADGEN_STAGGER_MS", stagger_ms.to_string())
                        .output()
                        .expect("run loadgen");
                    assert!(
                        out.status.success(),
                        "loadgen: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                });
            }
        }
    });
}

/// Latency probes: (seconds since `start`, answered, ms).
type Probes = Mutex<Vec<(f64, bool, f64)>>;

/// Probes from `addrs` (each at 4 requests/s, a new connection each, under every threshold)
/// until `stop`.
fn probe(tb: &Testbed, addrs: &[IpAddr], start: Instant, stop: &AtomicBool, probes: &Probes) {
    std::thread::scope(|scope| {
        for src in addrs {
            scope.spawn(move || {
                tb.client.enter_current_thread();
                let dst = if src.is_ipv4() {
                    SocketAddr::new(SERVER_V4.into(), 80)
                } else {
                    SocketAddr::new(SERVER_V6.into(), 80)
                };
                let deadline = start + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let at = start.elapsed().as_secs_f64();
                    let r = timed_get(*src, dst, "/api/items?ms=1", Duration::from_secs(2));
                    probes
                        .lock()
                        .expect("probes")
                        .push((at, r.is_some(), r.unwrap_or(0.0)));
                    std::thread::sleep(Duration::from_millis(250));
                }
            });
        }
    });
}

fn p99(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() as f64 * 0.99).ceil() as usize).clamp(1, values.len()) - 1]
}

/// Seconds from `from` until the legitimate service is back: every probe from then until
/// `until` answered, and their p99 within `bound` ms. `None` if it never is.
fn recovery(probes: &[(f64, bool, f64)], from: f64, until: f64, bound: f64) -> Option<f64> {
    let mut t = from;
    while t + 2.0 <= until {
        let after: Vec<_> = probes
            .iter()
            .filter(|(at, _, _)| *at >= t && *at < until)
            .collect();
        let mut ms: Vec<f64> = after.iter().map(|p| p.2).collect();
        if !after.is_empty() && after.iter().all(|p| p.1) && p99(&mut ms) <= bound {
            return Some(t - from);
        }
        t += 0.5;
    }
    None
}

fn probe_addrs() -> Vec<IpAddr> {
    let mut addrs = v4(1, 201..=202);
    addrs.extend(v6(1, 0xc9..=0xca));
    addrs
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
    assert!(decision["threshold"].as_f64() >= Some(10.0), "{why}");
    let numbers = &why["detector"]["adaptive"];
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
