//! The Floodgate XDP program and the baseline programs it is benchmarked against.
//!
//! Built for `bpfel-unknown-none` by `filter-user/build.rs`; never built for the host. Needs
//! Linux ≥ 5.18 (`bpf_xdp_load_bytes`, ring buffers, `bpf_skc_lookup_tcp`, BPF atomics).
#![no_std]

pub mod parse;
