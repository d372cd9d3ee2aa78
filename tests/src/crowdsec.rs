//! A real CrowdSec Local API for tests and benchmarks: Debian's `crowdsec` run alone
//! (`-no-cs`: the API without the agent) with its own configuration, database and credentials
//! in a temp dir, listening on an address of a namespace the test made, and `cscli` pointed at
//! it. Nothing of the host's /etc/crowdsec is changed or used beyond the read-only profiles.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use crate::{ChildGuard, net::NetNs, unique};

/// A LAPI of its own, stopped and removed on drop.
pub struct Lapi {
    /// Where it listens.
    pub listen: SocketAddr,
    /// Its temp dir (config, database, credentials).
    pub dir: PathBuf,
    config: PathBuf,
    netns: String,
    process: Option<ChildGuard>,
}

fn require(program: &str) {
    assert!(
        Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .is_ok_and(|o| o.status.success()),
        "{program} is not installed: run `cargo xtask setup` (Debian's crowdsec packages)"
    );
}

impl Lapi {
    /// Writes the configuration (no Central API, no prometheus, sqlite in the temp dir), adds a
    /// machine for `cscli decisions`, and starts the LAPI on `listen` inside `ns`.
    #[must_use]
    pub fn start(ns: &NetNs, listen: SocketAddr) -> Self {
        crate::require_root();
        require("crowdsec");
        require("cscli");
        let dir = std::env::temp_dir().join(unique("fg-lapi-"));
        std::fs::create_dir_all(dir.join("data")).expect("lapi dir");
        let config = dir.join("config.yaml");
        let d = dir.display();
        // The packaged config.yaml with the paths moved here, `online_client` (the Central API)
        // removed, logs on stdout and the API on the test's address.
        std::fs::write(
            &config,
            format!(
                "common:\n  daemonize: false\n  log_media: stdout\n  log_level: info\n  working_dir: .\n\
                 config_paths:\n  config_dir: /etc/crowdsec/\n  data_dir: {d}/data/\n\
                 \x20 simulation_path: /etc/crowdsec/simulation.yaml\n  hub_dir: /var/lib/crowdsec/hub/\n\
                 \x20 index_path: /var/lib/crowdsec/hub/.index.json\n\
                 \x20 notification_dir: /etc/crowdsec/notifications/\n  plugin_dir: /usr/lib/crowdsec/plugins/\n\
                 crowdsec_service:\n  acquisition_path: /etc/crowdsec/acquis.yaml\n  parser_routines: 1\n\
                 cscli:\n  output: human\n\
                 db_config:\n  log_level: info\n  type: sqlite\n  db_path: {d}/crowdsec.db\n  use_wal: true\n\
                 \x20 flush:\n    max_items: 500000\n    max_age: 7d\n\
                 api:\n  client:\n    insecure_skip_verify: false\n    credentials_path: {d}/local_api_credentials.yaml\n\
                 \x20 server:\n    log_level: info\n    listen_uri: {listen}\n\
                 \x20   profiles_path: /etc/crowdsec/profiles.yaml\n    trusted_ips:\n      - 127.0.0.1\n      - {ip}\n\
                 prometheus:\n  enabled: false\n  level: full\n  listen_addr: 127.0.0.1\n  listen_port: 6060\n",
                ip = listen.ip(),
            ),
        )
        .expect("write lapi config");
        let mut lapi = Self {
            listen,
            dir,
            config,
            netns: ns.name.clone(),
            process: None,
        };
        let credentials = lapi.dir.join("local_api_credentials.yaml");
        lapi.cscli(&[
            "machines",
            "add",
            "floodgate-test",
            "--auto",
            "-f",
            credentials.to_str().expect("utf-8"),
            "--url",
            &lapi.url(),
        ]);
        lapi.restart();
        lapi
    }

    /// `http://ADDR:PORT`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.netns))
            .arg("--")
            .arg(program)
            .arg("-c")
            .arg(&self.config)
            .current_dir(&self.dir);
        cmd
    }

    /// Runs `cscli -c CONFIG ARGS` in the namespace, asserting success; returns stdout.
    pub fn cscli(&self, args: &[&str]) -> String {
        let out = self.cmd("cscli").args(args).output().expect("run cscli");
        assert!(
            out.status.success(),
            "cscli {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A new bouncer key (`cscli bouncers add NAME -o raw`).
    #[must_use]
    pub fn bouncer_key(&self, name: &str) -> String {
        self.cscli(&["bouncers", "add", name, "-o", "raw"])
            .trim()
            .to_owned()
    }

    /// Stops the LAPI (SIGKILL: as if it crashed).
    pub fn stop(&mut self) {
        self.process = None;
    }

    /// (Re)starts the LAPI and waits until it listens.
    pub fn restart(&mut self) {
        self.process = None;
        let mut process =
            ChildGuard::spawn(&unique("crowdsec-lapi"), self.cmd("crowdsec").arg("-no-cs"));
        let started = Instant::now();
        process.wait_for_log("CrowdSec Local API listening", Duration::from_secs(30));
        eprintln!("LAPI on {} up in {:.1?}", self.listen, started.elapsed());
        self.process = Some(process);
    }

    /// The LAPI's log so far.
    #[must_use]
    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .map(ChildGuard::log)
            .unwrap_or_default()
    }
}

impl Drop for Lapi {
    fn drop(&mut self) {
        self.process = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes `key` to a file mode 0600 in `dir` (the bouncer's `api_key_file`); returns its path.
#[must_use]
pub fn key_file(dir: &std::path::Path, key: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir).expect("key dir");
    let path = dir.join("crowdsec.key");
    std::fs::write(&path, format!("{key}\n")).expect("write key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod key");
    path
}

/// The `[crowdsec]` section of a daemon pointed at `lapi` with `key_file`.
#[must_use]
pub fn section(lapi: &Lapi, key_file: &std::path::Path, poll_interval: &str) -> String {
    format!(
        "[crowdsec]\nenabled = true\nlapi_url = \"{}\"\napi_key_file = \"{}\"\npoll_interval = \"{poll_interval}\"\n",
        lapi.url(),
        key_file.display()
    )
}
