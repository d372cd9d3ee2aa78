//! The fleet against a real nats-server with JetStream: three edge hosts (each its own
//! namespaces, nginx, daemon, pins and XDP interface) and NATS in a namespace of its own. A
//! decision on one host (an operator's `--fleet` block, or a flood the host detects) in force
//! on the others, with the time from the decision to the others' maps measured; deletion,
//! expiry, garbage in the bucket, a NATS outage, a host started late, a credentials file
//! others can read, and a source spread across the hosts under each host's threshold.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use floodgate_tests::{
    fleet::{Fleet, Host, NATS_PASSWORD, NATS_USER, decision_json, key_of, write_private},
    floodgate_json, floodgate_ok,
    net::{SERVER_V4, SERVER_V6},
    unique, wait_until,
};

/// Every decision must reach the other hosts within this (the design target is 1 s; the
/// measured figures are printed).
const DEADLINE: Duration = Duration::from_secs(5);
/// The metrics port of the outage test's daemons.
const METRICS_PORT: u16 = 9479;
const BUCKET: &str = "floodgate-decisions";

/// Rules of these tests: the per-host flood rule at 100 requests/s; no aggregation.
const RULES: &str = "allow = [\"198.18.0.77\"]\n[aggregation]\nmin_addresses = 0\n\
    [[rules]]\nname = \"per-source-flood\"\nsensor = \"kernel\"\nthreshold_rps = 100.0\n\
    window = \"1s\"\nmin_samples = 8\nttl = \"10m\"\n";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn server_of(src: IpAddr) -> IpAddr {
    if src.is_ipv4() {
        SERVER_V4.into()
    } else {
        SERVER_V6.into()
    }
}

/// Waits until `host`'s block list does (or does not) hold `target`; the time it took.
fn wait_entry(host: &Host, target: &str, present: bool) -> Duration {
    let started = Instant::now();
    assert!(
        wait_until(DEADLINE, || host.entry(target).is_some() == present),
        "{target} {} {}'s block list within {DEADLINE:?}: {:?}\n{}",
        if present {
            "did not reach"
        } else {
            "did not leave"
        },
        host.name,
        host.blocks(),
        host.log()
    );
    started.elapsed()
}

/// Starts every host's daemon, waits until each has synced, blocks `target` on the first with
/// `--fleet` and returns how long it took to reach the second's map.
fn start_and_share(fleet: &mut Fleet, target: &str) -> Duration {
    for host in &mut fleet.hosts {
        host.start("");
    }
    for host in &fleet.hosts {
        wait_synced(host);
    }
    floodgate_ok(
        &fleet.hosts[0].pins,
        &["block", "add", target, "--ttl", "10m", "--fleet"],
    );
    wait_entry(&fleet.hosts[1], target, true)
}

fn wait_synced(host: &Host) {
    assert!(
        wait_until(Duration::from_secs(15), || {
            let s = host.fleet_status();
            s["up"] == true && s["last_sync_unix"].is_number()
        }),
        "{} never synced with NATS: {}\n{}",
        host.name,
        host.fleet_status(),
        host.log()
    );
}

/// The propagation figure the receiving daemon logged for `target` (ms from the origin's
/// decision to its own map write).
fn logged_propagation(host: &Host, target: &str) -> Option<f64> {
    let log = host.log();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("fleet: block {target} from")))?;
    line.rsplit("propagation=")
        .next()?
        .trim_end_matches("ms")
        .trim()
        .parse()
        .ok()
}

