//! Prometheus metrics: names, descriptions, and the exporter. Everything goes through the
//! `metrics` facade; the daemon updates kernel-side figures once per second.

use std::net::SocketAddr;

use filter_common::counter;
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Packets by XDP outcome (label `outcome`).
pub(crate) const PACKETS: &str = "floodgate_packets_total";
/// Request starts seen by XDP.
pub(crate) const REQUEST_STARTS: &str = "floodgate_request_starts_total";
/// TLS ClientHellos seen by XDP on TLS ports.
pub(crate) const TLS_HELLOS: &str = "floodgate_tls_hellos_total";
/// Samples by fate (label `fate`: taken, lost, unverified).
pub(crate) const SAMPLES: &str = "floodgate_samples_total";
/// Current 1-in-N sampling factor.
pub(crate) const SAMPLE_EVERY: &str = "floodgate_sample_every";
/// Active block entries (label `kind`: exact, prefix).
pub(crate) const ACTIVE_BLOCKS: &str = "floodgate_active_blocks";
/// Decisions by rule (label `rule`, `action`).
pub(crate) const DECISIONS: &str = "floodgate_decisions_total";
/// Seconds from the sample that crossed a threshold to the block being written.
pub(crate) const DETECTION_LATENCY: &str = "floodgate_detection_latency_seconds";
/// Tracked rate keys.
pub(crate) const TRACKED: &str = "floodgate_tracked_clients";
/// Bytes of rate state per tracked key.
pub(crate) const TRACKED_BYTES_PER_KEY: &str = "floodgate_tracked_bytes_per_client";
/// Resident memory of the daemon.
pub(crate) const MEMORY: &str = "floodgate_daemon_resident_bytes";
/// Expired entries removed by the sweep.
pub(crate) const EXPIRED: &str = "floodgate_expired_blocks_total";
/// Request events processed by the detector (label `sensor`).
pub(crate) const DETECTOR_EVENTS: &str = "floodgate_detector_events_total";
/// Kernel samples dropped by the daemon (label `why`: malformed, unparsed).
pub(crate) const SAMPLES_DROPPED: &str = "floodgate_samples_dropped_total";
/// 1 when the program is attached to the protected interface now, else 0 (label `interface`).
pub(crate) const INTERFACE_ATTACHED: &str = "floodgate_interface_attached";
/// Re-attachments after a protected interface came back (label `interface`).
pub(crate) const REATTACHED: &str = "floodgate_interface_reattached_total";
/// Requests received from the proxy feed and handed to the detector.
pub(crate) const PROXY_EVENTS: &str = "floodgate_proxy_events_total";
/// Proxy feed datagrams not used (label `why`: refused, oversized, socket_full,
/// unknown_format, version, malformed, bad_client).
pub(crate) const PROXY_DROPPED: &str = "floodgate_proxy_datagrams_dropped_total";
/// Proxy feed datagrams cut by the sender's size limit but used for their leading fields.
pub(crate) const PROXY_CUT: &str = "floodgate_proxy_datagrams_cut_total";
/// 1 while the proxy feed socket is open, 0 when it is off or could not be opened.
pub(crate) const PROXY_UP: &str = "floodgate_proxy_feed_up";
/// 1 while the proxy feed file is followed, 0 when it is off or refused (untrusted).
pub(crate) const PROXY_FILE_UP: &str = "floodgate_proxy_feed_file_up";
/// Bytes of the proxy feed file not read yet.
pub(crate) const PROXY_FILE_BACKLOG: &str = "floodgate_proxy_feed_file_backlog_bytes";
/// Control connections refused (label `why`: busy, bad_request).
pub(crate) const CONTROL_REFUSED: &str = "floodgate_control_refused_total";
/// Decisions refused by the collateral guard (label `reason`).
pub(crate) const REFUSED: &str = "floodgate_decisions_refused_total";
/// Daemon-made entries evicted because the exact block map was full.
pub(crate) const EVICTIONS: &str = "floodgate_block_evictions_total";
/// Failed map writes of decisions.
pub(crate) const WRITE_FAILURES: &str = "floodgate_decision_write_failures_total";
/// Capacity of the block maps (label `kind`: exact, prefix), to compare with [`ACTIVE_BLOCKS`].
pub(crate) const BLOCK_CAPACITY: &str = "floodgate_block_capacity";

