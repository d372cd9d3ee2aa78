//! `cargo xtask bench detect`:
//! 1. ingest: samples per second through the daemon pipeline (parse + rate update + rule
//!    check) on one core, median of 5 runs over 1,000,000 samples from 100,000 sources;
//! 2. memory: bytes per tracked client and in total with 1,000,000 distinct sources;
//! 3. latency: from the request that takes a source over its threshold to its block being in
//!    force in the kernel, p50/p99 over 48 sources flooding nginx through the real XDP program
//!    and the real daemon in network namespaces;
//! 4. sampling vs exact per-source counting in the kernel: per-packet cost of each through
//!    BPF_PROG_TEST_RUN and the estimation error of sampling at 1-in-N;
//! 5. decision writes with a full exact map (1,048,576 entries: each write evicts) beside the
//!    same with an empty map, p50/p99 over 1,000 decisions;
//! 6. the idle daemon's CPU with 1,000,000 entries in the maps beside the same with none.
//!
//! The ingest rate is put beside httparse alone over the same samples (its baseline in the
//! same run), since the absolute figure moves with the machine.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use aya::{
    EbpfLoader,
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use filter_common::SAMPLE_PAYLOAD_MAX;
use filter_user::{
    config,
    daemon::metrics::resident_bytes,
    detect::{Detector, rate::RateTable},
    enforce::{Decision, Origin, writer::MapWriter},
    sensor::{http::parse_request, kernel::SampleRecord},
    target::Target,
};
use floodgate_bench::results::{median, percentile, write_results};
use floodgate_tests::{
    TempPins,
    kernel::LoadedFilter,
    net::{SERVER_V4, Testbed, test_config},
    packet::v4_tcp,
};
use serde_json::json;

fn sample(src: IpAddr, t_ns: u64, path: &str) -> SampleRecord {
    let text = format!(
        "GET {path} HTTP/1.1\r\nHost: api.example\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) bench\r\nAccept: */*\r\n\r\n"
    );
    let mut payload = [0u8; SAMPLE_PAYLOAD_MAX];
    let n = text.len().min(SAMPLE_PAYLOAD_MAX);
    payload[..n].copy_from_slice(&text.as_bytes()[..n]);
    SampleRecord {
        ktime_ns: t_ns,
        src,
        weight: 1,
        captured_len: n,
        payload_len: n,
        tls_hello: false,
        payload,
    }
}

fn source(n: u32) -> IpAddr {
    if n % 4 == 3 {
        IpAddr::V6(std::net::Ipv6Addr::new(
            0x2001,
            2,
            0,
            (n >> 16) as u16,
            0,
            0,
            0,
            n as u16,
        ))
    } else {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 | n))
    }
}

/// `[adaptive]` on with two services (everything, and one path) and request fingerprints (the
/// default), for the ingest beside the default configuration.
const ADAPTIVE: &str = "[adaptive]\nenabled = true\nstate_file = \"\"\n\
    [[adaptive.services]]\nname = \"all\"\n[[adaptive.services]]\nname = \"api\"\npath_prefix = \"/api/\"\n";

