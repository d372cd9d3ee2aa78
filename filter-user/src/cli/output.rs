//! Output of the CLI: `--json` (pretty, one document) or aligned tables.

use std::io::Write as _;

use anyhow::Result;

use crate::{bpf::maps::BlockView, clock::format_duration};

/// Prints any serialisable value as pretty JSON.
pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// "expired", "never" or the remaining TTL.
pub(crate) fn ttl_text(secs: Option<u64>, expired: bool) -> String {
    match (secs, expired) {
        (_, true) => "expired".into(),
        (None, _) => "never".into(),
        (Some(s), _) => format_duration(std::time::Duration::from_secs(s)),
    }
}

/// The block list as a table.
pub(crate) fn print_blocks(blocks: &[BlockView]) {
    println!(
        "{:<40} {:<10} {:<32} {:>12} {:>10}",
        "TARGET", "KIND", "REASON", "HITS", "TTL"
    );
    for b in blocks {
        println!(
            "{:<40} {:<10} {:<32} {:>12} {:>10}",
            b.target.to_string(),
            b.kind,
            b.origin_host
                .as_ref()
                .map_or_else(|| b.reason.clone(), |h| format!("{} (from {h})", b.reason)),
            b.hits,
            ttl_text(b.ttl_remaining_secs, b.expired)
        );
    }
}
