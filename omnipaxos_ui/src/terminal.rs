//! The terminal thread: it owns the terminal (raw mode, alternate screen),
//! reads keys, takes the latest states from the slot and draws. Everything
//! the node's side touches is in [`Shared`], behind locks held only for a
//! swap or a copy.

use crate::{
    UIAppConfig, UiError,
    log::LogBook,
    model::{Model, Update},
    slot::Slot,
    views,
};
use crossterm::{
    cursor::{Hide, Show},
    event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers},
    execute,
    terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
};
use ratatui::{Terminal, backend::CrosstermBackend};
use std::{
    collections::VecDeque,
    io,
    sync::{
        Arc, Mutex, Once, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

/// Keys the application has not taken yet, at most; more are dropped (an
/// application that does not read keys should not make the dashboard grow).
const KEY_QUEUE: usize = 64;

/// Whether a dashboard has the terminal in raw mode on the alternate
/// screen. Process-wide, as the terminal is: the panic hook reads it, and a
/// second dashboard may not take the terminal while it is set.
static TERMINAL_TAKEN: AtomicBool = AtomicBool::new(false);

/// The panic hook is installed once per process, in front of whatever hook
/// was there.
static PANIC_HOOK: Once = Once::new();

/// What the node's side and the terminal thread share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The latest states, not yet drawn.
    pub(crate) updates: Slot<Update>,
    /// The latest status line from the application.
    pub(crate) status: Slot<String>,
    pub(crate) log: Arc<LogBook>,
    keys: Mutex<VecDeque<char>>,
    /// Cleared by `stop`, or by the terminal thread when the user quits.
    pub(crate) running: AtomicBool,
    /// When the dashboard was created; times on screen count from here.
    pub(crate) start: Instant,
}

impl Shared {
    pub(crate) fn new(log_capacity: usize) -> Self {
        let start = Instant::now();
        Self {
            updates: Slot::new(),
            status: Slot::new(),
            log: Arc::new(LogBook::new(log_capacity, start)),
            keys: Mutex::new(VecDeque::with_capacity(KEY_QUEUE)),
            running: AtomicBool::new(false),
            start,
        }
    }

    fn push_key(&self, key: char) {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.len() < KEY_QUEUE {
            keys.push_back(key);
        }
    }

    pub(crate) fn take_key(&self) -> Option<char> {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }
}

/// Proof that this dashboard took the terminal; dropping it gives the
/// terminal back as it was (also when the thread unwinds).
#[derive(Debug)]
pub(crate) struct TerminalGuard(());

impl TerminalGuard {
    /// Puts the terminal in raw mode on the alternate screen, or says why
    /// it cannot.
    pub(crate) fn take() -> Result<Self, UiError> {
        if TERMINAL_TAKEN.swap(true, Ordering::AcqRel) {
            return Err(UiError::TerminalInUse);
        }
        install_panic_hook();
        if let Err(e) = enable_raw_mode() {
            // Nothing was changed, so there is nothing to restore.
            TERMINAL_TAKEN.store(false, Ordering::Release);
            return Err(UiError::terminal("raw mode")(e));
        }
        // From here on the guard's drop undoes whatever part succeeded.
        let guard = Self(());
        execute!(io::stdout(), EnterAlternateScreen, Hide)
            .map_err(UiError::terminal("alternate screen"))?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Leaves raw mode and the alternate screen, if a dashboard is in them.
/// Safe to call twice (the panic hook and the guard both do): only the first
/// call after a take does anything.
fn restore_terminal() {
    if TERMINAL_TAKEN.swap(false, Ordering::AcqRel) {
        // Nothing better to do with a failure here than to go on restoring.
        let _ = disable_raw_mode();
        let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
    }
}

/// A panic anywhere in the process first gives the terminal back, so that
/// the panic message is readable and the shell usable, then runs the hook
/// that was installed before. The terminal thread sees the terminal gone and
/// ends.
fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
    });
}

