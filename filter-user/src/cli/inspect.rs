//! Commands that read: `stats` and `status` from the pinned maps and the kernel, `why` from
//! the maps and the running daemon, `top` from the running daemon.

use std::{net::IpAddr, path::Path};

use anyhow::{Context as _, Result};
use filter_common::{capacity, config, counter, port_kind};
use serde_json::json;

use super::{
    Unprotected, open,
    output::{print_json, ttl_text},
    socket,
};
use crate::{
    bpf::{attach, pins::Pins},
    control::{self, ClientError, Reply, Request},
    enforce::Origin,
};

pub(super) fn stats(pins: &Pins, json: bool) -> Result<()> {
    let counters = open(pins)?.counters()?;
    if json {
        let map: serde_json::Map<String, serde_json::Value> = counter::NAMES
            .iter()
            .zip(counters)
            .map(|(n, v)| ((*n).to_owned(), json!(v)))
            .collect();
        return print_json(&serde_json::Value::Object(map));
    }
    for (name, value) in counter::NAMES.iter().zip(counters) {
        println!("{name:<20} {value:>16}");
    }
    Ok(())
}

/// One interface with a pinned link, as the kernel has it now.
#[derive(serde::Serialize)]
struct LinkedInterface {
    name: String,
    attached: bool,
}

