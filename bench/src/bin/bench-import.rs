//! `cargo xtask bench import`: `floodgate block import` of a 100,000-entry list (65,536 IPv4
//! and 26,368 IPv6 addresses, 4,096 IPv4 /28 and 4,000 IPv6 /64 prefixes) into freshly
//! flushed pinned maps, next to `ipset restore` of the same list into hash:net sets (one per
//! family) in a test namespace, in the same run. Each figure is the wall time of the whole
//! command (process start, parse, guard checks, writes); median of 5 runs. Target ≤ 2 s.
//! The addresses are keys only: no packet is sent.

use std::{
    io::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use floodgate_bench::results::{median, write_results};
use floodgate_tests::{TempPins, floodgate, floodgate_bin, kernel::LoadedFilter, net::NetNs};
use serde_json::json;

const V4_HOSTS: u32 = 65_536;
const V4_PREFIXES: u32 = 4_096;
const V6_HOSTS: u32 = 26_368;
const V6_PREFIXES: u32 = 4_000;
const RUNS: usize = 5;
const TARGET_SECS: f64 = 2.0;

/// The list, one target per line (FireHOL style), v4 and v6 interleaved.
fn list() -> (Vec<String>, Vec<String>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for n in 0..V4_HOSTS {
        v4.push(Ipv4Addr::from(0xc612_0000 | n).to_string());
    }
    for n in 0..V4_PREFIXES {
        v4.push(format!("{}/28", Ipv4Addr::from(0xc613_0000 | (n << 4))));
    }
    for n in 0..V6_HOSTS {
        v6.push(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, (n >> 16) as u16, n as u16).to_string());
    }
    for n in 0..V6_PREFIXES {
        v6.push(format!(
            "{}/64",
            Ipv6Addr::new(0x2001, 2, 0, 1 + n as u16, 0, 0, 0, 0)
        ));
    }
    (v4, v6)
}

fn timed(cmd: &mut Command, stdin: Option<&[u8]>) -> f64 {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(bytes) = stdin {
        input.write_all(bytes).expect("write stdin");
    }
    drop(input);
    let out = child.wait_with_output().expect("wait");
    let secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    secs
}

fn import(pins: &TempPins, file: &Path, config: &Path, extra: &[&str]) -> f64 {
    timed(
        Command::new(floodgate_bin())
            .args(["block", "import"])
            .arg(file)
            .arg("--config")
            .arg(config)
            .args(extra)
            .env("FLOODGATE_PIN_ROOT", pins.root())
            .env("FLOODGATE_CONTROL_SOCKET", pins.control_socket()),
        None,
    )
}

fn main() {
    floodgate_tests::require_root();
    let (v4, v6) = list();
    let total = v4.len() + v6.len();
    // Interleave the families as a merged feed would.
    let mut lines = Vec::with_capacity(total);
    let (mut a, mut b) = (v4.iter(), v6.iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => break,
            (x, y) => lines.extend(x.into_iter().chain(y)),
        }
    }
    let dir = std::env::temp_dir().join(floodgate_tests::unique("fg-bench-import-"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("list.netset");
    let mut text = format!("# bench list: {total} entries\n");
    for line in &lines {
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(&file, &text).expect("write list");
    let config = dir.join("floodgate.toml");
    std::fs::write(&config, "").expect("write config");
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let restore = format!(
        "create fgbench4 hash:net family inet maxelem 262144\n\
         create fgbench6 hash:net family inet6 maxelem 262144\n{}{}",
        v4.iter()
            .map(|t| format!("add fgbench4 {t}\n"))
            .collect::<String>(),
        v6.iter()
            .map(|t| format!("add fgbench6 {t}\n"))
            .collect::<String>(),
    );

    let filter = LoadedFilter::load();
    let pins = &filter.pins;
    let ns = NetNs::new("fgbimp");
    let (mut fg, mut dry, mut ipset) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        let out = floodgate(pins, &["block", "flush"]);
        assert!(out.status.success(), "flush");
        dry.push(import(pins, &file, &config, &["--dry-run"]));
        fg.push(import(pins, &file, &config, &[]));
        let list = floodgate_tests::floodgate_json(pins, &["status", "--json"]);
        let (exact, prefix) = (
            list["maps"]["block_exact"]["entries"].as_u64().unwrap_or(0),
            list["maps"]["block_prefix"]["entries"]
                .as_u64()
                .unwrap_or(0),
        );
        assert_eq!(
            (exact, prefix),
            (
                u64::from(V4_HOSTS + V6_HOSTS),
                u64::from(V4_PREFIXES + V6_PREFIXES)
            ),
            "every entry imported"
        );
        let _ = ns.cmd("ipset").args(["destroy"]).output();
        ipset.push(timed(
            ns.cmd("ipset").arg("restore"),
            Some(restore.as_bytes()),
        ));
        eprintln!(
            "run {}: floodgate {:.3} s (dry run {:.3} s), ipset restore {:.3} s",
            run + 1,
            fg[run],
            dry[run],
            ipset[run]
        );
    }
    let _ = ns.cmd("ipset").args(["destroy"]).output();
    let _ = std::fs::remove_dir_all(&dir);
    let (fg_runs, dry_runs, ipset_runs) = (fg.clone(), dry.clone(), ipset.clone());
    let (fg_m, dry_m, ipset_m) = (median(&mut fg), median(&mut dry), median(&mut ipset));
    let ratio = fg_m / ipset_m;
    let text = format!(
        "{total} entries ({V4_HOSTS} v4 and {V6_HOSTS} v6 addresses, {V4_PREFIXES} v4 /28 and {V6_PREFIXES} v6 /64 prefixes), median of {RUNS} runs\n\
         floodgate block import: {fg_m:.3} s (target ≤ {TARGET_SECS} s: {})\n\
         floodgate block import --dry-run (read, parse, guard): {dry_m:.3} s\n\
         ipset restore (hash:net, two sets): {ipset_m:.3} s\n\
         floodgate / ipset: {ratio:.2}×\n",
        if fg_m <= TARGET_SECS { "met" } else { "MISSED" }
    );
    write_results(
        "import",
        &text,
        &json!({
            "entries": total,
            "v4_hosts": V4_HOSTS, "v4_prefixes": V4_PREFIXES,
            "v6_hosts": V6_HOSTS, "v6_prefixes": V6_PREFIXES,
            "runs": RUNS,
            "floodgate_secs_median": fg_m, "floodgate_secs_runs": fg_runs,
            "dry_run_secs_median": dry_m, "dry_run_secs_runs": dry_runs,
            "ipset_restore_secs_median": ipset_m, "ipset_restore_secs_runs": ipset_runs,
            "ratio_to_ipset": ratio,
            "target_secs": TARGET_SECS,
        }),
    );
}
