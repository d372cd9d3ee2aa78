//! Baseline XDP programs the filter is benchmarked against in the same run
//! (`cargo xtask bench verdict`):
//! - `baseline_empty` returns PASS and touches nothing: the harness cost;
//! - `baseline_hash_drop` is the minimal "exact-hash lookup then drop" filter: Ethernet (no
//!   VLAN), IPv4 or IPv6 source into the same 16-byte key, one hash lookup, DROP on a hit;
//! - `baseline_count_per_source` counts every packet per source exactly in an LRU per-CPU
//!   hash: the alternative to sampling request starts, measured by `bench detect`.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{HashMap, LruPerCpuHashMap},
    programs::XdpContext,
};
use filter_common::{Addr, capacity, v4_mapped};
use filter_ebpf::parse::ptr_at;

#[map(name = "BASE_BLOCK")]
static BASE_BLOCK: HashMap<Addr, u64> = HashMap::with_max_entries(capacity::BLOCK_EXACT, 0);

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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
