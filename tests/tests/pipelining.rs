//! What the kernel sensor sees besides one request per segment: a client that sends bursts of
//! 30 pipelined GETs in one segment counts as 30 requests, so pipelining is no way around a
//! rule; and connections held open without a request (slowloris) are capped per source.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use floodgate_tests::{
    TempPins, floodgate_json, is_blocked,
    net::{BoundTo as _, SERVER_V4, Testbed, connect_from, test_config},
    wait_until,
};

const BURST: usize = 30;

/// Bursts of `BURST` pipelined GETs, one write each, `bursts_per_sec` a second for `run`
/// (bounded), answers drained by a reader thread; returns the requests answered.
fn pipelining_client(tb: &Testbed, src: IpAddr, bursts_per_sec: u32, run: Duration) -> u64 {
    let dst = SocketAddr::new(SERVER_V4.into(), 80);
    let answered = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    std::thread::scope(|outer| {
        outer.spawn(|| {
            tb.client.enter_current_thread();
            let Ok(mut stream) = connect_from(src, dst, Duration::from_secs(2)) else {
                return;
            };
            stream.set_nodelay(true).unwrap();
            let mut reader = stream.try_clone().unwrap();
            reader
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let burst = "GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(BURST);
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    let mut buf = [0u8; 65536];
                    while !done.load(Ordering::Relaxed) {
                        match reader.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                let text = &buf[..n];
                                let count = text.windows(8).filter(|w| w == b"HTTP/1.1").count();
                                answered.fetch_add(count as u64, Ordering::Relaxed);
                            }
                            Err(e)
                                if e.kind() == std::io::ErrorKind::WouldBlock
                                    || e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => break,
                        }
                    }
                });
                let period = Duration::from_secs(1) / bursts_per_sec;
                let end = Instant::now() + run;
                let mut next = Instant::now();
                while Instant::now() < end {
                    if stream.write_all(burst.as_bytes()).is_err() {
                        break;
                    }
                    next += period;
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
                done.store(true, Ordering::Relaxed);
            });
        });
    });
    answered.load(Ordering::Relaxed)
}

#[test]
fn pipelined_bursts_count_every_request() {
    let tb = Testbed::new();
    let piper: IpAddr = "198.18.2.30".parse().unwrap();
    tb.add_client_addrs(&[piper]);
    let _nginx = tb.start_nginx();
    let pins = TempPins::new();
    // 20 bursts of 30 a second: 600 requests/s in 20 segments/s, against a threshold of 100.
    let daemon = tb.start_daemon(
        &pins,
        &test_config("[aggregation]\nmin_addresses = 0\n[[rules]]\nname = \"flood\"\nsensor = \"kernel\"\nthreshold_rps = 100.0\n"),
    );
    let answered = pipelining_client(&tb, piper, 20, Duration::from_secs(4));
    eprintln!("answered {answered}");
    let blocked = wait_until(Duration::from_secs(5), || is_blocked(&pins, piper));
    assert!(
        blocked,
        "a pipelining source at 600 requests/s is blocked (answered {answered}): {}",
        daemon.process.log()
    );
    let stats = floodgate_json(&pins, &["stats", "--json"]);
    assert!(
        stats["request_starts"].as_u64().unwrap() < 200,
        "the kernel saw few segments: {stats}"
    );
}

/// Slowloris from one source (slowhttptest, Debian's package): 50 new connections a second,
/// each trickling headers and never finishing a request. Neither the request rate nor a proxy
/// log shows it; the connections it holds open do. The source is blocked once it holds more
/// than the rule allows; a legitimate client from another address is served throughout.
#[test]
fn connections_held_open_are_capped() {
    let tb = Testbed::new();
    let slow: IpAddr = "198.18.2.40".parse().unwrap();
    let legit: IpAddr = "198.18.0.10".parse().unwrap();
    tb.add_client_addrs(&[slow, legit]);
    let _nginx = tb.start_nginx();
    let pins = TempPins::new();
    let daemon = tb.start_daemon(
        &pins,
        &test_config(
            "[aggregation]\nmin_addresses = 0\n[[rules]]\nname = \"connection-hog\"\n\
             sensor = \"kernel\"\nsignal = \"connections\"\nthreshold_rps = 100.0\n",
        ),
    );
    let shim = Testbed::build_shim();
    let mut slowloris = floodgate_tests::ChildGuard::spawn(
        "slowhttptest",
        tb.client
            .cmd("slowhttptest")
            .args([
                "-H", "-c", "600", "-r", "50", "-i", "5", "-x", "24", "-p", "2", "-l", "14", "-t",
                "GET", "-u",
            ])
            .arg(format!("http://{SERVER_V4}/"))
            .bound_to(&shim, &[slow]),
    );
    let blocked = wait_until(Duration::from_secs(20), || is_blocked(&pins, slow));
    let log = daemon.process.log();
    assert!(
        blocked,
        "slowloris source not blocked: {}\n{log}",
        slowloris.log()
    );
    assert!(log.contains("rule=connection-hog"), "{log}");
    let served = (0..10)
        .filter(|_| {
            std::thread::sleep(Duration::from_millis(100));
            tb.get(legit, SERVER_V4.into()) == 200
        })
        .count();
    assert_eq!(served, 10, "the legitimate client is served");
    assert!(!is_blocked(&pins, legit));
    let _ = slowloris.wait_exit(Duration::from_secs(20));
    let _ = std::fs::remove_file(&shim);
}
