//! A real systemd as PID 1 of a minimal Debian root, for testing the .deb as an operator
//! installs it. The root (bookworm minbase with systemd, no dbus; nginx and its dependencies
//! downloaded, not installed) is built once by `systemd/build-root.sh` and cached under
//! ~/.cache/floodgate/systemd-root-N (N is [`ROOT_VERSION`]). Each [`Container`] is an
//! overlayfs over that cache with its upper and work directories in a temp dir: the .deb and
//! then nginx are installed into it with apt-get, offline from the archive cache (in a
//! private mount namespace, before boot), then `systemd/boot.sh` boots it in fresh pid, mount, uts, ipc and cgroup namespaces inside the
//! test's network namespace, with private mount propagation. Nothing touches the host's
//! mounts, hostname or network; drop kills PID 1 (and so the whole container), removes its
//! cgroup and the temp dir, also when the test panics.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use crate::{ChildGuard, net::NetNs, unique, wait_until};

/// Version of the cached root's recipe: bump it when `systemd/build-root.sh` changes.
pub const ROOT_VERSION: u32 = 2;

const BUILD_ROOT: &str = include_str!("systemd/build-root.sh");
const BOOT: &str = include_str!("systemd/boot.sh");

/// PATH inside the container.
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// The cgroup2 hierarchy the containers' cgroups are made in: /sys/fs/cgroup itself on a
/// unified host, /sys/fs/cgroup/unified on a hybrid one.
fn cgroup2_root() -> PathBuf {
    for dir in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if Path::new(dir).join("cgroup.procs").exists() {
            return dir.into();
        }
    }
    panic!("no cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified: systemd needs one");
}

fn cache_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map_or_else(|| PathBuf::from("/root"), PathBuf::from)
        .join(".cache/floodgate")
}

