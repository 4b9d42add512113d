//! [`NetError`]: why a transport did not start.

use std::{io, net::SocketAddr};

/// Why [`Transport::bind`](super::Transport::bind) or
/// [`Transport::start`](super::Transport::start) failed.
///
/// Only starting can fail: once running, the transport treats every network
/// problem (an unreachable peer, a refused handshake, a bad frame) as
/// something to log, count in [`NetStats`](super::NetStats) and retry, never
/// as an error of the caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The listener could not bind its address: the port is in use, the
    /// address is not one of this host's, or the process lacks permission.
    /// The caller's configuration or the host is at fault.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from [`NetConfig::listen`](super::NetConfig::listen).
        addr: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
    /// No tokio runtime was running where the transport was bound; the
    /// caller is at fault.
    #[error("no tokio runtime: bind the transport inside a tokio runtime")]
    NoRuntime,
    /// A field of the [`NetConfig`](super::NetConfig) is invalid; the caller
    /// is at fault.
    #[error("invalid net config: `{field}` {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}
