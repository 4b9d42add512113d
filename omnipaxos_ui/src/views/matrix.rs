//! "Who hears whom": the connectivity matrix of every server that reported.
//!
//! Row `r`, column `c` says whether heartbeats from `c` reach `r`, which is
//! one direction of the link, so a one-way cut shows as one cell and a
//! partition shows as a pattern: the chained scenario is a pair of `--`
//! cells mirrored across the diagonal, quorum loss a star around the one
//! server that reaches everyone.

use super::{dim, pane, title_style};
use crate::model::{Link, Model};
use omnipaxos::Role;
use ratatui::{
    Frame,
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::Paragraph,
};

/// Characters of the row label (`> 1 `).
const LABEL: u16 = 5;
/// Characters per server column.
const CELL: u16 = 4;
/// The `leader` and `quorum` columns.
const TAIL: u16 = 15;

/// The pane's width for `n` servers, borders included.
pub(super) fn width(n: u16) -> u16 {
    2 + LABEL + CELL * n + TAIL
}

pub(super) fn render(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let block = pane("who hears whom (row hears column)");
    let Some(rows) = model.matrix() else {
        return;
    };
    let mut lines = Vec::with_capacity(rows.len() + 2);
    let mut header = vec![Span::raw(" ".repeat(LABEL as usize))];
    for pid in &model.pids {
        header.push(Span::styled(format!("{pid:>3} "), title_style()));
    }
    header.push(Span::styled(
        format!("{:>7} {:>7}", "leader", "quorum"),
        title_style(),
    ));
    lines.push(Line::from(header));
    for row in &rows {
        let marker = if row.pid == model.pid { '>' } else { ' ' };
        let label_style = match row.state {
            Some(s) if s.role == Role::Leader => {
                Style::new().fg(Color::Green).add_modifier(Modifier::BOLD)
            }
            Some(_) => Style::new(),
            None => Style::new().fg(Color::Red),
        };
        let mut spans = vec![Span::styled(
            format!("{marker}{:>3} ", row.pid),
            label_style,
        )];
        for link in &row.links {
            spans.push(match link {
                Link::Own => Span::styled("  · ", dim()),
                Link::Hears => Span::styled("  ok", Style::new().fg(Color::Green)),
                Link::Deaf => Span::styled(
                    "  --",
                    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
                ),
                Link::Unknown => Span::styled("  ??", dim()),
            });
        }
        match row.state {
            Some(s) => {
                let leader = s.leader.map_or_else(|| "-".to_string(), |l| l.to_string());
                spans.push(Span::raw(format!("{leader:>7} ")));
                spans.push(if s.quorum_connected {
                    Span::styled(format!("{:>7}", "yes"), Style::new().fg(Color::Green))
                } else {
                    Span::styled(format!("{:>7}", "NO"), Style::new().fg(Color::Red))
                });
            }
            None => spans.push(Span::styled(
                format!("{:>7}", "down"),
                Style::new().fg(Color::Red),
            )),
        }
        lines.push(Line::from(spans));
    }
    lines.push(Line::styled("ok heard  -- not heard  ?? down", dim()));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
