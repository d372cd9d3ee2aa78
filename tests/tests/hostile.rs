//! Hostile input and faults against the real daemon and program: the collateral-damage guard,
//! a full block map, a million spoofed sources, ring-buffer overload, kills at random points,
//! and the locked-down control surface.

use std::{
    net::IpAddr,
    os::unix::fs::PermissionsExt as _,
    process::Command,
    time::{Duration, Instant},
};

use filter_common::reason;
use filter_user::{bpf::maps::block_entry, enforce::writer::MapWriter, target::Target};
use floodgate_tests::{
    TempPins, blocked_targets, floodgate, floodgate_bin, floodgate_json,
    fuzz::Rng,
    net::{FloodPlan, SERVER_V4, Testbed, test_config},
    wait_until,
};

fn stats(pins: &TempPins) -> serde_json::Value {
    floodgate_json(pins, &["stats", "--json"])
}

#[test]
fn collateral_damage_guard_refuses_and_logs() {
    let tb = Testbed::new();
    let flooders: Vec<IpAddr> = (1..=3)
        .map(|i| format!("198.18.2.{i}").parse().unwrap())
        .collect();
    let neighbours: Vec<IpAddr> = (100..=103)
        .map(|i| format!("198.18.2.{i}").parse().unwrap())
        .collect();
    tb.add_client_addrs(&flooders);
    tb.add_client_addrs(&neighbours);
    let _nginx = tb.start_nginx();
    let pins = TempPins::new();
    let config = "allow = [\"198.18.2.3\"]\n[aggregation]\nmin_addresses = 3\n\
        [[rules]]\nname = \"per-source-flood\"\nthreshold_rps = 100.0\n\
        [[rules]]\nname = \"wide-prefix\"\nkey = \"prefix\"\nprefix_v4 = 8\nthreshold_rps = 150.0\n";
    let daemon = tb.start_daemon(&pins, &test_config(config));
    // The neighbours are seen as legitimate clients first.
    std::thread::scope(|s| {
        s.spawn(|| {
            let end = Instant::now() + Duration::from_secs(6);
            while Instant::now() < end {
                for n in &neighbours {
                    assert_eq!(
                        tb.get(*n, SERVER_V4.into()),
                        200,
                        "neighbour {n} must stay served"
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        std::thread::sleep(Duration::from_millis(1500));
        tb.loadgen(env!("CARGO_BIN_EXE_loadgen"), &flooders, 400, 3);
    });
    // The decisions land during the load or shortly after; machines differ in speed.
    wait_until(Duration::from_secs(10), || {
        let listed = blocked_targets(&pins);
        ["198.18.2.1", "198.18.2.2"]
            .iter()
            .all(|a| listed.contains(&(*a).to_owned()))
    });
    let log = daemon.process.log();
    let listed = blocked_targets(&pins);
    assert!(
        listed.contains(&"198.18.2.1".to_owned()) && listed.contains(&"198.18.2.2".to_owned()),
        "{listed:?}\n{log}"
    );
    assert!(
        !listed.iter().any(|b| b.contains('/')),
        "no prefix block got through: {listed:?}"
    );
    assert!(
        !listed.contains(&"198.18.2.3".to_owned()),
        "allow-listed flooder not blocked"
    );
    assert!(
        log.contains("refused to block 198.18.2.3 ") && log.contains("on the allow list"),
        "{log}"
    );
    assert!(
        log.contains("refused to block 198.0.0.0/8") && log.contains("wider than the limit /16"),
        "{log}"
    );
    assert!(
        log.contains("refused to block 198.18.2.0/24")
            && log.contains("legitimate clients seen recently"),
        "{log}"
    );
}

#[test]
fn flood_members_not_yet_blocked_do_not_shield_their_prefix() {
    // 120 flooders in one /24, starting 10 ms apart: when the 16th is blocked and the /24 is
    // aggregated, most of the others are flooding but not yet over the threshold. They are no
    // legitimate clients of that /24 (the guard once counted them and refused it); the behaved
    // clients elsewhere and one behaved neighbour inside are.
    let tb = Testbed::new();
    let flooders: Vec<IpAddr> = (1..=120)
        .map(|i| format!("198.18.4.{i}").parse().unwrap())
        .collect();
    let neighbour: IpAddr = "198.18.4.250".parse().unwrap();
    let behaved: Vec<IpAddr> = (1..=20)
        .map(|i| format!("198.18.9.{i}").parse().unwrap())
        .chain([neighbour])
        .collect();
    tb.add_client_addrs(&flooders);
    tb.add_client_addrs(&behaved);
    let _nginx = tb.start_nginx();
    let pins = TempPins::new();
    let daemon = tb.start_daemon(
        &pins,
        &test_config(
            "[[rules]]\nname = \"per-source-flood\"\nsensor = \"kernel\"\nthreshold_rps = 100.0\n",
        ),
    );
    std::thread::scope(|s| {
        for client in &behaved {
            s.spawn(|| {
                let end = Instant::now() + Duration::from_secs(8);
                while Instant::now() < end {
                    let _ = tb.get_timeout(*client, SERVER_V4.into(), Duration::from_secs(1));
                    std::thread::sleep(Duration::from_millis(250));
                }
            });
        }
        // Behaved clients are known for a while before the flood.
        std::thread::sleep(Duration::from_secs(2));
        tb.loadgen_staggered(env!("CARGO_BIN_EXE_loadgen"), &flooders, 200, 4, 10);
    });
    let aggregated = wait_until(Duration::from_secs(10), || {
        blocked_targets(&pins).contains(&"198.18.4.0/24".to_owned())
    });
    let log = daemon.process.log();
    assert!(
        aggregated,
        "the flood's /24 was not aggregated: {:?}\n{log}",
        blocked_targets(&pins)
    );
    assert!(!log.contains("refused to block 198.18.4.0/24"), "{log}");
    let blocked = blocked_targets(&pins);
    for client in &behaved[..20] {
        assert!(
            !blocked.contains(&client.to_string()),
            "behaved {client} blocked"
        );
    }
}

#[test]
fn a_full_block_map_evicts_the_daemons_soonest_entry() {
    let tb = Testbed::new();
    let flooder: IpAddr = "198.18.2.1".parse().unwrap();
    tb.add_client_addrs(&[flooder]);
    let _nginx = tb.start_nginx();
    let pins = TempPins::new();
    {
        let _lock = pins.pins.lock().unwrap();
        filter_user::bpf::attach::ensure_loaded(&pins.pins).unwrap();
    }
    // The map is full before the daemon starts (entries of an earlier run and an operator's):
    // the daemon adopts them into its expiry index at start.
    let mut writer = MapWriter::open(&pins.pins).unwrap();
    let capacity = filter_common::capacity::BLOCK_EXACT;
    let key = |n: u32| {
        Target::host(
            std::net::Ipv6Addr::new(0x2001, 2, 0xfff0, 0, 0, 0, (n >> 16) as u16, n as u16).into(),
        )
    };
    let rule = block_entry(Some(Duration::from_secs(3600)), reason::RULE, "filler");
    let manual = block_entry(Some(Duration::from_secs(60)), reason::MANUAL, "operator");
    let soonest = block_entry(
        Some(Duration::from_secs(600)),
        reason::RULE,
        "filler-soonest",
    );
    for n in 0..capacity {
        let entry = match n {
            0..1000 => &manual,
            77_777 => &soonest,
            _ => &rule,
        };
        writer.write(key(n), entry).unwrap();
    }
    drop(writer);
    assert!(
        matches!(
            MapWriter::open(&pins.pins)
                .unwrap()
                .write(key(capacity), &rule),
            Err(filter_user::bpf::maps::MapsError::Full { .. })
        ),
        "the map is full (and a one-shot writer, the operator's, never evicts)"
    );
    let daemon = tb.start_daemon(&pins, &test_config("[state]\nsweep_interval = \"1h\"\n"));
    let filter = filter_user::bpf::maps::Maps::open(&pins.pins).unwrap();
    tb.loadgen(env!("CARGO_BIN_EXE_loadgen"), &[flooder], 400, 2);
    // The decision lands while or shortly after the load runs; machines differ in speed.
    assert!(
        wait_until(Duration::from_secs(10), || filter
            .block_entry(Target::host(flooder))
            .unwrap()
            .is_some()),
        "{}",
        daemon.process.log()
    );
    assert!(
        filter.block_entry(key(77_777)).unwrap().is_none(),
        "the daemon's soonest entry was evicted"
    );
    assert!(
        filter.block_entry(key(5)).unwrap().is_some(),
        "operator entries are never evicted"
    );
    assert!(
        daemon
            .process
            .log()
            .contains("full (1048576 entries): evicted 2001:2:fff0::1:2fd1"),
        "{}",
        daemon.process.log()
    );
}

#[test]
fn a_million_spoofed_sources_leave_memory_legit_clients_and_the_cli_alone() {
    let tb = Testbed::new();
    let legit: IpAddr = "198.18.0.10".parse().unwrap();
    tb.add_client_addrs(&[legit]);
    // The server's answers (RSTs) to spoofed sources go nowhere.
    tb.server
        .run(&["ip", "route", "add", "blackhole", "198.19.0.0/16"]);
    tb.server.run(&[
        "ip",
        "-6",
        "route",
        "add",
        "blackhole",
        "2001:2:0:ff00::/56",
    ]);
    let _nginx = tb.start_nginx();
    let pins = TempPins::new();
    let daemon = tb.start_daemon(&pins, &test_config("[state]\nmax_tracked = 65536\n"));
    let rss = || {
        let statm =
            std::fs::read_to_string(format!("/proc/{}/statm", daemon.process.child.id())).unwrap();
        statm
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 4096
    };
    let rss_before = rss();
    let before = stats(&pins);
    let mac = tb.server_mac();
    let mut slowest = Duration::ZERO;
    std::thread::scope(|s| {
        let spoof = s.spawn(|| {
            tb.client.run(&[
                env!("CARGO_BIN_EXE_spoof"),
                &tb.client_if,
                "198.19.0.1",
                &SERVER_V4.to_string(),
                &mac,
                "1000000",
                "--distinct",
            ]);
        });
        while !spoof.is_finished() {
            let t = Instant::now();
            let _ = stats(&pins);
            slowest = slowest.max(t.elapsed());
            assert_eq!(
                tb.get(legit, SERVER_V4.into()),
                200,
                "legitimate client served during the spoofed flood"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let after = stats(&pins);
    let delta = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    // Nearly all of them reach the program (a veth under load may drop a few before XDP).
    assert!(delta("request_starts") >= 900_000, "{after}");
    // Sampled 1 in N (N adapts to the rate); none of them is verified, none reaches the daemon.
    assert!(delta("samples_unverified") >= 1_000, "{after}");
    assert!(
        delta("samples") < 100,
        "spoofed segments are never samples: {after}"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "floodgate stats took {slowest:?}"
    );
    let grown = rss().saturating_sub(rss_before);
    eprintln!(
        "1,000,000 spoofed sources: daemon RSS {rss_before} → {} bytes, slowest `stats` {slowest:?}, {after}",
        rss()
    );
    assert!(grown < 16 << 20, "daemon memory grew by {grown} bytes");
    assert!(
        blocked_targets(&pins).is_empty(),
        "no spoofed source (nor the legitimate client) blocked"
    );
}

#[test]
fn ring_buffer_overload_is_counted_and_the_daemon_recovers() {
    let tb = Testbed::new();
    let plan = FloodPlan::on(&tb, 16, 0);
    let _nginx = tb.start_nginx();
    let pins = TempPins::new();
    // Generous threshold: this is about sample overload, not blocking.
    let daemon = tb.start_daemon(
        &pins,
        &test_config("[[rules]]\nname = \"lenient\"\nthreshold_rps = 100000.0\n"),
    );
    daemon.process.signal(libc::SIGSTOP);
    let shim = Testbed::build_shim();
    let mut wrk = tb.start_wrk(
        &shim,
        &plan.flood4,
        &format!("http://{SERVER_V4}/"),
        Duration::from_secs(6),
        128,
    );
    wrk.wait_exit(Duration::from_secs(15))
        .expect("wrk is bounded");
    let _ = std::fs::remove_file(&shim);
    let lost = stats(&pins)["samples_lost"].as_u64().unwrap();
    daemon.process.signal(libc::SIGCONT);
    assert!(
        lost > 0,
        "a stopped reader lets the ring fill: losses counted ({})",
        stats(&pins)
    );
    let t = Instant::now();
    let top = Command::new(floodgate_bin())
        .args(["top", "--json"])
        .env("FLOODGATE_CONTROL_SOCKET", &daemon.socket)
        .output()
        .unwrap();
    assert!(
        top.status.success() && t.elapsed() < Duration::from_secs(5),
        "daemon answers after overload: {}",
        String::from_utf8_lossy(&top.stderr)
    );
    assert!(tb.get(plan.legit[0], SERVER_V4.into()) == 200);
}

#[test]
fn kills_at_random_points_lose_no_block() {
    let tb = Testbed::new();
    let plan = FloodPlan::on(&tb, 24, 0);
    let _nginx = tb.start_nginx();
    let pins = TempPins::new();
    let config = test_config("[aggregation]\nmin_addresses = 0\n");
    let shim = Testbed::build_shim();
    let mut rng = Rng::new(std::process::id().into());
    let mut known: Vec<String> = Vec::new();
    for round in 0..3 {
        let mut daemon = tb.start_daemon(&pins, &config);
        if round > 0 {
            assert!(
                daemon.process.log().contains("program Adopted")
                    && daemon.process.log().contains("XDP link Adopted"),
                "{}",
                daemon.process.log()
            );
        }
        let sources = &plan.flood4[round * 8..round * 8 + 8];
        let mut wrk = tb.start_wrk(
            &shim,
            sources,
            &format!("http://{SERVER_V4}/"),
            Duration::from_secs(2),
            32,
        );
        // Kill during the burst of decisions, the second time right after a reload.
        std::thread::sleep(Duration::from_millis(150 + rng.below(450)));
        if round == 1 {
            daemon.process.signal(libc::SIGHUP);
        }
        let before_kill = blocked_targets(&pins);
        daemon.process.signal(libc::SIGKILL);
        daemon
            .process
            .wait_exit(Duration::from_secs(5))
            .expect("killed");
        wrk.wait_exit(Duration::from_secs(10))
            .expect("wrk is bounded");
        let after = blocked_targets(&pins);
        for b in known.iter().chain(&before_kill) {
            assert!(
                after.contains(b),
                "round {round}: block {b} lost (had {before_kill:?}, now {after:?})"
            );
        }
        // Enforcing while the daemon is dead.
        if let Some(blocked) = after.iter().find_map(|b| b.parse::<IpAddr>().ok()) {
            assert_eq!(
                tb.get_timeout(blocked, SERVER_V4.into(), Duration::from_millis(800)),
                0,
                "{blocked} still dropped"
            );
        }
        known = after;
    }
    let _ = std::fs::remove_file(&shim);
    assert!(!known.is_empty(), "the floods were blocked at all");
    assert_eq!(tb.get(plan.legit[0], SERVER_V4.into()), 200);
}

#[test]
fn the_control_surface_is_root_only() {
    let tb = Testbed::new();
    let pins = TempPins::new();
    let daemon = tb.start_daemon(&pins, &test_config(""));
    for dir in [
        pins.root(),
        pins.root().join("v1"),
        pins.root().join("v1/maps"),
        pins.root().join("v1/links"),
    ] {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
    let mode = std::fs::metadata(&daemon.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "control socket");
    // Unprivileged: one line saying so, exit 4.
    for args in [
        &["block", "list"][..],
        &["block", "add", "198.18.0.1"],
        &["stats"],
    ] {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(floodgate_bin())
            .args(args)
            .env("FLOODGATE_PIN_ROOT", pins.root())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("root") && stderr.contains("CAP_BPF"),
            "{stderr}"
        );
    }
    // A configuration others can write is refused.
    std::fs::set_permissions(&daemon.config_path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = floodgate(
        &pins,
        &["check-config", daemon.config_path.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("writable by group or others"));
}
