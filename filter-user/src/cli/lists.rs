//! `block import` and `block export`: block lists in and out (the format is
//! [`crate::blocklist`]). An import is all or nothing: every line is parsed and checked by the
//! guard (allow list, widest prefix) and the maps' room is checked before the first write;
//! with a bad or refused line nothing is written unless `--skip-invalid`. Entries are
//! operator entries (never evicted), written by the one map writer in a tight loop (aya has
//! no batch update; 100,000 entries take well under the 2 s budget, see BENCHMARKS.md).

use std::{
    io::{BufWriter, Read as _, Write as _},
    path::{Path, PathBuf},
};

use anyhow::Result;
use filter_common::capacity;

use super::{args::ImportArgs, blocks::tell_daemon, open, output::print_json, settings};
use crate::{
    blocklist::{self, BadLine, ListEntry},
    bpf::{maps::block_entry, pins::Pins},
    enforce::{Origin, guard, writer::MapWriter},
};

/// Bad lines printed at most; the rest are counted.
const SHOWN_PROBLEMS: usize = 50;
/// Up to this many imported targets are named to the daemon; more make it re-read the maps.
const REFRESH_BY_NAME: usize = 512;

/// Why an import wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The list could not be read.
    #[error("read {file}: {source}")]
    Read {
        /// The list (`-`: standard input).
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Lines were bad or refused by the guard (they are printed before this error).
    #[error(
        "{count} line(s) of {} not usable (listed above); nothing written (--skip-invalid \
         imports the others)", file.display()
    )]
    Unusable {
        /// The list.
        file: PathBuf,
        /// How many lines.
        count: usize,
    },
    /// The exact or prefix map has no room for the list.
    #[error("map {map} has room for {free} more entries, the list needs {needed}; nothing written")]
    NoRoom {
        /// Which map.
        map: &'static str,
        /// Free entries.
        free: usize,
        /// New entries the list adds at most.
        needed: usize,
    },
}

/// A line that is not imported.
enum Problem {
    /// Not an address or prefix.
    Bad(BadLine),
    /// The guard refused it.
    Refused {
        line: usize,
        entry: ListEntry,
        refusal: guard::Refusal,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bad(bad) => bad.fmt(f),
            Self::Refused {
                line,
                entry,
                refusal,
            } => write!(f, "line {line}: {} refused: {refusal}", entry.target),
        }
    }
}

fn read(file: &Path) -> Result<Vec<u8>, ImportError> {
    let mut bytes = Vec::new();
    let read = if file == Path::new("-") {
        std::io::stdin().lock().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_end(&mut bytes).map(|_| ()))
    };
    read.map_err(|source| ImportError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    Ok(bytes)
}

pub(super) fn import(pins: &Pins, args: ImportArgs, socket_flag: Option<&Path>) -> Result<()> {
    let settings = settings(args.config.clone())?;
    let maps = open(pins)?;
    let list = blocklist::parse(&read(&args.file)?);
    let mut problems: Vec<Problem> = list.bad.into_iter().map(Problem::Bad).collect();
    let mut entries = Vec::with_capacity(list.entries.len());
    for entry in list.entries {
        let allowed = maps.is_allowed(entry.target.ip)?;
        match guard::check_target(entry.target, allowed, &settings.guard) {
            Ok(()) => entries.push(entry),
            Err(refusal) => problems.push(Problem::Refused {
                line: entry.line,
                entry,
                refusal,
            }),
        }
    }
    problems.sort_by_key(|p| match p {
        Problem::Bad(bad) => bad.line,
        Problem::Refused { line, .. } => *line,
    });
    let mut stderr = std::io::stderr().lock();
    for problem in problems.iter().take(SHOWN_PROBLEMS) {
        writeln!(stderr, "{}: {problem}", args.file.display())?;
    }
    if problems.len() > SHOWN_PROBLEMS {
        writeln!(
            stderr,
            "{}: … and {} more",
            args.file.display(),
            problems.len() - SHOWN_PROBLEMS
        )?;
    }
    drop(stderr);
    if !problems.is_empty() && !args.skip_invalid {
        return Err(ImportError::Unusable {
            file: args.file,
            count: problems.len(),
        }
        .into());
    }
    let hosts = entries.iter().filter(|e| e.target.is_host()).count();
    let prefixes = entries.len() - hosts;
    let summary = format!(
        "{} entries ({hosts} addresses, {prefixes} prefixes); {} line(s) skipped, {} duplicate(s)",
        entries.len(),
        problems.len(),
        list.duplicates
    );
    if args.dry_run {
        println!("dry run: would import {summary}");
        return Ok(());
    }
    let _lock = pins.lock()?;
    // Conservative: entries already in the maps are counted as new.
    let (exact_now, prefix_now) = maps.block_counts();
    for (map, used, cap, needed) in [
        (
            filter_common::maps::BLOCK_EXACT,
            exact_now,
            capacity::BLOCK_EXACT,
            hosts,
        ),
        (
            filter_common::maps::BLOCK_PREFIX,
            prefix_now,
            capacity::BLOCK_PREFIX,
            prefixes,
        ),
    ] {
        let free = (cap as usize).saturating_sub(used);
        if needed > free {
            return Err(ImportError::NoRoom { map, free, needed }.into());
        }
    }
    let mut writer = MapWriter::open(pins)?;
    let ttl_flag = args.ttl.map(|t| (!t.is_zero()).then_some(t));
    for entry in &entries {
        let ttl = ttl_flag.or(entry.ttl).flatten();
        let reason = args
            .reason
            .as_deref()
            .or(entry.reason.as_deref())
            .unwrap_or("import");
        writer.write(
            entry.target,
            &block_entry(ttl, Origin::Operator.reason_code(), reason),
        )?;
    }
    println!("imported {summary}");
    if entries.len() <= REFRESH_BY_NAME {
        tell_daemon(
            socket_flag,
            entries.iter().map(|e| e.target).collect(),
            false,
        );
    } else {
        tell_daemon(socket_flag, Vec::new(), true);
    }
    Ok(())
}

pub(super) fn export(pins: &Pins, json: bool) -> Result<()> {
    let blocks = open(pins)?.blocks()?;
    let in_force: Vec<_> = blocks.into_iter().filter(|b| !b.expired).collect();
    if json {
        return print_json(&in_force);
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    writeln!(
        out,
        "# floodgate block export: {} entries in force (`floodgate block import FILE` reads it)",
        in_force.len()
    )?;
    for b in &in_force {
        writeln!(
            out,
            "{}",
            blocklist::export_line(b.target, b.ttl_remaining_secs, &b.reason)
        )?;
    }
    out.flush()?;
    Ok(())
}
