//! Bounds-checked packet parsing: Ethernet, up to two VLAN tags, IPv4 with options, IPv6 with a
//! bounded walk over extension headers, TCP.
//!
//! Every read goes through [`ptr_at`]; wire fields are read as integers, never as enums.

use aya_ebpf::programs::XdpContext;
use filter_common::{Addr, v4_mapped};

const ETH_HDR_LEN: usize = 14;
const VLAN_HDR_LEN: usize = 4;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const IPV4_MIN_HDR_LEN: usize = 20;
const IPV6_HDR_LEN: usize = 40;
const IPPROTO_TCP: u8 = 6;
const IPV6_HOPOPTS: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DSTOPTS: u8 = 60;
/// Extension headers followed before giving up on finding the transport header.
const IPV6_MAX_EXT_HEADERS: usize = 6;
const TCP_MIN_HDR_LEN: usize = 20;

/// Why a packet could not be followed to its source address.
pub enum ParseError {
    /// Not IPv4 or IPv6.
    NonIp,
    /// Truncated or malformed below the source address.
    Malformed,
}

/// What the verdict and the sampler need from a packet. Addresses stay in the packet (the
/// 512-byte BPF stack has no room for copies): read them with [`Packet::saddr`]/[`Packet::daddr`].
pub struct Packet {
    /// Offset of the IP header.
    pub l3: usize,
    /// True for IPv6.
    pub is_v6: bool,
    /// The TCP header, when the packet is an unfragmented (or first-fragment) TCP segment
    /// whose header is complete.
    pub tcp: Option<Tcp>,
}

/// A TCP header located in the packet.
pub struct Tcp {
    /// Source port, host order.
    pub sport: u16,
    /// Destination port, host order.
    pub dport: u16,
    /// Flags byte.
    pub flags: u8,
    /// Offset of the payload from the start of the packet.
    pub payload_off: usize,
    /// Payload length (to the end of the packet, or of the IP datagram if shorter).
    pub payload_len: usize,
}

/// Returns a pointer to a `T` at `offset`, or `Err` when it would reach past the packet end.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*const T, ()> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return Err(());
    }
    Ok((start + offset) as *const T)
}

/// Largest packet offset the program works with (jumbo frames stay well below).
pub const MAX_OFFSET: usize = 0x3fff;

/// Re-reads an offset that the compiler may have spilled in a form the verifier cannot bound,
/// and bounds it explicitly: `None` when out of range.
#[inline(always)]
pub fn bounded(offset: &usize) -> Option<usize> {
    // SAFETY: a volatile read of a valid reference; it only stops the compiler from folding
    // away the range check the verifier needs.
    let offset = unsafe { core::ptr::read_volatile(offset) };
    if offset > MAX_OFFSET {
        None
    } else {
        Some(offset)
    }
}

#[inline(always)]
fn read<T: Copy>(ctx: &XdpContext, offset: usize) -> Result<T, ()> {
    let ptr = ptr_at::<T>(ctx, offset)?;
    // SAFETY: `ptr_at` checked that `size_of::<T>()` bytes at `ptr` lie inside the packet;
    // the read is unaligned because packet fields have no alignment guarantee.
    Ok(unsafe { core::ptr::read_unaligned(ptr) })
}

#[inline(always)]
fn read_be16(ctx: &XdpContext, offset: usize) -> Result<u16, ()> {
    read::<[u8; 2]>(ctx, offset).map(u16::from_be_bytes)
}

/// Parses the packet far enough for a verdict (source address) and, where possible, sampling.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Packet, ParseError> {
    let mut ether_type = read_be16(ctx, 12).map_err(|()| ParseError::Malformed)?;
    let mut l3 = ETH_HDR_LEN;
    // Up to two tags: 802.1ad outer, 802.1Q inner (or two 802.1Q).
    for _ in 0..2 {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        ether_type = read_be16(ctx, l3 + 2).map_err(|()| ParseError::Malformed)?;
        l3 += VLAN_HDR_LEN;
    }
    match ether_type {
        ETH_P_IPV4 => parse_v4(ctx, l3).map_err(|()| ParseError::Malformed),
        ETH_P_IPV6 => parse_v6(ctx, l3).map_err(|()| ParseError::Malformed),
        _ => Err(ParseError::NonIp),
    }
}

