//! Part 3: detection latency over HTTPS. 16 sources (8 IPv4, 8 IPv6) start an h2load flood
//! over HTTPS/HTTP/2 against nginx writing the feed (the feed socket, and the feed file,
//! nginx's default, which waits up to nginx's 100 ms flush), the daemon running the default
//! rules;
//! per source: flood start (h2load spawned) → its block in force (the entry's `added_ns`), and
//! the daemon's own threshold crossing → block (`latency=` of its `block` log line). Baseline
//! in the same run: the same over plaintext HTTP/1.1 on port 80 (the kernel sensor; nginx
//! without the feed). Rounds alternate, each with fresh sources, daemon and pins. The daemon
//! stamps a feed event when it reads the datagram (a kernel sample when XDP took it), so the
//! feed's crossing → block leaves out the time a datagram waited in the socket; flood start →
//! block includes everything (TLS handshake, nginx logging the request after its response).

use std::{
    collections::HashMap,
    net::IpAddr,
    path::Path,
    time::{Duration, Instant},
};

use filter_user::clock::monotonic_ns;
use floodgate_bench::results::percentile;
use floodgate_tests::{
    TempPins,
    edge::Cert,
    floodgate_json,
    net::{SERVER_V4, SERVER_V6, Testbed, test_config},
};
use serde_json::json;

use crate::feed_socket;

const ROUNDS: u32 = 3;
const PER_FAMILY: u32 = 8;
/// h2load's run; every source is blocked long before (or the round reports it missing).
const FLOOD: Duration = Duration::from_secs(5);
const WAIT_BLOCKS: Duration = Duration::from_secs(8);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Https,
    HttpsFile,
    Plaintext,
}

impl Route {
    fn label(self) -> &'static str {
        match self {
            Self::Https => "https_h2_proxy_feed",
            Self::HttpsFile => "https_h2_proxy_feed_file",
            Self::Plaintext => "plaintext_h1_kernel",
        }
    }

    /// The default rule that should block it.
    fn rule(self) -> &'static str {
        match self {
            Self::Https | Self::HttpsFile => "per-source-flood-proxy",
            Self::Plaintext => "per-source-flood",
        }
    }
}

#[derive(Default)]
struct Samples {
    start_to_block_ms: Vec<f64>,
    crossing_to_block_ms: Vec<f64>,
    missing: Vec<String>,
    rules: HashMap<String, u32>,
}

fn sources(round: u32, route: Route) -> (Vec<IpAddr>, Vec<IpAddr>) {
    let base = round * 3
        + match route {
            Route::Https => 0,
            Route::HttpsFile => 1,
            Route::Plaintext => 2,
        };
    let v4 = (1..=PER_FAMILY)
        .map(|i| {
            format!("198.18.6.{}", base * PER_FAMILY + i)
                .parse()
                .unwrap()
        })
        .collect();
    let v6 = (1..=PER_FAMILY)
        .map(|i| {
            format!("2001:2:0:6::{:x}", base * PER_FAMILY + i)
                .parse()
                .unwrap()
        })
        .collect();
    (v4, v6)
}

/// `block ADDR rule=NAME … latency=NNms` lines of the daemon's log: address → (rule, ms).
fn logged_blocks(log: &str) -> HashMap<String, (String, f64)> {
    log.lines()
        .filter_map(|line| {
            let rest = &line[line.find("block ")? + "block ".len()..];
            let mut words = rest.split_whitespace();
            let addr = words.next()?.to_owned();
            let rule = words.next()?.strip_prefix("rule=")?.to_owned();
            let ms = rest
                .split("latency=")
                .nth(1)?
                .split("ms")
                .next()?
                .parse()
                .ok()?;
            Some((addr, (rule, ms)))
        })
        .collect()
}

/// The block entries in force: target → `added_ns`.
fn blocks(pins: &TempPins) -> HashMap<String, u64> {
    floodgate_json(pins, &["block", "list", "--json"])
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| Some((b["target"].as_str()?.to_owned(), b["added_ns"].as_u64()?)))
        .collect()
}

