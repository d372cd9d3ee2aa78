//! `cargo xtask bench all` ends here: reads bench-results/{verdict,detect,drop,survival}.json,
//! draws the drop-capacity plot and writes BENCHMARKS.md and bench-results/benchmarks.json.

use std::fmt::Write as _;

use floodgate_bench::plot;
use serde_json::{Value, json};

fn read(dir: &std::path::Path, name: &str) -> Value {
    let path = dir.join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run ./x bench {name} first)", path.display()));
    serde_json::from_str(&text).expect("benchmark json")
}

fn spread(runs: &Value) -> String {
    let v: Vec<f64> = runs
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    if v.is_empty() {
        return String::new();
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.2}–{max:.2}")
}

fn command(args: &[&str]) -> String {
    std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn plot_drop(drop: &Value) {
    let path = plot::png("drop");
    let root = plot::canvas(&path, (1200, 500));
    let panels = root.split_evenly((1, 2));
    for (sources, area) in ["256", "65536"].iter().zip(panels.iter()) {
        let bars: Vec<(String, f64)> = drop[*sources]["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    r["method"].as_str().unwrap_or("").to_owned(),
                    r["mpps_median"].as_f64().unwrap_or(0.0),
                )
            })
            .collect();
        plot::bars(
            area,
            &format!("drop capacity, {sources} sources (Mpps, median of 5)"),
            &bars,
            "floodgate",
        );
    }
    root.present().expect("write drop.png");
}

