//! Commands that change the pinned state: `block`, `allow`, `mode`. Block entries go through
//! the same map writer as the daemon's decisions; afterwards the running daemon (if any) is
//! told which entries changed, so that its expiry index stays in step.

use std::path::Path;

use anyhow::Result;
use filter_common::config;

use super::{
    args::{AllowCommand, BlockCommand, Mode},
    open,
    output::{print_blocks, print_json},
    socket,
};
use crate::{
    bpf::{maps::block_entry, pins::Pins},
    clock::format_duration,
    control::{self, ClientError, Request},
    enforce::{Origin, writer::MapWriter},
    target::Target,
};

pub(super) fn block(pins: &Pins, cmd: BlockCommand, socket_flag: Option<&Path>) -> Result<()> {
    match cmd {
        BlockCommand::Add {
            targets,
            ttl,
            reason: text,
            fleet,
        } => {
            let ttl = ttl.filter(|t| !t.is_zero());
            let maps = open(pins)?;
            let mut writer = MapWriter::open(pins)?;
            let _lock = pins.lock()?;
            for target in &targets {
                if maps.is_allowed(target.ip)? {
                    log::warn!(
                        "{target} is on the allow list: the allow list wins, the block will not drop"
                    );
                }
            }
            for target in &targets {
                writer.write(
                    *target,
                    &block_entry(ttl, Origin::Operator.reason_code(), &text),
                )?;
                println!(
                    "blocked {target} ({})",
                    ttl.map_or_else(
                        || "no expiry".to_owned(),
                        |t| format!("ttl {}", format_duration(t))
                    )
                );
            }
            tell_daemon(socket_flag, targets.clone(), false);
            if fleet {
                tell_fleet(
                    socket_flag,
                    Request::FleetShare {
                        targets,
                        ttl_secs: ttl.map(|t| t.as_secs()),
                        reason: text,
                    },
                )?;
            }
            Ok(())
        }
        BlockCommand::Del { targets, fleet } => {
            pins.check()?;
            let mut writer = MapWriter::open(pins)?;
            let _lock = pins.lock()?;
            let mut missing = Vec::new();
            for target in &targets {
                if writer.remove(*target)? {
                    println!("unblocked {target}");
                } else {
                    missing.push(target.to_string());
                }
            }
            writer.tidy_hint(true)?;
            tell_daemon(socket_flag, targets.clone(), false);
            if fleet {
                // Lifted fleet-wide even where this host held no entry of its own.
                tell_fleet(socket_flag, Request::FleetLift { targets })?;
                return Ok(());
            }
            anyhow::ensure!(missing.is_empty(), "not blocked: {}", missing.join(", "));
            Ok(())
        }
        BlockCommand::List(a) => {
            let blocks = open(pins)?.blocks()?;
            if a.json {
                print_json(&blocks)
            } else {
                print_blocks(&blocks);
                Ok(())
            }
        }
        BlockCommand::Import(args) => super::lists::import(pins, args, socket_flag),
        BlockCommand::Export(a) => super::lists::export(pins, a.json),
        BlockCommand::Flush => {
            pins.check()?;
            let mut writer = MapWriter::open(pins)?;
            let _lock = pins.lock()?;
            let removed = writer.flush()?;
            writer.tidy_hint(true)?;
            println!("removed {removed} block entries");
            tell_daemon(socket_flag, Vec::new(), true);
            Ok(())
        }
    }
}

/// Tells a running daemon which entries the operator changed. Without a daemon there is
/// nothing to tell: it reads the maps when it starts.
pub(super) fn tell_daemon(socket_flag: Option<&Path>, targets: Vec<Target>, all: bool) {
    let path = socket(socket_flag);
    match control::request(&path, Request::Refresh { targets, all }) {
        Ok(_) | Err(ClientError::DaemonDown { .. }) => {}
        Err(err) => log::warn!(
            "the entries are written, but the running daemon was not told ({err}); it \
             picks them up when it sweeps or restarts"
        ),
    }
}

/// Hands a fleet request to the running daemon, which owns the NATS connection.
fn tell_fleet(socket_flag: Option<&Path>, request: Request) -> Result<()> {
    let path = socket(socket_flag);
    match control::request(&path, request) {
        Ok(control::Reply::FleetQueued { queued, up }) => {
            if up {
                println!("shared with the fleet ({queued})");
            } else {
                println!(
                    "queued for the fleet ({queued}): NATS is unreachable now, the daemon \
                     publishes them when it is back"
                );
            }
            Ok(())
        }
        Ok(control::Reply::Error { error }) => {
            anyhow::bail!("done on this host, not shared with the fleet: {error}")
        }
        Ok(other) => anyhow::bail!("the daemon answered a fleet request with {other:?}"),
        Err(err) => anyhow::bail!(
            "done on this host, not shared with the fleet: --fleet needs the running daemon \
             ({err})"
        ),
    }
}

pub(super) fn allow(pins: &Pins, cmd: AllowCommand) -> Result<()> {
    match cmd {
        AllowCommand::Add { targets } => {
            let mut maps = open(pins)?;
            let _lock = pins.lock()?;
            for target in targets {
                maps.allow(target)?;
                println!("allowed {target}");
            }
            Ok(())
        }
        AllowCommand::Del { targets } => {
            let mut maps = open(pins)?;
            let _lock = pins.lock()?;
            let mut missing = Vec::new();
            for target in targets {
                if maps.disallow(target)? {
                    println!("removed {target} from the allow list");
                } else {
                    missing.push(target.to_string());
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
                print_json(&allowed)
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

pub(super) fn set_mode(pins: &Pins, mode: Mode) -> Result<()> {
    let mut maps = open(pins)?;
    let _lock = pins.lock()?;
    maps.set_setting(config::MONITOR, u32::from(matches!(mode, Mode::Monitor)))?;
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
