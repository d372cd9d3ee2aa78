//! `cargo xtask bench proxy`: the proxy request feed (nginx's `log_format` from `floodgate
//! proxy-snippet nginx`, one datagram per request), every figure beside a baseline measured in
//! the same run:
//! 1. ingest on one core (`ingest.rs`): 1,000,000 nginx datagrams from 100,000 clients (v4 and
//!    v6; paths, statuses, protocols and agents varied) through `proxy::parse` +
//!    `proxy::event` + `Detector::observe` with the default rules, median of 5 runs; baseline a
//!    generic JSON parse (`serde_json::Value`) of the same objects alone;
//! 2. the proxy's own cost (`saturation.rs`): nginx's requests/s at saturation (h2load over
//!    HTTPS/HTTP/2, one source, 10 s) with the feed off and on (on the kernel's socket
//!    defaults and with `net.unix.max_dgram_qlen` raised), 3 runs each alternating, medians;
//!    the loss, nginx's CPU per request, the daemon's CPU, and how many requests reached the
//!    detector;
//! 3. detection latency over HTTPS (`latency.rs`): 16 sources (v4 and v6) flood with h2load
//!    over HTTPS/HTTP/2 under the default rules; per source, flood start → block in force (the
//!    block's `added_ns`) and the daemon's threshold crossing → block (its log), p50/p99 over
//!    3 rounds; baseline the same over plaintext HTTP/1.1 (kernel sensor, port 80).
//!
//! Everything runs in namespaces the harness makes (198.18.0.0/15, 2001:2::/48), every load is
//! bounded by count or time, and the harness's guards remove what it made.

mod ingest;
mod latency;
mod saturation;

use std::{fmt::Write as _, path::PathBuf};

use floodgate_bench::results::write_results;
use floodgate_tests::unique;
use serde_json::{Value, json};

/// What h2load reports at its end.
pub(crate) struct H2load {
    /// From "finished in 10.00s, N req/s, …".
    pub(crate) req_per_sec: f64,
    /// From "requests: … N succeeded, N failed, …".
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
}

impl H2load {
    /// Parses h2load's summary; panics with the output when it has none.
    pub(crate) fn parse(log: &str) -> Self {
        let req_per_sec = log
            .lines()
            .find_map(|l| {
                l.strip_prefix("finished in ")?
                    .split(", ")
                    .nth(1)?
                    .strip_suffix(" req/s")?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no \"finished in\" line in h2load's output:\n{log}"));
        let count = |what: &str| {
            log.lines()
                .find_map(|l| l.strip_prefix("requests: "))
                .and_then(|l| {
                    l.split(", ")
                        .find_map(|part| part.strip_suffix(what)?.trim().parse().ok())
                })
                .unwrap_or(0)
        };
        Self {
            req_per_sec,
            succeeded: count(" succeeded"),
            failed: count(" failed"),
        }
    }
}

/// Child processes of `pid` (nginx's workers).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let out = std::process::Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// A directory of its own for the feed socket and file, and the socket path in it: a tmpfs
/// mounted for the run, as /run (where the package puts them) is on a Debian host; the
/// machines that run the benchmarks may keep /run and /tmp on disk. Unmounted and removed by
/// [`FeedDir`]'s drop.
pub(crate) fn feed_socket() -> (FeedDir, PathBuf) {
    let dir = std::env::temp_dir().join(unique("fg-feed-"));
    std::fs::create_dir_all(&dir).expect("feed dir");
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512m,mode=0755", "tmpfs"])
        .arg(&dir)
        .status()
        .expect("mount");
    assert!(status.success(), "mount a tmpfs on {}", dir.display());
    let socket = dir.join("requests.sock");
    (FeedDir(dir), socket)
}

/// Unmounts and removes the feed's directory on drop.
pub(crate) struct FeedDir(PathBuf);

