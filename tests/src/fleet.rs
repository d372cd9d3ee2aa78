//! A fleet of edge hosts for tests and benchmarks: a real nats-server with JetStream in a
//! namespace of its own, and N hosts, each a [`Testbed`] (its server namespace with nginx, the
//! daemon, a pin root and the XDP interface; its client namespace), linked to the NATS
//! namespace by a veth pair of its own: NATS side 198.19.I.1/24, host side 198.19.I.2/24. The
//! XDP program sits on the testbed's veth, not on the NATS link. Everything is removed on drop.
//!
//! [`NatsWire`] is a minimal NATS client for tests (the text protocol over TCP): it puts
//! values into the bucket as any peer could, garbage included.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{Ipv4Addr, TcpStream},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::{
    ChildGuard, TempPins, floodgate_json,
    net::{Daemon, NetNs, Testbed, sh},
    unique,
};

/// The NATS user the tests' server requires.
pub const NATS_USER: &str = "floodgate";
/// Its password (written to a 0600 file for the daemons).
pub const NATS_PASSWORD: &str = "fleet-test-secret-4713";
/// The NATS port.
pub const NATS_PORT: u16 = 4222;

/// The NATS address host `index` (0-based) reaches.
#[must_use]
pub fn nats_addr(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, u8::try_from(index + 1).expect("few hosts"), 1)
}

/// nats-server with JetStream (file store in a temp dir kept across restarts).
pub struct Nats {
    process: Option<ChildGuard>,
    /// Certificate and key (PEM) when the server requires TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Its `authorization` block (default: [`NATS_USER`] with [`NATS_PASSWORD`]).
    pub authorization: String,
    /// The namespace it runs in.
    pub ns: NetNs,
    /// Its store and config dir.
    pub dir: PathBuf,
}

impl Nats {
    /// A namespace for the server (the server starts with [`Nats::restart`]).
    #[must_use]
    pub fn new() -> Self {
        crate::require_root();
        assert!(
            std::process::Command::new("sh")
                .args(["-c", "command -v nats-server"])
                .output()
                .is_ok_and(|o| o.status.success()),
            "nats-server is not installed: run `cargo xtask setup` (Debian's nats-server)"
        );
        let dir = std::env::temp_dir().join(unique("fg-nats-"));
        std::fs::create_dir_all(dir.join("store")).expect("nats dir");
        Self {
            process: None,
            tls: None,
            authorization: format!(
                "authorization {{ user: {NATS_USER}, password: \"{NATS_PASSWORD}\" }}"
            ),
            ns: NetNs::new("fgn"),
            dir,
        }
    }

    /// (Re)starts the server and waits until it is ready.
    pub fn restart(&mut self) {
        self.process = None;
        let conf = self.dir.join("nats.conf");
        let tls = self.tls.as_ref().map_or_else(String::new, |(cert, key)| {
            format!(
                "tls {{ cert_file: \"{}\", key_file: \"{}\" }}\n",
                cert.display(),
                key.display()
            )
        });
        std::fs::write(
            &conf,
            format!(
                "listen: 0.0.0.0:{NATS_PORT}\nserver_name: fg_test\n\
                 jetstream {{ store_dir: \"{}\" }}\n{}\n{tls}",
                self.dir.join("store").display(),
                self.authorization
            ),
        )
        .expect("nats.conf");
        let mut process = ChildGuard::spawn(
            &unique("nats-server"),
            self.ns.cmd("nats-server").arg("-c").arg(&conf),
        );
        process.wait_for_log("Server is ready", Duration::from_secs(20));
        self.process = Some(process);
    }

    /// Kills the server (SIGKILL: no goodbye to the clients).
    pub fn kill(&mut self) {
        self.process = None;
    }

    /// The server's log.
    #[must_use]
    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .map(ChildGuard::log)
            .unwrap_or_default()
    }
}

impl Default for Nats {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.process = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One edge host of the fleet.
pub struct Host {
    /// Its daemon, when running (declared first: stopped before the rest goes).
    pub daemon: Option<Daemon>,
    /// Its fleet name (`edge-a`, …).
    pub name: String,
    /// Its pins.
    pub pins: TempPins,
    /// Its server and client namespaces.
    pub tb: Testbed,
    /// Index (the NATS link's third octet is index + 1).
    pub index: usize,
    /// More `[fleet]` keys (TLS).
    pub fleet_extra: String,
    /// The `[fleet]` authentication keys (default: [`NATS_USER`] and a password file).
    pub auth: String,
    /// A directory for this host's secret files (removed on drop).
    pub secrets: PathBuf,
}

impl Host {
    /// The `[fleet]` section this host runs with, plus `extra` (other sections).
    #[must_use]
    pub fn config(&self, extra: &str) -> String {
        format!(
            "{extra}\n[fleet]\nenabled = true\nservers = [\"nats://{}:{NATS_PORT}\"]\n\
             host = \"{}\"\n{}\n{}",
            nats_addr(self.index),
            self.name,
            self.auth,
            self.fleet_extra
        )
    }

