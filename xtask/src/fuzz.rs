//! `cargo xtask fuzz --time N`: the coverage-guided targets under `fuzz/` (cargo fuzz,
//! libFuzzer) for N seconds in all, starting from the committed seed corpus, then the packet
//! fuzzer through the real XDP program. Fails on any crash or violated invariant and writes the
//! execution counts to bench-results/fuzz.txt.

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result, ensure};

use crate::setup::{Env, run};

/// cargo-fuzz release installed into the cache (bump with the toolchain).
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// Executions per target in the test suite's short, deterministic run.
const SUITE_RUNS: u64 = 300_000;
/// The targets in `fuzz/fuzz_targets`.
const TARGETS: [&str; 9] = [
    "http_sample",
    "config",
    "cli_values",
    "proxy_datagram",
    "feed_file_lines",
    "blocklist",
    "crowdsec_stream",
    "fleet_value",
    "baseline_file",
];

fn cargo_fuzz(env: &Env) -> Result<std::path::PathBuf> {
    let home = std::env::var_os("HOME").context("HOME")?;
    let root = Path::new(&home).join(format!(".cache/floodgate/cargo-fuzz-{CARGO_FUZZ_VERSION}"));
    let bin = root.join("bin");
    if !bin.join("cargo-fuzz").exists() {
        eprintln!("==> installing cargo-fuzz {CARGO_FUZZ_VERSION} (once)");
        run(crate::cargo(env)
            .args([
                "install",
                "cargo-fuzz",
                "--locked",
                "--version",
                CARGO_FUZZ_VERSION,
                "--root",
            ])
            .arg(&root))?;
    }
    Ok(bin)
}

/// Runs every target for `seconds / targets` and `packets` packets through the program;
/// `write_report`: keep the counts in bench-results/fuzz.txt (not for the suite's short run).
pub(crate) fn fuzz(env: &Env, seconds: u64, packets: u64, write_report: bool) -> Result<()> {
    let fuzz_bin = cargo_fuzz(env)?;
    let mut path = vec![fuzz_bin];
    path.extend(std::env::split_paths(&env.path()));
    let path = std::env::join_paths(path)?;
    let fuzz_cmd = || {
        let mut cmd = Command::new("cargo");
        // The toolchain is stable; libFuzzer instrumentation needs unstable flags.
        cmd.current_dir("fuzz")
            .env("PATH", &path)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz"]);
        cmd
    };
    eprintln!("==> building the fuzz targets (instrumented)");
    run(fuzz_cmd().args(["build", "--sanitizer", "none", "-O"]))?;
    let per_target = (seconds / TARGETS.len() as u64).max(1);
    let mut report = String::new();
    let mut total = 0u64;
    for target in TARGETS {
        let work = Path::new("fuzz/corpus-work").join(target);
        // The suite's run is deterministic (fixed seed and count, seed corpus only), so CI
        // runs exactly what passed here; the timed run explores from its growing corpus.
        let (work, budget) = if write_report {
            (work, vec![format!("-max_total_time={per_target}")])
        } else {
            let fresh = Path::new("fuzz/corpus-suite").join(target);
            let _ = std::fs::remove_dir_all(&fresh);
            (
                fresh,
                vec![format!("-runs={SUITE_RUNS}"), "-seed=1".to_owned()],
            )
        };
        std::fs::create_dir_all(&work)?;
        let budget_text = budget.join(" ");
        eprintln!("==> fuzzing {target} ({budget_text})");
        let out = fuzz_cmd()
            .args(["run", "--sanitizer", "none", "-O", target])
            .arg(work.strip_prefix("fuzz")?)
            .arg(format!("corpus/{target}"))
            .arg("--")
            .args(&budget)
            .arg("-print_final_stats=1")
            .output()
            .context("cargo fuzz run")?;
        let log = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.success(),
            "fuzz target {target} failed (artifacts in fuzz/artifacts/{target}):\n{log}"
        );
        let execs: u64 = log
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .and_then(|v| v.trim().parse().ok())
            .context("no execution count in libFuzzer's output")?;
        total += execs;
        report.push_str(&format!(
            "{target:<12} {execs:>12} executions ({budget_text}), no crash\n"
        ));
    }
    report.push_str(&format!("{:<12} {total:>12} executions\n", "total"));
    eprintln!("==> packet fuzzing through the XDP program ({packets} packets)");
    run(crate::cargo(env).args([
        "build",
        "--release",
        "-p",
        "floodgate-tests",
        "--bin",
        "fuzz-packets",
    ]))?;
    let out = Command::new("target/release/fuzz-packets")
        .arg(packets.to_string())
        .output()?;
    ensure!(
        out.status.success(),
        "packet fuzzing failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    report.push_str(&String::from_utf8_lossy(&out.stdout));
    if write_report {
        std::fs::create_dir_all("bench-results")?;
        std::fs::write("bench-results/fuzz.txt", &report)?;
    }
    print!("{report}");
    Ok(())
}
