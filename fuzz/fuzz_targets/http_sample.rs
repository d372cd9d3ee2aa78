//! Ring-buffer bytes → sample decoder → HTTP request-start parser → detector (with adaptive
//! baselines and fingerprints): attacker bytes all the way through the daemon's per-sample
//! path. Must never panic.
#![no_main]

use filter_common::SAMPLE_PAYLOAD_MAX;
use filter_user::{
    config,
    detect::Detector,
    sensor::{http::parse_request, kernel::SampleRecord},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut scratch = [0u8; SAMPLE_PAYLOAD_MAX + 2];
    let payload = &data[..data.len().min(SAMPLE_PAYLOAD_MAX)];
    if let Some(request) = parse_request(payload, &mut scratch) {
        assert!(!request.method.is_empty());
    }
    if let Some(sample) = SampleRecord::decode(data) {
        thread_local! {
            static DETECTOR: std::cell::RefCell<Detector> = std::cell::RefCell::new(Detector::new(
                &config::parse(
                    "[state]\nmax_tracked = 1024\n[adaptive]\nenabled = true\nstate_file = \"\"\n",
                    "fuzz",
                ).expect("config"),
            ));
        }
        let mut scratch = [0u8; SAMPLE_PAYLOAD_MAX + 2];
        if let Some(event) = sample.event(&mut scratch) {
            DETECTOR.with(|d| {
                let _ = d.borrow_mut().observe(&event);
            });
        }
    }
});
