//! Block lists as text: the format `floodgate block import` reads and `floodgate block export`
//! writes. One address or prefix per line; `#` and `;` start a comment; text after the first
//! word is ignored. That reads FireHOL netsets (`198.18.0.0/15`), Spamhaus DROP
//! (`198.18.4.0/24 ; SBL123`), plain address lists, CRLF line ends and a UTF-8 byte order mark.
//!
//! A prefix with host bits set (`198.18.1.7/24`) is refused, as `block add` refuses it: a list
//! that says `.7/24` is ambiguous (one host or the /24?) and blocking the wider one by guessing
//! could take out bystanders. The error names the prefix meant.
//!
//! Export annotates every line with `# ttl=SECONDS reason=TEXT` (or `ttl=never`); import reads
//! that annotation back, so `export | import -` restores targets, remaining TTLs and reasons.
//! Any other comment is just a comment.

use std::{collections::HashSet, fmt, time::Duration};

use crate::target::{Target, TargetError};

/// Longest piece of a bad line quoted in its error.
const QUOTE_LEN: usize = 64;

/// One usable line of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntry {
    /// 1-based line number.
    pub line: usize,
    /// What to block.
    pub target: Target,
    /// From an export annotation: `Some(None)` never expires, `Some(Some(d))` expires after `d`.
    pub ttl: Option<Option<Duration>>,
    /// From an export annotation.
    pub reason: Option<String>,
}

/// Why a line is not usable.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line is not UTF-8 text.
    #[error("not UTF-8 text")]
    NotUtf8,
    /// The first word is not an address or a prefix (host bits zero).
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// A line that was not used, with its 1-based number.
#[derive(Debug, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// Why.
    pub error: LineError,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.error)
    }
}

/// A parsed list: the usable entries (each target once, first occurrence kept), the bad lines,
/// and how many lines repeated a target already listed.
#[derive(Debug, Default)]
pub struct ParsedList {
    /// Usable entries in file order.
    pub entries: Vec<ListEntry>,
    /// Lines that are not usable, in file order.
    pub bad: Vec<BadLine>,
    /// Lines naming a target an earlier line already named.
    pub duplicates: usize,
}

/// Parses a whole list. Never fails: bad lines are collected with their numbers.
#[must_use]
pub fn parse(input: &[u8]) -> ParsedList {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let mut list = ParsedList::default();
    let mut seen = HashSet::new();
    for (index, raw) in input.split(|b| *b == b'\n').enumerate() {
        let line = index + 1;
        let parsed = std::str::from_utf8(raw)
            .map_err(|_| LineError::NotUtf8)
            .and_then(|text| parse_line(text).map_err(LineError::from));
        match parsed {
            Ok(None) => {}
            Ok(Some(mut entry)) => {
                if seen.insert(entry.target) {
                    entry.line = line;
                    list.entries.push(entry);
                } else {
                    list.duplicates += 1;
                }
            }
            Err(error) => list.bad.push(BadLine { line, error }),
        }
    }
    list
}

/// Parses one line (without its `\n`); `None` for blank and comment-only lines. The entry's
/// `line` is 0; [`parse`] numbers it.
pub fn parse_line(line: &str) -> Result<Option<ListEntry>, TargetError> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let (data, comment) = match line.find(['#', ';']) {
        Some(at) => (&line[..at], Some(&line[at + 1..])),
        None => (line, None),
    };
    let Some(word) = data.split_whitespace().next() else {
        return Ok(None);
    };
    let target = word.parse::<Target>().map_err(|err| quoted(err, word))?;
    let (ttl, reason) = comment.and_then(annotation).unzip();
    Ok(Some(ListEntry {
        line: 0,
        target,
        ttl,
        reason,
    }))
}

/// Shortens the quoted input of an error (a list line can be arbitrarily long).
fn quoted(err: TargetError, word: &str) -> TargetError {
    if word.len() <= QUOTE_LEN {
        return err;
    }
    let mut end = QUOTE_LEN;
    while !word.is_char_boundary(end) {
        end -= 1;
    }
    let input = format!("{}…", &word[..end]);
    match err {
        TargetError::BadAddress { .. } => TargetError::BadAddress { input },
        TargetError::BadLength { max, .. } => TargetError::BadLength { input, max },
        TargetError::HostBits { suggestion, .. } => TargetError::HostBits { input, suggestion },
    }
}

/// Reads ` ttl=SECONDS reason=TEXT` (as [`export_line`] writes it); `None` for any other
/// comment.
fn annotation(comment: &str) -> Option<(Option<Duration>, String)> {
    let rest = comment.trim().strip_prefix("ttl=")?;
    let (ttl, rest) = rest.split_once(' ')?;
    let reason = rest.trim_start().strip_prefix("reason=")?;
    let ttl = if ttl == "never" {
        None
    } else {
        let secs = ttl.strip_suffix('s')?;
        if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Duration::from_secs(secs.parse().ok()?))
    };
    Some((ttl, reason.trim_end().to_owned()))
}

