//! `cargo xtask bench survival`: flood survival of an application with bounded capacity. nginx
//! proxies to a backend that spends 2 ms of CPU per request under one lock (≤ 500 requests/s);
//! legitimate clients send 20 requests/s open loop (a new connection each, on schedule whatever
//! the previous ones do); 64 addresses flood for 10 s, with wrk (closed loop, 128 connections)
//! and with pipelined requests at 100/s each (open loop, as bots do: wrk alone only offers
//! what the server completes, about 8/s per address here). Side by side: no protection,
//! nginx `limit_req` per address (10 r/s, burst 10), fail2ban (a jail on nginx's access log:
//! 31 requests within findtime 1 s, which spans two whole log seconds; nftables drop), CrowdSec (a leaky bucket of 15 leaking 15/s on the
//! access log, its nftables firewall bouncer polling every second), and Floodgate (a
//! per-source rule at 15 requests/s). Mitigation: time from the flood start until every
//! flooding address is blocked (Floodgate's block map, the peers' nftables sets, polled every
//! 100 ms). 5 runs of each, medians; plot of run 1.
//!
//! The HTTPS scenario (`survival-https`): the same backend behind nginx terminating TLS with
//! HTTP/2; 20 legitimate addresses at 1 request/s each (20/s in all, HTTP/2, a new TLS
//! connection each, curl); the 64 addresses flood with h2load (HTTP/2 over TLS, 128
//! connections, 10 streams each). Side by side: none, nginx `limit_req` (as above) and
//! Floodgate reading nginx's request feed (the feed file of `proxy-snippet nginx`) with the
//! same 15 requests/s rule plus a backend-time rule (a source costing the backend more than 2
//! seconds per second over 2 s, at least 8 requests): the proxy logs a request when it completes, and a saturated
//! backend completes only its share for each source, so the time each source costs the
//! backend is what tells a flooder from a client there.
//!
//! The botnet scenario (`survival-botnet`, [`botnet`]): 300 bots each under every per-source
//! rule, against none, `limit_req`, Floodgate's static rules and Floodgate with `[adaptive]`.
//!
//! `bench-survival [plaintext|https|botnet]` runs one scenario; without an argument, all three.

mod botnet;

use std::{
    net::{IpAddr, SocketAddr},
    sync::Mutex,
    time::{Duration, Instant},
};

use floodgate_bench::{
    peers::{crowdsec::CrowdSec, fail2ban::Fail2ban},
    plot::{self, Probe},
    results::{median, percentile, write_results},
};
use floodgate_tests::{
    ChildGuard, TempPins,
    edge::{Cert, feed_socket, nginx_file_snippet},
    net::{FloodPlan, SERVER_V4, Testbed, test_config, timed_get},
    unique, wait_until,
};
use serde_json::json;

const RUNS: usize = 5;
const IDLE: Duration = Duration::from_secs(3);
const FLOOD: Duration = Duration::from_secs(10);
const AFTER: Duration = Duration::from_secs(3);
const LEGIT_INTERVAL: Duration = Duration::from_millis(50);
const LEGIT_TIMEOUT: Duration = Duration::from_secs(2);
/// Requests per second each flooding address offers, open loop.
const FLOOD_RATE: u32 = 100;
const MODES: [&str; 5] = ["none", "limit_req", "fail2ban", "crowdsec", "floodgate"];
/// The HTTPS scenario's modes (the log readers see no more there than in plaintext).
const HTTPS_MODES: [&str; 3] = ["none", "limit_req", "floodgate"];
/// Legitimate addresses of the HTTPS scenario, each sending one request per second.
const HTTPS_LEGIT: u8 = 20;

