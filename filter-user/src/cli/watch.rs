//! `top --watch` and `stats --watch`: a refreshing view during an attack. Every refresh shows
//! rates over the interval that just ended (deltas of the totals between two readings). On a
//! terminal it is a full-screen view ([`Screen`]); when stdout is not a terminal, one
//! timestamped block of plain lines per refresh; with `--json`, one JSON object per line.
//! Ctrl-C, SIGTERM and SIGHUP end it cleanly (exit 0, terminal restored). If the daemon goes
//! away mid-watch, `top` says so and exits 5, like a `top` that finds no daemon.

use std::{
    io::{IsTerminal as _, Write as _},
    path::Path,
    time::Instant,
};

use anyhow::{Context as _, Result};
use filter_common::counter;
use serde_json::json;

use super::{
    args::WatchArgs,
    open,
    terminal::{Screen, catch_stop_signals, sleep_unless_stopped},
};
use crate::{
    bpf::pins::Pins,
    control::{self, ClientError, Reply, Request, TopReply},
};

/// One refresh, ready for either kind of output.
struct Frame {
    /// Lines for a terminal or a pipe (no escape codes).
    lines: Vec<String>,
    /// The same refresh as one JSON object.
    json: serde_json::Value,
}

/// Where refreshes go.
enum Sink {
    /// The full-screen view.
    Screen(Screen),
    /// Plain lines.
    Plain,
    /// One JSON object per line.
    Json,
}

impl Sink {
    fn open(json: bool) -> Result<Self> {
        Ok(if json {
            Self::Json
        } else if std::io::stdout().is_terminal() {
            Self::Screen(Screen::enter().context("switch the terminal to the alternate screen")?)
        } else {
            Self::Plain
        })
    }

    fn show(&mut self, title: &str, time: &str, frame: &Frame) -> std::io::Result<()> {
        match self {
            Self::Screen(screen) => {
                let mut lines = vec![
                    format!("{title}   {time}   (Ctrl-C to quit)"),
                    String::new(),
                ];
                lines.extend(frame.lines.iter().cloned());
                screen.draw(&lines)
            }
            Self::Plain => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "--- {title} {time}")?;
                for line in &frame.lines {
                    writeln!(out, "{line}")?;
                }
                writeln!(out)?;
                out.flush()
            }
            Self::Json => {
                let mut out = std::io::stdout().lock();
                let mut value = frame.json.clone();
                if let Some(map) = value.as_object_mut() {
                    map.insert("time".into(), json!(time));
                }
                serde_json::to_writer(&mut out, &value)?;
                writeln!(out)?;
                out.flush()
            }
        }
    }
}

/// The refresh loop: reads `sample`, waits an interval, reads again and shows what `render`
/// makes of the two readings, until `--count` refreshes were shown or a stop signal arrives.
fn run<S>(
    title: &str,
    options: WatchArgs,
    json: bool,
    mut sample: impl FnMut() -> Result<S>,
    render: impl Fn(&S, &S, f64) -> Frame,
) -> Result<()> {
    catch_stop_signals().context("install the signal handlers")?;
    // The first reading before the screen switches: "no daemon" prints as a plain error.
    let mut previous = sample()?;
    let mut taken = Instant::now();
    let mut sink = Sink::open(json)?;
    if let Sink::Screen(screen) = &mut sink {
        screen.draw(&[
            format!("{title}   (Ctrl-C to quit)"),
            String::new(),
            format!(
                "first refresh in {}",
                crate::clock::format_duration(options.interval)
            ),
        ])?;
    }
    let mut shown = 0u64;
    while sleep_unless_stopped(options.interval) {
        let current = sample()?;
        let now = Instant::now();
        let frame = render(&previous, &current, (now - taken).as_secs_f64().max(1e-3));
        let time = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        match sink.show(title, &time, &frame) {
            Ok(()) => {}
            // The reader went away (`| head`): that ends the watch, it is no failure.
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(err) => return Err(err).context("write the view"),
        }
        shown += 1;
        if options.count.is_some_and(|count| shown >= count) {
            break;
        }
        previous = current;
        taken = now;
    }
    Ok(())
}

/// Requests per second between two totals (a total that went down, after a daemon restart,
/// counts as zero).
fn per_sec(before: u64, after: u64, secs: f64) -> f64 {
    after.saturating_sub(before) as f64 / secs
}

/// `top --watch`.
pub(super) fn top(limit: usize, json: bool, options: WatchArgs, socket: &Path) -> Result<()> {
    let mut answered = false;
    let sample = || -> Result<TopReply> {
        let reply = match control::request(socket, Request::Top { limit }) {
            Ok(Reply::Top(top)) => top,
            Ok(other) => anyhow::bail!("the daemon answered `top` with {other:?}"),
            // It answered before: it went away (stopped, crashed) during the watch.
            Err(ClientError::DaemonDown { path, source } | ClientError::Io { path, source })
                if answered =>
            {
                return Err(ClientError::DaemonDown { path, source })
                    .context("the daemon went away during `top --watch`");
            }
            Err(err) => return Err(err.into()),
        };
        answered = true;
        Ok(reply)
    };
    run("floodgate top", options, json, sample, top_frame)
}

