//! The botnet scenario (`survival-botnet`), the end-to-end test `tests/adaptive.rs` as a
//! benchmark: nginx in front of a backend of bounded capacity (one request at a time, 2 ms
//! each for the expensive path: ≤ 500 requests/s); 50 legitimate clients at 1–3 requests/s on
//! mixed paths (IPv4 and IPv6) for the whole run; a legitimate warm-up of
//! [`LEARNING_SECS`] + [`MARGIN_SECS`] (the adaptive daemon's learning phase, run in every mode
//! so that all see the same timeline) and [`IDLE_SECS`] of idle latency; then 300 bots (201
//! IPv4, 99 IPv6) at 15–25 requests/s each on the expensive path for [`FLOOD_SECS`]: each far
//! under any per-source rule that leaves heavy real users alone, together ten times the
//! backend. Latency probes from four more legitimate addresses (4 requests/s each, a new
//! connection each) throughout.
//!
//! Modes: no protection; nginx `limit_req` per address (10 r/s, burst 10, on `/api/`, as in
//! the other scenarios); Floodgate with static rules only: the kernel per-source rule at
//! [`STATIC_RPS`] requests/s (over 1 s, at least 8 samples), the threshold an operator who
//! must leave heavy real users alone would set, under the default 100 and over every bot;
//! prefix aggregation at its default; and Floodgate with the same rule plus `[adaptive]`
//! (services "site" and "api" with capacity 400 requests/s as in the test, fingerprints at
//! their defaults). [`RUNS`] runs of each, medians; the plot shows run 1.
//! `BENCH_BOTNET_RUNS=N` and `BENCH_BOTNET_MODES=mode,…` narrow it for a quick look.