    /// Starts the daemon with `extra` configuration (plus `[fleet]`).
    pub fn start(&mut self, extra: &str) {
        let config = self.config(extra);
        self.daemon = Some(self.tb.start_daemon(&self.pins, &config));
    }

    /// `status --json`'s fleet part.
    #[must_use]
    pub fn fleet_status(&self) -> serde_json::Value {
        floodgate_json(&self.pins, &["status", "--json"])["daemon"]["fleet"].clone()
    }

    /// The block list (`block list --json`).
    #[must_use]
    pub fn blocks(&self) -> Vec<serde_json::Value> {
        floodgate_json(&self.pins, &["block", "list", "--json"])
            .as_array()
            .expect("a list")
            .clone()
    }

    /// The entry for exactly `target`, if any.
    #[must_use]
    pub fn entry(&self, target: &str) -> Option<serde_json::Value> {
        self.blocks().into_iter().find(|b| b["target"] == target)
    }

    /// The daemon's log.
    #[must_use]
    pub fn log(&self) -> String {
        self.daemon
            .as_ref()
            .map(|d| d.process.log())
            .unwrap_or_default()
    }
}

/// The NATS server and the hosts.
pub struct Fleet {
    /// The hosts (declared first: their daemons stop before NATS goes).
    pub hosts: Vec<Host>,
    /// The server.
    pub nats: Nats,
}

impl Fleet {
    /// `n` hosts (`edge-a`, `edge-b`, …) linked to a running nats-server; no daemon yet.
    #[must_use]
    pub fn new(n: usize) -> Self {
        Self::build(n, false)
    }

    /// Like [`Fleet::new`], with a server that requires TLS (a self-signed certificate for its
    /// addresses, made by the test) and hosts that require it too and trust only that
    /// certificate.
    #[must_use]
    pub fn with_tls(n: usize) -> Self {
        Self::build(n, true)
    }

    fn build(n: usize, tls: bool) -> Self {
        let mut nats = Nats::new();
        let mut hosts = Vec::new();
        for index in 0..n {
            let tb = Testbed::new();
            let link = unique("fgl");
            let peer = format!("{link}h");
            sh(&[
                "ip",
                "link",
                "add",
                &link,
                "netns",
                &nats.ns.name,
                "type",
                "veth",
                "peer",
                "name",
                &peer,
                "netns",
                &tb.server.name,
            ]);
            let octet = index + 1;
            nats.ns.run(&[
                "ip",
                "addr",
                "add",
                &format!("198.19.{octet}.1/24"),
                "dev",
                &link,
            ]);
            nats.ns.run(&["ip", "link", "set", &link, "up"]);
            tb.server.run(&[
                "ip",
                "addr",
                "add",
                &format!("198.19.{octet}.2/24"),
                "dev",
                &peer,
            ]);
            tb.server.run(&["ip", "link", "set", &peer, "up"]);
            let secrets = std::env::temp_dir().join(unique("fg-fleet-secrets-"));
            std::fs::create_dir_all(&secrets).expect("secrets dir");
            write_private(&secrets.join("nats.pass"), NATS_PASSWORD);
            hosts.push(Host {
                daemon: None,
                name: format!(
                    "edge-{}",
                    char::from(b'a' + u8::try_from(index).expect("few"))
                ),
                pins: TempPins::new(),
                tb,
                index,
                fleet_extra: String::new(),
                auth: format!(
                    "user = \"{NATS_USER}\"\npassword_file = \"{}\"",
                    secrets.join("nats.pass").display()
                ),
                secrets,
            });
        }
        if tls {
            let ca = private_ca(&nats.dir, (0..n).map(nats_addr).collect());
            for host in &mut hosts {
                host.fleet_extra =
                    format!("tls_required = true\ntls_ca_file = \"{}\"\n", ca.display());
            }
            nats.tls = Some((nats.dir.join("cert.pem"), nats.dir.join("key.pem")));
        }
        nats.restart();
        Self { hosts, nats }
    }