/// What the flood and the legitimate clients speak.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// HTTP/1.1 on port 80: wrk plus pipelined requests, seen by XDP.
    Plaintext,
    /// HTTPS with HTTP/2 on port 443: h2load, seen only by the proxy.
    Https,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Https => "https",
        }
    }

    fn modes(self) -> &'static [&'static str] {
        match self {
            Self::Plaintext => &MODES,
            Self::Https => &HTTPS_MODES,
        }
    }

    /// The results' name under bench-results/.
    fn results(self) -> &'static str {
        match self {
            Self::Plaintext => "survival",
            Self::Https => "survival-https",
        }
    }
}

/// What a run of one mode needs besides its name.
struct Bed<'a> {
    tb: &'a Testbed,
    plan: &'a FloodPlan,
    shim: &'a std::path::Path,
    stats: &'a std::path::Path,
    backend: &'a ChildGuard,
    cert: &'a Cert,
    /// The legitimate clients' addresses, in turn.
    legit: Vec<IpAddr>,
}
/// A client address that only the peers' set-up check uses.
const PROBE: &str = "198.18.3.1";
/// Floodgate's rule threshold (requests/s per source); the peers get the same.
const THRESHOLD: u32 = 15;

struct RunResult {
    success: f64,
    p50: f64,
    p99: f64,
    idle_p50: f64,
    recovery_s: Option<f64>,
    flood_served: u64,
    cpu_s: f64,
    /// CPU seconds of the mitigator itself (daemon, fail2ban, CrowdSec agent + bouncer).
    mitigator_cpu_s: f64,
    /// Seconds from the flood start until every flooding address was blocked.
    mitigation_s: Option<f64>,
    /// Flooding addresses blocked at the end of the flood.
    blocked: usize,
    probes: Vec<Probe>,
    /// (seconds since start, backend requests completed per second)
    served_series: Vec<(f64, f64)>,
}

