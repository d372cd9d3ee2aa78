//! Floodgate userspace: loads and pins the XDP program, edits the pinned block and allow
//! maps, and runs the detection daemon. The `floodgate` binary is a thin CLI over this library.
//! Needs Linux ≥ 5.18 and bpffs at the pin root.

/// The embedded eBPF objects built by `build.rs`.
pub mod ebpf {
    /// The Floodgate XDP program object.
    pub static FILTER: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/filter"));
    /// The baseline programs used by the benchmarks.
    pub static BASELINE: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/baseline"));
}
