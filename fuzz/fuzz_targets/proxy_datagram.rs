//! Proxy feed datagram → request-log parser → request event → detector (with adaptive
//! baselines and fingerprints): bytes any allowed local sender (or a compromised proxy)
//! controls. Must never panic.
#![no_main]

use filter_user::{config, detect::Detector, sensor::proxy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = proxy::parse(data) {
        assert!(record.client.is_some());
        thread_local! {
            static DETECTOR: std::cell::RefCell<Detector> = std::cell::RefCell::new(Detector::new(
                &config::parse(
                    "[state]\nmax_tracked = 1024\n[adaptive]\nenabled = true\nstate_file = \"\"\n",
                    "fuzz",
                ).expect("config"),
            ));
        }
        if let Some(event) = proxy::event(&record, 1_000_000_000) {
            DETECTOR.with(|d| {
                let _ = d.borrow_mut().observe(&event);
            });
        }
    }
});
