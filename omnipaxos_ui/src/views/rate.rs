//! "Decided entries/s": the attached server's decided index, differentiated.

use super::{dim, pane};
use crate::model::Model;
use ratatui::{
    Frame,
    layout::Rect,
    style::{Color, Style},
    symbols::Marker,
    text::Line,
    widgets::{Axis, Chart, Dataset, GraphType, Paragraph},
};

pub(super) fn render(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let title = match model.current_rate() {
        Some(r) => format!("decided entries/s at node {}: {r:.1}", model.pid),
        None => format!("decided entries/s at node {}", model.pid),
    };
    let block = pane(title);
    if model.rates.len() < 2 {
        frame.render_widget(
            Paragraph::new(Line::styled("collecting samples...", dim())).block(block),
            area,
        );
        return;
    }
    let points: Vec<(f64, f64)> = model.rates.iter().copied().collect();
    let (first, last) = (points[0].0, points[points.len() - 1].0);
    let top = points.iter().map(|p| p.1).fold(1.0_f64, f64::max) * 1.2;
    let chart = Chart::new(vec![
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(Color::Cyan))
            .data(&points),
    ])
    .block(block)
    .x_axis(
        Axis::default()
            .style(dim())
            .bounds([first, last.max(first + 1.0)])
            .labels([format!("{first:.0}s"), format!("{last:.0}s")]),
    )
    .y_axis(
        Axis::default()
            .style(dim())
            .bounds([0.0, top])
            .labels(["0".to_string(), format!("{top:.0}")]),
    );
    frame.render_widget(chart, area);
}
