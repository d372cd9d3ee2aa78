//! Benchmark backend with bounded capacity, like a real API: every request costs a fixed
//! CPU time, spent under one global lock, so the server completes at most 1 / cost requests
//! per second whatever the number of connections. HTTP/1.1 keep-alive, 200 "ok".
//!
//! Every 100 ms it writes the number of requests completed so far to STATS_FILE.
//!
//! Usage: backend ADDR:PORT COST_MICROS STATS_FILE

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::TcpListener,
    sync::Mutex,
    time::{Duration, Instant},
};

static CPU: Mutex<()> = Mutex::new(());
static SERVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listener = TcpListener::bind(&args[1]).expect("bind");
    let cost = Duration::from_micros(args[2].parse().expect("COST_MICROS"));
    let stats = args[3].clone();
    std::thread::spawn(move || {
        loop {
            let _ = std::fs::write(
                &stats,
                SERVED
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .to_string(),
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut writer = stream;
            loop {
                // Read one request head.
                let mut line = String::new();
                let mut got = false;
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => got = true,
                    }
                }
                if !got {
                    continue;
                }
                {
                    let _cpu = CPU.lock().expect("lock");
                    let t = Instant::now();
                    while t.elapsed() < cost {
                        std::hint::spin_loop();
                    }
                }
                SERVED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nok\n").is_err() {
                    return;
                }
            }
        });
    }
}
