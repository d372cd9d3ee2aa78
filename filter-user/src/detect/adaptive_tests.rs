//! Unit tests of the adaptive detector: learning, a flash crowd, a botnet, a restart.

use super::*;
use crate::{config, detect::Detector, sensor::Sensor};

const S: u64 = 1_000_000_000;

fn event(src: IpAddr, time_ns: u64, path: &str) -> RequestEvent<'_> {
    RequestEvent {
        src,
        time_ns,
        weight: 1,
        method: "GET",
        path,
        host: Some("shop"),
        user_agent: None,
        sensor: Sensor::Kernel,
        signal: Signal::Requests,
        status: None,
        upstream_secs: None,
        protocol: None,
    }
}

/// Runs `seconds` of traffic: each (address, requests/s) sends evenly; returns the
/// adaptive decisions and whether the service was ever under attack.
fn run(
    d: &mut Detector,
    from: u64,
    seconds: u64,
    sources: &[(IpAddr, u64)],
) -> (Vec<Decision>, bool) {
    let on_one_path: Vec<(IpAddr, u64, &str)> = sources
        .iter()
        .map(|(ip, r)| (*ip, *r, "/api/search"))
        .collect();
    run_paths(d, from, seconds, &on_one_path)
}

/// [`run`], each source on its own path.
fn run_paths(
    d: &mut Detector,
    from: u64,
    seconds: u64,
    sources: &[(IpAddr, u64, &str)],
) -> (Vec<Decision>, bool) {
    let (mut decided, mut attacked) = (Vec::new(), false);
    for second in from..from + seconds {
        let mut events: Vec<(u64, IpAddr, &str)> = Vec::new();
        for (n, (ip, rps, path)) in sources.iter().enumerate() {
            for i in 0..*rps {
                // Spread within the second, offset per source.
                let at = (i * S / rps + n as u64 * 7_919) % S;
                events.push((second * S + at, *ip, path));
            }
        }
        events.sort();
        for (t, ip, path) in events {
            let _ = d.observe(&event(ip, t, path));
        }
        d.tick((second + 1) * S, Duration::from_secs(1));
        let (decisions, _) = d.adaptive_tick((second + 1) * S, Duration::from_secs(1));
        decided.extend(decisions);
        attacked |= d.adaptive_views()[0].attack.is_some();
    }
    (decided, attacked)
}

/// The addresses the adaptive rule decided.
fn adaptive_blocks(decided: &[Decision]) -> Vec<IpAddr> {
    decided
        .iter()
        .filter(|x| x.rule == ADAPTIVE_RULE)
        .map(|x| x.target.ip)
        .collect()
}

fn detector() -> Detector {
    detector_with("")
}

/// The test detector with more `[adaptive]` settings.
fn detector_with(adaptive: &str) -> Detector {
    let text = format!(
        "rules = []\n[adaptive]\nenabled = true\nperiod = \"60s\"\nlearning = \"20s\"\n\
         state_file = \"\"\ncalm = \"3s\"\n{adaptive}"
    );
    Detector::new(&config::parse(&text, "t").unwrap())
}

fn addrs(prefix: &str, n: u32) -> Vec<IpAddr> {
    (1..=n)
        .map(|i| {
            format!("{prefix}{}.{}", i / 250, i % 250 + 1)
                .parse()
                .unwrap()
        })
        .collect()
}

