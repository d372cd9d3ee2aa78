//! Floods inside TLS and HTTP/2, end to end: nginx or HAProxy terminating TLS (a certificate
//! the test makes) and writing the request feed with the lines `floodgate proxy-snippet`
//! prints, the real daemon reading it and the kernel sensor counting TLS handshakes, h2load
//! flooding from many addresses over HTTPS/HTTP/2, cleartext HTTP/2 and HTTP/1.1 over TLS, and
//! legitimate HTTPS clients alongside. Then what a hostile local user or a broken proxy can
//! send to the feed.

use std::{
    net::IpAddr,
    path::Path,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use floodgate_tests::{
    TempPins, blocked_targets,
    edge::{Cert, feed_socket, port},
    floodgate_json,
    net::{Daemon, FloodPlan, SERVER_V4, SERVER_V6, Testbed, test_config},
    wait_until,
};

/// The daemon's configuration for these tests: the feed on `socket`, TLS port 443 watched by
/// the kernel sensor, and the rules under test.
fn config(socket: &Path, rules: &str) -> String {
    test_config(&format!(
        "[filter]\ntls_ports = [443]\nports = [80]\n\
         [aggregation]\nmin_addresses = 0\n\
         [proxy]\nsocket = \"{}\"\n{rules}",
        socket.display()
    ))
}

const FLOOD_RULES: &str = "[[rules]]\nname = \"proxy-flood\"\nsensor = \"proxy\"\nthreshold_rps = 100.0\n\
    [[rules]]\nname = \"kernel-flood\"\nsensor = \"kernel\"\nthreshold_rps = 100.0\n";

/// Every flooder is blocked, no legitimate client is.
fn blocked_exactly(pins: &TempPins, daemon: &Daemon, flooders: &[IpAddr], legit: &[IpAddr]) {
    // The last decisions may land just after the load ends; machines differ in speed.
    wait_until(Duration::from_secs(10), || {
        let blocks = blocked_targets(pins);
        flooders.iter().all(|f| blocks.contains(&f.to_string()))
    });
    let blocks = blocked_targets(pins);
    let log = daemon.process.log();
    for flooder in flooders {
        assert!(
            blocks.contains(&flooder.to_string()),
            "flooder {flooder} not blocked: {blocks:?}\n{log}"
        );
    }
    for client in legit {
        assert!(
            !blocks.contains(&client.to_string()),
            "legitimate {client} blocked\n{log}"
        );
    }
}

/// Block latencies the daemon logged (crossing → block in force), ms.
fn latencies(daemon: &Daemon) -> Vec<f64> {
    daemon
        .process
        .log()
        .lines()
        .filter(|l| l.contains("block ") && l.contains("latency="))
        .filter_map(|l| l.split("latency=").nth(1))
        .filter_map(|v| v.split("ms").next().and_then(|n| n.parse().ok()))
        .collect()
}

/// Legitimate HTTPS clients (HTTP/2 and HTTP/1.1, v4 and v6), each a request every 250 ms on
/// a new connection, for `run`; counted into `ok` and `failed`.
fn run_legit<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    tb: &'s Testbed,
    legit: &'s [IpAddr],
    run: Duration,
    ok: &'s AtomicU32,
    failed: &'s AtomicU32,
) {
    for (i, src) in legit.iter().enumerate() {
        scope.spawn(move || {
            let dst: IpAddr = if src.is_ipv4() {
                SERVER_V4.into()
            } else {
                SERVER_V6.into()
            };
            let end = Instant::now() + run;
            while Instant::now() < end {
                if tb.https_status(dst, *src, "/", i % 2 == 0) == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
    }
}

/// One flood over the edge: h2load over HTTPS/HTTP/2 from the v4 flooders' first half,
/// cleartext HTTP/2 (nginx only) from the second half, HTTP/1.1 over TLS with keep-alive from
/// the v6 flooders; legitimate HTTPS clients alongside. Every flooder blocked, each block
/// within 1 s of its crossing, no legitimate client blocked, ≥ 99.9 % of their requests served.
fn flood_through(tb: &Testbed, plan: &FloodPlan, pins: &TempPins, daemon: &Daemon, h2c: bool) {
    let shim = Testbed::build_shim();
    let ok = AtomicU32::new(0);
    let failed = AtomicU32::new(0);
    let half = plan.flood4.len() / 2;
    let (tls_h2, cleartext) = plan.flood4.split_at(half);
    std::thread::scope(|scope| {
        run_legit(scope, tb, &plan.legit, Duration::from_secs(9), &ok, &failed);
        std::thread::sleep(Duration::from_secs(1));
        let mut floods = vec![tb.start_h2load(
            &shim,
            tls_h2,
            &format!("https://{SERVER_V4}/"),
            Duration::from_secs(5),
            8,
            &[],
        )];
        if h2c {
            floods.push(tb.start_h2load(
                &shim,
                cleartext,
                &format!("http://{SERVER_V4}:{}/", port::H2C),
                Duration::from_secs(5),
                8,
                &[],
            ));
        } else {
            floods.push(tb.start_h2load(
                &shim,
                cleartext,
                &format!("https://{SERVER_V4}/"),
                Duration::from_secs(5),
                8,
                &["--h1"],
            ));
        }
        floods.push(tb.start_h2load(
            &shim,
            &plan.flood6,
            &format!("https://[{SERVER_V6}]/"),
            Duration::from_secs(5),
            8,
            &["--h1"],
        ));
        for flood in &mut floods {
            assert!(
                flood.wait_exit(Duration::from_secs(30)).is_some(),
                "h2load is bounded: {}",
                flood.log()
            );
        }
    });
    let _ = std::fs::remove_file(&shim);
    blocked_exactly(pins, daemon, &plan.flooders(), &plan.legit);
    let log = daemon.process.log();
    let latencies = latencies(daemon);
    assert!(
        latencies.len() >= plan.flooders().len(),
        "{latencies:?}\n{log}"
    );
    assert!(
        latencies.iter().all(|ms| *ms <= 1000.0),
        "blocks within 1 s of the crossing: {latencies:?}"
    );
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("legitimate HTTPS: {ok} ok, {failed} failed; latencies (ms) {latencies:?}");
    assert!(
        ok >= 60 && f64::from(ok) / f64::from(ok + failed) >= 0.999,
        "legitimate HTTPS success {ok}/{}",
        ok + failed
    );
}

#[test]
fn https_and_http2_floods_are_blocked_behind_nginx() {
    // nginx the way `floodgate proxy-snippet nginx` sets it up by default: its buffered
    // access log appended to the feed file the daemon follows.
    let tb = Testbed::new();
    let plan = FloodPlan::on(&tb, 8, 4);
    let cert = Cert::new();
    let (_dir, socket) = feed_socket();
    let file = socket.with_file_name("requests.log");
    let pins = TempPins::new();
    let daemon = tb.start_daemon(
        &pins,
        &config(
            &socket,
            &format!("file = \"{}\"\n{FLOOD_RULES}", file.display()),
        ),
    );
    let _nginx = tb.start_edge_nginx_file_feed(&cert, &file);
    flood_through(&tb, &plan, &pins, &daemon, true);
    let status = floodgate_json(&pins, &["status", "--json"]);
    assert_eq!(status["tls_ports"], serde_json::json!([443]), "{status}");
    let proxy = &status["daemon"]["proxy"];
    assert!(proxy["events"].as_u64().unwrap() > 1000, "{status}");
    assert_eq!(proxy["file_problem"], serde_json::Value::Null, "{status}");
    // What was read is freed: once the daemon has caught up, the file holds about nothing.
    let caught_up = wait_until(Duration::from_secs(10), || {
        floodgate_json(&pins, &["status", "--json"])["daemon"]["proxy"]["file_backlog"] == 0
    });
    assert!(caught_up, "the daemon did not catch up with the feed file");
    let allocated =
        std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&file).unwrap()) * 512;
    assert!(
        allocated < 4 << 20,
        "{allocated} bytes still allocated in {}",
        file.display()
    );
}

#[test]
fn https_and_http2_floods_are_blocked_behind_nginx_over_the_feed_socket() {
    // nginx's other way: one syslog datagram per request.
    let tb = Testbed::new();
    let plan = FloodPlan::on(&tb, 4, 2);
    let cert = Cert::new();
    let (_dir, socket) = feed_socket();
    let pins = TempPins::new();
    let daemon = tb.start_daemon(
        &pins,
        &config(&socket, &format!("file = \"off\"\n{FLOOD_RULES}")),
    );
    let _nginx = tb.start_edge_nginx(&cert, Some(&socket));
    flood_through(&tb, &plan, &pins, &daemon, true);
}

#[test]
fn https_and_http2_floods_are_blocked_behind_haproxy() {
    let tb = Testbed::new();
    let plan = FloodPlan::on(&tb, 8, 4);
    let cert = Cert::new();
    let (_dir, socket) = feed_socket();
    let pins = TempPins::new();
    let daemon = tb.start_daemon(&pins, &config(&socket, FLOOD_RULES));
    // nginx only as HAProxy's backend (and on port 80); HAProxy terminates TLS on 443.
    let _nginx = tb.start_backend_nginx();
    let _haproxy = tb.start_haproxy(&cert, &socket);
    flood_through(&tb, &plan, &pins, &daemon, false);
}

#[test]
fn a_tls_handshake_flood_without_keep_alive_is_blocked_by_the_kernel_sensor() {
    let tb = Testbed::new();
    let plan = FloodPlan::on(&tb, 4, 2);
    let cert = Cert::new();
    let pins = TempPins::new();
    // No proxy feed at all: the kernel sees the ClientHellos on its own.
    let rules = "[[rules]]\nname = \"handshake-flood\"\nsignal = \"tls_handshakes\"\nthreshold_rps = 30.0\n";
    let daemon = tb.start_daemon(
        &pins,
        &test_config(&format!(
            "[filter]\ntls_ports = [443]\n[aggregation]\nmin_addresses = 0\n[proxy]\nsocket = \"off\"\n{rules}"
        )),
    );
    let _nginx = tb.start_edge_nginx(&cert, None);
    let shim = Testbed::build_shim();
    let ok = AtomicU32::new(0);
    let failed = AtomicU32::new(0);
    std::thread::scope(|scope| {
        run_legit(
            scope,
            &tb,
            &plan.legit,
            Duration::from_secs(7),
            &ok,
            &failed,
        );
        std::thread::sleep(Duration::from_secs(1));
        // One request per connection: new TLS sessions at 400/s in all, for 4 s.
        let mut flood = tb.start_h2load(
            &shim,
            &plan.flooders(),
            &format!("https://{SERVER_V4}/"),
            Duration::ZERO,
            1600,
            &[
                "--h1",
                "-n",
                "1600",
                "-r",
                "40",
                "--rate-period",
                "100ms",
                "-N",
                "1s",
            ],
        );
        // Bounded by count; connections of blocked sources never complete, so it is also
        // stopped after 12 s (the guard kills it).
        let _ = flood.wait_exit(Duration::from_secs(12));
        eprintln!("h2load: {}", flood.log());
    });
    let _ = std::fs::remove_file(&shim);
    blocked_exactly(&pins, &daemon, &plan.flood4, &plan.legit);
    let stats = floodgate_json(&pins, &["stats", "--json"]);
    assert!(stats["tls_hellos"].as_u64().unwrap() > 0, "{stats}");
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(
        ok > 0 && f64::from(ok) / f64::from(ok + failed) >= 0.99,
        "legitimate {ok}/{}",
        ok + failed
    );
}
