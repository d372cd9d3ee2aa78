//! Verdict table through `BPF_PROG_TEST_RUN`: crafted packets against the real program with
//! real maps, asserting the verdict and the exact counter deltas, in enforcing and monitor mode.

use std::net::{Ipv4Addr, Ipv6Addr};

use filter_common::{config, counter, reason};
use filter_user::{bpf::maps::block_entry, target::Target};
use floodgate_tests::{
    kernel::{LoadedFilter, XDP_DROP, XDP_PASS},
    packet::*,
};

const CLEAN4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const BLOCKED4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 66);
const EXPIRED4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 77);
const ALLOWED4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 88);
const IN_PREFIX4: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 9); // exact entry expired, prefix in force
const DST4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CLEAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
const BLOCKED6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x66);
const EXPIRED6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x77);
const ALLOWED6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x88);
const IN_PREFIX6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 5, 0, 0, 0, 0, 9);
const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);

/// What a packet should do: the verdict and the counters it adds to in enforcing mode.
#[derive(Clone, Copy)]
enum Expect {
    Pass(&'static [u32]),
    Drop(u32),
}

struct Case {
    name: &'static str,
    packet: Vec<u8>,
    expect: Expect,
}

fn get() -> Vec<u8> {
    tcp(
        40000,
        80,
        0x18,
        b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n",
    )
}

fn v4(src: Ipv4Addr, l4: &[u8], proto: u8) -> Vec<u8> {
    ipv4(src, DST4, proto, V4Opts::default(), l4)
}

fn cases() -> Vec<Case> {
    use Expect::{Drop, Pass};
    let t = tcp(40000, 443, 0x10, b"\x16\x03\x01");
    let passed: &'static [u32] = &[counter::PASSED];
    let request_start: &'static [u32] = &[
        counter::PASSED,
        counter::REQUEST_STARTS,
        counter::SAMPLES_UNVERIFIED,
    ];
    let many_exts: Vec<Ext> = (0..8).map(|_| ext_options(60, 1)).collect();
    let mut c = vec![
        Case {
            name: "v4 clean",
            packet: ethernet(&[], ETH_IPV4, &v4(CLEAN4, &t, 6)),
            expect: Pass(passed),
        },
        Case {
            name: "v4 blocked exact",
            packet: ethernet(&[], ETH_IPV4, &v4(BLOCKED4, &t, 6)),
            expect: Drop(counter::DROPPED_EXACT),
        },
        Case {
            name: "v6 clean",
            packet: v6_tcp(CLEAN6, DST6, 443, b"x"),
            expect: Pass(passed),
        },
        Case {
            name: "v6 blocked exact",
            packet: v6_tcp(BLOCKED6, DST6, 443, b"x"),
            expect: Drop(counter::DROPPED_EXACT),
        },
        Case {
            name: "v4 allow-listed and blocked",
            packet: ethernet(&[], ETH_IPV4, &v4(ALLOWED4, &t, 6)),
            expect: Pass(&[counter::ALLOWED]),
        },
        Case {
            name: "v6 allow-listed and blocked",
            packet: v6_tcp(ALLOWED6, DST6, 443, b"x"),
            expect: Pass(&[counter::ALLOWED]),
        },
        Case {
            name: "v4 expired",
            packet: ethernet(&[], ETH_IPV4, &v4(EXPIRED4, &t, 6)),
            expect: Pass(&[counter::PASSED, counter::EXPIRED]),
        },
        Case {
            name: "v6 expired",
            packet: v6_tcp(EXPIRED6, DST6, 443, b"x"),
            expect: Pass(&[counter::PASSED, counter::EXPIRED]),
        },
        Case {
            name: "v4 prefix (exact expired)",
            packet: ethernet(&[], ETH_IPV4, &v4(IN_PREFIX4, &t, 6)),
            expect: Drop(counter::DROPPED_PREFIX),
        },
        Case {
            name: "v4 prefix other member",
            packet: ethernet(&[], ETH_IPV4, &v4(Ipv4Addr::new(198, 18, 5, 200), &t, 6)),
            expect: Drop(counter::DROPPED_PREFIX),
        },
        Case {
            name: "v4 just outside prefix",
            packet: ethernet(&[], ETH_IPV4, &v4(Ipv4Addr::new(198, 18, 6, 1), &t, 6)),
            expect: Pass(passed),
        },
        Case {
            name: "v6 prefix",
            packet: v6_tcp(IN_PREFIX6, DST6, 443, b"x"),
            expect: Drop(counter::DROPPED_PREFIX),
        },
        Case {
            name: "v6 just outside prefix",
            packet: v6_tcp(Ipv6Addr::new(0x2001, 2, 5, 1, 0, 0, 0, 9), DST6, 443, b"x"),
            expect: Pass(passed),
        },
        Case {
            name: "one VLAN tag, blocked",
            packet: ethernet(&[(ETH_8021Q, 10)], ETH_IPV4, &v4(BLOCKED4, &t, 6)),
            expect: Drop(counter::DROPPED_EXACT),
        },
        Case {
            name: "two VLAN tags, blocked",
            packet: ethernet(
                &[(ETH_8021AD, 100), (ETH_8021Q, 10)],
                ETH_IPV4,
                &v4(BLOCKED4, &t, 6),
            ),
            expect: Drop(counter::DROPPED_EXACT),
        },
        Case {
            name: "two VLAN tags, v6 clean",
            packet: ethernet(
                &[(ETH_8021AD, 100), (ETH_8021Q, 10)],
                ETH_IPV6,
                &ipv6(CLEAN6, DST6, &[], 6, &t),
            ),
            expect: Pass(passed),
        },
        Case {
            name: "three VLAN tags: not followed",
            packet: ethernet(
                &[(ETH_8021AD, 1), (ETH_8021Q, 2), (ETH_8021Q, 3)],
                ETH_IPV4,
                &v4(BLOCKED4, &t, 6),
            ),
            expect: Pass(&[counter::NON_IP]),
        },
        Case {
            name: "v4 options, blocked",
            packet: ethernet(
                &[],
                ETH_IPV4,
                &ipv4(
                    BLOCKED4,
                    DST4,
                    6,
                    V4Opts {
                        options: &[1; 12],
                        ..V4Opts::default()
                    },
                    &t,
                ),
            ),
            expect: Drop(counter::DROPPED_EXACT),
        },
        Case {
            name: "v4 options (40 bytes), clean",
            packet: ethernet(
                &[],
                ETH_IPV4,
                &ipv4(
                    CLEAN4,
                    DST4,
                    6,
                    V4Opts {
                        options: &[1; 40],
                        ..V4Opts::default()
                    },
                    &t,
                ),
            ),
            expect: Pass(passed),
        },
        Case {
            name: "v6 hop-by-hop + dest options, blocked",
            packet: ethernet(
                &[],
                ETH_IPV6,
                &ipv6(
                    BLOCKED6,
                    DST6,
                    &[ext_options(0, 1), ext_options(60, 2)],
                    6,
                    &t,
                ),
            ),
            expect: Drop(counter::DROPPED_EXACT),
        },
        Case {
            name: "v6 routing + first fragment, clean",
            packet: ethernet(
                &[],
                ETH_IPV6,
                &ipv6(
                    CLEAN6,
                    DST6,
                    &[ext_options(43, 1), ext_fragment(0, true)],
                    6,
                    &t,
                ),
            ),
            expect: Pass(passed),
        },
        Case {
            name: "v4 later fragment, blocked",
            packet: ethernet(
                &[],
                ETH_IPV4,
                &ipv4(
                    BLOCKED4,
                    DST4,
                    6,
                    V4Opts {
                        frag_offset: 185,
                        ..V4Opts::default()
                    },
                    b"rest of it",
                ),
            ),
            expect: Drop(counter::DROPPED_EXACT),
        },
        Case {
            name: "v4 later fragment, clean",
            packet: ethernet(
                &[],
                ETH_IPV4,
                &ipv4(
                    CLEAN4,
                    DST4,
                    6,
                    V4Opts {
                        frag_offset: 185,
                        ..V4Opts::default()
                    },
                    b"GET / HTTP/1.1\r\n",
                ),
            ),
            expect: Pass(passed),
        },
        Case {
            name: "v6 later fragment, prefix",
            packet: ethernet(
                &[],
                ETH_IPV6,
                &ipv6(IN_PREFIX6, DST6, &[ext_fragment(100, false)], 6, b"rest"),
            ),
            expect: Drop(counter::DROPPED_PREFIX),
        },
        Case {
            name: "v6 eight extension headers, blocked",
            packet: ethernet(&[], ETH_IPV6, &ipv6(BLOCKED6, DST6, &many_exts, 6, &t)),
            expect: Drop(counter::DROPPED_EXACT),
        },
        Case {
            name: "v6 eight extension headers, clean",
            packet: ethernet(&[], ETH_IPV6, &ipv6(CLEAN6, DST6, &many_exts, 6, &get())),
            expect: Pass(passed),
        },
        Case {
            name: "v6 UDP, blocked",
            packet: ethernet(
                &[],
                ETH_IPV6,
                &ipv6(BLOCKED6, DST6, &[], 17, &udp(5353, 53, b"q")),
            ),
            expect: Drop(counter::DROPPED_EXACT),
        },
        Case {
            name: "v4 ICMP, clean",
            packet: ethernet(&[], ETH_IPV4, &v4(CLEAN4, &[8, 0, 0, 0, 0, 0, 0, 0], 1)),
            expect: Pass(passed),
        },
        Case {
            name: "ARP",
            packet: ethernet(&[], ETH_ARP, &[0; 28]),
            expect: Pass(&[counter::NON_IP]),
        },
        Case {
            name: "LLDP",
            packet: ethernet(&[], 0x88cc, &[0; 40]),
            expect: Pass(&[counter::NON_IP]),
        },
        // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header; this is the shortest.
        Case {
            name: "Ethernet header only",
            packet: ethernet(&[], ETH_IPV4, &[]),
            expect: Pass(&[counter::NOT_PARSED]),
        },
        Case {
            name: "truncated VLAN tag",
            packet: ethernet(&[], ETH_8021Q, &[0]),
            expect: Pass(&[counter::NOT_PARSED]),
        },
        Case {
            name: "truncated IPv4 header",
            packet: ethernet(&[], ETH_IPV4, &v4(BLOCKED4, &t, 6)[..12]),
            expect: Pass(&[counter::NOT_PARSED]),
        },
        Case {
            name: "truncated IPv4 options",
            packet: ethernet(
                &[],
                ETH_IPV4,
                &ipv4(
                    BLOCKED4,
                    DST4,
                    6,
                    V4Opts {
                        options: &[1; 40],
                        ..V4Opts::default()
                    },
                    &[],
                )[..40],
            ),
            expect: Pass(&[counter::NOT_PARSED]),
        },
        Case {
            name: "IPv4 ihl < 5",
            packet: {
                let mut p = v4(BLOCKED4, &t, 6);
                p[0] = 0x44;
                ethernet(&[], ETH_IPV4, &p)
            },
            expect: Pass(&[counter::NOT_PARSED]),
        },
        Case {
            name: "version 6 inside IPv4 ethertype",
            packet: {
                let mut p = v4(BLOCKED4, &t, 6);
                p[0] = 0x65;
                ethernet(&[], ETH_IPV4, &p)
            },
            expect: Pass(&[counter::NOT_PARSED]),
        },
        Case {
            name: "truncated IPv6 header",
            packet: ethernet(&[], ETH_IPV6, &ipv6(BLOCKED6, DST6, &[], 6, &t)[..30]),
            expect: Pass(&[counter::NOT_PARSED]),
        },
        Case {
            name: "truncated TCP, blocked source",
            packet: ethernet(&[], ETH_IPV4, &v4(BLOCKED4, &[0x9c, 0x40, 0, 80, 0], 6)),
            expect: Drop(counter::DROPPED_EXACT),
        },
        Case {
            name: "truncated TCP, clean",
            packet: ethernet(&[], ETH_IPV4, &v4(CLEAN4, &[0x9c, 0x40, 0, 80, 0], 6)),
            expect: Pass(passed),
        },
        Case {
            name: "v4 request start, no handshake",
            packet: v4_tcp(CLEAN4, DST4, 80, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            expect: Pass(request_start),
        },
        Case {
            name: "v6 request start, no handshake",
            packet: v6_tcp(CLEAN6, DST6, 8080, b"POST /login HTTP/1.1\r\n\r\n"),
            expect: Pass(request_start),
        },
        Case {
            name: "request start to unprotected port",
            packet: v4_tcp(CLEAN4, DST4, 9999, b"GET / HTTP/1.1\r\n\r\n"),
            expect: Pass(passed),
        },
        Case {
            name: "non-HTTP payload to port 80",
            packet: v4_tcp(CLEAN4, DST4, 80, b"HELLO WORLD HTTP/1.1\r\n"),
            expect: Pass(passed),
        },
        Case {
            name: "short payload to port 80",
            packet: v4_tcp(CLEAN4, DST4, 80, b"GET "),
            expect: Pass(passed),
        },
    ];
    // TLS ClientHello record starts: record type 22, version 3.x, length, handshake type 1.
    const HELLO: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03rest of the hello";
    let hello: &'static [u32] = &[
        counter::PASSED,
        counter::TLS_HELLOS,
        counter::SAMPLES_UNVERIFIED,
    ];
    c.extend([
        Case {
            name: "v4 ClientHello to the TLS port, no handshake",
            packet: v4_tcp(CLEAN4, DST4, 443, HELLO),
            expect: Pass(hello),
        },
        Case {
            name: "v6 ClientHello to the TLS port, no handshake",
            packet: v6_tcp(CLEAN6, DST6, 443, HELLO),
            expect: Pass(hello),
        },
        Case {
            name: "ClientHello to a plaintext port",
            packet: v4_tcp(CLEAN4, DST4, 80, HELLO),
            expect: Pass(passed),
        },
        Case {
            name: "request start to the TLS port",
            packet: v4_tcp(CLEAN4, DST4, 443, b"GET / HTTP/1.1\r\n\r\n"),
            expect: Pass(passed),
        },
        Case {
            name: "a ServerHello (handshake type 2) to the TLS port",
            packet: v4_tcp(CLEAN4, DST4, 443, b"\x16\x03\x03\x00\x5a\x02\x00\x00\x56"),
            expect: Pass(passed),
        },
        Case {
            name: "TLS application data to the TLS port",
            packet: v4_tcp(CLEAN4, DST4, 443, b"\x17\x03\x03\x00\x20\x01\x02\x03\x04"),
            expect: Pass(passed),
        },
        Case {
            name: "ClientHello from a blocked source",
            packet: v4_tcp(BLOCKED4, DST4, 443, HELLO),
            expect: Drop(counter::DROPPED_EXACT),
        },
    ]);
    // A request start from a blocked source is dropped before sampling.
    c.push(Case {
        name: "request start from blocked source",
        packet: v4_tcp(BLOCKED4, DST4, 80, b"GET / HTTP/1.1\r\n\r\n"),
        expect: Drop(counter::DROPPED_EXACT),
    });
    c
}