use std::{
    net::IpAddr,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use floodgate_bench::{
    plot::{self, Probe},
    results::{median, percentile, write_results},
};
use floodgate_tests::{
    TempPins,
    botnet::{
        self, FLOOD_SECS, LEARNING_SECS, LEGIT_SECS, Probes, StateDir, all_addrs, bot_groups,
        covered, legit_groups, probe, probe_addrs, recovery,
    },
    net::{Testbed, test_config},
};
use serde_json::json;

/// Runs of each mode (`BENCH_BOTNET_RUNS` overrides, e.g. 1 for a quick look).
const RUNS: usize = 3;
const MODES: [&str; 4] = [
    "none",
    "limit_req",
    "floodgate-static",
    "floodgate-adaptive",
];
/// The static per-source rule (requests/s): a real user on a busy page can reach it, no bot
/// (15–25 requests/s) does.
const STATIC_RPS: u32 = 30;
/// Seconds of warm-up after the learning phase, for the daemon's first decision tick.
const MARGIN_SECS: u64 = 3;
/// Seconds of normal traffic before the flood: the idle latency.
const IDLE_SECS: f64 = 4.0;
/// Seconds after the flood's planned end that are still probed and plotted.
const AFTER_SECS: f64 = 3.0;
/// How often the block list is read during the flood.
const WATCH: Duration = Duration::from_millis(250);
/// Seconds into the flood from which `p99_late` is taken.
const LATE_SECS: f64 = 5.0;
/// A failed probe's latency in the percentiles (the probes' timeout).
const FAILED_MS: f64 = 2000.0;

/// One run of one mode.
struct BotRun {
    /// p99 of the answered probes in the [`IDLE_SECS`] before the flood.
    idle_p99: f64,
    /// From the flood start until every later probe of the flood answered, with their p99
    /// within 2 × idle.
    recovery_s: Option<f64>,
    /// Share of the probes during the flood that were answered.
    success: f64,
    /// p99 of the probes during the flood, a failure as [`FAILED_MS`].
    p99: f64,
    /// The same from [`LATE_SECS`] after the flood start to its end.
    p99_late: f64,
    /// Bots covered by a block (address or prefix) at the end; `None` without Floodgate.
    bots_blocked: Option<usize>,
    /// From the flood start until 95 % of the bots were covered.
    blocked_95_s: Option<f64>,
    /// Legitimate clients and probe sources covered by a block at the end.
    legit_blocked: Option<usize>,
    /// Probes, seconds counted from [`IDLE_SECS`] before the flood.
    probes: Vec<Probe>,
    /// Bots covered over time, same clock.
    bots_series: Vec<(f64, f64)>,
}

/// The whole scenario: every mode [`RUNS`] times, then the results.
pub(crate) fn run() {
    let started = Instant::now();
    let tb = Testbed::new();
    let legit = all_addrs(&legit_groups(1));
    let bots = all_addrs(&bot_groups());
    for addrs in [&legit, &bots, &probe_addrs()] {
        tb.add_client_addrs(addrs);
    }
    let runs = std::env::var("BENCH_BOTNET_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(RUNS);
    let only = std::env::var("BENCH_BOTNET_MODES").unwrap_or_default();
    let mut all: Vec<(&str, Vec<BotRun>)> = MODES
        .iter()
        .filter(|m| only.is_empty() || only.split(',').any(|o| o == **m))
        .map(|m| (*m, Vec::new()))
        .collect();
    for run in 0..runs {
        for (mode, results) in &mut all {
            eprintln!("botnet run {}/{runs}: {mode}", run + 1);
            let r = run_mode(&tb, mode);
            eprintln!(
                "  recovery {:?} s, success {:.1} %, p99 {:.1} ms (idle {:.1}), bots blocked {:?} (95 % after {:?} s), legitimate blocked {:?}",
                r.recovery_s,
                r.success * 100.0,
                r.p99,
                r.idle_p99,
                r.bots_blocked,
                r.blocked_95_s,
                r.legit_blocked
            );
            results.push(r);
        }
    }
    report(
        &all,
        bots.len(),
        legit.len() + probe_addrs().len(),
        started.elapsed(),
    );
}

fn run_mode(tb: &Testbed, mode: &str) -> BotRun {
    let loadgen = floodgate_bench::tool("loadgen");
    let loadgen = loadgen.to_str().expect("utf-8 path");
    let slow_backend = floodgate_bench::tool("slow-backend");
    let (http_extra, api_extra) = if mode == "limit_req" {
        (
            "limit_req_zone $binary_remote_addr zone=perip:10m rate=10r/s;",
            "limit_req zone=perip burst=10 nodelay; limit_req_status 429;",
        )
    } else {
        ("", "")
    };
    let site = botnet::start_site(
        tb,
        slow_backend.to_str().expect("utf-8 path"),
        http_extra,
        api_extra,
    );
    let (pins, state) = (TempPins::new(), StateDir::new());
    let rule = format!(
        "[[rules]]\nname = \"per-source-flood\"\nsensor = \"kernel\"\nthreshold_rps = {STATIC_RPS}.0\n"
    );
    let daemon = match mode {
        "floodgate-static" => Some(tb.start_daemon(&pins, &test_config(&rule))),
        "floodgate-adaptive" => Some(tb.start_daemon(
            &pins,
            &test_config(&format!(
                "{rule}{}",
                botnet::adaptive_section(&state.file())
            )),
        )),
        _ => None,
    };
    let (legit_groups, bot_groups) = (legit_groups(1), bot_groups());
    let (legit, bots, probes_from) = (
        all_addrs(&legit_groups),
        all_addrs(&bot_groups),
        probe_addrs(),
    );
    let covered_count = |addrs: &[IpAddr]| {
        let blocks = botnet::blocked_networks(&pins);
        addrs.iter().filter(|a| covered(&blocks, **a)).count()
    };
    let start = Instant::now();
    let (stop, probes) = (AtomicBool::new(false), Probes::default());
    let series: Mutex<Vec<(f64, usize)>> = Mutex::new(Vec::new());
    let flood_at = std::thread::scope(|scope| {
        scope.spawn(|| botnet::run_groups(tb, loadgen, &legit_groups, LEGIT_SECS, 20));
        scope.spawn(|| probe(tb, &probes_from, start, &stop, &probes));
        std::thread::sleep(Duration::from_secs(LEARNING_SECS + MARGIN_SECS));
        if mode == "floodgate-adaptive" {
            botnet::wait_learned(&pins);
        }
        std::thread::sleep(Duration::from_secs_f64(IDLE_SECS));
        let flood_at = start.elapsed().as_secs_f64();
        let flood = scope.spawn(|| botnet::run_groups(tb, loadgen, &bot_groups, FLOOD_SECS, 5));
        if daemon.is_some() {
            let (stop, series, covered_count, bots) = (&stop, &series, &covered_count, &bots);
            // Until 95 % are covered: reading the block list costs CPU that the probes would
            // feel (as the end-to-end test, which stops there too).
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let n = covered_count(bots);
                    let at = start.elapsed().as_secs_f64() - flood_at;
                    series.lock().expect("series").push((at, n));
                    if n * 100 >= bots.len() * 95 {
                        break;
                    }
                    std::thread::sleep(WATCH);
                }
            });
        }
        // The bots' loadgen ends early once their connections are reset; the probes go on
        // until the flood's planned end and a little beyond.
        flood.join().expect("flood");
        let planned_end = flood_at + f64::from(FLOOD_SECS) + AFTER_SECS;
        if let Some(left) = Duration::from_secs_f64(planned_end).checked_sub(start.elapsed()) {
            std::thread::sleep(left);
        }
        stop.store(true, Ordering::Relaxed);
        flood_at
    });
    let (bots_blocked, legit_blocked) = if daemon.is_some() {
        let legit_and_probes: Vec<IpAddr> = legit.iter().chain(&probes_from).copied().collect();
        (
            Some(covered_count(&bots)),
            Some(covered_count(&legit_and_probes)),
        )
    } else {
        (None, None)
    };
    drop((daemon, site));
    let probes = probes.into_inner().expect("probes");
    let mut series = series.into_inner().expect("series");
    if let Some(n) = bots_blocked {
        series.push((f64::from(FLOOD_SECS) + AFTER_SECS, n));
    }
    eprintln!(
        "  probes after the flood start: {}",
        per_second(&probes, flood_at)
    );
    measure(
        &probes,
        &series,
        flood_at,
        bots.len(),
        bots_blocked,
        legit_blocked,
    )
}

