//! Floodgate's benchmarks and load-test kit (the tools in `src/bin`, run by `./x bench` and
//! `./x loadtest`), on the test harness of `floodgate-tests`: this library holds what they
//! share, the statistics and result files and the plots.

pub mod peers;
pub mod plot;
pub mod results;

use std::path::PathBuf;

/// Another tool of the workspace, built next to the running one (`./x bench` builds them all):
/// `backend` of this crate, `loadgen` of `floodgate-tests`.
#[must_use]
pub fn tool(name: &str) -> PathBuf {
    let path = std::env::current_exe()
        .expect("current exe")
        .with_file_name(name);
    assert!(
        path.exists(),
        "{} not built (./x bench builds it; by hand: cargo build --release -p floodgate-tests -p floodgate-bench)",
        path.display()
    );
    path
}

/// CPU seconds (utime + stime) the processes `pids` used so far; a process that has gone
/// counts 0.
#[must_use]
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|stat| {
            // After the comm field: utime and stime are fields 11 and 12 (14 and 15 of stat(5)).
            let fields: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            let field = |i: usize| {
                fields
                    .get(i)
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            (field(11) + field(12)) / ticks_per_sec
        })
        .sum()
}