fn top_frame(before: &TopReply, now: &TopReply, secs: f64) -> Frame {
    let rate = |f: fn(&TopReply) -> u64| per_sec(f(before), f(now), secs);
    let blocks = rate(|t| t.blocks_written);
    let exact = rate(|t| t.packets.dropped_exact);
    let prefix = rate(|t| t.packets.dropped_prefix);
    let would_drop = rate(|t| t.packets.would_drop);
    let passed = rate(|t| t.packets.passed);
    let kernel = rate(|t| t.evidence.kernel);
    let proxy = rate(|t| t.evidence.proxy);
    let mut lines = vec![
        format!(
            "sampling 1 in {}   keys tracked {}   blocks {blocks:.1}/s ({} since start)",
            now.sample_every, now.tracked, now.blocks_written
        ),
        format!(
            "drops/s     exact {exact:.0}   prefix {prefix:.0}   would-drop (monitor) {would_drop:.0}   passed/s {passed:.0}"
        ),
        format!("evidence/s  kernel {kernel:.0}   proxy {proxy:.0}"),
        String::new(),
        format!("{:<40} {:>12} {:>8}  TOP PATHS", "KEY", "REQ/S", "SAMPLES"),
    ];
    for row in &now.top {
        lines.push(format!(
            "{:<40} {:>12.1} {:>8}  {}",
            row.key.to_string(),
            row.rate,
            row.samples,
            row.paths.join(" ")
        ));
    }
    if now.top.is_empty() {
        lines.push("(no talkers)".into());
    }
    let json = json!({
        "interval_secs": secs,
        "sample_every": now.sample_every,
        "tracked": now.tracked,
        "blocks_per_sec": blocks,
        "drops_per_sec": { "exact": exact, "prefix": prefix, "would_drop": would_drop },
        "passed_per_sec": passed,
        "evidence_per_sec": { "kernel": kernel, "proxy": proxy },
        "top": now.top,
        "totals": {
            "blocks_written": now.blocks_written,
            "evidence": now.evidence,
            "packets": now.packets,
        },
    });
    Frame { lines, json }
}

/// `stats --watch`: the pinned per-CPU counters with their rates.
pub(super) fn stats(pins: &Pins, json: bool, options: WatchArgs) -> Result<()> {
    let maps = open(pins)?;
    run(
        "floodgate stats",
        options,
        json,
        || Ok(maps.counters()?),
        |before, now, secs| {
            let mut lines = vec![format!(
                "{:<20} {:>16} {:>14}",
                "COUNTER", "TOTAL", "PER SEC"
            )];
            let mut totals = serde_json::Map::new();
            let mut rates = serde_json::Map::new();
            for (index, name) in counter::NAMES.iter().enumerate() {
                let rate = per_sec(before[index], now[index], secs);
                lines.push(format!("{name:<20} {:>16} {rate:>14.1}", now[index]));
                totals.insert((*name).to_owned(), json!(now[index]));
                rates.insert((*name).to_owned(), json!(rate));
            }
            Frame {
                lines,
                json: json!({ "interval_secs": secs, "counters": totals, "per_sec": rates }),
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{EvidenceTotals, PacketTotals, TalkerRow};

    fn reply(blocks: u64, exact: u64, kernel: u64) -> TopReply {
        TopReply {
            top: vec![TalkerRow {
                key: "198.18.2.1".parse().unwrap(),
                rate: 420.0,
                samples: 99,
                paths: vec!["/".into()],
                path_counts: vec![("/".into(), 99)],
            }],
            tracked: 1,
            bytes_per_client: 64,
            sample_every: 4,
            blocks_written: blocks,
            evidence: EvidenceTotals { kernel, proxy: 0 },
            packets: PacketTotals {
                dropped_exact: exact,
                ..PacketTotals::default()
            },
        }
    }

    #[test]
    fn a_top_frame_shows_rates_between_two_replies() {
        let frame = top_frame(&reply(10, 1_000, 50), &reply(14, 3_000, 250), 2.0);
        let text = frame.lines.join("\n");
        assert!(text.contains("sampling 1 in 4"), "{text}");
        assert!(text.contains("blocks 2.0/s (14 since start)"), "{text}");
        assert!(text.contains("exact 1000"), "{text}");
        assert!(text.contains("kernel 100"), "{text}");
        assert!(
            text.contains("198.18.2.1") && text.contains("420.0"),
            "{text}"
        );
        assert!(
            !text.contains('\x1b'),
            "plain lines carry no escape codes: {text:?}"
        );
        assert_eq!(frame.json["blocks_per_sec"], 2.0);
        assert_eq!(frame.json["drops_per_sec"]["exact"], 1000.0);
        // A daemon restart resets its totals: no negative or huge rates.
        let frame = top_frame(&reply(14, 3_000, 250), &reply(0, 3_000, 0), 1.0);
        assert_eq!(frame.json["blocks_per_sec"], 0.0);
        assert_eq!(frame.json["evidence_per_sec"]["kernel"], 0.0);
    }

    #[test]
    fn an_old_daemon_s_top_reply_still_reads() {
        let old = r#"{"reply":"top","top":[],"tracked":3,"bytes_per_client":64}"#;
        let Reply::Top(top) = serde_json::from_str::<Reply>(old).unwrap() else {
            panic!("not a top reply");
        };
        assert_eq!(
            (top.tracked, top.sample_every, top.blocks_written),
            (3, 0, 0)
        );
    }
}
