//! The benchmarks' own XDP programs, in one object (`baseline`): the baselines the filter is
//! measured against in the same run, and the traffic generator of `bench drop`. Built for
//! `bpfel-unknown-none` by `tests/build.rs`, never for the host; the bench tools and the
//! in-place-upgrade test load it from `floodgate_tests::kernel::BASELINE`.
//! - `baseline_empty` returns PASS and touches nothing: the harness cost;
//! - `baseline_hash_drop` is the minimal "exact-hash lookup then drop" filter: Ethernet (no
//!   VLAN), IPv4 or IPv6 source into the same 16-byte key, one hash lookup, DROP on a hit;
//! - `baseline_count_per_source` counts every packet per source exactly in an LRU per-CPU
//!   hash: the alternative to sampling request starts, measured by `bench detect`;
//! - `baseline_drop_all` drops everything: the floor of the drop-capacity benchmark;
//! - `bench_generator` is the traffic generator of that benchmark: run through
//!   `BPF_PROG_TEST_RUN` in live-frames mode, it gives each IPv4 frame the next source address
//!   of a range and redirects it into a veth.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::bpf_redirect,
    macros::{map, xdp},
    maps::{Array, HashMap, LruPerCpuHashMap, PerCpuArray},
    programs::XdpContext,
};
use filter_common::{Addr, capacity, v4_mapped};
use filter_ebpf::parse::ptr_at;

#[map(name = "BASE_BLOCK")]
static BASE_BLOCK: HashMap<Addr, u64> = HashMap::with_max_entries(capacity::BLOCK_EXACT, 0);

/// Generator settings: [0] ifindex to redirect to, [1] number of sources, [2] first source
/// (IPv4, host order).
#[map(name = "GEN_CONFIG")]
static GEN_CONFIG: Array<u32> = Array::with_max_entries(4, 0);
#[map(name = "GEN_SEQ")]
static GEN_SEQ: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

#[xdp]
pub fn baseline_drop_all(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

#[xdp]
pub fn bench_generator(ctx: XdpContext) -> u32 {
    let (Some(ifindex), Some(count), Some(first), Some(seq)) = (
        GEN_CONFIG.get(0),
        GEN_CONFIG.get(1),
        GEN_CONFIG.get(2),
        GEN_SEQ.get_ptr_mut(0),
    ) else {
        return xdp_action::XDP_ABORTED;
    };
    let Ok(header) = ptr_at::<[u8; 20]>(&ctx, 14) else {
        return xdp_action::XDP_ABORTED;
    };
    let header = header.cast_mut();
    // SAFETY: `seq` is this CPU's own slot; `header` points at 20 bounds-checked bytes of the
    // frame, which the program may write.
    unsafe {
        let n = *seq;
        *seq = n.wrapping_add(1);
        let source = first.wrapping_add(if *count == 0 { 0 } else { n % *count });
        let header = &mut *header;
        header[12..16].copy_from_slice(&source.to_be_bytes());
        header[10] = 0;
        header[11] = 0;
        let mut sum = 0u32;
        let mut i = 0;
        while i < 20 {
            sum += u32::from(u16::from_be_bytes([header[i], header[i + 1]]));
            i += 2;
        }
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        let checksum = !(sum as u16);
        header[10..12].copy_from_slice(&checksum.to_be_bytes());
        bpf_redirect(*ifindex, 0) as u32
    }
}

#[map(name = "BASE_COUNTS")]
static BASE_COUNTS: LruPerCpuHashMap<Addr, u64> = LruPerCpuHashMap::with_max_entries(1 << 20, 0);

#[xdp]
pub fn baseline_count_per_source(ctx: XdpContext) -> u32 {
    if let Some(saddr) = source(&ctx) {
        match BASE_COUNTS.get_ptr_mut(&saddr) {
            // SAFETY: this CPU's own copy of the value.
            Some(count) => unsafe { *count += 1 },
            None => {
                let _ = BASE_COUNTS.insert(&saddr, &1, 0);
            }
        }
    }
    xdp_action::XDP_PASS
}

#[xdp]
pub fn baseline_empty(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[xdp]
pub fn baseline_hash_drop(ctx: XdpContext) -> u32 {
    source(&ctx).map_or(xdp_action::XDP_PASS, |saddr| {
        if BASE_BLOCK.get_ptr(&saddr).is_some() {
            xdp_action::XDP_DROP
        } else {
            xdp_action::XDP_PASS
        }
    })
}

#[inline(always)]
fn source(ctx: &XdpContext) -> Option<Addr> {
    let ether_type = ptr_at::<[u8; 2]>(ctx, 12).ok()?;
    // SAFETY: every pointer below comes from `ptr_at`, which bounds-checked it.
    unsafe {
        match *ether_type {
            [0x08, 0x00] => Some(v4_mapped(*ptr_at::<[u8; 4]>(ctx, 14 + 12).ok()?)),
            [0x86, 0xdd] => Some(*ptr_at::<Addr>(ctx, 14 + 8).ok()?),
            _ => None,
        }
    }
}

// SAFETY: the kernel reads the license from this section by this name; nothing else defines it.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
