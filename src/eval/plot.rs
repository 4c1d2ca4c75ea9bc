//! PNG figures in the layout of the paper's: Fig. 2 (CCC per uncertainty quintile), Fig. 3
//! (CCC vs coverage), Fig. 4 (uncertainty transfer, one panel per decided attribute) and the
//! method comparison of Tables I/III as curves. Text is drawn with the DejaVu Sans font
//! embedded in the binary, so plotting needs no system fonts.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::analysis::CurvePoint;
use super::methods::Method;
use super::report::Report;
use super::EvalError;
use crate::attribute::Attribute;
use crate::uncertainty::ScoreKind;

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// One line of a panel: a legend label and (x, y) points.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// One panel: a title, axis labels and its lines.
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

fn plot_error(path: &Path) -> impl Fn(String) -> EvalError + '_ {
    move |reason| EvalError::Plot { path: path.to_path_buf(), reason }
}

fn ensure_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TTF compiled into the binary; a failure here is a build defect.
        register_font("sans-serif", FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("embedded font is valid"));
    });
}

/// Draws panels side by side as line charts with markers (x: coverage in %, decreasing
/// to the right as in the paper's figures when `reverse_x`).
pub fn line_panels(path: &Path, panels: &[Panel], reverse_x: bool) -> Result<(), EvalError> {
    ensure_font();
    let err = plot_error(path);
    let width = 520 * panels.len().max(1) as u32;
    let root = BitMapBackend::new(path, (width, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (area, panel) in areas.iter().zip(panels) {
        let xs = panel.series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
        let ys: Vec<f64> = panel
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|v| v.is_finite())
            .collect();
        let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
        let (y0, y1) = ys.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| (a.min(y), b.max(y)));
        let pad = ((y1 - y0) * 0.1).max(0.01);
        let (y0, y1) = if ys.is_empty() { (0.0, 1.0) } else { (y0 - pad, y1 + pad) };
        let x_range = if reverse_x { (x1 + 0.5)..(x0 - 0.5) } else { (x0 - 0.5)..(x1 + 0.5) };
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x_range, y0..y1)
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc(&panel.x_label)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc(&panel.y_label)
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 15))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        for (k, s) in panel.series.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(|p| p.1.is_finite()).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(|e| err(e.to_string()))?
                .label(s.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                .map_err(|e| err(e.to_string()))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .position(SeriesLabelPosition::LowerLeft)
            .draw()
            .map_err(|e| err(e.to_string()))?;
    }
    root.present().map_err(|e| err(e.to_string()))
}

fn pct(c: f64) -> f64 {
    (c * 100.0 * 1e6).round() / 1e6
}

/// Writes every figure of the report into `dir`; returns the file names.
pub fn draw_all(report: &Report, dir: &Path) -> Result<Vec<String>, EvalError> {
    let mut files = Vec::new();
    let mut draw = |name: &str, panels: Vec<Panel>, reverse: bool| -> Result<(), EvalError> {
        line_panels(&dir.join(name), &panels, reverse)?;
        files.push(name.to_string());
        Ok(())
    };
    // Figs. 3 and 2: one line per attribute and ranking (the served score, then the paper's
    // entropy when the two differ).
    type Points = dyn Fn(&[CurvePoint], &[f64; 5]) -> Vec<(f64, f64)>;
    let per_attribute = |title: &str, x_label: &str, points: &Points| {
        let mut series = Vec::new();
        for (a, ev) in report.attributes.iter() {
            let headline = points(&ev.headline.coverage_curve, &ev.headline.quintile_ccc);
            series.push(Series { label: format!("{a} by {}", ev.score), points: headline });
            if ev.score != ScoreKind::Entropy {
                let entropy = points(&ev.entropy_curve, &ev.entropy_quintile_ccc);
                series.push(Series { label: format!("{a} by entropy"), points: entropy });
            }
        }
        vec![Panel { title: title.into(), x_label: x_label.into(), y_label: "CCC".into(), series }]
    };
    draw(
        "fig3_coverage.png",
        per_attribute("CCC vs test coverage (reject the least certain)", "coverage (%)", &|curve, _| {
            curve.iter().map(|p| (pct(p.coverage), p.ccc)).collect()
        }),
        true,
    )?;
    draw(
        "fig2_quintiles.png",
        per_attribute("CCC per uncertainty quintile", "quintile (1 = most certain)", &|_, quintiles| {
            quintiles.iter().enumerate().map(|(q, &c)| ((q + 1) as f64, c)).collect()
        }),
        false,
    )?;
    // Fig. 4: a panel per decided attribute, a line per uncertainty source.
    let utl = Attribute::ALL
        .into_iter()
        .map(|decided| Panel {
            title: format!("{decided}: uncertainty transfer"),
            x_label: "coverage (%)".into(),
            y_label: "CCC".into(),
            series: report
                .utl
                .iter()
                .filter(|c| c.decided == decided)
                .map(|c| Series {
                    label: format!("{} uncertainty", c.source),
                    points: c.coverage_curve.iter().map(|p| (pct(p.coverage), p.ccc)).collect(),
                })
                .collect(),
        })
        .collect();
    draw("fig4_utl.png", utl, true)?;
    // Methods: mean CCC over trials at the table coverages, a panel per attribute.
    for (table, name, what) in [
        ("within_corpus", "methods_within_corpus.png", "test split"),
        ("cross_corpus", "table1_cross_corpus.png", "cross corpus"),
    ] {
        let cells: Vec<_> = report.tables.iter().filter(|c| c.table == table).collect();
        if cells.is_empty() {
            continue;
        }
        let present: Vec<Method> =
            Method::ALL.into_iter().filter(|m| cells.iter().any(|c| c.method == m.name())).collect();
        let panels = Attribute::ALL
            .into_iter()
            .map(|a| Panel {
                title: format!("{a} ({what}, mean of {} trials)", report.settings.trials),
                x_label: "coverage (%)".into(),
                y_label: "CCC".into(),
                series: present
                    .iter()
                    .map(|m| Series {
                        label: m.label().to_string(),
                        points: cells
                            .iter()
                            .filter(|c| c.method == m.name() && c.attribute == a && c.uncertainty_source == a)
                            .map(|c| (pct(c.coverage), c.mean))
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        draw(name, panels, true)?;
    }
    Ok(files)
}
