//! The one way the workspace builds its eBPF crates from a build script: `aya-build` for
//! `bpfel-unknown-none` with the toolchain pinned in `rust-toolchain.toml`, leaving the objects
//! in `OUT_DIR` for `aya::include_bytes_aligned!`. `filter-user` builds the filter program with
//! it, the tests crate the benchmarks' baseline programs.

use std::{env, path::Path};

/// Builds the eBPF crate `name` at `root_dir` (relative to the calling crate), rebuilding when
/// any of `watch` changes as well.
pub fn build(name: &str, root_dir: &str, watch: &[&str]) -> anyhow::Result<()> {
    println!("cargo::rerun-if-changed=../filter-common/src");
    for path in watch {
        println!("cargo::rerun-if-changed={path}");
    }
    // The pinned toolchain is stable; `-Z build-std=core` for the BPF target needs
    // RUSTC_BOOTSTRAP=1 in the cargo that builds the eBPF crate (aya-build passes it through).
    if env::var_os("RUSTC_BOOTSTRAP").is_none() {
        // SAFETY: build scripts are single threaded; nothing reads the environment concurrently.
        unsafe { env::set_var("RUSTC_BOOTSTRAP", "1") };
    }
    let toolchain = toolchain_channel(Path::new("../rust-toolchain.toml"))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name,
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}

/// The channel pinned in rust-toolchain.toml (one place for the toolchain version).
fn toolchain_channel(path: &Path) -> anyhow::Result<String> {
    println!("cargo::rerun-if-changed={}", path.display());
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .find_map(|line| {
            line.strip_prefix("channel = ")
                .map(|v| v.trim_matches('"').to_owned())
        })
        .ok_or_else(|| anyhow::anyhow!("{} has no channel", path.display()))
}