fn round(
    tb: &Testbed,
    cert: &Cert,
    socket: &Path,
    shim: &Path,
    round: u32,
    route: Route,
    out: &mut Samples,
) {
    let pins = TempPins::new();
    let file = socket.with_file_name("requests.log");
    let config = test_config(&format!(
        "[aggregation]\nmin_addresses = 0\n[proxy]\nsocket = \"{}\"\nfile = \"{}\"\n",
        socket.display(),
        file.display()
    ));
    // The daemon first: its feed socket exists before nginx logs its first request.
    let daemon = tb.start_daemon(&pins, &config);
    let nginx = match route {
        Route::Https => tb.start_edge_nginx(cert, Some(socket)),
        Route::HttpsFile => tb.start_edge_nginx_file_feed(cert, &file),
        Route::Plaintext => tb.start_edge_nginx(cert, None),
    };
    let (v4, v6) = sources(round, route);
    let (url4, url6, extra): (String, String, &[&str]) = match route {
        Route::Https | Route::HttpsFile => (
            format!("https://{SERVER_V4}/"),
            format!("https://[{SERVER_V6}]/"),
            &[],
        ),
        Route::Plaintext => (
            format!("http://{SERVER_V4}/"),
            format!("http://[{SERVER_V6}]/"),
            &["--h1"],
        ),
    };
    // One connection per source (the shim binds each connect to the next address).
    let start4 = monotonic_ns();
    let _flood4 = tb.start_h2load(shim, &v4, &url4, FLOOD, PER_FAMILY, extra);
    let start6 = monotonic_ns();
    let _flood6 = tb.start_h2load(shim, &v6, &url6, FLOOD, PER_FAMILY, extra);
    let all: Vec<(IpAddr, u64)> = v4
        .iter()
        .map(|a| (*a, start4))
        .chain(v6.iter().map(|a| (*a, start6)))
        .collect();
    let deadline = Instant::now() + WAIT_BLOCKS;
    let mut seen = blocks(&pins);
    while Instant::now() < deadline && !all.iter().all(|(a, _)| seen.contains_key(&a.to_string())) {
        std::thread::sleep(Duration::from_millis(100));
        seen = blocks(&pins);
    }
    let logged = logged_blocks(&daemon.process.log());
    for (addr, start) in &all {
        let key = addr.to_string();
        match (seen.get(&key), logged.get(&key)) {
            (Some(added), Some((rule, ms))) => {
                out.start_to_block_ms
                    .push(added.saturating_sub(*start) as f64 / 1e6);
                out.crossing_to_block_ms.push(*ms);
                *out.rules.entry(rule.clone()).or_default() += 1;
            }
            _ => out.missing.push(key),
        }
    }
    drop(nginx);
    drop(daemon);
    drop(pins);
}

fn summary(s: &mut Samples, route: Route) -> serde_json::Value {
    let stat = |v: &mut Vec<f64>, p| {
        if v.is_empty() {
            f64::NAN
        } else {
            percentile(v, p)
        }
    };
    let wrong_rule: u32 = s
        .rules
        .iter()
        .filter(|(rule, _)| rule.as_str() != route.rule())
        .map(|(_, n)| *n)
        .sum();
    json!({
        "sources": s.start_to_block_ms.len() + s.missing.len(),
        "blocked": s.start_to_block_ms.len(),
        "missing": s.missing,
        "blocked_by_rule": s.rules,
        "blocked_by_another_rule": wrong_rule,
        "start_to_block_ms": {
            "p50": stat(&mut s.start_to_block_ms, 50.0),
            "p99": stat(&mut s.start_to_block_ms, 99.0),
            "all": s.start_to_block_ms,
        },
        "crossing_to_block_ms": {
            "p50": stat(&mut s.crossing_to_block_ms, 50.0),
            "p99": stat(&mut s.crossing_to_block_ms, 99.0),
            "all": s.crossing_to_block_ms,
        },
    })
}

pub(crate) fn run() -> serde_json::Value {
    let tb = Testbed::new();
    for r in 0..ROUNDS {
        for route in [Route::Https, Route::HttpsFile, Route::Plaintext] {
            let (v4, v6) = sources(r, route);
            tb.add_client_addrs(&v4);
            tb.add_client_addrs(&v6);
        }
    }
    let cert = Cert::new();
    let (_dir, socket) = feed_socket();
    let shim = Testbed::build_shim();
    let (mut https, mut file, mut plain) =
        (Samples::default(), Samples::default(), Samples::default());
    let routes = [Route::Https, Route::HttpsFile, Route::Plaintext];
    for r in 0..ROUNDS {
        // The order rotates over the rounds, so that drift falls on every route.
        for k in 0..routes.len() {
            let route = routes[(r as usize + k) % routes.len()];
            eprintln!("  round {}/{ROUNDS}: {}", r + 1, route.label());
            let out = match route {
                Route::Https => &mut https,
                Route::HttpsFile => &mut file,
                Route::Plaintext => &mut plain,
            };
            round(&tb, &cert, &socket, &shim, r, route, out);
        }
    }
    let _ = std::fs::remove_file(&shim);
    let https = summary(&mut https, Route::Https);
    let file = summary(&mut file, Route::HttpsFile);
    let plain = summary(&mut plain, Route::Plaintext);
    let ratio = |which: &str, p: &str| {
        https[which][p].as_f64().unwrap_or(f64::NAN) / plain[which][p].as_f64().unwrap_or(f64::NAN)
    };
    json!({
        "rounds": ROUNDS,
        "sources_per_round": PER_FAMILY * 2,
        "flood_connections_per_source": 1,
        "streams_per_connection": 10,
        "https_h2_proxy_feed": https,
        "https_h2_proxy_feed_file": file,
        "plaintext_h1_kernel": plain,
        "ratio_start_to_block_p50": ratio("start_to_block_ms", "p50"),
        "ratio_start_to_block_p99": ratio("start_to_block_ms", "p99"),
        "ratio_crossing_to_block_p99": ratio("crossing_to_block_ms", "p99"),
    })
}
