//! Builds the eBPF crate for `bpfel-unknown-none` with the pinned toolchain and leaves the
//! object in `OUT_DIR`, from where `src/bpf/mod.rs` embeds it.

fn main() -> anyhow::Result<()> {
    ebpf_build::build("filter-ebpf", "../filter-ebpf", &[])
}