#[test]
fn decisions_propagate_are_enforced_and_lifted_and_garbage_is_refused() {
    let mut fleet = Fleet::new(3);
    let (blocked4, in_prefix6, bystander, flooders) = (
        ip("198.18.3.7"),
        ip("2001:2:0:3::5"),
        ip("198.18.0.10"),
        [ip("198.18.2.1"), ip("198.18.2.2")],
    );
    let mut nginx = Vec::new();
    for host in &mut fleet.hosts {
        host.tb.add_client_addrs(&[blocked4, in_prefix6, bystander]);
        nginx.push(host.tb.start_nginx());
        host.start(RULES);
    }
    fleet.hosts[0].tb.add_client_addrs(&flooders);
    for host in &fleet.hosts {
        wait_synced(host);
    }
    let [a, b, c] = &fleet.hosts[..] else {
        unreachable!()
    };

    // An operator's block on A, v4 address and v6 prefix: from the CLI returning on A to the
    // entry in B's and C's maps.
    let out = floodgate_ok(
        &a.pins,
        &[
            "block",
            "add",
            "198.18.3.7",
            "2001:2:0:3::/64",
            "--ttl",
            "10m",
            "--reason",
            "op-test",
            "--fleet",
        ],
    );
    assert!(out.contains("shared with the fleet"), "{out}");
    let started = Instant::now();
    let mut measured = Vec::new();
    for target in ["198.18.3.7", "2001:2:0:3::/64"] {
        for host in [b, c] {
            wait_entry(host, target, true);
            measured.push((format!("{target} on {}", host.name), started.elapsed()));
        }
    }
    for (what, took) in &measured {
        eprintln!(
            "fleet: operator block {what}: in the map {took:.0?} after `block add --fleet` on edge-a"
        );
    }
    let entry = b.entry("2001:2:0:3::/64").unwrap();
    assert_eq!(entry["kind"], "fleet", "{entry}");
    assert_eq!(entry["origin_host"], "edge-a", "{entry}");
    assert_eq!(entry["reason"], "op-test", "{entry}");
    let list = floodgate_ok(&b.pins, &["block", "list"]);
    assert!(list.contains("op-test (from edge-a)"), "{list}");
    // Real packets on B: dropped for the blocked address and prefix, served for a bystander.
    for src in [blocked4, in_prefix6] {
        assert_eq!(
            b.tb.get_timeout(src, server_of(src), Duration::from_millis(800)),
            0,
            "{src} must be dropped on edge-b"
        );
    }
    assert_eq!(b.tb.get(bystander, SERVER_V4.into()), 200);
    let why = floodgate_json(&c.pins, &["why", "198.18.3.7", "--json"]);
    assert_eq!(why["blocked"], true, "{why}");
    assert_eq!(why["detector"]["decision"]["origin"], "fleet", "{why}");
    assert_eq!(
        why["detector"]["decision"]["origin_host"], "edge-a",
        "{why}"
    );
    assert_eq!(why["block"]["origin_host"], "edge-a", "{why}");

    // A flood on A: A's detector blocks the flooders, B and C enforce A's decisions.
    a.tb.loadgen(env!("CARGO_BIN_EXE_loadgen"), &flooders, 400, 3);
    for src in flooders {
        let target = src.to_string();
        wait_entry(a, &target, true);
        assert_eq!(a.entry(&target).unwrap()["kind"], "rule");
        for host in [b, c] {
            wait_entry(host, &target, true);
            let logged = logged_propagation(host, &target).expect("a propagation log line");
            eprintln!(
                "fleet: flood decision {target} on edge-a in force on {} {logged:.1} ms after it was made",
                host.name
            );
            assert!(
                Duration::from_secs_f64(logged / 1000.0) <= DEADLINE,
                "{logged} ms on {}",
                host.name
            );
        }
    }

    // A deletion on B lifts A's decision everywhere, A's own entry included.
    floodgate_ok(&b.pins, &["block", "del", "198.18.3.7", "--fleet"]);
    let started = Instant::now();
    for host in [a, c] {
        wait_entry(host, "198.18.3.7", false);
    }
    eprintln!(
        "fleet: `block del --fleet` on edge-b: gone on edge-a and edge-c after {:.0?}",
        started.elapsed()
    );
    assert_eq!(b.tb.get(blocked4, SERVER_V4.into()), 200);
    assert!(
        c.entry("2001:2:0:3::/64").is_some(),
        "the other decision stays"
    );

    // Garbage in the bucket, as any peer with the credentials could write it: bad JSON, a /8,
    // an allow-listed address, a key naming another target. A good value after them proves
    // they were all read.
    let mut wire = fleet.wire(0);
    let subject = |target: &str| format!("$KV.{BUCKET}.{}", key_of(target));
    let long = Duration::from_secs(600);
    wire.publish(&subject("198.18.0.99"), b"{not json");
    wire.publish(
        &subject("198.0.0.0/8"),
        decision_json("198.0.0.0/8", "edge-x", long).as_bytes(),
    );
    wire.publish(
        &subject("198.18.0.77"),
        decision_json("198.18.0.77", "edge-x", long).as_bytes(),
    );
    wire.publish(
        &subject("198.18.0.96"),
        decision_json("198.18.0.97", "edge-x", long).as_bytes(),
    );
    wire.publish(
        &subject("198.18.0.98"),
        decision_json("198.18.0.98", "edge-x", long).as_bytes(),
    );
    for host in [a, b, c] {
        wait_entry(host, "198.18.0.98", true);
        for bad in [
            "198.18.0.99",
            "198.0.0.0/8",
            "198.18.0.77",
            "198.18.0.96",
            "198.18.0.97",
        ] {
            assert!(host.entry(bad).is_none(), "{bad} on {}", host.name);
        }
        let status = host.fleet_status();
        assert_eq!(status["remote_refused"], 4, "{}: {status}", host.name);
        let log = host.log();
        assert!(log.contains("refused a peer's decision"), "{log}");
        assert!(!log.contains("fleet-test-secret"), "a secret in the log");
    }
    for host in &mut fleet.hosts {
        let daemon = host.daemon.as_mut().unwrap();
        assert!(daemon.process.is_running(), "{}", daemon.process.log());
    }
    let worst = measured.iter().map(|(_, d)| *d).max().unwrap();
    eprintln!("fleet: operator block to the other hosts' maps, worst {worst:.0?}");
    drop(nginx);
}

