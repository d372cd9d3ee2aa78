//! Durations as operators write them, in the configuration and on the command line alike:
//! `500ms`, `30s`, `10m`, `2h`, `1d`, `1h30m`, or a bare number of seconds. The units are
//! parsed by jiff (the crate env_logger already brings in); a bare number stays seconds so
//! that files and scripts written for earlier versions keep their meaning.

use std::str::FromStr;

/// A span of time read from text (see the module documentation for the syntax).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

/// Ten years is more than any block should last; beyond that is a typo.
const MAX: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 86_400);

/// Why a duration text is invalid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "'{input}' is not a duration (use e.g. 500ms, 30s, 10m, 2h, 1d; a number alone is seconds; \
     at most 10 years)"
)]
pub struct DurationError {
    /// What was given.
    pub input: String,
}

impl Duration {
    /// `secs` seconds.
    #[must_use]
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    /// `ms` milliseconds.
    #[must_use]
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    /// Zero is allowed (callers decide what it means); negative spans, calendar units (months,
    /// years) and anything over ten years are not.
    fn from_str(input: &str) -> Result<Self, DurationError> {
        let err = || DurationError {
            input: input.to_owned(),
        };
        let text = input.trim();
        let duration = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            std::time::Duration::from_secs(text.parse().map_err(|_| err())?)
        } else {
            let span: jiff::Span = text.parse().map_err(|_| err())?;
            let signed = span
                .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
                .map_err(|_| err())?;
            std::time::Duration::try_from(signed).map_err(|_| err())?
        };
        if duration > MAX {
            return Err(err());
        }
        Ok(Self(duration))
    }
}

impl<'de> serde::Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<std::time::Duration, DurationError> {
        text.parse::<Duration>().map(|d| d.0)
    }

    #[test]
    fn units_and_bare_seconds() {
        let secs = std::time::Duration::from_secs;
        assert_eq!(parse("30s").unwrap(), secs(30));
        assert_eq!(parse("10m").unwrap(), secs(600));
        assert_eq!(parse("2h").unwrap(), secs(7200));
        assert_eq!(parse("1d").unwrap(), secs(86_400));
        assert_eq!(parse("1w").unwrap(), secs(7 * 86_400));
        assert_eq!(parse("1h30m").unwrap(), secs(5400));
        assert_eq!(parse("1.5h").unwrap(), secs(5400));
        assert_eq!(parse("45").unwrap(), secs(45));
        assert_eq!(parse(" 45 ").unwrap(), secs(45));
        assert_eq!(parse("0").unwrap(), secs(0));
        assert_eq!(
            parse("250ms").unwrap(),
            std::time::Duration::from_millis(250)
        );
        assert_eq!(parse("3650d").unwrap(), secs(3650 * 86_400));
    }

    #[test]
    fn rejects_with_a_clear_message() {
        for bad in [
            "",
            "m",
            "10x",
            "-5s",
            "5s ago",
            "1y",
            "2mo",
            "3651d",
            "99999999999d",
            "1e3",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.to_string().contains("is not a duration"), "{err}");
        }
    }
}
