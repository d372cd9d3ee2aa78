//! Network testbeds: namespaces joined by a veth pair (198.18.0.0/15 and 2001:2::/48 only), a
//! real nginx in the server namespace, curl and wrk in the client namespace, and the real
//! daemon attached to the server side. Everything is removed on drop.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{ChildGuard, TempPins, floodgate_bin, unique, wait_until};

/// Server addresses.
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Server addresses.
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
/// The client's primary addresses.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The client's primary addresses.
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);

/// `scheme://dst/path` with an IPv6 address in brackets.
#[must_use]
pub fn url(scheme: &str, dst: IpAddr, path: &str) -> String {
    match dst {
        IpAddr::V4(a) => format!("{scheme}://{a}{path}"),
        IpAddr::V6(a) => format!("{scheme}://[{a}]{path}"),
    }
}

/// Runs `args` in the host namespace, panicking with stderr on failure.
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace, deleted on drop (which also deletes its veth ends).
pub struct NetNs {
    /// Its name (under /run/netns).
    pub name: String,
}

impl NetNs {
    /// Creates a namespace with loopback up.
    #[must_use]
    pub fn new(prefix: &str) -> Self {
        let name = unique(prefix);
        sh(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// A command that runs inside the namespace. `nsenter --net` keeps /sys (and the pins).
    #[must_use]
    pub fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.name))
            .arg("--")
            .arg(program);
        cmd
    }

    /// Runs `args` inside, panicking on failure.
    pub fn run(&self, args: &[&str]) {
        let out = self
            .cmd(args[0])
            .args(&args[1..])
            .output()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(
            out.status.success(),
            "in {}: {args:?} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A server and a client namespace joined by a veth pair.
pub struct Testbed {
    /// Client side (declared first: dropped first).
    pub client: NetNs,
    /// Server side: nginx and the XDP program live here.
    pub server: NetNs,
    /// The server's veth end (XDP attaches here).
    pub server_if: String,
    /// The client's veth end.
    pub client_if: String,
}

impl Testbed {
    /// Creates both namespaces and the link, with the primary addresses.
    #[must_use]
    pub fn new() -> Self {
        crate::require_root();
        let server = NetNs::new("fgs");
        let client = NetNs::new("fgc");
        let server_if = unique("fgv");
        let client_if = format!("{server_if}c");
        let tb = Self {
            client,
            server,
            server_if,
            client_if,
        };
        tb.create_link();
        tb
    }

    /// Creates the veth pair between the namespaces with the primary addresses (what
    /// [`Testbed::new`] does; again after [`Testbed::delete_link`]).
    pub fn create_link(&self) {
        let (server, client, server_if, client_if) =
            (&self.server, &self.client, &self.server_if, &self.client_if);
        sh(&[
            "ip",
            "link",
            "add",
            server_if,
            "netns",
            &server.name,
            "type",
            "veth",
            "peer",
            "name",
            client_if,
            "netns",
            &client.name,
        ]);
        server.run(&["ip", "addr", "add", "198.18.0.1/16", "dev", server_if]);
        server.run(&[
            "ip",
            "-6",
            "addr",
            "add",
            "2001:2::1/48",
            "dev",
            server_if,
            "nodad",
        ]);
        server.run(&["ip", "link", "set", server_if, "up"]);
        client.run(&["ip", "addr", "add", "198.18.0.2/16", "dev", client_if]);
        client.run(&[
            "ip",
            "-6",
            "addr",
            "add",
            "2001:2::2/48",
            "dev",
            client_if,
            "nodad",
        ]);
        client.run(&["ip", "link", "set", client_if, "up"]);
    }

    /// Deletes the veth pair (what a driver reset or a container's veth does to the filter).
    pub fn delete_link(&self) {
        self.server.run(&["ip", "link", "del", &self.server_if]);
    }

    /// Adds source addresses to the client end (198.18.0.0/16 or 2001:2::/48).
    pub fn add_client_addrs(&self, addrs: &[IpAddr]) {
        for addr in addrs {
            let (flag, cidr) = match addr {
                IpAddr::V4(a) => ("-4", format!("{a}/16")),
                IpAddr::V6(a) => ("-6", format!("{a}/48")),
            };
            let mut args = vec!["ip", flag, "addr", "add", &cidr, "dev", &self.client_if];
            if addr.is_ipv6() {
                args.push("nodad");
            }
            self.client.run(&args);
        }
    }

    /// Starts nginx in the server namespace answering 200 "ok" on port 80 (v4 and v6).
    #[must_use]
    pub fn start_nginx(&self) -> Nginx {
        self.start_nginx_with("", "return 200 \"ok\\n\";")
    }

    /// Starts nginx on port 80 (v4 and v6) with extra `http` directives and the body of
    /// `location /`; waits until it answers.
    #[must_use]
    pub fn start_nginx_with(&self, http_extra: &str, location: &str) -> Nginx {
        self.start_nginx_full("", http_extra, &format!("location / {{ {location} }}"))
    }

    /// Starts nginx with extra main-context directives, extra `http` directives and the
    /// location blocks of the port-80 server; waits until it answers.
    #[must_use]
    pub fn start_nginx_full(&self, main_extra: &str, http_extra: &str, locations: &str) -> Nginx {
        let dir = std::env::temp_dir().join(unique("fg-nginx-"));
        std::fs::create_dir_all(&dir).expect("nginx dir");
        // The workers (www-data) write their temp files there too.
        sh(&["chmod", "0755", dir.to_str().expect("utf-8")]);
        let conf = dir.join("nginx.conf");
        let d = dir.display();
        let access_log = if http_extra.contains("access_log") {
            ""
        } else {
            "access_log off;"
        };
        std::fs::write(
            &conf,
            format!(
                "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n{main_extra}\n\
                 events {{ worker_connections 8192; }}\n\
                 http {{ {access_log} keepalive_requests 100000;\n\
                   client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;\n\
                   uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n{http_extra}\n\
                   server {{ listen {SERVER_V4}:80 backlog=4096; listen [{SERVER_V6}]:80 backlog=4096;\n\
                     {locations} }} }}\n"
            ),
        )
        .expect("write nginx.conf");
        let process = ChildGuard::spawn(
            &unique("nginx"),
            self.server.cmd("nginx").arg("-c").arg(&conf),
        );
        let nginx = Nginx { process, dir };
        assert!(
            wait_until(Duration::from_secs(10), || self
                .get(CLIENT_V4.into(), SERVER_V4.into())
                == 200),
            "nginx did not answer in the server namespace"
        );
        nginx
    }

    /// One HTTP GET from `src` (a client address) to `dst`; the status, or 0 on failure.
    #[must_use]
    pub fn get(&self, src: IpAddr, dst: IpAddr) -> u16 {
        self.get_timeout(src, dst, Duration::from_secs(2))
    }

    /// Like [`Testbed::get`] with a timeout.
    #[must_use]
    pub fn get_timeout(&self, src: IpAddr, dst: IpAddr, timeout: Duration) -> u16 {
        self.curl_status(&url("http", dst, "/"), src, timeout, &[])
    }

    /// One request with curl from the client namespace, bound to `src`: the status, 0 when it
    /// failed or timed out. `extra` goes to curl as is.
    #[must_use]
    pub fn curl_status(&self, url: &str, src: IpAddr, timeout: Duration, extra: &[&str]) -> u16 {
        let out = self
            .client
            .cmd("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time"])
            .arg(format!("{:.1}", timeout.as_secs_f64()))
            .arg("--interface")
            .arg(src.to_string())
            .args(extra)
            .arg(url)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// The value of the metric `name` (its first series) that a daemon of the server namespace
    /// exports on 127.0.0.1:`port`; `None` when it is not there or nothing answers.
    #[must_use]
    pub fn metric(&self, port: u16, name: &str) -> Option<f64> {
        let out = self
            .server
            .cmd("curl")
            .args(["-s", "--max-time", "2"])
            .arg(format!("http://127.0.0.1:{port}/metrics"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// Starts the daemon in the server namespace on the server's veth with `config` (TOML).
    #[must_use]
    pub fn start_daemon(&self, pins: &TempPins, config: &str) -> Daemon {
        let dir = std::env::temp_dir().join(unique("fg-daemon-"));
        std::fs::create_dir_all(&dir).expect("daemon dir");
        let config_path = dir.join("floodgate.toml");
        std::fs::write(&config_path, private_feed(config, &dir)).expect("write config");
        let socket = pins.control_socket();
        let mut process = ChildGuard::spawn(
            &unique("floodgate"),
            self.server
                .cmd(floodgate_bin().to_str().expect("utf-8 path"))
                .args(["run", "--iface", &self.server_if, "--config"])
                .arg(&config_path)
                .arg("--control-socket")
                .arg(&socket)
                .env("FLOODGATE_PIN_ROOT", pins.root())
                .env("RUST_LOG", "info"),
        );
        process.wait_for_log("ready: protecting", Duration::from_secs(20));
        Daemon {
            process,
            dir,
            socket,
            config_path,
        }
    }
}

impl Default for Testbed {
    fn default() -> Self {
        Self::new()
    }
}

/// A running nginx.
pub struct Nginx {
    /// The master process (its workers share its process group).
    pub process: ChildGuard,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running daemon.
pub struct Daemon {
    /// The process.
    pub process: ChildGuard,
    /// Its temp dir.
    pub dir: PathBuf,
    /// Control socket.
    pub socket: PathBuf,
    /// The configuration file it runs with.
    pub config_path: PathBuf,
}

impl Daemon {
    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        self.process.signal(libc::SIGTERM);
        let status = self
            .process
            .wait_exit(Duration::from_secs(10))
            .expect("daemon exits on SIGTERM");
        assert!(
            status.success(),
            "daemon exit status {status}:\n{}",
            self.process.log()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `config` with the proxy feed's socket and file in `dir` where the test did not place them,
/// so that no test daemon touches the host's /run/floodgate.
#[must_use]
pub fn private_feed(config: &str, dir: &Path) -> String {
    let (file, socket) = (dir.join("requests.log"), dir.join("requests.sock"));
    if !config.contains("[proxy]") {
        return format!(
            "{config}\n[proxy]\nfile = \"{}\"\nsocket = \"{}\"\n",
            file.display(),
            socket.display()
        );
    }
    let mut keys = String::new();
    for (key, path) in [("file", &file), ("socket", &socket)] {
        if !config.contains(&format!("\n{key} = ")) {
            keys.push_str(&format!("{key} = \"{}\"\n", path.display()));
        }
    }
    config.replacen("[proxy]\n", &format!("[proxy]\n{keys}"), 1)
}

/// A test configuration: `extra` (top-level keys first, then tables) and no metrics listener.
#[must_use]
pub fn test_config(extra: &str) -> String {
    format!("{extra}\n[metrics]\nlisten = \"off\"\n")
}

/// Index of an interface in the calling namespace.
#[must_use]
pub fn ifindex(name: &str) -> i32 {
    let c = std::ffi::CString::new(name).expect("interface name");
    // SAFETY: a valid NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert!(index > 0, "no interface {name}");
    index as i32
}

impl Testbed {
    /// The MAC address of the server's veth end.
    #[must_use]
    pub fn server_mac(&self) -> String {
        let out = self
            .server
            .cmd("ip")
            .args(["-j", "link", "show", &self.server_if])
            .output()
            .expect("ip link");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j");
        v[0]["address"].as_str().expect("mac").to_owned()
    }

    /// Floods nginx on port 80 from `sources` at `rate` requests/s each for `seconds` with the
    /// loadgen tool at `loadgen` (`env!("CARGO_BIN_EXE_loadgen")` in a test); asserts it ran.
    pub fn loadgen(&self, loadgen: &str, sources: &[IpAddr], rate: u32, seconds: u32) {
        self.loadgen_staggered(loadgen, sources, rate, seconds, 20);
    }

    /// [`Testbed::loadgen`] with the sources starting `stagger_ms` apart.
    pub fn loadgen_staggered(
        &self,
        loadgen: &str,
        sources: &[IpAddr],
        rate: u32,
        seconds: u32,
        stagger_ms: u32,
    ) {
        let mut args = vec![
            format!("{SERVER_V4}:80"),
            rate.to_string(),
            seconds.to_string(),
            "100".into(),
        ];
        args.extend(sources.iter().map(ToString::to_string));
        let out = self
            .client
            .cmd(loadgen)
            .args(&args)
            .env("LOADGEN_STAGGER_MS", stagger_ms.to_string())
            .output()
            .expect("run loadgen");
        assert!(
            out.status.success(),
            "loadgen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Compiles the round-robin source-binding shim (LD_PRELOAD) for wrk; returns its path.
    #[must_use]
    pub fn build_shim() -> PathBuf {
        let out = std::env::temp_dir()
            .join(unique("fg-shim-"))
            .with_extension("so");
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("shim/bind_round_robin.c");
        sh(&[
            "gcc",
            "-O2",
            "-shared",
            "-fPIC",
            "-o",
            out.to_str().expect("path"),
            src.to_str().expect("path"),
            "-ldl",
            "-lpthread",
        ]);
        out
    }

    /// Runs wrk in the client namespace from `sources` (round robin) against `url` for
    /// `duration` with `connections`; bounded by wrk's own duration. Returns the child.
    #[must_use]
    pub fn start_wrk(
        &self,
        shim: &std::path::Path,
        sources: &[IpAddr],
        url: &str,
        duration: Duration,
        connections: u32,
    ) -> ChildGuard {
        ChildGuard::spawn(
            &unique("wrk"),
            self.client
                .cmd("wrk")
                .args([
                    "-t",
                    "1",
                    "-c",
                    &connections.to_string(),
                    "-d",
                    &format!("{}s", duration.as_secs().max(1)),
                    "--timeout",
                    "1s",
                    url,
                ])
                .bound_to(shim, sources),
        )
    }
}

/// Binds a load tool's connections to many source addresses (the round-robin shim).
pub trait BoundTo {
    /// Preloads `shim` (from [`Testbed::build_shim`]) with `sources` for the command.
    fn bound_to(&mut self, shim: &Path, sources: &[IpAddr]) -> &mut Self;
}

impl BoundTo for Command {
    fn bound_to(&mut self, shim: &Path, sources: &[IpAddr]) -> &mut Self {
        let list: Vec<String> = sources.iter().map(ToString::to_string).collect();
        self.env("LD_PRELOAD", shim)
            .env("FG_SOURCES", list.join(","))
    }
}

/// Opens a TCP connection to `dst` from the source address `src` (bound before connecting),
/// giving up after `timeout`.
pub fn connect_from(
    src: IpAddr,
    dst: std::net::SocketAddr,
    timeout: Duration,
) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: zeroed sockaddr_storage is a valid value to fill in.
    let mut local: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut remote: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let (family, len) = match (src, dst) {
        (IpAddr::V4(s), std::net::SocketAddr::V4(d)) => {
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in.
            unsafe {
                let l = &mut *(&raw mut local).cast::<libc::sockaddr_in>();
                l.sin_family = libc::AF_INET as u16;
                l.sin_addr.s_addr = u32::from_ne_bytes(s.octets());
                let r = &mut *(&raw mut remote).cast::<libc::sockaddr_in>();
                r.sin_family = libc::AF_INET as u16;
                r.sin_port = d.port().to_be();
                r.sin_addr.s_addr = u32::from_ne_bytes(d.ip().octets());
            }
            (libc::AF_INET, size_of::<libc::sockaddr_in>())
        }
        (IpAddr::V6(s), std::net::SocketAddr::V6(d)) => {
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in6.
            unsafe {
                let l = &mut *(&raw mut local).cast::<libc::sockaddr_in6>();
                l.sin6_family = libc::AF_INET6 as u16;
                l.sin6_addr.s6_addr = s.octets();
                let r = &mut *(&raw mut remote).cast::<libc::sockaddr_in6>();
                r.sin6_family = libc::AF_INET6 as u16;
                r.sin6_port = d.port().to_be();
                r.sin6_addr.s6_addr = d.ip().octets();
            }
            (libc::AF_INET6, size_of::<libc::sockaddr_in6>())
        }
        _ => return Err(std::io::Error::other("address families differ")),
    };
    // SAFETY: socket/bind/connect on a fresh fd with correctly sized addresses; the fd is
    // owned by the TcpStream from here on, which closes it.
    unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = std::net::TcpStream::from_raw_fd(fd);
        // Linux applies the send timeout to connect().
        stream.set_write_timeout(Some(timeout))?;
        if libc::bind(fd, (&raw const local).cast(), len as u32) != 0
            || libc::connect(fd, (&raw const remote).cast(), len as u32) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}

impl NetNs {
    /// Moves the calling thread (only it) into this namespace.
    pub fn enter_current_thread(&self) {
        let file = std::fs::File::open(format!("/run/netns/{}", self.name)).expect("open netns");
        // SAFETY: setns on a valid namespace fd; it affects only the calling thread.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

/// The address plan of flood tests: four legitimate clients (two per family) and `n4` IPv4 plus
/// `n6` IPv6 flooders, all on the client end of a [`Testbed`].
pub struct FloodPlan {
    /// Legitimate clients.
    pub legit: Vec<IpAddr>,
    /// IPv4 flooders (198.18.2.0/24).
    pub flood4: Vec<IpAddr>,
    /// IPv6 flooders (2001:2:0:2::/64).
    pub flood6: Vec<IpAddr>,
}

impl FloodPlan {
    /// The plan, with its addresses added to `tb`'s client end.
    #[must_use]
    pub fn on(tb: &Testbed, n4: u8, n6: u16) -> Self {
        let parse = |text: String| text.parse::<IpAddr>().expect("address");
        let plan = Self {
            legit: ["198.18.0.10", "198.18.0.11", "2001:2::10", "2001:2::11"]
                .map(|a| parse(a.into()))
                .to_vec(),
            flood4: (1..=n4).map(|i| parse(format!("198.18.2.{i}"))).collect(),
            flood6: (1..=n6)
                .map(|i| parse(format!("2001:2:0:2::{i:x}")))
                .collect(),
        };
        tb.add_client_addrs(&plan.legit);
        tb.add_client_addrs(&plan.flood4);
        tb.add_client_addrs(&plan.flood6);
        plan
    }

    /// Every flooder.
    #[must_use]
    pub fn flooders(&self) -> Vec<IpAddr> {
        self.flood4.iter().chain(&self.flood6).copied().collect()
    }
}

/// One GET on a new connection from `src` to `dst`: the latency in ms if it was answered 200
/// within `timeout`. For use on a thread inside the client namespace.
#[must_use]
pub fn timed_get(
    src: IpAddr,
    dst: std::net::SocketAddr,
    path: &str,
    timeout: Duration,
) -> Option<f64> {
    use std::io::{Read as _, Write as _};
    let t = std::time::Instant::now();
    let mut s = connect_from(src, dst, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).ok()?;
    buf[..n]
        .starts_with(b"HTTP/1.1 200")
        .then(|| t.elapsed().as_secs_f64() * 1000.0)
}
