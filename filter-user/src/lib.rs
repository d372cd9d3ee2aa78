//! Floodgate userspace: loads and pins the XDP program, edits the pinned block and allow
//! maps, and runs the detection daemon. The `floodgate` binary is a thin CLI over this library.
//! Needs Linux ≥ 5.18 and bpffs at the pin root.
//!
//! The modules follow the pipeline (DESIGN.md):
//! `sensor` (evidence in: [`sensor::RequestEvent`]) → `detect` (rules and rates) →
//! `enforce` (guard and the map writer: [`enforce::Decision`] in, block maps out).
//! `bpf` loads, pins and opens the kernel side; `daemon` wires the pipeline together;
//! `sources` are decision sources beyond the detector (CrowdSec, the fleet's peers over NATS);
//! `cli` is the operator command line (`blocklist` the list format it imports and exports); `config` the validated settings; `control` the typed
//! protocol between the CLI and the running daemon.

pub mod blocklist;
pub mod bpf;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod detect;
pub mod enforce;
pub mod logging;
pub mod sensor;
pub mod sources;
pub mod target;
