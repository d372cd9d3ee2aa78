//! Packet fuzzing through the real program: random and mutated frames (truncated, wrong
//! lengths, odd VLAN stacks, IPv6 extension chains, IPv4 options, fragments) run through
//! `BPF_PROG_TEST_RUN` against a populated map set, each checked against a reference model of
//! what the verdict must be. Invariants: never XDP_ABORTED; a packet is dropped only if its
//! parsed source is blocked, in force and not allow-listed (and every such packet is dropped);
//! the outcome counters add up to the number of packets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use filter_common::{counter, reason};
use filter_user::{bpf::maps::block_entry, target::Target};

use crate::{
    kernel::{LoadedFilter, XDP_DROP, XDP_PASS},
    packet::{
        ETH_8021AD, ETH_8021Q, ETH_IPV4, ETH_IPV6, Ext, V4Opts, ethernet, ext_fragment,
        ext_options, ipv4, ipv6, tcp, udp,
    },
};

/// xorshift64*: small, seedable, good enough for test inputs.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// True with probability 1/n.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// The address pool: a few blocked, expired, prefix-covered, allow-listed and clean sources
/// of both families, so that random packets hit every branch.
fn pool() -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = Vec::new();
    for i in 0..8u8 {
        v.push(Ipv4Addr::new(198, 18, 0, i).into());
        v.push(Ipv4Addr::new(198, 18, 5, i).into());
        v.push(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, u16::from(i)).into());
        v.push(Ipv6Addr::new(0x2001, 2, 5, 0, 0, 0, 0, u16::from(i)).into());
    }
    v
}

/// Populates the maps: exact blocks (some expired), two prefixes, allow entries.
pub fn populate(f: &mut LoadedFilter) {
    let forever = block_entry(None, reason::MANUAL, "fuzz");
    let mut expired = block_entry(None, reason::MANUAL, "fuzz-expired");
    expired.expires_ns = 1;
    for (i, ip) in pool().into_iter().enumerate() {
        match i % 4 {
            0 => {
                f.writer.write(Target::host(ip), &forever).unwrap();
            }
            1 => {
                f.writer.write(Target::host(ip), &expired).unwrap();
            }
            _ => {}
        }
        if i % 7 == 0 {
            f.filter.allow(Target::host(ip)).unwrap();
        }
    }
    f.writer
        .write("198.18.5.0/29".parse().unwrap(), &forever)
        .unwrap();
    f.writer
        .write("2001:2:5::/120".parse().unwrap(), &expired)
        .unwrap();
    f.writer
        .write("2001:2:5::/64".parse().unwrap(), &forever)
        .unwrap();
    f.filter.set_ports(&[80], &[443]).unwrap();
}

/// The reference model: the source the program must parse, if any (Ethernet, ≤ 2 VLAN tags,
/// a complete IPv4 header with version 4, ihl ≥ 5 and its options, or a complete IPv6 header
/// with version 6).
#[must_use]
pub fn model_source(p: &[u8]) -> Option<IpAddr> {
    let mut off = 12;
    let mut et = u16::from_be_bytes([*p.get(off)?, *p.get(off + 1)?]);
    off = 14;
    for _ in 0..2 {
        if et != ETH_8021Q && et != ETH_8021AD {
            break;
        }
        et = u16::from_be_bytes([*p.get(off + 2)?, *p.get(off + 3)?]);
        off += 4;
    }
    match et {
        ETH_IPV4 => {
            let h = p.get(off..off + 20)?;
            let ihl = usize::from(h[0] & 0x0f) * 4;
            if h[0] >> 4 != 4 || ihl < 20 || p.len() < off + ihl {
                return None;
            }
            Some(Ipv4Addr::new(h[12], h[13], h[14], h[15]).into())
        }
        ETH_IPV6 => {
            let h = p.get(off..off + 40)?;
            if h[0] >> 4 != 6 {
                return None;
            }
            let src: [u8; 16] = h[8..24].try_into().ok()?;
            Some(filter_user::target::canonical(Ipv6Addr::from(src).into()))
        }
        _ => None,
    }
}

fn random_packet(rng: &mut Rng, pool: &[IpAddr]) -> Vec<u8> {
    let src = pool[rng.below(pool.len() as u64) as usize];
    let payload: &[u8] = if rng.one_in(2) {
        b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
    } else {
        b"\x16\x03\x01junk"
    };
    let l4 = match rng.below(3) {
        0 => tcp(
            1024 + rng.below(60000) as u16,
            if rng.one_in(2) { 80 } else { 443 },
            rng.below(256) as u8,
            payload,
        ),
        1 => udp(53, 53, payload),
        _ => (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect(),
    };
    let proto = [6u8, 17, 1, 58, 0, 255][rng.below(6) as usize];
    let l3 = match src {
        IpAddr::V4(s) => {
            let options: Vec<u8> = (0..rng.below(11) * 4)
                .map(|_| rng.next_u64() as u8)
                .collect();
            let opts = V4Opts {
                options: &options,
                frag_offset: if rng.one_in(4) {
                    rng.below(8192) as u16
                } else {
                    0
                },
                more_fragments: rng.one_in(4),
            };
            ipv4(s, Ipv4Addr::new(198, 18, 0, 1), proto, opts, &l4)
        }
        IpAddr::V6(s) => {
            let codes = [0u8, 43, 60, 44, 6, 17, 59];
            let exts: Vec<Ext> = (0..rng.below(9))
                .map(|_| match codes[rng.below(4) as usize] {
                    44 => ext_fragment(rng.below(8192) as u16, rng.one_in(2)),
                    code => ext_options(code, 1 + rng.below(3) as usize),
                })
                .collect();
            ipv6(
                s,
                Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1),
                &exts,
                proto,
                &l4,
            )
        }
    };
    let tags: Vec<(u16, u16)> = (0..rng.below(4))
        .map(|_| {
            (
                if rng.one_in(2) { ETH_8021Q } else { ETH_8021AD },
                rng.below(4096) as u16,
            )
        })
        .collect();
    let et = match (src, rng.below(16)) {
        (_, 0) => 0x0806,
        (_, 1) => rng.next_u64() as u16,
        (IpAddr::V4(_), 2) => ETH_IPV6,
        (IpAddr::V6(_), 2) => ETH_IPV4,
        (IpAddr::V4(_), _) => ETH_IPV4,
        (IpAddr::V6(_), _) => ETH_IPV6,
    };
    ethernet(&tags, et, &l3)
}

