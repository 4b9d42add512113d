//! Structured protocol logs (feature `logging`): to `logger_file_path` if set,
//! else to standard error.

use crate::{config::OmniPaxosConfig, errors::ConfigError};
use slog::{Drain, Logger, o};
use std::fs::OpenOptions;

pub(crate) fn create_logger(config: &OmniPaxosConfig) -> Result<Logger, ConfigError> {
    let values = o!("pid" => config.pid, "configuration_id" => config.configuration_id);
    let logger = match &config.logger_file_path {
        Some(path) => {
            let path = std::path::Path::new(path);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| ConfigError::Io {
                    path: dir.to_path_buf(),
                    detail: e.to_string(),
                })?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| ConfigError::Io {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                })?;
            let decorator = slog_term::PlainDecorator::new(file);
            let drain = slog_term::FullFormat::new(decorator).build().fuse();
            Logger::root(slog_async::Async::new(drain).build().fuse(), values)
        }
        None => {
            let decorator = slog_term::TermDecorator::new().stderr().build();
            let drain = slog_term::FullFormat::new(decorator).build().fuse();
            Logger::root(slog_async::Async::new(drain).build().fuse(), values)
        }
    };
    Ok(logger)
}
