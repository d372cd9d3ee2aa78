//! `floodgate block import` and `export` on real pinned maps: real-world list formats, bad and
//! refused lines named by number with nothing written, `--skip-invalid`, `--dry-run`, the
//! export → import round trip, and real packets from imported sources dropped at XDP.

use std::{
    io::Write as _,
    net::IpAddr,
    path::PathBuf,
    process::{Command, Output, Stdio},
    time::Duration,
};

use floodgate_tests::{
    TempPins, blocked_targets, floodgate, floodgate_json, floodgate_ok,
    kernel::LoadedFilter,
    net::{SERVER_V4, SERVER_V6, Testbed, test_config},
    unique,
};

/// A directory for the test's lists and configuration, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("fg-blocklist-"));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        // The built-in defaults (guard: nothing wider than /16 or /48), whatever /etc holds.
        let config = dir.join("floodgate.toml");
        std::fs::write(&config, "").expect("write config");
        std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod config");
        Self(dir)
    }

    fn config(&self) -> String {
        self.0.join("floodgate.toml").display().to_string()
    }

    fn list(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write list");
        path.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn import(pins: &TempPins, scratch: &Scratch, list: &str, extra: &[&str]) -> Output {
    let config = scratch.config();
    let mut args = vec!["block", "import", list, "--config", &config];
    args.extend_from_slice(extra);
    floodgate(pins, &args)
}

fn import_stdin(pins: &TempPins, scratch: &Scratch, text: &str) -> Output {
    let mut child = Command::new(floodgate_tests::floodgate_bin())
        .args(["block", "import", "-", "--config", &scratch.config()])
        .env("FLOODGATE_PIN_ROOT", pins.root())
        .env("FLOODGATE_CONTROL_SOCKET", pins.control_socket())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run floodgate");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait floodgate")
}

