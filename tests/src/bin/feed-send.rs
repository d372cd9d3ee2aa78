//! Sends datagrams to a proxy feed socket as a given user, as a local process would.
//! Test use only.
//!
//! Usage: feed-send SOCKET UID COUNT PER_SEC MESSAGE — drops to UID (and its primary group
//! 65534 unless 0) first, then sends MESSAGE COUNT times at PER_SEC (bounded: COUNT ≤ 100,000).
//! MESSAGE "@oversized" sends 20,000 bytes, "@binary" 512 bytes of noise.

use std::{os::unix::net::UnixDatagram, time::Duration};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(
        args.len() == 6,
        "usage: feed-send SOCKET UID COUNT PER_SEC MESSAGE"
    );
    let uid: u32 = args[2].parse().expect("UID");
    let count: u32 = args[3].parse().expect("COUNT");
    let per_sec: u32 = args[4].parse().expect("PER_SEC");
    assert!(count <= 100_000 && per_sec > 0, "bounded");
    if uid != 0 {
        // SAFETY: plain credential calls on this single-threaded process, checked.
        unsafe {
            assert_eq!(libc::setgroups(0, std::ptr::null()), 0, "setgroups");
            assert_eq!(libc::setgid(65534), 0, "setgid");
            assert_eq!(libc::setuid(uid), 0, "setuid");
        }
    }
    let message: Vec<u8> = match args[5].as_str() {
        "@oversized" => vec![b'x'; 20_000],
        "@binary" => (0..512u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
        text => text.as_bytes().to_vec(),
    };
    let socket = UnixDatagram::unbound().expect("socket");
    let pause = Duration::from_secs(1) / per_sec;
    let mut sent = 0;
    for _ in 0..count {
        if socket.send_to(&message, &args[1]).is_ok() {
            sent += 1;
        }
        std::thread::sleep(pause);
    }
    println!("{sent}");
}
