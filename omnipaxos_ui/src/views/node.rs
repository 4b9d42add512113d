//! "This node": the attached server's own state.

use super::{dim, pane};
use crate::model::Model;
use omnipaxos::{Phase, Role};
use ratatui::{
    Frame,
    layout::Rect,
    style::{Color, Style},
    text::{Line, Span},
    widgets::Paragraph,
};

pub(super) fn render(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let block = pane(format!("this node: {}", model.pid));
    let Some(s) = &model.own else {
        let text = if model.own_down {
            Line::styled(
                format!("node {} is down", model.pid),
                Style::new().fg(Color::Red),
            )
        } else {
            Line::styled("no state yet", dim())
        };
        frame.render_widget(Paragraph::new(text).block(block), area);
        return;
    };
    let row = |key: &'static str, value: Span<'static>| {
        Line::from(vec![Span::styled(format!("{key:<10}"), dim()), value])
    };
    let phase = match s.phase {
        Phase::Prepare => "prepare",
        Phase::Accept => "accept",
        Phase::Recover => "recover",
        Phase::None => "no leader",
    };
    let role = if s.storage_failed {
        Span::styled("stopped: storage", Style::new().fg(Color::Red))
    } else if s.role == Role::Leader {
        Span::styled(format!("leader ({phase})"), Style::new().fg(Color::Green))
    } else {
        Span::styled(format!("follower ({phase})"), Style::new().fg(Color::Cyan))
    };
    let leader = match s.current_leader {
        Some(b) if b.pid == s.pid => "itself".to_string(),
        Some(b) => format!("{} (n={})", b.pid, b.n),
        None => "none".to_string(),
    };
    let quorum = if s.quorum_connected {
        Span::styled("connected", Style::new().fg(Color::Green))
    } else {
        Span::styled("LOST", Style::new().fg(Color::Red))
    };
    let b = s.current_ballot;
    let lines = vec![
        row("config", Span::raw(s.configuration_id.to_string())),
        row("role", role),
        row(
            "ballot",
            Span::raw(format!("n={} prio={}", b.n, b.priority)),
        ),
        row("leader", Span::raw(leader)),
        row("decided", Span::raw(s.decided_idx.to_string())),
        row("accepted", Span::raw(s.accepted_idx.to_string())),
        row("compacted", Span::raw(s.compacted_idx.to_string())),
        row("quorum", quorum),
    ];
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
