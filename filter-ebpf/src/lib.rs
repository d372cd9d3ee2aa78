//! The Floodgate XDP program (the `filter` bin) and its packet parser, which the benchmarks'
//! baseline programs (`bench-ebpf`) reuse.
//!
//! Built for `bpfel-unknown-none` by `filter-user/build.rs`; never built for the host. Needs
//! Linux ≥ 5.18 (`bpf_xdp_load_bytes`, ring buffers, `bpf_skc_lookup_tcp`, BPF atomics).
#![no_std]

pub mod parse;

/// The one panic handler of every program built on this crate. Nothing in them panics (no
/// indexing, no `unwrap`); the verifier would reject a program whose panic path is reachable.
#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