/// 1 while an adaptive service is under attack, else 0 (label `service`).
pub(crate) const UNDER_ATTACK: &str = "floodgate_service_under_attack";
/// Attacks an adaptive service came under (label `service`).
pub(crate) const ATTACKS: &str = "floodgate_service_attacks_total";
/// The learned normal request rate of an adaptive service (label `service`).
pub(crate) const BASELINE_RPS: &str = "floodgate_service_baseline_requests_per_second";
/// Attack fingerprints of an adaptive service's current attack (label `service`).
pub(crate) const ATTACK_FINGERPRINTS: &str = "floodgate_service_attack_fingerprints";
/// Requests of an adaptive service not counted by fingerprint, too many distinct ones in a
/// second (label `service`).
pub(crate) const FINGERPRINTS_UNCOUNTED: &str =
    "floodgate_service_fingerprint_uncounted_requests_total";
/// State file failures of the baselines (label `op`: load, save).
pub(crate) const BASELINE_FILE_ERRORS: &str = "floodgate_baseline_file_errors_total";

/// Values of the `why` label of [`SAMPLES_DROPPED`].
pub(crate) const SAMPLE_DROP_REASONS: [&str; 2] = ["malformed", "unparsed"];
/// Values of the `sensor` label of [`DETECTOR_EVENTS`].
pub(crate) const SENSORS: [&str; 2] = ["kernel", "proxy"];
/// Values of the `why` label of [`PROXY_DROPPED`].
pub(crate) const PROXY_DROP_REASONS: [&str; 7] = [
    "refused",
    "oversized",
    "socket_full",
    "unknown_format",
    "version",
    "malformed",
    "bad_client",
];
/// Values of the `why` label of [`CONTROL_REFUSED`].
pub(crate) const CONTROL_REFUSALS: [&str; 2] = ["busy", "bad_request"];
/// Values of the `kind` label of [`ACTIVE_BLOCKS`] and [`BLOCK_CAPACITY`].
pub(crate) const BLOCK_KINDS: [&str; 2] = ["exact", "prefix"];

/// The `action` label of [`DECISIONS`].
#[must_use]
pub(crate) fn decision_action(block: bool) -> &'static str {
    if block { "block" } else { "monitor" }
}

/// Registers every series whose label values are known before its first event, counters at
/// 0, so that a dashboard or an alert can tell "none yet" from "missing". Kernel counters
/// are exported from the maps at start instead (they survive a daemon restart). Called at
/// start and after each reload (a new rule gets its series; a removed rule's stays).
pub(crate) fn register_known(settings: &crate::config::Settings) {
    use metrics::{counter, gauge, histogram};
    for why in SAMPLE_DROP_REASONS {
        counter!(SAMPLES_DROPPED, "why" => why).increment(0);
    }
    for sensor in SENSORS {
        counter!(DETECTOR_EVENTS, "sensor" => sensor).increment(0);
    }
    for why in PROXY_DROP_REASONS {
        counter!(PROXY_DROPPED, "why" => why).increment(0);
    }
    for why in CONTROL_REFUSALS {
        counter!(CONTROL_REFUSED, "why" => why).increment(0);
    }
    for reason in crate::enforce::guard::Refusal::LABELS {
        counter!(REFUSED, "reason" => reason).increment(0);
    }
    for rule in &settings.rules {
        let block = rule.action == crate::config::Action::Block;
        counter!(DECISIONS, "rule" => rule.name.clone(), "action" => decision_action(block))
            .increment(0);
    }
    if settings.aggregation.min_addresses > 0 {
        counter!(DECISIONS, "rule" => crate::detect::AGGREGATE_RULE, "action" => decision_action(true))
            .increment(0);
    }
    for op in ["load", "save"] {
        counter!(BASELINE_FILE_ERRORS, "op" => op).increment(0);
    }
    if settings.adaptive.enabled {
        counter!(DECISIONS, "rule" => crate::detect::adaptive::ADAPTIVE_RULE, "action" => decision_action(true))
            .increment(0);
    }
    for interface in &settings.filter.interfaces {
        counter!(REATTACHED, "interface" => interface.clone()).increment(0);
    }
    for name in [PROXY_EVENTS, PROXY_CUT, EXPIRED, EVICTIONS, WRITE_FAILURES] {
        counter!(name).increment(0);
    }
    // Registered without a sample: exported with every bucket at 0.
    let _ = histogram!(DETECTION_LATENCY);
    let capacity = [
        filter_common::capacity::BLOCK_EXACT,
        filter_common::capacity::BLOCK_PREFIX,
    ];
    for (kind, capacity) in BLOCK_KINDS.into_iter().zip(capacity) {
        gauge!(BLOCK_CAPACITY, "kind" => kind).set(f64::from(capacity));
    }
}

