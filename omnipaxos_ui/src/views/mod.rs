//! Pure rendering: each pane is a function from the [`Model`] to a region of
//! a ratatui [`Frame`]. Nothing here reads the clock, the terminal or shared
//! state, so every screen can be drawn on a `TestBackend` and checked cell by
//! cell.
//!
//! ```text
//!  header: title · node · role · leader · config · time
//! ┌ this node ─┐┌ peers ─────────┐┌ who hears whom ──────┐  (the matrix only
//! │ role, ...  ││ link, heard,   ││ row hears column     │   with cluster
//! └────────────┘└ accepted ──────┘└──────────────────────┘   states)
//! ┌ replication ────────┐┌ decided entries/s ─────────────┐
//! │ a gauge per follower││ chart                          │
//! └─────────────────────┘└────────────────────────────────┘
//! ┌ events ─────────────┐┌ log ───────────────────────────┐
//! └─────────────────────┘└────────────────────────────────┘
//!  keys and status
//! ```

mod events;
mod header;
mod help;
mod log;
mod matrix;
mod node;
mod peers;
mod rate;
mod replication;
#[cfg(test)]
mod tests;

use crate::model::Model;
use ratatui::{
    Frame,
    layout::{Alignment, Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::Line,
    widgets::{Block, Paragraph, Wrap},
};
use std::time::Duration;

/// Width of the "this node" pane.
const NODE_WIDTH: u16 = 30;
/// The peers pane's minimum width: its four columns, their spacing and the
/// borders.
const PEERS_MIN_WIDTH: u16 = 35;
/// Lines the events and log row needs to be of use.
const BOTTOM_MIN_HEIGHT: u16 = 5;

/// Draws the whole dashboard, or a request to resize when the terminal is
/// too small for it.
pub(crate) fn render(frame: &mut Frame<'_>, model: &Model) {
    let area = frame.area();
    let (min_width, min_height) = min_size(model, area.width);
    if area.width < min_width || area.height < min_height {
        too_small(frame, area, (min_width, min_height));
        return;
    }
    let n = model.pids.len() as u16;
    // Lines beyond the minimum go two fifths to the chart's row and the rest
    // to the events and log, which are the panes that scroll.
    let spare = area.height - min_height;
    let [header_area, top, middle, bottom, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(top_height(n)),
        Constraint::Length(middle_height(n) + spare * 2 / 5),
        Constraint::Min(BOTTOM_MIN_HEIGHT),
        Constraint::Length(help::height(model, area.width)),
    ])
    .areas(area);
    header::render(frame, header_area, model);
    if model.cluster.is_some() {
        let [node_area, peers_area, matrix_area] = Layout::horizontal([
            Constraint::Length(NODE_WIDTH),
            Constraint::Min(PEERS_MIN_WIDTH),
            Constraint::Length(matrix::width(n)),
        ])
        .areas(top);
        node::render(frame, node_area, model);
        peers::render(frame, peers_area, model);
        matrix::render(frame, matrix_area, model);
    } else {
        let [node_area, peers_area] = Layout::horizontal([
            Constraint::Length(NODE_WIDTH),
            Constraint::Min(PEERS_MIN_WIDTH),
        ])
        .areas(top);
        node::render(frame, node_area, model);
        peers::render(frame, peers_area, model);
    }
    let [replication_area, rate_area] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(middle);
    replication::render(frame, replication_area, model);
    rate::render(frame, rate_area, model);
    let [events_area, log_area] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(bottom);
    events::render(frame, events_area, model);
    log::render(frame, log_area, model);
    help::render(frame, footer, model);
}

/// The smallest terminal the dashboard draws in, for this model at this
/// width (the help bar wraps, so its height depends on the width).
pub(crate) fn min_size(model: &Model, width: u16) -> (u16, u16) {
    let n = model.pids.len() as u16;
    let mut min_width = NODE_WIDTH + PEERS_MIN_WIDTH;
    if model.cluster.is_some() {
        min_width += matrix::width(n);
    }
    let min_height =
        1 + top_height(n) + middle_height(n) + BOTTOM_MIN_HEIGHT + help::height(model, width);
    (min_width, min_height)
}

/// The node, peers and matrix row: a line per server in the matrix, plus
/// its header, legend and borders.
fn top_height(n: u16) -> u16 {
    (n + 5).max(10)
}

/// The replication and chart row: a gauge per follower plus borders, and
/// enough for a readable chart.
fn middle_height(n: u16) -> u16 {
    (n + 1).max(7)
}

fn too_small(frame: &mut Frame<'_>, area: Rect, (width, height): (u16, u16)) {
    let text = vec![
        Line::from("terminal too small: please resize"),
        Line::from(format!(
            "have {}x{}, need at least {width}x{height}",
            area.width, area.height
        )),
        Line::from("q or Esc quits"),
    ];
    let [_, middle, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(3),
        Constraint::Fill(1),
    ])
    .areas(area);
    frame.render_widget(
        Paragraph::new(text)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true })
            .style(Style::new().fg(Color::Yellow)),
        middle,
    );
}

/// A bordered pane with a title.
fn pane(title: impl Into<String>) -> Block<'static> {
    Block::bordered().title(Line::from(format!(" {} ", title.into())).style(title_style()))
}

fn title_style() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}

/// A time since the dashboard started, as `+12.3s`.
fn at(d: Duration) -> String {
    format!("+{:.1}s", d.as_secs_f64())
}
