//! Baseline state file bytes → the daemon's parser. Must never panic: a corrupt or foreign
//! file is refused with an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = filter_user::detect::baseline::parse(data, 1800.0);
});
