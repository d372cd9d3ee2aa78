//! Orchestration for Floodgate: `cargo xtask setup | build | run | test | bench | loadtest |
//! package`. Every command first installs what it needs (see `setup`). The eBPF crates
//! (`filter-ebpf`, `bench-ebpf`) are never built for the host: their build scripts' crates
//! (`filter-user`, `floodgate-tests`) build them, so workspace builds exclude them.

mod fuzz;
mod package;
mod setup;

use std::process::Command;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Floodgate's build, test and benchmark tasks.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install packages, rust-src, bpf-linker and mount bpffs.
    Setup,
    /// Build the workspace (release).
    Build,
    /// Build and run the daemon: `cargo xtask run -- --iface eth0` (arguments go to `floodgate run`).
    Run {
        /// Arguments for `floodgate run`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the whole test suite (unit, verdict, end-to-end, service, package).
    Test,
    /// The load-test kit: namespaces, nginx, the daemon, a wrk flood from many addresses and
    /// legitimate clients; prints a report and writes bench-results/loadtest.png.
    Loadtest,
    /// Fuzz the parsers (cargo fuzz) for --time seconds in all, and --packets random and mutated
    /// packets through the XDP program.
    Fuzz {
        /// Seconds of coverage-guided fuzzing, split over the targets.
        #[arg(long, default_value_t = 60)]
        time: u64,
        /// Packets through the XDP program.
        #[arg(long, default_value_t = 1_000_000)]
        packets: u64,
    },
    /// Build the Debian package (target/deb/floodgate_VERSION_ARCH.deb).
    Package,
    /// Run a benchmark and write its results under bench-results/.
    Bench {
        /// Which benchmark.
        which: Bench,
        /// Arguments for the benchmark tool (`survival plaintext|https|botnet`: one scenario).
        args: Vec<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Bench {
    /// Per-packet cost through BPF_PROG_TEST_RUN vs minimal and empty programs.
    Verdict,
    /// Daemon ingest, detection latency, memory, sampling vs exact counting.
    Detect,
    /// Drop capacity on a veth pair vs iptables, nftables, generic XDP, minimal XDP, drop-all.
    Drop,
    /// Flood survival of a bounded-capacity app: none vs nginx limit_req vs fail2ban vs
    /// CrowdSec vs Floodgate, over plaintext HTTP/1.1 and over HTTPS with HTTP/2; a botnet
    /// under every per-source rule: none vs limit_req vs static rules vs `[adaptive]`.
    Survival,
    /// The proxy request feed: ingest vs a generic JSON parse, nginx at saturation with the
    /// feed on and off, detection latency over HTTPS vs plaintext.
    Proxy,
    /// `floodgate block import` of 100,000 entries vs `ipset restore` of the same list.
    Import,
    /// 100,000 CrowdSec decisions at once: Floodgate's maps vs crowdsec-firewall-bouncer's
    /// nftables sets.
    Crowdsec,
    /// The fleet path through NATS JetStream: propagation latency p50/p99 of 1,000 decisions
    /// from one host to two others, decisions per second, against CrowdSec's 10 s poll.
    Fleet,
    /// All of them, then BENCHMARKS.md.
    All,
}

pub(crate) fn cargo(env: &setup::Env) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.env("PATH", env.path());
    cmd
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Setup => setup::setup(true).map(|_| ()),
        Task::Build => {
            let env = setup::setup(false)?;
            setup::run(cargo(&env).args([
                "build",
                "--release",
                "--workspace",
                "--exclude",
                "filter-ebpf",
                "--exclude",
                "bench-ebpf",
            ]))
        }
        Task::Run { args } => {
            let env = setup::setup(true)?;
            eprintln!("==> building floodgate (release)");
            setup::run(cargo(&env).args(["build", "--release", "-p", "filter-user"]))?;
            eprintln!("==> floodgate run {}", args.join(" "));
            setup::run(
                Command::new("target/release/floodgate")
                    .arg("run")
                    .args(args),
            )
        }
        Task::Test => test(),
        Task::Loadtest => run_tool("loadtest", &[]),
        Task::Fuzz { time, packets } => {
            let env = setup::setup(true)?;
            fuzz::fuzz(&env, time, packets, true)
        }
        Task::Package => {
            let env = setup::setup(true)?;
            package::package(&env).map(|_| ())
        }
        Task::Bench { which, args } => match which {
            Bench::Verdict => run_tool("bench-verdict", &args),
            Bench::Detect => run_tool("bench-detect", &args),
            Bench::Drop => run_tool("bench-drop", &args),
            Bench::Survival => run_tool("bench-survival", &args),
            Bench::Proxy => run_tool("bench-proxy", &args),
            Bench::Import => run_tool("bench-import", &args),
            Bench::Crowdsec => run_tool("bench-crowdsec", &args),
            Bench::Fleet => run_tool("bench-fleet", &args),
            Bench::All => {
                for tool in [
                    "bench-verdict",
                    "bench-detect",
                    "bench-drop",
                    "bench-survival",
                    "bench-proxy",
                    "bench-import",
                    "bench-crowdsec",
                    "bench-fleet",
                ] {
                    run_tool(tool, &[])?;
                }
                run_tool("bench-report", &[])
            }
        },
    }
}

/// Builds the release binaries (the daemon, the bench tools and the tests crate's `loadgen`,
/// which they run) and runs one of the bench crate's tools against the release daemon.
fn run_tool(bin: &str, args: &[String]) -> Result<()> {
    let env = setup::setup(true)?;
    setup::run(cargo(&env).args([
        "build",
        "--release",
        "-p",
        "filter-user",
        "-p",
        "floodgate-tests",
        "-p",
        "floodgate-bench",
    ]))?;
    setup::run(
        cargo(&env)
            .args([
                "run",
                "--release",
                "-q",
                "-p",
                "floodgate-bench",
                "--bin",
                bin,
                "--",
            ])
            .args(args)
            .env(
                "FLOODGATE_BIN",
                std::path::absolute("target/release/floodgate")?,
            ),
    )
}

fn test() -> Result<()> {
    let started = std::time::Instant::now();
    let env = setup::setup(true)?;
    eprintln!("==> building the workspace");
    setup::run(cargo(&env).args([
        "build",
        "--workspace",
        "--exclude",
        "filter-ebpf",
        "--exclude",
        "bench-ebpf",
        "--all-targets",
    ]))?;
    eprintln!("==> unit tests");
    // --no-fail-fast: one red test target must not hide whatever else is red.
    setup::run(cargo(&env).args([
        "test",
        "--no-fail-fast",
        "--workspace",
        "--exclude",
        "filter-ebpf",
        "--exclude",
        "bench-ebpf",
        "--exclude",
        "floodgate-tests",
    ]))?;
    let deb = package::package(&env)?;
    eprintln!("==> kernel, end-to-end, service and package tests (root; one at a time)");
    setup::run(
        cargo(&env)
            .args([
                "test",
                "--no-fail-fast",
                "-p",
                "floodgate-tests",
                "--",
                "--test-threads=1",
            ])
            .env(
                "FLOODGATE_BIN",
                std::path::absolute("target/debug/floodgate")?,
            )
            .env("FLOODGATE_DEB", deb),
    )?;
    eprintln!("==> a short fuzzing run (the full one: ./x fuzz --time 120)");
    fuzz::fuzz(&env, 15, 200_000, false)?;
    eprintln!(
        "==> all tests passed in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
