//! Structured protocol logs (feature `logging`).
//!
//! The protocol logs through a `slog::Logger` it is given: the user's (see
//! [`OmniPaxosConfig::build_with_logger`]), or the default that `build`
//! makes. The default writes to `logger_file_path` through an asynchronous
//! drain, so that the protocol's own path never waits for the file, and
//! discards everything when no path is set. Without the feature the logger
//! is `()` and every log line compiles to nothing.
//!
//! Events are logged at info level when they change who leads or what the
//! log is (a leader elected, a prepare phase won, a log synchronised, a
//! stop-sign proposed or decided, a compaction, a migration started or
//! finished), at debug level for the rest (a ballot promised, a follower
//! synchronised), and at error level for a storage failure. Nothing is
//! logged per entry.

#[cfg(feature = "logging")]
use crate::{config::OmniPaxosConfig, errors::ConfigError};

/// What the protocol logs through.
#[cfg(feature = "logging")]
pub(crate) type Logger = slog::Logger;
/// What the protocol logs through: nothing, without the `logging` feature.
#[cfg(not(feature = "logging"))]
pub(crate) type Logger = ();

/// Logs one event through `$logger` with slog's syntax; nothing without the
/// `logging` feature.
macro_rules! log {
    ($level:ident, $logger:expr, $($args:tt)+) => {{
        #[cfg(feature = "logging")]
        slog::$level!($logger, $($args)+);
    }};
}
pub(crate) use log;

/// The logger `build` gives a server whose user supplied none: to
/// `logger_file_path` if set (its directories created), else nowhere.
#[cfg(feature = "logging")]
pub(crate) fn default_logger(config: &OmniPaxosConfig) -> Result<Logger, ConfigError> {
    use slog::{Drain, o};
    let Some(path) = &config.logger_file_path else {
        return Ok(slog::Logger::root(slog::Discard, o!()));
    };
    let path = std::path::Path::new(path);
    let io_error = |path: &std::path::Path, e: std::io::Error| ConfigError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    let decorator = slog_term::PlainDecorator::new(file);
    let drain = slog_term::FullFormat::new(decorator).build().fuse();
    let drain = slog_async::Async::new(drain).build().fuse();
    Ok(slog::Logger::root(drain, o!()))
}

/// The logger of a server: `base` with the server's id and configuration
/// on every line.
#[cfg(feature = "logging")]
pub(crate) fn for_server(base: &Logger, config: &OmniPaxosConfig) -> Logger {
    base.new(slog::o!("pid" => config.pid, "configuration_id" => config.configuration_id))
}

/// The logger of a server: nothing, without the `logging` feature.
#[cfg(not(feature = "logging"))]
pub(crate) fn for_server(_base: &Logger, _config: &crate::config::OmniPaxosConfig) -> Logger {}