fn ingest(config_text: &str) -> (f64, serde_json::Value) {
    let settings = config::parse(config_text, "bench").expect("bench config");
    let paths = [
        "/api/items",
        "/api/login",
        "/",
        "/static/app.js",
        "/api/cart",
        "/search?q=x",
        "/health",
        "/api/checkout",
    ];
    let samples: Vec<SampleRecord> = (0..1_000_000u32)
        .map(|i| {
            sample(
                source(i % 100_000),
                1_000_000_000 + u64::from(i) * 1_000,
                paths[(i % 8) as usize],
            )
        })
        .collect();
    let mut rates = Vec::new();
    let mut decisions = 0;
    for _ in 0..5 {
        let mut d = Detector::new(&settings);
        let mut scratch = [0u8; SAMPLE_PAYLOAD_MAX + 2];
        let t = Instant::now();
        for s in &samples {
            if let Some(event) = s.event(&mut scratch) {
                decisions += d.observe(&event).len();
            }
        }
        rates.push(samples.len() as f64 / t.elapsed().as_secs_f64());
    }
    let per_sec = median(&mut rates);
    // Baseline: httparse alone (the request-start parser) over the same samples.
    let mut parse_rates = Vec::new();
    let mut parsed = 0usize;
    for _ in 0..5 {
        let mut scratch = [0u8; SAMPLE_PAYLOAD_MAX + 2];
        let t = Instant::now();
        for s in &samples {
            parsed += usize::from(parse_request(s.payload(), &mut scratch).is_some());
        }
        parse_rates.push(samples.len() as f64 / t.elapsed().as_secs_f64());
    }
    let parse_per_sec = median(&mut parse_rates);
    (
        per_sec,
        json!({
            "samples_per_sec_median": per_sec,
            "runs": rates,
            "decisions": decisions / 5,
            "httparse_alone_per_sec_median": parse_per_sec,
            "httparse_parsed": parsed / 5,
            "ratio_to_httparse_alone": per_sec / parse_per_sec,
        }),
    )
}

fn decision(target: Target) -> Decision {
    Decision {
        target,
        rule: "bench".into(),
        rate: 1000.0,
        threshold: 100.0,
        ttl: Duration::from_secs(3600),
        block: true,
        crossed_ns: 0,
        offence: 1,
        origin: Origin::Rule,
    }
}

fn filler(n: u32) -> Target {
    Target::host(
        std::net::Ipv6Addr::new(0x2001, 2, 0xfff0, 0, 0, 0, (n >> 16) as u16, n as u16).into(),
    )
}

/// Fills the exact map with daemon-made entries of distinct expiries (as an earlier run
/// would have left them).
fn fill_exact(pins: &TempPins) {
    let mut writer = MapWriter::open(&pins.pins).expect("open block maps");
    for n in 0..filter_common::capacity::BLOCK_EXACT {
        let entry = filter_user::bpf::maps::block_entry(
            Some(Duration::from_secs(3600 + u64::from(n % 3600))),
            filter_common::reason::RULE,
            "filler",
        );
        writer.write(filler(n), &entry).expect("fill");
    }
}

/// Milliseconds per decision write over 1,000 new sources: (p50, p99).
fn timed_writes(writer: &mut MapWriter) -> (f64, f64, usize) {
    let mut times = Vec::new();
    let mut evicted = 0;
    for n in 0..1000u32 {
        let target = Target::host(std::net::Ipv4Addr::from(0x0a10_0000 | n).into());
        let t = Instant::now();
        let written = writer.write_decision(&decision(target)).expect("write");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        evicted += usize::from(matches!(
            written,
            filter_user::enforce::writer::Written::Evicted(_)
        ));
    }
    (
        percentile(&mut times.clone(), 50.0),
        percentile(&mut times, 99.0),
        evicted,
    )
}

fn full_map_writes() -> serde_json::Value {
    let empty_pins = LoadedFilter::load();
    let mut writer = MapWriter::open(&empty_pins.pins.pins).expect("open");
    writer.adopt().expect("adopt");
    let (e50, e99, _) = timed_writes(&mut writer);
    drop(empty_pins);
    let full = LoadedFilter::load();
    fill_exact(&full.pins);
    let mut writer = MapWriter::open(&full.pins.pins).expect("open");
    let t = Instant::now();
    writer.adopt().expect("adopt");
    let adopt_s = t.elapsed().as_secs_f64();
    let (f50, f99, evicted) = timed_writes(&mut writer);
    assert_eq!(
        evicted, 1000,
        "every write into the full map evicts one entry"
    );
    json!({
        "empty_map_ms": { "p50": e50, "p99": e99 },
        "full_map_ms": { "p50": f50, "p99": f99 },
        "ratio_p99": f99 / e99,
        "adopt_1m_entries_s": adopt_s,
        "evicted": evicted,
    })
}