fn mutate(rng: &mut Rng, mut p: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.below(4) {
        match rng.below(5) {
            // Truncate anywhere (BPF_PROG_TEST_RUN needs at least an Ethernet header).
            0 => p.truncate((14 + rng.below(p.len().max(15) as u64 - 13)) as usize),
            // Flip a byte (lengths, versions, next headers, tags…).
            1 if !p.is_empty() => {
                let i = rng.below(p.len() as u64) as usize;
                p[i] = rng.next_u64() as u8;
            }
            // Append garbage.
            2 => p.extend((0..rng.below(32)).map(|_| rng.next_u64() as u8)),
            // Corrupt a length-ish field near the IP header.
            3 if p.len() > 20 => {
                let i = 14 + rng.below(p.len() as u64 - 14).min(8) as usize;
                p[i] = 0xff;
            }
            _ => {}
        }
    }
    p
}

/// Outcome of a fuzz run.
#[derive(Debug, Default)]
pub struct FuzzReport {
    /// Packets run.
    pub packets: u64,
    /// Packets dropped.
    pub dropped: u64,
    /// Packets whose source the model could parse.
    pub parsed: u64,
}

/// Runs `count` random and mutated packets; panics on the first violated invariant.
pub fn run(f: &mut LoadedFilter, count: u64, seed: u64) -> FuzzReport {
    let mut rng = Rng::new(seed);
    let pool = pool();
    let before = f.counters();
    let mut report = FuzzReport::default();
    let model = Model::snapshot(f);
    for n in 0..count {
        let fresh = random_packet(&mut rng, &pool);
        let p = mutate(&mut rng, fresh);
        let verdict = f
            .run(&p)
            .unwrap_or_else(|e| panic!("packet {n}: test run failed: {e} ({p:02x?})"));
        assert!(
            verdict == XDP_PASS || verdict == XDP_DROP,
            "packet {n}: verdict {verdict} ({p:02x?})"
        );
        let src = model_source(&p);
        let must_drop = src.is_some_and(|ip| model.drops(ip));
        assert_eq!(
            verdict == XDP_DROP,
            must_drop,
            "packet {n}: source {src:?}, verdict {verdict} ({p:02x?})"
        );
        report.packets += 1;
        report.dropped += u64::from(verdict == XDP_DROP);
        report.parsed += u64::from(src.is_some());
    }
    let after = f.counters();
    let outcomes: u64 = counter::OUTCOMES
        .iter()
        .map(|i| after[*i as usize] - before[*i as usize])
        .sum();
    assert_eq!(
        outcomes, count,
        "outcome counters add up to the packets run"
    );
    let drops = after[counter::DROPPED_EXACT as usize] + after[counter::DROPPED_PREFIX as usize]
        - before[counter::DROPPED_EXACT as usize]
        - before[counter::DROPPED_PREFIX as usize];
    assert_eq!(drops, report.dropped, "drop counters match the verdicts");
    report
}

/// The populated maps, read once (entries are either permanent or long expired, so the
/// snapshot stays true during a run), with the program's decision rule.
struct Model {
    blocks: Vec<filter_user::bpf::maps::BlockView>,
    allowed: Vec<Target>,
}

impl Model {
    fn snapshot(f: &LoadedFilter) -> Self {
        Self {
            blocks: f.filter.blocks().unwrap(),
            allowed: f
                .filter
                .allowed()
                .unwrap()
                .into_iter()
                .map(|a| a.target)
                .collect(),
        }
    }

    /// Exact entry in force, else the longest in-force prefix within the shadow limit; never
    /// when allow-listed.
    fn drops(&self, ip: IpAddr) -> bool {
        if self.allowed.iter().any(|a| a.contains(ip)) {
            return false;
        }
        if self
            .blocks
            .iter()
            .any(|b| b.target.is_host() && b.target.contains(ip) && !b.expired)
        {
            return true;
        }
        let mut covering: Vec<_> = self
            .blocks
            .iter()
            .filter(|b| !b.target.is_host() && b.target.contains(ip))
            .collect();
        covering.sort_by_key(|b| std::cmp::Reverse(b.target.len));
        covering
            .iter()
            .take(filter_common::MAX_SHADOWED_PREFIXES)
            .any(|b| !b.expired)
    }
}
