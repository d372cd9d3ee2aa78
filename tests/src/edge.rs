//! The TLS edge of a test host: a certificate made by the test, nginx terminating TLS with
//! HTTP/2 (and cleartext HTTP/1.1 and HTTP/2) and HAProxy terminating TLS with HTTP/2, both
//! writing the Floodgate request feed; and the HTTPS clients that load them (h2load, curl),
//! bound to many source addresses with the round-robin shim.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{
    ChildGuard, floodgate_bin,
    net::{BoundTo as _, Nginx, SERVER_V4, SERVER_V6, Testbed, sh, url},
    unique, wait_until,
};

/// A self-signed certificate for the test server, removed on drop.
pub struct Cert {
    dir: PathBuf,
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// Certificate and key in one file (HAProxy's `crt`).
    pub combined: PathBuf,
}

impl Cert {
    /// Makes a P-256 certificate for the server's addresses.
    #[must_use]
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("fg-cert-"));
        std::fs::create_dir_all(&dir).expect("cert dir");
        let (cert, key, combined) = (
            dir.join("cert.pem"),
            dir.join("key.pem"),
            dir.join("both.pem"),
        );
        sh(&[
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=floodgate-test",
            "-addext",
            &format!("subjectAltName=IP:{SERVER_V4},IP:{SERVER_V6}"),
            "-keyout",
            key.to_str().expect("utf-8"),
            "-out",
            cert.to_str().expect("utf-8"),
        ]);
        let both = format!(
            "{}{}",
            std::fs::read_to_string(&cert).expect("cert"),
            std::fs::read_to_string(&key).expect("key")
        );
        std::fs::write(&combined, both).expect("combined pem");
        Self {
            dir,
            cert,
            key,
            combined,
        }
    }
}

impl Default for Cert {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh directory for a feed socket and the socket's path in it: (directory, socket).
#[must_use]
pub fn feed_socket() -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(unique("fg-feed-"));
    std::fs::create_dir_all(&dir).expect("feed dir");
    let socket = dir.join("requests.sock");
    (dir, socket)
}

/// The feed lines for `proxy` as the product prints them (`floodgate proxy-snippet`), sending
/// to the socket `socket`.
#[must_use]
pub fn proxy_snippet(proxy: &str, socket: &Path) -> String {
    snippet_with(proxy, "--feed-socket", socket)
}

/// nginx's feed lines appending to `file` (`floodgate proxy-snippet nginx --feed-file`).
#[must_use]
pub fn nginx_file_snippet(file: &Path) -> String {
    snippet_with("nginx", "--feed-file", file)
}

fn snippet_with(proxy: &str, flag: &str, path: &Path) -> String {
    let out = Command::new(floodgate_bin())
        .args(["proxy-snippet", proxy, flag])
        .arg(path)
        .output()
        .expect("floodgate proxy-snippet");
    assert!(
        out.status.success(),
        "proxy-snippet {proxy}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 snippet")
}

/// Ports of the edge server.
pub mod port {
    /// Cleartext HTTP/1.1.
    pub const HTTP: u16 = 80;
    /// TLS (nginx or HAProxy), HTTP/2 and HTTP/1.1 by ALPN.
    pub const HTTPS: u16 = 443;
    /// Cleartext HTTP/2 (prior knowledge).
    pub const H2C: u16 = 8080;
    /// nginx's own backend listener in the server namespace (behind HAProxy).
    pub const BACKEND: u16 = 8081;
}

/// The `location` blocks of the edge: `/` answers 200, `/login` answers 401 unless the
/// request carries `?ok`, so that a test can make failed and successful logins.
const LOCATIONS: &str = "location / { return 200 \"ok\\n\"; }\n\
    location /login { if ($arg_ok) { return 200 \"welcome\\n\"; } return 401 \"no\\n\"; }";

impl Testbed {
    /// nginx terminating TLS on 443 (HTTP/2 and HTTP/1.1), cleartext HTTP/1.1 on 80 and
    /// HTTP/2 on 8080, v4 and v6, workers running as www-data, writing the request feed to
    /// `feed` (when given) with the lines `floodgate proxy-snippet nginx` prints.
    #[must_use]
    pub fn start_edge_nginx(&self, cert: &Cert, feed: Option<&Path>) -> Nginx {
        self.start_edge(cert, feed, LOCATIONS)
    }

    /// [`Testbed::start_edge_nginx`] with `/expensive` proxied to the HTTP backend at
    /// `backend` (nginx then logs the upstream time).
    #[must_use]
    pub fn start_edge_nginx_with_backend(&self, cert: &Cert, feed: &Path, backend: &str) -> Nginx {
        let locations =
            format!("{LOCATIONS}\nlocation /expensive {{ proxy_pass http://{backend}; }}");
        self.start_edge(cert, Some(feed), &locations)
    }

    /// [`Testbed::start_edge_nginx`] appending the feed to the file `feed` (the buffered
    /// `access_log` of `floodgate proxy-snippet nginx --feed-file`).
    #[must_use]
    pub fn start_edge_nginx_file_feed(&self, cert: &Cert, feed: &Path) -> Nginx {
        self.start_edge_with(cert, &nginx_file_snippet(feed), LOCATIONS)
    }

    /// [`Testbed::start_edge_nginx`] with `log_lines` (e.g. an ordinary `access_log`) in
    /// place of the feed.
    #[must_use]
    pub fn start_edge_nginx_with_log(&self, cert: &Cert, log_lines: &str) -> Nginx {
        self.start_edge_with(cert, log_lines, LOCATIONS)
    }

