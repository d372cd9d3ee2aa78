//! Running it like a service: SIGHUP reload (applied without detaching or losing a block; an
//! invalid file rejected with the reason while the running configuration stays), restart
//! keeping every entry with its remaining TTL, a foreign pinned layout refused clearly, and
//! Prometheus metrics that move during a flood.

use std::{net::IpAddr, time::Duration};

use floodgate_tests::{
    TempPins, floodgate, floodgate_bin, floodgate_ok,
    net::{SERVER_V4, Testbed, test_config},
    wait_until,
};

fn status(pins: &TempPins) -> serde_json::Value {
    serde_json::from_str(&floodgate_ok(pins, &["status", "--json"])).unwrap()
}

fn block_ttl(pins: &TempPins, target: &str) -> Option<u64> {
    let v: serde_json::Value =
        serde_json::from_str(&floodgate_ok(pins, &["block", "list", "--json"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .find(|b| b["target"] == target)
        .map(|b| b["ttl_remaining_secs"].as_u64().expect("has a TTL"))
}

#[test]
fn sighup_reload_applies_and_rejects_without_losing_blocks() {
    let tb = Testbed::new();
    let pins = TempPins::new();
    let mut daemon = tb.start_daemon(&pins, &test_config("[filter]\nports = [80]\n"));
    floodgate_ok(&pins, &["block", "add", "198.18.9.9", "--ttl", "10m"]);
    let program_id = status(&pins)["program_id"].clone();
    assert_eq!(status(&pins)["ports"], serde_json::json!([80]));

    std::fs::write(&daemon.config_path, test_config("allow = [\"198.18.0.10\"]\n[filter]\nports = [80, 8080]\n[[rules]]\nname = \"tight\"\nthreshold_rps = 20.0\n")).unwrap();
    daemon.process.signal(libc::SIGHUP);
    daemon
        .process
        .wait_for_log("reloaded", Duration::from_secs(5));
    assert_eq!(status(&pins)["ports"], serde_json::json!([80, 8080]));
    assert!(floodgate_ok(&pins, &["allow", "list"]).contains("198.18.0.10"));
    assert_eq!(status(&pins)["program_id"], program_id, "not re-attached");
    assert!(
        block_ttl(&pins, "198.18.9.9").is_some(),
        "block kept over reload"
    );

    std::fs::write(&daemon.config_path, test_config("[filter]\nports = [0]\n")).unwrap();
    daemon.process.signal(libc::SIGHUP);
    daemon
        .process
        .wait_for_log("reload rejected", Duration::from_secs(5));
    assert!(
        daemon.process.log().contains("filter.ports"),
        "the reason names the key:\n{}",
        daemon.process.log()
    );
    assert_eq!(
        status(&pins)["ports"],
        serde_json::json!([80, 8080]),
        "the running configuration stays"
    );

    // Dropping an allow entry from the file removes it on reload.
    std::fs::write(&daemon.config_path, test_config("[filter]\nports = [80]\n")).unwrap();
    daemon.process.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(5), || !floodgate_ok(
        &pins,
        &["allow", "list"]
    )
    .contains("198.18.0.10")));
    daemon.stop();
}

#[test]
fn reload_command_answers_with_the_outcome() {
    let tb = Testbed::new();
    let pins = TempPins::new();
    let mut daemon = tb.start_daemon(&pins, &test_config("[filter]\nports = [80]\n"));
    std::fs::write(
        &daemon.config_path,
        test_config("allow = [\"198.18.0.11\"]\n[filter]\nports = [80, 8081]\n"),
    )
    .unwrap();
    let reloaded: serde_json::Value =
        serde_json::from_str(&floodgate_ok(&pins, &["reload", "--json"])).unwrap();
    assert_eq!(
        reloaded["ports"],
        serde_json::json!([80, 8081]),
        "{reloaded}"
    );
    assert_eq!(reloaded["allow"], 1, "{reloaded}");
    assert_eq!(status(&pins)["ports"], serde_json::json!([80, 8081]));

    std::fs::write(&daemon.config_path, "[filter\n").unwrap();
    let refused = floodgate(&pins, &["reload"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid configuration, the running one stays in force")
            && stderr.contains(daemon.config_path.to_str().unwrap()),
        "{stderr}"
    );
    assert_eq!(status(&pins)["ports"], serde_json::json!([80, 8081]));
    daemon.stop();
    let down = floodgate(&pins, &["reload"]);
    assert_eq!(
        down.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
}

#[test]
fn restart_keeps_entries_with_their_remaining_ttl() {
    let tb = Testbed::new();
    let pins = TempPins::new();
    let mut daemon = tb.start_daemon(&pins, &test_config(""));
    floodgate_ok(&pins, &["block", "add", "198.18.9.9", "--ttl", "10m"]);
    floodgate_ok(&pins, &["block", "add", "2001:2:9::/64"]);
    floodgate_ok(&pins, &["allow", "add", "198.18.0.10"]);
    std::thread::sleep(Duration::from_millis(1500));
    daemon.stop();
    let ttl_before = block_ttl(&pins, "198.18.9.9").expect("kept after SIGTERM");
    let daemon = tb.start_daemon(&pins, &test_config(""));
    assert!(
        daemon.process.log().contains("XDP link Adopted"),
        "{}",
        daemon.process.log()
    );
    let ttl_after = block_ttl(&pins, "198.18.9.9").expect("kept after restart");
    assert!(
        ttl_after <= ttl_before && ttl_after >= 590,
        "TTL keeps counting down, not reset: {ttl_before} → {ttl_after}"
    );
    assert!(ttl_before < 600);
    let list = floodgate_ok(&pins, &["block", "list", "--json"]);
    assert!(
        list.contains("2001:2:9::/64") && list.contains("\"ttl_remaining_secs\": null"),
        "{list}"
    );
    assert!(floodgate_ok(&pins, &["allow", "list"]).contains("198.18.0.10"));
}

#[test]
fn a_foreign_layout_is_refused_with_a_way_out() {
    let tb = Testbed::new();
    let pins = TempPins::new();
    std::fs::create_dir_all(pins.root().join("v0")).unwrap();
    let out = tb
        .server
        .cmd(floodgate_bin().to_str().unwrap())
        .args([
            "run",
            "--iface",
            &tb.server_if,
            "--metrics-listen",
            "off",
            "--control-socket",
            "/run/fg-layout-test.sock",
        ])
        .env("FLOODGATE_PIN_ROOT", pins.root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("layout v0") && stderr.contains("floodgate detach"),
        "{stderr}"
    );
    assert!(
        !pins.root().join("v1").exists(),
        "nothing loaded next to a foreign layout"
    );
    let _ = std::fs::remove_dir(pins.root().join("v0"));
}

fn scrape(tb: &Testbed, port: u16) -> String {
    let out = tb
        .server
        .cmd("curl")
        .args([
            "-s",
            "--max-time",
            "2",
            &format!("http://127.0.0.1:{port}/metrics"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name_and_labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn prometheus_metrics_move_during_a_flood() {
    let tb = Testbed::new();
    let flood: Vec<IpAddr> = (1..=8)
        .map(|i| format!("198.18.4.{i}").parse().unwrap())
        .collect();
    tb.add_client_addrs(&flood);
    let _nginx = tb.start_nginx();
    let pins = TempPins::new();
    let port = 9480;
    let config =
        format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n[aggregation]\nmin_addresses = 0\n");
    let daemon = tb.start_daemon(&pins, &config);
    assert!(wait_until(Duration::from_secs(5), || scrape(&tb, port)
        .contains("floodgate_sample_every")));
    let before = scrape(&tb, port);
    let shim = Testbed::build_shim();
    let mut wrk = tb.start_wrk(
        &shim,
        &flood,
        &format!("http://{SERVER_V4}/"),
        Duration::from_secs(3),
        16,
    );
    wrk.wait_exit(Duration::from_secs(15))
        .expect("wrk is bounded");
    let _ = std::fs::remove_file(&shim);
    std::thread::sleep(Duration::from_millis(1500));
    let after = scrape(&tb, port);
    let moved = |name: &str| metric(&after, name) > metric(&before, name);
    assert!(moved("floodgate_request_starts_total"), "{after}");
    assert!(moved("floodgate_samples_total{fate=\"taken\"}"), "{after}");
    assert!(
        moved("floodgate_packets_total{outcome=\"dropped_exact\"}"),
        "{after}"
    );
    assert!(
        moved("floodgate_packets_total{outcome=\"passed\"}"),
        "{after}"
    );
    assert!(
        metric(&after, "floodgate_decisions_total{") >= 8.0,
        "{after}"
    );
    assert!(
        metric(&after, "floodgate_active_blocks{kind=\"exact\"}") >= 8.0,
        "{after}"
    );
    assert!(
        metric(&after, "floodgate_detection_latency_seconds_count") >= 8.0,
        "{after}"
    );
    assert!(
        metric(&after, "floodgate_tracked_clients") >= 8.0,
        "{after}"
    );
    assert!(
        metric(&after, "floodgate_daemon_resident_bytes") > 1e6,
        "{after}"
    );
    assert!(metric(&after, "floodgate_sample_every") >= 1.0, "{after}");
    assert!(
        daemon.process.log().contains("block 198.18.4."),
        "{}",
        daemon.process.log()
    );
}

#[test]
fn a_different_pinned_program_is_upgraded_in_place() {
    use aya::programs::{
        Xdp,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    };
    let tb = Testbed::new();
    let _nginx = tb.start_nginx();
    let pins = TempPins::new();
    let mut daemon = tb.start_daemon(&pins, &test_config(""));
    floodgate_ok(&pins, &["block", "add", "198.18.9.9", "--ttl", "10m"]);
    daemon.stop();
    let link_path = pins.pins.link(&tb.server_if);
    let link_id = || {
        FdLink::from(PinnedLink::from_pin(&link_path).unwrap())
            .info()
            .unwrap()
            .id()
    };
    let id_before = link_id();
    // The previous release's program, simulated by the drop-all baseline: pinned and in the link.
    let mut old = aya::EbpfLoader::new()
        .load(floodgate_tests::kernel::BASELINE)
        .unwrap();
    let program: &mut Xdp = old
        .program_mut("baseline_drop_all")
        .unwrap()
        .try_into()
        .unwrap();
    program.load().unwrap();
    let link = XdpLink::try_from(FdLink::from(PinnedLink::from_pin(&link_path).unwrap())).unwrap();
    program.attach_to_link(link).unwrap();
    std::fs::remove_file(pins.pins.program()).unwrap();
    program.pin(pins.pins.program()).unwrap();
    drop(old);
    let client: IpAddr = floodgate_tests::net::CLIENT_V4.into();
    assert_eq!(
        tb.get_timeout(client, SERVER_V4.into(), Duration::from_millis(800)),
        0,
        "the old program is in force"
    );

    let daemon = tb.start_daemon(&pins, &test_config(""));
    let log = daemon.process.log();
    assert!(
        log.contains("program upgraded in place") && log.contains("program Upgraded"),
        "{log}"
    );
    assert!(log.contains("XDP link Adopted"), "no second attach: {log}");
    assert_eq!(link_id(), id_before, "the same link, its program swapped");
    assert_eq!(
        tb.get(client, SERVER_V4.into()),
        200,
        "the new program filters"
    );
    assert!(
        block_ttl(&pins, "198.18.9.9").is_some(),
        "blocks kept over the upgrade"
    );
}

#[test]
fn systemd_notify_protocol_ready_reloading_stopping() {
    let tb = Testbed::new();
    let pins = TempPins::new();
    let dir = std::env::temp_dir().join(floodgate_tests::unique("fg-notify-"));
    std::fs::create_dir_all(&dir).unwrap();
    let notify_path = dir.join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let config = dir.join("floodgate.toml");
    std::fs::write(
        &config,
        floodgate_tests::net::private_feed(&test_config(""), &dir),
    )
    .unwrap();
    let mut daemon = floodgate_tests::ChildGuard::spawn(
        &floodgate_tests::unique("floodgate-notify"),
        tb.server
            .cmd(floodgate_bin().to_str().unwrap())
            .args(["run", "--iface", &tb.server_if, "--config"])
            .arg(&config)
            .arg("--control-socket")
            .arg(dir.join("control.sock"))
            .env("FLOODGATE_PIN_ROOT", pins.root())
            .env("NOTIFY_SOCKET", &notify_path),
    );
    let next = |daemon: &floodgate_tests::ChildGuard| {
        let mut buf = [0u8; 512];
        let n = notify
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification ({e}):\n{}", daemon.log()));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = next(&daemon);
    assert!(ready.starts_with("READY=1"), "{ready}");
    daemon.signal(libc::SIGHUP);
    let reloading = next(&daemon);
    assert!(
        reloading.starts_with("RELOADING=1") && reloading.contains("MONOTONIC_USEC="),
        "{reloading}"
    );
    assert!(next(&daemon).starts_with("READY=1"));
    daemon.signal(libc::SIGTERM);
    assert!(next(&daemon).starts_with("STOPPING=1"));
    assert!(
        daemon
            .wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
    let _ = std::fs::remove_dir_all(&dir);
}
