//! The daemon's side of the adaptive detector: restoring and writing the baselines' state
//! file, applying the adaptive decisions of each tick, and logging and exporting the attack
//! state of every service.

use std::time::{Duration, Instant};

use super::{Daemon, metrics as m};
use crate::detect::{adaptive::Change, attack::Transition};

impl Daemon {
    /// Restores the baselines from the state file; a missing file is a first start, a bad one
    /// is logged and counted, and the daemon learns from nothing (never from the file).
    pub(super) fn load_baselines(&mut self) {
        let (path, _) = self.detector.adaptive().state_file();
        let path = path.display().to_string();
        match self.detector.load_baselines() {
            Ok(0) => {}
            Ok(n) => log::info!("adaptive: restored the baselines of {n} service(s) from {path}"),
            Err(err) => {
                ::metrics::counter!(m::BASELINE_FILE_ERRORS, "op" => "load").increment(1);
                log::error!("adaptive: refusing the baseline file {path}: {err}; learning anew");
            }
        }
    }

    /// Writes the baselines to the state file (at shutdown, and every `save_interval`).
    pub(super) fn save_baselines(&mut self) {
        self.last_baseline_save = Instant::now();
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Err(err) = self.detector.adaptive().save(unix) {
            ::metrics::counter!(m::BASELINE_FILE_ERRORS, "op" => "save").increment(1);
            log::warn!("adaptive: writing the baselines: {err}");
        }
    }

    /// Once per second: the adaptive decisions and attack changes, metrics, and the periodic
    /// save of the baselines.
    pub(super) fn adaptive_tick(&mut self, now_ns: u64, elapsed: Duration) {
        if !self.detector.adaptive().enabled() {
            return;
        }
        let (decisions, changes) = self.detector.adaptive_tick(now_ns, elapsed);
        for change in &changes {
            log_change(change);
        }
        for decision in &decisions {
            self.apply(decision);
        }
        for view in self.detector.adaptive_views() {
            let service = view.name.clone();
            ::metrics::gauge!(m::UNDER_ATTACK, "service" => service.clone())
                .set(if view.attack.is_some() { 1.0 } else { 0.0 });
            ::metrics::counter!(m::ATTACKS, "service" => service.clone()).absolute(view.attacks);
            ::metrics::gauge!(m::BASELINE_RPS, "service" => service.clone())
                .set(view.baseline_rps.unwrap_or(0.0));
            ::metrics::gauge!(m::ATTACK_FINGERPRINTS, "service" => service.clone())
                .set(view.fingerprints.iter().filter(|f| f.attack).count() as f64);
            ::metrics::counter!(m::FINGERPRINTS_UNCOUNTED, "service" => service)
                .absolute(view.fingerprints_uncounted as u64);
        }
        if self.last_baseline_save.elapsed() >= self.detector.adaptive().state_file().1 {
            self.save_baselines();
        }
    }
}

fn log_change(change: &Change) {
    let baseline = change
        .baseline
        .map_or_else(|| "still learning".to_owned(), |b| format!("{b:.0} req/s"));
    match change.transition {
        Transition::Entered(trigger) => log::warn!(
            "adaptive: service {} under attack ({trigger:?}): {:.0} req/s, baseline {baseline}",
            change.service,
            change.rate
        ),
        Transition::Left(secs) => log::info!(
            "adaptive: service {} no longer under attack after {secs}s: {:.0} req/s, baseline {baseline}",
            change.service,
            change.rate
        ),
    }
}
