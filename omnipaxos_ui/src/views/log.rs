//! "Log": the records written to the dashboard's logger, newest last.

use super::{at, dim, pane};
use crate::model::Model;
use ratatui::{
    Frame,
    layout::Rect,
    style::{Color, Style},
    text::{Line, Span},
    widgets::Paragraph,
};
use slog::Level;

pub(super) fn render(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let block = pane("log");
    let room = block.inner(area).height as usize;
    let skip = model.log.len().saturating_sub(room);
    let lines: Vec<Line<'_>> = model
        .log
        .iter()
        .skip(skip)
        .map(|l| {
            let color = match l.level {
                Level::Critical | Level::Error => Color::Red,
                Level::Warning => Color::Yellow,
                Level::Info => Color::Reset,
                Level::Debug | Level::Trace => Color::DarkGray,
            };
            Line::from(vec![
                Span::styled(format!("{:>8} ", at(l.at)), dim()),
                Span::styled(
                    format!("{:<5} ", l.level.as_short_str()),
                    Style::new().fg(color),
                ),
                Span::raw(l.text.clone()),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
