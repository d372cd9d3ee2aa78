//! CrowdSec (Debian's 1.4) as a peer: the agent and its local API with a configuration of
//! their own in a temp dir (no online client, no hub download: the nginx parsers are copied
//! from the local hub snapshot, plus a small `non-syslog` raw parser that the snapshot lacks),
//! reading the test nginx's access log with one leaky-bucket scenario, and the firewall
//! bouncer in nftables mode with a key from `cscli bouncers add`. Everything runs inside the
//! server namespace: the LAPI listens on its loopback and the bouncer's tables live there.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use floodgate_tests::{ChildGuard, net::NetNs, unique, wait_until};

/// The LAPI's address on the server namespace's loopback.
const LAPI: &str = "127.0.0.1:8090";

/// A running CrowdSec agent + LAPI and firewall bouncer; stopped (tables removed) on drop.
pub struct CrowdSec<'a> {
    ns: &'a NetNs,
    dir: PathBuf,
    /// The bouncer (stopped first).
    pub bouncer: ChildGuard,
    /// The agent and LAPI.
    pub agent: ChildGuard,
}

fn copy(from: &str, to: &Path) {
    let status = Command::new("cp")
        .args(["-rL", from])
        .arg(to)
        .status()
        .expect("cp");
    assert!(
        status.success(),
        "copy {from} (is crowdsec installed? ./x setup)"
    );
}

