//! The operator CLI on real pins: bad input is refused with one line and a non-zero exit and
//! writes nothing; concurrent mutations are serialised; JSON listings; status and mode.

use floodgate_tests::{TempPins, floodgate, floodgate_json, floodgate_ok, kernel::LoadedFilter};

fn loaded() -> LoadedFilter {
    LoadedFilter::load()
}

fn entries(pins: &TempPins) -> usize {
    floodgate_json(pins, &["block", "list", "--json"])
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn bad_input_is_one_line_non_zero_and_writes_nothing() {
    let f = loaded();
    let pins = &f.pins;
    let cases: [&[&str]; 8] = [
        &["block", "add", "198.18.0.300"],
        &["block", "add", "198.18.0.1/24"],
        &["block", "add", "2001:2::/129"],
        &["block", "add", "198.18.0.1", "--ttl", "soon"],
        &["block", "add", "198.18.0.1", "not-an-address"],
        &["allow", "add", "2001:2::1/48"],
        &["block", "del", "198.18.9.9"],
        &["why", "banana"],
    ];
    for args in cases {
        let out = floodgate(pins, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{args:?}: one line, got {stderr:?}"
        );
        assert!(stderr.starts_with("floodgate: "), "{stderr}");
    }
    assert_eq!(
        floodgate(pins, &["block", "add", "198.18.0.1/24"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(entries(pins), 0, "nothing written by refused commands");
    let allowed: serde_json::Value =
        serde_json::from_str(&floodgate_ok(pins, &["allow", "list", "--json"])).unwrap();
    assert_eq!(allowed.as_array().unwrap().len(), 0);
}

#[test]
fn nothing_loaded_and_no_bpffs_fail_clearly() {
    let pins = TempPins::new();
    let out = floodgate(&pins, &["block", "add", "198.18.0.1"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not loaded"));
    assert!(!pins.root().exists(), "a refused command creates no pins");
    let out = std::process::Command::new(floodgate_tests::floodgate_bin())
        .args(["block", "list"])
        .env("FLOODGATE_PIN_ROOT", "/tmp/not-bpffs/floodgate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not on a BPF filesystem"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn concurrent_mutations_are_serialised() {
    let f = loaded();
    let root = f.pins.root();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let root = root.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let out = std::process::Command::new(floodgate_tests::floodgate_bin())
                        .args(["block", "add", &format!("198.18.{w}.{i}"), "--ttl", "1h"])
                        .env("FLOODGATE_PIN_ROOT", &root)
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(entries(&f.pins), 100);
    floodgate_ok(&f.pins, &["block", "flush"]);
    assert_eq!(entries(&f.pins), 0);
}

#[test]
fn listings_status_and_mode() {
    let f = loaded();
    let pins = &f.pins;
    floodgate_ok(
        pins,
        &[
            "block",
            "add",
            "198.18.3.0/24",
            "2001:2::9",
            "--ttl",
            "90s",
            "--reason",
            "scanner",
        ],
    );
    floodgate_ok(pins, &["allow", "add", "198.18.0.10", "2001:2::/64"]);
    let list: serde_json::Value =
        serde_json::from_str(&floodgate_ok(pins, &["block", "list", "--json"])).unwrap();
    let first = list
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["target"] == "198.18.3.0/24")
        .expect("prefix listed");
    assert_eq!(first["reason"], "scanner");
    assert!(first["ttl_remaining_secs"].as_u64().unwrap() <= 90);
    let text = floodgate_ok(pins, &["block", "list"]);
    assert!(
        text.contains("2001:2::9") && text.contains("scanner"),
        "{text}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&floodgate_ok(pins, &["status", "--json"])).unwrap();
    assert_eq!(status["mode"], "enforce");
    assert_eq!(status["maps"]["block_exact"]["entries"], 1);
    assert_eq!(status["maps"]["block_prefix"]["entries"], 1);
    assert_eq!(status["maps"]["allow"]["entries"], 2);
    assert!(status["program_id"].as_u64().unwrap() > 0);
    floodgate_ok(pins, &["mode", "monitor"]);
    let status: serde_json::Value =
        serde_json::from_str(&floodgate_ok(pins, &["status", "--json"])).unwrap();
    assert_eq!(status["mode"], "monitor");
    let why: serde_json::Value =
        serde_json::from_str(&floodgate_ok(pins, &["why", "198.18.3.7", "--json"])).unwrap();
    assert_eq!(why["block"]["target"], "198.18.3.0/24");
    let why: serde_json::Value =
        serde_json::from_str(&floodgate_ok(pins, &["why", "2001:2::9", "--json"])).unwrap();
    assert_eq!(why["allow_listed"], true);
    assert_eq!(why["blocked"], false, "allow list wins: {why}");
    let stats: serde_json::Value =
        serde_json::from_str(&floodgate_ok(pins, &["stats", "--json"])).unwrap();
    assert_eq!(
        stats.as_object().unwrap().len(),
        filter_common::counter::COUNT as usize
    );
}

#[test]
fn a_failed_start_names_the_remedy_once_and_leaves_no_pins() {
    let tb = floodgate_tests::net::Testbed::new();
    let pins = TempPins::new();
    let socket = pins.control_socket();
    for (iface, wanted) in [
        ("fgnope0", "no interface named fgnope0"),
        // The namespace's own loopback: no native XDP.
        (
            "lo",
            "does not support XDP in driver mode; use generic mode: `--skb`",
        ),
    ] {
        let out = tb
            .server
            .cmd(floodgate_tests::floodgate_bin().to_str().unwrap())
            .args([
                "run",
                "--iface",
                iface,
                "--metrics-listen",
                "off",
                "--control-socket",
            ])
            .arg(&socket)
            .env("FLOODGATE_PIN_ROOT", pins.root())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{iface}: {stderr}");
        let last = stderr.trim().lines().last().unwrap_or("");
        assert!(last.contains(wanted), "{iface}: {stderr}");
        assert_eq!(last.matches(wanted).count(), 1, "said once: {last}");
        assert!(
            !last.contains("failed: `bpf_link_create` failed"),
            "the cause is said once: {last}"
        );
        assert!(
            !pins.root().join(filter_common::LAYOUT_VERSION).exists(),
            "{iface}: a failed start leaves no pins behind"
        );
    }
}
