//! The collateral-damage guard: the last check before a decision is written. It refuses to
//! block an allow-listed address, a prefix wider than the configured limit, or a prefix that
//! covers more than the configured share of the legitimate clients seen recently.

use super::Decision;
use crate::{
    config::{Guard, Settings},
    target::Target,
};

/// Why a decision was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum Refusal {
    /// The target (or the address decided) is on the allow list.
    #[error("on the allow list")]
    AllowListed,
    /// The prefix is wider than `guard.max_prefix_v4/v6`.
    #[error("prefix /{len} is wider than the limit /{limit} (guard.max_prefix_v4/v6)")]
    TooWide {
        /// The decision's prefix length.
        len: u8,
        /// The configured limit.
        limit: u8,
    },
    /// The prefix covers too many recently seen legitimate clients.
    #[error(
        "it would block {inside} of the {total} legitimate clients seen recently, more than the \
         share {max_share} (guard.max_legit_share)"
    )]
    Collateral {
        /// Legitimate clients inside the prefix.
        inside: usize,
        /// Legitimate clients seen in the guard window.
        total: usize,
        /// The configured share.
        max_share: f64,
    },
}

impl Refusal {
    /// Every value [`Self::label`] returns.
    pub(crate) const LABELS: [&str; 3] = ["allow_listed", "too_wide", "collateral"];

    /// The metrics label of this refusal.
    #[must_use]
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::AllowListed => "allow_listed",
            Self::TooWide { .. } => "too_wide",
            Self::Collateral { .. } => "collateral",
        }
    }
}

/// Checks one decision. `allowed`: the allow list covers the target's address;
/// `legit_inside`/`legit_total`: recently seen legitimate clients inside the target and in all.
pub(crate) fn check(
    decision: &Decision,
    allowed: bool,
    legit_inside: usize,
    legit_total: usize,
    settings: &Settings,
) -> Result<(), Refusal> {
    check_target(decision.target, allowed, &settings.guard)?;
    let target = decision.target;
    if target.is_host() {
        return Ok(());
    }
    // A prefix may take out a few bystanders, never a large part of the real users.
    if legit_inside > 0 && legit_inside as f64 > settings.guard.max_legit_share * legit_total as f64
    {
        return Err(Refusal::Collateral {
            inside: legit_inside,
            total: legit_total,
            max_share: settings.guard.max_legit_share,
        });
    }
    Ok(())
}

/// The checks that need no view of the traffic: the allow list and the widest prefix. The
/// operator's `block import` applies these (it has no recent clients to weigh collateral by).
pub(crate) fn check_target(target: Target, allowed: bool, guard: &Guard) -> Result<(), Refusal> {
    if allowed {
        return Err(Refusal::AllowListed);
    }
    if target.is_host() {
        return Ok(());
    }
    let limit = crate::target::for_family(target.ip, guard.max_prefix_v4, guard.max_prefix_v6);
    if target.len < limit {
        return Err(Refusal::TooWide {
            len: target.len,
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn decision(target: &str) -> Decision {
        Decision {
            target: target.parse::<Target>().unwrap(),
            rule: "r".into(),
            rate: 1000.0,
            threshold: 100.0,
            ttl: Duration::from_secs(60),
            block: true,
            crossed_ns: 0,
            offence: 1,
            origin: crate::enforce::Origin::Aggregate,
        }
    }

    #[test]
    fn labels_are_listed() {
        for refusal in [
            Refusal::AllowListed,
            Refusal::TooWide { len: 8, limit: 16 },
            Refusal::Collateral {
                inside: 1,
                total: 1,
                max_share: 0.1,
            },
        ] {
            assert!(Refusal::LABELS.contains(&refusal.label()), "{refusal:?}");
        }
    }

    #[test]
    fn refusals() {
        let s = crate::config::parse("", "t").unwrap();
        assert_eq!(
            check(&decision("198.18.0.7"), true, 0, 0, &s),
            Err(Refusal::AllowListed)
        );
        assert!(
            check(&decision("198.18.0.7"), false, 1, 1, &s).is_ok(),
            "one address is never collateral"
        );
        assert!(matches!(
            check(&decision("198.0.0.0/8"), false, 0, 0, &s),
            Err(Refusal::TooWide { len: 8, limit: 16 })
        ));
        assert!(matches!(
            check(&decision("2001:2::/32"), false, 0, 0, &s),
            Err(Refusal::TooWide { .. })
        ));
        assert!(check(&decision("198.18.2.0/24"), false, 0, 100, &s).is_ok());
        assert!(
            check(&decision("198.18.2.0/24"), false, 10, 100, &s).is_ok(),
            "10 % is allowed"
        );
        assert!(matches!(
            check(&decision("198.18.2.0/24"), false, 11, 100, &s),
            Err(Refusal::Collateral { .. })
        ));
        assert!(matches!(
            check(&decision("198.18.2.0/24"), false, 1, 4, &s),
            Err(Refusal::Collateral { .. })
        ));
    }
}