/// The kernel's counters as metrics (absolute: they live in the pinned map, across restarts).
pub(crate) fn export_kernel_counters(counters: &[u64; counter::COUNT as usize]) {
    for index in counter::OUTCOMES {
        metrics::counter!(PACKETS, "outcome" => counter::NAMES[index as usize])
            .absolute(counters[index as usize]);
    }
    metrics::counter!(REQUEST_STARTS).absolute(counters[counter::REQUEST_STARTS as usize]);
    metrics::counter!(TLS_HELLOS).absolute(counters[counter::TLS_HELLOS as usize]);
    metrics::counter!(SAMPLES, "fate" => "taken").absolute(counters[counter::SAMPLES as usize]);
    metrics::counter!(SAMPLES, "fate" => "lost").absolute(counters[counter::SAMPLES_LOST as usize]);
    metrics::counter!(SAMPLES, "fate" => "unverified")
        .absolute(counters[counter::SAMPLES_UNVERIFIED as usize]);
}
/// 1 when `[crowdsec]` is enabled, else 0.
pub(crate) const CROWDSEC_CONFIGURED: &str = "floodgate_crowdsec_configured";
/// 1 after a successful poll of the LAPI, 0 after a failed one or when CrowdSec is off.
pub(crate) const CROWDSEC_UP: &str = "floodgate_crowdsec_up";
/// CrowdSec decisions by outcome (label `action`: applied, deleted, refused, malformed).
pub(crate) const CROWDSEC_DECISIONS: &str = "floodgate_crowdsec_decisions_total";
/// Failed polls of the LAPI decision stream.
pub(crate) const CROWDSEC_POLL_FAILURES: &str = "floodgate_crowdsec_poll_failures_total";
/// Unix time of the last successful poll of the LAPI.
pub(crate) const CROWDSEC_LAST_SYNC: &str = "floodgate_crowdsec_last_sync_timestamp_seconds";
/// The `action` labels of [`CROWDSEC_DECISIONS`].
pub(crate) const CROWDSEC_ACTIONS: [&str; 4] = ["applied", "deleted", "refused", "malformed"];
/// 1 when `[fleet]` is enabled, else 0.
pub(crate) const FLEET_CONFIGURED: &str = "floodgate_fleet_configured";
/// 1 while connected to NATS with the bucket watched, 0 otherwise (or when the fleet is off).
pub(crate) const FLEET_UP: &str = "floodgate_fleet_up";
/// Peers' decisions written to the maps.
pub(crate) const FLEET_APPLIED: &str = "floodgate_fleet_remote_applied_total";
/// Peers' decisions refused (label `reason`: malformed, allow_listed, too_wide, collateral).
pub(crate) const FLEET_REFUSED: &str = "floodgate_fleet_remote_refused_total";
/// This host's decisions (and deletions) that could not be published when made; they are
/// published again after the reconnection.
pub(crate) const FLEET_PUBLISH_FAILURES: &str = "floodgate_fleet_publish_failures_total";
/// Unix time at which the last full read of the bucket finished.
pub(crate) const FLEET_LAST_SYNC: &str = "floodgate_fleet_last_sync_timestamp_seconds";
/// The `reason` labels of [`FLEET_REFUSED`].
pub(crate) const FLEET_REFUSALS: [&str; 4] =
    ["malformed", "allow_listed", "too_wide", "collateral"];

