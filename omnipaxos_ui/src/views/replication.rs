//! "Replication": how far each follower's log reaches, as the leader knows it.

use super::{dim, pane};
use crate::model::Model;
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Style},
    text::Line,
    widgets::{Gauge, Paragraph, Wrap},
};

pub(super) fn render(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let Some(leader) = model.replication_source() else {
        let hint = match model.own.as_ref().and_then(|s| s.current_leader) {
            Some(b) => format!(
                "only the leader knows its followers' progress: node {} leads; \
                 attach the dashboard there, or hand it every node's states",
                b.pid
            ),
            None => "no leader: nothing is replicated".to_string(),
        };
        frame.render_widget(
            Paragraph::new(Line::styled(hint, dim()))
                .wrap(Wrap { trim: true })
                .block(pane("replication")),
            area,
        );
        return;
    };
    let block = pane(format!(
        "replication, as leader {} sees it (log {})",
        leader.pid, leader.accepted_idx
    ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let followers = &leader.cluster_state;
    let rows = Layout::vertical(followers.iter().map(|_| Constraint::Length(1))).split(inner);
    for (peer, row) in followers.iter().zip(rows.iter()) {
        let [name, bar] =
            Layout::horizontal([Constraint::Length(8), Constraint::Min(10)]).areas(*row);
        frame.render_widget(Paragraph::new(format!("node {}", peer.pid)), name);
        let (ratio, label, color) = match peer.accepted_idx {
            Some(idx) => {
                // An empty log is fully replicated by every follower.
                let ratio = if leader.accepted_idx == 0 {
                    1.0
                } else {
                    (idx as f64 / leader.accepted_idx as f64).clamp(0.0, 1.0)
                };
                let color = if ratio >= 1.0 {
                    Color::Green
                } else {
                    Color::Yellow
                };
                (ratio, format!("{idx}/{}", leader.accepted_idx), color)
            }
            None => (0.0, "not synced".to_string(), Color::Red),
        };
        frame.render_widget(
            Gauge::default()
                .ratio(ratio)
                .label(label)
                .gauge_style(Style::new().fg(color).bg(Color::Black)),
            bar,
        );
    }
}
