//! `cargo xtask fuzz`: COUNT random and mutated packets through the real program (default
//! 1,000,000), checking the invariants of `floodgate_tests::fuzz`. Usage: fuzz-packets [COUNT]

fn main() {
    floodgate_tests::require_root();
    let count: u64 = std::env::args()
        .nth(1)
        .map_or(1_000_000, |c| c.parse().expect("COUNT"));
    let seed = filter_user::clock::monotonic_ns();
    let mut f = floodgate_tests::kernel::LoadedFilter::load();
    floodgate_tests::fuzz::populate(&mut f);
    let started = std::time::Instant::now();
    let report = floodgate_tests::fuzz::run(&mut f, count, seed);
    println!(
        "packet fuzz: {} packets (seed {seed:#x}), {} with a parsable source, {} dropped, no invariant violated, {:.1}s",
        report.packets,
        report.parsed,
        report.dropped,
        started.elapsed().as_secs_f64()
    );
}
