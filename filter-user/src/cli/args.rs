//! Command-line definitions (clap derive). The doc comments are the `--help` text; the man page
//! and shell completions are generated from these types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::target::Target;

/// Exit codes, documented in the man page.
pub(crate) const EXIT_CODES: &str = "EXIT STATUS:
  0  success
  1  runtime failure (kernel, map or I/O error)
  2  bad input: malformed address, prefix, TTL, option, configuration or block list line
     (also a configuration `reload` refused)
  3  nothing loaded: no Floodgate program pinned (start `floodgate run` first)
  4  permission denied: run as root or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON
  5  the daemon is not running (for commands that need its live state)
  6  `status`: a protected interface is not protected now (the XDP program is not attached)";

/// Floodgate: drops HTTP floods at XDP, before the kernel stack spends anything on them.
///
/// `run` is the daemon; every other command works on the pinned maps under the pin root, also
/// while the daemon is down (`top` and `why`'s live rates need the daemon).
#[derive(Debug, Parser)]
#[command(name = "floodgate", version, after_help = EXIT_CODES, max_term_width = 100)]
pub struct Cli {
    /// Root of the pinned state (bpffs).
    #[arg(long, global = true, env = "FLOODGATE_PIN_ROOT", default_value = filter_common::DEFAULT_PIN_ROOT)]
    pub pin_root: PathBuf,

