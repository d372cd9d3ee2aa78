//! A backend whose requests cost time: answers `GET /...?ms=N` after N milliseconds (at most
//! 1,000), one thread per connection, HTTP/1.1 keep-alive. Test use only.
//!
//! With `SLOW_BACKEND_SERIAL=1` it serves one request at a time, like an application of bounded
//! capacity.
//!
//! Usage: slow-backend LISTEN_ADDR:PORT

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::TcpListener,
    time::Duration,
};

/// Held while a request is served with `SLOW_BACKEND_SERIAL=1`.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn main() {
    let addr = std::env::args()
        .nth(1)
        .expect("usage: slow-backend ADDR:PORT");
    let listener = TcpListener::bind(&addr).expect("bind");
    println!("listening on {addr}");
    let serial = std::env::var_os("SLOW_BACKEND_SERIAL").is_some_and(|v| v == "1");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let mut writer = stream.try_clone().expect("clone");
            let mut reader = BufReader::new(stream);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let ms: u64 = line
                    .split("ms=")
                    .nth(1)
                    .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
                    .min(1000);
                // The rest of the head.
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 {
                        return;
                    }
                    if header == "\r\n" {
                        break;
                    }
                }
                if serial {
                    // One request at a time: a backend of bounded capacity (1000 / ms per s).
                    let _one = ONE_AT_A_TIME
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    std::thread::sleep(Duration::from_millis(ms));
                } else {
                    std::thread::sleep(Duration::from_millis(ms));
                }
                let body = "done\n";
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
                    body.len()
                );
                if writer.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
        });
    }
}
