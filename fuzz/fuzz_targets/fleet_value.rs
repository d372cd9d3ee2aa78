//! The fleet's values from NATS: a bucket entry (its key on the first line, its value after)
//! and a peer's heavy-hitter report. Whatever a peer writes must parse or be refused, never
//! panic; a decision that is kept names the target of its key, a valid host and offence, and
//! reads back the same after encoding; a kept report has finite rates.
#![no_main]

use filter_user::{config::fleet::host_ok, sources::fleet::value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (key, bytes) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&data[..0], data),
    };
    let key = String::from_utf8_lossy(key);
    if let Ok(target) = value::target_of_key(&key) {
        assert_eq!(value::key_of(target), key);
    }
    if let Ok(d) = value::parse_decision(&key, bytes) {
        assert_eq!(value::key_of(d.target), key);
        assert!(host_ok(&d.origin_host));
        assert!(d.offence >= 1);
        let text = value::map_reason(&d);
        assert_eq!(value::split_map_reason(&text).0, Some(d.origin_host.as_str()));
        assert_eq!(value::parse_decision(&key, &value::encode(&d)).as_ref(), Ok(&d));
    }
    if let Ok(report) = value::parse_report(bytes) {
        assert!(host_ok(&report.host));
        assert!(report.hitters.iter().all(|h| h.rate.is_finite() && h.rate >= 0.0));
    }
});
