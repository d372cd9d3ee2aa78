//! Enforcement: every [`Decision`], whatever its [`Origin`], passes the same [`guard`] and is
//! written by the same [`writer::MapWriter`], the only code that writes the block maps. The
//! writer keeps an [`index::ExpiryIndex`] of the entries it knows, which drives the expiry
//! sweep and the full-map eviction without scanning the maps.

pub(crate) mod guard;
pub(crate) mod index;
pub mod writer;

use std::time::Duration;

use crate::target::Target;

/// Who made a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A detection rule.
    Rule,
    /// Prefix aggregation over several blocked members.
    Aggregate,
    /// An operator (`floodgate block add`).
    Operator,
    /// A CrowdSec decision from the LAPI stream (`[crowdsec]`).
    Crowdsec,
    /// A fleet peer's decision from the NATS bucket (`[fleet]`).
    Fleet,
}

impl Origin {
    /// The reason code stored in the map entry.
    #[must_use]
    pub(crate) fn reason_code(self) -> u16 {
        match self {
            Self::Rule => filter_common::reason::RULE,
            Self::Aggregate => filter_common::reason::AGGREGATE,
            Self::Operator => filter_common::reason::MANUAL,
            Self::Crowdsec => filter_common::reason::CROWDSEC,
            Self::Fleet => filter_common::reason::FLEET,
        }
    }

    /// The origin of a stored reason code (unknown codes are treated as an operator's, the
    /// safe side: never evicted).
    #[must_use]
    pub(crate) fn from_reason_code(code: u16) -> Self {
        match code {
            filter_common::reason::RULE => Self::Rule,
            filter_common::reason::AGGREGATE => Self::Aggregate,
            filter_common::reason::CROWDSEC => Self::Crowdsec,
            filter_common::reason::FLEET => Self::Fleet,
            _ => Self::Operator,
        }
    }

    /// True when the writer may evict this origin's exact entries to make room in a full map:
    /// only the daemon's own detections. An operator's block, a CrowdSec decision and a fleet
    /// peer's are someone else's judgement, kept until they expire or their author lifts them.
    #[must_use]
    pub(crate) fn evictable(self) -> bool {
        matches!(self, Self::Rule | Self::Aggregate)
    }
}

/// A decision to block (or, for monitor rules, to report) a target.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Decision {
    /// What to block.
    pub target: Target,
    /// Rule name (or "aggregate").
    pub rule: String,
    /// Observed rate (requests/s) when decided.
    pub rate: f64,
    /// The rule's threshold.
    pub threshold: f64,
    /// Block duration, after escalation.
    #[serde(serialize_with = "secs")]
    pub ttl: Duration,
    /// False for monitor-only rules.
    pub block: bool,
    /// `CLOCK_MONOTONIC` ns of the event that crossed the threshold.
    pub crossed_ns: u64,
    /// Repeat-offence number (1 = first).
    pub offence: u32,
    /// Who decided.
    pub origin: Origin,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}
