//! "Peers": each peer as the attached server sees it.

use super::{dim, pane, title_style};
use crate::model::{Model, hears};
use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    style::{Color, Style},
    text::Line,
    widgets::{Cell, Paragraph, Row, Table},
};

pub(super) fn render(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let block = pane("peers, as this node sees them");
    let Some(s) = &model.own else {
        frame.render_widget(
            Paragraph::new(Line::styled("no state", dim())).block(block),
            area,
        );
        return;
    };
    let leader = s.current_leader.map(|b| b.pid);
    let rows = s.cluster_state.iter().map(|p| {
        let name = if Some(p.pid) == leader {
            format!("{} leader", p.pid)
        } else {
            p.pid.to_string()
        };
        let link = if p.connected {
            Cell::from("up").style(Style::new().fg(Color::Green))
        } else {
            Cell::from("DOWN").style(Style::new().fg(Color::Red))
        };
        let heard = match p.last_heartbeat_round {
            _ if hears(s, p) => Cell::from("now").style(Style::new().fg(Color::Green)),
            None => Cell::from("never").style(Style::new().fg(Color::Red)),
            Some(r) => Cell::from(format!("{} rounds", s.heartbeat_round.wrapping_sub(r)))
                .style(Style::new().fg(Color::Red)),
        };
        let accepted = match p.accepted_idx {
            Some(idx) => Cell::from(idx.to_string()),
            None => Cell::from("-").style(dim()),
        };
        Row::new(vec![Cell::from(name), link, heard, accepted])
    });
    // `link` needs a round trip (the peer answered the last heartbeat
    // round); `last heard` is one way (when its heartbeats last arrived), so
    // the two together tell a one-way cut from a dead peer.
    let header = Row::new(["peer", "link", "last heard", "accepted"]).style(title_style());
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Length(4),
            Constraint::Length(10),
            Constraint::Min(8),
        ],
    )
    .header(header)
    .block(block);
    frame.render_widget(table, area);
}
