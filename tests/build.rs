//! Builds the benchmarks' eBPF crate (`bench-ebpf`) the way `filter-user/build.rs` builds
//! `filter-ebpf`, and leaves its object, `baseline`, in `OUT_DIR`, from where
//! `kernel::BASELINE` embeds it. This is its only build: the bench crate uses the object
//! through this crate.

fn main() -> anyhow::Result<()> {
    // bench-ebpf uses filter-ebpf's packet parser.
    ebpf_build::build("bench-ebpf", "../bench-ebpf", &["../filter-ebpf/src"])
}
