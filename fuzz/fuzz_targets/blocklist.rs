//! Block lists as `floodgate block import` reads them (FireHOL, Spamhaus DROP, exports): must
//! never panic; every bad line is numbered within the input; every entry re-exported parses
//! back to the same target, TTL and reason.
#![no_main]

use filter_user::blocklist::{export_line, parse, parse_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let list = parse(data);
    let lines = data.split(|b| *b == b'\n').count();
    for bad in &list.bad {
        assert!(bad.line >= 1 && bad.line <= lines);
    }
    for entry in &list.entries {
        assert!(entry.line >= 1 && entry.line <= lines);
        let secs = entry.ttl.flatten().map(|d| d.as_secs());
        let reason = entry.reason.clone().unwrap_or_default();
        let again = parse_line(&export_line(entry.target, secs, &reason))
            .expect("an exported line parses")
            .expect("an exported line is an entry");
        assert_eq!(again.target, entry.target);
        assert_eq!(again.ttl.flatten().map(|d| d.as_secs()), secs);
    }
});