/// The backend's completed-request count, `None` while its stats file is being rewritten.
fn backend_served(stats: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(stats)
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

fn children_of(pid: u32) -> Vec<u32> {
    let out = std::process::Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn run_mode(bed: &Bed, scenario: Scenario, mode: &str) -> RunResult {
    let Bed {
        tb,
        plan,
        shim,
        stats,
        backend,
        ..
    } = *bed;
    let access_log = std::env::temp_dir()
        .join(unique("fg-access-"))
        .with_extension("log");
    let log_directive = format!("access_log {} combined;", access_log.display());
    let (feed_dir, feed) = feed_socket();
    let feed = feed.with_file_name("requests.log");
    let (http_extra, limit) = match mode {
        "limit_req" => (
            "limit_req_zone $binary_remote_addr zone=perip:10m rate=10r/s;".to_owned(),
            "limit_req zone=perip burst=10 nodelay; limit_req_status 429;",
        ),
        "fail2ban" | "crowdsec" => (log_directive.clone(), ""),
        "floodgate" if scenario == Scenario::Https => (nginx_file_snippet(&feed), ""),
        _ => (String::new(), ""),
    };
    let upstream = format!("{limit} proxy_pass http://127.0.0.1:8081;");
    let nginx = match scenario {
        Scenario::Plaintext => tb.start_nginx_with(&http_extra, &upstream),
        Scenario::Https => tb.start_nginx_full(
            "",
            &format!(
                "{http_extra}\nssl_certificate {}; ssl_certificate_key {};\n\
                 server {{ listen {SERVER_V4}:443 ssl http2 backlog=4096;\n\
                   location /api/items {{ {upstream} }} }}",
                bed.cert.cert.display(),
                bed.cert.key.display()
            ),
            "location / { return 200 \"ok\\n\"; }",
        ),
    };
    let pins = TempPins::new();
    let daemon = (mode == "floodgate").then(|| {
        let config = match scenario {
            Scenario::Plaintext => format!(
                "[aggregation]\nmin_addresses = 0\n[[rules]]\nname = \"api-per-source\"\nthreshold_rps = {THRESHOLD}.0\nwindow = \"1s\"\nmin_samples = 8\n"
            ),
            Scenario::Https => format!(
                "[filter]\nports = [80]\ntls_ports = [443]\n[aggregation]\nmin_addresses = 0\n\
                 [proxy]\nfile = \"{}\"\n\
                 [[rules]]\nname = \"api-per-source\"\nsensor = \"proxy\"\nthreshold_rps = {THRESHOLD}.0\nwindow = \"1s\"\nmin_samples = 8\n\
                 [[rules]]\nname = \"backend-time\"\nsensor = \"proxy\"\nweight = \"upstream_time\"\nthreshold_rps = 2.0\nwindow = \"2s\"\nmin_samples = 8\n",
                feed.display()
            ),
        };
        tb.start_daemon(&pins, &test_config(&config))
    });
    // fail2ban bans at `maxretry` matches within `findtime`. nginx's log times are whole
    // seconds and fail2ban keeps the matches of the seconds ≥ now − findtime, so findtime = 1
    // spans two log seconds: more than twice the threshold there is "more than the threshold
    // per second" (16 would ban a legitimate client at 10 requests/s).
    let fail2ban = (mode == "fail2ban")
        .then(|| Fail2ban::start(&tb.server, &access_log, 2 * THRESHOLD + 1, 1));
    let crowdsec =
        (mode == "crowdsec").then(|| CrowdSec::start(&tb.server, &access_log, THRESHOLD));
    let mitigator_pids: Vec<u32> = daemon
        .iter()
        .map(|d| d.process.child.id())
        .chain(fail2ban.iter().map(|f| f.process.child.id()))
        .chain(
            crowdsec
                .iter()
                .flat_map(|c| [c.agent.child.id(), c.bouncer.child.id()]),
        )
        .collect();
    let server_pids: Vec<u32> = std::iter::once(nginx.process.child.id())
        .chain(children_of(nginx.process.child.id()))
        .chain([backend.child.id()])
        .collect();
    let blocked_series: Mutex<Vec<(f64, usize)>> = Mutex::new(Vec::new());
    let probes: Mutex<Vec<Probe>> = Mutex::new(Vec::new());
    let start = Instant::now();
    let mut cpu = 0.0;
    let mut mitigator_cpu = 0.0;
    let mut flood_served = 0u64;
    let served_series: Mutex<Vec<(f64, f64)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            let (mut last, mut last_t) = (backend_served(stats).unwrap_or(0), 0.0);
            while start.elapsed() < IDLE + FLOOD + AFTER {
                std::thread::sleep(Duration::from_millis(250));
                let Some(now) = backend_served(stats) else {
                    continue;
                };
                let t = start.elapsed().as_secs_f64();
                served_series
                    .lock()
                    .unwrap()
                    .push((t, now.saturating_sub(last) as f64 / (t - last_t)));
                (last, last_t) = (now, t);
            }
        });
        // Flooders blocked, every 100 ms from the flood start to its end.
        s.spawn(|| {
            while start.elapsed() < IDLE {
                std::thread::sleep(Duration::from_millis(20));
            }
            while start.elapsed() < IDLE + FLOOD {
                let blocked = match (&daemon, &fail2ban, &crowdsec) {
                    (Some(_), ..) => floodgate_tests::blocked_targets(&pins)
                        .iter()
                        .filter(|t| t.starts_with("198.18.2."))
                        .count(),
                    (_, Some(f), _) => f.banned(),
                    (.., Some(c)) => c.banned(),
                    _ => 0,
                };
                let t = (start.elapsed() - IDLE).as_secs_f64();
                blocked_series.lock().unwrap().push((t, blocked));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        // Open loop: a request leaves every 50 ms on its own thread.
        s.spawn(|| {
            let mut n = 0u32;
            while start.elapsed() < IDLE + FLOOD + AFTER {
                let due = start + LEGIT_INTERVAL * n;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let src = bed.legit[n as usize % bed.legit.len()];
                let probes = &probes;
                s.spawn(move || {
                    let at = start.elapsed().as_secs_f64();
                    let r = legit_request(tb, scenario, src);
                    probes
                        .lock()
                        .unwrap()
                        .push((at, r.is_some(), r.unwrap_or(0.0)));
                });
                n += 1;
            }
        });
        std::thread::sleep(IDLE);
        let cpu_before = floodgate_bench::cpu_seconds(&server_pids);
        let mitigator_before = floodgate_bench::cpu_seconds(&mitigator_pids);
        flood_served = match scenario {
            Scenario::Plaintext => plaintext_flood(tb, plan, shim),
            Scenario::Https => {
                let mut h2load = tb.start_h2load(
                    shim,
                    &plan.flood4,
                    &format!("https://{SERVER_V4}/api/items"),
                    FLOOD,
                    128,
                    &[],
                );
                h2load
                    .wait_exit(FLOOD + Duration::from_secs(15))
                    .expect("h2load is bounded");
                h2load_2xx(&h2load.log())
            }
        };
        cpu = floodgate_bench::cpu_seconds(&server_pids) - cpu_before;
        mitigator_cpu = floodgate_bench::cpu_seconds(&mitigator_pids) - mitigator_before;
    });
    let blocked_series = blocked_series.into_inner().unwrap();
    let flooders = plan.flood4.len();
    let mitigation_s = blocked_series
        .iter()
        .find(|(_, n)| *n >= flooders)
        .map(|(t, _)| *t);
    let blocked = blocked_series.last().map_or(0, |(_, n)| *n);
    // A peer that blocked no flooder may be slow or may never see the flood (it reads what
    // nginx logged, and the saturated backend completes only ~8 requests/s per address), or
    // its setup may be broken. Tell them apart: a burst from a fresh address while the
    // backend is idle again must get that address banned within 30 s.
    let peer_ban = |banned: &dyn Fn() -> usize, log: &dyn Fn() -> String, name: &str| {
        let before = banned();
        tb.loadgen(
            floodgate_bench::tool("loadgen").to_str().unwrap(),
            &[PROBE.parse().unwrap()],
            100,
            1,
        );
        assert!(
            wait_until(Duration::from_secs(30), || banned() > before),
            "{name} did not ban a source sending 100 requests/s: its setup does not mitigate:\n{}",
            log()
        );
    };
    if blocked == 0 {
        if let Some(f) = &fail2ban {
            peer_ban(&|| f.banned(), &|| f.log(), "fail2ban");
        }
        if let Some(c) = &crowdsec {
            peer_ban(&|| c.banned(), &|| c.log(), "CrowdSec");
        }
    }
    drop((fail2ban, crowdsec, daemon, nginx));
    let _ = std::fs::remove_file(&access_log);
    let _ = std::fs::remove_dir_all(&feed_dir);
    let probes = probes.into_inner().unwrap();
    let in_flood = |p: &&Probe| p.0 >= IDLE.as_secs_f64() && p.0 < (IDLE + FLOOD).as_secs_f64();
    let mut idle: Vec<f64> = probes
        .iter()
        .filter(|p| p.0 < IDLE.as_secs_f64() && p.1)
        .map(|p| p.2)
        .collect();
    let idle_p50 = if idle.is_empty() {
        f64::NAN
    } else {
        median(&mut idle)
    };
    let flood: Vec<&Probe> = probes.iter().filter(in_flood).collect();
    let mut lat: Vec<f64> = flood
        .iter()
        .map(|p| if p.1 { p.2 } else { 2000.0 })
        .collect();
    let success = flood.iter().filter(|p| p.1).count() as f64 / flood.len().max(1) as f64;
    // Recovery: from the flood start, the first moment after which every legitimate request
    // of the flood window succeeded under 2× the idle median.
    let last_bad = flood
        .iter()
        .filter(|p| !p.1 || p.2 > 2.0 * idle_p50)
        .map(|p| p.0)
        .fold(None, |acc: Option<f64>, t| {
            Some(acc.map_or(t, |a| a.max(t)))
        });
    let recovery_s = match last_bad {
        None => Some(0.0),
        Some(t) if t < (IDLE + FLOOD).as_secs_f64() - 1.0 => Some(t - IDLE.as_secs_f64()),
        Some(_) => None,
    };
    RunResult {
        success,
        p50: percentile(&mut lat, 50.0),
        p99: percentile(&mut lat, 99.0),
        idle_p50,
        recovery_s,
        flood_served,
        cpu_s: cpu,
        mitigator_cpu_s: mitigator_cpu,
        mitigation_s,
        blocked,
        probes,
        served_series: served_series.into_inner().unwrap(),
    }
}

/// One legitimate request on a new connection from `src`: its latency in ms if it was
/// answered 200 within the timeout.
fn legit_request(tb: &Testbed, scenario: Scenario, src: IpAddr) -> Option<f64> {
    match scenario {
        Scenario::Plaintext => {
            tb.client.enter_current_thread();
            timed_get(
                src,
                SocketAddr::new(SERVER_V4.into(), 80),
                "/api/items",
                LEGIT_TIMEOUT,
            )
        }
        Scenario::Https => {
            let out = tb
                .client
                .cmd("curl")
                .args(["-sk", "--http2", "-o", "/dev/null", "-w"])
                .arg("%{http_code} %{time_total}")
                .arg("--max-time")
                .arg(LEGIT_TIMEOUT.as_secs().to_string())
                .arg("--interface")
                .arg(src.to_string())
                .arg(format!("https://{SERVER_V4}/api/items"))
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut words = text.split_whitespace();
            if words.next() != Some("200") {
                return None;
            }
            words.next()?.parse::<f64>().ok().map(|s| s * 1000.0)
        }
    }
}

/// The plaintext flood: wrk (closed loop) alongside pipelined requests at [`FLOOD_RATE`] per
/// address (open loop: wrk alone only offers what the server completes). Returns the flood
/// requests answered 2xx.
fn plaintext_flood(tb: &Testbed, plan: &FloodPlan, shim: &std::path::Path) -> u64 {
    let mut wrk = tb.start_wrk(
        shim,
        &plan.flood4,
        &format!("http://{SERVER_V4}/api/items"),
        FLOOD,
        128,
    );
    let mut args = vec![
        format!("{SERVER_V4}:80"),
        FLOOD_RATE.to_string(),
        FLOOD.as_secs().to_string(),
        "1000000".into(),
    ];
    args.extend(plan.flood4.iter().map(ToString::to_string));
    let open = tb
        .client
        .cmd(floodgate_bench::tool("loadgen").to_str().unwrap())
        .args(&args)
        .env("LOADGEN_OPEN", "1")
        .env("LOADGEN_STAGGER_MS", "0")
        .output()
        .expect("loadgen");
    let open_served: u64 = String::from_utf8_lossy(&open.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["answered"].as_u64())
        .sum();
    wrk.wait_exit(FLOOD + Duration::from_secs(10))
        .expect("wrk is bounded");
    let wrk_log = wrk.log();
    let requests = wrk_log
        .lines()
        .find_map(|l| {
            l.trim()
                .split(" requests in")
                .next()
                .filter(|_| l.contains(" requests in"))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    let non2xx = wrk_log
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Non-2xx or 3xx responses:")
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    requests.saturating_sub(non2xx) + open_served
}

/// The 2xx answers in h2load's report ("status codes: N 2xx, …").
fn h2load_2xx(log: &str) -> u64 {
    log.lines()
        .find_map(|l| l.trim().strip_prefix("status codes:"))
        .and_then(|codes| codes.split(',').next())
        .and_then(|first| first.trim().strip_suffix(" 2xx"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    floodgate_tests::require_root();
    let (scenarios, with_botnet) = match std::env::args().nth(1).as_deref() {
        None => (vec![Scenario::Plaintext, Scenario::Https], true),
        Some("plaintext") => (vec![Scenario::Plaintext], false),
        Some("https") => (vec![Scenario::Https], false),
        Some("botnet") => (Vec::new(), true),
        Some(other) => {
            eprintln!("bench-survival: unknown scenario {other:?}: plaintext, https or botnet");
            std::process::exit(2);
        }
    };
    if !scenarios.is_empty() {
        flood_scenarios(&scenarios);
    }
    if with_botnet {
        botnet::run();
    }
}

/// The plaintext and HTTPS scenarios, on one testbed.
fn flood_scenarios(scenarios: &[Scenario]) {
    let tb = Testbed::new();
    let plan = FloodPlan::on(&tb, 64, 0);
    tb.add_client_addrs(&[PROBE.parse().unwrap()]);
    let https_legit: Vec<IpAddr> = (1..=HTTPS_LEGIT)
        .map(|i| IpAddr::from([198, 18, 5, i]))
        .collect();
    tb.add_client_addrs(&https_legit);
    let backend_bin = floodgate_bench::tool("backend");
    let stats = std::env::temp_dir().join(unique("fg-backend-stats-"));
    let backend = ChildGuard::spawn(
        &unique("backend"),
        tb.server
            .cmd(backend_bin.to_str().unwrap())
            .args(["127.0.0.1:8081", "2000"])
            .arg(&stats),
    );
    std::thread::sleep(Duration::from_millis(300));
    let shim = Testbed::build_shim();
    let cert = Cert::new();
    for &scenario in scenarios {
        let bed = Bed {
            tb: &tb,
            plan: &plan,
            shim: &shim,
            stats: &stats,
            backend: &backend,
            cert: &cert,
            legit: match scenario {
                Scenario::Plaintext => plan.legit[..2].to_vec(),
                Scenario::Https => https_legit.clone(),
            },
        };
        let mut all: Vec<(&str, Vec<RunResult>)> =
            scenario.modes().iter().map(|m| (*m, Vec::new())).collect();
        for run in 0..RUNS {
            for (mode, results) in &mut all {
                eprintln!("{} run {}/{RUNS}: {mode}", scenario.name(), run + 1);
                results.push(run_mode(&bed, scenario, mode));
            }
        }
        report(scenario, &bed, &all);
    }
    let _ = std::fs::remove_file(&shim);
    let _ = std::fs::remove_file(&stats);
}

/// Medians per mode to bench-results/ (text and JSON) and the plot of run 1.
fn report(scenario: Scenario, bed: &Bed, all: &[(&str, Vec<RunResult>)]) {
    let plan = bed.plan;
    let mut text = format!(
        "{:<10} {:>9} {:>10} {:>10} {:>9} {:>11} {:>12} {:>8} {:>12} {:>8} {:>10}\n",
        "mode",
        "success",
        "p50 ms",
        "p99 ms",
        "idle ms",
        "recovery s",
        "flood 2xx",
        "CPU s",
        "mitigated s",
        "blocked",
        "mitig CPU"
    );
    let mut rows = Vec::new();
    for (mode, results) in all {
        let med =
            |f: &dyn Fn(&RunResult) -> f64| median(&mut results.iter().map(f).collect::<Vec<_>>());
        let recovered: Vec<f64> = results.iter().filter_map(|r| r.recovery_s).collect();
        let recovery = if recovered.len() * 2 > results.len() {
            Some(median(&mut recovered.clone()))
        } else {
            None
        };
        let success = med(&|r| r.success);
        let (p50, p99, idle) = (med(&|r| r.p50), med(&|r| r.p99), med(&|r| r.idle_p50));
        let served = med(&|r| r.flood_served as f64);
        let cpu = med(&|r| r.cpu_s);
        let mitigator_cpu = med(&|r| r.mitigator_cpu_s);
        let blocked = med(&|r| r.blocked as f64);
        let mitigated: Vec<f64> = results.iter().filter_map(|r| r.mitigation_s).collect();
        let mitigation = if mitigated.len() * 2 > results.len() {
            Some(median(&mut mitigated.clone()))
        } else {
            None
        };
        let blocks = matches!(*mode, "fail2ban" | "crowdsec" | "floodgate");
        text.push_str(&format!(
            "{mode:<10} {:>8.2}% {p50:>10.1} {p99:>10.1} {idle:>9.1} {:>11} {served:>12.0} {cpu:>8.1} {:>12} {blocked:>8.0} {mitigator_cpu:>10.2}\n",
            success * 100.0,
            recovery.map_or("never".to_owned(), |r| format!("{r:.2}")),
            match (blocks, mitigation) {
                (false, _) => "n/a".to_owned(),
                (true, None) => "never".to_owned(),
                (true, Some(m)) => format!("{m:.2}"),
            }
        ));
        rows.push(json!({
            "mode": mode, "legit_success": success, "p50_ms": p50, "p99_ms": p99, "idle_p50_ms": idle,
            "recovery_s": recovery, "flood_served": served, "server_cpu_s": cpu,
            "blocks": blocks, "mitigation_s": mitigation, "flooders_blocked": blocked, "mitigator_cpu_s": mitigator_cpu,
            "runs": results.iter().map(|r| json!({ "success": r.success, "p50_ms": r.p50, "p99_ms": r.p99, "recovery_s": r.recovery_s, "flood_served": r.flood_served, "cpu_s": r.cpu_s, "mitigation_s": r.mitigation_s, "flooders_blocked": r.blocked, "mitigator_cpu_s": r.mitigator_cpu_s })).collect::<Vec<_>>(),
        }));
    }
    text.push_str(&match scenario {
        Scenario::Plaintext => format!(
            "backend 2 ms CPU per request (≤ 500/s); legitimate 20 req/s open loop from 2 addresses, new connection each, 2 s timeout; \
             flood from {} addresses for {}s: wrk (128 connections) plus {FLOOD_RATE} pipelined requests/s per address; ",
            plan.flood4.len(),
            FLOOD.as_secs()
        ),
        Scenario::Https => format!(
            "backend 2 ms CPU per request (≤ 500/s) behind nginx with TLS and HTTP/2; legitimate 20 req/s open loop from {} addresses (1/s each), \
             curl over HTTP/2, new TLS connection each, 2 s timeout; flood from {} addresses for {}s: h2load over HTTPS/HTTP/2 \
             (128 connections, 10 streams each); Floodgate reads nginx's feed file: {THRESHOLD} requests/s per source, and 2 backend-seconds/s over 2 s (at least 8 requests); ",
            bed.legit.len(),
            plan.flood4.len(),
            FLOOD.as_secs()
        ),
    });
    text.push_str(&format!(
        "{RUNS} runs, medians; latency percentiles count a failure as 2000 ms; \
         recovery = time from flood start until every later legitimate request succeeds under 2x the idle median; \
         mitigated = time from flood start until all flooders are blocked (polled every 100 ms); mitig CPU = the mitigator's own processes\n"
    ));
    plot(scenario.results(), all);
    write_results(scenario.results(), &text, &json!({ "rows": rows }));
}

fn plot(name: &str, all: &[(&str, Vec<RunResult>)]) {
    let path = plot::png(name);
    let root = plot::canvas(&path, (1600, 300 * all.len() as u32));
    let panels = root.split_evenly((all.len(), 2));
    let t_max = (IDLE + FLOOD + AFTER).as_secs_f64();
    let window = (IDLE.as_secs_f64(), (IDLE + FLOOD).as_secs_f64());
    for ((mode, results), pair) in all.iter().zip(panels.chunks(2)) {
        plot::latency(
            &pair[0],
            &format!("{mode}: legitimate latency (ms, log), failures in red"),
            t_max,
            window,
            plot::Scale::Log,
            &results[0].probes,
        );
        plot::lines(
            &pair[1],
            &format!("{mode}: requests completed by the backend per second"),
            t_max,
            window,
            "",
            &[plot::Line {
                label: "completed",
                color: plot::RED,
                points: &results[0].served_series,
            }],
        );
    }
    root.present().expect("write the survival plot");
}
