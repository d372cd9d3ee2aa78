//! The botnet of issue 13, shared by the end-to-end test (`tests/adaptive.rs`) and `./x bench
//! survival botnet`: nginx in front of a backend of bounded capacity (one request at a time,
//! 2 ms each for the expensive path), 50 legitimate clients at 1–3 requests/s on mixed paths
//! (IPv4 and IPv6), 300 bots at 15–25 requests/s each on the expensive path, latency probes
//! from four more legitimate addresses, and how recovery is measured from them.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    ChildGuard, TempPins, blocked_targets, floodgate_json,
    net::{Nginx, SERVER_V4, SERVER_V6, Testbed, timed_get},
    unique, wait_until,
};

/// The learning phase [`adaptive_section`] asks for.
pub const LEARNING_SECS: u64 = 20;
/// How long the legitimate clients run in all (loadgen's bound is 60 s).
pub const LEGIT_SECS: u32 = 55;
/// How long the botnet floods.
pub const FLOOD_SECS: u32 = 15;
/// The bots' path: 2 ms of the serial backend each (≤ 500 requests/s in all).
pub const EXPENSIVE: &str = "/api/expensive?ms=2";

/// A temporary directory for the baseline state file, removed on drop.
pub struct StateDir(PathBuf);

impl StateDir {
    /// A fresh directory under the temp dir.
    #[must_use]
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("fg-adaptive-"));
        std::fs::create_dir_all(&dir).expect("state dir");
        Self(dir)
    }

    /// The state file's path in it.
    #[must_use]
    pub fn file(&self) -> PathBuf {
        self.0.join("baseline.json")
    }
}

impl Default for StateDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts the serial slow backend (`slow_backend`, the tests crate's `slow-backend` binary) on
/// 127.0.0.1:8081 and nginx in front of it in `tb`'s server namespace: `/` answers from nginx,
/// `/api/` goes to the backend. `http_extra` goes into nginx's `http` context and
/// `api_extra` into `location /api/` (e.g. `limit_req`).
#[must_use]
pub fn start_site(
    tb: &Testbed,
    slow_backend: &str,
    http_extra: &str,
    api_extra: &str,
) -> (ChildGuard, Nginx) {
    let backend = ChildGuard::spawn(
        &unique("backend"),
        tb.server
            .cmd(slow_backend)
            .arg("127.0.0.1:8081")
            .env("SLOW_BACKEND_SERIAL", "1"),
    );
    let nginx = tb.start_nginx_full(
        "",
        &format!("upstream backend {{ server 127.0.0.1:8081; keepalive 64; }}\n{http_extra}"),
        &format!(
            "location / {{ return 200 \"ok\\n\"; }}\n\
             location /api/ {{ {api_extra} proxy_pass http://backend; proxy_http_version 1.1; \
               proxy_set_header Connection \"\"; }}"
        ),
    );
    (backend, nginx)
}

/// The `[adaptive]` section of the botnet configuration: a learning phase of
/// [`LEARNING_SECS`], services "site" (every request) and "api" (`/api/`, capacity 400
/// requests/s), baselines kept in `state_file`; fingerprints at their defaults.
#[must_use]
pub fn adaptive_section(state_file: &Path) -> String {
    format!(
        "[adaptive]\nenabled = true\nperiod = \"60s\"\nlearning = \"{LEARNING_SECS}s\"\n\
         calm = \"5s\"\nsave_interval = \"2s\"\nstate_file = \"{}\"\n\
         [[adaptive.services]]\nname = \"site\"\n\
         [[adaptive.services]]\nname = \"api\"\npath_prefix = \"/api/\"\ncapacity_rps = 400.0\n",
        state_file.display()
    )
}

/// The daemon's view of service `name` (`floodgate baseline --json`).
#[must_use]
pub fn service(pins: &TempPins, name: &str) -> serde_json::Value {
    let reply = floodgate_json(pins, &["baseline", "--json"]);
    reply["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no service {name}: {reply}"))
        .clone()
}

/// Waits until service "site" has learned its baseline (at most three learning phases).
pub fn wait_learned(pins: &TempPins) {
    assert!(
        wait_until(Duration::from_secs(LEARNING_SECS * 3), || service(
            pins, "site"
        )["learned"]
            == true),
        "the baseline was not learned: {}",
        service(pins, "site")
    );
}

/// Blocked targets (exact and prefix entries), as networks.
#[must_use]
pub fn blocked_networks(pins: &TempPins) -> Vec<(IpAddr, u8)> {
    blocked_targets(pins)
        .iter()
        .map(|t| match t.split_once('/') {
            Some((ip, len)) => (ip.parse().expect("ip"), len.parse().expect("len")),
            None => {
                let ip: IpAddr = t.parse().expect("ip");
                (ip, if ip.is_ipv4() { 32 } else { 128 })
            }
        })
        .collect()
}

/// True when one of `blocks` covers `ip`.
#[must_use]
pub fn covered(blocks: &[(IpAddr, u8)], ip: IpAddr) -> bool {
    blocks.iter().any(|(net, len)| match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
            u32::from(*n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(*len)).unwrap_or(0);
            u128::from(*n) & mask == u128::from(a) & mask
        }
        _ => false,
    })
}

/// A group of sources sending one path at one rate.
pub struct Group {
    /// The sources.
    pub addrs: Vec<IpAddr>,
    /// Requests per second, each.
    pub rate: u32,
    /// The path they request.
    pub path: &'static str,
}

/// 198.18.`third`.i for i in `range`.
#[must_use]
pub fn v4(third: u8, range: std::ops::RangeInclusive<u8>) -> Vec<IpAddr> {
    range
        .map(|i| format!("198.18.{third}.{i}").parse().expect("v4"))
        .collect()
}