fn setup() -> LoadedFilter {
    let mut f = LoadedFilter::load();
    let forever = block_entry(None, reason::MANUAL, "verdict-test");
    let mut expired = block_entry(None, reason::MANUAL, "expired");
    expired.expires_ns = 1;
    let fl = &mut f.writer;
    for ip in [
        BLOCKED4.into(),
        BLOCKED6.into(),
        ALLOWED4.into(),
        ALLOWED6.into(),
    ] {
        fl.write(Target::host(ip), &forever).unwrap();
    }
    for ip in [EXPIRED4.into(), EXPIRED6.into(), IN_PREFIX4.into()] {
        fl.write(Target::host(ip), &expired).unwrap();
    }
    fl.write("198.18.5.0/24".parse().unwrap(), &forever)
        .unwrap();
    fl.write("2001:2:5::/64".parse().unwrap(), &forever)
        .unwrap();
    let fl = &mut f.filter;
    fl.allow(Target::host(ALLOWED4.into())).unwrap();
    fl.allow(Target::host(ALLOWED6.into())).unwrap();
    fl.set_ports(&[80, 8080], &[443]).unwrap();
    f
}

fn run_table(f: &mut LoadedFilter, monitor: bool) {
    f.filter
        .set_setting(config::MONITOR, u32::from(monitor))
        .unwrap();
    let table = cases();
    assert!(table.len() >= 25);
    for case in table {
        let before = f.counters();
        let verdict = f
            .run(&case.packet)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let after = f.counters();
        let (want_verdict, want): (u32, Vec<u32>) = match (case.expect, monitor) {
            (Expect::Pass(counters), _) => (XDP_PASS, counters.to_vec()),
            (Expect::Drop(c), false) => (XDP_DROP, vec![c]),
            // Monitor: counted as would-drop and passed. Sampling still sees request starts.
            (Expect::Drop(_), true) => {
                let mut v = vec![counter::WOULD_DROP];
                if case.name == "request start from blocked source" {
                    v.extend([counter::REQUEST_STARTS, counter::SAMPLES_UNVERIFIED]);
                }
                if case.name == "ClientHello from a blocked source" {
                    v.extend([counter::TLS_HELLOS, counter::SAMPLES_UNVERIFIED]);
                }
                (XDP_PASS, v)
            }
        };
        assert_eq!(
            verdict, want_verdict,
            "{} (monitor {monitor}): verdict",
            case.name
        );
        for index in 0..counter::COUNT {
            let delta = after[index as usize] - before[index as usize];
            let expected = u64::from(want.contains(&index));
            assert_eq!(
                delta,
                expected,
                "{} (monitor {monitor}): counter {} moved by {delta}",
                case.name,
                counter::NAMES[index as usize]
            );
        }
    }
}

