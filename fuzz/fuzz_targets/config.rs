//! Configuration text → TOML parse and validation. Must never panic; errors name a key.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = filter_user::config::parse(text, "fuzz");
    }
});