/// Installs the exporter on `listen` (inside the running tokio runtime) and describes metrics.
pub(crate) fn install(listen: SocketAddr) -> anyhow::Result<()> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(listen)
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(DETECTION_LATENCY.into()),
            &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
        )?
        .install()
        .map_err(|e| anyhow::anyhow!("metrics exporter on {listen}: {e}"))?;
    describe_counter!(PACKETS, Unit::Count, "Packets by XDP outcome");
    describe_gauge!(UNDER_ATTACK, "1 while an adaptive service is under attack");
    describe_counter!(
        ATTACKS,
        Unit::Count,
        "Attacks an adaptive service came under"
    );
    describe_gauge!(
        BASELINE_RPS,
        "Learned normal request rate of an adaptive service"
    );
    describe_gauge!(
        ATTACK_FINGERPRINTS,
        "Attack fingerprints of an adaptive service's current attack"
    );
    describe_counter!(
        FINGERPRINTS_UNCOUNTED,
        Unit::Count,
        "Requests not counted by fingerprint (too many distinct fingerprints in a second)"
    );
    describe_counter!(
        BASELINE_FILE_ERRORS,
        Unit::Count,
        "Baseline state file failures (op: load, save)"
    );
    describe_counter!(
        REQUEST_STARTS,
        Unit::Count,
        "HTTP request starts seen by XDP"
    );
    describe_counter!(SAMPLES, Unit::Count, "Request-start samples by fate");
    describe_counter!(
        TLS_HELLOS,
        Unit::Count,
        "TLS ClientHellos seen by XDP on TLS ports"
    );
    describe_gauge!(SAMPLE_EVERY, "Current 1-in-N sampling factor");
    describe_gauge!(ACTIVE_BLOCKS, Unit::Count, "Block entries in the maps");
    describe_counter!(DECISIONS, Unit::Count, "Detection decisions by rule");
    describe_histogram!(
        DETECTION_LATENCY,
        Unit::Seconds,
        "Threshold crossing to block written"
    );
    describe_gauge!(TRACKED, Unit::Count, "Rate keys tracked");
    describe_gauge!(
        TRACKED_BYTES_PER_KEY,
        Unit::Bytes,
        "Bytes of rate state per tracked key"
    );
    describe_gauge!(MEMORY, Unit::Bytes, "Resident memory of the daemon");
    describe_counter!(EXPIRED, Unit::Count, "Expired block entries removed");
    describe_counter!(
        DETECTOR_EVENTS,
        Unit::Count,
        "Request events processed by the detector, by sensor"
    );
    describe_counter!(
        SAMPLES_DROPPED,
        Unit::Count,
        "Kernel samples the daemon dropped: malformed records, payloads that are no request start"
    );
    describe_counter!(
        REFUSED,
        Unit::Count,
        "Decisions refused by the guard, by reason"
    );
    describe_counter!(
        EVICTIONS,
        Unit::Count,
        "Daemon-made entries evicted because the exact block map was full"
    );
    describe_counter!(
        PROXY_EVENTS,
        Unit::Count,
        "Requests received from the proxy feed"
    );
    describe_counter!(
        PROXY_DROPPED,
        Unit::Count,
        "Proxy feed datagrams not used, by reason (refused sender, oversized, socket full, unparseable)"
    );
    describe_counter!(
        PROXY_CUT,
        Unit::Count,
        "Proxy feed datagrams cut by the sender but used for their leading fields"
    );
    describe_gauge!(PROXY_UP, "1 while the proxy feed socket is open");
    describe_gauge!(
        PROXY_FILE_UP,
        "1 while the proxy feed file is followed, 0 when off or refused"
    );
    describe_gauge!(
        PROXY_FILE_BACKLOG,
        Unit::Bytes,
        "Bytes of the proxy feed file not read yet"
    );
    describe_gauge!(
        INTERFACE_ATTACHED,
        "1 when the program is attached to the protected interface now"
    );
    describe_counter!(
        REATTACHED,
        Unit::Count,
        "Re-attachments after a protected interface came back"
    );
    describe_counter!(
        CONTROL_REFUSED,
        Unit::Count,
        "Control connections refused (too many at once, unreadable request)"
    );
    describe_gauge!(
        BLOCK_CAPACITY,
        Unit::Count,
        "Capacity of the block maps (compare with floodgate_active_blocks)"
    );
    describe_counter!(
        WRITE_FAILURES,
        Unit::Count,
        "Decisions that could not be written"
    );
    describe_gauge!(CROWDSEC_CONFIGURED, "1 when [crowdsec] is enabled");
    describe_gauge!(
        CROWDSEC_UP,
        "1 after a successful poll of the CrowdSec LAPI, 0 after a failed one or when off"
    );
    describe_counter!(
        CROWDSEC_DECISIONS,
        Unit::Count,
        "CrowdSec decisions by outcome (applied, deleted, refused by the guard, malformed)"
    );
    describe_counter!(
        CROWDSEC_POLL_FAILURES,
        Unit::Count,
        "Failed polls of the CrowdSec LAPI decision stream"
    );
    describe_gauge!(
        CROWDSEC_LAST_SYNC,
        Unit::Seconds,
        "Unix time of the last successful poll of the CrowdSec LAPI"
    );
    describe_gauge!(FLEET_CONFIGURED, "1 when [fleet] is enabled");
    describe_gauge!(
        FLEET_UP,
        "1 while connected to NATS with the fleet's decision bucket watched"
    );
    describe_counter!(
        FLEET_APPLIED,
        Unit::Count,
        "Fleet peers' decisions written to the maps"
    );
    describe_counter!(
        FLEET_REFUSED,
        Unit::Count,
        "Fleet peers' decisions refused, by reason (malformed, or the guard's)"
    );
    describe_counter!(
        FLEET_PUBLISH_FAILURES,
        Unit::Count,
        "Decisions that could not be published to the fleet when made (retried after reconnecting)"
    );
    describe_gauge!(
        FLEET_LAST_SYNC,
        Unit::Seconds,
        "Unix time of the last full read of the fleet's decision bucket"
    );
    Ok(())
}

