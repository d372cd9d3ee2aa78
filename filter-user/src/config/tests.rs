//! The documented default file against the code, and errors that name their key.

use super::*;

#[test]
fn the_default_file_is_exactly_the_builtin_default() {
    let parsed = parse(DEFAULT_TOML, "default-config.toml").unwrap();
    assert_eq!(parsed, Settings::default());
    assert_eq!(parse("", "empty").unwrap(), Settings::default());
}

/// The sections of the default file, and `[[rules]]` standing for every rule.
const SECTIONS: [&str; 13] = [
    "",
    "filter",
    "sampling",
    "state",
    "metrics",
    "log",
    "control",
    "escalation",
    "aggregation",
    "guard",
    "crowdsec",
    "fleet",
    "adaptive",
];

/// The keys serde accepts at `section`: its message for an unknown key lists them.
fn known_keys(header: &str) -> Vec<String> {
    let err = parse(&format!("{header}\nno_such_key = 1\n"), "t").unwrap_err();
    let message = err.to_string();
    let (_, expected) = message
        .split_once("expected")
        .unwrap_or_else(|| panic!("{message}"));
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_default_file_shows_every_key() {
    let file: toml::Table = toml::from_str(DEFAULT_TOML).unwrap();
    for section in SECTIONS {
        let (header, table) = if section.is_empty() {
            (String::new(), &file)
        } else {
            let table = file[section].as_table().expect(section);
            (format!("[{section}]"), table)
        };
        for key in known_keys(&header) {
            assert!(
                table.contains_key(&key),
                "[{section}] {key} is not in the file"
            );
        }
    }
    let rule = file["rules"].as_array().unwrap()[0].as_table().unwrap();
    for key in known_keys("[[rules]]\nname = \"x\"") {
        assert!(
            rule.contains_key(&key),
            "[[rules]] {key} is not in the file"
        );
    }
}

#[test]
fn every_key_in_the_default_file_is_documented() {
    // A key is documented when a comment comes before it, with only keys and table headers
    // in between (one comment may explain a group of keys).
    let mut documented = false;
    for line in DEFAULT_TOML.lines().map(str::trim) {
        if line.starts_with('#') {
            documented = true;
        } else if line.is_empty() {
            documented = false;
        } else if !line.starts_with('[') {
            assert!(documented, "undocumented: {line}");
        }
    }
}

#[test]
fn a_file_without_rules_gets_the_default_rules() {
    let s = parse("[filter]\nports = [8080]", "t.toml").unwrap();
    assert_eq!(s.rules, super::rules::defaults());
    assert_eq!(s.rules[0].name, "per-source-flood");
    assert!(parse("rules = []", "t.toml").unwrap().rules.is_empty());
}

#[test]
fn rules_that_ask_a_sensor_for_what_it_cannot_know_are_refused() {
    let cases = [
        ("sensor = \"kernel\"\nstatus = [401]", "rules[0].sensor"),
        (
            "sensor = \"kernel\"\nweight = \"upstream_time\"",
            "rules[0].sensor",
        ),
        (
            "signal = \"tls_handshakes\"\nsensor = \"proxy\"",
            "rules[0].signal",
        ),
        (
            "signal = \"tls_handshakes\"\npath_prefix = \"/x\"",
            "rules[0].signal",
        ),
        ("status = [99]", "rules[0].status"),
        ("weight = \"cpu\"", "rules[0].weight"),
        ("signal = \"syn\"", "rules[0].signal"),
    ];
    for (fields, key) in cases {
        let text = format!("[[rules]]\nname = \"r\"\n{fields}\n");
        let err = parse(&text, "t.toml").unwrap_err().to_string();
        assert!(err.contains(key), "{fields:?} → {err}");
    }
    for bad in [
        "[proxy]\nmode = \"rw\"",
        "[proxy]\nsocket = \"relative.sock\"",
        "[filter]\ntls_ports = [0]",
    ] {
        assert!(parse(bad, "t.toml").is_err(), "{bad}");
    }
    let off = parse("[proxy]\nsocket = \"off\"", "t.toml").unwrap();
    assert_eq!(off.proxy.socket, None);
}

#[test]
fn values_become_types() {
    let text = "allow = [\"198.18.0.0/24\"]\n[filter]\nattach_mode = \"skb\"\n[metrics]\nlisten = \"off\"\n[log]\nlevel = \"DEBUG\"\n[[rules]]\nname = \"login\"\nkey = \"source+path\"\nmethod = \"post\"\nhost = \"Shop\"\naction = \"monitor\"\nmin_samples = 0\nwindow = \"500ms\"\nttl = \"45\"\n";
    let s = parse(text, "t.toml").unwrap();
    assert_eq!(s.allow, vec!["198.18.0.0/24".parse().unwrap()]);
    assert_eq!(s.filter.attach_mode, AttachMode::Skb);
    assert_eq!(s.metrics.listen, None);
    assert_eq!(s.log.level, log::LevelFilter::Debug);
    let rule = &s.rules[0];
    assert_eq!(rule.key, RuleKey::SourcePath);
    assert_eq!(rule.method.as_deref(), Some("POST"));
    assert_eq!(rule.host.as_deref(), Some("shop"));
    assert_eq!(rule.path_prefix, None);
    assert_eq!(rule.action, Action::Monitor);
    assert_eq!(rule.min_samples, 1);
    assert_eq!(rule.window, Duration::from_millis(500));
    assert_eq!(rule.ttl, Duration::from_secs(45));
}

#[test]
fn errors_name_the_key() {
    let cases = [
        ("[filter]\nports = [0]", "filter.ports"),
        ("[filter]\nattach_mode = \"hw\"", "filter.attach_mode"),
        ("[sampling]\npayload_bytes = 999", "sampling.payload_bytes"),
        ("[sampling]\nbudget_per_sec = 0", "sampling.budget_per_sec"),
        ("[state]\nmax_tracked = 10", "state.max_tracked"),
        ("[state]\nsweep_interval = \"10ms\"", "state.sweep_interval"),
        ("allow = [\"198.18.0.1/24\"]", "allow[0]"),
        (
            "[[rules]]\nname = \"x\"\nthreshold_rps = -1",
            "rules[0].threshold_rps",
        ),
        ("[[rules]]\nname = \"x\"\nkey = \"cookie\"", "rules[0].key"),
        (
            "[[rules]]\nname = \"x\"\naction = \"drop\"",
            "rules[0].action",
        ),
        ("[[rules]]\nname = \"x\"\nttl = \"soon\"", "rules[0].ttl"),
        ("[[rules]]\nname = \"x\"\nttl = \"0s\"", "rules[0].ttl"),
        (
            "[[rules]]\nname = \"x\"\nwindow = \"2h\"",
            "rules[0].window",
        ),
        (
            "[[rules]]\nname = \"x\"\nprefix_v6 = 129",
            "rules[0].prefix_v4",
        ),
        ("[[rules]]\nname = \"\"", "rules[0].name"),
        (
            "[[rules]]\nname = \"x\"\n[[rules]]\nname = \"x\"",
            "rules[1].name",
        ),
        ("[metrics]\nlisten = \"everywhere\"", "metrics.listen"),
        ("[log]\nlevel = \"loud\"", "log.level"),
        ("[escalation]\nfactor = 0.5", "escalation.factor"),
        ("[escalation]\nmax_ttl = \"11y\"", "escalation.max_ttl"),
        (
            "[aggregation]\nmin_addresses = 1",
            "aggregation.min_addresses",
        ),
        ("[aggregation]\nprefix_v4 = 33", "aggregation.prefix_v4"),
        ("[guard]\nmax_prefix_v4 = 40", "guard.max_prefix_v4"),
        ("[guard]\nmax_legit_share = 2.0", "guard.max_legit_share"),
        ("[guard]\nwindow = \"-1s\"", "guard.window"),
        ("[filter]\nbogus = 1", "bogus"),
        ("[filter]\nports = \"80\"", "ports"),
    ];
    for (text, key) in cases {
        let err = parse(text, "t.toml").unwrap_err().to_string();
        assert!(err.contains(key), "{text:?} → {err}");
        assert!(err.starts_with("t.toml: "), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn a_word_outside_its_set_names_the_line_key_and_allowed_words() {
    let err = parse("[filter]\nmonitor = true\nattach_mode = \"hw\"\n", "t.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("t.toml: line 3: filter.attach_mode: unknown variant `hw`"),
        "{err}"
    );
    assert!(err.contains("`driver`") && err.contains("`skb`"), "{err}");
    let err = parse("[[rules]]\nname = \"x\"\nkey = \"cookie\"", "t.toml")
        .unwrap_err()
        .to_string();
    for word in ["source", "prefix", "source+path", "source+host"] {
        assert!(err.contains(&format!("`{word}`")), "{err}");
    }
}