fn main() {
    let dir = floodgate_bench::results::dir();
    let (verdict, detect, drop, survival) = (
        read(&dir, "verdict"),
        read(&dir, "detect"),
        read(&dir, "drop"),
        read(&dir, "survival"),
    );
    plot_drop(&drop);
    let cpu = command(&["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"]);
    let mut md = String::new();
    let _ = writeln!(md, "# Floodgate benchmarks\n");
    let _ = writeln!(
        md,
        "Machine: {} × {cpu}, {} GiB, Linux {}. Generated {} by `./x bench all` (each part: `./x bench verdict|detect|drop|survival`). \
         Absolute numbers on a shared 2-core VM move from run to run; the ratios measured in the same run are the result. \
         Every figure is a median of at least 5 runs; the spread (min–max over runs) is given where the runs are in the JSON.\n",
        command(&["nproc"]),
        command(&[
            "sh",
            "-c",
            "awk '/MemTotal/ {printf \"%.0f\", $2/1048576}' /proc/meminfo"
        ]),
        command(&["uname", "-r"]),
        command(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]),
    );
    let _ = writeln!(
        md,
        "Raw data: `bench-results/*.json`; plots: `bench-results/drop.png`, `bench-results/survival.png`, `bench-results/loadtest.png` (`./x loadtest`).\n"
    );

    let _ = writeln!(md, "## 1. Drop capacity (`./x bench drop`)\n");
    let _ = writeln!(
        md,
        "A generator program runs through `BPF_PROG_TEST_RUN` in live-frames mode in the sender namespace, rewrites each 60-byte IPv4/UDP frame's source to the next of N addresses and redirects it into a veth; the receiving namespace drops it with each method in turn. Maps and sets hold 1,000,000 entries (the flooding sources among them); Floodgate's allow list (1,000) and prefix map (1,000) are populated. The generator thread is pinned to CPU 1 and the receiving veth's NAPI runs in softirq on the same CPU, so each figure is sender + receiver on one core; drop-all is the floor (generator + veth). 2,000,000 frames per run, 5 runs. iptables is Debian's nf_tables backend with an ipset (hash:ip) match in the raw table; nftables drops in a netdev ingress chain with a set.\n"
    );
    for sources in ["256", "65536"] {
        let d = &drop[sources];
        let _ = writeln!(
            md,
            "**{sources} sources**\n\n| method | Mpps (median) | spread | ns/packet above the floor |\n|---|---:|---:|---:|"
        );
        for r in d["rows"].as_array().into_iter().flatten() {
            let _ = writeln!(
                md,
                "| {} | {:.2} | {} | {:.1} |",
                r["method"].as_str().unwrap_or(""),
                r["mpps_median"].as_f64().unwrap_or(0.0),
                spread(&r["mpps_runs"]),
                r["ns_above_floor"].as_f64().unwrap_or(0.0)
            );
        }
        let _ = writeln!(
            md,
            "\nFloodgate / minimal XDP: **{:.2}×** (target ≥ 0.85). Floodgate / iptables raw: **{:.2}×** (target ≥ 2.5).\n",
            d["floodgate_vs_minimal"].as_f64().unwrap_or(0.0),
            d["floodgate_vs_iptables"].as_f64().unwrap_or(0.0)
        );
    }
    let _ = writeln!(
        md,
        "With 65,536 sources every method pays cache misses in a 1,000,000-entry table on every packet and they converge; with 256 hot sources the per-method cost shows.\n"
    );

    let _ = writeln!(md, "## 2. Verdict cost (`./x bench verdict`)\n");
    let _ = writeln!(
        md,
        "Cost per packet through `BPF_PROG_TEST_RUN` (median of {} runs × {} repetitions), 1,000,000 exact entries and 100,000 prefixes loaded; the empty program's cost (the harness) is subtracted; ratio to the minimal exact-hash-drop program.\n",
        verdict["runs"], verdict["repeat"]
    );
    let _ = writeln!(
        md,
        "| path | Floodgate ns | minimal ns | empty ns | ratio (target ≤ 1.5) |\n|---|---:|---:|---:|---:|"
    );
    for r in verdict["rows"].as_array().into_iter().flatten() {
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.1} | {:.1} | {:.2}× |",
            r["path"].as_str().unwrap_or(""),
            r["floodgate_ns"].as_f64().unwrap_or(0.0),
            r["minimal_ns"].as_f64().unwrap_or(0.0),
            r["empty_ns"].as_f64().unwrap_or(0.0),
            r["ratio"].as_f64().unwrap_or(0.0)
        );
    }
    let _ = writeln!(
        md,
        "\nPrefix drops walk an LPM trie of 100,000 prefixes; the minimal program has no prefix stage at all (it pays one hash miss), so that ratio compares different work.\n"
    );

    let _ = writeln!(md, "## 3. Flood survival (`./x bench survival`)\n");
    let _ = writeln!(
        md,
        "nginx proxies to a backend that spends 2 ms of CPU per request under one lock (≤ 500 requests/s: it really fails under a flood). Legitimate clients send 20 requests/s open loop, each on a new connection with a 2 s timeout; 64 addresses flood for 10 s, with wrk (closed loop, 128 connections) and with 100 pipelined requests/s each (open loop: wrk alone only offers what the server completes, about 8 requests/s per address here, less than a legitimate client). Side by side in one run: no protection, nginx `limit_req` per address (10 r/s, burst 10), Floodgate (per-source rule at 15 requests/s). Latency percentiles count a failed request as 2,000 ms. Recovery: from the flood start until every later legitimate request succeeds under 2× the idle median. CPU: nginx and backend processes during the flood. `bench-results/survival.png`: legitimate latency and the backend's completed requests per second over time, per mode.\n"
    );
    let _ = writeln!(
        md,
        "| mode | legit success | p50 ms | p99 ms | idle p50 ms | recovery s | flood requests served | server CPU s |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in survival["rows"].as_array().into_iter().flatten() {
        let _ = writeln!(
            md,
            "| {} | {:.2} % | {:.1} | {:.1} | {:.2} | {} | {:.0} | {:.1} |",
            r["mode"].as_str().unwrap_or(""),
            r["legit_success"].as_f64().unwrap_or(0.0) * 100.0,
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            r["idle_p50_ms"].as_f64().unwrap_or(0.0),
            r["recovery_s"]
                .as_f64()
                .map_or("never".to_owned(), |v| format!("{v:.2}")),
            r["flood_served"].as_f64().unwrap_or(0.0),
            r["server_cpu_s"].as_f64().unwrap_or(0.0)
        );
    }
    let _ = writeln!(
        md,
        "\nTargets with Floodgate: legitimate success ≥ 99.9 % and p99 ≤ 2× idle once mitigated, mitigation ≤ 1 s. The p99 over the whole flood window includes the moments before the blocks; after the recovery time every legitimate request is under 2× idle by its definition. nginx `limit_req` counts the requests nginx reads: the saturated backend holds each flooding address at about 8 processed requests/s, under its 10 r/s limit, so it never fires; Floodgate counts request starts as they arrive at XDP, blocks the sources and closes their established connections (`ss -K`), which stops the work they had queued.\n"
    );

    let _ = writeln!(md, "## 4. Daemon (`./x bench detect`)\n");
    let ingest = &detect["ingest"];
    let _ = writeln!(md, "| figure | value | target |\n|---|---:|---|");
    let _ = writeln!(
        md,
        "| sample ingest, one core (parse + rate + rules), median of 5 | {:.0}/s (spread {}) | ≥ 1,000,000/s |",
        ingest["samples_per_sec_median"].as_f64().unwrap_or(0.0),
        spread(&ingest["runs"])
    );
    let _ = writeln!(
        md,
        "| detection latency threshold crossing → block in force, p50 / p99 over {} sources | {:.2} / {:.2} ms | p99 ≤ 250 ms |",
        detect["latency_ms"]["sources"]
            .as_array()
            .map_or(0, Vec::len),
        detect["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
        detect["latency_ms"]["p99"].as_f64().unwrap_or(0.0)
    );
    let _ = writeln!(
        md,
        "| memory per tracked client (1,000,000 distinct sources) | {:.1} B | ≤ 64 B |",
        detect["bytes_per_client"].as_f64().unwrap_or(0.0)
    );
    let _ = writeln!(
        md,
        "| memory in total with {} tracked | {:.1} MiB | |",
        detect["tracked"],
        detect["total_bytes_1m"].as_f64().unwrap_or(0.0) / 1_048_576.0
    );
    let _ = writeln!(
        md,
        "\nKernel cost per packet (ns, harness subtracted): {}.\n",
        detect["kernel_costs_ns"]
    );
    let _ = writeln!(
        md,
        "Sampling error of a 1 s rate estimate (mean relative): {}. Exact per-source counting in the kernel costs about the same per packet as the sampled path but cannot be made spoof-proof without a socket lookup per request start, and its map must be scanned from userspace to act on it; sampling with handshake verification is kept, and `min_samples` guards against a single heavily weighted sample.\n",
        detect["sampling_error"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| format!(
                "{}/s at 1-in-{}: {:.0} %",
                e["rate"],
                e["sample_every"],
                e["mean_rel_error"].as_f64().unwrap_or(0.0) * 100.0
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let _ = writeln!(
        md,
        "## Reproduce\n\n```sh\n./x bench all        # everything above, then this file\n./x bench verdict    # section 2\n./x bench detect     # section 4\n./x bench drop       # section 1\n./x bench survival   # section 3\n./x loadtest         # the load-test kit's report and plot\n./x fuzz --time 120  # fuzzing counts\n```"
    );
    std::fs::write(dir.join("../BENCHMARKS.md"), &md).expect("write BENCHMARKS.md");
    std::fs::write(
        dir.join("benchmarks.json"),
        serde_json::to_string_pretty(
            &json!({ "verdict": verdict, "detect": detect, "drop": drop, "survival": survival }),
        )
        .unwrap(),
    )
    .unwrap();
    println!("wrote BENCHMARKS.md and bench-results/benchmarks.json");
}