/// Registers the fleet metrics at their starting values, so that they exist from the start.
pub(crate) fn register_fleet(configured: bool) {
    metrics::gauge!(FLEET_CONFIGURED).set(f64::from(u8::from(configured)));
    metrics::gauge!(FLEET_UP).set(0.0);
    metrics::gauge!(FLEET_LAST_SYNC).set(0.0);
    metrics::counter!(FLEET_APPLIED).absolute(0);
    metrics::counter!(FLEET_PUBLISH_FAILURES).absolute(0);
    for reason in FLEET_REFUSALS {
        metrics::counter!(FLEET_REFUSED, "reason" => reason).absolute(0);
    }
}

/// Registers the CrowdSec metrics at their starting values, so that they exist from the start.
pub(crate) fn register_crowdsec(configured: bool) {
    metrics::gauge!(CROWDSEC_CONFIGURED).set(f64::from(u8::from(configured)));
    metrics::gauge!(CROWDSEC_UP).set(0.0);
    metrics::gauge!(CROWDSEC_LAST_SYNC).set(0.0);
    metrics::counter!(CROWDSEC_POLL_FAILURES).absolute(0);
    for action in CROWDSEC_ACTIONS {
        metrics::counter!(CROWDSEC_DECISIONS, "action" => action).absolute(0);
    }
}

/// Resident set size of this process, from /proc/self/statm.
#[must_use]
pub fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .unwrap_or(0);
    pages * page_size()
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}
