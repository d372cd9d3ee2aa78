//! Part 2: what the feed costs the proxy. nginx (one worker, TLS, HTTP/2) saturated by h2load
//! over HTTPS from one address, with the feed off (nginx without the lines, the daemon idle)
//! and on (the lines of `floodgate proxy-snippet nginx`, the daemon reading them), runs
//! alternating in one testbed. The feed file (nginx's default: a buffered access_log the
//! daemon follows) is measured beside the feed socket (one syslog datagram per request).
//! The socket is measured twice: with the kernel's defaults
//! (`net.unix.max_dgram_qlen` 10: at most 11 datagrams wait for the daemon), and with the
//! queue raised to [`TUNED_QLEN`] in the server namespace, the README's advice. A unix
//! datagram stays charged to the sender's send buffer until it is read, and nginx does not
//! size its own, so `net.core.wmem_default` (host-wide: not changed here) then bounds the
//! queue, not the daemon's receive buffer. nginx drops a line whenever the socket is full;
//! feed events / requests shows how many arrived. Rate thresholds far above the load:
//! nothing is blocked. h2load, nginx and the daemon share the machine's CPUs, so requests/s
//! is the whole box's; nginx's CPU per request is the proxy's own cost.

use std::{
    net::IpAddr,
    path::Path,
    time::{Duration, Instant},
};

use floodgate_bench::{cpu_seconds, results::median};
use floodgate_tests::{
    TempPins,
    edge::Cert,
    floodgate_json,
    net::{SERVER_V4, Testbed, test_config},
};
use serde_json::json;

use crate::{H2load, children, feed_socket};

const RUNS: usize = 3;
const LOAD: Duration = Duration::from_secs(10);
/// h2load connections (10 streams each).
const CONNECTIONS: u32 = 32;
/// The raised queue length: about 60 ms of this feed at 70,000 requests/s.
const TUNED_QLEN: u32 = 4096;
/// nginx's `keepalive_requests` in the harness: a connection ends after that many requests
/// (and h2load does not reconnect), so a run must stay well under connections × this.
const KEEPALIVE_REQUESTS: u64 = 100_000;

/// The default rules with their rate thresholds far above the load (the other rules match
/// statuses and backend time this load never has).
const RULES: &str = "\
[[rules]]\nname = \"per-source-flood\"\nsensor = \"kernel\"\nthreshold_rps = 1000000000.0\n\
[[rules]]\nname = \"per-source-flood-proxy\"\nsensor = \"proxy\"\nthreshold_rps = 1000000000.0\n\
[[rules]]\nname = \"tls-handshake-flood\"\nsensor = \"kernel\"\nsignal = \"tls_handshakes\"\nthreshold_rps = 1000000000.0\n\
[[rules]]\nname = \"failed-auth\"\nsensor = \"proxy\"\nstatus = [401, 403]\nthreshold_rps = 5.0\nwindow = \"10s\"\nmin_samples = 20\n\
[[rules]]\nname = \"not-found-scan\"\nsensor = \"proxy\"\nstatus = [404]\nthreshold_rps = 20.0\nwindow = \"10s\"\nmin_samples = 50\naction = \"monitor\"\n\
[[rules]]\nname = \"backend-time\"\nsensor = \"proxy\"\nweight = \"upstream_time\"\nthreshold_rps = 0.5\nwindow = \"10s\"\nmin_samples = 20\naction = \"monitor\"\n";

/// One side of the comparison.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Feed {
    Off,
    /// On, the namespace's socket defaults as the kernel sets them.
    On,
    /// On, with [`TUNED_QLEN`].
    OnTuned,
    /// The feed file.
    File,
    /// No feed, but the access log most nginx servers write anyway (combined format,
    /// buffered like the feed file, to /dev/null so that no disk is involved).
    AccessLog,
}

impl Feed {
    fn label(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::On => "on",
            Self::OnTuned => "on_tuned",
            Self::File => "file",
            Self::AccessLog => "access_log",
        }
    }
}

