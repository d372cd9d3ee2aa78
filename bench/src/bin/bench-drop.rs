//! `cargo xtask bench drop`: drop capacity on a veth pair between two namespaces. A generator
//! (`bench_generator`, run through `BPF_PROG_TEST_RUN` in live-frames mode in the sender
//! namespace) gives each 60-byte IPv4/UDP frame the next of N source addresses and redirects it
//! into the veth; the receiving end drops it with each method in turn: nothing (the stack),
//! iptables raw-table DROP (ipset), nftables netdev-ingress drop (set), Floodgate in generic
//! (SKB) mode, the minimal hash-drop XDP program, xdp-filter of xdp-tools (native mode, the
//! XDP deny list users run today), Floodgate in driver mode, and XDP drop-all (the floor).
//! Floodgate's maps, the ipset and the nftables set hold 1,000,000 entries each; xdp-filter's
//! map holds at most 10,000, so with 65,536 sources it denies only that many and the rest
//! reach the stack (reported beside its figure). Floodgate's allow list and prefix map are
//! populated as in production. 256 and 65,536 sources, 5 runs each, medians.
//!
//! Pinning: the generator thread is pinned to CPU 1. Redirected frames are received by the
//! veth's NAPI in softirq on the same CPU, so each figure is sender + receiver on one core;
//! the drop-all floor measures the generator and veth alone.

use std::{
    net::{IpAddr, Ipv4Addr},
    process::Command,
    time::Instant,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap},
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
};
use filter_common::{Addr, reason};
use filter_user::{bpf::maps::block_entry, target::Target};
use floodgate_bench::{
    peers::xdp_filter::XdpFilter,
    results::{median, write_results},
};
use floodgate_tests::{
    TempPins,
    net::{NetNs, Testbed},
    packet::{ETH_IPV4, V4Opts, ethernet, ipv4, udp},
};
use serde_json::json;

const FRAMES_PER_RUN: u32 = 2_000_000;
const RUNS: usize = 5;
const MAP_ENTRIES: u32 = 1_000_000;
const FIRST_SOURCE: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 0);

fn link(ns: &NetNs, iface: &str) -> serde_json::Value {
    let out = ns
        .cmd("ip")
        .args(["-j", "-s", "link", "show", iface])
        .output()
        .expect("ip link");
    serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("ip -j")[0].clone()
}

fn source(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(FIRST_SOURCE) + n)
}

/// The members of the iptables and nftables sets: every possible flooding source plus IPv4
/// fillers, 1,000,000 in all like the XDP maps.
fn set_members() -> Vec<Ipv4Addr> {
    (0..MAP_ENTRIES)
        .map(|n| {
            if n < 65_536 {
                source(n)
            } else {
                Ipv4Addr::from(0x0a00_0000 + n)
            }
        })
        .collect()
}

/// Runs `f` on a thread inside `ns` (attach calls resolve interfaces in the caller's namespace).
fn in_ns<T: Send>(ns: &NetNs, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter_current_thread();
            f()
        })
        .join()
        .expect("thread in namespace")
    })
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity on this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// One generator run: frames per second through the whole path.
fn generate(tb: &Testbed, generator: &Xdp, frame: &[u8]) -> f64 {
    in_ns(&tb.client, || {
        pin_to_cpu(1);
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.repeat = FRAMES_PER_RUN;
        opts.attrs = TestRunAttrs::new().xdp_live_frames(64);
        let t = Instant::now();
        generator.test_run(opts).expect("live-frames test run");
        f64::from(FRAMES_PER_RUN) / t.elapsed().as_secs_f64()
    })
}

fn sh_in(ns: &NetNs, args: &[&str]) {
    ns.run(args);
}

