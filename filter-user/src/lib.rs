//! Floodgate userspace: loads and pins the XDP program, edits the pinned block and allow
//! maps, and runs the detection daemon. The `floodgate` binary is a thin CLI over this library.
//! Needs Linux ≥ 5.18 and bpffs at the pin root.

pub mod attach;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod control;
pub mod daemon;
pub mod detect;
pub mod filter;
pub mod guard;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod pins;
pub mod rate;
pub mod target;

/// The embedded eBPF object built by `build.rs`.
pub mod ebpf {
    /// The Floodgate XDP program object.
    pub static FILTER: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/filter"));
}