#[test]
fn bots_under_the_rules_are_blocked_and_a_flash_crowd_is_not() {
    let legit: Vec<(IpAddr, u64)> = addrs("198.18.1", 50)
        .into_iter()
        .enumerate()
        .map(|(i, ip)| (ip, 1 + i as u64 % 3))
        .collect();
    let mut d = detector();
    let (decided, attacked) = run(&mut d, 1, 30, &legit);
    assert!(decided.is_empty() && !attacked, "learning: {decided:?}");
    let view = &d.adaptive_views()[0];
    assert!(view.learned, "{view:?}");
    assert!(view.threshold_rps.unwrap() >= 10.0, "the floor: {view:?}");

    // A flash crowd: five times the clients, each at 1..3 requests/s.
    let crowd: Vec<(IpAddr, u64)> = addrs("198.18.2", 250)
        .into_iter()
        .enumerate()
        .map(|(i, ip)| (ip, 1 + i as u64 % 3))
        .collect();
    let (decided, attacked) = run(&mut d, 31, 10, &crowd);
    assert!(attacked, "five times the baseline is an attack");
    assert!(decided.is_empty(), "nobody above the floor: {decided:?}");
    run(&mut d, 41, 10, &legit);
    assert!(d.adaptive_views()[0].attack.is_none(), "calm again");

    // 300 bots at 15..25 requests/s among the legitimate clients.
    let bots: Vec<(IpAddr, u64)> = addrs("198.18.8", 200)
        .into_iter()
        .chain((1..=100u32).map(|i| format!("2001:2:0:9::{i:x}").parse().unwrap()))
        .enumerate()
        .map(|(i, ip)| (ip, 15 + i as u64 % 11))
        .collect();
    let mut all = legit.clone();
    all.extend(&bots);
    let (decided, attacked) = run(&mut d, 51, 5, &all);
    assert!(attacked);
    let blocked = adaptive_blocks(&decided);
    assert!(
        legit.iter().all(|(ip, _)| !blocked.contains(ip)),
        "no legitimate client"
    );
    assert_eq!(blocked.len(), bots.len(), "every bot");
    assert!(
        decided
            .iter()
            .all(|x| x.threshold >= 10.0 && x.rate > x.threshold)
    );
    let why = d
        .adaptive_why(bots[0].0)
        .expect("the numbers behind the decision");
    assert_eq!(why.service, "all");
    assert!(
        why.service_rps > why.target_rps && why.quantile.1 <= 4.0,
        "{why:?}"
    );
    assert!(d.adaptive_why(legit[0].0).is_none());
    // The IPv6 bots share one /64: once 16 of them are blocked, the /64 is (aggregation).
    assert!(
        decided
            .iter()
            .any(|x| x.origin == Origin::Aggregate && x.target.to_string() == "2001:2:0:9::/64"),
        "the /64 is aggregated"
    );
}

