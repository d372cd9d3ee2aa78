//! Floodgate's benchmarks and load-test kit (the tools in `src/bin`, run by `./x bench` and
//! `./x loadtest`), on the test harness of `floodgate-tests`: this library holds what they
//! share, the statistics and result files and the plots.

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