#[inline(always)]
fn parse_v4(ctx: &XdpContext, l3: usize) -> Result<Packet, ()> {
    let hdr: [u8; IPV4_MIN_HDR_LEN] = read(ctx, l3)?;
    let version = hdr[0] >> 4;
    let header_len = usize::from(hdr[0] & 0x0f) * 4;
    if version != 4 || header_len < IPV4_MIN_HDR_LEN {
        return Err(());
    }
    // Options must be present in full.
    ptr_at::<u8>(ctx, l3 + header_len - 1)?;
    let total_len = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    let fragment_offset = u16::from_be_bytes([hdr[6], hdr[7]]) & 0x1fff;
    let tcp = if hdr[9] == IPPROTO_TCP && fragment_offset == 0 && total_len >= header_len {
        parse_tcp(ctx, l3 + header_len, l3 + total_len)
    } else {
        None
    };
    Ok(Packet {
        l3,
        is_v6: false,
        tcp,
    })
}

#[inline(always)]
fn parse_v6(ctx: &XdpContext, l3: usize) -> Result<Packet, ()> {
    let first: [u8; 8] = read(ctx, l3)?;
    if first[0] >> 4 != 6 {
        return Err(());
    }
    ptr_at::<u8>(ctx, l3 + IPV6_HDR_LEN - 1)?;
    let datagram_end = l3 + IPV6_HDR_LEN + usize::from(u16::from_be_bytes([first[4], first[5]]));
    let mut next = first[6];
    let mut off = l3 + IPV6_HDR_LEN;
    let mut later_fragment = false;
    for _ in 0..IPV6_MAX_EXT_HEADERS {
        match next {
            IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS => {
                let Ok(ext) = read::<[u8; 2]>(ctx, off) else {
                    break;
                };
                next = ext[0];
                off += (usize::from(ext[1]) + 1) * 8;
            }
            IPV6_FRAGMENT => {
                let Ok(frag) = read::<[u8; 4]>(ctx, off) else {
                    break;
                };
                next = frag[0];
                later_fragment = u16::from_be_bytes([frag[2], frag[3]]) & 0xfff8 != 0;
                off += 8;
            }
            _ => break,
        }
    }
    // The source is known: a verdict is possible even if the chain is too long or cut short.
    let tcp = if next == IPPROTO_TCP && !later_fragment {
        parse_tcp(ctx, off, datagram_end)
    } else {
        None
    };
    Ok(Packet {
        l3,
        is_v6: true,
        tcp,
    })
}

#[inline(always)]
fn parse_tcp(ctx: &XdpContext, l4: usize, datagram_end: usize) -> Option<Tcp> {
    let hdr: [u8; TCP_MIN_HDR_LEN] = read(ctx, l4).ok()?;
    let header_len = usize::from(hdr[12] >> 4) * 4;
    if header_len < TCP_MIN_HDR_LEN {
        return None;
    }
    let payload_off = l4 + header_len;
    let packet_len = ctx.data_end() - ctx.data();
    let end = if datagram_end < packet_len {
        datagram_end
    } else {
        packet_len
    };
    let payload_len = end.saturating_sub(payload_off);
    Some(Tcp {
        sport: u16::from_be_bytes([hdr[0], hdr[1]]),
        dport: u16::from_be_bytes([hdr[2], hdr[3]]),
        flags: hdr[13],
        payload_off,
        payload_len,
    })
}

impl Packet {
    /// The source address in 16-byte form (the header was bounds-checked by [`parse`]).
    #[inline(always)]
    pub fn saddr(&self, ctx: &XdpContext) -> Result<Addr, ()> {
        self.address(ctx, 12, 8)
    }

    /// The destination address in 16-byte form.
    #[inline(always)]
    pub fn daddr(&self, ctx: &XdpContext) -> Result<Addr, ()> {
        self.address(ctx, 16, 24)
    }

    #[inline(always)]
    fn address(&self, ctx: &XdpContext, v4_off: usize, v6_off: usize) -> Result<Addr, ()> {
        if self.is_v6 {
            read(ctx, self.l3 + v6_off)
        } else {
            read::<[u8; 4]>(ctx, self.l3 + v4_off).map(v4_mapped)
        }
    }
}
