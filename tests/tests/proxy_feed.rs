//! The proxy feed under what a host does to it: a local user who is not the proxy forging
//! evidence, garbage datagrams, a daemon restart under a running nginx; and the rules that use
//! what only the proxy knows (response status, backend time) against credential stuffing and
//! an expensive-endpoint flood, with legitimate clients of the same subnet alongside.

use std::{
    net::IpAddr,
    path::Path,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use floodgate_tests::{
    ChildGuard, TempPins,
    edge::{Cert, feed_socket},
    floodgate_json, is_blocked,
    net::{Daemon, SERVER_V4, Testbed, test_config},
    unique, wait_until,
};

fn config(socket: &Path, rules: &str) -> String {
    test_config(&format!(
        "[aggregation]\nmin_addresses = 0\n[filter]\nreset_connections = false\n\
         [proxy]\nsocket = \"{}\"\n{rules}",
        socket.display()
    ))
}

fn daemon_status(pins: &TempPins) -> serde_json::Value {
    floodgate_json(pins, &["status", "--json"])["daemon"].clone()
}

/// Sends `count` datagrams as `uid` at `per_sec`; returns how many the socket took.
fn feed_send(tb: &Testbed, socket: &Path, uid: u32, count: u32, per_sec: u32, msg: &str) -> u32 {
    let out = tb
        .server
        .cmd(env!("CARGO_BIN_EXE_feed-send"))
        .arg(socket)
        .args([
            &uid.to_string(),
            &count.to_string(),
            &per_sec.to_string(),
            msg,
        ])
        .output()
        .expect("feed-send");
    assert!(
        out.status.success(),
        "feed-send: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn request_line(client: &str) -> String {
    format!(
        "{{\"fg\":\"1\",\"client\":\"{client}\",\"time\":\"1.0\",\"status\":\"200\",\"request_time\":\"0.001\",\"upstream_time\":\"-\",\"protocol\":\"HTTP/2.0\",\"tls\":\"TLSv1.3\",\"bytes\":\"10\",\"method\":\"GET\",\"host\":\"x\",\"uri\":\"/\",\"user_agent\":\"t\"}}"
    )
}

const FLOOD: &str =
    "[[rules]]\nname = \"proxy-flood\"\nsensor = \"proxy\"\nthreshold_rps = 100.0\n";

#[test]
fn only_the_proxy_users_evidence_counts_and_garbage_is_counted_not_fatal() {
    let tb = Testbed::new();
    let (_dir, socket) = feed_socket();
    let pins = TempPins::new();
    let mut daemon = tb.start_daemon(&pins, &config(&socket, FLOOD));
    let mode = std::fs::metadata(&socket).expect("the feed socket exists");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o666
    );
    // A local user who is not the proxy names a victim at 1,000 requests/s: never blocked.
    let victim: IpAddr = "198.18.0.77".parse().unwrap();
    let sent = feed_send(
        &tb,
        &socket,
        65534,
        2000,
        1000,
        &request_line("198.18.0.77"),
    );
    assert!(sent > 1000, "the stranger could send ({sent})");
    assert!(
        wait_until(
            Duration::from_secs(5),
            || daemon_status(&pins)["proxy"]["refused"]
                .as_u64()
                .unwrap_or(0)
                >= u64::from(sent)
        ),
        "refusals counted: {}",
        daemon_status(&pins)
    );
    assert!(
        !is_blocked(&pins, victim),
        "forged evidence blocked {victim}"
    );
    assert!(
        daemon
            .process
            .log()
            .contains("refused datagrams from a user")
    );

    // Garbage from an allowed user: counted, never a crash.
    for msg in [
        "@oversized",
        "@binary",
        "hello world",
        "<190>Dec  1 00:00:00 floodgate: {\"fg\":\"1\",\"cli",
        "{\"fg\":\"9\",\"client\":\"198.18.0.1\"}",
        "{\"fg\":\"1\",\"client\":\"not-an-address\"}",
    ] {
        feed_send(&tb, &socket, 0, 10, 1000, msg);
    }
    assert!(
        wait_until(Duration::from_secs(5), || {
            let p = &daemon_status(&pins)["proxy"];
            p["unparsed"].as_u64().unwrap_or(0) >= 40 && p["dropped"].as_u64().unwrap_or(0) >= 10
        }),
        "garbage counted: {}",
        daemon_status(&pins)
    );

    // The same flood from the proxy's user counts: blocked.
    let attacker: IpAddr = "198.18.0.88".parse().unwrap();
    feed_send(&tb, &socket, 0, 1500, 1000, &request_line("198.18.0.88"));
    assert!(
        wait_until(Duration::from_secs(5), || is_blocked(&pins, attacker)),
        "the allowed sender's evidence counts: {}",
        daemon.process.log()
    );
    assert!(daemon.process.is_running(), "{}", daemon.process.log());
}

/// `n` HTTPS requests to `path` from `src` as fast as curl goes, bounded by `run`: statuses.
fn hammer(tb: &Testbed, src: IpAddr, path: &str, run: Duration, ok: &AtomicU32, other: &AtomicU32) {
    let end = Instant::now() + run;
    while Instant::now() < end {
        match tb.https_status(SERVER_V4.into(), src, path, true) {
            200 => ok.fetch_add(1, Ordering::Relaxed),
            _ => other.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn edge(tb: &Testbed, socket: &Path, rules: &str) -> (TempPins, Daemon) {
    let pins = TempPins::new();
    let daemon = tb.start_daemon(&pins, &config(socket, rules));
    (pins, daemon)
}

#[test]
fn credential_stuffing_is_blocked_and_the_subnets_real_logins_are_not() {
    let tb = Testbed::new();
    let stuffers: Vec<IpAddr> = ["198.18.2.1", "198.18.2.2"]
        .map(|a| a.parse().unwrap())
        .to_vec();
    let users: Vec<IpAddr> = ["198.18.2.10", "198.18.2.11"]
        .map(|a| a.parse().unwrap())
        .to_vec();
    tb.add_client_addrs(&stuffers);
    tb.add_client_addrs(&users);
    let cert = Cert::new();
    let (_dir, socket) = feed_socket();
    // The default configuration's rules (failed-auth among them).
    let (pins, daemon) = edge(&tb, &socket, "");
    let _nginx = tb.start_edge_nginx(&cert, Some(&socket));
    let (user_ok, user_failed) = (AtomicU32::new(0), AtomicU32::new(0));
    let shim = Testbed::build_shim();
    std::thread::scope(|scope| {
        // Bots reuse their connection: 20 failed logins a second each over one HTTP/2
        // connection — far under the flood rules (100 requests/s, 50 handshakes/s).
        let mut bots = tb.start_h2load(
            &shim,
            &stuffers,
            &format!("https://{SERVER_V4}/login"),
            Duration::from_secs(8),
            2,
            &["--rps", "20", "-m", "1"],
        );
        for src in &users {
            let (tb, ok, failed) = (&tb, &user_ok, &user_failed);
            scope.spawn(move || {
                let end = Instant::now() + Duration::from_secs(8);
                while Instant::now() < end {
                    // A typo, then the right password, every second.
                    let _ = tb.https_status(SERVER_V4.into(), *src, "/login", true);
                    match tb.https_status(SERVER_V4.into(), *src, "/login?ok=1", true) {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    std::thread::sleep(Duration::from_millis(900));
                }
            });
        }
        let _ = bots.wait_exit(Duration::from_secs(20));
    });
    let _ = std::fs::remove_file(&shim);
    wait_until(Duration::from_secs(10), || {
        stuffers.iter().all(|s| is_blocked(&pins, *s))
    });
    let log = daemon.process.log();
    for s in &stuffers {
        assert!(is_blocked(&pins, *s), "stuffer {s} not blocked\n{log}");
    }
    for u in &users {
        assert!(!is_blocked(&pins, *u), "user {u} blocked\n{log}");
    }
    assert!(log.contains("rule=failed-auth"), "{log}");
    let (uo, uf) = (
        user_ok.load(Ordering::Relaxed),
        user_failed.load(Ordering::Relaxed),
    );
    assert!(uo >= 10 && uf == 0, "real logins: {uo} ok, {uf} failed");
}

#[test]
fn an_expensive_endpoint_flood_is_blocked_by_backend_time_not_request_rate() {
    let tb = Testbed::new();
    let flooder: IpAddr = "198.18.2.5".parse().unwrap();
    let neighbour: IpAddr = "198.18.2.6".parse().unwrap();
    tb.add_client_addrs(&[flooder, neighbour]);
    let cert = Cert::new();
    let (_dir, socket) = feed_socket();
    let backend = ChildGuard::spawn(
        &unique("slow-backend"),
        tb.server
            .cmd(env!("CARGO_BIN_EXE_slow-backend"))
            .arg("127.0.0.1:8082"),
    );
    // 0.5 backend-seconds per second per source; requests far below the 100/s flood rule.
    let rules = "[[rules]]\nname = \"proxy-flood\"\nsensor = \"proxy\"\nthreshold_rps = 100.0\n\
        [[rules]]\nname = \"backend-time\"\nsensor = \"proxy\"\nweight = \"upstream_time\"\n\
        threshold_rps = 0.5\nwindow = \"5s\"\nmin_samples = 10\n";
    let (pins, daemon) = edge(&tb, &socket, rules);
    let _nginx = tb.start_edge_nginx_with_backend(&cert, &socket, "127.0.0.1:8082");
    let (ok, other) = (AtomicU32::new(0), AtomicU32::new(0));
    let (n_ok, n_other) = (AtomicU32::new(0), AtomicU32::new(0));
    std::thread::scope(|scope| {
        // Four parallel callers of a 100 ms endpoint: ~4 backend-seconds per second.
        for _ in 0..4 {
            let (tb, ok, other) = (&tb, &ok, &other);
            scope.spawn(move || {
                hammer(
                    tb,
                    flooder,
                    "/expensive?ms=100",
                    Duration::from_secs(8),
                    ok,
                    other,
                );
            });
        }
        // The neighbour calls it once a second: 0.1 backend-seconds per second.
        let (tb, ok, other) = (&tb, &n_ok, &n_other);
        scope.spawn(move || {
            let end = Instant::now() + Duration::from_secs(8);
            while Instant::now() < end {
                match tb.https_status(SERVER_V4.into(), neighbour, "/expensive?ms=100", true) {
                    200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => other.fetch_add(1, Ordering::Relaxed),
                };
                std::thread::sleep(Duration::from_secs(1));
            }
        });
    });
    wait_until(Duration::from_secs(10), || is_blocked(&pins, flooder));
    let log = daemon.process.log();
    assert!(is_blocked(&pins, flooder), "{}\n{log}", backend.log());
    assert!(log.contains("rule=backend-time"), "{log}");
    assert!(!is_blocked(&pins, neighbour), "{log}");
    assert_eq!(
        n_other.load(Ordering::Relaxed),
        0,
        "the neighbour was served"
    );
    assert!(n_ok.load(Ordering::Relaxed) >= 6);
    let _ = (ok, other);
}

/// A flood from `before` is blocked, the daemon restarts, a flood from `after` is blocked
/// too: the proxy started by `proxy` (and left alone) feeds the new daemon on its own.
fn feed_survives_a_daemon_restart<P>(proxy: impl FnOnce(&Testbed, &Cert, &Path) -> P) {
    let tb = Testbed::new();
    let before: IpAddr = "198.18.2.20".parse().unwrap();
    let after: IpAddr = "198.18.2.21".parse().unwrap();
    tb.add_client_addrs(&[before, after]);
    let cert = Cert::new();
    let (_dir, socket) = feed_socket();
    let pins = TempPins::new();
    let text = config(&socket, FLOOD);
    let mut daemon = tb.start_daemon(&pins, &text);
    let _proxy = proxy(&tb, &cert, &socket);
    let shim = Testbed::build_shim();
    let flood = |src: IpAddr| {
        let mut h2 = tb.start_h2load(
            &shim,
            &[src],
            &format!("https://{SERVER_V4}/"),
            Duration::from_secs(3),
            4,
            &[],
        );
        let _ = h2.wait_exit(Duration::from_secs(15));
    };
    flood(before);
    assert!(
        wait_until(Duration::from_secs(5), || is_blocked(&pins, before)),
        "{}",
        daemon.process.log()
    );
    daemon.stop();
    let daemon = tb.start_daemon(&pins, &text);
    let mode = std::fs::metadata(&socket).expect("the socket is back");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o666
    );
    // The proxy was not touched: it sends to the new socket on its own.
    flood(after);
    assert!(
        wait_until(Duration::from_secs(5), || is_blocked(&pins, after)),
        "{}",
        daemon.process.log()
    );
    assert!(
        is_blocked(&pins, before),
        "the first block survived the restart"
    );
    let _ = std::fs::remove_file(&shim);
}

#[test]
fn the_feed_comes_back_after_a_daemon_restart_without_touching_nginx() {
    feed_survives_a_daemon_restart(|tb, cert, socket| tb.start_edge_nginx(cert, Some(socket)));
}

#[test]
fn the_feed_comes_back_after_a_daemon_restart_without_touching_haproxy() {
    feed_survives_a_daemon_restart(|tb, cert, socket| {
        (tb.start_backend_nginx(), tb.start_haproxy(cert, socket))
    });
}

/// The proxy's feed refused (its file owned by a user who is not a proxy's): the daemon says
/// so in its log, its status and a metric, keeps blocking plaintext floods from the kernel
/// sensor meanwhile, and reads the file again once it is set right.
#[test]
fn the_kernel_sensor_keeps_blocking_while_the_feed_file_is_refused() {
    const PORT: u16 = 9482;
    let tb = Testbed::new();
    let flooder: IpAddr = "198.18.2.30".parse().unwrap();
    tb.add_client_addrs(&[flooder]);
    let (_dir, socket) = feed_socket();
    let file = socket.with_file_name("requests.log");
    std::fs::write(&file, b"").expect("feed file");
    let chown = |owner: &str| {
        let ok = std::process::Command::new("chown")
            .arg(owner)
            .arg(&file)
            .status()
            .expect("chown");
        assert!(ok.success(), "chown {owner}");
    };
    chown("nobody");
    let pins = TempPins::new();
    let daemon = tb.start_daemon(
        &pins,
        &format!(
            "[aggregation]\nmin_addresses = 0\n[filter]\nports = [80]\n\
             [proxy]\nsocket = \"{}\"\nfile = \"{}\"\n\
             [[rules]]\nname = \"kernel-flood\"\nsensor = \"kernel\"\nthreshold_rps = 100.0\n\
             [metrics]\nlisten = \"127.0.0.1:{PORT}\"\n",
            socket.display(),
            file.display()
        ),
    );
    let _nginx = tb.start_nginx();
    let refused = wait_until(Duration::from_secs(10), || {
        daemon.process.log().contains("refused")
            && tb.metric(PORT, "floodgate_proxy_feed_file_up") == Some(0.0)
    });
    assert!(refused, "no refusal said: {}", daemon.process.log());
    let problem = daemon_status(&pins)["proxy"]["file_problem"].clone();
    assert!(
        problem.as_str().is_some_and(|p| p.contains("refused")),
        "status: {problem}"
    );
    // The kernel sensor still sees plaintext floods.
    tb.loadgen(env!("CARGO_BIN_EXE_loadgen"), &[flooder], 400, 3);
    assert!(
        wait_until(Duration::from_secs(10), || is_blocked(&pins, flooder)),
        "the plaintext flood was not blocked while the feed was down: {}",
        daemon.process.log()
    );
    // Set right, the file is read again without a restart.
    chown("root");
    let back = wait_until(Duration::from_secs(10), || {
        tb.metric(PORT, "floodgate_proxy_feed_file_up") == Some(1.0)
    });
    assert!(
        back,
        "the feed file is not read again: {}",
        daemon.process.log()
    );
    assert_eq!(
        daemon_status(&pins)["proxy"]["file_problem"],
        serde_json::Value::Null
    );
    assert!(daemon.process.log().contains("reading it again"));
}