#[test]
fn an_outage_a_late_host_and_expiry() {
    let mut fleet = Fleet::new(3);
    let extra = &format!("[metrics]\nlisten = \"127.0.0.1:{METRICS_PORT}\"\n");
    let kept = ip("198.18.4.1");
    fleet.hosts[1].tb.add_client_addrs(&[kept]);
    let _nginx = fleet.hosts[1].tb.start_nginx();
    fleet.hosts[0].start(extra);
    fleet.hosts[1].start(extra);
    wait_synced(&fleet.hosts[0]);
    wait_synced(&fleet.hosts[1]);
    for name in [
        "floodgate_fleet_configured",
        "floodgate_fleet_up",
        "floodgate_fleet_remote_applied_total",
        "floodgate_fleet_remote_refused_total",
        "floodgate_fleet_publish_failures_total",
        "floodgate_fleet_last_sync_timestamp_seconds",
    ] {
        assert!(
            fleet.hosts[1].tb.metric(METRICS_PORT, name).is_some(),
            "{name} is not exported"
        );
    }
    assert_eq!(
        fleet.hosts[1].tb.metric(METRICS_PORT, "floodgate_fleet_up"),
        Some(1.0)
    );
    floodgate_ok(
        &fleet.hosts[0].pins,
        &["block", "add", "198.18.4.1", "--ttl", "10m", "--fleet"],
    );
    wait_entry(&fleet.hosts[1], "198.18.4.1", true);

    // NATS goes away: both hosts say so and keep enforcing.
    fleet.nats.kill();
    for host in &fleet.hosts[..2] {
        assert!(
            wait_until(DEADLINE, || host.fleet_status()["up"] == false),
            "{} still up: {}",
            host.name,
            host.fleet_status()
        );
    }
    assert_eq!(
        fleet.hosts[1].tb.metric(METRICS_PORT, "floodgate_fleet_up"),
        Some(0.0)
    );
    assert_eq!(
        fleet.hosts[1]
            .tb
            .get_timeout(kept, SERVER_V4.into(), Duration::from_millis(800)),
        0,
        "enforcement goes on while NATS is down"
    );
    // A decision made during the outage is queued and published after the restart.
    let out = floodgate_ok(
        &fleet.hosts[0].pins,
        &[
            "block",
            "add",
            "198.18.4.2",
            "2001:2:0:4::/64",
            "--ttl",
            "10m",
            "--fleet",
        ],
    );
    assert!(out.contains("queued for the fleet"), "{out}");
    assert!(
        wait_until(DEADLINE, || {
            fleet.hosts[0].fleet_status()["publish_failures"]
                .as_u64()
                .is_some_and(|n| n >= 2)
        }),
        "the queued decisions are counted as publish failures: {}",
        fleet.hosts[0].fleet_status()
    );
    assert!(fleet.hosts[1].entry("198.18.4.2").is_none());
    // A host started while NATS is down starts all the same, and says why it is not connected.
    fleet.hosts[2].start(extra);
    assert!(
        wait_until(DEADLINE, || fleet.hosts[2].fleet_status()["last_error"]
            .is_string()),
        "{}",
        fleet.hosts[2].fleet_status()
    );
    assert_eq!(fleet.hosts[2].fleet_status()["up"], false);
    fleet.nats.restart();
    let back = Instant::now();
    wait_entry(&fleet.hosts[1], "198.18.4.2", true);
    wait_entry(&fleet.hosts[1], "2001:2:0:4::/64", true);
    eprintln!(
        "fleet: a decision made during the outage reached edge-b {:.1?} after nats-server was back",
        back.elapsed()
    );
    wait_synced(&fleet.hosts[1]);
    assert!(
        fleet.hosts[1]
            .tb
            .metric(METRICS_PORT, "floodgate_fleet_last_sync_timestamp_seconds")
            .unwrap()
            > 1e9
    );
    assert!(
        fleet.hosts[1]
            .tb
            .metric(METRICS_PORT, "floodgate_fleet_remote_applied_total")
            .unwrap()
            >= 3.0
    );

    // The host started during the outage gets every decision in force once NATS is back.
    wait_synced(&fleet.hosts[2]);
    for target in ["198.18.4.1", "198.18.4.2", "2001:2:0:4::/64"] {
        wait_entry(&fleet.hosts[2], target, true);
    }

    // Expiry: a 3 s decision expires everywhere at the expiry its value carries.
    floodgate_ok(
        &fleet.hosts[0].pins,
        &["block", "add", "198.18.4.3", "--ttl", "3s", "--fleet"],
    );
    let made = Instant::now();
    for host in &fleet.hosts[1..] {
        wait_entry(host, "198.18.4.3", true);
    }
    for host in &fleet.hosts {
        assert!(
            wait_until(Duration::from_secs(10), || host
                .entry("198.18.4.3")
                .is_none_or(|e| e["expired"] == true)),
            "198.18.4.3 did not expire on {}: {:?}",
            host.name,
            host.entry("198.18.4.3")
        );
        let gone_after = made.elapsed();
        assert!(
            gone_after >= Duration::from_millis(2500),
            "expired early on {}",
            host.name
        );
        eprintln!(
            "fleet: 3 s decision expired on {} after {gone_after:.1?}",
            host.name
        );
    }
    assert!(
        fleet.hosts[2].entry("198.18.4.1").is_some(),
        "the others stay"
    );
}

