//! `floodgate baseline`: what the adaptive detector learned, per service, and whether the
//! service is under attack; also the lines `status` prints for the adaptive services.

use std::path::Path;

use anyhow::Result;

use super::output::print_json;
use crate::{
    control::{self, Reply, Request},
    detect::adaptive::ServiceView,
};

pub(super) fn show(json: bool, socket: &Path) -> Result<()> {
    let reply = match control::request(socket, Request::Baseline)? {
        Reply::Baseline(reply) => reply,
        other => anyhow::bail!("the daemon answered `baseline` with {other:?}"),
    };
    if json {
        return print_json(&reply);
    }
    if !reply.enabled {
        println!("adaptive detection is off ([adaptive] enabled = false)");
        return Ok(());
    }
    println!("state file    {}", reply.state_file.display());
    for view in &reply.services {
        print_service(view);
    }
    Ok(())
}

/// One service in a few lines.
pub(super) fn print_service(v: &ServiceView) {
    let rps = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |x| format!("{x:.1}"));
    println!(
        "service       {} (host {}, path {}{}): {:.1} req/s now, {}",
        v.name,
        if v.host.is_empty() { "any" } else { &v.host },
        if v.path_prefix.is_empty() {
            "any"
        } else {
            &v.path_prefix
        },
        if v.capacity_rps > 0.0 {
            format!(", capacity {:.0} req/s", v.capacity_rps)
        } else {
            String::new()
        },
        v.rate_rps,
        match v.attack {
            Some(trigger) => format!("UNDER ATTACK ({trigger:?}) for {:.0}s", v.attack_secs),
            None => "normal".to_owned(),
        }
    );
    println!(
        "  baseline    {} req/s over {:.0}s learned{}; {} per-source rates",
        rps(v.baseline_rps),
        v.learned_secs,
        if v.learned { "" } else { " (still learning)" },
        v.source_rates
    );
    let quantiles: Vec<String> = v
        .source_quantiles
        .iter()
        .map(|(q, r)| format!("p{} {r:.1}", q * 100.0))
        .collect();
    println!("  per source  {}", quantiles.join(", "));
    println!(
        "  threshold   {} req/s ({} for attack fingerprints); {} attacks, {} sources blocked",
        rps(v.threshold_rps),
        rps(v.fingerprint_threshold_rps),
        v.attacks,
        v.decided
    );
    println!(
        "  fingerprints {} learned{}",
        v.fingerprints_learned,
        if v.fingerprints_uncounted > 0.0 {
            format!(
                ", {:.0} requests not counted (too many distinct)",
                v.fingerprints_uncounted
            )
        } else {
            String::new()
        }
    );
    for f in &v.fingerprints {
        println!(
            "    {}{} {:>5.1} % now, {:>5.1} % normally  {}",
            if f.attack { "ATTACK " } else { "" },
            f.id,
            f.share * 100.0,
            f.baseline_share * 100.0,
            f.label
        );
    }
}