fn main() {
    floodgate_tests::require_root();
    let tb = Testbed::new();
    let server_link = link(&tb.server, &tb.server_if);
    let client_link = link(&tb.client, &tb.client_if);
    let server_mac: Vec<u8> = server_link["address"]
        .as_str()
        .unwrap()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    let client_ifindex = client_link["ifindex"].as_u64().unwrap() as u32;
    // Redirected frames need NAPI (GRO) on the receiving veth when it has no XDP program.
    sh_in(&tb.server, &["ethtool", "-K", &tb.server_if, "gro", "on"]);
    sh_in(
        &tb.server,
        &["ip", "route", "add", "blackhole", "198.19.0.0/16"],
    );
    let mut frame = ethernet(
        &[],
        ETH_IPV4,
        &ipv4(
            FIRST_SOURCE,
            Ipv4Addr::new(198, 18, 0, 1),
            17,
            V4Opts::default(),
            &udp(4000, 9, &[0u8; 18]),
        ),
    );
    frame[..6].copy_from_slice(&server_mac);

    eprintln!("loading programs and filling maps with {MAP_ENTRIES} entries…");
    let mut baseline: Ebpf = EbpfLoader::new()
        .load(floodgate_tests::kernel::BASELINE)
        .expect("baseline object");
    for name in ["bench_generator", "baseline_drop_all", "baseline_hash_drop"] {
        let p: &mut Xdp = baseline.program_mut(name).unwrap().try_into().unwrap();
        p.load().expect(name);
    }
    {
        let mut cfg: Array<_, u32> =
            Array::try_from(baseline.map_mut("GEN_CONFIG").unwrap()).unwrap();
        cfg.set(0, &client_ifindex, 0).unwrap();
        cfg.set(2, &u32::from(FIRST_SOURCE), 0).unwrap();
    }
    let pins = TempPins::new();
    {
        let _lock = pins.pins.lock().unwrap();
        filter_user::bpf::attach::ensure_loaded(&pins.pins).unwrap();
    }
    let mut filter = filter_user::enforce::writer::MapWriter::open(&pins.pins).unwrap();
    let mut maps = filter_user::bpf::maps::Maps::open(&pins.pins).unwrap();
    let entry = block_entry(None, reason::RULE, "bench");
    {
        let mut base_map: HashMap<_, Addr, u64> =
            HashMap::try_from(baseline.map_mut("BASE_BLOCK").unwrap()).unwrap();
        for n in 0..MAP_ENTRIES {
            // The first 65,536 are the flooding sources; the rest fill the map.
            let ip: IpAddr = if n < 65_536 {
                source(n).into()
            } else {
                std::net::Ipv6Addr::new(0x2001, 2, 0xfff0, 0, 0, 0, (n >> 16) as u16, n as u16)
                    .into()
            };
            let t = Target::host(ip);
            filter.write(t, &entry).unwrap();
            base_map.insert(&t.key(), &1, 0).unwrap();
        }
    }
    for n in 0..1000u32 {
        filter
            .write(
                Target::covering(Ipv4Addr::from(0x0a00_0000 | (n << 8)).into(), 24),
                &entry,
            )
            .unwrap();
        maps.allow(Target::host(Ipv4Addr::from(0x0b00_0000 | n).into()))
            .unwrap();
    }
    maps.set_ports(&[80, 8080], &[443]).unwrap();

    let methods = [
        "none",
        "iptables-raw",
        "nftables-ingress",
        "floodgate-generic",
        "minimal-xdp",
        "xdp-filter",
        "floodgate",
        "drop-all",
    ];
    let mut results = serde_json::Map::new();
    // Per source count: xdp-filter's (sources denied, entries held, capacity), share dropped.
    let mut xdp_filter_held = std::collections::BTreeMap::new();
    let mut xdp_filter_dropped = std::collections::BTreeMap::new();
    let mut text = format!(
        "{:<18} {:>9} {:>14} {:>14}\n",
        "method", "sources", "Mpps (median)", "ns above floor"
    );
    for sources in [256u32, 65_536] {
        {
            let mut cfg: Array<_, u32> =
                Array::try_from(baseline.map_mut("GEN_CONFIG").unwrap()).unwrap();
            cfg.set(1, &sources, 0).unwrap();
        }
        let mut mpps = std::collections::BTreeMap::new();
        for method in methods {
            // Set up the receiving side.
            let mut attached = None;
            let mut xdp_filter = None;
            match method {
                "none" => {}
                "iptables-raw" => {
                    sh_in(
                        &tb.server,
                        &[
                            "ipset", "create", "fgbench", "hash:ip", "maxelem", "2000000",
                        ],
                    );
                    let mut restore = String::new();
                    for ip in set_members() {
                        restore.push_str(&format!("add fgbench {ip}\n"));
                    }
                    let mut child = tb
                        .server
                        .cmd("ipset")
                        .arg("restore")
                        .stdin(std::process::Stdio::piped())
                        .spawn()
                        .unwrap();
                    std::io::Write::write_all(child.stdin.as_mut().unwrap(), restore.as_bytes())
                        .unwrap();
                    assert!(child.wait().unwrap().success());
                    sh_in(
                        &tb.server,
                        &[
                            "iptables",
                            "-t",
                            "raw",
                            "-A",
                            "PREROUTING",
                            "-m",
                            "set",
                            "--match-set",
                            "fgbench",
                            "src",
                            "-j",
                            "DROP",
                        ],
                    );
                }
                "nftables-ingress" => {
                    let elements: Vec<String> =
                        set_members().iter().map(ToString::to_string).collect();
                    let script = format!(
                        "table netdev fgbench {{\n set flooders {{ type ipv4_addr; elements = {{ {} }} }}\n chain ingress {{ type filter hook ingress device \"{}\" priority -500; ip saddr @flooders drop; }}\n}}\n",
                        elements.join(", "),
                        tb.server_if
                    );
                    let path = std::env::temp_dir().join(floodgate_tests::unique("fg-nft-"));
                    std::fs::write(&path, script).unwrap();
                    tb.server.run(&["nft", "-f", path.to_str().unwrap()]);
                    let _ = std::fs::remove_file(&path);
                }
                "floodgate-generic" | "floodgate" => {
                    let mode = if method == "floodgate" {
                        XdpMode::Driver
                    } else {
                        XdpMode::Skb
                    };
                    in_ns(&tb.server, || {
                        filter_user::bpf::attach::attach(&pins.pins, &tb.server_if, mode).unwrap()
                    });
                }
                "xdp-filter" => {
                    let peer = XdpFilter::load(&tb.server, &tb.server_if);
                    let flooding: Vec<Ipv4Addr> = (0..sources).map(source).collect();
                    let (denied, held, capacity) = peer.deny(&flooding);
                    xdp_filter_held.insert(sources, (denied, held, capacity));
                    xdp_filter = Some(peer);
                }
                "minimal-xdp" | "drop-all" => {
                    let name = if method == "drop-all" {
                        "baseline_drop_all"
                    } else {
                        "baseline_hash_drop"
                    };
                    let index = server_link["ifindex"].as_u64().unwrap() as u32;
                    let p: &mut Xdp = baseline.program_mut(name).unwrap().try_into().unwrap();
                    let id = in_ns(&tb.server, || p.attach(index, XdpMode::Driver).unwrap());
                    attached = Some((name, id));
                }
                _ => unreachable!(),
            }
            let generator: &Xdp = baseline
                .program("bench_generator")
                .unwrap()
                .try_into()
                .unwrap();
            let before = maps.counters().unwrap();
            let mut runs: Vec<f64> = (0..RUNS)
                .map(|_| generate(&tb, generator, &frame) / 1e6)
                .collect();
            if method == "floodgate" {
                let after = maps.counters().unwrap();
                let dropped = after[filter_common::counter::DROPPED_EXACT as usize]
                    - before[filter_common::counter::DROPPED_EXACT as usize];
                assert!(
                    dropped as f64 >= 0.99 * f64::from(FRAMES_PER_RUN) * RUNS as f64,
                    "floodgate dropped {dropped} of the frames"
                );
            }
            if let Some(peer) = &xdp_filter {
                let dropped = peer.dropped();
                let share = dropped as f64 / (f64::from(FRAMES_PER_RUN) * RUNS as f64);
                let (denied, ..) = xdp_filter_held[&sources];
                // It must drop every frame of a source it holds, and none of the others.
                let expected = denied as f64 / f64::from(sources);
                assert!(
                    (share - expected).abs() < 0.02,
                    "xdp-filter dropped {:.1} % of the frames; it denies {denied} of {sources} sources",
                    share * 100.0
                );
                xdp_filter_dropped.insert(sources, share);
            }
            drop(xdp_filter);
            let m = median(&mut runs);
            eprintln!("{method:<18} {sources:>6} sources: {m:.2} Mpps {runs:.2?}");
            mpps.insert(method, (m, runs));
            // Tear the receiving side down.
            match method {
                "iptables-raw" => {
                    sh_in(&tb.server, &["iptables", "-t", "raw", "-F", "PREROUTING"]);
                    sh_in(&tb.server, &["ipset", "destroy", "fgbench"]);
                }
                "nftables-ingress" => {
                    sh_in(&tb.server, &["nft", "delete", "table", "netdev", "fgbench"])
                }
                "floodgate-generic" | "floodgate" => {
                    filter_user::bpf::attach::detach_interface(&pins.pins, &tb.server_if).unwrap()
                }
                _ => {}
            }
            if let Some((name, id)) = attached {
                let p: &mut Xdp = baseline.program_mut(name).unwrap().try_into().unwrap();
                p.detach(id).unwrap();
            }
        }
        let floor = mpps["drop-all"].0;
        let mut rows = Vec::new();
        for method in methods {
            let (m, runs) = &mpps[method];
            let above = 1000.0 / m - 1000.0 / floor;
            text.push_str(&format!(
                "{method:<18} {sources:>9} {m:>14.2} {above:>14.1}\n"
            ));
            rows.push(json!({ "method": method, "mpps_median": m, "mpps_runs": runs, "ns_above_floor": above }));
        }
        let fg = mpps["floodgate"].0;
        let ratio_min = fg / mpps["minimal-xdp"].0;
        let ratio_ipt = fg / mpps["iptables-raw"].0;
        text.push_str(&format!(
            "  floodgate / minimal XDP = {ratio_min:.2}x (target ≥ 0.85); floodgate / iptables raw = {ratio_ipt:.2}x (target ≥ 2.5); floodgate / nftables = {:.2}x; driver / generic = {:.2}x\n",
            fg / mpps["nftables-ingress"].0,
            fg / mpps["floodgate-generic"].0
        ));
        let (denied, held, capacity) = xdp_filter_held[&sources];
        let share = xdp_filter_dropped[&sources];
        text.push_str(&format!(
            "  xdp-filter denies {denied} of {sources} sources (its filter_ipv4 map holds {held} of {capacity} entries; Floodgate's holds {MAP_ENTRIES}) and dropped {:.1} % of the frames; floodgate / xdp-filter = {:.2}x\n",
            share * 100.0,
            fg / mpps["xdp-filter"].0
        ));
        results.insert(sources.to_string(), json!({ "rows": rows, "floodgate_vs_minimal": ratio_min, "floodgate_vs_iptables": ratio_ipt,
            "xdp_filter": { "sources_denied": denied, "entries_held": held, "capacity": capacity, "frames_dropped_share": share, "floodgate_vs_xdp_filter": fg / mpps["xdp-filter"].0 } }));
    }
    text.push_str(&format!("{FRAMES_PER_RUN} frames per run, {RUNS} runs, medians; maps and sets hold {MAP_ENTRIES} entries; iptables is the nf_tables backend with an ipset match; generator pinned to CPU 1 (receiver NAPI on the same CPU)\n"));
    write_results("drop", &text, &serde_json::Value::Object(results));
    let _ = Command::new("true").status();
}
