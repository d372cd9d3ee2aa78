//! Installs what the build and the tests need, idempotently, saying what it does: Debian
//! packages, the toolchain's rust-src, a bpf-linker built against the pinned toolchain's own
//! libLLVM, and the bpffs mount at /sys/fs/bpf.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail, ensure};

/// bpf-linker release built for the pinned toolchain (bump together with rust-toolchain.toml).
const BPF_LINKER_VERSION: &str = "0.13.0";
/// The LLVM major of the pinned toolchain, i.e. bpf-linker's `llvm-N` feature.
const LLVM_MAJOR: &str = "23";
/// Debian packages the build, tests, benchmarks and load test use.
const APT_PACKAGES: [&str; 25] = [
    "iproute2",
    "util-linux",
    "curl",
    "nginx",
    "wrk",
    "gcc",
    "g++",
    "systemd",
    "fonts-dejavu-core",
    "dpkg-dev",
    "iptables",
    "nftables",
    "ipset",
    "ethtool",
    "openssl",
    "haproxy",
    "nghttp2-client",
    "slowhttptest",
    // The ecosystem the tests run Floodgate beside or against.
    "crowdsec",
    "crowdsec-firewall-bouncer",
    "fail2ban",
    "xdp-tools",
    "prometheus",
    "nats-server",
    "debootstrap",
];

/// Services Debian would start on install; the tests start their own, in namespaces.
const NO_START: [&str; 7] = [
    "nginx",
    "haproxy",
    "crowdsec",
    "crowdsec-firewall-bouncer",
    "fail2ban",
    "prometheus",
    "nats-server",
];

/// crowdsec's postinst registers with the Central API (online) unless this file exists and
/// is non-empty; there is no Central API here, and the tests run their own local API.
const CROWDSEC_ONLINE_CREDENTIALS: &str = "/etc/crowdsec/online_api_credentials.yaml";

/// What later steps need from setup.
pub(crate) struct Env {
    /// Directory holding bpf-linker (prepended to PATH for cargo).
    pub(crate) linker_bin: PathBuf,
}

impl Env {
    /// PATH with bpf-linker first.
    #[must_use]
    pub(crate) fn path(&self) -> std::ffi::OsString {
        let mut paths = vec![self.linker_bin.clone()];
        paths.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        std::env::join_paths(paths).unwrap_or_default()
    }
}

fn say(text: &str) {
    eprintln!("==> {text}");
}

