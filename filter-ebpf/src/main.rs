//! The Floodgate XDP program: allow list → exact block map → prefix block map → PASS, with
//! monitor mode, per-CPU outcome counters, and sampling of the evidence that passes: HTTP/1.x
//! request starts on plaintext ports and TLS ClientHellos on TLS ports, each only from a
//! connection that completed a handshake with this host.
#![no_std]
#![no_main]
// `core::sync::atomic` has no 64-bit read-modify-write on the BPF target; the intrinsic
// lowers to the BPF atomic add instruction.
#![feature(core_intrinsics)]
#![expect(
    internal_features,
    reason = "atomic_xadd is the only 64-bit atomic add on BPF"
)]

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, bpf_sock_tuple, xdp_action},
    helpers::generated::{
        bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_sk_release, bpf_skc_lookup_tcp,
        bpf_xdp_load_bytes,
    },
    macros::{map, xdp},
    maps::{Array, HashMap, LpmTrie, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::XdpContext,
};
use filter_common::{
    Addr, AllowEntry, BlockEntry, HEAD_LEN, HTTP_METHODS, MAX_SHADOWED_PREFIXES,
    SAMPLE_FLAG_TLS_HELLO, SAMPLE_FLAG_V6, SAMPLE_PAYLOAD_MAX, Sample, TLS_CLIENT_HELLO,
    TLS_RECORD_HANDSHAKE, capacity, config, counter, port_kind, prefix_hint,
};
use filter_ebpf::parse::{self, Packet, ParseError, Tcp, bounded, ptr_at};

/// `BPF_F_CURRENT_NETNS`: look sockets up in the namespace of the receiving device.
const BPF_F_CURRENT_NETNS: u64 = u64::MAX;
const TCP_ESTABLISHED: u32 = 1;

#[map(name = "FG_ALLOW")]
static ALLOW: LpmTrie<Addr, AllowEntry> = LpmTrie::pinned(capacity::ALLOW, BPF_F_NO_PREALLOC);
#[map(name = "FG_BLOCK_EXACT")]
static BLOCK_EXACT: HashMap<Addr, BlockEntry> = HashMap::pinned(capacity::BLOCK_EXACT, 0);
#[map(name = "FG_BLOCK_PREFIX")]
static BLOCK_PREFIX: LpmTrie<Addr, BlockEntry> =
    LpmTrie::pinned(capacity::BLOCK_PREFIX, BPF_F_NO_PREALLOC);
#[map(name = "FG_COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(capacity::COUNTERS, 0);
#[map(name = "FG_CONFIG")]
static CONFIG: Array<u32> = Array::pinned(capacity::CONFIG, 0);
#[map(name = "FG_PORTS")]
static PORTS: HashMap<u16, u32> = HashMap::pinned(capacity::PORTS, 0);
#[map(name = "FG_SAMPLES")]
static SAMPLES: RingBuf = RingBuf::pinned(capacity::SAMPLES_BYTES, 0);
#[map(name = "FG_PREFIX_HINT")]
static PREFIX_HINT: Array<u32> = Array::pinned(prefix_hint::BUCKETS, 0);

#[xdp]
pub fn floodgate(ctx: XdpContext) -> u32 {
    // Fail open: whatever cannot be parsed is passed and counted.
    match parse::parse(&ctx) {
        Ok(packet) => verdict(&ctx, &packet),
        Err(ParseError::NonIp) => pass(counter::NON_IP),
        Err(ParseError::Malformed) => pass(counter::NOT_PARSED),
    }
}

