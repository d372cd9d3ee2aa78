//! Test and benchmark load tool: one thread per source address, each holding a keep-alive
//! HTTP/1.1 connection bound to that source and sending GETs at a fixed rate. Prints one JSON
//! line per source: requests answered, the CLOCK_MONOTONIC time of the request that took the
//! source over `--threshold` requests in its first second, and when its connection stalled.
//! Bounded by `--seconds` (at most 60) and `--rate` (at most 10,000 per source).
//!
//! `LOADGEN_STAGGER_MS` (default 20) spaces the sources' starts; `LOADGEN_PATH` sets the path. With `LOADGEN_OPEN=1` it is open loop: requests are pipelined on schedule without waiting
//! for answers (a reader thread counts them), as a flooding bot does; otherwise each request
//! waits for its answer.
//!
//! Usage: loadgen DST_IP:PORT RATE SECONDS THRESHOLD SRC_IP...

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use filter_user::clock::monotonic_ns;
use floodgate_tests::net::connect_from;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(
        args.len() >= 6,
        "usage: loadgen DST_IP:PORT RATE SECONDS THRESHOLD SRC_IP..."
    );
    let dst: SocketAddr = args[1].parse().expect("DST_IP:PORT");
    let rate: u32 = args[2].parse().expect("RATE");
    let seconds: u64 = args[3].parse().expect("SECONDS");
    let threshold: u32 = args[4].parse().expect("THRESHOLD");
    assert!(
        rate > 0 && rate <= 10_000 && seconds <= 60,
        "bounded: rate ≤ 10000/s per source, ≤ 60 s"
    );
    let sources: Vec<IpAddr> = args[5..]
        .iter()
        .map(|a| a.parse().expect("SRC_IP"))
        .collect();
    let open_loop = std::env::var_os("LOADGEN_OPEN").is_some_and(|v| v == "1");
    // Sources start this many ms apart (LOADGEN_STAGGER_MS, default 20) so that they cross
    // their thresholds at different moments; 0 starts them together.
    let stagger_ms: u64 = std::env::var("LOADGEN_STAGGER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    // LOADGEN_PATH: every source requests this path (default /bench/N, N its index).
    let path = std::env::var("LOADGEN_PATH").ok();
    let handles: Vec<_> = sources
        .into_iter()
        .enumerate()
        .map(|(i, src)| {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(stagger_ms * i as u64));
                let mut answered = 0u32;
                let mut cross_ns = 0u64;
                let mut stalled_ns = 0u64;
                let end = Instant::now() + Duration::from_secs(seconds);
                let request = match &path {
                    Some(path) => format!("GET {path} HTTP/1.1\r\nHost: bench\r\nUser-Agent: loadgen\r\n\r\n"),
                    None => format!("GET /bench/{i} HTTP/1.1\r\nHost: bench\r\nUser-Agent: loadgen\r\n\r\n"),
                };
                let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
                let started = Instant::now();
                let mut sent = 0u32;
                if let Ok(mut stream) = connect_from(src, dst, Duration::from_secs(2)) {
                    stream.set_read_timeout(Some(Duration::from_millis(500))).ok();
                    let reader = open_loop.then(|| {
                        let mut r = stream.try_clone().expect("clone");
                        std::thread::spawn(move || {
                            let (mut answered, mut buf, mut tail) = (0u32, [0u8; 8192], Vec::new());
                            let until = Instant::now() + Duration::from_secs(seconds + 3);
                            while Instant::now() < until {
                                match r.read(&mut buf) {
                                    Ok(0) => break,
                                    Ok(n) => {
                                        tail.extend_from_slice(&buf[..n]);
                                        answered += tail.windows(12).filter(|w| w == b"HTTP/1.1 200").count() as u32;
                                        let keep = tail.len().saturating_sub(11);
                                        tail.drain(..keep);
                                    }
                                    // A timeout: nothing yet. Anything else (a reset): the
                                    // connection is gone; looping on it would spin a core.
                                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted) => {}
                                    Err(_) => break,
                                }
                            }
                            answered
                        })
                    });
                    let mut buf = [0u8; 4096];
                    while Instant::now() < end {
                        let due = started + interval * sent;
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        sent += 1;
                        if sent == threshold + 1 && started.elapsed() < Duration::from_secs(1) {
                            cross_ns = monotonic_ns();
                        }
                        if stream.write_all(request.as_bytes()).is_err() {
                            stalled_ns = monotonic_ns();
                            break;
                        }
                        if open_loop {
                            continue;
                        }
                        match stream.read(&mut buf) {
                            Ok(n) if n > 0 => answered += 1,
                            _ => {
                                stalled_ns = monotonic_ns();
                                break;
                            }
                        }
                    }
                    if let Some(reader) = reader {
                        let _ = stream.shutdown(std::net::Shutdown::Write);
                        answered = reader.join().expect("reader");
                    }
                }
                format!("{{\"src\":\"{src}\",\"answered\":{answered},\"cross_ns\":{cross_ns},\"stalled_ns\":{stalled_ns}}}")
            })
        })
        .collect();
    for h in handles {
        println!("{}", h.join().expect("source thread"));
    }
}
