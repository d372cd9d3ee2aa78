//! The benchmarks' plots, drawn here once in one style: a canvas (a PNG under `bench-results/`)
//! split into panels, each a time series over a shaded flood window, the latency of legitimate
//! requests (a dot each, failures as red crosses at the top) or a bar chart. The tools pass data
//! and captions; only this module knows plotters.

use std::{
    path::{Path, PathBuf},
    sync::Once,
};

pub use plotters::style::{BLUE, GREEN, RED, RGBColor};
use plotters::{
    coord::{
        Shift,
        ranged1d::{AsRangedCoord, ValueFormatter},
        types::RangedCoordf64,
    },
    prelude::*,
};

/// A canvas or one of its panels.
pub type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// One legitimate request: seconds since the start, success, latency in ms.
pub type Probe = (f64, bool, f64);

const CAPTION: u32 = 18;
const FLOOD: RGBColor = RGBColor(255, 232, 232);

/// Where plot NAME goes: bench-results/NAME.png.
#[must_use]
pub fn png(name: &str) -> PathBuf {
    crate::results::dir().join(format!("{name}.png"))
}

/// A white canvas of `size` pixels drawing to `path` (written by [`DrawingArea::present`]).
#[must_use]
pub fn canvas(path: &Path, size: (u32, u32)) -> Area<'_> {
    register_font();
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).expect("fill canvas");
    root
}

/// Registers DejaVu Sans (Debian's fonts-dejavu-core, installed by `./x setup`) as the
/// "sans-serif" font of the plots, once.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let font = std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
            .expect("fonts-dejavu-core (./x setup installs it)");
        assert!(
            plotters::style::register_font(
                "sans-serif",
                plotters::style::FontStyle::Normal,
                Box::leak(font.into_boxed_slice()),
            )
            .is_ok(),
            "DejaVuSans.ttf is not a usable font"
        );
    });
}

/// One line of a time-series panel: (seconds, value) points.
pub struct Line<'a> {
    /// Legend entry (a panel with one line has no legend).
    pub label: &'a str,
    /// Its color.
    pub color: RGBColor,
    /// The points.
    pub points: &'a [(f64, f64)],
}

/// Time series over `0..t_max` seconds, the flood window (`window`, seconds) shaded.
pub fn lines(
    area: &Area<'_>,
    caption: &str,
    t_max: f64,
    window: (f64, f64),
    y_desc: &str,
    lines: &[Line<'_>],
) {
    let y_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(10.0, f64::max)
        * 1.1;
    let mut chart = chart(area, caption, t_max, 0.0..y_max, y_desc);
    let shade = chart
        .draw_series(std::iter::once(shade(window, (0.0, y_max))))
        .expect("draw");
    let legend = lines.len() > 1;
    if legend {
        shade
            .label("flood running")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], FLOOD.filled()));
    }
    for line in lines {
        let color = line.color;
        let series = chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                color.stroke_width(2),
            ))
            .expect("draw");
        if legend {
            series
                .label(line.label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 15, y)], color));
        }
    }
    if legend {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .expect("draw legend");
    }
}

/// The latency axis of [`latency`].
#[derive(Clone, Copy)]
pub enum Scale {
    /// 0 to the slowest request.
    Linear,
    /// Logarithmic, 0.1 ms to 3 s (a failure there counts as the 2 s timeout).
    Log,
}

/// Each legitimate request over `0..t_max` seconds at its latency (ms), failures as red crosses
/// at the top, the flood window (`window`, seconds) shaded.
pub fn latency(
    area: &Area<'_>,
    caption: &str,
    t_max: f64,
    window: (f64, f64),
    scale: Scale,
    probes: &[Probe],
) {
    match scale {
        Scale::Linear => {
            let top = probes.iter().map(|p| p.2).fold(1.0, f64::max) * 1.1;
            let chart = chart(area, caption, t_max, 0.0..top, "ms");
            draw_probes(chart, window, (0.0, top), top * 0.95, probes);
        }
        Scale::Log => {
            let (bottom, top) = (0.1, 3000.0);
            let chart = chart(area, caption, t_max, (bottom..top).log_scale(), "ms (log)");
            draw_probes(chart, window, (bottom, top), 2500.0, probes);
        }
    }
}