#[inline(always)]
fn count(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: the slot is this CPU's own copy of a per-CPU array element.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
fn pass(index: u32) -> u32 {
    count(index);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn config_value(index: u32) -> u32 {
    CONFIG.get(index).copied().unwrap_or(0)
}

/// True when `entry` is in force now (not expired).
#[inline(always)]
fn in_force(entry: &BlockEntry) -> bool {
    // SAFETY: a helper without arguments.
    entry.expires_ns == 0 || unsafe { bpf_ktime_get_ns() } < entry.expires_ns
}

/// Counts a packet against the entry that matched it.
#[inline(always)]
fn hit(entry: &BlockEntry) {
    // SAFETY: `entry` is a live map value (kept valid by RCU for this run). Map values are
    // writable memory shared between CPUs, so the 8-byte aligned hit counter is updated with an
    // atomic add through a pointer derived from the map's value pointer.
    unsafe {
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>((&raw const entry.hits).cast_mut(), 1)
    };
}

/// Verdict order: allow list → exact block → prefix block → PASS. The allow list is only
/// consulted once a block entry matched: the result is the same, and the common pass path
/// saves an LPM lookup.
#[inline(always)]
fn verdict(ctx: &XdpContext, packet: &Packet) -> u32 {
    let Ok(saddr) = packet.saddr(ctx) else {
        return pass(counter::NOT_PARSED);
    };
    let host = Key::new(128, saddr);
    let mut expired = false;
    let mut matched = None;
    // SAFETY: a value pointer from the map lookup stays valid for this program run (RCU).
    if let Some(entry) = BLOCK_EXACT.get_ptr(&saddr).map(|e| unsafe { &*e }) {
        if in_force(entry) {
            matched = Some((counter::DROPPED_EXACT, entry));
        } else {
            expired = true;
        }
    }
    // The prefix trie is the costliest lookup: skip it when no prefix can cover the source.
    if matched.is_none() && prefix_possible(&saddr) {
        // The longest prefix may have expired while a shorter one is in force: look past it.
        let mut key = Key::new(128, saddr);
        for _ in 0..MAX_SHADOWED_PREFIXES {
            let Some(entry) = BLOCK_PREFIX.get(&key) else {
                break;
            };
            if in_force(entry) {
                matched = Some((counter::DROPPED_PREFIX, entry));
                break;
            }
            expired = true;
            let len = u32::from(entry.key_len);
            if len == 0 || len > 128 {
                break;
            }
            key.prefix_len = len - 1;
        }
    }
    match matched {
        Some(_) if ALLOW.get(&host).is_some() => return pass(counter::ALLOWED),
        Some((index, entry)) => {
            hit(entry);
            if config_value(config::MONITOR) == 0 {
                count(index);
                return xdp_action::XDP_DROP;
            }
            count(counter::WOULD_DROP);
        }
        None => {
            if expired {
                count(counter::EXPIRED);
            }
            count(counter::PASSED);
        }
    }
    if let Some(tcp) = &packet.tcp {
        sample_evidence(ctx, packet, &saddr, tcp);
    }
    xdp_action::XDP_PASS
}

/// False when no prefix entry covers any address of `saddr`'s hint bucket (the map writer
/// marks a bucket before it writes a prefix there and clears it only when none is left).
#[inline(always)]
fn prefix_possible(saddr: &Addr) -> bool {
    PREFIX_HINT
        .get(prefix_hint::bucket(saddr))
        .is_none_or(|marked| *marked != 0)
}

/// What a segment's first bytes start.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Evidence {
    /// An HTTP/1.x request line.
    RequestStart,
    /// A TLS handshake record carrying a ClientHello.
    ClientHello,
}

/// Recognises the evidence a payload starts with from its first [`HEAD_LEN`] bytes.
#[inline(always)]
fn evidence(ctx: &XdpContext, tcp: &Tcp) -> Option<Evidence> {
    // The shortest request line ("GET / HTTP/1.0\r\n") and a ClientHello record are both far
    // longer than the head.
    let offset = bounded(&tcp.payload_off)?;
    let head = ptr_at::<[u8; HEAD_LEN]>(ctx, offset).ok()?;
    // SAFETY: `ptr_at` checked the bytes are inside the packet.
    let head = unsafe { core::ptr::read_unaligned(head) };
    // Record type, protocol version 3.x, two length bytes, then the handshake type.
    if head[0] == TLS_RECORD_HANDSHAKE && head[1] == 3 && head[5] == TLS_CLIENT_HELLO {
        return Some(Evidence::ClientHello);
    }
    let mut i = 0;
    while i < HTTP_METHODS.len() {
        let token = HTTP_METHODS[i];
        let mut j = 0;
        let mut equal = true;
        while j < token.len() && j < HEAD_LEN {
            if head[j] != token[j] {
                equal = false;
                break;
            }
            j += 1;
        }
        if equal {
            return Some(Evidence::RequestStart);
        }
        i += 1;
    }
    None
}

/// Counts request starts on plaintext ports and ClientHellos on TLS ports, and samples one in
/// N of them into the ring buffer, if the connection completed a handshake with this host.
#[inline(always)]
fn sample_evidence(ctx: &XdpContext, packet: &Packet, saddr: &Addr, tcp: &Tcp) {
    if tcp.payload_len == 0 {
        return;
    }
    let Some(kind) = evidence(ctx, tcp) else {
        return;
    };
    let Some(port) = PORTS.get_ptr(&tcp.dport) else {
        return;
    };
    // SAFETY: a value pointer from the lookup, valid for this run; a plain u32.
    let port = unsafe { *port };
    let flag = match kind {
        Evidence::RequestStart if port & port_kind::HTTP != 0 => {
            count(counter::REQUEST_STARTS);
            0
        }
        Evidence::ClientHello if port & port_kind::TLS != 0 => {
            count(counter::TLS_HELLOS);
            SAMPLE_FLAG_TLS_HELLO
        }
        _ => return,
    };
    let every = config_value(config::SAMPLE_EVERY);
    // SAFETY: a helper without arguments.
    if every > 1 && unsafe { bpf_get_prandom_u32() } % every != 0 {
        return;
    }
    let Ok(daddr) = packet.daddr(ctx) else { return };
    if !handshake_completed(ctx, packet.is_v6, saddr, &daddr, tcp) {
        count(counter::SAMPLES_UNVERIFIED);
        return;
    }
    let Some(mut entry) = SAMPLES.reserve::<Sample>(0) else {
        count(counter::SAMPLES_LOST);
        return;
    };
    let sample = entry.as_mut_ptr();
    let cap = match config_value(config::SAMPLE_BYTES) as usize {
        0 => SAMPLE_PAYLOAD_MAX,
        n if n < SAMPLE_PAYLOAD_MAX => n,
        _ => SAMPLE_PAYLOAD_MAX,
    };
    let captured = if tcp.payload_len < cap {
        tcp.payload_len
    } else {
        cap
    };
    // SAFETY: `sample` points at a reserved, exclusively owned ring buffer slot of
    // `size_of::<Sample>()` bytes. Fields are written one by one (no stack copy of the struct).
    unsafe {
        (*sample).ktime_ns = bpf_ktime_get_ns();
        (*sample).saddr = *saddr;
        (*sample).daddr = daddr;
        (*sample).sport = tcp.sport;
        (*sample).dport = tcp.dport;
        (*sample).payload_len = tcp.payload_len as u16;
        (*sample).tcp_flags = tcp.flags;
        (*sample).flags = flag | if packet.is_v6 { SAMPLE_FLAG_V6 } else { 0 };
        (*sample)._pad = [0; 2];
        (*sample).sample_every = if every == 0 { 1 } else { every };
    }
    // The verifier needs the length bounded in [1, SAMPLE_PAYLOAD_MAX] at the call: re-read it
    // through a volatile so the compiler cannot drop the explicit check below.
    // SAFETY: reading a local.
    let len = unsafe { core::ptr::read_volatile(&captured) } as u32;
    let offset = bounded(&tcp.payload_off).unwrap_or(usize::MAX);
    let copied = if len >= 1 && len <= SAMPLE_PAYLOAD_MAX as u32 && offset <= parse::MAX_OFFSET {
        // SAFETY: the destination is the sample's payload array of SAMPLE_PAYLOAD_MAX bytes and
        // `len` is within it; the helper bounds-checks the packet side itself.
        unsafe {
            bpf_xdp_load_bytes(
                ctx.ctx,
                offset as u32,
                (&raw mut (*sample).payload).cast(),
                len,
            ) == 0
        }
    } else {
        false
    };
    // SAFETY: as above.
    unsafe { (*sample).captured_len = if copied { len as u16 } else { 0 } };
    entry.submit(0);
    count(counter::SAMPLES);
}

/// True when the segment belongs to an established TCP connection of this host, i.e. its
/// source completed a handshake: a spoofed source never has one.
#[inline(always)]
fn handshake_completed(
    ctx: &XdpContext,
    is_v6: bool,
    saddr: &Addr,
    daddr: &Addr,
    tcp: &Tcp,
) -> bool {
    // SAFETY: an all-zero tuple is a valid value of this plain C union.
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    let size = if is_v6 {
        // SAFETY: writing plain integer fields of the union's IPv6 arm.
        unsafe {
            let v6 = &mut tuple.__bindgen_anon_1.ipv6;
            v6.saddr = core::mem::transmute::<Addr, [u32; 4]>(*saddr);
            v6.daddr = core::mem::transmute::<Addr, [u32; 4]>(*daddr);
            v6.sport = tcp.sport.to_be();
            v6.dport = tcp.dport.to_be();
            core::mem::size_of_val(v6)
        }
    } else {
        // SAFETY: writing plain integer fields of the union's IPv4 arm.
        unsafe {
            let v4 = &mut tuple.__bindgen_anon_1.ipv4;
            v4.saddr = u32::from_ne_bytes([saddr[12], saddr[13], saddr[14], saddr[15]]);
            v4.daddr = u32::from_ne_bytes([daddr[12], daddr[13], daddr[14], daddr[15]]);
            v4.sport = tcp.sport.to_be();
            v4.dport = tcp.dport.to_be();
            core::mem::size_of_val(v4)
        }
    };
    // SAFETY: `tuple` is a valid bpf_sock_tuple of `size` bytes on the stack; the returned
    // socket reference is released below before returning.
    let sk = unsafe {
        bpf_skc_lookup_tcp(
            ctx.ctx.cast(),
            &mut tuple,
            size as u32,
            BPF_F_CURRENT_NETNS,
            0,
        )
    };
    if sk.is_null() {
        return false;
    }
    // SAFETY: `sk` is a non-null socket reference from the lookup; `state` is readable on
    // sock_common; the reference is released exactly once.
    unsafe {
        let established = (*sk).state == TCP_ESTABLISHED;
        bpf_sk_release(sk.cast());
        established
    }
}

// SAFETY: the kernel reads the license from this section by this name; nothing else defines it.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
