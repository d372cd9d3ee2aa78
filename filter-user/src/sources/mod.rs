//! Decision sources beyond the detector (CrowdSec, the fleet's
//! peers). Each runs on its own task, talks to its outside
//! system, and hands typed decision batches to the daemon loop over a channel; the loop passes
//! them through the same guard and map writer as the detector's decisions.

pub mod crowdsec;
pub mod fleet;
