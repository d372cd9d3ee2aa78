//! The monitoring shipped in packaging/: the Prometheus alert rules pass `promtool check rules`
//! and their unit tests (`promtool test rules`); a real daemon scraped right after start,
//! before any traffic, passes `promtool check metrics` and already exports every series the
//! rules and every dashboard panel use, its counters at 0 (so "none yet" is not "missing").

use std::{
    collections::BTreeSet,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use filter_user::config::{Action, Settings};
use floodgate_tests::net::{Testbed, test_config};

/// Series the rules or the dashboard use that come with later work, so an idle daemon of this
/// build does not export them yet. The CrowdSec bouncer (being written) exports both, always.
const EXPECTED_LATER: [&str; 2] = ["floodgate_crowdsec_configured", "floodgate_crowdsec_up"];

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging")
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(packaging())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "promtool not found ({e}): install Debian's prometheus package (cargo xtask setup)"
            )
        });
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input
            .write_all(text.as_bytes())
            .expect("write promtool stdin");
    }
    drop(input);
    let out = child.wait_with_output().expect("wait promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Metric names (`floodgate_…`) in a PromQL expression.
fn names_in(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("floodgate_"))
        .map(str::to_owned)
        .collect()
}

/// Every metric name the alert rules and the dashboard's panels use.
fn used_names() -> BTreeSet<String> {
    let rules = std::fs::read_to_string(packaging().join("prometheus-alerts.yml")).unwrap();
    let mut names: BTreeSet<String> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .flat_map(names_in)
        .collect();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(packaging().join("grafana-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    for panel in panels {
        let targets = panel["targets"]
            .as_array()
            .expect("every panel has targets");
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().expect("every target has an expr");
            names.extend(names_in(expr));
        }
    }
    names
}

/// Sample lines of a scrape: (name, labels, value).
fn samples(scrape: &str) -> Vec<(String, String, f64)> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            Some((name.to_owned(), labels.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[test]
fn alert_rules_check_and_pass_their_unit_tests() {
    let (ok, out) = promtool(&["check", "rules", "prometheus-alerts.yml"], None);
    assert!(ok, "promtool check rules: {out}");
    let (ok, out) = promtool(&["test", "rules", "prometheus-alerts.test.yml"], None);
    assert!(ok, "promtool test rules: {out}");
}

#[test]
fn an_idle_daemon_exports_every_series_in_use_at_zero() {
    let tb = Testbed::new();
    let pins = floodgate_tests::TempPins::new();
    let port = 9481;
    let config = test_config("").replace(
        "[metrics]\nlisten = \"off\"",
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\""),
    );
    assert!(config.contains(&port.to_string()), "{config}");
    let _daemon = tb.start_daemon(&pins, &config);
    // Right after "ready", before any traffic.
    let out = tb
        .server
        .cmd("curl")
        .args([
            "-sf",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{port}/metrics"),
        ])
        .output()
        .expect("curl");
    assert!(out.status.success(), "scrape failed");
    let scrape = String::from_utf8(out.stdout).expect("UTF-8 scrape");

    let (ok, lint) = promtool(&["check", "metrics"], Some(&scrape));
    assert!(
        ok && lint.trim().is_empty(),
        "promtool check metrics:\n{lint}"
    );

    let samples = samples(&scrape);
    let present: BTreeSet<&str> = samples.iter().map(|(n, _, _)| n.as_str()).collect();
    let missing: Vec<String> = used_names()
        .into_iter()
        .filter(|n| !present.contains(n.as_str()) && !EXPECTED_LATER.contains(&n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "not in the scrape: {missing:?}\n{scrape}"
    );

    let value = |name: &str, labels: &str| {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l.contains(labels))
            .map(|(_, _, v)| *v)
            .unwrap_or_else(|| panic!("{name}{{{labels}}} not in the scrape:\n{scrape}"))
    };
    let settings = Settings::default();
    assert!(!settings.rules.is_empty());
    for rule in &settings.rules {
        let action = if rule.action == Action::Block {
            "block"
        } else {
            "monitor"
        };
        let labels = format!("rule=\"{}\"", rule.name);
        let found = samples.iter().any(|(n, l, v)| {
            n == "floodgate_decisions_total"
                && l.contains(&labels)
                && l.contains(&format!("action=\"{action}\""))
                && *v == 0.0
        });
        assert!(
            found,
            "decisions of rule {} ({action}) at 0:\n{scrape}",
            rule.name
        );
    }
    for reason in ["allow_listed", "too_wide", "collateral"] {
        let labels = format!("reason=\"{reason}\"");
        assert_eq!(value("floodgate_decisions_refused_total", &labels), 0.0);
    }
    for name in [
        "floodgate_block_evictions_total",
        "floodgate_decision_write_failures_total",
        "floodgate_expired_blocks_total",
        "floodgate_detection_latency_seconds_count",
    ] {
        assert_eq!(value(name, ""), 0.0, "{name}");
    }
    assert_eq!(value("floodgate_samples_total", "fate=\"lost\""), 0.0);
    assert_eq!(
        value("floodgate_block_capacity", "kind=\"exact\""),
        f64::from(filter_common::capacity::BLOCK_EXACT)
    );
    assert_eq!(value("floodgate_active_blocks", "kind=\"exact\""), 0.0);
    assert_eq!(value("floodgate_interface_attached", "interface="), 1.0);
}
