//! fail2ban (Debian's 1.0) as a peer: its own copy of /etc/fail2ban in a temp dir (the Debian
//! jails removed), its own socket, pid file and an in-memory database, one jail on the test
//! nginx's access log that bans a source after `maxretry` requests within `findtime`, with the
//! `nftables` action (all ports, drop) run inside the server namespace, so its table lives
//! there and never on the host.

use std::{path::Path, time::Duration};

use floodgate_tests::{ChildGuard, net::NetNs, unique, wait_until};

/// The nftables set the jail bans into (`addr-set-<jail>` of the `nftables` action).
const SET: &str = "addr-set-fgflood";

/// A running fail2ban-server with one jail; stopped (and its table removed) on drop.
pub struct Fail2ban<'a> {
    ns: &'a NetNs,
    dir: std::path::PathBuf,
    /// The server process.
    pub process: ChildGuard,
}

impl<'a> Fail2ban<'a> {
    /// Starts fail2ban in `ns` watching `access_log` (nginx `combined` format): a source with
    /// `maxretry` requests within `findtime` seconds is banned for 10 minutes.
    #[must_use]
    pub fn start(ns: &'a NetNs, access_log: &Path, maxretry: u32, findtime: u32) -> Self {
        let dir = std::env::temp_dir().join(unique("fg-fail2ban-"));
        let status = std::process::Command::new("cp")
            .args(["-r", "/etc/fail2ban"])
            .arg(&dir)
            .status()
            .expect("cp /etc/fail2ban");
        assert!(
            status.success(),
            "copy /etc/fail2ban (is fail2ban installed? ./x setup)"
        );
        for d in ["jail.d", "fail2ban.d"] {
            let _ = std::fs::remove_dir_all(dir.join(d));
            std::fs::create_dir_all(dir.join(d)).expect("mkdir");
        }
        let d = dir.display();
        std::fs::write(
            dir.join("fail2ban.local"),
            format!(
                "[Definition]\nloglevel = INFO\nlogtarget = {d}/fail2ban.log\nsocket = {d}/f2b.sock\n\
                 pidfile = {d}/f2b.pid\ndbfile = :memory:\n"
            ),
        )
        .expect("fail2ban.local");
        std::fs::write(
            dir.join("filter.d/fgflood.conf"),
            "[Definition]\n# Every request line of nginx's combined log counts.\nfailregex = ^<HOST> - \\S+ \\[\n",
        )
        .expect("filter");
        std::fs::write(
            dir.join("jail.local"),
            format!(
                "[DEFAULT]\nignoreip = 127.0.0.1/8 ::1\nbackend = polling\n\n\
                 [fgflood]\nenabled = true\nfilter = fgflood\nlogpath = {}\nmaxretry = {maxretry}\n\
                 findtime = {findtime}\nbantime = 600\n\
                 action = nftables[name=fgflood, type=allports, blocktype=drop]\n",
                access_log.display()
            ),
        )
        .expect("jail.local");
        let process = ChildGuard::spawn(
            &unique("fail2ban"),
            ns.cmd("fail2ban-server")
                .arg("-c")
                .arg(&dir)
                .arg("-s")
                .arg(dir.join("f2b.sock"))
                .arg("-p")
                .arg(dir.join("f2b.pid"))
                .args(["-x", "-f"]),
        );
        let peer = Self { ns, dir, process };
        let log = peer.dir.join("fail2ban.log");
        assert!(
            wait_until(Duration::from_secs(20), || std::fs::read_to_string(&log)
                .is_ok_and(|l| l.contains("Jail 'fgflood' started"))),
            "fail2ban did not start its jail: {}\n{}",
            peer.process.log(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        peer
    }

    /// Sources banned now (members of the jail's nftables set in the namespace).
    #[must_use]
    pub fn banned(&self) -> usize {
        nft_set_len(self.ns, "inet", "f2b-table", SET)
    }

    /// Its log.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("fail2ban.log")).unwrap_or_default()
    }
}

impl Drop for Fail2ban<'_> {
    fn drop(&mut self) {
        self.process.signal(libc::SIGTERM);
        let _ = self.process.wait_exit(Duration::from_secs(10));
        let _ = self
            .ns
            .cmd("nft")
            .args(["delete", "table", "inet", "f2b-table"])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Members of an nftables set in `ns` (0 when the set does not exist).
#[must_use]
pub fn nft_set_len(ns: &NetNs, family: &str, table: &str, set: &str) -> usize {
    let Ok(out) = ns
        .cmd("nft")
        .args(["-j", "list", "set", family, table, set])
        .stderr(std::process::Stdio::null())
        .output()
    else {
        return 0;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return 0;
    };
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["set"]["elem"].as_array())
        .map(Vec::len)
        .sum()
}
