//! End to end: two namespaces over a veth pair, the XDP program attached in driver mode on the
//! server side by the real daemon, a real nginx, curl clients on allowed and to-be-blocked
//! addresses over IPv4 and IPv6; blocks through the CLI, expiry, a killed and a restarted daemon.

use std::{net::IpAddr, time::Duration};

use floodgate_tests::{
    TempPins, floodgate, floodgate_ok,
    net::{SERVER_V4, SERVER_V6, Testbed, test_config},
    wait_until,
};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn block_unblock_expire_and_survive_the_daemon() {
    let tb = Testbed::new();
    let (good4, bad4, good6, bad6) = (
        ip("198.18.0.10"),
        ip("198.18.0.20"),
        ip("2001:2::10"),
        ip("2001:2::20"),
    );
    tb.add_client_addrs(&[good4, bad4, good6, bad6]);
    let _nginx = tb.start_nginx();
    let pins = TempPins::new();
    let mut daemon = tb.start_daemon(&pins, &test_config(""));
    assert!(
        daemon
            .process
            .log()
            .contains("XDP link Created (Driver mode)"),
        "{}",
        daemon.process.log()
    );

    let s4: IpAddr = SERVER_V4.into();
    let s6: IpAddr = SERVER_V6.into();
    let short = Duration::from_millis(800);
    for (src, dst) in [(good4, s4), (bad4, s4), (good6, s6), (bad6, s6)] {
        assert_eq!(tb.get(src, dst), 200, "{src} before any block");
    }

    // Block by CLI: the blocked ones fail, the others succeed.
    floodgate_ok(
        &pins,
        &[
            "block",
            "add",
            "198.18.0.20",
            "2001:2::20",
            "--reason",
            "e2e",
        ],
    );
    assert_eq!(
        tb.get_timeout(bad4, s4, short),
        0,
        "blocked v4 must not get through"
    );
    assert_eq!(
        tb.get_timeout(bad6, s6, short),
        0,
        "blocked v6 must not get through"
    );
    assert_eq!(tb.get(good4, s4), 200);
    assert_eq!(tb.get(good6, s6), 200);
    let stats: serde_json::Value =
        serde_json::from_str(&floodgate_ok(&pins, &["stats", "--json"])).unwrap();
    assert!(stats["dropped_exact"].as_u64().unwrap() > 0, "{stats}");

    // Unblock: recovery.
    floodgate_ok(&pins, &["block", "del", "198.18.0.20", "2001:2::20"]);
    assert_eq!(tb.get(bad4, s4), 200);
    assert_eq!(tb.get(bad6, s6), 200);

    // A short TTL: blocked, then through again after expiry.
    floodgate_ok(&pins, &["block", "add", "198.18.0.20", "--ttl", "2s"]);
    assert_eq!(tb.get_timeout(bad4, s4, short), 0);
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(tb.get(bad4, s4), 200, "expired block must not drop");
    // The daemon's sweep removes it from the map.
    assert!(wait_until(Duration::from_secs(3), || !floodgate_ok(
        &pins,
        &["block", "list"]
    )
    .contains("198.18.0.20")));

    // Daemon killed: the pinned filter keeps enforcing.
    floodgate_ok(&pins, &["block", "add", "198.18.0.20"]);
    floodgate_ok(&pins, &["block", "add", "2001:2::/64", "--ttl", "10m"]);
    daemon.process.signal(libc::SIGKILL);
    daemon
        .process
        .wait_exit(Duration::from_secs(5))
        .expect("killed");
    assert_eq!(
        tb.get_timeout(bad4, s4, short),
        0,
        "blocks enforced with the daemon dead"
    );
    assert_eq!(
        tb.get_timeout(good6, s6, short),
        0,
        "prefix block enforced with the daemon dead"
    );
    assert_eq!(tb.get(good4, s4), 200);

    // Restarted: re-adopts program and link, lists the same blocks.
    let daemon = tb.start_daemon(&pins, &test_config(""));
    let log = daemon.process.log();
    assert!(
        log.contains("program Adopted") && log.contains("XDP link Adopted"),
        "{log}"
    );
    let list: serde_json::Value =
        serde_json::from_str(&floodgate_ok(&pins, &["block", "list", "--json"])).unwrap();
    let targets: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["target"].as_str().unwrap())
        .collect();
    assert!(
        targets.contains(&"198.18.0.20") && targets.contains(&"2001:2::/64"),
        "{list}"
    );
    assert_eq!(tb.get_timeout(bad4, s4, short), 0);

    // Detach removes everything: traffic flows, pins gone.
    floodgate_ok(&pins, &["detach"]);
    assert_eq!(tb.get(bad4, s4), 200);
    assert!(!pins.root().exists());
    let out = floodgate(&pins, &["block", "list"]);
    assert_eq!(out.status.code(), Some(3), "nothing loaded → exit 3");
}
