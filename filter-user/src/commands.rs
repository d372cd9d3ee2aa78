//! The operator commands: they work on the pinned maps directly (daemon up or down), take the
//! pin lock for every mutation, validate all input before writing anything, and print a table
//! or `--json`.

use std::{io::Write as _, net::IpAddr};

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;
use filter_common::{capacity, config, counter, reason};
use serde_json::json;

use crate::{
    attach,
    cli::{AllowCommand, BlockCommand, Cli, Command, Mode},
    clock::format_duration,
    control,
    filter::{BlockView, Filter, block_entry},
    pins::Pins,
};

/// The daemon is not running (exit code 5).
#[derive(Debug, thiserror::Error)]
#[error("the floodgate daemon is not running (no control socket at {0}); `top` needs it")]
pub struct DaemonDown(pub std::path::PathBuf);

/// Runs one parsed command line.
pub fn dispatch(cli: Cli) -> Result<()> {
    let pins = Pins::new(&cli.pin_root);
    match cli.command {
        Command::Run(args) => crate::daemon::run(&pins, args),
        Command::Block(cmd) => block(&pins, cmd),
        Command::Allow(cmd) => allow(&pins, cmd),
        Command::Stats(a) => stats(&pins, a.json),
        Command::Status(a) => status(&pins, a.json),
        Command::Mode { mode } => set_mode(&pins, mode),
        Command::Why { addr, json } => why(&pins, addr, json),
        Command::Top { limit, json } => top(limit, json),
        Command::CheckConfig { file } => check_config(file),
        Command::Detach { iface } => detach(&pins, iface.as_deref()),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "floodgate",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .context("render man page")?;
            Ok(())
        }
    }
}

fn open(pins: &Pins) -> Result<Filter> {
    pins.check()?;
    Ok(Filter::open(pins)?)
}

