//! The top line: which server, its role, the leader, and the time.

use super::{at, dim};
use crate::model::Model;
use omnipaxos::Role;
use ratatui::{
    Frame,
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::Paragraph,
};

pub(super) fn render(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let sep = || Span::styled(" │ ", dim());
    let role = match &model.own {
        Some(s) if s.storage_failed => Span::styled("STOPPED", Style::new().fg(Color::Red)),
        Some(s) if s.role == Role::Leader => Span::styled("LEADER", Style::new().fg(Color::Green)),
        Some(_) => Span::styled("follower", Style::new().fg(Color::Cyan)),
        None if model.own_down => Span::styled("DOWN", Style::new().fg(Color::Red)),
        None => Span::styled("waiting for states", dim()),
    };
    let leader = match model.observed_leader() {
        Some(b) => format!("leader {} (n={})", b.pid, b.n),
        None => "no leader".to_string(),
    };
    let mut spans = vec![
        Span::styled(
            format!(" {} ", model.title),
            Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
        ),
        Span::raw(" "),
        Span::styled(
            format!("node {}", model.pid),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        sep(),
        role,
        sep(),
        Span::raw(leader),
        sep(),
        Span::raw(format!("config {}", model.configuration_id)),
        sep(),
        Span::raw(at(model.now)),
    ];
    if model.skipped > 0 {
        spans.push(sep());
        spans.push(Span::styled(
            format!("{} states skipped while drawing", model.skipped),
            dim(),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
