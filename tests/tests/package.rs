//! The Debian package built by `cargo xtask package` (the test command builds it and passes
//! its path in FLOODGATE_DEB): contents, control fields, the packaged binary, configuration,
//! man page and completions, and `systemd-analyze verify` on the unit.

use std::{path::PathBuf, process::Command};

use floodgate_tests::{floodgate_deb, unique};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Extracted(PathBuf);

impl Drop for Extracted {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn extract() -> Extracted {
    let dir = std::env::temp_dir().join(unique("fg-deb-"));
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(floodgate_deb())
        .arg(&dir));
    Extracted(dir)
}

#[test]
fn package_contents_and_control() {
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(floodgate_deb()));
    for path in [
        "./usr/bin/floodgate",
        "./lib/systemd/system/floodgate.service",
        "./etc/floodgate/floodgate.toml",
        "./usr/share/man/man1/floodgate.1.gz",
        "./usr/share/doc/floodgate/floodgate.toml.example",
        "./usr/share/bash-completion/completions/floodgate",
        "./usr/share/floodgate/nginx-floodgate.conf",
        "./usr/share/floodgate/haproxy-floodgate.cfg",
        "./usr/lib/tmpfiles.d/floodgate.conf",
        "./usr/share/floodgate/grafana-dashboard.json",
        "./usr/share/floodgate/prometheus-alerts.yml",
        "./usr/share/floodgate/prometheus-alerts.test.yml",
    ] {
        assert!(
            listing.contains(path),
            "{path} missing from the package:\n{listing}"
        );
    }
    assert!(listing.contains("-rwxr-xr-x root/root") && listing.contains("./usr/bin/floodgate"));
    let control = run(Command::new("dpkg-deb").arg("-f").arg(floodgate_deb()));
    assert!(control.contains("Package: floodgate"), "{control}");
    assert!(
        control.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))),
        "{control}"
    );
    // What the binary links and runs (tests/tests/systemd.rs resolves it on a minimal root).
    assert!(
        control.contains("Depends: libc6 (>= 2.34), libgcc-s1 (>= 4.2), iproute2\n"),
        "{control}"
    );
    let conffiles = run(Command::new("dpkg-deb")
        .args(["--ctrl-tarfile"])
        .arg(floodgate_deb()));
    assert!(
        conffiles.contains("/etc/floodgate/floodgate.toml"),
        "the configuration is a conffile"
    );
}

#[test]
fn packaged_binary_config_and_man_page_work() {
    let root = extract();
    let bin = root.0.join("usr/bin/floodgate");
    assert!(run(Command::new(&bin).arg("--version")).starts_with("floodgate "));
    let config = root.0.join("etc/floodgate/floodgate.toml");
    let checked = run(Command::new(&bin).arg("check-config").arg(&config));
    // The default rules: plaintext and proxy floods, TLS handshakes, failed logins, 404
    // scanning, backend time.
    assert!(checked.contains(": ok (7 rules"), "{checked}");
    // The shipped nginx snippet is what the binary prints (the edge tests run nginx with it).
    let shipped = std::fs::read_to_string(root.0.join("usr/share/floodgate/nginx-floodgate.conf"))
        .expect("nginx snippet");
    assert_eq!(
        shipped,
        run(Command::new(&bin).args(["proxy-snippet", "nginx"]))
    );
    assert!(
        shipped.contains("log_format floodgate escape=json"),
        "{shipped}"
    );
    // nginx appends to the file the tmpfiles.d entry makes at boot (and the postinst now).
    let tmpfiles = std::fs::read_to_string(root.0.join("usr/lib/tmpfiles.d/floodgate.conf"))
        .expect("tmpfiles.d entry");
    assert!(
        shipped.contains("access_log /run/floodgate/requests.log floodgate buffer=")
            && tmpfiles.contains("f /run/floodgate/requests.log 0644 root root"),
        "{shipped}\n{tmpfiles}"
    );
    let man = run(Command::new("gzip")
        .arg("-dc")
        .arg(root.0.join("usr/share/man/man1/floodgate.1.gz")));
    assert!(
        man.contains(".TH floodgate")
            && man.contains("EXIT STATUS")
            && man.contains("permission denied"),
        "{man}"
    );
    for shell in ["bash", "zsh", "fish"] {
        assert!(
            run(Command::new(&bin).args(["completions", shell])).contains("floodgate"),
            "{shell}"
        );
    }
}

#[test]
fn systemd_unit_verifies_and_is_least_privilege() {
    let root = extract();
    let unit_text =
        std::fs::read_to_string(root.0.join("lib/systemd/system/floodgate.service")).unwrap();
    for line in [
        "Type=notify",
        "ExecReload=/usr/bin/floodgate reload",
        "Restart=on-failure",
        "CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_NET_ADMIN",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/sys/fs/bpf",
        "ProtectHome=yes",
    ] {
        assert!(unit_text.lines().any(|l| l == line), "unit lacks {line:?}");
    }
    assert!(
        !unit_text
            .lines()
            .any(|l| !l.starts_with('#') && l.contains("CAP_SYS_ADMIN")),
        "CAP_SYS_ADMIN is not needed"
    );
    // systemd-analyze checks that ExecStart exists: point it at the packaged binary.
    let unit = root.0.join("floodgate.service");
    let bin = root.0.join("usr/bin/floodgate");
    std::fs::write(
        &unit,
        unit_text.replace("/usr/bin/floodgate", bin.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
