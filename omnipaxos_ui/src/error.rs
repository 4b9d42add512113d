//! [`UiError`]: why the dashboard could not start or had to stop.

/// Why the dashboard could not start, or why its terminal thread ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UiError {
    /// A setting of [`UIAppConfig`](crate::UIAppConfig) is unusable; the
    /// caller's mistake, reported by [`OmniPaxosUI::start`](crate::OmniPaxosUI::start).
    #[error("invalid dashboard setting `{field}`: {reason}")]
    InvalidConfig {
        /// The field of `UIAppConfig`.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Another dashboard in this process already owns the terminal: there is
    /// one terminal, and two dashboards drawing on it would garble both.
    #[error("another dashboard already owns the terminal")]
    TerminalInUse,
    /// Reading from or writing to the terminal failed: usually standard
    /// output is not a terminal (redirected to a file or a pipe), or the
    /// terminal went away.
    #[error("terminal {op} failed: {source}")]
    Terminal {
        /// What the dashboard was doing (`"setup"`, `"draw"`, `"input"`, ...).
        op: &'static str,
        /// The error from the operating system.
        #[source]
        source: std::io::Error,
    },
    /// The operating system refused to start the dashboard's thread.
    #[error("could not start the dashboard thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// The dashboard's thread panicked (a bug in the dashboard); the terminal
    /// was restored by the panic hook.
    #[error("the dashboard thread panicked")]
    Panicked,
}

impl UiError {
    pub(crate) fn terminal(op: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Self::Terminal { op, source }
    }
}