    fn start_edge(&self, cert: &Cert, feed: Option<&Path>, locations: &str) -> Nginx {
        let feed_lines = feed.map(|f| proxy_snippet("nginx", f)).unwrap_or_default();
        self.start_edge_with(cert, &feed_lines, locations)
    }

    fn start_edge_with(&self, cert: &Cert, feed_lines: &str, locations: &str) -> Nginx {
        let c = cert.cert.display();
        let k = cert.key.display();
        let http_extra = format!(
            "{feed_lines}\nssl_certificate {c}; ssl_certificate_key {k};\n\
             server {{ listen {SERVER_V4}:443 ssl http2 backlog=4096; listen [{SERVER_V6}]:443 ssl http2 backlog=4096;\n\
               {locations} }}\n\
             server {{ listen {SERVER_V4}:8080 http2 backlog=4096; listen [{SERVER_V6}]:8080 http2 backlog=4096;\n\
               {locations} }}\n\
             server {{ listen 127.0.0.1:{backend}; {LOCATIONS} }}\n",
            backend = port::BACKEND
        );
        self.start_nginx_full("user www-data;", &http_extra, locations)
    }

    /// nginx on 80 and as a backend on 127.0.0.1:8081 only (behind HAProxy), as www-data.
    #[must_use]
    pub fn start_backend_nginx(&self) -> Nginx {
        let backend = format!(
            "server {{ listen 127.0.0.1:{}; {LOCATIONS} }}\n",
            port::BACKEND
        );
        self.start_nginx_full("user www-data;", &backend, LOCATIONS)
    }

    /// HAProxy terminating TLS on 443 (HTTP/2 and HTTP/1.1 by ALPN), in front of nginx's
    /// backend listener, writing the request feed with the lines of
    /// `floodgate proxy-snippet haproxy`. Runs as the haproxy user.
    #[must_use]
    pub fn start_haproxy(&self, cert: &Cert, feed: &Path) -> ChildGuard {
        let dir = std::env::temp_dir().join(unique("fg-haproxy-"));
        std::fs::create_dir_all(&dir).expect("haproxy dir");
        let conf = dir.join("haproxy.cfg");
        let feed_lines = proxy_snippet("haproxy", feed);
        std::fs::write(
            &conf,
            format!(
                "global\n    user haproxy\n    group haproxy\n    maxconn 4000\n\
                 defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
                 frontend edge\n    bind {SERVER_V4}:443 ssl crt {crt} alpn h2,http/1.1\n    bind [{SERVER_V6}]:443 ssl crt {crt} alpn h2,http/1.1\n\
                 {feed_lines}\n    default_backend app\n\
                 backend app\n    server nginx 127.0.0.1:{backend}\n",
                crt = cert.combined.display(),
                backend = port::BACKEND
            ),
        )
        .expect("write haproxy.cfg");
        // The haproxy user must read the certificate.
        sh(&["chmod", "0644", cert.combined.to_str().expect("utf-8")]);
        let check = self
            .server
            .cmd("haproxy")
            .args(["-c", "-f"])
            .arg(&conf)
            .output()
            .expect("haproxy -c");
        assert!(
            check.status.success(),
            "haproxy.cfg does not check: {}{}\n{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr),
            std::fs::read_to_string(&conf).unwrap_or_default()
        );
        let process = ChildGuard::spawn(
            &unique("haproxy"),
            self.server.cmd("haproxy").args(["-db", "-f"]).arg(&conf),
        );
        let ready = wait_until(Duration::from_secs(10), || {
            self.https_status(SERVER_V4.into(), "198.18.0.2".parse().unwrap(), "/", false) == 200
        });
        assert!(ready, "haproxy answers: {}", process.log());
        process
    }

    /// One HTTPS request from `src` with curl (HTTP/2 when `h2`, else HTTP/1.1); the status, 0
    /// when it failed.
    #[must_use]
    pub fn https_status(&self, dst: IpAddr, src: IpAddr, path: &str, h2: bool) -> u16 {
        let version = if h2 { "--http2" } else { "--http1.1" };
        self.curl_status(
            &url("https", dst, path),
            src,
            Duration::from_secs(2),
            &["-k", version],
        )
    }

    /// h2load from `sources` (round robin by the shim) for `duration` (zero: bounded by the
    /// request count in `extra` instead, as rate mode `-r` needs), over `clients` connections
    /// with up to 10 concurrent streams each. `url` is https:// (HTTP/2 over TLS)
    /// or http:// (cleartext HTTP/2); `extra` goes to h2load as is (e.g. `--h1` for HTTP/1.1).
    #[must_use]
    pub fn start_h2load(
        &self,
        shim: &Path,
        sources: &[IpAddr],
        url: &str,
        duration: Duration,
        clients: u32,
        extra: &[&str],
    ) -> ChildGuard {
        let mut args = vec![
            "-c".to_owned(),
            clients.to_string(),
            "-t".to_owned(),
            "1".to_owned(),
            "-m".to_owned(),
            "10".to_owned(),
        ];
        if !duration.is_zero() {
            args.extend(["-D".to_owned(), duration.as_secs().max(1).to_string()]);
        }
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        args.push(url.to_owned());
        ChildGuard::spawn(
            &unique("h2load"),
            self.client
                .cmd("h2load")
                .args(&args)
                .bound_to(shim, sources),
        )
    }
}