/// A sysctl of the server namespace.
fn sysctl(tb: &Testbed, key: &str) -> String {
    let out = tb
        .server
        .cmd("sysctl")
        .args(["-n", key])
        .output()
        .expect("sysctl");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Sets the server namespace's `net.unix.max_dgram_qlen` (it applies to sockets created
/// afterwards, in that namespace only).
fn set_qlen(tb: &Testbed, qlen: &str) {
    tb.server.run(&[
        "sysctl",
        "-q",
        "-w",
        &format!("net.unix.max_dgram_qlen={qlen}"),
    ]);
    assert_eq!(sysctl(tb, "net.unix.max_dgram_qlen"), qlen, "sysctl took");
}

struct Run {
    feed: Feed,
    load: H2load,
    /// CPU share (cores) of the daemon, of nginx (master and worker), and of the whole
    /// machine, over the load.
    daemon_cpu: f64,
    nginx_cpu: f64,
    machine_cpu: f64,
    /// Requests the feed delivered to the detector during the run.
    feed_events: u64,
}

/// What every run shares.
struct Bed<'a> {
    tb: &'a Testbed,
    cert: &'a Cert,
    socket: &'a Path,
    file: &'a Path,
    pins: &'a TempPins,
    config: &'a str,
    shim: &'a Path,
    src: IpAddr,
    /// The namespace's own `net.unix.max_dgram_qlen`.
    default_qlen: String,
}

/// Busy and total jiffies of all CPUs (/proc/stat).
fn machine_jiffies() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: f64 = fields.iter().sum();
    // idle and iowait are fields 3 and 4.
    let idle = fields.get(3).copied().unwrap_or(0.0) + fields.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
}

fn feed_events(pins: &TempPins) -> u64 {
    floodgate_json(pins, &["status", "--json"])["daemon"]["proxy"]["events"]
        .as_u64()
        .unwrap_or(0)
}

fn one_run(bed: &Bed<'_>, feed: Feed) -> Run {
    // Before the daemon and nginx make their sockets.
    match feed {
        Feed::Off | Feed::On | Feed::File | Feed::AccessLog => {
            set_qlen(bed.tb, &bed.default_qlen);
        }
        Feed::OnTuned => set_qlen(bed.tb, &TUNED_QLEN.to_string()),
    }
    let daemon = bed.tb.start_daemon(bed.pins, bed.config);
    let daemon_pid = daemon.process.child.id();
    let nginx = match feed {
        Feed::File => bed.tb.start_edge_nginx_file_feed(bed.cert, bed.file),
        Feed::Off => bed.tb.start_edge_nginx(bed.cert, None),
        Feed::AccessLog => bed.tb.start_edge_nginx_with_log(
            bed.cert,
            "access_log /dev/null combined buffer=64k flush=100ms;",
        ),
        Feed::On | Feed::OnTuned => bed.tb.start_edge_nginx(bed.cert, Some(bed.socket)),
    };
    let nginx_pids: Vec<u32> = std::iter::once(nginx.process.child.id())
        .chain(children(nginx.process.child.id()))
        .collect();
    let events_before = feed_events(bed.pins);
    let (daemon_before, nginx_before) = (cpu_seconds(&[daemon_pid]), cpu_seconds(&nginx_pids));
    let machine_before = machine_jiffies();
    let t = Instant::now();
    let mut h2load = bed.tb.start_h2load(
        bed.shim,
        &[bed.src],
        &format!("https://{SERVER_V4}/"),
        LOAD,
        CONNECTIONS,
        &[],
    );
    h2load
        .wait_exit(LOAD + Duration::from_secs(20))
        .unwrap_or_else(|| panic!("h2load is bounded by -D: {}", h2load.log()));
    let secs = t.elapsed().as_secs_f64();
    let daemon_cpu = (cpu_seconds(&[daemon_pid]) - daemon_before) / secs;
    let nginx_cpu = (cpu_seconds(&nginx_pids) - nginx_before) / secs;
    let machine_after = machine_jiffies();
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let machine_cpu =
        (machine_after.0 - machine_before.0) / (machine_after.1 - machine_before.1) * cores;
    // Datagrams still queued are read within a moment.
    std::thread::sleep(Duration::from_millis(500));
    let feed_events = feed_events(bed.pins) - events_before;
    let load = H2load::parse(&h2load.log());
    assert!(
        load.succeeded < u64::from(CONNECTIONS) * KEEPALIVE_REQUESTS * 9 / 10,
        "h2load's connections neared nginx's keepalive_requests and would end early: raise CONNECTIONS\n{}",
        h2load.log()
    );
    drop(nginx);
    drop(daemon);
    Run {
        feed,
        load,
        daemon_cpu,
        nginx_cpu,
        machine_cpu,
        feed_events,
    }
}

