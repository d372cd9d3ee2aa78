//! Test harness for Floodgate against the real kernel: temporary pin roots, the loaded filter
//! for `BPF_PROG_TEST_RUN`, packet builders, network-namespace testbeds with a real nginx, and
//! the real `floodgate` binary as a child process. Every resource is an RAII guard, so a
//! failing test still removes its namespaces, links, pins and processes.
//!
//! Tests panic with a clear message when they cannot run (not root, no BPF), never skip.

pub mod botnet;
pub mod crowdsec;
pub mod edge;
pub mod fleet;
pub mod fuzz;
pub mod kernel;
pub mod net;
pub mod packet;
pub mod systemd;

use std::{
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// Panics unless running as root (BPF, XDP and namespaces need it).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "these tests load BPF programs and create network namespaces: run them as root (./x test)"
    );
    let bpffs = std::process::Command::new("stat")
        .args(["-f", "-c", "%T", "/sys/fs/bpf"])
        .output()
        .expect("stat");
    assert_eq!(
        String::from_utf8_lossy(&bpffs.stdout).trim(),
        "bpf_fs",
        "bpffs is not mounted at /sys/fs/bpf (./x setup mounts it)"
    );
}

/// A short name unique to this process and call, for namespaces, links and pin roots.
#[must_use]
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A pin root of its own under /sys/fs/bpf, detached and removed on drop.
pub struct TempPins {
    /// The pins.
    pub pins: filter_user::bpf::pins::Pins,
}

impl TempPins {
    /// A fresh, empty pin root.
    #[must_use]
    pub fn new() -> Self {
        require_root();
        let root = PathBuf::from("/sys/fs/bpf").join(unique("fgtest-"));
        Self {
            pins: filter_user::bpf::pins::Pins::new(root),
        }
    }

    /// The root path.
    #[must_use]
    pub fn root(&self) -> PathBuf {
        self.pins.root().to_path_buf()
    }

    /// The control socket of the daemon that runs on these pins: what the default socket is
    /// on a host with one daemon (the CLI commands of [`floodgate`] talk to it).
    #[must_use]
    pub fn control_socket(&self) -> PathBuf {
        let name = self
            .pins
            .root()
            .file_name()
            .map_or_else(|| "fgtest".to_owned(), |n| n.to_string_lossy().into_owned());
        std::env::temp_dir().join(format!("{name}.sock"))
    }
}

impl Default for TempPins {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempPins {
    fn drop(&mut self) {
        let _ = filter_user::bpf::attach::detach_all(&self.pins);
        let _ = std::fs::remove_dir_all(self.pins.root());
        let _ = std::fs::remove_file(self.control_socket());
    }
}

/// The Debian package under test (`FLOODGATE_DEB`, built and set by `cargo xtask test`).
#[must_use]
pub fn floodgate_deb() -> PathBuf {
    let path = std::env::var_os("FLOODGATE_DEB")
        .map(PathBuf::from)
        .expect("FLOODGATE_DEB is not set: run the suite with ./x test, which builds the package");
    assert!(path.exists(), "{} missing", path.display());
    path
}

/// The `floodgate` binary under test (`FLOODGATE_BIN`, set by `cargo xtask test`).
#[must_use]
pub fn floodgate_bin() -> PathBuf {
    let path = std::env::var_os("FLOODGATE_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/floodgate"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "floodgate binary not found at {} (run the tests with ./x test)",
        path.display()
    );
    path
}

/// Runs `floodgate ARGS` against `pins` (in the host namespace) and returns its output.
#[must_use]
pub fn floodgate(pins: &TempPins, args: &[&str]) -> Output {
    Command::new(floodgate_bin())
        .args(args)
        .env("FLOODGATE_PIN_ROOT", pins.root())
        .env("FLOODGATE_CONTROL_SOCKET", pins.control_socket())
        .output()
        .expect("run floodgate")
}

/// Like [`floodgate`], asserting success; returns stdout.
pub fn floodgate_ok(pins: &TempPins, args: &[&str]) -> String {
    let out = floodgate(pins, args);
    assert!(
        out.status.success(),
        "floodgate {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The targets of every block entry (`floodgate block list --json`).
#[must_use]
pub fn blocked_targets(pins: &TempPins) -> Vec<String> {
    floodgate_json(pins, &["block", "list", "--json"])
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|b| b["target"].as_str().map(str::to_owned))
        .collect()
}

/// True when an entry for exactly `ip` is in the block list.
#[must_use]
pub fn is_blocked(pins: &TempPins, ip: std::net::IpAddr) -> bool {
    blocked_targets(pins).contains(&ip.to_string())
}

/// Runs a `--json` command of `floodgate` against `pins`, asserting success; returns the JSON.
#[must_use]
pub fn floodgate_json(pins: &TempPins, args: &[&str]) -> serde_json::Value {
    let out = floodgate_ok(pins, args);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("floodgate {args:?}: not JSON ({e}): {out}"))
}

/// A child process killed (SIGKILL unless stopped otherwise) and reaped on drop.
pub struct ChildGuard {
    /// The child.
    pub child: Child,
    /// Name for messages.
    pub name: String,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout/stderr to files under /tmp (read back by [`ChildGuard::log`],
    /// removed on drop unless the thread is panicking).
    #[must_use]
    pub fn spawn(name: &str, cmd: &mut Command) -> Self {
        let log = log_path(name);
        let file = std::fs::File::create(&log).expect("create log");
        // Its own process group, so that drop also kills what it forked (nginx workers).
        let child = std::os::unix::process::CommandExt::process_group(cmd, 0)
            .stdout(Stdio::from(file.try_clone().expect("dup log")))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Self {
            child,
            name: name.to_owned(),
        }
    }

    /// Everything the child printed so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(log_path(&self.name)).unwrap_or_default()
    }

    /// Sends a signal.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// True while the child has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the child to exit; returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits until the log contains `text`; panics with the log after `timeout`.
    pub fn wait_for_log(&mut self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(text) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before logging {text:?}:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{} did not log {text:?} within {timeout:?}:\n{}",
            self.name,
            self.log()
        );
    }
}

fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("floodgate-test-{name}.log"))
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // SAFETY: kill on the process group this guard created.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The log stays behind only when a test fails, for whoever looks into it.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(log_path(&self.name));
        }
    }
}

/// Polls `check` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