/// The cached root, built first if it is not there (under a lock, so concurrent tests build
/// it once). Prints how long a build took.
#[must_use]
pub fn cached_root() -> PathBuf {
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).expect("create ~/.cache/floodgate");
    let root = cache.join(format!("systemd-root-{ROOT_VERSION}"));
    let done = cache.join(format!("systemd-root-{ROOT_VERSION}.ok"));
    let lock = File::create(cache.join(format!("systemd-root-{ROOT_VERSION}.lock")))
        .expect("create the root's lock file");
    // SAFETY: flock on a descriptor we own; released when `lock` is closed.
    let locked = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    assert_eq!(locked, 0, "lock the cached root");
    if done.exists() {
        return root;
    }
    assert!(
        Command::new("debootstrap")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "debootstrap is missing: run `cargo xtask setup` (it installs it)"
    );
    let building = cache.join(format!("systemd-root-{ROOT_VERSION}.tmp"));
    let _ = std::fs::remove_dir_all(&building);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&building).expect("create the build dir");
    eprintln!(
        "building the minimal bookworm root with systemd into {} (once)",
        root.display()
    );
    let started = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(BUILD_ROOT)
        .arg("build-root.sh")
        .arg(&building)
        .output()
        .expect("run build-root.sh");
    assert!(
        out.status.success(),
        "building the systemd root failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&building, &root).expect("move the built root into place");
    std::fs::write(&done, format!("{:.0} s\n", started.elapsed().as_secs_f64()))
        .expect("mark the root built");
    eprintln!(
        "built the systemd root in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    root
}

/// The container's temp dir (upper/work/root of the overlay, files to copy in) and cgroup,
/// removed on drop after the container is gone.
struct Staging {
    dir: PathBuf,
    cgroup: PathBuf,
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Deepest first; a cgroup empties a moment after its last process dies.
        let _ = wait_until(Duration::from_secs(10), || {
            remove_cgroup(&self.cgroup);
            !self.cgroup.exists()
        });
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// A booted container: systemd as PID 1 of a throwaway overlay over the cached root.
pub struct Container {
    /// What apt-get printed installing the .deb, then (after `==> nginx`) nginx.
    pub install_log: String,
    /// Host pid of the container's PID 1.
    pid1: i32,
    /// `unshare`, the parent of PID 1 (its output is systemd's console).
    boot: ChildGuard,
    /// The temp dir and cgroup, removed (on drop, last) once the container is gone.
    _staging: Staging,
}

impl Container {
    /// Installs `deb` into a fresh overlay of the cached root, copies `files` (path inside the
    /// root, contents) in, removes `remove`, and boots it inside `netns`; returns once
    /// `systemctl is-system-running` says running (panics with the failed units otherwise).
    #[must_use]
    pub fn boot(netns: &NetNs, deb: &Path, files: &[(&str, String)], remove: &[&str]) -> Self {
        crate::require_root();
        let base = cached_root();
        let name = unique("fgsd");
        let dir = std::env::temp_dir().join(&name);
        let cgroup = cgroup2_root().join(&name);
        let staging = Staging { dir, cgroup };
        for sub in ["upper", "work", "root", "files"] {
            std::fs::create_dir_all(staging.dir.join(sub)).expect("create the container dir");
        }
        std::fs::copy(deb, staging.dir.join("files/floodgate.deb")).expect("copy the .deb");
        for (path, contents) in files {
            let at = staging
                .dir
                .join("files/tree")
                .join(path.trim_start_matches('/'));
            std::fs::create_dir_all(at.parent().expect("parent")).expect("create dirs");
            std::fs::write(&at, contents).expect("write a file for the container");
        }
        std::fs::create_dir_all(staging.dir.join("files/tree")).expect("create the file tree");
        let install_log = install(netns, &base, &staging.dir, remove);
        std::fs::create_dir(&staging.cgroup).expect("create the container's cgroup");
        // Into its own cgroup first, so that the new cgroup namespace is rooted there.
        let boot = ChildGuard::spawn(
            &name,
            netns
                .cmd("sh")
                .arg("-c")
                .arg(
                    "echo $$ > \"$1/cgroup.procs\" && exec unshare --pid --mount --uts --ipc \
                     --cgroup --fork --propagation private sh -c \"$2\" boot.sh \"$3\" \"$4\"",
                )
                .arg("sh")
                .arg(&staging.cgroup)
                .arg(BOOT)
                .arg(&base)
                .arg(&staging.dir),
        );
        let mut container = Self {
            install_log,
            pid1: 0,
            boot,
            _staging: staging,
        };
        let unshare = container.boot.child.id();
        let found = wait_until(Duration::from_secs(20), || {
            container.pid1 = child_of(unshare).unwrap_or(0);
            container.pid1 > 0
                && std::fs::read_link(format!("/proc/{}/exe", container.pid1))
                    .is_ok_and(|exe| exe.ends_with("systemd"))
        });
        assert!(
            found,
            "systemd did not start as the container's PID 1:\n{}",
            container.boot.log()
        );
        container.wait_running(Duration::from_secs(90));
        container
    }

    /// Host pid of the container's PID 1 (its root is /proc/PID/root).
    #[must_use]
    pub fn pid1(&self) -> i32 {
        self.pid1
    }

    /// A command run inside the container (all its namespaces, its root, a clean environment).
    #[must_use]
    pub fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.pid1.to_string())
            .args(["-m", "-p", "-u", "-i", "-n", "-C", "-r", "-w", "--"])
            .args(["env", "-i", &format!("PATH={PATH}"), "LANG=C.UTF-8"])
            .arg(program);
        cmd
    }

    /// Runs `args` inside; the output whatever the exit status.
    #[must_use]
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args[0])
            .args(&args[1..])
            .output()
            .unwrap_or_else(|e| panic!("in the container: {args:?}: {e}"))
    }

    /// Runs `args` inside and returns stdout; panics with stderr (and the unit states) when
    /// it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "in the container: {args:?} failed ({}): {}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.diagnostics()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A shell script run inside with `sh -c`; stdout, panicking when it fails.
    #[must_use]
    pub fn sh(&self, script: &str) -> String {
        self.ok(&["sh", "-c", script])
    }

    /// Writes a file inside the running container (through PID 1's root).
    pub fn write(&self, path: &str, contents: &str) {
        let at = format!("/proc/{}/root{path}", self.pid1);
        std::fs::write(&at, contents).unwrap_or_else(|e| panic!("write {path}: {e}"));
    }

    /// What systemd and the floodgate unit say, for failure messages.
    #[must_use]
    pub fn diagnostics(&self) -> String {
        let text = |args: &[&str]| {
            let out = self.run(args);
            format!(
                "$ {}\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        };
        [
            text(&["systemctl", "--failed", "--no-pager"]),
            text(&["systemctl", "status", "--no-pager", "-n", "30", "floodgate"]),
        ]
        .join("\n")
    }

    /// Waits until systemd has booted; panics with the failed units when it degraded.
    fn wait_running(&self, timeout: Duration) {
        let mut state = String::new();
        let booted = wait_until(timeout, || {
            let out = self.run(&["systemctl", "is-system-running"]);
            state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            matches!(state.as_str(), "running" | "degraded")
        });
        assert!(
            booted && state == "running",
            "the container did not boot to `running` within {timeout:?} (state {state:?}):\n{}\nconsole:\n{}",
            self.diagnostics(),
            self.boot.log()
        );
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.pid1 > 0 {
            // SAFETY: kill on the container's PID 1 (found as our unshare's child); SIGKILL to
            // the init of a pid namespace kills every process in it.
            unsafe { libc::kill(self.pid1, libc::SIGKILL) };
            let pid1 = self.pid1;
            let _ = wait_until(Duration::from_secs(10), || {
                !Path::new(&format!("/proc/{pid1}")).exists()
            });
        }
        // `boot` (unshare) is killed and reaped by its guard, then `_staging` is removed.
    }
}

/// The first child of `pid`, if it has one.
fn child_of(pid: u32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Installs the .deb into the overlay with apt-get, then nginx, both from the root's archive
/// cache (in a private mount namespace inside the test's network namespace: nothing can be
/// downloaded, so a dependency the cache lacks fails the install; no service can start), then copies the staged files in and removes
/// `remove`. Returns apt's output; the .deb's part ends at the line `==> nginx`.
fn install(netns: &NetNs, base: &Path, dir: &Path, remove: &[&str]) -> String {
    const SCRIPT: &str = r#"set -eu
base="$1"; dir="$2"; shift 2
m="$dir/root"
mount -t overlay overlay -o "lowerdir=$base,upperdir=$dir/upper,workdir=$dir/work" "$m"
mount -t proc proc "$m/proc"
export DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin
if chroot "$m" sh -c 'command -v ss'; then
    echo "the cached root has ss before the package is installed"; exit 1
fi
printf '#!/bin/sh\nexit 101\n' > "$m/usr/sbin/policy-rc.d"
chmod 0755 "$m/usr/sbin/policy-rc.d"
cp "$dir/files/floodgate.deb" "$m/tmp/floodgate.deb"
apt="apt-get install -y -q --no-install-recommends"
chroot "$m" $apt /tmp/floodgate.deb
echo "==> nginx"
chroot "$m" $apt nginx
rm "$m/tmp/floodgate.deb" "$m/usr/sbin/policy-rc.d"
cp -a "$dir/files/tree/." "$m/"
for path in "$@"; do rm -rf "$m/$path"; done
umount "$m/proc"
umount "$m"
"#;
    let out = netns
        .cmd("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            SCRIPT,
            "install",
        ])
        .arg(base)
        .arg(dir)
        .args(remove)
        .output()
        .expect("run unshare for the install");
    assert!(
        out.status.success(),
        "installing the .deb into the container root failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