/// 2001:2:0:`net`::i for i in `range`.
#[must_use]
pub fn v6(net: u16, range: std::ops::RangeInclusive<u16>) -> Vec<IpAddr> {
    range
        .map(|i| format!("2001:2:0:{net:x}::{i:x}").parse().expect("v6"))
        .collect()
}

/// 50 legitimate clients at 1–3 requests/s on mixed paths; `base` picks their /24 and /64 so
/// that a flash crowd can add other ones.
#[must_use]
pub fn legit_groups(base: u8) -> Vec<Group> {
    let b = u16::from(base);
    vec![
        Group {
            addrs: v4(base, 1..=20),
            rate: 1,
            path: "/api/items?ms=1",
        },
        Group {
            addrs: v4(base, 21..=35),
            rate: 2,
            path: "/static/app.js",
        },
        Group {
            addrs: v4(base, 36..=40),
            rate: 3,
            path: "/",
        },
        Group {
            addrs: v6(b, 1..=10),
            rate: 2,
            path: "/api/items?ms=1",
        },
    ]
}

/// 300 bots at 15–25 requests/s each on the expensive path, 201 IPv4 and 99 IPv6.
#[must_use]
pub fn bot_groups() -> Vec<Group> {
    let mut groups = Vec::new();
    for (i, rate) in [15u32, 20, 25].into_iter().enumerate() {
        let i = i as u8;
        groups.push(Group {
            addrs: v4(4 + i, 1..=67),
            rate,
            path: EXPENSIVE,
        });
        groups.push(Group {
            addrs: v6(0x40 + u16::from(i), 1..=33),
            rate,
            path: EXPENSIVE,
        });
    }
    groups
}

/// Every address of `groups`.
#[must_use]
pub fn all_addrs(groups: &[Group]) -> Vec<IpAddr> {
    groups.iter().flat_map(|g| g.addrs.clone()).collect()
}

/// Runs every group with `loadgen` (the tests crate's tool; open loop: on schedule whatever
/// the answers) for `seconds` on scoped threads; returns once all have finished.
pub fn run_groups(tb: &Testbed, loadgen: &str, groups: &[Group], seconds: u32, stagger_ms: u32) {
    std::thread::scope(|scope| {
        for g in groups {
            for family in [true, false] {
                let addrs: Vec<String> = g
                    .addrs
                    .iter()
                    .filter(|a| a.is_ipv4() == family)
                    .map(ToString::to_string)
                    .collect();
                if addrs.is_empty() {
                    continue;
                }
                let dst = if family {
                    SocketAddr::new(SERVER_V4.into(), 80)
                } else {
                    SocketAddr::new(SERVER_V6.into(), 80)
                };
                scope.spawn(move || {
                    let out = tb
                        .client
                        .cmd(loadgen)
                        .arg(dst.to_string())
                        .arg(g.rate.to_string())
                        .arg(seconds.to_string())
                        .arg("1000")
                        .args(&addrs)
                        .env("LOADGEN_OPEN", "1")
                        .env("LOADGEN_PATH", g.path)
                        .env("LOADGEN_STAGGER_MS", stagger_ms.to_string())
                        .output()
                        .expect("run loadgen");
                    assert!(
                        out.status.success(),
                        "loadgen: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                });
            }
        }
    });
}

/// Latency probes: (seconds since `start`, answered, ms).
pub type Probes = Mutex<Vec<(f64, bool, f64)>>;

/// Probes from `addrs` (each at 4 requests/s, a new connection each, under every threshold)
/// until `stop`, at most 120 s after `start`.
pub fn probe(tb: &Testbed, addrs: &[IpAddr], start: Instant, stop: &AtomicBool, probes: &Probes) {
    std::thread::scope(|scope| {
        for src in addrs {
            scope.spawn(move || {
                tb.client.enter_current_thread();
                let dst = if src.is_ipv4() {
                    SocketAddr::new(SERVER_V4.into(), 80)
                } else {
                    SocketAddr::new(SERVER_V6.into(), 80)
                };
                let deadline = start + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let at = start.elapsed().as_secs_f64();
                    let r = timed_get(*src, dst, "/api/items?ms=1", Duration::from_secs(2));
                    probes
                        .lock()
                        .expect("probes")
                        .push((at, r.is_some(), r.unwrap_or(0.0)));
                    std::thread::sleep(Duration::from_millis(250));
                }
            });
        }
    });
}

/// The 99th percentile (nearest rank) of a non-empty list.
#[must_use]
pub fn p99(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() as f64 * 0.99).ceil() as usize).clamp(1, values.len()) - 1]
}

/// Seconds from `from` until the legitimate service is back: every probe from then until
/// `until` answered, and their p99 within `bound` ms. `None` if it never is.
#[must_use]
pub fn recovery(probes: &[(f64, bool, f64)], from: f64, until: f64, bound: f64) -> Option<f64> {
    let mut t = from;
    while t + 2.0 <= until {
        let after: Vec<_> = probes
            .iter()
            .filter(|(at, _, _)| *at >= t && *at < until)
            .collect();
        let mut ms: Vec<f64> = after.iter().map(|p| p.2).collect();
        if !after.is_empty() && after.iter().all(|p| p.1) && p99(&mut ms) <= bound {
            return Some(t - from);
        }
        t += 0.5;
    }
    None
}

/// The probes' sources: two IPv4 and two IPv6 addresses beside the legitimate clients.
#[must_use]
pub fn probe_addrs() -> Vec<IpAddr> {
    let mut addrs = v4(1, 201..=202);
    addrs.extend(v6(1, 0xc9..=0xca));
    addrs
}