pub(super) fn status(pins: &Pins, json: bool, socket_flag: Option<&Path>) -> Result<()> {
    let maps = open(pins)?;
    // The daemon's own view, when it runs.
    let daemon = match control::request(&socket(socket_flag), Request::Status) {
        Ok(Reply::Status(status)) => Some(*status),
        Ok(other) => anyhow::bail!("the daemon answered `status` with {other:?}"),
        Err(ClientError::DaemonDown { .. }) => None,
        Err(err) => return Err(err.into()),
    };
    let program =
        aya::programs::Xdp::from_pin(pins.program(), aya_obj::programs::XdpAttachType::Interface)
            .context("open pinned program")?;
    let program_id = program.info().context("program info")?.id();
    let interfaces: Vec<LinkedInterface> = pins
        .linked_interfaces()?
        .into_iter()
        .map(|name| LinkedInterface {
            attached: attach::is_attached(pins, &name),
            name,
        })
        .collect();
    let (exact, prefix) = maps.block_counts();
    let mode = if maps.monitor()? {
        "monitor"
    } else {
        "enforce"
    };
    let sample_every = maps.setting(config::SAMPLE_EVERY)?.max(1);
    let value = json!({
        "pin_root": pins.root(),
        "layout": filter_common::LAYOUT_VERSION,
        "program_id": program_id,
        "interfaces": interfaces,
        "mode": mode,
        "ports": maps.ports(port_kind::HTTP)?,
        "tls_ports": maps.ports(port_kind::TLS)?,
        "sample_every": sample_every,
        "maps": {
            "block_exact": { "entries": exact, "capacity": capacity::BLOCK_EXACT },
            "block_prefix": { "entries": prefix, "capacity": capacity::BLOCK_PREFIX },
            "allow": { "entries": maps.allow_count(), "capacity": capacity::ALLOW },
        },
        "daemon": daemon,
    });
    if json {
        print_json(&value)?;
    } else {
        println!(
            "pin root      {} (layout {})",
            pins.root().display(),
            filter_common::LAYOUT_VERSION
        );
        println!("program id    {program_id}");
        if interfaces.is_empty() {
            println!("interfaces    (none)");
        }
        for i in &interfaces {
            println!(
                "interface     {} {}",
                i.name,
                if i.attached {
                    "attached"
                } else {
                    "NOT ATTACHED (unprotected)"
                }
            );
        }
        println!("mode          {mode}");
        println!("ports         {:?}", maps.ports(port_kind::HTTP)?);
        println!("tls ports     {:?}", maps.ports(port_kind::TLS)?);
        println!("sample every  {sample_every}");
        println!("block exact   {exact} / {}", capacity::BLOCK_EXACT);
        println!("block prefix  {prefix} / {}", capacity::BLOCK_PREFIX);
        println!("allow         {} / {}", maps.allow_count(), capacity::ALLOW);
        match &daemon {
            None => println!("daemon        not running"),
            Some(d) => {
                println!(
                    "daemon        running: sampling 1 in {}, {} keys tracked, {} events, rules {}",
                    d.sample_every,
                    d.tracked,
                    d.events,
                    d.rules.join(", ")
                );
                match &d.proxy {
                    None => println!("proxy feed    off"),
                    Some(p) => {
                        let shown = |path: &Option<std::path::PathBuf>| {
                            path.as_ref()
                                .map_or_else(|| "off".to_owned(), |p| p.display().to_string())
                        };
                        println!(
                            "proxy feed    socket {}, file {}{}: {} events, {} refused, {} \
                             unparsed, {} cut, {} dropped, {} bytes unread",
                            shown(&p.socket),
                            shown(&p.file),
                            p.file_problem
                                .as_ref()
                                .map(|why| format!(" (not read: {why})"))
                                .unwrap_or_default(),
                            p.events,
                            p.refused,
                            p.unparsed,
                            p.cut,
                            p.dropped,
                            p.file_backlog
                        );
                    }
                }
                for service in &d.adaptive {
                    super::baseline::print_service(service);
                }
                match &d.crowdsec {
                    None => println!("crowdsec      off"),
                    Some(c) => println!(
                        "crowdsec      {} {}, last sync {}: {} applied, {} deleted, {} refused, \
                         {} malformed, {} failed polls{}",
                        c.lapi_url,
                        if c.up { "up" } else { "DOWN" },
                        c.last_sync_unix.map_or_else(
                            || "never".to_owned(),
                            |at| format!("{:.0}s ago", (unix_now() - at).max(0.0))
                        ),
                        c.applied,
                        c.deleted,
                        c.refused,
                        c.malformed,
                        c.poll_failures,
                        c.last_error
                            .as_ref()
                            .map_or_else(String::new, |e| format!(" (last error: {e})"))
                    ),
                }
                match &d.fleet {
                    None => println!("fleet         off"),
                    Some(f) => println!(
                        "fleet         host {} via {} bucket {}: {}, last sync {}; {} published, \
                         {} publish failures, {} remote applied, {} refused, {} lifted, {} peers \
                         reporting{}",
                        f.host,
                        f.servers.join(","),
                        f.bucket,
                        if f.up { "up" } else { "DOWN" },
                        f.last_sync_unix.map_or_else(
                            || "never".to_owned(),
                            |at| format!("{:.0}s ago", (unix_now() - at).max(0.0))
                        ),
                        f.published,
                        f.publish_failures,
                        f.remote_applied,
                        f.remote_refused,
                        f.remote_deleted,
                        f.peers_reporting,
                        f.last_error
                            .as_ref()
                            .map_or_else(String::new, |e| format!(" (last error: {e})"))
                    ),
                }
            }
        }
    }
    let unprotected: Vec<String> = interfaces
        .into_iter()
        .filter(|i| !i.attached)
        .map(|i| i.name)
        .collect();
    if unprotected.is_empty() {
        Ok(())
    } else {
        Err(Unprotected(unprotected).into())
    }
}