fn draw_probes<Y>(
    mut chart: ChartContext<'_, BitMapBackend<'_>, Cartesian2d<RangedCoordf64, Y>>,
    window: (f64, f64),
    y: (f64, f64),
    fail_at: f64,
    probes: &[Probe],
) where
    Y: Ranged<ValueType = f64>,
{
    chart
        .draw_series(std::iter::once(shade(window, y)))
        .expect("draw");
    chart
        .draw_series(
            probes
                .iter()
                .filter(|p| p.1)
                .map(|p| Circle::new((p.0, p.2.max(y.0 * 1.1)), 2, BLUE.filled())),
        )
        .expect("draw");
    chart
        .draw_series(
            probes
                .iter()
                .filter(|p| !p.1)
                .map(|p| Cross::new((p.0, fail_at), 4, RED)),
        )
        .expect("draw");
}

/// Bars of (name, value), the one named `highlight` in red, the others in blue.
pub fn bars(area: &Area<'_>, caption: &str, bars: &[(String, f64)], highlight: &str) {
    let max = bars.iter().map(|b| b.1).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", CAPTION))
        .margin(10)
        .x_label_area_size(60)
        .y_label_area_size(50)
        .build_cartesian_2d((0..bars.len()).into_segmented(), 0.0..max)
        .expect("chart");
    chart
        .configure_mesh()
        .x_labels(bars.len())
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => bars.get(*i).map(|b| b.0.clone()).unwrap_or_default(),
            _ => String::new(),
        })
        .x_label_style(("sans-serif", 11))
        .draw()
        .expect("draw mesh");
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (name, value))| {
            let color = if name == highlight { RED } else { BLUE };
            Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), *value),
                ],
                color.mix(0.7).filled(),
            )
        }))
        .expect("draw");
}

/// A panel with a seconds axis `0..t_max` and the value axis `y`, its mesh drawn.
fn chart<'a, 'b, Y>(
    area: &'a Area<'b>,
    caption: &str,
    t_max: f64,
    y: Y,
    y_desc: &str,
) -> ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, Y::CoordDescType>>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", CAPTION))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(65)
        .build_cartesian_2d(0.0..t_max, y)
        .expect("chart");
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(y_desc)
        .draw()
        .expect("draw mesh");
    chart
}

/// The flood window from `x.0` to `x.1` seconds over the value range `y`.
fn shade(x: (f64, f64), y: (f64, f64)) -> Rectangle<(f64, f64)> {
    Rectangle::new([(x.0, y.0), (x.1, y.1)], FLOOD.filled())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of panel draws (synthetic data), and the PNG is written.
    #[test]
    fn every_panel_kind_draws_a_png() {
        let path = std::env::temp_dir().join(format!("fg-plot-{}.png", std::process::id()));
        let root = canvas(&path, (1200, 900));
        let panels = root.split_evenly((3, 2));
        let rate: Vec<(f64, f64)> = (0..200)
            .map(|i| {
                (
                    f64::from(i) / 10.0,
                    if (50..150).contains(&i) { 900.0 } else { 400.0 },
                )
            })
            .collect();
        let drops: Vec<(f64, f64)> = rate.iter().map(|p| (p.0, p.1 / 2.0)).collect();
        let probes: Vec<Probe> = (0..200)
            .map(|i| (f64::from(i) / 10.0, i % 17 != 0, 0.5 + f64::from(i % 7)))
            .collect();
        let one = [Line {
            label: "completed",
            color: RED,
            points: &rate,
        }];
        lines(&panels[0], "one line", 20.0, (5.0, 15.0), "", &one);
        let two = [
            Line {
                label: "starts",
                color: BLUE,
                points: &rate,
            },
            Line {
                label: "drops",
                color: RED,
                points: &drops,
            },
        ];
        lines(
            &panels[1],
            "two lines, legend",
            20.0,
            (5.0, 15.0),
            "per second",
            &two,
        );
        latency(
            &panels[2],
            "linear",
            20.0,
            (5.0, 15.0),
            Scale::Linear,
            &probes,
        );
        latency(&panels[3], "log", 20.0, (5.0, 15.0), Scale::Log, &probes);
        let names = [("a".to_owned(), 1.0), ("floodgate".to_owned(), 2.5)];
        bars(&panels[4], "bars", &names, "floodgate");
        root.present().expect("write png");
        drop(root);
        let png = std::fs::read(&path).expect("read png");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        if std::env::var_os("KEEP_PLOT").is_none() {
            let _ = std::fs::remove_file(&path);
        }
    }
}
