//! The views drawn on a `TestBackend` from real states of simulated clusters,
//! checked on the buffer's text. The simulator is deterministic and these
//! tests never sleep: time on screen comes from the instants put into the
//! updates.

use super::{matrix, render};
use crate::{
    KeyHelp, UIAppConfig,
    model::{Model, Update, UpdateKind},
    test_cluster::{ETT, all_states, cluster, states_at},
};
use omnipaxos_tests::SimCluster;
use pretty_assertions::assert_eq;
use ratatui::{Terminal, backend::TestBackend, buffer::Buffer};
use std::time::{Duration, Instant};

/// The screen as characters, one row per line.
struct Screen {
    rows: Vec<Vec<char>>,
}

impl Screen {
    fn of(buffer: &Buffer) -> Self {
        let area = buffer.area;
        let rows = (area.y..area.y + area.height)
            .map(|y| {
                (area.x..area.x + area.width)
                    .flat_map(|x| buffer[(x, y)].symbol().chars().collect::<Vec<_>>())
                    .collect()
            })
            .collect();
        Self { rows }
    }

    fn line(&self, y: usize) -> String {
        self.rows[y].iter().collect()
    }

    fn text(&self) -> String {
        (0..self.rows.len())
            .map(|y| self.line(y))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Where `needle` starts, in cells.
    fn find(&self, needle: &str) -> Option<(usize, usize)> {
        let needle: Vec<char> = needle.chars().collect();
        self.rows.iter().enumerate().find_map(|(y, row)| {
            row.windows(needle.len())
                .position(|w| w == needle.as_slice())
                .map(|x| (x, y))
        })
    }

    /// The inside of the pane whose title starts with `title`, one trimmed
    /// string per line.
    fn pane(&self, title: &str) -> Vec<String> {
        let (x, y) = self
            .find(&format!(" {title}"))
            .unwrap_or_else(|| panic!("no pane {title:?} on\n{}", self.text()));
        // The title sits on the top border, one cell right of the corner.
        let left = x - 1;
        assert_eq!(self.rows[y][left], '┌', "pane {title:?} is not at a corner");
        let right = (left + 1..self.rows[y].len())
            .find(|&i| self.rows[y][i] == '┐')
            .expect("the pane's right corner");
        let bottom = (y + 1..self.rows.len())
            .find(|&j| self.rows[j][left] == '└')
            .expect("the pane's bottom corner");
        (y + 1..bottom)
            .map(|j| {
                self.rows[j][left + 1..right]
                    .iter()
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .collect()
    }

    /// A pane's lines joined with spaces: wrapped text reads as one line.
    fn pane_text(&self, title: &str) -> String {
        self.pane(title)
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn draw(model: &Model, width: u16, height: u16) -> Screen {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("a test terminal");
    terminal
        .draw(|frame| render(frame, model))
        .expect("drawing on a TestBackend cannot fail");
    Screen::of(terminal.backend().buffer())
}

fn model_for(cluster: &SimCluster, pid: u64) -> (Model, Instant) {
    let config = UIAppConfig {
        pid,
        peers: cluster
            .ids()
            .iter()
            .copied()
            .filter(|&p| p != pid)
            .collect(),
        key_help: vec![KeyHelp::new("x", "crash")],
        ..Default::default()
    };
    let start = Instant::now();
    (Model::new(&config, start), start)
}

fn node_update(at: Instant, cluster: &SimCluster, pid: u64) -> Update {
    Update {
        at,
        kind: UpdateKind::Node(states_at(cluster, pid)),
    }
}

fn cluster_update(at: Instant, cluster: &SimCluster) -> Update {
    Update {
        at,
        kind: UpdateKind::Cluster(all_states(cluster)),
    }
}

/// A cluster with a leader and `entries` decided entries everywhere.
fn steady(ids: &[u64], entries: usize) -> (SimCluster, u64) {
    let mut c = cluster(ids);
    let leader = c.wait_for_leader(4 * ETT);
    for _ in 0..entries {
        let v = c.propose_new(leader);
        c.run_until(|c| c.all_live_decided(&v), 2 * ETT);
    }
    // Every follower's acceptance reaches the leader.
    c.run_for(2);
    (c, leader)
}

#[test]
fn the_leader_view_shows_its_role_its_peers_and_a_full_gauge_per_follower() {
    let (c, leader) = steady(&[1, 2, 3], 4);
    let (mut model, start) = model_for(&c, leader);
    model.apply(node_update(start + Duration::from_secs(1), &c, leader));
    let screen = draw(&model, 120, 40);

    let header = screen.line(0);
    assert!(header.contains(&format!("node {leader}")), "{header}");
    assert!(header.contains("LEADER"), "{header}");
    assert!(header.contains("+1.0s"), "{header}");

    let node = screen.pane(&format!("this node: {leader}"));
    assert_eq!(node[1], "role      leader (accept)");
    assert_eq!(node[3], "leader    itself");
    assert_eq!(node[4], "decided   4");
    assert_eq!(node[7], "quorum    connected");

    let peers = screen.pane("peers, as this node sees them");
    assert_eq!(peers[0], "peer     link last heard accepted");
    for (row, pid) in peers[1..3].iter().zip(c.others(leader)) {
        assert_eq!(*row, format!("{pid:<8} up   now        4"));
    }

    let replication = screen.pane(&format!("replication, as leader {leader} sees it"));
    for (row, pid) in replication.iter().zip(c.others(leader)) {
        assert!(row.starts_with(&format!("node {pid}")), "{row}");
        assert!(row.contains("4/4"), "{row}");
    }
    // No cluster states were given: no matrix pane.
    assert_eq!(screen.find("who hears whom"), None);
    // The application's keys, then the dashboard's own.
    let last = screen.line(39);
    assert!(last.contains(" x  crash "), "{last}");
    assert!(last.contains(" q/Esc  quit "), "{last}");
}

#[test]
fn the_follower_view_names_the_leader_and_says_where_replication_is_seen() {
    let (c, leader) = steady(&[1, 2, 3], 2);
    let follower = c.others(leader)[0];
    let (mut model, start) = model_for(&c, follower);
    model.apply(node_update(start, &c, follower));
    let screen = draw(&model, 120, 40);

    assert!(screen.line(0).contains("follower"), "{}", screen.line(0));
    let node = screen.pane(&format!("this node: {follower}"));
    assert_eq!(node[1], "role      follower (accept)");
    assert!(
        node[3].starts_with(&format!("leader    {leader} (n=")),
        "{}",
        node[3]
    );
    let peers = screen.pane("peers, as this node sees them");
    let leader_row = peers
        .iter()
        .find(|r| r.starts_with(&format!("{leader} leader")))
        .expect("the leader's row is marked");
    // A follower does not know the others' logs.
    assert!(leader_row.ends_with('-'), "{leader_row}");
    let hint = screen.pane_text("replication");
    assert!(hint.contains(&format!("node {leader} leads")), "{hint}");
}

#[test]
fn a_partitioned_peer_shows_as_down_and_not_heard_for_rounds_and_becomes_an_event() {
    let (mut c, leader) = steady(&[1, 2, 3], 1);
    let cut_off = c.others(leader)[0];
    let (mut model, start) = model_for(&c, leader);
    model.apply(node_update(start, &c, leader));
    c.isolate(cut_off);
    c.run_for(3 * ETT);
    model.apply(node_update(start + Duration::from_secs(3), &c, leader));
    let screen = draw(&model, 120, 40);

    let peers = screen.pane("peers, as this node sees them");
    let row = peers
        .iter()
        .find(|r| r.starts_with(&cut_off.to_string()))
        .expect("a row for the cut-off peer");
    assert!(row.contains("DOWN"), "{row}");
    assert!(row.contains("3 rounds"), "{row}");
    let other = c.others(leader)[1];
    let healthy = peers
        .iter()
        .find(|r| r.starts_with(&other.to_string()))
        .expect("a row for the other peer");
    assert!(healthy.contains("up   now"), "{healthy}");
    let events = screen.pane_text("events");
    assert!(
        events.contains(&format!("+3.0s node {leader} lost {cut_off}")),
        "{events}"
    );

    c.heal_node(cut_off);
    c.run_for(2 * ETT);
    model.apply(node_update(start + Duration::from_secs(5), &c, leader));
    let screen = draw(&model, 120, 40);
    let peers = screen.pane("peers, as this node sees them");
    assert!(
        peers
            .iter()
            .any(|r| *r == format!("{cut_off:<8} up   now        1")),
        "{peers:?}"
    );
    let events = screen.pane_text("events");
    assert!(
        events.contains(&format!("+5.0s node {leader} reaches {cut_off} again")),
        "{events}"
    );
}

/// The matrix rows the pane must show, built by the rule each scenario
/// states rather than by the view's code: `--` where `cut(row, col)` says
/// the row does not hear the column.
fn expected_matrix(c: &SimCluster, attached: u64, deaf: impl Fn(u64, u64) -> bool) -> Vec<String> {
    let ids = c.ids();
    assert_eq!(ids, [1, 2, 3, 4, 5], "the header below is for five servers");
    let mut lines = vec!["       1   2   3   4   5  leader  quorum".to_string()];
    for &row in ids {
        let s = states_at(c, row);
        let cells: String = ids
            .iter()
            .map(|&col| match () {
                _ if col == row => "  · ",
                _ if deaf(row, col) => "  --",
                _ => "  ok",
            })
            .collect();
        let leader = s.current_leader.expect("everyone follows a leader").pid;
        let quorum = if s.quorum_connected { "yes" } else { "NO" };
        let marker = if row == attached { '>' } else { ' ' };
        lines.push(format!("{marker}{row:>3} {cells}{leader:>7} {quorum:>7}"));
    }
    lines.push("ok heard  -- not heard  ?? down".to_string());
    lines
}

#[test]
fn the_matrix_of_the_chained_scenario_shows_the_one_cut_link_both_ways() {
    // The Omni-Paxos paper's chained scenario on five servers: the leader
    // loses its link to one follower only; everyone else is linked to all.
    let (mut c, leader) = steady(&[1, 2, 3, 4, 5], 1);
    let far = c.others(leader)[0];
    c.cut_both(leader, far);
    let v = c.propose_new(leader);
    c.run_until(|c| c.decided_by_any(&v), 4 * ETT + 10);
    c.run_for(4 * ETT);
    let (mut model, start) = model_for(&c, 1);
    model.apply(cluster_update(start, &c));
    let screen = draw(&model, 160, 50);

    let mut pane = screen.pane("who hears whom");
    pane.truncate(7);
    let cut = |a: u64, b: u64| (a, b) == (leader, far) || (a, b) == (far, leader);
    assert_eq!(pane, expected_matrix(&c, 1, cut));
    assert_eq!(
        matrix::width(5),
        42,
        "the pane is exactly as wide as its rows"
    );
}

#[test]
fn the_matrix_of_the_quorum_loss_scenario_is_a_star_around_the_only_quorum_connected_server() {
    // Quorum loss: the leader keeps a link to C only, C is linked to everyone,
    // the others to C only.
    let (mut c, leader) = steady(&[1, 2, 3, 4, 5], 1);
    let hub = c.others(leader)[0];
    let links: Vec<_> = c.others(hub).into_iter().map(|p| (hub, p)).collect();
    c.only_links(&links);
    let v = c.propose_new(hub);
    c.run_until(|c| c.decided_by_any(&v), 4 * ETT + 10);
    c.run_for(2 * ETT);
    let (mut model, start) = model_for(&c, leader);
    model.apply(cluster_update(start, &c));
    let screen = draw(&model, 160, 50);

    let mut pane = screen.pane("who hears whom");
    pane.truncate(7);
    let deaf = |a: u64, b: u64| a != hub && b != hub;
    assert_eq!(pane, expected_matrix(&c, leader, deaf));
    // Only the hub reaches a quorum, so every row follows it.
    assert!(
        pane[1..6].iter().all(|r| r.contains(&format!("{hub:>7}"))),
        "{pane:?}"
    );
}

#[test]
fn a_crashed_server_is_a_down_row_and_unheard_by_the_others() {
    let (mut c, leader) = steady(&[1, 2, 3], 1);
    let (mut model, start) = model_for(&c, leader);
    model.apply(cluster_update(start, &c));
    let down = c.others(leader)[0];
    c.crash(down);
    c.run_for(3 * ETT);
    model.apply(cluster_update(start + Duration::from_secs(2), &c));
    let screen = draw(&model, 160, 50);

    let pane = screen.pane("who hears whom");
    let row = pane
        .iter()
        .find(|r| r[1..].starts_with(&format!("{down:>3} ")))
        .expect("a row for the crashed server");
    let cells: String = c
        .ids()
        .iter()
        .map(|&col| if col == down { "  · " } else { "  ??" })
        .collect();
    assert_eq!(*row, format!(" {down:>3} {cells}{:>7}", "down"));
    let leader_row = pane
        .iter()
        .find(|r| r.starts_with(&format!(">{leader:>3} ")))
        .expect("the attached leader's row");
    assert!(leader_row.contains("--"), "{leader_row}");
    let events = screen.pane_text("events");
    assert!(
        events.contains(&format!("+2.0s node {down} is down")),
        "{events}"
    );
}

#[test]
fn a_terminal_too_small_asks_to_resize_instead_of_drawing_panes() {
    let (c, leader) = steady(&[1, 2, 3], 0);
    let (mut model, start) = model_for(&c, leader);
    model.apply(cluster_update(start, &c));
    let screen = draw(&model, 60, 20);
    let text = screen.text();
    assert!(text.contains("terminal too small: please resize"), "{text}");
    assert!(text.contains("have 60x20, need at least"), "{text}");
    assert_eq!(screen.find("this node"), None);
    // Degenerate sizes draw without panicking.
    for (w, h) in [(0, 0), (1, 1), (200, 3), (3, 200)] {
        draw(&model, w, h);
    }
}
