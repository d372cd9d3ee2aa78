//! 200,000 random and mutated packets through the real program against a populated map set
//! (the full million and more: `cargo xtask fuzz`). See `floodgate_tests::fuzz` for the
//! invariants.

use floodgate_tests::{fuzz, kernel::LoadedFilter};

#[test]
fn random_and_mutated_packets_keep_the_invariants() {
    let mut f = LoadedFilter::load();
    fuzz::populate(&mut f);
    let report = fuzz::run(&mut f, 200_000, 0x5eed_0001);
    eprintln!("{report:?}");
    assert!(
        report.dropped > 1_000 && report.parsed > 50_000,
        "the generator reaches the drop paths: {report:?}"
    );
}