#[test]
fn verdict_table_enforcing() {
    let mut f = setup();
    run_table(&mut f, false);
    // Hit counters: every drop of the blocked v4 address counted once, expired entries never.
    let hits = |f: &LoadedFilter, ip: std::net::IpAddr| {
        f.filter
            .block_entry(Target::host(ip))
            .unwrap()
            .unwrap()
            .hits
    };
    let drops_of_blocked4 = cases()
        .iter()
        .filter(|c| {
            matches!(c.expect, Expect::Drop(counter::DROPPED_EXACT))
                && c.packet.windows(4).any(|w| w == BLOCKED4.octets())
        })
        .count() as u64;
    assert_eq!(hits(&f, BLOCKED4.into()), drops_of_blocked4);
    assert_eq!(hits(&f, EXPIRED4.into()), 0);
    assert_eq!(
        hits(&f, ALLOWED4.into()),
        0,
        "allow list wins before the block map is consulted"
    );
}

#[test]
fn verdict_table_monitor() {
    let mut f = setup();
    run_table(&mut f, true);
}

#[test]
fn every_packet_has_exactly_one_outcome() {
    let mut f = setup();
    let before = f.counters();
    let table = cases();
    for case in &table {
        f.run(&case.packet).unwrap();
    }
    let after = f.counters();
    let outcomes: u64 = counter::OUTCOMES
        .iter()
        .map(|i| after[*i as usize] - before[*i as usize])
        .sum();
    assert_eq!(outcomes, table.len() as u64);
}