fn sorted_targets(pins: &TempPins) -> Vec<String> {
    let mut targets = blocked_targets(pins);
    targets.sort();
    targets
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const FEED: &str = "\
#\r
# firehol-style header\r
#\r
198.18.10.0/24\r
198.18.0.7\r
2001:2:0:5::/64 ; SBL123456\r
\r
2001:2::77\tseen twice\r
198.18.0.7\r
::ffff:198.18.0.8\r
";

#[test]
fn import_checks_every_line_then_writes_and_round_trips() {
    let f = LoadedFilter::load();
    let pins = &f.pins;
    let scratch = Scratch::new();
    let want = [
        "198.18.0.7",
        "198.18.0.8",
        "198.18.10.0/24",
        "2001:2:0:5::/64",
        "2001:2::77",
    ];

    // A bad line anywhere: named with its number, nothing written, exit 2.
    let bad = scratch.list("bad.txt", &format!("{FEED}not-an-address\n198.18.1.7/24\n"));
    let out = import(pins, &scratch, &bad, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("line 11: 'not-an-address'"), "{err}");
    assert!(
        err.contains("line 12: '198.18.1.7/24' has host bits set; did you mean 198.18.1.0/24?"),
        "{err}"
    );
    assert!(err.contains("nothing written"), "{err}");
    assert!(blocked_targets(pins).is_empty(), "nothing written");

    // The guard: an allow-listed address and an over-wide prefix are refused by line.
    floodgate_ok(pins, &["allow", "add", "198.18.0.8"]);
    let out = import(
        pins,
        &scratch,
        &scratch.list("wide.txt", "198.0.0.0/8\n"),
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("line 1: 198.0.0.0/8 refused: prefix /8 is wider than the limit /16"),
        "{}",
        stderr(&out)
    );
    let feed = scratch.list("feed.txt", FEED);
    let out = import(pins, &scratch, &feed, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("line 10: 198.18.0.8 refused: on the allow list"),
        "{}",
        stderr(&out)
    );
    assert!(blocked_targets(pins).is_empty(), "nothing written");

    // --dry-run reports and writes nothing.
    let out = import(pins, &scratch, &feed, &["--dry-run", "--skip-invalid"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("would import 4 entries"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(blocked_targets(pins).is_empty(), "a dry run writes nothing");

    // --skip-invalid imports the others.
    let out = import(
        pins,
        &scratch,
        &feed,
        &["--skip-invalid", "--ttl", "1h", "--reason", "feed"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("line 10"), "still reported");
    floodgate_ok(pins, &["allow", "del", "198.18.0.8"]);
    let out = import(pins, &scratch, &feed, &["--ttl", "1h", "--reason", "feed"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sorted_targets(pins), want);
    let list = floodgate_json(pins, &["block", "list", "--json"]);
    for entry in list.as_array().unwrap() {
        assert_eq!(entry["reason"], "feed", "{entry}");
        assert_eq!(entry["kind"], "manual", "{entry}");
        let ttl = entry["ttl_remaining_secs"].as_u64().unwrap();
        assert!((3500..=3600).contains(&ttl), "{entry}");
    }

    // Export → flush → import from stdin restores targets, reasons and TTLs.
    floodgate_ok(
        pins,
        &["block", "add", "2001:2::99", "--reason", "by hand; forever"],
    );
    let before = floodgate_json(pins, &["block", "list", "--json"]);
    let exported = floodgate_ok(pins, &["block", "export"]);
    assert_eq!(exported.lines().count(), 1 + want.len() + 1, "{exported}");
    let json = floodgate_json(pins, &["block", "export", "--json"]);
    assert_eq!(json.as_array().unwrap().len(), want.len() + 1);
    floodgate_ok(pins, &["block", "flush"]);
    assert!(blocked_targets(pins).is_empty());
    let out = import_stdin(pins, &scratch, &exported);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = floodgate_json(pins, &["block", "list", "--json"]);
    let by_target = |list: &serde_json::Value| {
        let mut rows: Vec<(String, String, Option<u64>)> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["target"].as_str().unwrap().to_owned(),
                    b["reason"].as_str().unwrap().to_owned(),
                    b["ttl_remaining_secs"].as_u64(),
                )
            })
            .collect();
        rows.sort();
        rows
    };
    let (before, after) = (by_target(&before), by_target(&after));
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!((&b.0, &b.1), (&a.0, &a.1), "target and reason survive");
        match (b.2, a.2) {
            (None, None) => {}
            (Some(b), Some(a)) => assert!(a <= b && b - a <= 30, "ttl {b} → {a}"),
            other => panic!("ttl changed kind: {other:?}"),
        }
    }
}

#[test]
fn imported_sources_are_dropped() {
    let tb = Testbed::new();
    let ip = |t: &str| t.parse::<IpAddr>().unwrap();
    let (good4, bad4, good6, bad6) = (
        ip("198.18.0.10"),
        ip("198.18.0.20"),
        ip("2001:2::10"),
        ip("2001:2:0:7::20"),
    );
    tb.add_client_addrs(&[good4, bad4, good6, bad6]);
    let _nginx = tb.start_nginx();
    let pins = TempPins::new();
    let daemon = tb.start_daemon(&pins, &test_config(""));
    let (s4, s6): (IpAddr, IpAddr) = (SERVER_V4.into(), SERVER_V6.into());
    for (src, dst) in [(good4, s4), (bad4, s4), (good6, s6), (bad6, s6)] {
        assert_eq!(tb.get(src, dst), 200, "{src} before the import");
    }
    let scratch = Scratch::new();
    let list = scratch.list(
        "drop.txt",
        "; Spamhaus DROP style\n198.18.0.20 ; SBL1\n2001:2:0:7::/64 ; SBL2\n",
    );
    let out = import(&pins, &scratch, &list, &["--ttl", "10m"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let short = Duration::from_millis(800);
    assert_eq!(
        tb.get_timeout(bad4, s4, short),
        0,
        "imported v4 host dropped"
    );
    assert_eq!(
        tb.get_timeout(bad6, s6, short),
        0,
        "imported v6 prefix dropped"
    );
    assert_eq!(tb.get(good4, s4), 200);
    assert_eq!(tb.get(good6, s6), 200);
    // The daemon was told: it knows the two entries (its expiry index is in step).
    let status = floodgate_json(&pins, &["status", "--json"]);
    assert_eq!(
        status["daemon"]["known_blocks"],
        serde_json::json!([1, 1]),
        "{status}"
    );
    drop(daemon);
}
