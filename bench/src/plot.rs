//! The plots of the benchmarks (PNG under `bench-results/`).

/// Registers DejaVu Sans (Debian's fonts-dejavu-core, installed by `./x setup`) as the
/// "sans-serif" font of the plots.
pub fn register_font() {
    let font = std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
        .expect("fonts-dejavu-core (./x setup installs it)");
    if plotters::style::register_font(
        "sans-serif",
        plotters::style::FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .is_err()
    {
        panic!("DejaVuSans.ttf is not a usable font");
    }
}
