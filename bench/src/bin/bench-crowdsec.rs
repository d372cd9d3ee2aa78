//! `cargo xtask bench crowdsec`: a community-blocklist-sized set of CrowdSec decisions (100,000:
//! 59,000 IPv4 and 40,000 IPv6 addresses, 1,000 IPv6 /64 ranges) added to a real LAPI at once
//! (`cscli decisions import`), then the time from a bouncer's start until it enforces all of
//! them (its first, `startup=true` poll): Floodgate (release daemon, a fresh one with empty
//! pinned maps each run, counted in its block maps) against Debian's
//! crowdsec-firewall-bouncer in nftables mode (counted in its sets, `nft list set`), one after
//! the other in the same namespace against the same LAPI. The start, not a delta while the
//! bouncer runs: the LAPI's deltas can miss decisions committed during a poll (its `last_pull`
//! race), which would time the race rather than the load. 3 runs each, medians.

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use floodgate_bench::results::{median, write_results};
use floodgate_tests::{
    ChildGuard, TempPins, crowdsec,
    net::{NetNs, SERVER_V4, Testbed, test_config},
    unique,
};
use serde_json::json;

const RUNS: usize = 3;
const V4: usize = 59_000;
const V6: usize = 40_000;
const RANGES: usize = 1_000;
const TOTAL: usize = V4 + V6 + RANGES;
/// Longest wait for one load (generous: machines differ by 4x).
const DEADLINE: Duration = Duration::from_secs(600);

/// The decision set as `cscli decisions import` reads it (JSON).
fn write_decisions(path: &Path) {
    let mut out = Vec::with_capacity(TOTAL);
    let entry = |scope: &str, value: String| {
        json!({"duration": "4h", "origin": "bench", "reason": "bench/blocklist",
               "scope": scope, "type": "ban", "value": value})
    };
    for i in 0..V4 {
        out.push(entry("ip", format!("198.19.{}.{}", i / 250, i % 250 + 1)));
    }
    for i in 0..V6 {
        out.push(entry(
            "ip",
            format!("2001:2:1::{:x}:{:x}", i >> 16, (i & 0xffff) + 1),
        ));
    }
    for i in 0..RANGES {
        out.push(entry("range", format!("2001:2:2:{:x}::/64", i + 1)));
    }
    std::fs::write(path, serde_json::to_vec(&out).expect("json")).expect("write decisions");
}

/// Waits until `count()` reaches `want`; seconds since `since`, or `None` past the deadline.
/// Between two counts it sleeps nine times what the last count took (at least 50 ms), so that
/// counting (a dump of 100,000 elements) takes at most a tenth of the time it measures.
fn until_count(since: Instant, want: usize, mut count: impl FnMut() -> usize) -> Option<f64> {
    while since.elapsed() < DEADLINE {
        let counting = Instant::now();
        if count() >= want {
            return Some(since.elapsed().as_secs_f64());
        }
        std::thread::sleep((counting.elapsed() * 9).max(Duration::from_millis(50)));
    }
    None
}