impl Drop for FeedDir {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn text(ingest: &Value, cost: &Value, latency: &Value) -> String {
    let mut t = String::new();
    let rate = f(&ingest["events_per_sec_median"]);
    let _ = writeln!(
        t,
        "feed ingest (parse + event + rules, 1 core)  {rate:>12.0} events/s   target ≥ 500,000: {}",
        if rate >= 500_000.0 { "met" } else { "missed" }
    );
    let _ = writeln!(
        t,
        "  baseline serde_json::Value parse alone      {:>12.0} objects/s  ratio {:.2}",
        f(&ingest["serde_json_value_per_sec_median"]),
        f(&ingest["ratio_to_serde_json"])
    );
    let _ = writeln!(
        t,
        "  the feed's parser alone (parse + event)     {:>12.0} datagrams/s ratio {:.2} to serde_json",
        f(&ingest["parse_alone_per_sec_median"]),
        f(&ingest["parse_alone_ratio_to_serde_json"])
    );
    let _ = writeln!(
        t,
        "nginx HTTPS/HTTP/2 at saturation, feed off   {:>12.0} req/s (baseline); nginx {:.1} µs CPU/request, machine {:.2} cores busy",
        f(&cost["off"]["req_per_sec_median"]),
        f(&cost["off"]["nginx_cpu_us_per_request_median"]),
        f(&cost["off"]["machine_cpu_cores_median"]),
    );
    for (label, what) in [
        ("file", "feed file (nginx's default)".to_owned()),
        ("on", "feed socket, kernel defaults  ".to_owned()),
        (
            "on_tuned",
            format!(
                "feed socket, max_dgram_qlen {}",
                cost["tuned_sysctls"]["net.unix.max_dgram_qlen"],
            ),
        ),
    ] {
        let on = &cost[label];
        let loss = f(&cost[format!("loss_pct_{label}")]);
        let _ = writeln!(
            t,
            "  {what:<30}             {:>12.0} req/s      ratio {:.3}, loss {loss:.1} %   target ≤ 10 %: {}
                 nginx {:.1} µs CPU/request, daemon {:.1} % of a core ({:.2} µs/event), machine {:.2} cores; feed events / requests {:.3}",
            f(&on["req_per_sec_median"]),
            f(&cost[format!("ratio_{label}_to_off")]),
            if loss <= 10.0 { "met" } else { "missed" },
            f(&on["nginx_cpu_us_per_request_median"]),
            f(&on["daemon_cpu_cores_median"]) * 100.0,
            f(&on["daemon_cpu_us_per_event_median"]),
            f(&on["machine_cpu_cores_median"]),
            f(&on["feed_coverage_median"]),
        );
    }
    let _ = writeln!(
        t,
        "  no feed, nginx's usual access log             {:>12.0} req/s      ratio {:.3}, loss {:.1} %; nginx {:.1} µs CPU/request\n  \
         feed file next to the usual access log: loss {:.1} %",
        f(&cost["access_log"]["req_per_sec_median"]),
        f(&cost["ratio_access_log_to_off"]),
        f(&cost["loss_pct_access_log"]),
        f(&cost["access_log"]["nginx_cpu_us_per_request_median"]),
        f(&cost["loss_pct_file_vs_access_log"]),
    );
    for (key, label) in [
        (
            "https_h2_proxy_feed",
            "detection HTTPS/HTTP/2 (feed socket)",
        ),
        (
            "https_h2_proxy_feed_file",
            "detection HTTPS/HTTP/2 (feed file)",
        ),
        (
            "plaintext_h1_kernel",
            "  baseline plaintext HTTP/1.1 (kernel)",
        ),
    ] {
        let l = &latency[key];
        let _ = writeln!(
            t,
            "{label:<40} flood start → block p50 {:.0} ms, p99 {:.0} ms; crossing → block p50 {:.0} ms, p99 {:.0} ms ({}/{} blocked)",
            f(&l["start_to_block_ms"]["p50"]),
            f(&l["start_to_block_ms"]["p99"]),
            f(&l["crossing_to_block_ms"]["p50"]),
            f(&l["crossing_to_block_ms"]["p99"]),
            l["blocked"],
            l["sources"],
        );
    }
    let _ = writeln!(
        t,
        "  ratio HTTPS / plaintext: flood start → block p50 {:.2}, p99 {:.2}",
        f(&latency["ratio_start_to_block_p50"]),
        f(&latency["ratio_start_to_block_p99"])
    );
    t
}

/// `bench-proxy [ingest] [cost] [latency]`: the parts named (all by default); the results are
/// written only when all of them ran.
fn main() {
    floodgate_tests::require_root();
    let parts: Vec<String> = std::env::args().skip(1).collect();
    let want = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
    let mut ingest = Value::Null;
    let mut cost = Value::Null;
    let mut latency = Value::Null;
    if want("ingest") {
        eprintln!("feed ingest, 1,000,000 datagrams…");
        ingest = ingest::run();
    }
    if want("cost") {
        eprintln!("nginx at saturation, feed on and off…");
        cost = saturation::run();
    }
    if want("latency") {
        eprintln!("detection latency, HTTPS and plaintext…");
        latency = latency::run();
    }
    if !parts.is_empty() {
        let all = json!({ "ingest": ingest, "proxy_cost": cost, "latency": latency });
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
        print!("{}", text(&ingest, &cost, &latency));
        return;
    }
    write_results(
        "proxy",
        &text(&ingest, &cost, &latency),
        &json!({ "ingest": ingest, "proxy_cost": cost, "latency": latency }),
    );
}
