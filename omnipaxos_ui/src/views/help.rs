//! The bottom lines: the keys, and the application's status line.

use crate::{config::KeyHelp, model::Model};
use ratatui::{
    Frame,
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::Paragraph,
};

/// The dashboard's own keys, always listed last.
fn own_keys() -> KeyHelp {
    KeyHelp::new("q/Esc", "quit")
}

/// The help entries packed into lines of at most `width` characters, each
/// entry whole on one line (an entry wider than the line gets one alone and
/// is cut when drawn).
fn pack(model: &Model, width: u16) -> Vec<Vec<KeyHelp>> {
    let width = usize::from(width);
    let mut lines: Vec<Vec<KeyHelp>> = Vec::new();
    let mut used = 0;
    for entry in model.key_help.iter().cloned().chain([own_keys()]) {
        let len = entry_width(&entry);
        match lines.last_mut() {
            Some(line) if used + len <= width => {
                line.push(entry);
                used += len;
            }
            _ => {
                lines.push(vec![entry]);
                used = len;
            }
        }
    }
    lines
}

/// ` keys action ` plus a separating space.
fn entry_width(entry: &KeyHelp) -> usize {
    entry.keys.chars().count() + entry.action.chars().count() + 4
}

/// Lines the help bar takes at this width: the packed keys, and the status
/// line if there is one.
pub(super) fn height(model: &Model, width: u16) -> u16 {
    let status = u16::from(!model.status.is_empty());
    (pack(model, width).len() as u16).saturating_add(status)
}

pub(super) fn render(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let key_style = Style::new()
        .fg(Color::Black)
        .bg(Color::Cyan)
        .add_modifier(Modifier::BOLD);
    let mut lines: Vec<Line<'_>> = pack(model, area.width)
        .into_iter()
        .map(|entries| {
            let mut spans = Vec::with_capacity(entries.len() * 2);
            for e in entries {
                spans.push(Span::styled(format!(" {} ", e.keys), key_style));
                spans.push(Span::raw(format!(" {} ", e.action)));
            }
            Line::from(spans)
        })
        .collect();
    if !model.status.is_empty() {
        lines.push(Line::styled(
            model.status.clone(),
            Style::new().fg(Color::Yellow),
        ));
    }
    frame.render_widget(Paragraph::new(lines), area);
}