fn print_json(value: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn ttl_text(secs: Option<u64>, expired: bool) -> String {
    match (secs, expired) {
        (_, true) => "expired".into(),
        (None, _) => "never".into(),
        (Some(s), _) => format_duration(std::time::Duration::from_secs(s)),
    }
}

fn print_blocks(blocks: &[BlockView]) {
    println!(
        "{:<40} {:<10} {:<32} {:>12} {:>10}",
        "TARGET", "KIND", "REASON", "HITS", "TTL"
    );
    for b in blocks {
        println!(
            "{:<40} {:<10} {:<32} {:>12} {:>10}",
            b.target.to_string(),
            b.kind,
            b.reason,
            b.hits,
            ttl_text(b.ttl_remaining_secs, b.expired)
        );
    }
}

fn block(pins: &Pins, cmd: BlockCommand) -> Result<()> {
    match cmd {
        BlockCommand::Add {
            targets,
            ttl,
            reason: text,
        } => {
            let ttl = ttl.filter(|t| !t.is_zero());
            let mut filter = open(pins)?;
            let _lock = pins.lock()?;
            for target in &targets {
                if filter.is_allowed(target.ip)? {
                    log::warn!(
                        "{target} is on the allow list: the allow list wins, the block will not drop"
                    );
                }
            }
            for target in targets {
                filter.block(target, &block_entry(ttl, reason::MANUAL, &text))?;
                println!(
                    "blocked {target} ({})",
                    ttl.map_or_else(
                        || "no expiry".to_owned(),
                        |t| format!("ttl {}", format_duration(t))
                    )
                );
            }
            Ok(())
        }
        BlockCommand::Del { targets } => {
            let mut filter = open(pins)?;
            let _lock = pins.lock()?;
            let mut missing = Vec::new();
            for target in targets {
                if filter.unblock(target)? {
                    println!("unblocked {target}");
                } else {
                    missing.push(target.to_string());
                }
            }
            anyhow::ensure!(missing.is_empty(), "not blocked: {}", missing.join(", "));
            Ok(())
        }
        BlockCommand::List(a) => {
            let blocks = open(pins)?.blocks()?;
            if a.json {
                print_json(&serde_json::to_value(&blocks)?)
            } else {
                print_blocks(&blocks);
                Ok(())
            }
        }
        BlockCommand::Flush => {
            let mut filter = open(pins)?;
            let _lock = pins.lock()?;
            let removed = filter.flush()?;
            println!("removed {removed} block entries");
            Ok(())
        }
    }
}

fn allow(pins: &Pins, cmd: AllowCommand) -> Result<()> {
    match cmd {
        AllowCommand::Add { targets } => {
            let mut filter = open(pins)?;
            let _lock = pins.lock()?;
            for target in targets {
                filter.allow(target)?;
                println!("allowed {target}");
            }
            Ok(())
        }
        AllowCommand::Del { targets } => {
            let mut filter = open(pins)?;
            let _lock = pins.lock()?;
            let mut missing = Vec::new();
            for target in targets {
                if filter.disallow(target)? {
                    println!("removed {target} from the allow list")
                } else {
                    missing.push(target.to_string())
                }
            }
            anyhow::ensure!(
                missing.is_empty(),
                "not on the allow list: {}",
                missing.join(", ")
            );
            Ok(())
        }
        AllowCommand::List(a) => {
            let allowed = open(pins)?.allowed()?;
            if a.json {
                print_json(&serde_json::to_value(&allowed)?)
            } else {
                println!("TARGET");
                for entry in allowed {
                    println!("{}", entry.target);
                }
                Ok(())
            }
        }
    }
}

fn stats(pins: &Pins, json: bool) -> Result<()> {
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

fn status(pins: &Pins, json: bool) -> Result<()> {
    let filter = open(pins)?;
    let program =
        aya::programs::Xdp::from_pin(pins.program(), aya_obj::programs::XdpAttachType::Interface)
            .context("open pinned program")?;
    let program_id = program.info().context("program info")?.id();
    let ifaces = pins.linked_interfaces()?;
    let (exact, prefix) = filter.block_counts();
    let mode = if filter.monitor()? {
        "monitor"
    } else {
        "enforce"
    };
    let value = json!({
        "pin_root": pins.root(),
        "layout": filter_common::LAYOUT_VERSION,
        "program_id": program_id,
        "interfaces": ifaces,
        "mode": mode,
        "ports": filter.ports()?,
        "sample_every": filter.setting(config::SAMPLE_EVERY)?.max(1),
        "maps": {
            "block_exact": { "entries": exact, "capacity": capacity::BLOCK_EXACT },
            "block_prefix": { "entries": prefix, "capacity": capacity::BLOCK_PREFIX },
            "allow": { "entries": filter.allow_count(), "capacity": capacity::ALLOW },
        },
    });
    if json {
        return print_json(&value);
    }
    println!(
        "pin root      {} (layout {})",
        pins.root().display(),
        filter_common::LAYOUT_VERSION
    );
    println!("program id    {program_id}");
    println!(
        "interfaces    {}",
        if ifaces.is_empty() {
            "(none)".to_owned()
        } else {
            ifaces.join(", ")
        }
    );
    println!("mode          {mode}");
    println!("ports         {:?}", filter.ports()?);
    println!(
        "sample every  {}",
        filter.setting(config::SAMPLE_EVERY)?.max(1)
    );
    println!("block exact   {exact} / {}", capacity::BLOCK_EXACT);
    println!("block prefix  {prefix} / {}", capacity::BLOCK_PREFIX);
    println!(
        "allow         {} / {}",
        filter.allow_count(),
        capacity::ALLOW
    );
    Ok(())
}

fn set_mode(pins: &Pins, mode: Mode) -> Result<()> {
    let mut filter = open(pins)?;
    let _lock = pins.lock()?;
    filter.set_setting(config::MONITOR, u32::from(matches!(mode, Mode::Monitor)))?;
    println!(
        "mode: {}",
        if matches!(mode, Mode::Monitor) {
            "monitor"
        } else {
            "enforce"
        }
    );
    Ok(())
}

fn why(pins: &Pins, addr: IpAddr, json: bool) -> Result<()> {
    let filter = open(pins)?;
    let allowed = filter.is_allowed(addr)?;
    let block = filter.covering_block(addr)?;
    // Live rate state, when the daemon runs.
    let live = control::request(
        &control::default_socket(),
        &json!({ "cmd": "why", "addr": addr }),
    )
    .ok();
    let blocked = !allowed && block.as_ref().is_some_and(|b| !b.expired);
    let value = json!({
        "addr": addr,
        "blocked": blocked,
        "allow_listed": allowed,
        "block": block,
        "detector": live,
    });
    if json {
        return print_json(&value);
    }
    if allowed {
        println!("{addr} is on the allow list: never dropped");
    }
    match &block {
        Some(b) => println!(
            "{addr} is covered by block {} ({} rule/reason '{}'), {} hits, ttl {}{}",
            b.target,
            b.kind,
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
    match live {
        Some(v) => {
            if let Some(rates) = v.get("rates").and_then(|r| r.as_array()) {
                for r in rates {
                    println!(
                        "rule {}: observed {:.1} req/s, threshold {:.1} req/s",
                        r["rule"].as_str().unwrap_or("?"),
                        r["rate"].as_f64().unwrap_or(0.0),
                        r["threshold"].as_f64().unwrap_or(0.0)
                    );
                }
            }
            if let Some(d) = v.get("decision").filter(|d| !d.is_null()) {
                println!("last decision: {d}");
            }
        }
        None => println!("(daemon not reachable: no live rates)"),
    }
    Ok(())
}

fn top(limit: usize, json: bool) -> Result<()> {
    let socket = control::default_socket();
    let reply = control::request(&socket, &json!({ "cmd": "top", "limit": limit }))
        .map_err(|_| DaemonDown(socket))?;
    if json {
        return print_json(&reply);
    }
    println!(
        "{:<40} {:<20} {:>12} {:>8}  TOP PATHS",
        "KEY", "RULE", "REQ/S", "SAMPLES"
    );
    for row in reply["top"].as_array().into_iter().flatten() {
        println!(
            "{:<40} {:<20} {:>12.1} {:>8}  {}",
            row["key"].as_str().unwrap_or(""),
            row["rule"].as_str().unwrap_or(""),
            row["rate"].as_f64().unwrap_or(0.0),
            row["samples"].as_u64().unwrap_or(0),
            row["paths"]
                .as_array()
                .map(|p| p
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(" "))
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn check_config(file: Option<std::path::PathBuf>) -> Result<()> {
    let path = file.unwrap_or_else(|| crate::config::DEFAULT_PATH.into());
    let settings = crate::config::load_file(&path)?;
    println!(
        "{}: ok ({} rules, {} allow entries, ports {:?})",
        path.display(),
        settings.rules.len(),
        settings.allow.len(),
        settings.ports
    );
    Ok(())
}

fn detach(pins: &Pins, iface: Option<&str>) -> Result<()> {
    pins.check()?;
    if !pins.layout_dir().exists() {
        println!("nothing pinned under {}", pins.root().display());
        return Ok(());
    }
    let _lock = pins.lock()?;
    match iface {
        Some(iface) => {
            attach::detach_interface(pins, iface)?;
            println!("detached from {iface}");
        }
        None => {
            let ifaces = attach::detach_all(pins)?;
            println!(
                "detached from {} interface(s) and removed {}",
                ifaces.len(),
                pins.root().display()
            );
        }
    }
    Ok(())
}
