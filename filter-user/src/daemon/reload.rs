//! Reloading the configuration (SIGHUP or a `reload` control request): the file the daemon
//! was started with is re-read and validated, then applied to the kernel settings and the
//! detector, bracketed by systemd's RELOADING=1 … READY=1. Interfaces, listeners, the proxy
//! feed and the CrowdSec bouncer are fixed at start. A file that does not load or apply leaves
//! the running configuration in force, and the caller gets the typed reason.

use filter_common::config;

use super::{
    ConfigSource, Daemon,
    notify::{notify, reloading},
};
use crate::{
    config::Settings,
    control::{ControlError, ReloadReply},
    target::Target,
};

impl ConfigSource {
    /// Where the configuration comes from, for messages.
    fn describe(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Embedded => "the embedded default configuration".to_owned(),
        }
    }
}

impl Daemon {
    /// Writes ports, sample size, monitor flag and the configuration's allow list (removing
    /// entries that an earlier configuration added and this one dropped).
    pub(super) fn apply_kernel_settings(
        &mut self,
        settings: &Settings,
        previous_allow: &[Target],
    ) -> anyhow::Result<()> {
        let _lock = self.pins.lock()?;
        self.maps
            .set_ports(&settings.filter.ports, &settings.filter.tls_ports)?;
        self.maps
            .set_setting(config::SAMPLE_BYTES, settings.sampling.payload_bytes)?;
        self.maps
            .set_setting(config::MONITOR, u32::from(settings.filter.monitor))?;
        for gone in previous_allow
            .iter()
            .filter(|t| !settings.allow.contains(t))
        {
            self.maps.disallow(*gone)?;
        }
        for target in &settings.allow {
            self.maps.allow(*target)?;
        }
        Ok(())
    }

    /// Re-reads and applies the configuration; logs the outcome and tells systemd.
    pub(super) fn reload(&mut self) -> Result<ReloadReply, ControlError> {
        notify(&reloading());
        let outcome = self.load_and_apply();
        let interfaces = self.settings.filter.interfaces.join(", ");
        match &outcome {
            Ok(reloaded) => {
                log::info!(
                    "reloaded {}: {} rules, ports {:?}",
                    reloaded.source,
                    reloaded.rules.len(),
                    reloaded.ports
                );
                notify(&format!("READY=1\nSTATUS=protecting {interfaces}"));
            }
            Err(err) => {
                log::error!("reload rejected: {err}");
                notify(&format!(
                    "READY=1\nSTATUS=protecting {interfaces}; the last reload was rejected: {err}"
                ));
            }
        }
        outcome
    }

    fn load_and_apply(&mut self) -> Result<ReloadReply, ControlError> {
        let mut new = self.source.load().map_err(|err| ControlError::BadConfig {
            message: err.to_string(),
        })?;
        new.filter
            .interfaces
            .clone_from(&self.settings.filter.interfaces);
        new.filter.attach_mode = self.settings.filter.attach_mode;
        new.metrics.listen = self.settings.metrics.listen;
        new.control.socket.clone_from(&self.settings.control.socket);
        new.proxy.clone_from(&self.settings.proxy);
        new.crowdsec.clone_from(&self.settings.crowdsec);
        // The fleet connection is made at start; a changed [fleet] needs a restart.
        if new.fleet != self.settings.fleet {
            log::warn!("reload: [fleet] changed; the change takes effect at the next start");
        }
        new.fleet.clone_from(&self.settings.fleet);
        let previous_allow = self.settings.allow.clone();
        if let Err(err) = self.apply_kernel_settings(&new, &previous_allow) {
            // Partly written: put the running configuration's values back.
            let restore = self.settings.clone();
            if let Err(undo) = self.apply_kernel_settings(&restore, &new.allow) {
                log::error!("reload: restoring the running kernel settings failed: {undo:#}");
            }
            return Err(ControlError::Failed {
                message: format!("applying the new configuration failed: {err:#}"),
            });
        }
        self.detector.reconfigure(&new);
        if self.settings.metrics.listen.is_some() {
            super::metrics::register_known(&new);
        }
        let reloaded = ReloadReply {
            source: self.source.describe(),
            rules: new.rules.iter().map(|r| r.name.clone()).collect(),
            ports: new.filter.ports.clone(),
            allow: new.allow.len(),
        };
        self.settings = new;
        Ok(reloaded)
    }
}