/// Runs a command, failing with its name when it fails.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("spawn {cmd:?}"))?;
    ensure!(status.success(), "{cmd:?} failed: {status}");
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("spawn {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Everything, in order.
pub(crate) fn setup(need_root: bool) -> Result<Env> {
    if need_root {
        let uid = output(Command::new("id").arg("-u"))?;
        if uid != "0" {
            bail!("this needs root (BPF programs, XDP, network namespaces); run it as root");
        }
        apt_packages()?;
        mount_bpffs()?;
    }
    rust_src()?;
    let linker_bin = bpf_linker()?;
    Ok(Env { linker_bin })
}

fn apt_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|pkg| {
            Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", pkg])
                .output()
                .map(|o| !String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(true)
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    say(&format!(
        "installing Debian packages: {}",
        missing.join(" ")
    ));
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(&missing);
    // Before every attempt: a half-configured crowdsec runs its postinst again.
    let offline_crowdsec = || -> Result<()> {
        let creds = Path::new(CROWDSEC_ONLINE_CREDENTIALS);
        if missing.contains(&"crowdsec")
            && std::fs::metadata(creds)
                .map(|m| m.len() == 0)
                .unwrap_or(true)
        {
            std::fs::create_dir_all("/etc/crowdsec")?;
            std::fs::write(
                creds,
                "# Floodgate's test machines have no Central API; see xtask/src/setup.rs\n",
            )
            .context(CROWDSEC_ONLINE_CREDENTIALS)?;
        }
        Ok(())
    };
    // Keep the packages' services from starting on install (policy-rc.d, as in containers).
    let policy = NoServiceStarts::install()?;
    offline_crowdsec()?;
    if !apt(&install) {
        say("apt-get install failed; updating the package lists and retrying");
        ensure!(apt(&["update", "-q"]), "apt-get update failed");
        offline_crowdsec()?;
        ensure!(
            apt(&install),
            "apt-get install {} failed",
            missing.join(" ")
        );
    }
    drop(policy);
    for unit in NO_START {
        let _ = Command::new("systemctl")
            .args(["disable", "--now", unit])
            .output();
    }
    Ok(())
}

/// A `/usr/sbin/policy-rc.d` that refuses every service start while it lives (removed on drop;
/// one that was there before is left alone).
struct NoServiceStarts(Option<&'static Path>);

impl NoServiceStarts {
    const PATH: &'static str = "/usr/sbin/policy-rc.d";

    fn install() -> Result<Self> {
        use std::os::unix::fs::PermissionsExt as _;
        let path = Path::new(Self::PATH);
        if path.exists() {
            return Ok(Self(None));
        }
        std::fs::write(
            path,
            "#!/bin/sh\n# written by floodgate's xtask setup\nexit 101\n",
        )
        .context(Self::PATH)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
        Ok(Self(Some(path)))
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if let Some(path) = self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn mount_bpffs() -> Result<()> {
    let fs =
        output(Command::new("stat").args(["-f", "-c", "%T", "/sys/fs/bpf"])).unwrap_or_default();
    if fs == "bpf_fs" {
        return Ok(());
    }
    say("mounting bpffs at /sys/fs/bpf");
    std::fs::create_dir_all("/sys/fs/bpf").ok();
    run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))
}

/// The pinned toolchain's channel.
pub(crate) fn toolchain() -> Result<String> {
    let text =
        std::fs::read_to_string("rust-toolchain.toml").context("read rust-toolchain.toml")?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("channel = ")
                .map(|v| v.trim_matches('"').to_owned())
        })
        .context("rust-toolchain.toml has no channel")
}

fn rust_src() -> Result<()> {
    let channel = toolchain()?;
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        &channel,
    ]))?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        say(&format!("adding rust-src to {channel}"));
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            &channel,
        ]))?;
    }
    Ok(())
}

fn cache_dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(Path::new(&home).join(".cache/floodgate"))
}

/// Builds bpf-linker against the toolchain's own libLLVM (Debian's LLVM is too old) into a
/// cache directory keyed by both versions; returns its bin directory.
fn bpf_linker() -> Result<PathBuf> {
    let channel = toolchain()?;
    let root = cache_dir()?.join(format!("bpf-linker-{BPF_LINKER_VERSION}-{channel}"));
    let bin = root.join("bin");
    if bin.join("bpf-linker").exists() {
        return Ok(bin);
    }
    say(&format!(
        "building bpf-linker {BPF_LINKER_VERSION} against the LLVM {LLVM_MAJOR} of Rust {channel} (once)"
    ));
    let sysroot = PathBuf::from(output(
        Command::new("rustup").args(["run", &channel, "rustc", "--print", "sysroot"]),
    )?);
    let lib = std::fs::read_dir(sysroot.join("lib"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libLLVM.so."))
        })
        .context("the toolchain ships no libLLVM.so.* (is it a rustup toolchain?)")?;
    // LLVM_PREFIX/lib/libLLVM.so → the toolchain's library; the binary's rpath points here.
    let prefix = cache_dir()?.join(format!("llvm-prefix-{channel}"));
    std::fs::create_dir_all(prefix.join("lib"))?;
    for name in [
        "libLLVM.so".into(),
        lib.file_name().context("lib name")?.to_owned(),
    ] {
        let link = prefix.join("lib").join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&lib, &link)?;
    }
    run(Command::new("rustup")
        .args([
            "run",
            &channel,
            "cargo",
            "install",
            "bpf-linker",
            "--locked",
            "--version",
            BPF_LINKER_VERSION,
        ])
        .args([
            "--no-default-features",
            "--features",
            &format!("llvm-{LLVM_MAJOR}"),
            "--root",
        ])
        .arg(&root)
        .env("LLVM_PREFIX", &prefix))?;
    Ok(bin)
}
