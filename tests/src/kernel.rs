//! The Floodgate program loaded into a temporary pin root, run through `BPF_PROG_TEST_RUN`, and
//! the benchmarks' baseline programs.

use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use aya_obj::programs::XdpAttachType;
use filter_common::counter;
use filter_user::{bpf::maps::Maps, enforce::writer::MapWriter};

use crate::TempPins;

/// XDP verdicts.
pub const XDP_DROP: u32 = 1;
/// XDP verdicts.
pub const XDP_PASS: u32 = 2;

/// The object of `bench-ebpf` (built by `build.rs`): the baseline programs the benchmarks measure
/// the filter against and their traffic generator; the upgrade test uses one as an "old" program.
pub static BASELINE: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/baseline"));

/// The program and its maps, loaded and pinned under a temporary root (no interface).
pub struct LoadedFilter {
    /// Map reads (the same code the CLI uses).
    pub filter: Maps,
    /// Block map writes (the same writer the CLI and the daemon use).
    pub writer: MapWriter,
    /// The program.
    pub program: Xdp,
    /// Keeps the pins alive; removes them on drop.
    pub pins: TempPins,
}

impl LoadedFilter {
    /// Loads the embedded program into a fresh pin root.
    #[must_use]
    pub fn load() -> Self {
        let pins = TempPins::new();
        {
            let _lock = pins.pins.lock().expect("lock pins");
            filter_user::bpf::attach::ensure_loaded(&pins.pins)
                .expect("load the XDP program (verifier)");
        }
        let program = Xdp::from_pin(pins.pins.program(), XdpAttachType::Interface)
            .expect("open pinned program");
        let filter = Maps::open(&pins.pins).expect("open pinned maps");
        let writer = MapWriter::open(&pins.pins).expect("open block maps");
        Self {
            filter,
            writer,
            program,
            pins,
        }
    }

    /// Runs one packet; returns the verdict.
    pub fn run(&mut self, packet: &[u8]) -> Result<u32, aya::programs::ProgramError> {
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(packet);
        Ok(self.program.test_run(opts)?.return_value)
    }

    /// Counters summed over CPUs.
    #[must_use]
    pub fn counters(&self) -> [u64; counter::COUNT as usize] {
        self.filter.counters().expect("read counters")
    }
}