impl<'a> CrowdSec<'a> {
    /// Starts CrowdSec in `ns` on `access_log` (nginx `combined`): a source whose leaky bucket
    /// of `capacity` events, leaking `capacity` per second, overflows (more than `capacity`
    /// requests within a second) gets a ban decision that the bouncer drops in nftables.
    #[must_use]
    pub fn start(ns: &'a NetNs, access_log: &Path, capacity: u32) -> Self {
        let dir = std::env::temp_dir().join(unique("fg-crowdsec-"));
        for sub in [
            "parsers/s00-raw",
            "parsers/s01-parse",
            "parsers/s02-enrich",
            "scenarios",
            "data",
            "notifications",
        ] {
            std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        }
        // The bouncer's key and the machine password are secrets: only root reads the dir.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod 0700");
        let parsers = "/etc/crowdsec/parsers";
        copy(
            &format!("{parsers}/s01-parse/nginx-logs.yaml"),
            &dir.join("parsers/s01-parse"),
        );
        for p in ["dateparse-enrich.yaml", "http-logs.yaml"] {
            copy(
                &format!("{parsers}/s02-enrich/{p}"),
                &dir.join("parsers/s02-enrich"),
            );
        }
        copy("/etc/crowdsec/patterns", &dir);
        copy("/etc/crowdsec/profiles.yaml", &dir);
        copy("/etc/crowdsec/simulation.yaml", &dir);
        let d = dir.display();
        let write = |name: &str, text: String| {
            std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("write {name}: {e}"));
        };
        // What the hub's crowdsecurity/non-syslog does: a plain file line is the message.
        write(
            "parsers/s00-raw/non-syslog.yaml",
            "onsuccess: next_stage\nfilter: \"evt.Line.Labels.type != 'syslog'\"\nname: fgbench/non-syslog\n\
             description: \"a line of a plain file\"\nstatics:\n  - parsed: message\n    expression: evt.Line.Raw\n\
             \x20 - parsed: program\n    expression: evt.Line.Labels.type\n  - meta: datasource_path\n    expression: evt.Line.Src\n\
             \x20 - meta: datasource_type\n    expression: evt.Line.Module\n"
                .into(),
        );
        let leak_ms = 1000 / capacity.max(1);
        write(
            "scenarios/fgflood.yaml",
            format!(
                "type: leaky\nname: fgbench/http-flood\ndescription: \"more than {capacity} requests in one second from one source\"\n\
                 filter: \"evt.Meta.log_type == 'http_access-log'\"\ngroupby: evt.Meta.source_ip\n\
                 capacity: {capacity}\nleakspeed: \"{leak_ms}ms\"\nblackhole: 1m\nlabels:\n  remediation: true\n  type: flood\n"
            ),
        );
        write(
            "acquis.yaml",
            format!(
                "filenames:\n  - {}\nlabels:\n  type: nginx\n",
                access_log.display()
            ),
        );
        write(
            "config.yaml",
            format!(
                "common:\n  daemonize: false\n  log_media: file\n  log_level: info\n  log_dir: {d}/\n  working_dir: .\n\
                 config_paths:\n  config_dir: {d}/\n  data_dir: {d}/data/\n  simulation_path: {d}/simulation.yaml\n\
                 \x20 hub_dir: /var/lib/crowdsec/hub/\n  index_path: /var/lib/crowdsec/hub/.index.json\n\
                 \x20 notification_dir: {d}/notifications/\n  plugin_dir: /usr/lib/crowdsec/plugins/\n\
                 crowdsec_service:\n  acquisition_path: {d}/acquis.yaml\n  parser_routines: 1\n\
                 cscli:\n  output: human\n\
                 db_config:\n  log_level: info\n  type: sqlite\n  db_path: {d}/data/crowdsec.db\n\
                 plugin_config:\n  user: nobody\n  group: nogroup\n\
                 api:\n  client:\n    insecure_skip_verify: false\n    credentials_path: {d}/local_api_credentials.yaml\n\
                 \x20 server:\n    log_level: info\n    listen_uri: {LAPI}\n    profiles_path: {d}/profiles.yaml\n\
                 \x20   trusted_ips:\n      - 127.0.0.1\n\
                 prometheus:\n  enabled: false\n  level: full\n  listen_addr: 127.0.0.1\n  listen_port: 6060\n"
            ),
        );
        let config = dir.join("config.yaml");
        let cscli = |args: &[&str]| {
            let out = ns
                .cmd("cscli")
                .arg("-c")
                .arg(&config)
                .args(args)
                .output()
                .expect("cscli");
            assert!(
                out.status.success(),
                "cscli {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        let credentials = dir.join("local_api_credentials.yaml");
        cscli(&[
            "machines",
            "add",
            "fgbench",
            "--auto",
            "--force",
            "-f",
            credentials.to_str().expect("utf-8"),
        ]);
        let key = cscli(&["bouncers", "add", "fgbench-bouncer", "-o", "raw"]);
        let key = key.lines().last().expect("a bouncer key").trim().to_owned();
        write(
            "bouncer.yaml",
            format!(
                "mode: nftables\nupdate_frequency: 1s\ndaemonize: false\npid_dir: {d}/\nlog_mode: file\nlog_dir: {d}/\n\
                 log_level: info\napi_url: http://{LAPI}/\napi_key: {key}\ninsecure_skip_verify: false\n\
                 disable_ipv6: false\ndeny_action: DROP\ndeny_log: false\nsupported_decisions_types:\n  - ban\n\
                 blacklists_ipv4: crowdsec-blacklists\nblacklists_ipv6: crowdsec6-blacklists\n\
                 nftables:\n  ipv4:\n    enabled: true\n    set-only: false\n    table: crowdsec\n    chain: crowdsec-chain\n\
                 \x20 ipv6:\n    enabled: true\n    set-only: false\n    table: crowdsec6\n    chain: crowdsec6-chain\n\
                 nftables_hooks:\n  - input\n"
            ),
        );
        let agent = ChildGuard::spawn(
            &unique("crowdsec"),
            ns.cmd("crowdsec").arg("-c").arg(&config),
        );
        let log = dir.join("crowdsec.log");
        assert!(
            wait_until(Duration::from_secs(30), || std::fs::read_to_string(&log)
                .is_ok_and(|l| l.contains("Starting processing data"))),
            "crowdsec did not start: {}\n{}",
            agent.log(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let bouncer = ChildGuard::spawn(
            &unique("cs-bouncer"),
            ns.cmd("crowdsec-firewall-bouncer")
                .arg("-c")
                .arg(dir.join("bouncer.yaml")),
        );
        let peer = Self {
            ns,
            dir,
            bouncer,
            agent,
        };
        let blog = peer.dir.join("crowdsec-firewall-bouncer.log");
        assert!(
            wait_until(Duration::from_secs(30), || std::fs::read_to_string(&blog)
                .is_ok_and(|l| l.contains("Processing new and deleted decisions"))),
            "the firewall bouncer did not start: {}\n{}",
            peer.bouncer.log(),
            std::fs::read_to_string(&blog).unwrap_or_default()
        );
        peer
    }

    /// Sources banned in the bouncer's nftables set now.
    #[must_use]
    pub fn banned(&self) -> usize {
        super::fail2ban::nft_set_len(self.ns, "ip", "crowdsec", "crowdsec-blacklists")
    }

    /// The agent's log.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("crowdsec.log")).unwrap_or_default()
    }
}

impl Drop for CrowdSec<'_> {
    fn drop(&mut self) {
        for process in [&mut self.bouncer, &mut self.agent] {
            process.signal(libc::SIGTERM);
            let _ = process.wait_exit(Duration::from_secs(10));
        }
        for (family, table) in [("ip", "crowdsec"), ("ip6", "crowdsec6")] {
            let _ = self
                .ns
                .cmd("nft")
                .args(["delete", "table", family, table])
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
