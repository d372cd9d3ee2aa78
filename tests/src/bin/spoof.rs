//! Test tool: sends crafted TCP segments carrying `GET / HTTP/1.1` from a source address that
//! never completed a handshake (an attacker naming a victim), through an AF_PACKET socket on
//! an interface of the test's own namespace. Bounded in count.
//!
//! Usage: spoof IFACE SRC_IP DST_IP DST_MAC COUNT [--distinct]
//! With `--distinct`, every segment has its own source: 198.19.0.0/16 first, then
//! 2001:2:0:ff00::/56 (the test blackholes both on the server side); SRC_IP/DST_IP then only
//! give the IPv4 destination and are otherwise ignored.

use std::net::IpAddr;

use floodgate_tests::packet::{ETH_IPV4, ETH_IPV6, V4Opts, ethernet, ipv4, ipv6, tcp};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(
        args.len() == 6 || args.len() == 7,
        "usage: spoof IFACE SRC_IP DST_IP DST_MAC COUNT [--distinct]"
    );
    let distinct = args.get(6).is_some_and(|a| a == "--distinct");
    let iface = &args[1];
    let src: IpAddr = args[2].parse().expect("SRC_IP");
    let dst: IpAddr = args[3].parse().expect("DST_IP");
    let mac: Vec<u8> = args[4]
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("DST_MAC"))
        .collect();
    let count: u32 = args[5].parse().expect("COUNT");
    assert!(count <= 1_000_000, "bounded: at most 1,000,000 segments");
    let ifindex = floodgate_tests::net::ifindex(iface);
    // SAFETY: plain socket(2) call; the fd is closed at exit.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    assert!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: an all-zero sockaddr_ll is a valid value to fill in.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&mac);
    let mut sent = 0u32;
    for i in 0..count {
        let sport = 1024 + (i % 60000) as u16;
        let segment = tcp(
            sport,
            80,
            0x18,
            b"GET /spoofed HTTP/1.1\r\nHost: victim\r\n\r\n",
        );
        let (src, dst) = if distinct {
            distinct_source(i, dst)
        } else {
            (src, dst)
        };
        let mut frame = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                ethernet(&[], ETH_IPV4, &ipv4(s, d, 6, V4Opts::default(), &segment))
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                ethernet(&[], ETH_IPV6, &ipv6(s, d, &[], 6, &segment))
            }
            _ => panic!("address families differ"),
        };
        frame[..6].copy_from_slice(&mac);
        // SAFETY: sendto with a valid buffer and a sockaddr_ll of the right size.
        let rc = unsafe {
            libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc > 0 {
            sent += 1;
        }
    }
    println!("{sent}");
}

/// The i-th distinct spoofed source, and the destination of its family.
fn distinct_source(i: u32, dst4: IpAddr) -> (IpAddr, IpAddr) {
    if i < 65_536 {
        (
            std::net::Ipv4Addr::new(198, 19, (i >> 8) as u8, i as u8).into(),
            dst4,
        )
    } else {
        let n = i - 65_536;
        let src = std::net::Ipv6Addr::new(
            0x2001,
            2,
            0,
            0xff00 | (n >> 24) as u16,
            0,
            0,
            (n >> 16) as u16 & 0xff,
            n as u16,
        );
        (
            src.into(),
            std::net::Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1).into(),
        )
    }
}
