//! [`NetError`]: why a transport did not start or refused a change of its peers.

use omnipaxos::util::NodeId;
use std::{io, net::SocketAddr};

/// Why [`Transport::bind`](super::Transport::bind) or
/// [`Transport::start`](super::Transport::start) failed, or why
/// [`Transport::add_peer`](super::Transport::add_peer) or
/// [`remove_peer`](super::Transport::remove_peer) changed nothing.
///
/// Only the caller's requests fail: once running, the transport treats every
/// network problem (an unreachable peer, a refused handshake, a bad frame)
/// as something to log, count in [`NetStats`](super::NetStats) and retry,
/// never as an error of the caller.
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
    /// The TLS certificates of [`NetConfig::tls`](super::NetConfig::tls)
    /// cannot be used: a CA or the node's certificate does not parse, the
    /// key does not match the certificate, or the certificate does not name
    /// this node. Whoever made the certificates is at fault.
    #[error("invalid tls config: {0}")]
    Tls(#[from] super::TlsError),
    /// [`Transport::add_peer`](super::Transport::add_peer) was asked for a
    /// peer that cannot be one; the caller (or the reconfiguration metadata
    /// it decided) is at fault. The peer set is unchanged.
    #[error("cannot add peer {pid} at {addr}: {reason}")]
    InvalidPeer {
        /// The pid asked for.
        pid: NodeId,
        /// The address asked for.
        addr: SocketAddr,
        /// What is wrong with it.
        reason: InvalidPeer,
    },
    /// The transport has stopped (shut down, or its node stopped), so its
    /// peer set no longer changes.
    #[error("the transport has stopped")]
    Stopped,
}

/// Why a pid and address cannot be a peer, in [`NetError::InvalidPeer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidPeer {
    /// Pid 0 is no node's id.
    #[error("pid 0 is not a node id")]
    ZeroPid,
    /// The pid is this node's own: a node is not its own peer.
    #[error("it is this node's own pid")]
    OwnPid,
    /// The address is the one this node listens on (as configured in
    /// [`NetConfig::listen`](super::NetConfig::listen) or as bound): the node
    /// would dial itself.
    #[error("it is this node's own listen address")]
    OwnAddress,
    /// The address cannot be dialed: its port is 0 or its IP is unspecified
    /// (`0.0.0.0` or `::`).
    #[error("the address cannot be dialed (port 0 or an unspecified IP)")]
    Undialable,
}
