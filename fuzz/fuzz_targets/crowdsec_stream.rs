//! The CrowdSec LAPI decision stream (`GET /v1/decisions/stream`): whatever the LAPI (or
//! anything answering in its place) sends must parse or be refused, never panic; a decision
//! that is kept is a valid target with host bits clear and a TTL of at most ten years.
#![no_main]

use filter_user::{config::crowdsec::Scope, sources::crowdsec::stream, target::Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = stream::parse(data, &[Scope::Ip, Scope::Range]) else {
        return;
    };
    for d in batch.new.iter().chain(&batch.deleted) {
        assert_eq!(d.target.to_string().parse::<Target>().ok(), Some(d.target));
        assert!(d.ttl <= std::time::Duration::from_secs(10 * 365 * 86_400));
    }
    for d in &batch.new {
        assert!(!d.ttl.is_zero());
    }
});