/// The idle daemon's CPU share over 20 s, with `entries` in the exact map.
fn idle_cpu(full: bool) -> f64 {
    let tb = Testbed::new();
    let pins = TempPins::new();
    {
        let _lock = pins.pins.lock().unwrap();
        filter_user::bpf::attach::ensure_loaded(&pins.pins).unwrap();
    }
    if full {
        fill_exact(&pins);
    }
    let daemon = tb.start_daemon(&pins, &test_config(""));
    let pid = daemon.process.child.id();
    // Let the start (the adoption pass) settle.
    std::thread::sleep(Duration::from_secs(3));
    let before = floodgate_bench::cpu_seconds(&[pid]);
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(20));
    (floodgate_bench::cpu_seconds(&[pid]) - before) / t.elapsed().as_secs_f64()
}

fn memory() -> (f64, f64, usize) {
    let settings = config::parse("[state]\nmax_tracked = 1048576\n", "bench").expect("config");
    let before = resident_bytes();
    let mut d = Detector::new(&settings);
    for i in 0..1_000_000u32 {
        let mut scratch = [0u8; SAMPLE_PAYLOAD_MAX + 2];
        if let Some(event) =
            sample(source(i), 1_000_000_000 + u64::from(i) * 100, "/").event(&mut scratch)
        {
            d.observe(&event);
        }
    }
    let tracked = d.tracked();
    let total = resident_bytes().saturating_sub(before) as f64;
    (total / tracked as f64, total, tracked)
}

fn latency() -> (Vec<f64>, serde_json::Value) {
    let tb = Testbed::new();
    let sources: Vec<IpAddr> = (1..=48)
        .map(|i| format!("198.18.3.{i}").parse().unwrap())
        .collect();
    tb.add_client_addrs(&sources);
    let _nginx = tb.start_nginx();
    let pins = TempPins::new();
    let config = "[filter]\nreset_connections = false\n[aggregation]\nmin_addresses = 0\n[[rules]]\nname = \"per-source-flood\"\nthreshold_rps = 100.0\nwindow = \"1s\"\nmin_samples = 8\nttl = \"10m\"\n";
    let _daemon = tb.start_daemon(&pins, &test_config(config));
    let loadgen = floodgate_bench::tool("loadgen");
    let mut args: Vec<String> = vec![
        format!("{SERVER_V4}:80"),
        "400".into(),
        "4".into(),
        "100".into(),
    ];
    args.extend(sources.iter().map(ToString::to_string));
    let out = tb
        .client
        .cmd(loadgen.to_str().expect("path"))
        .args(&args)
        .output()
        .expect("loadgen");
    assert!(
        out.status.success(),
        "loadgen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = floodgate_tests::floodgate_ok(&pins, &["block", "list", "--json"]);
    let blocks: serde_json::Value = serde_json::from_str(&list).expect("json");
    let mut latencies = Vec::new();
    let mut rows = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let r: serde_json::Value = serde_json::from_str(line).expect("loadgen json");
        let src = r["src"].as_str().unwrap();
        let block = blocks
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["target"] == src);
        let (Some(block), Some(cross)) = (block, r["cross_ns"].as_u64().filter(|c| *c > 0)) else {
            panic!("source {src} not blocked or never crossed: {r} {list}");
        };
        assert!(
            block["hits"].as_u64().unwrap() > 0,
            "{src}: the block dropped nothing"
        );
        let ms = (block["added_ns"].as_u64().unwrap() as f64 - cross as f64) / 1e6;
        latencies.push(ms);
        rows.push(json!({ "src": src, "latency_ms": ms, "answered": r["answered"] }));
    }
    (latencies, json!(rows))
}

