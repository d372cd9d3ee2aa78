//! `cargo xtask bench fleet`: the fleet path, three release daemons and a real nats-server
//! with JetStream, each in its own namespaces (the tests' [`Fleet`] testbed). Latency: 1,000
//! decisions made one at a time on edge-a (`block add --fleet`), each timed by the receiving
//! daemons from the value's `decided_us` (edge-a's clock when it published) to their own map
//! write (same machine, same clock): p50/p99 over the 2,000 arrivals on edge-b and edge-c.
//! Throughput: bursts of 10,000 decisions (`block add --fleet` with 1,000 targets per call),
//! from the first call to the last of them in both other hosts' maps; decisions per second per
//! receiving host. The anchor: a CrowdSec bouncer polls its LAPI every 10 s by default, so a
//! decision waits 5 s on average and up to 10 s before any bouncer can enforce it.

use std::time::{Duration, Instant};

use floodgate_bench::results::{median, percentile, write_results};
use floodgate_tests::{
    fleet::{Fleet, Host},
    floodgate_json, floodgate_ok, wait_until,
};
use serde_json::json;

/// Decisions timed one at a time.
const LATENCY_DECISIONS: usize = 1_000;
/// Decisions per throughput burst, and targets per `block add` call.
const BURST: usize = 10_000;
const PER_CALL: usize = 1_000;
const BURSTS: usize = 3;
/// CrowdSec's default bouncer poll interval (crowdsec-firewall-bouncer `update_frequency`).
const CROWDSEC_POLL_S: f64 = 10.0;

fn applied(host: &Host) -> u64 {
    floodgate_json(&host.pins, &["status", "--json"])["daemon"]["fleet"]["remote_applied"]
        .as_u64()
        .unwrap_or(0)
}

/// The propagation figures (ms) host logged for targets whose text starts with `prefix`.
fn propagation(host: &Host, prefix: &str) -> Vec<f64> {
    host.log()
        .lines()
        .filter(|l| l.contains(&format!("fleet: block {prefix}")))
        .filter_map(|l| {
            l.rsplit("propagation=")
                .next()?
                .trim_end_matches("ms")
                .trim()
                .parse()
                .ok()
        })
        .collect()
}

fn wait_applied(hosts: &[Host], want: u64, deadline: Duration) {
    for host in hosts {
        assert!(
            wait_until(deadline, || applied(host) >= want),
            "{} applied {} of {want}:\n{}",
            host.name,
            applied(host),
            host.fleet_status()
        );
    }
}

fn main() {
    let mut fleet = Fleet::new(3);
    for host in &mut fleet.hosts {
        // No rule: nothing here but the decisions under test.
        host.start("rules = []\n[metrics]\nlisten = \"off\"\n[log]\nlevel = \"info\"\n");
    }
    for host in &fleet.hosts {
        assert!(
            wait_until(Duration::from_secs(20), || {
                host.fleet_status()["last_sync_unix"].is_number()
            }),
            "{} never synced",
            host.name
        );
    }
    let (a, others) = fleet.hosts.split_first().expect("three hosts");

    // Latency: one decision at a time (198.18.64.0/18).
    for i in 0..LATENCY_DECISIONS {
        let target = format!("198.18.{}.{}", 64 + i / 250, i % 250 + 1);
        floodgate_ok(
            &a.pins,
            &["block", "add", &target, "--ttl", "1h", "--fleet"],
        );
    }
    wait_applied(others, LATENCY_DECISIONS as u64, Duration::from_secs(60));
    let mut latencies: Vec<f64> = others
        .iter()
        .flat_map(|h| propagation(h, "198.18."))
        .collect();
    assert_eq!(
        latencies.len(),
        2 * LATENCY_DECISIONS,
        "one log line per arrival"
    );
    let (p50, p99, max) = (
        percentile(&mut latencies, 50.0),
        percentile(&mut latencies, 99.0),
        percentile(&mut latencies, 100.0),
    );

    // Throughput: bursts of 10,000 (IPv6 addresses, 2001:2:10::/48 onwards).
    let mut rates = Vec::new();
    let mut cli_rates = Vec::new();
    let mut total = LATENCY_DECISIONS as u64;
    for burst in 0..BURSTS {
        let targets: Vec<String> = (0..BURST)
            .map(|i| format!("2001:2:{:x}::{:x}", 0x10 + burst, i + 1))
            .collect();
        let started = Instant::now();
        for chunk in targets.chunks(PER_CALL) {
            let mut args = vec!["block", "add", "--ttl", "1h", "--fleet"];
            args.extend(chunk.iter().map(String::as_str));
            floodgate_ok(&a.pins, &args);
        }
        let handed = started.elapsed().as_secs_f64();
        total += BURST as u64;
        wait_applied(others, total, Duration::from_secs(120));
        let took = started.elapsed().as_secs_f64();
        rates.push(BURST as f64 / took);
        cli_rates.push(BURST as f64 / handed);
        eprintln!(
            "burst {}: {BURST} decisions handed over in {handed:.2} s, in both other hosts' maps after {took:.2} s",
            burst + 1
        );
    }
    let rate = median(&mut rates.clone());
    let text = format!(
        "three hosts, one nats-server 2.9 (JetStream, file store), release daemons\n\
         propagation of {LATENCY_DECISIONS} decisions from edge-a to edge-b and edge-c \
         (2,000 arrivals): p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms\n\
         throughput: bursts of {BURST} decisions, in both other hosts' maps at a median \
         {rate:.0} decisions/s (runs: {})\n\
         anchor: CrowdSec's default bouncer poll of {CROWDSEC_POLL_S:.0} s: a decision waits \
         {:.0} s on average, {CROWDSEC_POLL_S:.0} s at worst, before a bouncer asks for it\n",
        rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
        CROWDSEC_POLL_S / 2.0
    );
    write_results(
        "fleet",
        &text,
        &json!({
            "hosts": 3,
            "latency_decisions": LATENCY_DECISIONS,
            "latency_ms": { "p50": p50, "p99": p99, "max": max, "arrivals": 2 * LATENCY_DECISIONS },
            "burst": BURST,
            "decisions_per_s": { "median": rate, "runs": rates },
            "handed_over_per_s": { "median": median(&mut cli_rates.clone()), "runs": cli_rates },
            "crowdsec_poll_s": CROWDSEC_POLL_S,
            "ratio_crowdsec_mean_wait_over_p50": CROWDSEC_POLL_S / 2.0 * 1000.0 / p50,
        }),
    );
}