#[test]
fn a_credentials_file_others_can_read_is_refused() {
    let fleet = Fleet::new(1);
    let host = &fleet.hosts[0];
    let dir = std::env::temp_dir().join(unique("fg-fleet-insecure-"));
    std::fs::create_dir_all(&dir).unwrap();
    let pass = dir.join("pass");
    write_private(&pass, "leaky-password-0815");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let config = dir.join("floodgate.toml");
    std::fs::write(
        &config,
        format!(
            "[fleet]\nenabled = true\nservers = [\"nats://198.19.1.1:4222\"]\nhost = \"edge-a\"\n\
             user = \"floodgate\"\npassword_file = \"{}\"\n[metrics]\nlisten = \"off\"\n",
            pass.display()
        ),
    )
    .unwrap();
    let out = host
        .tb
        .server
        .cmd(floodgate_tests::floodgate_bin().to_str().unwrap())
        .args(["run", "--iface", &host.tb.server_if, "--config"])
        .arg(&config)
        .arg("--control-socket")
        .arg(host.pins.control_socket())
        .env("FLOODGATE_PIN_ROOT", host.pins.root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started with a 0644 password file: {stderr}"
    );
    assert!(stderr.contains("refusing a credentials file"), "{stderr}");
    assert!(
        !stderr.contains("leaky-password"),
        "the password leaked: {stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A per-host rule at 100 requests/s and a fleet rule at 150 over the hosts' sum.
const FLEET_RULES: &str = "[aggregation]\nmin_addresses = 0\n\
    [[rules]]\nname = \"per-source-flood\"\nsensor = \"kernel\"\nthreshold_rps = 100.0\n\
    window = \"1s\"\nmin_samples = 8\nttl = \"10m\"\n\
    [[rules]]\nname = \"fleet-flood\"\nsensor = \"kernel\"\nscope = \"fleet\"\n\
    threshold_rps = 150.0\nwindow = \"2s\"\nmin_samples = 8\nttl = \"10m\"\n";

#[test]
fn a_source_spread_over_the_hosts_is_caught_by_the_fleet_rule() {
    let mut fleet = Fleet::new(3);
    let (spread, person) = (ip("198.18.2.50"), ip("198.18.0.10"));
    let mut nginx = Vec::new();
    for host in &mut fleet.hosts {
        host.tb.add_client_addrs(&[spread, person]);
        nginx.push(host.tb.start_nginx());
        host.start(FLEET_RULES);
    }
    for host in &fleet.hosts {
        wait_synced(host);
    }
    // 60 requests/s from one source on each of the three hosts (180 in all) for 6 s, and a
    // person at 4 requests/s on each.
    let started = Instant::now();
    let mut caught = Vec::new();
    let mut person_failed = 0;
    std::thread::scope(|scope| {
        for host in &fleet.hosts {
            scope.spawn(move || {
                host.tb
                    .loadgen(env!("CARGO_BIN_EXE_loadgen"), &[spread], 60, 6)
            });
        }
        let people = scope.spawn(|| {
            let mut failed = 0;
            while started.elapsed() < Duration::from_secs(6) {
                for host in &fleet.hosts {
                    if host.tb.get(person, SERVER_V4.into()) != 200 {
                        failed += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            failed
        });
        for host in &fleet.hosts {
            assert!(
                wait_until(Duration::from_secs(10), || host
                    .entry("198.18.2.50")
                    .is_some()),
                "the spread source was not blocked on {}: {:?}\n{}",
                host.name,
                host.blocks(),
                host.log()
            );
            caught.push((host.name.clone(), started.elapsed()));
        }
        person_failed = people.join().unwrap();
    });
    for (name, took) in &caught {
        eprintln!("fleet rule: 3 x 60 requests/s caught on {name} {took:.1?} after the load began");
    }
    for host in &fleet.hosts {
        let entry = host.entry("198.18.2.50").unwrap();
        assert_eq!(entry["reason"], "fleet-flood", "{}: {entry}", host.name);
        assert!(
            host.entry("198.18.0.10").is_none(),
            "the person was blocked on {}",
            host.name
        );
        assert!(
            !host.log().contains("rule=per-source-flood"),
            "the per-host rule fired on {}",
            host.name
        );
        assert_eq!(host.tb.get(person, SERVER_V4.into()), 200);
    }
    assert_eq!(
        person_failed, 0,
        "the person's requests failed during the flood"
    );
    drop(nginx);
}

#[test]
fn the_fleet_works_over_tls_with_a_private_ca() {
    let mut fleet = Fleet::with_tls(2);
    let took = start_and_share(&mut fleet, "2001:2:0:6::/64");
    eprintln!("fleet over TLS: edge-a's block in edge-b's map after {took:.0?}");
    assert!(
        fleet
            .nats
            .log()
            .contains("TLS required for client connections"),
        "the server did not require TLS:\n{}",
        fleet.nats.log()
    );
}

#[test]
fn nkey_and_token_authentication_against_a_real_server() {
    let mut fleet = Fleet::new(2);
    // One server with a password user and an nkey user: edge-a signs in with the nkey.
    let user = nkeys::KeyPair::new_user();
    fleet.nats.authorization = format!(
        "authorization {{ users: [ {{ user: {NATS_USER}, password: \"{NATS_PASSWORD}\" }}, \
         {{ nkey: {} }} ] }}",
        user.public_key()
    );
    fleet.nats.restart();
    let seed = fleet.hosts[0].secrets.join("nkey.seed");
    write_private(&seed, &user.seed().expect("seed"));
    fleet.hosts[0].auth = format!("nkey_seed_file = \"{}\"", seed.display());
    let took = start_and_share(&mut fleet, "198.18.7.7");
    eprintln!("fleet with an nkey: edge-a's block in edge-b's map after {took:.0?}");

    // The same server taking a token only: edge-a has it, edge-b a wrong one.
    for host in &mut fleet.hosts {
        host.daemon = None;
    }
    fleet.nats.authorization = "authorization { token: \"fleet-token-2718\" }".into();
    fleet.nats.restart();
    for (host, token) in fleet
        .hosts
        .iter_mut()
        .zip(["fleet-token-2718", "wrong-token"])
    {
        let file = host.secrets.join("token");
        write_private(&file, token);
        host.auth = format!("token_file = \"{}\"", file.display());
        host.start("");
    }
    wait_synced(&fleet.hosts[0]);
    let b = &fleet.hosts[1];
    assert!(
        wait_until(DEADLINE, || b.fleet_status()["last_error"]
            .as_str()
            .is_some_and(|e| e.to_lowercase().contains("authorization"))),
        "edge-b with a wrong token does not say why it is not connected: {}",
        b.fleet_status()
    );
    assert!(b.fleet_status()["up"] == false, "{}", b.fleet_status());
    assert!(
        !b.log().contains("wrong-token") && !fleet.hosts[0].log().contains("fleet-token-2718"),
        "a token leaked into a log"
    );
    floodgate_ok(
        &fleet.hosts[0].pins,
        &["block", "add", "198.18.7.8", "--ttl", "10m", "--fleet"],
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        b.entry("198.18.7.8").is_none(),
        "a host the server refused got a decision"
    );
}