    /// Control socket of the running daemon, for `top`, `why` and `block` (default:
    /// $FLOODGATE_CONTROL_SOCKET, else `[control] socket` of /etc/floodgate/floodgate.toml,
    /// else /run/floodgate/control.sock).
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: load or re-use the pinned filter, attach it, detect floods, write blocks.
    Run(RunArgs),
    /// Block addresses or prefixes.
    #[command(subcommand)]
    Block(BlockCommand),
    /// Allow-list addresses or prefixes (the allow list always wins over blocks).
    #[command(subcommand)]
    Allow(AllowCommand),
    /// Packet counters summed over CPUs (with `--watch`, refreshed with rates per second).
    Stats(StatsArgs),
    /// Interfaces, mode, program id and map fill levels.
    Status(JsonArg),
    /// The adaptive detector's learned baselines per service: normal request rate, per-source
    /// rate quantiles, the threshold it would block above, and the attack state (asks the
    /// running daemon).
    Baseline(JsonArg),
    /// Switch between enforcing (drop) and monitor (count "would drop", pass) mode.
    Mode {
        /// The mode to switch to.
        mode: Mode,
    },
    /// Explain why an address is (or is not) blocked.
    Why {
        /// The address to explain.
        addr: std::net::IpAddr,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Top talkers with their request rates and most-hit paths (asks the running daemon).
    /// With `--watch`: a live view that also shows blocks/s, drops/s by reason, the sampling
    /// factor and evidence events/s by sensor.
    Top {
        /// How many clients to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON (with `--watch`: one JSON object per line).
        #[arg(long)]
        json: bool,
        /// Refresh options.
        #[command(flatten)]
        watch: WatchArgs,
    },
    /// Ask the running daemon to re-read its configuration and apply it (what SIGHUP does;
    /// the unit's `systemctl reload`). An invalid file is refused with the reason (exit 2)
    /// and the running configuration stays in force.
    Reload(JsonArg),
    /// Validate a configuration file without touching the kernel.
    CheckConfig {
        /// The file (default: /etc/floodgate/floodgate.toml).
        file: Option<PathBuf>,
    },
    /// Detach the program from every interface and remove everything Floodgate pinned.
    Detach {
        /// Only detach from this interface (the maps and other links stay).
        #[arg(long)]
        iface: Option<String>,
    },
    /// Print the lines that make nginx (`http` context) or HAProxy (a `frontend`) send the
    /// daemon one event per request: Floodgate's log format and where to send it.
    ProxySnippet {
        /// The proxy.
        proxy: crate::sensor::proxy_format::Proxy,
        /// Send the feed to this socket (for nginx: syslog datagrams instead of the file).
        #[arg(long, conflicts_with = "feed_file")]
        feed_socket: Option<PathBuf>,
        /// nginx only: append the feed to this file (default: `[proxy] file`, else the
        /// socket, `[proxy] socket`, of the configuration).
        #[arg(long)]
        feed_file: Option<PathBuf>,
        /// Configuration file to read `[proxy] socket` from (default:
        /// /etc/floodgate/floodgate.toml if it exists, else the built-in default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

/// `--json` for listings.
#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print JSON (with `--watch`: one JSON object per line).
    #[arg(long)]
    pub json: bool,
    /// Refresh options.
    #[command(flatten)]
    pub watch: WatchArgs,
}

/// `--watch` and its options, shared by `top` and `stats`.
#[derive(Clone, Copy, Debug, Args)]
pub struct WatchArgs {
    /// Refresh until interrupted: a full-screen view on a terminal (restored on exit), else
    /// one timestamped block of plain lines per refresh.
    #[arg(long)]
    pub watch: bool,
    /// Time between refreshes (e.g. 1s, 500ms; at least 100ms).
    #[arg(long, value_parser = parse_interval, default_value = "1s", requires = "watch")]
    pub interval: std::time::Duration,
    /// Stop after this many refreshes (default: until interrupted).
    #[arg(long, requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

/// Options of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Interface to protect (repeatable). Overrides the configuration's `interfaces`.
    #[arg(long = "iface")]
    pub ifaces: Vec<String>,
    /// Attach in generic (SKB) mode instead of driver mode.
    #[arg(long)]
    pub skb: bool,
    /// Configuration file; without it the embedded default configuration is used, unless
    /// /etc/floodgate/floodgate.toml exists.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Detach and remove the pins on exit (by default the filter keeps enforcing).
    #[arg(long)]
    pub detach_on_exit: bool,
    /// Prometheus listen address, overriding the configuration ("off" disables).
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// Control socket path, overriding the configuration.
    #[arg(long)]
    pub control_socket: Option<PathBuf>,
}

/// `block` subcommands.
#[derive(Debug, Subcommand)]
pub enum BlockCommand {
    /// Block addresses or prefixes (e.g. 198.18.0.7, 198.18.4.0/24, 2001:2::/64).
    Add {
        /// Addresses or prefixes (host bits must be zero).
        #[arg(required = true)]
        targets: Vec<Target>,
        /// Time to live (30s, 10m, 2h, 1d); 0 or omitted: never expires.
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<std::time::Duration>,
        /// Free text kept with the entry (at most 32 bytes are stored).
        #[arg(long, default_value = "manual")]
        reason: String,
        /// Also block them on every host of the fleet (`[fleet]`; the running daemon publishes
        /// them; without a TTL they last the fleet's max_ttl elsewhere).
        #[arg(long)]
        fleet: bool,
    },
    /// Remove block entries.
    Del {
        /// Addresses or prefixes, exactly as blocked.
        #[arg(required = true)]
        targets: Vec<Target>,
        /// Also lift them on every host of the fleet (through the running daemon).
        #[arg(long)]
        fleet: bool,
    },
    /// List block entries with reason, hits and remaining TTL.
    List(JsonArg),
    /// Remove every block entry.
    Flush,
    /// Block every address or prefix of a list: one per line, `#` and `;` start comments, text
    /// after the first word is ignored (FireHOL netsets, Spamhaus DROP, `block export`). Bad
    /// lines and lines the guard refuses (allow-listed, wider than guard.max_prefix_v4/v6) are
    /// reported with their numbers and nothing is written, unless --skip-invalid.
    Import(ImportArgs),
    /// Write the entries in force as a list `block import` reads back: one target per line,
    /// its remaining TTL and reason in a comment.
    Export(JsonArg),
}

/// Options of `block import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The list; `-` reads standard input.
    pub file: PathBuf,
    /// Time to live of every entry (30s, 10m, 2h, 1d; 0: never expires). Default: the TTL an
    /// exported line carries, else never.
    #[arg(long, value_parser = parse_ttl)]
    pub ttl: Option<std::time::Duration>,
    /// Free text kept with every entry (at most 32 bytes are stored). Default: the reason an
    /// exported line carries, else "import".
    #[arg(long)]
    pub reason: Option<String>,
    /// Check the list and report what would be written; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Import the usable lines and report the others, instead of writing nothing.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Configuration file for the guard's limits (default: /etc/floodgate/floodgate.toml if it
    /// exists, else the built-in default).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

/// `allow` subcommands.
#[derive(Debug, Subcommand)]
pub enum AllowCommand {
    /// Allow addresses or prefixes.
    Add {
        /// Addresses or prefixes.
        #[arg(required = true)]
        targets: Vec<Target>,
    },
    /// Remove allow entries.
    Del {
        /// Addresses or prefixes, exactly as allowed.
        #[arg(required = true)]
        targets: Vec<Target>,
    },
    /// List allow entries.
    List(JsonArg),
}

/// Filter modes.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Mode {
    /// Drop packets that match a block entry.
    Enforce,
    /// Count matches as "would drop" and pass them.
    Monitor,
}

fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let interval = text
        .parse::<crate::config::Duration>()
        .map_err(|e| e.to_string())?
        .0;
    if interval < std::time::Duration::from_millis(100) {
        return Err(format!("{text} is shorter than 100ms"));
    }
    Ok(interval)
}

fn parse_ttl(text: &str) -> Result<std::time::Duration, crate::config::DurationError> {
    text.parse::<crate::config::Duration>().map(|d| d.0)
}
