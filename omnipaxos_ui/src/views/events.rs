//! "Events": leader changes, elections, lost links and servers, newest last.

use super::{at, dim, pane};
use crate::model::{EventKind, Model};
use ratatui::{
    Frame,
    layout::Rect,
    style::{Color, Style},
    text::{Line, Span},
    widgets::Paragraph,
};

pub(super) fn render(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let block = pane(format!("events ({} leader changes)", model.leader_changes));
    let room = block.inner(area).height as usize;
    let skip = model.events.len().saturating_sub(room);
    let lines: Vec<Line<'_>> = model
        .events
        .iter()
        .skip(skip)
        .map(|e| {
            let color = match e.kind {
                EventKind::Leader => Color::Green,
                EventKind::Election => Color::Yellow,
                EventKind::Connectivity => Color::Magenta,
                EventKind::Node => Color::Cyan,
                EventKind::Failure => Color::Red,
            };
            Line::from(vec![
                Span::styled(format!("{:>8} ", at(e.at)), dim()),
                Span::styled(e.text.clone(), Style::new().fg(color)),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