fn kernel_costs() -> serde_json::Value {
    let mut f = LoadedFilter::load();
    f.filter.set_ports(&[80], &[]).unwrap();
    let request = v4_tcp(
        "198.18.0.2".parse().unwrap(),
        SERVER_V4,
        80,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let other = v4_tcp(
        "198.18.0.2".parse().unwrap(),
        SERVER_V4,
        443,
        b"\x16\x03\x01 tls",
    );
    let mut baseline = EbpfLoader::new()
        .load(floodgate_tests::kernel::BASELINE)
        .expect("baseline");
    for name in ["baseline_empty", "baseline_count_per_source"] {
        let p: &mut Xdp = baseline.program_mut(name).unwrap().try_into().unwrap();
        p.load().unwrap();
    }
    let time = |p: &Xdp, packet: &[u8]| {
        let mut runs: Vec<f64> = (0..5)
            .map(|_| {
                let mut o = TestRunOptions::new();
                o.data_in = Some(packet);
                o.repeat = 1_000_000;
                p.test_run(o).unwrap().duration.as_nanos() as f64
            })
            .collect();
        median(&mut runs)
    };
    let empty: &Xdp = baseline
        .program("baseline_empty")
        .unwrap()
        .try_into()
        .unwrap();
    let count: &Xdp = baseline
        .program("baseline_count_per_source")
        .unwrap()
        .try_into()
        .unwrap();
    let harness = time(empty, &request);
    let non_request = time(&f.program, &other) - harness;
    f.filter
        .set_setting(filter_common::config::SAMPLE_EVERY, 100)
        .unwrap();
    let sampled_1_in_100 = time(&f.program, &request) - harness;
    f.filter
        .set_setting(filter_common::config::SAMPLE_EVERY, 1)
        .unwrap();
    let sampled_every = time(&f.program, &request) - harness;
    let exact_count = time(count, &request) - harness;
    json!({
        "filter_non_request_ns": non_request,
        "filter_request_start_sample_1_in_100_ns": sampled_1_in_100,
        "filter_request_start_sample_every_ns": sampled_every,
        "exact_per_source_lru_percpu_count_ns": exact_count,
    })
}

/// Mean relative error of a 1-s rate estimate from 1-in-N sampling, by simulation.
fn sampling_error(rate: u32, n: u32) -> f64 {
    let mut seed = 0x9e37_79b9_u64;
    let mut rand = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let windows = 2000;
    let mut total = 0.0;
    for _ in 0..windows {
        let sampled = (0..rate).filter(|_| rand() % u64::from(n) == 0).count() as f64;
        total += (sampled * f64::from(n) - f64::from(rate)).abs() / f64::from(rate);
    }
    total / f64::from(windows)
}

fn main() {
    floodgate_tests::require_root();
    eprintln!("ingest…");
    let (per_sec, ingest_json) = ingest("");
    let (adaptive_per_sec, _) = ingest(ADAPTIVE);
    let (no_fingerprints_per_sec, _) = ingest(&ADAPTIVE.replacen(
        "enabled = true\n",
        "enabled = true\nfingerprints = false\n",
        1,
    ));
    eprintln!(
        "ingest {per_sec:.0} samples/s; with [adaptive] on (2 services) {adaptive_per_sec:.0} \
         samples/s, without fingerprints {no_fingerprints_per_sec:.0}"
    );
    if std::env::var_os("BENCH_DETECT_ONLY").is_some_and(|v| v == "ingest") {
        return;
    }
    eprintln!("memory…");
    let (bytes_per_client, total_bytes, tracked) = memory();
    eprintln!("detection latency (namespaces, nginx, daemon, 48 sources)…");
    let (mut latencies, latency_rows) = latency();
    let p50 = percentile(&mut latencies, 50.0);
    let p99 = percentile(&mut latencies, 99.0);
    eprintln!("kernel costs…");
    let costs = kernel_costs();
    eprintln!("decision writes, empty and full exact map…");
    let writes = full_map_writes();
    eprintln!("idle daemon CPU, empty maps and 1,048,576 entries…");
    let idle_empty = idle_cpu(false);
    let idle_full = idle_cpu(true);
    let errors: Vec<serde_json::Value> = [(150u32, 10u32), (150, 100), (1000, 10), (1000, 100), (10_000, 100), (10_000, 1000)]
        .iter()
        .map(|(rate, n)| json!({ "rate": rate, "sample_every": n, "mean_rel_error": sampling_error(*rate, *n) }))
        .collect();
    let mut text = String::new();
    text.push_str(&format!(
        "ingest (parse + rate + rules, 1 core)   {per_sec:>12.0} samples/s   target ≥ 1,000,000\n"
    ));
    text.push_str(&format!(
        "  with [adaptive] on (2 services)        {adaptive_per_sec:>12.0} samples/s   target ≥ 1,000,000\n"
    ));
    text.push_str(&format!(
        "  [adaptive] without fingerprints        {no_fingerprints_per_sec:>12.0} samples/s   fingerprints cost {:.0} ns/sample\n",
        (1e9 / adaptive_per_sec - 1e9 / no_fingerprints_per_sec).max(0.0)
    ));
    text.push_str(&format!(
        "  baseline httparse alone                {:>12.0} samples/s   ratio {:.2}\n",
        ingest_json["httparse_alone_per_sec_median"]
            .as_f64()
            .unwrap_or(0.0),
        ingest_json["ratio_to_httparse_alone"]
            .as_f64()
            .unwrap_or(0.0)
    ));
    text.push_str(&format!(
        "decision write, empty exact map          p50 {:.3} ms, p99 {:.3} ms\n\
         decision write, full exact map (evicts)  p50 {:.3} ms, p99 {:.3} ms   target ≤ 5 ms (p99 ratio {:.2})\n\
         adopting 1,048,576 entries at start      {:.2} s\n",
        writes["empty_map_ms"]["p50"].as_f64().unwrap_or(0.0),
        writes["empty_map_ms"]["p99"].as_f64().unwrap_or(0.0),
        writes["full_map_ms"]["p50"].as_f64().unwrap_or(0.0),
        writes["full_map_ms"]["p99"].as_f64().unwrap_or(0.0),
        writes["ratio_p99"].as_f64().unwrap_or(0.0),
        writes["adopt_1m_entries_s"].as_f64().unwrap_or(0.0),
    ));
    text.push_str(&format!(
        "idle daemon CPU, empty maps              {:>8.2} %\n\
         idle daemon CPU, 1,048,576 entries       {:>8.2} %\n",
        idle_empty * 100.0,
        idle_full * 100.0
    ));
    text.push_str(&format!(
        "memory per tracked client                {bytes_per_client:>12.1} B (slot {} B)   target ≤ 64\n",
        RateTable::bytes_per_key()
    ));
    text.push_str(&format!(
        "memory with {tracked} tracked clients   {:>12.1} MiB\n",
        total_bytes / 1048576.0
    ));
    text.push_str(&format!(
        "detection latency (cross → block)        p50 {p50:.1} ms, p99 {p99:.1} ms over {} sources   target p99 ≤ 250 ms\n",
        latencies.len()
    ));
    text.push_str(&format!(
        "kernel cost per packet (ns, harness subtracted): {costs}\n"
    ));
    text.push_str("sampling error of a 1-s rate estimate (mean relative):\n");
    for e in &errors {
        text.push_str(&format!(
            "  rate {:>6}/s, 1 in {:>4}: {:>6.1} %\n",
            e["rate"],
            e["sample_every"],
            e["mean_rel_error"].as_f64().unwrap() * 100.0
        ));
    }
    write_results(
        "detect",
        &text,
        &json!({
            "ingest": ingest_json,
            "ingest_adaptive_samples_per_sec_median": adaptive_per_sec,
            "ingest_adaptive_without_fingerprints_samples_per_sec_median": no_fingerprints_per_sec,
            "bytes_per_client": bytes_per_client,
            "total_bytes_1m": total_bytes,
            "tracked": tracked,
            "latency_ms": { "p50": p50, "p99": p99, "sources": latency_rows },
            "kernel_costs_ns": costs,
            "sampling_error": errors,
            "decision_writes": writes,
            "idle_cpu_share": { "empty": idle_empty, "full_1m": idle_full },
        }),
    );
    let _ = Duration::ZERO;
}