fn side(runs: &[Run], feed: Feed) -> serde_json::Value {
    let rs: Vec<&Run> = runs.iter().filter(|r| r.feed == feed).collect();
    let med = |f: &dyn Fn(&Run) -> f64| median(&mut rs.iter().map(|r| f(r)).collect::<Vec<_>>());
    json!({
        "req_per_sec_median": med(&|r| r.load.req_per_sec),
        "req_per_sec_runs": rs.iter().map(|r| r.load.req_per_sec).collect::<Vec<_>>(),
        "succeeded_median": med(&|r| r.load.succeeded as f64),
        "failed_total": rs.iter().map(|r| r.load.failed).sum::<u64>(),
        "daemon_cpu_cores_median": med(&|r| r.daemon_cpu),
        "nginx_cpu_cores_median": med(&|r| r.nginx_cpu),
        "machine_cpu_cores_median": med(&|r| r.machine_cpu),
        "nginx_cpu_us_per_request_median": med(&|r| r.nginx_cpu * 1e6 / r.load.req_per_sec.max(1.0)),
        "daemon_cpu_us_per_event_median": med(&|r| r.daemon_cpu * 1e6 * LOAD.as_secs_f64() / (r.feed_events.max(1)) as f64),
        "feed_events_median": med(&|r| r.feed_events as f64),
        "feed_coverage_median": med(&|r| r.feed_events as f64 / (r.load.succeeded.max(1)) as f64),
    })
}

pub(crate) fn run() -> serde_json::Value {
    let tb = Testbed::new();
    let src: IpAddr = "198.18.5.1".parse().unwrap();
    tb.add_client_addrs(&[src]);
    let cert = Cert::new();
    let (_dir, socket) = feed_socket();
    let file = socket.with_file_name("requests.log");
    let pins = TempPins::new();
    // The benchmark sets net.unix.max_dgram_qlen itself per mode (the "raised" mode is what
    // the daemon does by default, proxy.queue_datagrams = 4096), so the daemon leaves it.
    let config = test_config(&format!(
        "[filter]\nreset_connections = false\ntls_ports = [443]\n\
         [aggregation]\nmin_addresses = 0\n[proxy]\nsocket = \"{}\"\nfile = \"{}\"\n\
         queue_datagrams = 0\n{RULES}",
        socket.display(),
        file.display()
    ));
    let shim = Testbed::build_shim();
    let bed = Bed {
        tb: &tb,
        cert: &cert,
        socket: &socket,
        file: &file,
        pins: &pins,
        config: &config,
        shim: &shim,
        src,
        default_qlen: sysctl(&tb, "net.unix.max_dgram_qlen"),
    };
    let sides = [
        Feed::Off,
        Feed::File,
        Feed::On,
        Feed::OnTuned,
        Feed::AccessLog,
    ];
    let mut runs = Vec::new();
    for i in 0..RUNS {
        // The order rotates, so that drift over the runs falls on every side.
        for k in 0..sides.len() {
            let feed = sides[(i + k) % sides.len()];
            eprintln!("  run {}/{RUNS}, feed {}", i + 1, feed.label());
            runs.push(one_run(&bed, feed));
        }
    }
    let _ = std::fs::remove_file(&shim);
    let blocks = floodgate_json(&pins, &["block", "list", "--json"]);
    assert_eq!(
        blocks.as_array().map_or(0, Vec::len),
        0,
        "the load source must not be blocked during the measurement: {blocks}"
    );
    let rps = |v: &serde_json::Value| v["req_per_sec_median"].as_f64().unwrap_or(f64::NAN);
    let off = side(&runs, Feed::Off);
    let mut out = json!({
        "off": off,
        "runs_each": RUNS,
        "duration_s": LOAD.as_secs(),
        "connections": CONNECTIONS,
        "streams_per_connection": 10,
        "default_sysctls": {
            "net.unix.max_dgram_qlen": bed.default_qlen,
            "net.core.wmem_default": sysctl(&tb, "net.core.wmem_default"),
        },
        "tuned_sysctls": { "net.unix.max_dgram_qlen": TUNED_QLEN },
        "cores": std::thread::available_parallelism().map_or(1, usize::from),
        "target_loss_pct": 10,
    });
    for feed in &sides[1..] {
        let on = side(&runs, *feed);
        let label = feed.label();
        out[format!("loss_pct_{label}")] = ((1.0 - rps(&on) / rps(&off)) * 100.0).into();
        out[format!("ratio_{label}_to_off")] = (rps(&on) / rps(&off)).into();
        out[label] = on;
    }
    // What the feed file costs next to the access log nginx usually writes anyway.
    out["loss_pct_file_vs_access_log"] =
        ((1.0 - rps(&out["file"]) / rps(&out["access_log"])) * 100.0).into();
    out
}
