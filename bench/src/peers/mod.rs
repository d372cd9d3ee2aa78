//! The tools users run today, set up as peers of Floodgate inside a bench's own namespaces with
//! their own configuration in a temporary directory (nothing of theirs touches the host's
//! firewall, services or state): xdp-filter from xdp-tools for `bench drop`, fail2ban and
//! CrowdSec with its nftables firewall bouncer for `bench survival`.

pub mod crowdsec;
pub mod fail2ban;
pub mod xdp_filter;
