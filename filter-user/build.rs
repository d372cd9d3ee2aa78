//! Builds the eBPF crate for `bpfel-unknown-none` with the pinned toolchain (aya-build) and
//! leaves the objects in `OUT_DIR`, from where `src/ebpf.rs` embeds them.
use std::env;

fn main() -> anyhow::Result<()> {
    println!("cargo::rerun-if-changed=../filter-common/src");
    // The pinned toolchain is stable; `-Z build-std=core` for the BPF target needs
    // RUSTC_BOOTSTRAP=1 in the cargo that builds the eBPF crate (aya-build passes it through).
    if env::var_os("RUSTC_BOOTSTRAP").is_none() {
        // SAFETY: build scripts are single threaded; nothing reads the environment concurrently.
        unsafe { env::set_var("RUSTC_BOOTSTRAP", "1") };
    }
    let toolchain = toolchain_channel()?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "filter-ebpf",
            root_dir: "../filter-ebpf",
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
