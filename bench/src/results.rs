//! Medians and percentiles over repeated runs, and the result files under `bench-results/`.

use std::{io::Write as _, path::PathBuf};

/// The results directory, `bench-results/` at the top of the repository (created).
#[must_use]
pub fn dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench-results");
    std::fs::create_dir_all(&dir).expect("create bench-results");
    dir
}

/// Median of a non-empty list.
#[must_use]
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Percentile (0..=100) of a non-empty list (nearest rank).
#[must_use]
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// Writes `text` to bench-results/NAME.txt and `json` to bench-results/NAME.json; prints text.
pub fn write_results(name: &str, text: &str, json: &serde_json::Value) {
    let dir = dir();
    let stamp = String::from_utf8_lossy(
        &std::process::Command::new("date")
            .arg("-u")
            .arg("+%Y-%m-%dT%H:%M:%SZ")
            .output()
            .expect("date")
            .stdout,
    )
    .trim()
    .to_owned();
    let header = format!("# {name} benchmark, {stamp}, kernel {}\n", kernel_release());
    std::fs::File::create(dir.join(format!("{name}.txt")))
        .and_then(|mut f| f.write_all(format!("{header}{text}").as_bytes()))
        .expect("write results");
    let mut json = json.clone();
    json["run_at"] = stamp.into();
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_string_pretty(&json).expect("json"),
    )
    .expect("write json");
    print!("{header}{text}");
    println!("results written to bench-results/{name}.txt and .json");
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned()
}
