//! Builds the benchmarks' eBPF crate (`bench-ebpf`) for `bpfel-unknown-none` with the pinned
//! toolchain (aya-build), exactly as `filter-user/build.rs` builds `filter-ebpf`, and leaves its
//! object, `baseline`, in `OUT_DIR`, from where `kernel::BASELINE` embeds it. This is its only
//! build: the bench crate uses the object through this crate.
use std::env;

fn main() -> anyhow::Result<()> {
    println!("cargo::rerun-if-changed=../filter-common/src");
    // bench-ebpf uses filter-ebpf's packet parser.
    println!("cargo::rerun-if-changed=../filter-ebpf/src");
    // The pinned toolchain is stable; `-Z build-std=core` for the BPF target needs
    // RUSTC_BOOTSTRAP=1 in the cargo that builds the eBPF crate (aya-build passes it through).
    if env::var_os("RUSTC_BOOTSTRAP").is_none() {
        // SAFETY: build scripts are single threaded; nothing reads the environment concurrently.
        unsafe { env::set_var("RUSTC_BOOTSTRAP", "1") };
    }
    let toolchain = toolchain_channel()?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "bench-ebpf",
            root_dir: "../bench-ebpf",
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}

/// The channel pinned in rust-toolchain.toml (one place for the toolchain version).
fn toolchain_channel() -> anyhow::Result<String> {
    println!("cargo::rerun-if-changed=../rust-toolchain.toml");
    let text = std::fs::read_to_string("../rust-toolchain.toml")?;
    text.lines()
        .find_map(|line| {
            line.strip_prefix("channel = ")
                .map(|v| v.trim_matches('"').to_owned())
        })
        .ok_or_else(|| anyhow::anyhow!("rust-toolchain.toml has no channel"))
}