    /// A raw NATS connection from host `index`'s server namespace.
    #[must_use]
    pub fn wire(&self, index: usize) -> NatsWire {
        NatsWire::connect(&self.hosts[index].tb.server, nats_addr(index))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.daemon = None;
        let _ = std::fs::remove_dir_all(&self.secrets);
    }
}

/// A CA (`ca.pem`, returned) and a server certificate it signed for `addrs` (`cert.pem`,
/// `key.pem`), all in `dir`.
fn private_ca(dir: &Path, addrs: Vec<Ipv4Addr>) -> PathBuf {
    let path = |name: &str| dir.join(name).to_str().expect("utf-8").to_owned();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["openssl", "req", "-x509"];
    ca.extend(ec);
    let (ca_key, ca_pem) = (path("ca.key"), path("ca.pem"));
    ca.extend([
        "-days",
        "2",
        "-subj",
        "/CN=floodgate-test-ca",
        "-keyout",
        &ca_key,
        "-out",
        &ca_pem,
    ]);
    sh(&ca);
    let (key, csr, cert, ext) = (
        path("key.pem"),
        path("req.csr"),
        path("cert.pem"),
        path("ext.cnf"),
    );
    let san: Vec<String> = addrs.iter().map(|a| format!("IP:{a}")).collect();
    std::fs::write(
        &ext,
        format!(
            "subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n\
             extendedKeyUsage=serverAuth\n",
            san.join(",")
        ),
    )
    .expect("ext.cnf");
    let mut req = vec!["openssl", "req"];
    req.extend(ec);
    req.extend(["-subj", "/CN=nats", "-keyout", &key, "-out", &csr]);
    sh(&req);
    sh(&[
        "openssl",
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_pem,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &ext,
        "-out",
        &cert,
    ]);
    PathBuf::from(ca_pem)
}

/// Writes `text` to `path` with mode 0600.
pub fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, format!("{text}\n")).expect("write secret");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// A bare NATS client over the text protocol: CONNECT, PUB (with headers), PING/PONG.
pub struct NatsWire {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl NatsWire {
    /// Connects (from a thread inside `ns`) and authenticates.
    #[must_use]
    pub fn connect(ns: &NetNs, addr: Ipv4Addr) -> Self {
        let stream = std::thread::scope(|s| {
            s.spawn(|| {
                ns.enter_current_thread();
                TcpStream::connect((addr, NATS_PORT)).expect("connect to nats-server")
            })
            .join()
            .expect("connect thread")
        });
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut wire = Self {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            stream,
        };
        let info = wire.line();
        assert!(info.starts_with("INFO"), "{info}");
        wire.send(&format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true,\"user\":\"{NATS_USER}\",\"pass\":\"{NATS_PASSWORD}\"}}\r\n"
        ));
        wire.ping();
        wire
    }

    fn send(&mut self, text: &str) {
        self.stream
            .write_all(text.as_bytes())
            .expect("write to nats");
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read from nats");
        line
    }

    /// PING, and waits for the PONG (everything before it was processed).
    pub fn ping(&mut self) {
        self.send("PING\r\n");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let line = self.line();
            assert!(!line.starts_with("-ERR"), "nats: {line}");
            if line.starts_with("PONG") {
                return;
            }
        }
        panic!("no PONG from nats-server");
    }

    /// Publishes `payload` on `subject` (a bucket value: `$KV.BUCKET.KEY`).
    pub fn publish(&mut self, subject: &str, payload: &[u8]) {
        self.send(&format!("PUB {subject} {}\r\n", payload.len()));
        self.stream.write_all(payload).expect("payload");
        self.send("\r\n");
        self.ping();
    }

    /// Deletes a bucket key as the KV API does (a `KV-Operation: DEL` marker).
    pub fn delete(&mut self, subject: &str) {
        let headers = "NATS/1.0\r\nKV-Operation: DEL\r\n\r\n";
        self.send(&format!(
            "HPUB {subject} {} {}\r\n{headers}\r\n",
            headers.len(),
            headers.len()
        ));
        self.ping();
    }
}

/// A fleet decision's JSON as a peer would write it.
#[must_use]
pub fn decision_json(target: &str, host: &str, ttl: Duration) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    format!(
        "{{\"target\":\"{target}\",\"expires_ms\":{},\"decided_us\":{},\"reason\":\"test\",\
         \"rule\":\"test\",\"offence\":1,\"origin\":\"operator\",\"origin_host\":\"{host}\"}}",
        (now + ttl).as_millis(),
        now.as_micros()
    )
}

/// The bucket key of a target (as the daemon writes it).
#[must_use]
pub fn key_of(target: &str) -> String {
    target.replace(':', "-").replace('/', "_")
}