/// The probes' p99 in each second from `flood_at` (a failure as [`FAILED_MS`]), for the log.
fn per_second(probes: &[Probe], flood_at: f64) -> String {
    let seconds = FLOOD_SECS + AFTER_SECS as u32;
    (0..seconds)
        .map(|i| {
            let at = flood_at + f64::from(i);
            let mut ms: Vec<f64> = probes
                .iter()
                .filter(|p| p.0 >= at && p.0 < at + 1.0)
                .map(|p| if p.1 { p.2 } else { FAILED_MS })
                .collect();
            if ms.is_empty() {
                format!("{i}s -")
            } else {
                format!("{i}s {:.1}", percentile(&mut ms, 99.0))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The figures of one run from its probes and the blocks seen over time.
fn measure(
    probes: &[Probe],
    series: &[(f64, usize)],
    flood_at: f64,
    bots: usize,
    bots_blocked: Option<usize>,
    legit_blocked: Option<usize>,
) -> BotRun {
    let flood_end = flood_at + f64::from(FLOOD_SECS);
    let mut idle: Vec<f64> = probes
        .iter()
        .filter(|p| p.1 && p.0 >= flood_at - IDLE_SECS && p.0 < flood_at)
        .map(|p| p.2)
        .collect();
    assert!(!idle.is_empty(), "no idle probes");
    let idle_p99 = percentile(&mut idle, 99.0);
    let flood: Vec<&Probe> = probes
        .iter()
        .filter(|p| p.0 >= flood_at && p.0 < flood_end)
        .collect();
    assert!(!flood.is_empty(), "no probes during the flood");
    let success = flood.iter().filter(|p| p.1).count() as f64 / flood.len() as f64;
    let ms = |p: &&Probe| if p.1 { p.2 } else { FAILED_MS };
    let mut lat: Vec<f64> = flood.iter().map(ms).collect();
    let mut late: Vec<f64> = flood
        .iter()
        .filter(|p| p.0 >= flood_at + LATE_SECS)
        .map(ms)
        .collect();
    // The plot's clock starts IDLE_SECS before the flood.
    let origin = flood_at - IDLE_SECS;
    let t_max = IDLE_SECS + f64::from(FLOOD_SECS) + AFTER_SECS;
    BotRun {
        idle_p99,
        recovery_s: recovery(probes, flood_at, flood_end, 2.0 * idle_p99),
        success,
        p99: percentile(&mut lat, 99.0),
        p99_late: if late.is_empty() {
            FAILED_MS
        } else {
            percentile(&mut late, 99.0)
        },
        bots_blocked,
        blocked_95_s: series
            .iter()
            .find(|(_, n)| n * 100 >= bots * 95)
            .map(|(t, _)| *t),
        legit_blocked,
        probes: probes
            .iter()
            .map(|p| (p.0 - origin, p.1, p.2))
            .filter(|p| p.0 >= 0.0 && p.0 <= t_max)
            .collect(),
        bots_series: series
            .iter()
            .map(|(t, n)| (t + IDLE_SECS, *n as f64))
            .collect(),
    }
}

/// Medians of a figure that may be missing in some runs: `None` unless most runs have it.
fn median_of_most(values: impl Iterator<Item = Option<f64>>, runs: usize) -> Option<f64> {
    let mut have: Vec<f64> = values.flatten().collect();
    (have.len() * 2 > runs).then(|| median(&mut have))
}

/// Medians per mode to bench-results/survival-botnet.{txt,json,png}.
fn report(all: &[(&str, Vec<BotRun>)], bots: usize, legit: usize, took: Duration) {
    let mut text = format!(
        "{:<19} {:>11} {:>9} {:>8} {:>12} {:>8} {:>13} {:>11} {:>13}\n",
        "mode",
        "recovery s",
        "success",
        "p99 ms",
        "p99 5s- ms",
        "idle ms",
        "bots blocked",
        "95 % in s",
        "legit blocked"
    );
    let mut rows = Vec::new();
    let or_never = |v: Option<f64>| v.map_or("never".to_owned(), |v| format!("{v:.1}"));
    for (mode, results) in all {
        let med =
            |f: &dyn Fn(&BotRun) -> f64| median(&mut results.iter().map(f).collect::<Vec<_>>());
        let (success, p99, idle) = (med(&|r| r.success), med(&|r| r.p99), med(&|r| r.idle_p99));
        let p99_late = med(&|r| r.p99_late);
        let recovery = median_of_most(results.iter().map(|r| r.recovery_s), results.len());
        let blocks = results[0].bots_blocked.is_some();
        let bots_blocked = blocks.then(|| med(&|r| r.bots_blocked.unwrap_or_default() as f64));
        let legit_blocked = blocks.then(|| med(&|r| r.legit_blocked.unwrap_or_default() as f64));
        let blocked_95 = median_of_most(results.iter().map(|r| r.blocked_95_s), results.len());
        let count =
            |n: Option<f64>, of: usize| n.map_or("n/a".to_owned(), |n| format!("{n:.0}/{of}"));
        text.push_str(&format!(
            "{mode:<19} {:>11} {:>8.1}% {p99:>8.1} {p99_late:>12.1} {idle:>8.1} {:>13} {:>11} {:>13}\n",
            or_never(recovery),
            success * 100.0,
            count(bots_blocked, bots),
            if blocks { or_never(blocked_95) } else { "n/a".to_owned() },
            count(legit_blocked, legit),
        ));
        rows.push(json!({
            "mode": mode, "recovery_s": recovery, "legit_success": success, "p99_ms": p99,
            "p99_from_5s_ms": p99_late, "idle_p99_ms": idle, "blocks": blocks, "bots_blocked": bots_blocked,
            "bots_95_blocked_s": blocked_95, "legit_blocked": legit_blocked,
            "runs": results.iter().map(|r| json!({
                "recovery_s": r.recovery_s, "legit_success": r.success, "p99_ms": r.p99,
                "p99_from_5s_ms": r.p99_late, "idle_p99_ms": r.idle_p99, "bots_blocked": r.bots_blocked,
                "bots_95_blocked_s": r.blocked_95_s, "legit_blocked": r.legit_blocked,
            })).collect::<Vec<_>>(),
        }));
    }
    text.push_str(&format!(
        "backend one request at a time, 2 ms per bot request (≤ 500/s) behind nginx; 50 legitimate clients at 1-3 req/s (IPv4 and IPv6) throughout; \
         {LEARNING_SECS}+{MARGIN_SECS} s warm-up (the adaptive learning phase, in every mode), {IDLE_SECS} s idle; \
         {bots} bots (IPv4 and IPv6) at 15-25 req/s each on one path for {FLOOD_SECS} s, open loop; \
         static rule {STATIC_RPS} req/s per source; adaptive: services site and api (capacity 400/s), fingerprints on; \
         4 probe addresses at 4 req/s, new connection each, 2 s timeout; success and p99 over the probes during the flood (p99 5s-: from {LATE_SECS} s into it), a failure as 2000 ms; \
         recovery = from the flood start until every later probe of the flood answered with p99 within 2x idle p99; \
         blocked = covered by an address or prefix block at the end (legitimate: the 50 clients and the 4 probe sources); \
         {} runs, medians; scenario took {:.0} s\n",
        all[0].1.len(),
        took.as_secs_f64()
    ));
    plot(all);
    write_results(
        "survival-botnet",
        &text,
        &json!({
            "rows": rows, "bots": bots, "legit": legit, "runs": all[0].1.len(), "static_rps": STATIC_RPS,
            "flood_s": FLOOD_SECS, "learning_s": LEARNING_SECS, "took_s": took.as_secs_f64(),
        }),
    );
}

fn plot(all: &[(&str, Vec<BotRun>)]) {
    let path = plot::png("survival-botnet");
    let root = plot::canvas(&path, (1600, 300 * all.len() as u32));
    let panels = root.split_evenly((all.len(), 2));
    let t_max = IDLE_SECS + f64::from(FLOOD_SECS) + AFTER_SECS;
    let window = (IDLE_SECS, IDLE_SECS + f64::from(FLOOD_SECS));
    for ((mode, results), pair) in all.iter().zip(panels.chunks(2)) {
        plot::latency(
            &pair[0],
            &format!("{mode}: legitimate probe latency (ms, log), failures in red"),
            t_max,
            window,
            plot::Scale::Log,
            &results[0].probes,
        );
        plot::lines(
            &pair[1],
            &format!(
                "{mode}: bots covered by a block{}",
                if results[0].bots_blocked.is_some() {
                    ""
                } else {
                    " (no block map)"
                }
            ),
            t_max,
            window,
            "bots",
            &[plot::Line {
                label: "bots blocked",
                color: plot::RED,
                points: &results[0].bots_series,
            }],
        );
    }
    root.present().expect("write the botnet survival plot");
}