/// CrowdSec entries in Floodgate's maps, as the daemon counts them (`status`).
fn floodgate_enforced(pins: &TempPins) -> usize {
    let out = floodgate_tests::floodgate(pins, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let maps = &status["maps"];
    maps["block_exact"]["entries"].as_u64().unwrap_or(0) as usize
        + maps["block_prefix"]["entries"].as_u64().unwrap_or(0) as usize
}

/// Elements of the firewall bouncer's two nftables sets in `ns`.
fn nft_enforced(ns: &NetNs) -> usize {
    [
        ("ip", "crowdsec", "crowdsec-blacklists"),
        ("ip6", "crowdsec6", "crowdsec6-blacklists"),
    ]
    .iter()
    .map(|(family, table, set)| {
        let out = ns
            .cmd("nft")
            .args(["-j", "list", "set", family, table, set])
            .output()
            .expect("nft");
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        value["nftables"]
            .as_array()
            .and_then(|items| items.iter().find_map(|i| i["set"]["elem"].as_array()))
            .map_or(0, Vec::len)
    })
    .sum()
}

fn firewall_bouncer_config(dir: &Path, lapi: &crowdsec::Lapi, key: &str) -> std::path::PathBuf {
    let path = dir.join("crowdsec-firewall-bouncer.yaml");
    std::fs::write(
        &path,
        format!(
            "mode: nftables\npid_dir: {d}\nupdate_frequency: 1s\ndaemonize: false\nlog_mode: stdout\n\
             log_dir: {d}\nlog_level: info\napi_url: {url}/\napi_key: {key}\ninsecure_skip_verify: false\n\
             disable_ipv6: false\ndeny_action: DROP\ndeny_log: false\nsupported_decisions_types:\n  - ban\n\
             blacklists_ipv4: crowdsec-blacklists\nblacklists_ipv6: crowdsec6-blacklists\n\
             nftables:\n  ipv4:\n    enabled: true\n    set-only: false\n    table: crowdsec\n    chain: crowdsec-chain\n\
             \x20 ipv6:\n    enabled: true\n    set-only: false\n    table: crowdsec6\n    chain: crowdsec6-chain\n\
             prometheus:\n  enabled: false\n  listen_addr: 127.0.0.1\n  listen_port: 60601\n",
            d = dir.display(),
            url = lapi.url(),
        ),
    )
    .expect("write bouncer config");
    path
}

fn main() {
    let tb = Testbed::new();
    let lapi = crowdsec::Lapi::start(&tb.server, SocketAddr::new(SERVER_V4.into(), 6180));
    let dir = std::env::temp_dir().join(unique("fg-bench-cs-"));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let file = dir.join("decisions.json");
    write_decisions(&file);
    let imported = Instant::now();
    lapi.cscli(&["decisions", "import", "-i", file.to_str().expect("utf-8")]);
    eprintln!(
        "cscli decisions import of {TOTAL}: {:.1?}",
        imported.elapsed()
    );

    // Floodgate: a fresh daemon (and empty pinned maps) each run.
    let key = crowdsec::key_file(&dir, &lapi.bouncer_key("floodgate"), 0o600);
    let config = test_config(&crowdsec::section(&lapi, &key, "1s"));
    let mut floodgate = Vec::new();
    for run in 1..=RUNS {
        let pins = TempPins::new();
        let started = Instant::now();
        let mut daemon = tb.start_daemon(&pins, &config);
        let took = until_count(started, TOTAL, || floodgate_enforced(&pins)).unwrap_or_else(|| {
            panic!(
                "floodgate: not all {TOTAL} decisions enforced within {DEADLINE:?}: {}\n{}",
                floodgate_enforced(&pins),
                daemon.process.log()
            )
        });
        eprintln!("floodgate run {run}: {TOTAL} decisions enforced {took:.2}s after the start");
        floodgate.push(took);
        daemon.stop();
    }

    // crowdsec-firewall-bouncer (nftables), in the same namespace, against the same LAPI; its
    // tables are removed before each run.
    let config = firewall_bouncer_config(&dir, &lapi, &lapi.bouncer_key("nftables"));
    let mut nft = Vec::new();
    let mut bouncer_log = String::new();
    for run in 1..=RUNS {
        delete_bouncer_tables(&tb.server);
        let started = Instant::now();
        let bouncer = ChildGuard::spawn(
            &unique("cs-firewall-bouncer"),
            tb.server
                .cmd("crowdsec-firewall-bouncer")
                .arg("-c")
                .arg(&config),
        );
        let took = until_count(started, TOTAL, || nft_enforced(&tb.server)).unwrap_or_else(|| {
            panic!(
                "nftables bouncer: not all {TOTAL} decisions in its sets within {DEADLINE:?}: {}\n{}",
                nft_enforced(&tb.server),
                bouncer.log()
            )
        });
        eprintln!(
            "nftables bouncer run {run}: {TOTAL} decisions in its sets {took:.2}s after the start"
        );
        nft.push(took);
        bouncer_log = bouncer.log();
    }
    delete_bouncer_tables(&tb.server);

    let (fg, nf) = (median(&mut floodgate), median(&mut nft));
    let ratio = nf / fg;
    let text = format!(
        "{TOTAL} CrowdSec decisions ({V4} IPv4, {V6} IPv6 addresses, {RANGES} IPv6 /64 ranges) \
         waiting in the LAPI; seconds from the bouncer's start until all are enforced \
         (its first poll, startup=true), median of {RUNS}:\n\
         floodgate (XDP maps)                    {fg:>7.2} s  runs {floodgate:.2?}\n\
         crowdsec-firewall-bouncer (nftables)    {nf:>7.2} s  runs {nft:.2?}\n\
         ratio nftables / floodgate              {ratio:>7.2}\n"
    );
    write_results(
        "crowdsec",
        &text,
        &json!({
            "decisions": TOTAL,
            "ipv4": V4, "ipv6": V6, "ranges_v6": RANGES,
            "poll_interval_s": 1.0,
            "runs": RUNS,
            "floodgate_s": { "median": fg, "runs": floodgate },
            "nftables_bouncer_s": { "median": nf, "runs": nft },
            "ratio_nftables_over_floodgate": ratio,
        }),
    );
    if bouncer_log.contains("level=error") {
        eprintln!("firewall bouncer errors:\n{bouncer_log}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Removes the firewall bouncer's nftables tables from `ns` (absent ones are fine).
fn delete_bouncer_tables(ns: &floodgate_tests::net::NetNs) {
    for (family, table) in [("ip", "crowdsec"), ("ip6", "crowdsec6")] {
        let _ = ns
            .cmd("nft")
            .args(["delete", "table", family, table])
            .output();
    }
}