/// What a key press means to the dashboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyAction {
    /// `q`, `Esc` or `Ctrl-C` (raw mode turns off the terminal's own Ctrl-C).
    Quit,
    /// Any other character: the application's (`take_key`).
    Forward(char),
    /// Not a character, or a release or repeat report.
    Ignore,
}

pub(crate) fn key_action(key: KeyEvent) -> KeyAction {
    if key.kind != KeyEventKind::Press {
        return KeyAction::Ignore;
    }
    match key.code {
        KeyCode::Esc | KeyCode::Char('q') => KeyAction::Quit,
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => KeyAction::Quit,
        KeyCode::Char(c) => KeyAction::Forward(c),
        _ => KeyAction::Ignore,
    }
}

/// The terminal thread's body: until stopped or quit, wait up to a frame for
/// a key, take what changed, and draw if anything did.
pub(crate) fn run(
    guard: TerminalGuard,
    shared: Arc<Shared>,
    config: UIAppConfig,
) -> Result<(), UiError> {
    let result = draw_loop(&shared, &config);
    shared.running.store(false, Ordering::Release);
    drop(guard);
    result
}

fn draw_loop(shared: &Shared, config: &UIAppConfig) -> Result<(), UiError> {
    let mut terminal =
        Terminal::new(CrosstermBackend::new(io::stdout())).map_err(UiError::terminal("setup"))?;
    let mut model = Model::new(config, shared.start);
    let mut log_generation = None;
    let mut dirty = true;
    loop {
        // A panic elsewhere gave the terminal back: stop drawing on it.
        if !shared.running.load(Ordering::Acquire) || !TERMINAL_TAKEN.load(Ordering::Acquire) {
            return Ok(());
        }
        if event::poll(config.frame_interval).map_err(UiError::terminal("input"))? {
            match event::read().map_err(UiError::terminal("input"))? {
                Event::Key(key) => match key_action(key) {
                    KeyAction::Quit => return Ok(()),
                    KeyAction::Forward(c) => shared.push_key(c),
                    KeyAction::Ignore => {}
                },
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
        if let Some(update) = shared.updates.take() {
            model.apply(update);
            model.skipped = shared.updates.skipped();
            dirty = true;
        }
        if let Some(status) = shared.status.take() {
            model.status = status;
            dirty = true;
        }
        let generation = shared.log.generation();
        if log_generation != Some(generation) {
            log_generation = Some(generation);
            // As many lines as could ever be on screen.
            let height = terminal.size().map_or(100, |s| s.height);
            model.log = shared.log.newest(usize::from(height));
            dirty = true;
        }
        if dirty {
            terminal
                .draw(|frame| views::render(frame, &model))
                .map_err(UiError::terminal("draw"))?;
            dirty = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn q_esc_and_ctrl_c_quit_and_other_characters_go_to_the_application() {
        assert_eq!(
            key_action(press(KeyCode::Char('q'), KeyModifiers::NONE)),
            KeyAction::Quit
        );
        assert_eq!(
            key_action(press(KeyCode::Esc, KeyModifiers::NONE)),
            KeyAction::Quit
        );
        assert_eq!(
            key_action(press(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            KeyAction::Quit
        );
        assert_eq!(
            key_action(press(KeyCode::Char('c'), KeyModifiers::NONE)),
            KeyAction::Forward('c')
        );
        assert_eq!(
            key_action(press(KeyCode::Char('3'), KeyModifiers::NONE)),
            KeyAction::Forward('3')
        );
        assert_eq!(
            key_action(press(KeyCode::Up, KeyModifiers::NONE)),
            KeyAction::Ignore
        );
        let mut release = press(KeyCode::Char('x'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert_eq!(key_action(release), KeyAction::Ignore);
    }

    #[test]
    fn keys_beyond_the_queue_bound_are_dropped() {
        let shared = Shared::new(1);
        for _ in 0..KEY_QUEUE + 10 {
            shared.push_key('x');
        }
        let mut n = 0;
        while shared.take_key().is_some() {
            n += 1;
        }
        assert_eq!(n, KEY_QUEUE);
    }
}
