//! The log pane's source: a `slog` drain that keeps the last records in
//! memory for the terminal thread to draw.

use crate::ring::Ring;
use slog::{Drain, KV, Level, OwnedKVList, Record, Serializer};
use std::{
    fmt::{self, Write as _},
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// One formatted record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogLine {
    /// Time since the dashboard was created.
    pub(crate) at: Duration,
    pub(crate) level: Level,
    /// The message, then its key-values as ` key=value`.
    pub(crate) text: String,
}

/// The last log lines, shared by every clone of the dashboard's logger and
/// the terminal thread.
#[derive(Debug)]
pub(crate) struct LogBook {
    lines: Mutex<Ring<LogLine>>,
    /// Bumped on every record, so that the terminal thread copies the lines
    /// only when there are new ones.
    generation: AtomicU64,
    /// Record times are measured from here.
    start: Instant,
}

impl LogBook {
    pub(crate) fn new(capacity: usize, start: Instant) -> Self {
        Self {
            lines: Mutex::new(Ring::with_capacity(capacity)),
            generation: AtomicU64::new(0),
            start,
        }
    }

    pub(crate) fn push(&self, line: LogLine) {
        self.lock().push(line);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// A number that changes whenever a line is added.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The newest `n` lines (fewer if there are fewer), oldest first. The
    /// terminal thread copies them and draws from the copy, so a logging
    /// node waits at most for this copy, never for a draw.
    pub(crate) fn newest(&self, n: usize) -> Vec<LogLine> {
        let lines = self.lock();
        let skip = lines.len().saturating_sub(n);
        lines.iter().skip(skip).cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, Ring<LogLine>> {
        // A push cannot leave the ring half-changed, so poison carries no
        // meaning here.
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The drain behind [`OmniPaxosUI::logger`](crate::OmniPaxosUI::logger).
pub(crate) struct PaneDrain {
    pub(crate) book: std::sync::Arc<LogBook>,
}

impl Drain for PaneDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut text = String::new();
        let _ = write!(text, "{}", record.msg());
        let mut kv = LineSerializer(&mut text);
        // Writing into a String cannot fail; a value whose Display fails
        // only loses its own text.
        let _ = record.kv().serialize(record, &mut kv);
        let _ = values.serialize(record, &mut kv);
        self.book.push(LogLine {
            at: self.book.start.elapsed(),
            level: record.level(),
            text,
        });
        Ok(())
    }
}

/// Appends each key-value as ` key=value`.
struct LineSerializer<'a>(&'a mut String);

impl Serializer for LineSerializer<'_> {
    fn emit_arguments(&mut self, key: slog::Key, val: &fmt::Arguments<'_>) -> slog::Result {
        write!(self.0, " {key}={val}")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn records_become_lines_with_their_key_values_and_the_oldest_leave_first() {
        let book = Arc::new(LogBook::new(2, Instant::now()));
        let log = slog::Logger::root(PaneDrain { book: book.clone() }, slog::o!("node" => 1));
        let before = book.generation();
        slog::info!(log, "crashed"; "pid" => 2);
        slog::warn!(log, "cut"; "from" => 1, "to" => 3);
        slog::debug!(log, "healed");
        assert_ne!(book.generation(), before);
        let lines: Vec<_> = book
            .newest(10)
            .into_iter()
            .map(|l| (l.level, l.text))
            .collect();
        assert_eq!(
            lines,
            vec![
                (Level::Warning, "cut to=3 from=1 node=1".to_string()),
                (Level::Debug, "healed node=1".to_string()),
            ]
        );
        assert_eq!(book.newest(1).len(), 1);
    }
}
