//! `cargo xtask package`: the Debian package, assembled from the release build with dpkg-deb:
//! binary, systemd unit and tmpfiles.d entry (with a postinst that applies it), configuration (a conffile), man page, completions, example config,
//! and the proxy feed snippets for nginx and HAProxy.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, ensure};

use crate::setup::{Env, run};

/// What the package needs at run time: the shared libraries the binary links (libc6 for libc,
/// libm and the loader; libgcc-s1 for libgcc_s, the unwinder) and iproute2 for the `ss -K`
/// the daemon runs to close a blocked source's connections. The unit runs nothing else: its
/// ExecReload is `floodgate reload`. tests/tests/systemd.rs checks this against what a
/// minimal Debian root resolves.
const DEPENDS: &str = "libc6 (>= 2.34), libgcc-s1 (>= 4.2), iproute2";

/// Builds the .deb and returns its path.
pub(crate) fn package(env: &Env) -> Result<PathBuf> {
    eprintln!("==> building the release binary for the package");
    run(crate::cargo(env).args(["build", "--release", "-p", "filter-user"]))?;
    let version = env!("CARGO_PKG_VERSION");
    let arch = String::from_utf8(
        Command::new("dpkg")
            .arg("--print-architecture")
            .output()?
            .stdout,
    )?
    .trim()
    .to_owned();
    let stage = PathBuf::from("target/deb/stage");
    let _ = fs::remove_dir_all(&stage);
    let bin = Path::new("target/release/floodgate");
    let put = |rel: &str, bytes: &[u8], mode: u32| -> Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let path = stage.join(rel);
        fs::create_dir_all(path.parent().context("parent")?)?;
        fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    put("usr/bin/floodgate", &fs::read(bin)?, 0o755)?;
    put(
        "lib/systemd/system/floodgate.service",
        &fs::read("packaging/floodgate.service")?,
        0o644,
    )?;
    put(
        "usr/lib/tmpfiles.d/floodgate.conf",
        &fs::read("packaging/floodgate.tmpfiles")?,
        0o644,
    )?;
    // The feed file exists right after install, not only after the next boot.
    put(
        "DEBIAN/postinst",
        b"#!/bin/sh\nset -e\nif [ \"$1\" = configure ] && command -v systemd-tmpfiles >/dev/null; then\n    systemd-tmpfiles --create floodgate.conf || true\nfi\n",
        0o755,
    )?;
    let config = fs::read("filter-user/default-config.toml")?;
    put("etc/floodgate/floodgate.toml", &config, 0o644)?;
    put(
        "usr/share/doc/floodgate/floodgate.toml.example",
        &config,
        0o644,
    )?;
    put(
        "usr/share/doc/floodgate/README.md",
        &fs::read("README.md")?,
        0o644,
    )?;
    let man = Command::new(bin).arg("man").output()?;
    ensure!(man.status.success(), "floodgate man failed");
    put(
        "usr/share/man/man1/floodgate.1.gz",
        &gzip(&man.stdout)?,
        0o644,
    )?;
    let completions = Command::new(bin).args(["completions", "bash"]).output()?;
    ensure!(completions.status.success(), "floodgate completions failed");
    put(
        "usr/share/bash-completion/completions/floodgate",
        &completions.stdout,
        0o644,
    )?;
    // Monitoring: the Grafana dashboard, the Prometheus alert rules and their unit tests.
    for file in [
        "grafana-dashboard.json",
        "prometheus-alerts.yml",
        "prometheus-alerts.test.yml",
    ] {
        put(
            &format!("usr/share/floodgate/{file}"),
            &fs::read(Path::new("packaging").join(file))?,
            0o644,
        )?;
    }
    // The proxy feed lines, from the binary that parses them (they cannot drift).
    for (proxy, file) in [
        ("nginx", "usr/share/floodgate/nginx-floodgate.conf"),
        ("haproxy", "usr/share/floodgate/haproxy-floodgate.cfg"),
    ] {
        let snippet = Command::new(bin).args(["proxy-snippet", proxy]).output()?;
        ensure!(
            snippet.status.success(),
            "floodgate proxy-snippet {proxy} failed"
        );
        put(file, &snippet.stdout, 0o644)?;
    }
    let size_kib = dir_size(&stage)? / 1024;
    put(
        "DEBIAN/control",
        format!(
            "Package: floodgate\nVersion: {version}\nArchitecture: {arch}\nMaintainer: Floodgate engineers <floodgate@example.invalid>\n\
             Installed-Size: {size_kib}\nDepends: {DEPENDS}\nSection: net\nPriority: optional\n\
             Description: XDP HTTP flood mitigation daemon and CLI\n \
             Drops packets from flooding sources at XDP, detects HTTP floods from sampled request\n \
             starts and blocks them with a time to live in pinned eBPF maps.\n"
        )
        .as_bytes(),
        0o644,
    )?;
    put(
        "DEBIAN/conffiles",
        b"/etc/floodgate/floodgate.toml\n",
        0o644,
    )?;
    let out = PathBuf::from(format!("target/deb/floodgate_{version}_{arch}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&stage)
        .arg(&out))?;
    eprintln!("==> {}", out.display());
    Ok(std::path::absolute(out)?)
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write as _;
    let mut child = Command::new("gzip")
        .args(["-9n"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    child.stdin.take().context("stdin")?.write_all(bytes)?;
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "gzip failed");
    Ok(out.stdout)
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
