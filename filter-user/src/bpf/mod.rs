//! The kernel side as userspace sees it: the embedded object, the pins under the pin root,
//! loading and attaching the program, and typed access to the pinned maps.

pub mod attach;
pub mod maps;
pub mod pins;
pub(crate) mod prefix_hint;

/// The embedded eBPF object built by `build.rs`.
pub(crate) mod ebpf {
    /// The Floodgate XDP program object.
    pub(crate) static FILTER: &[u8] =
        aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/filter"));
}
