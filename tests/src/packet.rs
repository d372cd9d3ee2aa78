//! Packet builders for verdict tables and raw-frame injection: Ethernet with VLAN tags, IPv4
//! with options and fragments, IPv6 with extension headers, TCP and UDP. Checksums are left
//! zero except the IPv4 header's (XDP does not verify them).

use std::net::{Ipv4Addr, Ipv6Addr};

/// EtherTypes.
pub const ETH_IPV4: u16 = 0x0800;
/// EtherTypes.
pub const ETH_IPV6: u16 = 0x86dd;
/// EtherTypes.
pub const ETH_ARP: u16 = 0x0806;
/// EtherTypes.
pub const ETH_8021Q: u16 = 0x8100;
/// EtherTypes.
pub const ETH_8021AD: u16 = 0x88a8;

/// An Ethernet frame around `payload` with `vlans` tags (outer first, each given its TPID).
#[must_use]
pub fn ethernet(vlans: &[(u16, u16)], ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    for (tpid, vid) in vlans {
        f.extend(tpid.to_be_bytes());
        f.extend(vid.to_be_bytes());
    }
    f.extend(ether_type.to_be_bytes());
    f.extend(payload);
    f
}

/// TCP header (20 bytes + optional options) and payload.
#[must_use]
pub fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + payload.len());
    t.extend(sport.to_be_bytes());
    t.extend(dport.to_be_bytes());
    t.extend(1u32.to_be_bytes());
    t.extend(1u32.to_be_bytes());
    t.push(5 << 4);
    t.push(flags);
    t.extend(65535u16.to_be_bytes());
    t.extend([0, 0, 0, 0]);
    t.extend(payload);
    t
}

/// UDP header and payload.
#[must_use]
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend(sport.to_be_bytes());
    u.extend(dport.to_be_bytes());
    u.extend(
        u16::try_from(8 + payload.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    u.extend([0, 0]);
    u.extend(payload);
    u
}

/// IPv4 header options (multiple of 4 bytes) and fragment offset (8-byte units).
#[derive(Clone, Copy, Default)]
pub struct V4Opts<'a> {
    /// Options bytes.
    pub options: &'a [u8],
    /// Fragment offset in 8-byte units.
    pub frag_offset: u16,
    /// More-fragments flag.
    pub more_fragments: bool,
}

/// An IPv4 packet.
#[must_use]
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, opts: V4Opts<'_>, payload: &[u8]) -> Vec<u8> {
    let ihl = 5 + opts.options.len() / 4;
    let total = u16::try_from(ihl * 4 + payload.len()).unwrap_or(u16::MAX);
    let mut h = vec![0x40 | u8::try_from(ihl).unwrap_or(15), 0];
    h.extend(total.to_be_bytes());
    h.extend([0, 1]);
    let frag = opts.frag_offset | if opts.more_fragments { 0x2000 } else { 0 };
    h.extend(frag.to_be_bytes());
    h.extend([64, proto, 0, 0]);
    h.extend(src.octets());
    h.extend(dst.octets());
    h.extend(opts.options);
    let sum = checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend(payload);
    h
}

/// An IPv6 extension header: (next-header code of this header, bytes including its own
/// next-header and length fields, which are filled in).
pub type Ext = (u8, Vec<u8>);

/// A hop-by-hop / destination options header of `len8` 8-byte units.
#[must_use]
pub fn ext_options(code: u8, len8: usize) -> Ext {
    (code, vec![0u8; len8 * 8])
}

/// A fragment header with `offset` (8-byte units).
#[must_use]
pub fn ext_fragment(offset: u16, more: bool) -> Ext {
    let mut f = vec![0u8; 8];
    let v = (offset << 3) | u16::from(more);
    f[2..4].copy_from_slice(&v.to_be_bytes());
    (44, f)
}

/// An IPv6 packet with extension headers before the `proto` payload.
#[must_use]
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, exts: &[Ext], proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, (_, bytes)) in exts.iter().enumerate() {
        let mut bytes = bytes.clone();
        bytes[0] = exts.get(i + 1).map_or(proto, |(code, _)| *code);
        if exts[i].0 != 44 {
            bytes[1] = u8::try_from(bytes.len() / 8 - 1).unwrap_or(0);
        }
        body.extend(bytes);
    }
    body.extend(payload);
    let mut h = vec![0x60, 0, 0, 0];
    h.extend(u16::try_from(body.len()).unwrap_or(u16::MAX).to_be_bytes());
    h.push(exts.first().map_or(proto, |(code, _)| *code));
    h.push(64);
    h.extend(src.octets());
    h.extend(dst.octets());
    h.extend(body);
    h
}

/// The Internet checksum.
#[must_use]
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for pair in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet/IPv4/TCP frame (the common case).
#[must_use]
pub fn v4_tcp(src: Ipv4Addr, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    ethernet(
        &[],
        ETH_IPV4,
        &ipv4(
            src,
            dst,
            6,
            V4Opts::default(),
            &tcp(40000, dport, 0x18, payload),
        ),
    )
}

/// An Ethernet/IPv6/TCP frame.
#[must_use]
pub fn v6_tcp(src: Ipv6Addr, dst: Ipv6Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    ethernet(
        &[],
        ETH_IPV6,
        &ipv6(src, dst, &[], 6, &tcp(40000, dport, 0x18, payload)),
    )
}