#[test]
fn the_baseline_survives_a_restart_during_an_attack() {
    let dir = std::env::temp_dir().join(format!("fg-adaptive-{}", std::process::id()));
    let file = dir.join("baseline.json");
    let text = format!(
        "rules = []\n[adaptive]\nenabled = true\nperiod = \"60s\"\nlearning = \"20s\"\n\
         state_file = \"{}\"\n",
        file.display()
    );
    let settings = config::parse(&text, "t").unwrap();
    let legit: Vec<(IpAddr, u64)> = addrs("198.18.1", 50)
        .into_iter()
        .map(|ip| (ip, 2))
        .collect();
    let mut d = Detector::new(&settings);
    run(&mut d, 1, 30, &legit);
    let bots: Vec<(IpAddr, u64)> = addrs("198.18.8", 300)
        .into_iter()
        .map(|ip| (ip, 20))
        .collect();
    let mut all = legit.clone();
    all.extend(&bots);
    let (_, attacked) = run(&mut d, 31, 3, &all);
    assert!(attacked);
    d.adaptive().save(0).unwrap();
    // A new daemon during the attack: it knows the attack is one.
    let mut d = Detector::new(&settings);
    assert_eq!(d.load_baselines().unwrap(), 1);
    let rps = d.adaptive_views()[0].baseline_rps.unwrap();
    assert!((90.0..=110.0).contains(&rps), "{rps}");
    let (decided, attacked) = run(&mut d, 100, 3, &all);
    assert!(attacked && !decided.is_empty());
    // A corrupt file is refused, not learned from.
    std::fs::write(&file, b"{\"format\":\"floodgate-baseline\",\"version\":1,").unwrap();
    let mut d = Detector::new(&settings);
    assert!(d.load_baselines().is_err());
    assert_eq!(d.adaptive_views()[0].baseline_rps, None);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn senders_of_an_attack_fingerprint_are_held_to_a_lower_threshold() {
    let legit: Vec<(IpAddr, u64, &str)> = addrs("198.18.1", 50)
        .into_iter()
        .enumerate()
        .map(|(i, ip)| (ip, 1 + i as u64 % 3, "/api/search?q=1"))
        .collect();
    // 200 bots at 7 requests/s each, under the floor (10), on a path of their own.
    let bots: Vec<(IpAddr, u64, &str)> = addrs("198.18.8", 200)
        .into_iter()
        .map(|ip| (ip, 7, "/api/export/12345"))
        .collect();
    let mut all = legit.clone();
    all.extend(&bots);
    for fingerprints in [true, false] {
        let mut d = detector_with(&format!("fingerprints = {fingerprints}\n"));
        run_paths(&mut d, 1, 30, &legit);
        let view = &d.adaptive_views()[0];
        if fingerprints {
            assert_eq!(view.fingerprints_learned, 1, "{view:?}");
            let (lower, threshold) = (
                view.fingerprint_threshold_rps.unwrap(),
                view.threshold_rps.unwrap(),
            );
            assert!(
                lower == threshold / 2.0 && lower < 7.0 && threshold > 7.0,
                "{view:?}"
            );
        }

        // A flash crowd with a fingerprint of its own, nobody above the lower threshold.
        let crowd: Vec<(IpAddr, u64, &str)> = addrs("198.18.2", 250)
            .into_iter()
            .enumerate()
            .map(|(i, ip)| (ip, 1 + i as u64 % 3, "/news/2026/today"))
            .collect();
        let (decided, attacked) = run_paths(&mut d, 31, 5, &crowd);
        assert!(attacked && decided.is_empty(), "{decided:?}");
        run_paths(&mut d, 36, 10, &legit);
        assert!(d.adaptive_views()[0].attack.is_none(), "calm again");

        let (decided, attacked) = run_paths(&mut d, 46, 5, &all);
        assert!(attacked);
        let blocked = adaptive_blocks(&decided);
        assert!(legit.iter().all(|(ip, _, _)| !blocked.contains(ip)));
        if !fingerprints {
            assert!(blocked.is_empty(), "under the floor: {blocked:?}");
            continue;
        }
        assert!(
            blocked.len() * 100 >= bots.len() * 95,
            "{} bots",
            blocked.len()
        );
        let why = d.adaptive_why(bots[0].0).expect("why");
        let f = why.fingerprint.clone().expect("the fingerprint");
        assert!(
            f.attack && f.baseline_share == 0.0 && f.share > 0.8,
            "{f:?}"
        );
        assert_eq!(f.label, "GET /api/export/* \"\"");
        assert!(why.threshold_rps < 7.0, "the lower threshold: {why:?}");
        let shown = &d.adaptive_views()[0].fingerprints;
        assert!(shown.iter().any(|v| v.attack && v.id == f.id), "{shown:?}");
    }
}

#[test]
fn sources_above_the_threshold_are_not_learned_from() {
    let legit: Vec<(IpAddr, u64)> = addrs("198.18.1", 50)
        .into_iter()
        .map(|ip| (ip, 2))
        .collect();
    let mut d = detector();
    run(&mut d, 1, 30, &legit);
    let before = d.adaptive_views()[0].threshold_rps.unwrap();
    // The first step of a slow ramp: 5 sources at 30 requests/s, the service still under its
    // attack level (3 × the baseline), so the seconds are learned.
    let mut ramp = legit.clone();
    ramp.extend(addrs("198.18.8", 5).into_iter().map(|ip| (ip, 30)));
    let (_, attacked) = run(&mut d, 31, 20, &ramp);
    assert!(!attacked);
    let after = d.adaptive_views()[0].threshold_rps.unwrap();
    assert!(after < 30.0 && after <= before * 1.2, "{before} -> {after}");
}
