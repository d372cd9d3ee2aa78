//! Operator input: addresses, prefixes and TTLs as typed on the command line. Must never
//! panic; what parses must round-trip.
#![no_main]

use filter_user::{config::Duration, target::Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(target) = text.parse::<Target>() {
        assert_eq!(target.to_string().parse::<Target>().ok(), Some(target));
        assert_eq!(Target::from_key(target.key(), target.key_len()), target);
    }
    let _ = text.parse::<Duration>();
});
