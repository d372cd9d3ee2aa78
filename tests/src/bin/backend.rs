//! Benchmark backend with bounded capacity, like a real API: every request costs a fixed
//! CPU time, spent under one global lock, so the server completes at most 1 / cost requests
//! per second whatever the number of connections. HTTP/1.1 keep-alive, 200 "ok".
//!
//! Usage: backend ADDR:PORT COST_MICROS

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::TcpListener,
    sync::Mutex,
    time::{Duration, Instant},
};

static CPU: Mutex<()> = Mutex::new(());

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listener = TcpListener::bind(&args[1]).expect("bind");
    let cost = Duration::from_micros(args[2].parse().expect("COST_MICROS"));
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
                if writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nok\n").is_err() {
                    return;
                }
            }
        });
    }
}
