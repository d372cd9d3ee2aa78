//! `cargo xtask loadtest`: the load-test kit. Builds the namespace testbed (198.18.0.0/15 and
//! 2001:2::/48 only), starts nginx and the daemon, floods with wrk from 64 IPv4 and 16 IPv6
//! source addresses while legitimate clients open a new connection every 100 ms, prints a
//! report (flood and legitimate rates, legitimate success and latency percentiles, drops,
//! blocks, time to block), writes bench-results/loadtest.{txt,json,png}, and tears it all
//! down. Every loop is bounded in time.

use std::{
    net::SocketAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use filter_common::counter;
use filter_user::{bpf::maps::Maps, clock::monotonic_ns};
use floodgate_bench::{
    plot::{self, Probe},
    results::{percentile, write_results},
};
use floodgate_tests::{
    TempPins,
    net::{FloodPlan, SERVER_V4, SERVER_V6, Testbed, test_config, timed_get},
};
use serde_json::json;

const RUN: Duration = Duration::from_secs(16);
const FLOOD_AT: Duration = Duration::from_secs(3);
const FLOOD_FOR: Duration = Duration::from_secs(10);

fn main() {
    floodgate_tests::require_root();
    let tb = Testbed::new();
    let plan = FloodPlan::on(&tb, 64, 16);
    let (legit, flood4, flood6) = (&plan.legit, &plan.flood4, &plan.flood6);
    let _nginx = tb.start_nginx();
    let pins = TempPins::new();
    let _daemon = tb.start_daemon(&pins, &test_config("[aggregation]\nmin_addresses = 0\n"));
    let shim = Testbed::build_shim();
    let filter = Maps::open(&pins.pins).expect("open maps");
    let probes: Mutex<Vec<Probe>> = Mutex::new(Vec::new());
    let start = Instant::now();
    let start_ns = monotonic_ns();
    let mut series: Vec<(f64, f64, f64, f64)> = Vec::new(); // t, starts/s, drops/s, passed/s
    let mut wrk_logs = Vec::new();
    let mut flood_start_ns = 0;
    std::thread::scope(|scope| {
        for src in legit {
            let (tb, probes) = (&tb, &probes);
            scope.spawn(move || {
                tb.client.enter_current_thread();
                let dst = if src.is_ipv4() {
                    SocketAddr::new(SERVER_V4.into(), 80)
                } else {
                    SocketAddr::new(SERVER_V6.into(), 80)
                };
                while start.elapsed() < RUN {
                    let at = start.elapsed().as_secs_f64();
                    let r = timed_get(*src, dst, "/legit", Duration::from_secs(2));
                    probes
                        .lock()
                        .unwrap()
                        .push((at, r.is_some(), r.unwrap_or(0.0)));
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
        let mut wrk = Vec::new();
        let mut last = filter.counters().expect("counters");
        let mut last_t = 0.0;
        while start.elapsed() < RUN {
            std::thread::sleep(Duration::from_millis(250));
            if wrk.is_empty() && start.elapsed() >= FLOOD_AT {
                flood_start_ns = monotonic_ns();
                wrk.push(tb.start_wrk(
                    &shim,
                    flood4,
                    &format!("http://{SERVER_V4}/"),
                    FLOOD_FOR,
                    128,
                ));
                wrk.push(tb.start_wrk(
                    &shim,
                    flood6,
                    &format!("http://[{SERVER_V6}]/"),
                    FLOOD_FOR,
                    32,
                ));
            }
            let now = filter.counters().expect("counters");
            let t = start.elapsed().as_secs_f64();
            let d = |i: u32| (now[i as usize] - last[i as usize]) as f64 / (t - last_t);
            series.push((
                t,
                d(counter::REQUEST_STARTS),
                d(counter::DROPPED_EXACT) + d(counter::DROPPED_PREFIX),
                d(counter::PASSED),
            ));
            last = now;
            last_t = t;
        }
        for mut w in wrk {
            w.wait_exit(Duration::from_secs(15))
                .expect("wrk is bounded");
            wrk_logs.push(w.log());
        }
    });
    let _ = std::fs::remove_file(&shim);

    let counters = filter.counters().expect("counters");
    let blocks = filter.blocks().expect("blocks");
    let flooders = plan.flooders();
    let mut time_to_block: Vec<f64> = blocks
        .iter()
        .filter(|b| flooders.contains(&b.target.ip))
        .map(|b| (b.added_ns.saturating_sub(flood_start_ns)) as f64 / 1e6)
        .collect();
    let legit_blocked = blocks
        .iter()
        .filter(|b| legit.contains(&b.target.ip))
        .count();
    let probes = probes.into_inner().unwrap();
    let flood_window =
        |p: &&Probe| p.0 >= FLOOD_AT.as_secs_f64() && p.0 < (FLOOD_AT + FLOOD_FOR).as_secs_f64();
    let summarize = |ps: Vec<&Probe>| {
        let ok: Vec<f64> = ps.iter().filter(|p| p.1).map(|p| p.2).collect();
        let rate = ok.len() as f64 / ps.len().max(1) as f64;
        let mut l = ok.clone();
        let pct = |l: &mut Vec<f64>, q| {
            if l.is_empty() {
                f64::NAN
            } else {
                percentile(l, q)
            }
        };
        (
            ps.len(),
            rate,
            pct(&mut l, 50.0),
            pct(&mut l, 95.0),
            pct(&mut l, 99.0),
        )
    };
    let all = summarize(probes.iter().collect());
    let during = summarize(probes.iter().filter(flood_window).collect());
    let wrk_rps: Vec<String> = wrk_logs
        .iter()
        .filter_map(|l| {
            l.lines()
                .find(|x| x.starts_with("Requests/sec"))
                .map(|x| x.trim().to_owned())
        })
        .collect();
    let peak_starts = series.iter().map(|s| s.1).fold(0.0, f64::max);
    let peak_drops = series.iter().map(|s| s.2).fold(0.0, f64::max);
    let blocked_flooders = time_to_block.len();
    let (ttb50, ttb_max) = if time_to_block.is_empty() {
        (f64::NAN, f64::NAN)
    } else {
        (
            percentile(&mut time_to_block, 50.0),
            percentile(&mut time_to_block, 100.0),
        )
    };
    let mut text = String::new();
    text.push_str(&format!("flood: {} sources ({} v4, {} v6) with wrk for {}s; legitimate: {} clients, new connection every 100 ms\n", flooders.len(), flood4.len(), flood6.len(), FLOOD_FOR.as_secs(), legit.len()));
    text.push_str(&format!(
        "flood answered by nginx (wrk): {}\n",
        wrk_rps.join(" | ")
    ));
    text.push_str(&format!("peak request starts at XDP: {peak_starts:.0}/s; peak XDP drops: {peak_drops:.0}/s; total drops {}\n", counters[counter::DROPPED_EXACT as usize] + counters[counter::DROPPED_PREFIX as usize]));
    text.push_str(&format!("blocked flooders: {blocked_flooders}/{}; time to block from flood start: p50 {ttb50:.0} ms, max {ttb_max:.0} ms; legitimate blocked: {legit_blocked}\n", flooders.len()));
    text.push_str(&format!("legitimate (whole run): {} requests, success {:.2} %, latency p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms\n", all.0, all.1 * 100.0, all.2, all.3, all.4));
    text.push_str(&format!("legitimate (during flood): {} requests, success {:.2} %, latency p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms\n", during.0, during.1 * 100.0, during.2, during.3, during.4));
    text.push_str("plot: bench-results/loadtest.png\n");
    plot(
        &series,
        &probes,
        FLOOD_AT.as_secs_f64(),
        (FLOOD_AT + FLOOD_FOR).as_secs_f64(),
    );
    write_results(
        "loadtest",
        &text,
        &json!({
            "flooders": flooders.len(), "blocked_flooders": blocked_flooders, "legit_blocked": legit_blocked,
            "time_to_block_ms": { "p50": ttb50, "max": ttb_max },
            "legit": { "requests": all.0, "success": all.1, "p50_ms": all.2, "p95_ms": all.3, "p99_ms": all.4 },
            "legit_during_flood": { "requests": during.0, "success": during.1, "p50_ms": during.2, "p95_ms": during.3, "p99_ms": during.4 },
            "peak_request_starts_per_sec": peak_starts, "peak_drops_per_sec": peak_drops, "wrk": wrk_rps,
            "series": series.iter().map(|s| json!({ "t": s.0, "request_starts": s.1, "drops": s.2, "passed": s.3 })).collect::<Vec<_>>(),
            "run_started_ns": start_ns,
        }),
    );
}

fn plot(series: &[(f64, f64, f64, f64)], probes: &[Probe], flood_from: f64, flood_to: f64) {
    let path = plot::png("loadtest");
    let root = plot::canvas(&path, (1200, 800));
    let (top, bottom) = root.split_vertically(420);
    let t_max = series.last().map_or(1.0, |s| s.0);
    let column = |f: fn(&(f64, f64, f64, f64)) -> f64| -> Vec<(f64, f64)> {
        series.iter().map(|s| (s.0, f(s))).collect()
    };
    let (starts, drops, passed) = (column(|s| s.1), column(|s| s.2), column(|s| s.3));
    plot::lines(
        &top,
        "Floodgate load test: packets per second at XDP",
        t_max,
        (flood_from, flood_to),
        "per second",
        &[
            plot::Line {
                label: "HTTP request starts",
                color: plot::BLUE,
                points: &starts,
            },
            plot::Line {
                label: "XDP drops",
                color: plot::RED,
                points: &drops,
            },
            plot::Line {
                label: "passed",
                color: plot::GREEN,
                points: &passed,
            },
        ],
    );
    plot::latency(
        &bottom,
        "legitimate requests (new connection each): latency; failures at the top in red",
        t_max,
        (flood_from, flood_to),
        plot::Scale::Linear,
        probes,
    );
    root.present().expect("write loadtest.png");
}