/// One exported line: the target and its annotation. Control characters in the reason (and
/// nothing else) are replaced by spaces, so that the line stays one line.
#[must_use]
pub fn export_line(target: Target, ttl_remaining_secs: Option<u64>, reason: &str) -> String {
    let reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let ttl = ttl_remaining_secs.map_or_else(|| "never".to_owned(), |s| format!("{s}s"));
    format!("{target} # ttl={ttl} reason={}", reason.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(list: &ParsedList) -> Vec<String> {
        list.entries.iter().map(|e| e.target.to_string()).collect()
    }

    #[test]
    fn firehol_netset() {
        let text = "\
#
# firehol_level1
#
# Maintainer      : FireHOL
# List source URL : https://iplists.firehol.org/
#
198.18.0.0/15
198.19.7.1
2001:2::/48
";
        let list = parse(text.as_bytes());
        assert_eq!(
            targets(&list),
            ["198.18.0.0/15", "198.19.7.1", "2001:2::/48"]
        );
        assert!(list.bad.is_empty());
        assert_eq!(list.entries[1].line, 8);
        assert_eq!(
            list.entries[1].ttl, None,
            "a plain comment is no annotation"
        );
    }

    #[test]
    fn spamhaus_drop_with_crlf_and_bom() {
        let text = "\u{feff}; Spamhaus DROP List 2026/12/01 - (c) 2026 The Spamhaus Project\r\n\
                    ; Last-Modified: Tue, 01 Dec 2026 12:00:00 GMT\r\n\
                    198.18.4.0/24 ; SBL123456\r\n\
                    198.18.8.0/22 ; SBL654321\r\n\
                    2001:2:0:1::/64 ; SBL1\r\n";
        let list = parse(text.as_bytes());
        assert_eq!(
            targets(&list),
            ["198.18.4.0/24", "198.18.8.0/22", "2001:2:0:1::/64"]
        );
        assert!(list.bad.is_empty(), "{:?}", list.bad);
        assert_eq!(list.entries[0].line, 3);
    }

    #[test]
    fn trailing_text_tabs_blank_lines_and_mapped_addresses() {
        let text = "\n   \n\t198.18.0.9\tseen 2026-12-01\n198.18.0.10   # scanner\n::ffff:198.18.0.11\n2001:2::7";
        let list = parse(text.as_bytes());
        assert_eq!(
            targets(&list),
            ["198.18.0.9", "198.18.0.10", "198.18.0.11", "2001:2::7"]
        );
        assert!(list.entries.iter().all(|e| e.target.is_host()));
    }

    #[test]
    fn bad_lines_are_reported_with_their_numbers() {
        let text = b"198.18.0.1\nhello world\n198.18.1.7/24\n198.18.0.0/33\n2001:2::/129\n\xff\xfe\n<html>\n198.18.0.2\n";
        let list = parse(text);
        assert_eq!(targets(&list), ["198.18.0.1", "198.18.0.2"]);
        let lines: Vec<usize> = list.bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6, 7]);
        assert_eq!(
            list.bad[1].to_string(),
            "line 3: '198.18.1.7/24' has host bits set; did you mean 198.18.1.0/24?"
        );
        assert_eq!(list.bad[4].error, LineError::NotUtf8);
    }

    #[test]
    fn duplicates_keep_the_first() {
        let list = parse(b"198.18.0.1 # a\n198.18.0.1\n::ffff:198.18.0.1\n198.18.0.0/24\n");
        assert_eq!(targets(&list), ["198.18.0.1", "198.18.0.0/24"]);
        assert_eq!(list.duplicates, 2);
    }

    #[test]
    fn long_garbage_is_quoted_short() {
        let word = "x".repeat(10_000);
        let list = parse(word.as_bytes());
        assert!(list.bad[0].to_string().len() < 200, "{}", list.bad[0]);
    }

    #[test]
    fn export_lines_round_trip() {
        let t: Target = "2001:2::/64".parse().unwrap();
        let line = export_line(t, Some(3540), "crowd\nsec #1");
        assert_eq!(line, "2001:2::/64 # ttl=3540s reason=crowd sec #1");
        let entry = parse_line(&line).unwrap().unwrap();
        assert_eq!(entry.target, t);
        assert_eq!(entry.ttl, Some(Some(Duration::from_secs(3540))));
        assert_eq!(entry.reason.as_deref(), Some("crowd sec #1"));
        let never = parse_line(&export_line(t, None, "manual"))
            .unwrap()
            .unwrap();
        assert_eq!(never.ttl, Some(None));
        assert_eq!(never.reason.as_deref(), Some("manual"));
        for comment in ["# ttl=5 reason=x", "# ttl=s reason=x", "# ttl=5s", "# note"] {
            let entry = parse_line(&format!("198.18.0.1 {comment}"))
                .unwrap()
                .unwrap();
            assert_eq!((entry.ttl, entry.reason), (None, None), "{comment}");
        }
    }
}
