//! Typed values, and errors that name their key.

use super::*;

#[test]
fn a_file_without_rules_gets_the_default_rule() {
    let s = parse("[filter]\nports = [8080]", "t.toml").unwrap();
    assert_eq!(s.rules.len(), 1);
    assert_eq!(s.rules[0].name, "per-source-flood");
    assert!(parse("rules = []", "t.toml").unwrap().rules.is_empty());
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
