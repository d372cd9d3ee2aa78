//! The daemon under what production does to it: a control client that connects and says
//! nothing while a flood is detected, and the protected interface deleted and created again
//! under the same name while a block is in force.

use std::{io::Read as _, net::IpAddr, os::unix::net::UnixStream, time::Duration};

use floodgate_tests::{
    TempPins, floodgate, floodgate_json, floodgate_ok,
    net::{SERVER_V4, Testbed, test_config},
    wait_until,
};

const CONFIG: &str = "[aggregation]\nmin_addresses = 0\n";

/// `latency=NNms` of the daemon's block line for `target`.
fn block_latency_ms(log: &str, target: IpAddr) -> Option<u64> {
    let prefix = format!("block {target} ");
    log.lines()
        .find(|l| l.contains(&prefix))
        .and_then(|l| l.split("latency=").nth(1))
        .and_then(|rest| rest.split("ms").next())
        .and_then(|n| n.parse().ok())
}

#[test]
fn a_silent_control_client_never_delays_decisions() {
    let tb = Testbed::new();
    let flooders: Vec<IpAddr> = (1..=4)
        .map(|n| format!("198.18.2.{n}").parse().unwrap())
        .collect();
    tb.add_client_addrs(&flooders);
    let _nginx = tb.start_nginx();
    let pins = TempPins::new();
    let daemon = tb.start_daemon(&pins, &test_config(CONFIG));
    // Connects, sends nothing, holds the connection for 5 s.
    let mut silent = UnixStream::connect(&daemon.socket).expect("connect to the control socket");
    let holder = std::thread::spawn(move || {
        silent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 1];
        let _ = silent.read(&mut buf);
    });
    tb.loadgen(env!("CARGO_BIN_EXE_loadgen"), &flooders, 400, 2);
    let decided = wait_until(Duration::from_secs(10), || {
        let log = daemon.process.log();
        flooders
            .iter()
            .all(|f| block_latency_ms(&log, *f).is_some())
    });
    let log = daemon.process.log();
    assert!(decided, "every flooder blocked: {log}");
    for flooder in &flooders {
        let latency = block_latency_ms(&log, *flooder).unwrap();
        assert!(
            latency <= 250,
            "{flooder}: decision landed {latency} ms after the crossing while a client held the \
             control socket silent: {log}"
        );
    }
    // And the server still answers others while that client waits.
    let top = floodgate_json(&pins, &["top", "--json"]);
    assert!(top["top"].is_array(), "{top}");
    holder.join().unwrap();
}

#[test]
fn a_recreated_interface_gets_the_filter_back() {
    let tb = Testbed::new();
    let flooder: IpAddr = "198.18.2.9".parse().unwrap();
    let legit: IpAddr = "198.18.0.10".parse().unwrap();
    tb.add_client_addrs(&[flooder, legit]);
    let _nginx = tb.start_nginx();
    let pins = TempPins::new();
    let daemon = tb.start_daemon(&pins, &test_config(CONFIG));
    floodgate_ok(&pins, &["block", "add", "198.18.2.9", "--reason", "test"]);
    let short = Duration::from_millis(500);
    assert_eq!(tb.get_timeout(flooder, SERVER_V4.into(), short), 0);

    let status = floodgate_json(&pins, &["status", "--json"]);
    assert_eq!(status["interfaces"][0]["attached"], true, "{status}");
    // The interface goes: the kernel drops our link with it. `status` says so and fails.
    tb.delete_link();
    assert!(
        wait_until(Duration::from_secs(10), || {
            daemon.process.log().contains("UNPROTECTED")
        }),
        "the loss is logged: {}",
        daemon.process.log()
    );
    let out = floodgate(&pins, &["status", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "status fails while unprotected: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["interfaces"][0]["attached"], false, "{status}");

    // It comes back under the same name: attached again, the block in force again.
    tb.create_link();
    tb.add_client_addrs(&[flooder, legit]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            daemon.process.log().contains("attached again")
        }),
        "the re-attach is logged: {}",
        daemon.process.log()
    );
    let status = floodgate_json(&pins, &["status", "--json"]);
    assert_eq!(status["interfaces"][0]["attached"], true, "{status}");
    assert!(
        wait_until(Duration::from_secs(10), || tb.get(legit, SERVER_V4.into())
            == 200),
        "the legitimate client is served again"
    );
    assert_eq!(
        tb.get_timeout(flooder, SERVER_V4.into(), short),
        0,
        "the blocked source is dropped again: {}",
        daemon.process.log()
    );
    let stats = floodgate_json(&pins, &["stats", "--json"]);
    assert!(stats["dropped_exact"].as_u64().unwrap() > 0, "{stats}");
}