pub(super) fn why(pins: &Pins, addr: IpAddr, json: bool, socket_flag: Option<&Path>) -> Result<()> {
    let maps = open(pins)?;
    let allowed = maps.is_allowed(addr)?;
    let block = maps.covering_block(addr)?;
    // Live rates and the decision, when the daemon runs.
    let live = match control::request(&socket(socket_flag), Request::Why { addr }) {
        Ok(Reply::Why(why)) => Some(why),
        Ok(other) => anyhow::bail!("the daemon answered `why` with {other:?}"),
        Err(ClientError::DaemonDown { .. }) => None,
        Err(err) => return Err(err.into()),
    };
    let blocked = !allowed && block.as_ref().is_some_and(|b| !b.expired);
    if json {
        return print_json(&json!({
            "addr": addr,
            "blocked": blocked,
            "allow_listed": allowed,
            "block": block,
            "detector": live,
        }));
    }
    if allowed {
        println!("{addr} is on the allow list: never dropped");
    }
    match &block {
        Some(b) => println!(
            "{addr} is covered by block {} ({}{} rule/reason '{}'), {} hits, ttl {}{}",
            b.target,
            b.kind,
            b.origin_host
                .as_ref()
                .map_or_else(String::new, |h| format!(" from {h},")),
            b.reason,
            b.hits,
            ttl_text(b.ttl_remaining_secs, b.expired),
            if allowed {
                " — not enforced: allow list wins"
            } else {
                ""
            }
        ),
        None if !allowed => println!("{addr} is not blocked"),
        None => {}
    }
    let live_adaptive = live.as_ref().and_then(|w| w.adaptive.clone());
    match live {
        Some(why) => {
            for r in &why.rates {
                println!(
                    "rule {}: observed {:.1} req/s, threshold {:.1} req/s",
                    r.rule, r.rate, r.threshold
                );
            }
            if let Some(d) = why.decision.as_ref().filter(|d| d.origin == Origin::Fleet) {
                println!(
                    "decision: {} blocked by fleet host {}, reason '{}', offence {}, ttl {}s, {}s left",
                    d.target,
                    d.origin_host.as_deref().unwrap_or("?"),
                    d.rule,
                    d.offence,
                    d.ttl_secs,
                    d.ttl_remaining_secs
                );
            } else if let Some(d) = why
                .decision
                .as_ref()
                .filter(|d| d.origin == Origin::Crowdsec)
            {
                println!(
                    "decision: {} blocked by CrowdSec, scenario '{}', ttl {}s, {}s left",
                    d.target, d.rule, d.ttl_secs, d.ttl_remaining_secs
                );
            } else if let Some(d) = &why.decision {
                println!(
                    "decision: {} blocked by {:?} '{}' at {:.1} req/s (threshold {:.1}), offence {}, \
                     ttl {}s, {}s left",
                    d.target,
                    d.origin,
                    d.rule,
                    d.rate,
                    d.threshold,
                    d.offence,
                    d.ttl_secs,
                    d.ttl_remaining_secs
                );
            }
        }
        None => println!("(daemon not reachable: no live rates)"),
    }
    if let Some(a) = live_adaptive {
        println!(
            "adaptive: service {} under attack ({:?}) at {:.0} req/s (baseline {:.0} req/s, to be \
             brought back to {:.0}); threshold max(floor {:.1}, k {:.1} × baseline p{} of \
             per-source rates {:.2}) req/s",
            a.service,
            a.trigger,
            a.service_rps,
            a.baseline_rps,
            a.target_rps,
            a.floor_rps,
            a.k,
            a.quantile.0 * 100.0,
            a.quantile.1
        );
        if let Some(f) = &a.fingerprint {
            println!(
                "fingerprint: {} {}: {:.1} % of the service's requests, {:.2} % in the baseline{}",
                f.id,
                f.label,
                f.share * 100.0,
                f.baseline_share * 100.0,
                if f.attack {
                    format!(
                        " — an attack fingerprint, its senders held to {:.1} req/s",
                        a.threshold_rps
                    )
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(())
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub(super) fn top(limit: usize, json: bool, socket_flag: Option<&Path>) -> Result<()> {
    let top = match control::request(&socket(socket_flag), Request::Top { limit })? {
        Reply::Top(top) => top,
        other => anyhow::bail!("the daemon answered `top` with {other:?}"),
    };
    if json {
        return print_json(&top);
    }
    println!("{:<40} {:>12} {:>8}  TOP PATHS", "KEY", "REQ/S", "SAMPLES");
    for row in &top.top {
        println!(
            "{:<40} {:>12.1} {:>8}  {}",
            row.key.to_string(),
            row.rate,
            row.samples,
            row.paths.join(" ")
        );
    }
    Ok(())
}
