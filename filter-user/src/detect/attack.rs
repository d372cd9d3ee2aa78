//! The attack state of one service: entered when a signal passes its limit (the total rate
//! over `attack_factor` × the baseline, over `capacity_rps`, the proxy's mean upstream time
//! or 5xx share over their limits), left once every signal stayed under `exit_share` of its
//! limit for `calm` (hysteresis: a flood that dips for a moment does not end the attack).

use serde::{Deserialize, Serialize};

/// What put a service under attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Trigger {
    /// The total rate exceeded the baseline by `attack_factor`.
    Baseline,
    /// The total rate exceeded `capacity_rps`.
    Capacity,
    /// The proxy's mean upstream time exceeded `max_upstream_time`.
    Latency,
    /// The proxy's 5xx share exceeded `max_5xx_share`.
    Errors,
}

/// One second's signals of a service.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Signals {
    /// Requests/s.
    pub rate: f64,
    /// Mean upstream time of the proxy's events, seconds (`None`: no such events).
    pub upstream_secs: Option<f64>,
    /// Share of 5xx among the proxy's events with a status (`None`: none).
    pub share_5xx: Option<f64>,
}

/// The limits (0 or `None`: that signal is off).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Limits {
    /// Rate limit from the baseline (`attack_factor` × baseline, at least `min_attack_rps`);
    /// `None` while the baseline is still learning.
    pub baseline_rps: Option<f64>,
    /// `capacity_rps`.
    pub capacity_rps: f64,
    /// `max_upstream_time`, seconds.
    pub upstream_secs: f64,
    /// `max_5xx_share`.
    pub share_5xx: f64,
    /// `exit_share`.
    pub exit_share: f64,
    /// `calm`, seconds.
    pub calm_secs: f64,
}

impl Limits {
    /// The first signal over `scale` × its limit.
    fn over(&self, s: &Signals, scale: f64) -> Option<Trigger> {
        let over = |value: f64, limit: f64| limit > 0.0 && value > limit * scale;
        if self.baseline_rps.is_some_and(|limit| over(s.rate, limit)) {
            return Some(Trigger::Baseline);
        }
        if over(s.rate, self.capacity_rps) {
            return Some(Trigger::Capacity);
        }
        if s.upstream_secs.is_some_and(|v| over(v, self.upstream_secs)) {
            return Some(Trigger::Latency);
        }
        if s.share_5xx.is_some_and(|v| over(v, self.share_5xx)) {
            return Some(Trigger::Errors);
        }
        None
    }
}

/// A change of state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    /// The service came under attack.
    Entered(Trigger),
    /// The attack ended, after this many seconds.
    Left(u64),
}

/// The state.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AttackState {
    /// What triggered the attack in progress.
    pub trigger: Option<Trigger>,
    /// Seconds under attack so far.
    pub under_secs: f64,
    calm_secs: f64,
}

impl AttackState {
    /// True while under attack.
    #[must_use]
    pub(crate) fn under(&self) -> bool {
        self.trigger.is_some()
    }

    /// Takes one period of `secs` with `signals`; returns the change, if any.
    pub(crate) fn update(
        &mut self,
        signals: &Signals,
        limits: &Limits,
        secs: f64,
    ) -> Option<Transition> {
        match self.trigger {
            None => {
                let trigger = limits.over(signals, 1.0)?;
                *self = Self {
                    trigger: Some(trigger),
                    under_secs: 0.0,
                    calm_secs: 0.0,
                };
                Some(Transition::Entered(trigger))
            }
            Some(_) => {
                self.under_secs += secs;
                if limits.over(signals, limits.exit_share).is_some() {
                    self.calm_secs = 0.0;
                    return None;
                }
                self.calm_secs += secs;
                if self.calm_secs < limits.calm_secs {
                    return None;
                }
                let lasted = self.under_secs.round() as u64;
                *self = Self::default();
                Some(Transition::Left(lasted))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rate: f64) -> Signals {
        Signals {
            rate,
            ..Signals::default()
        }
    }

    #[test]
    fn entered_over_a_limit_and_left_only_after_a_calm_spell() {
        let limits = Limits {
            baseline_rps: Some(300.0),
            capacity_rps: 1000.0,
            exit_share: 0.8,
            calm_secs: 3.0,
            ..Limits::default()
        };
        let mut s = AttackState::default();
        assert_eq!(s.update(&at(290.0), &limits, 1.0), None);
        assert_eq!(
            s.update(&at(2000.0), &limits, 1.0),
            Some(Transition::Entered(Trigger::Baseline))
        );
        // Under the entry limit but over the exit one: still an attack.
        assert_eq!(s.update(&at(250.0), &limits, 1.0), None);
        assert_eq!(s.update(&at(100.0), &limits, 1.0), None);
        assert_eq!(s.update(&at(100.0), &limits, 1.0), None);
        // A dip back up resets the calm spell.
        assert_eq!(s.update(&at(260.0), &limits, 1.0), None);
        for _ in 0..2 {
            assert_eq!(s.update(&at(100.0), &limits, 1.0), None);
        }
        assert_eq!(
            s.update(&at(100.0), &limits, 1.0),
            Some(Transition::Left(7))
        );
        assert!(!s.under());
    }

    #[test]
    fn capacity_and_proxy_signals_trigger_without_a_baseline() {
        let limits = Limits {
            capacity_rps: 500.0,
            upstream_secs: 0.2,
            share_5xx: 0.3,
            exit_share: 0.8,
            calm_secs: 1.0,
            ..Limits::default()
        };
        let mut s = AttackState::default();
        assert_eq!(s.update(&at(400.0), &limits, 1.0), None, "no baseline yet");
        assert_eq!(
            s.update(&at(600.0), &limits, 1.0),
            Some(Transition::Entered(Trigger::Capacity))
        );
        let mut s = AttackState::default();
        let slow = Signals {
            rate: 10.0,
            upstream_secs: Some(0.5),
            share_5xx: Some(0.0),
        };
        assert_eq!(
            s.update(&slow, &limits, 1.0),
            Some(Transition::Entered(Trigger::Latency))
        );
        let mut s = AttackState::default();
        let failing = Signals {
            rate: 10.0,
            upstream_secs: None,
            share_5xx: Some(0.5),
        };
        assert_eq!(
            s.update(&failing, &limits, 1.0),
            Some(Transition::Entered(Trigger::Errors))
        );
    }
}
