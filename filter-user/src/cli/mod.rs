//! The operator command line: argument definitions ([`args`]), one module per command group
//! ([`blocks`] edits the maps, [`lists`] imports and exports block lists, [`inspect`] reads the
//! maps and asks the daemon, [`watch`] refreshes `top` and `stats` as a live view on a
//! [`terminal`]), one output module.
//! Commands work on the pinned maps directly (daemon up or down), take the pin lock for every
//! mutation and validate all input before writing anything.

pub mod args;
mod baseline;
mod blocks;
mod inspect;
mod lists;
mod output;
mod terminal;
mod watch;

pub use lists::ImportError;

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;

use crate::bpf::{maps::Maps, pins::Pins};
use args::{Cli, Command};

/// A protected interface is not protected now (exit code 6).
#[derive(Debug, thiserror::Error)]
#[error("not protected now: {} (the XDP program is not attached; see `floodgate status`)", .0.join(", "))]
pub struct Unprotected(pub Vec<String>);

/// Runs one parsed command line.
pub fn dispatch(cli: Cli) -> Result<()> {
    let pins = Pins::new(&cli.pin_root);
    match cli.command {
        Command::Run(args) => crate::daemon::run(&pins, args),
        Command::Block(cmd) => blocks::block(&pins, cmd, cli.socket.as_deref()),
        Command::Allow(cmd) => blocks::allow(&pins, cmd),
        Command::Stats(a) if a.watch.watch => watch::stats(&pins, a.json, a.watch),
        Command::Stats(a) => inspect::stats(&pins, a.json),
        Command::Status(a) => inspect::status(&pins, a.json, cli.socket.as_deref()),
        Command::Baseline(a) => baseline::show(a.json, &socket(cli.socket.as_deref())),
        Command::Mode { mode } => blocks::set_mode(&pins, mode),
        Command::Why { addr, json } => inspect::why(&pins, addr, json, cli.socket.as_deref()),
        Command::Top { limit, json, watch } if watch.watch => {
            watch::top(limit, json, watch, &socket(cli.socket.as_deref()))
        }
        Command::Top { limit, json, .. } => inspect::top(limit, json, cli.socket.as_deref()),
        Command::Reload(a) => reload(a.json, cli.socket.as_deref()),
        Command::CheckConfig { file } => check_config(file),
        Command::ProxySnippet {
            proxy,
            feed_socket,
            feed_file,
            config,
        } => proxy_snippet(proxy, feed_socket, feed_file, config),
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

fn open(pins: &Pins) -> Result<Maps> {
    pins.check()?;
    Ok(Maps::open(pins)?)
}

/// The control socket: `--socket`, `$FLOODGATE_CONTROL_SOCKET`, the configuration file's
/// `[control] socket`, or the default.
fn socket(flag: Option<&std::path::Path>) -> std::path::PathBuf {
    let configured = || {
        let path = std::path::Path::new(crate::config::DEFAULT_PATH);
        if !path.exists() {
            return None;
        }
        match crate::config::load_file(path) {
            Ok(settings) => Some(settings.control.socket),
            Err(err) => {
                log::warn!("{err}; using the default control socket");
                None
            }
        }
    };
    let configured = if flag.is_some() || std::env::var_os(crate::control::SOCKET_ENV).is_some() {
        None
    } else {
        configured()
    };
    crate::control::socket_path(flag, configured)
}

fn proxy_snippet(
    proxy: crate::sensor::proxy_format::Proxy,
    feed_socket: Option<std::path::PathBuf>,
    feed_file: Option<std::path::PathBuf>,
    config: Option<std::path::PathBuf>,
) -> Result<()> {
    use crate::sensor::proxy_format::{Proxy, Via, snippet};
    let (file, socket) = if feed_socket.is_some() || feed_file.is_some() {
        (feed_file, feed_socket)
    } else {
        let settings = settings(config)?;
        (settings.proxy.file, settings.proxy.socket)
    };
    let utf8 = |p: std::path::PathBuf| {
        p.into_os_string()
            .into_string()
            .map_err(|_| anyhow::anyhow!("the feed path is not UTF-8"))
    };
    let (file, socket) = (file.map(utf8).transpose()?, socket.map(utf8).transpose()?);
    let via = match (proxy, &file, &socket) {
        (Proxy::Nginx, Some(file), _) => Via::File(file),
        (_, _, Some(socket)) => Via::Socket(socket),
        _ => anyhow::bail!(
            "the configuration turns the {} off ([proxy] socket = \"off\"{}); pass --feed-socket \
             PATH or set it",
            if proxy == Proxy::Nginx {
                "feed"
            } else {
                "feed socket HAProxy needs"
            },
            if proxy == Proxy::Nginx {
                ", file = \"off\""
            } else {
                ""
            }
        ),
    };
    print!("{}", snippet(proxy, via).map_err(anyhow::Error::msg)?);
    Ok(())
}

fn reload(json: bool, socket_flag: Option<&std::path::Path>) -> Result<()> {
    let reloaded =
        match crate::control::request(&socket(socket_flag), crate::control::Request::Reload)? {
            crate::control::Reply::Reloaded(reloaded) => reloaded,
            other => anyhow::bail!("the daemon answered `reload` with {other:?}"),
        };
    if json {
        return output::print_json(&reloaded);
    }
    println!(
        "reloaded {}: {} rules, {} allow entries, ports {:?}",
        reloaded.source,
        reloaded.rules.len(),
        reloaded.allow,
        reloaded.ports
    );
    Ok(())
}

/// The settings of `config`, else of /etc/floodgate/floodgate.toml if it exists, else the
/// built-in default (for commands that need a setting but not the daemon).
fn settings(
    config: Option<std::path::PathBuf>,
) -> Result<crate::config::Settings, crate::config::ConfigError> {
    let default = std::path::Path::new(crate::config::DEFAULT_PATH);
    match config {
        Some(path) => crate::config::load_file(&path),
        None if default.exists() => crate::config::load_file(default),
        None => Ok(crate::config::Settings::default()),
    }
}

fn check_config(file: Option<std::path::PathBuf>) -> Result<()> {
    let path = file.unwrap_or_else(|| crate::config::DEFAULT_PATH.into());
    let settings = crate::config::load_file(&path)?;
    println!(
        "{}: ok ({} rules, {} allow entries, ports {:?})",
        path.display(),
        settings.rules.len(),
        settings.allow.len(),
        settings.filter.ports
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
            crate::bpf::attach::detach_interface(pins, iface)?;
            println!("detached from {iface}");
        }
        None => {
            let ifaces = crate::bpf::attach::detach_all(pins)?;
            println!(
                "detached from {} interface(s) and removed {}",
                ifaces.len(),
                pins.root().display()
            );
        }
    }
    Ok(())
}