/// The prefix hint lets the program skip the trie, never a prefix in force: prefixes of every
/// width drop their members, wherever the members' buckets are; after a removal and a tidy,
/// the bucket is clear and its addresses pass.
#[test]
fn the_prefix_hint_never_hides_a_prefix() {
    let mut f = LoadedFilter::load();
    f.filter.set_ports(&[80], &[443]).unwrap();
    let forever = block_entry(None, reason::MANUAL, "hint");
    let cases = [
        (
            "198.18.77.0/24",
            v4_tcp(Ipv4Addr::new(198, 18, 77, 9), DST4, 80, b"x"),
        ),
        (
            "10.0.0.0/8",
            v4_tcp(Ipv4Addr::new(10, 200, 1, 1), DST4, 80, b"x"),
        ),
        (
            "192.0.0.0/6",
            v4_tcp(Ipv4Addr::new(195, 7, 7, 7), DST4, 80, b"x"),
        ),
        (
            "2001:2:77::/48",
            v6_tcp(
                Ipv6Addr::new(0x2001, 2, 0x77, 0, 0, 0, 0, 9),
                DST6,
                80,
                b"x",
            ),
        ),
        (
            "2001::/16",
            v6_tcp(
                Ipv6Addr::new(0x2001, 0xabcd, 0, 0, 0, 0, 0, 1),
                DST6,
                80,
                b"x",
            ),
        ),
    ];
    for (prefix, packet) in &cases {
        assert_eq!(f.run(packet).unwrap(), XDP_PASS, "{prefix}: before");
        f.writer.write(prefix.parse().unwrap(), &forever).unwrap();
        assert_eq!(
            f.run(packet).unwrap(),
            XDP_DROP,
            "{prefix}: member in force"
        );
    }
    // Removed and tidied: the member passes (and the hint no longer sends it to the trie).
    let (prefix, packet) = &cases[0];
    assert!(f.writer.remove(prefix.parse().unwrap()).unwrap());
    f.writer.tidy_hint(false).unwrap();
    assert_eq!(f.run(packet).unwrap(), XDP_PASS);
    // The others are still in force after the rebuild.
    for (prefix, packet) in &cases[1..] {
        assert_eq!(
            f.run(packet).unwrap(),
            XDP_DROP,
            "{prefix}: a rebuild keeps the marks other prefixes need"
        );
    }
}
