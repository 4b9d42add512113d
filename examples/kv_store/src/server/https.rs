//! HTTPS on the client API: TLS 1.3 (rustls, `ring` provider) in front of
//! the same axum routes.
//!
//! An acceptor task takes TCP connections and runs each handshake in a task
//! of its own (at most [`MAX_HANDSHAKES`] at once, each within
//! [`HANDSHAKE_TIMEOUT`]), so a slow or silent client holds up no one else;
//! finished sessions go to axum through [`TlsListener`]. A client that
//! speaks plain HTTP to the port is told so in plain HTTP (`400`, one
//! sentence) and counted; a failed handshake is counted too.

use prometheus_client::metrics::{counter::Counter, family::Family};
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc},
    task::JoinHandle,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

/// Handshakes in progress at once; more connections wait to be accepted.
const MAX_HANDSHAKES: usize = 256;
/// The longest a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first byte of a TLS record carrying a handshake message.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The client API's certificate and key, ready to serve HTTPS.
#[derive(Clone)]
pub struct HttpsConfig {
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for HttpsConfig {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsConfig").finish_non_exhaustive()
    }
}

impl HttpsConfig {
    /// From PEM text: `chain_pem` the server's certificate (naming the host
    /// clients use, e.g. `DNS:kv1.example` or `IP:10.0.0.1`) followed by
    /// any intermediates, `key_pem` its private key. The error names what is
    /// wrong.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, String> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the HTTPS certificate is not valid PEM: {e}"))?;
        if chain.is_empty() {
            return Err("the HTTPS certificate file holds no certificate".to_owned());
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| format!("the HTTPS key file holds no usable private key: {e}"))?;
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|e| format!("TLS setup: {e}"))?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(|e| format!("the HTTPS certificate and key do not fit together: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// As [`from_pem`](Self::from_pem), reading the two files.
    pub fn from_pem_files(chain: &Path, key: &Path) -> Result<Self, String> {
        let read =
            |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        Self::from_pem(&read(chain)?, &read(key)?)
    }
}

/// Sessions whose handshake finished, for `axum::serve`.
pub(crate) struct TlsListener {
    sessions: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl TlsListener {
    /// Serves HTTPS on `listener`, counting refused connections by reason
    /// (`not_tls`, `handshake`) in `refused`.
    pub(crate) fn new(
        listener: TcpListener,
        https: &HttpsConfig,
        refused: Family<Vec<(String, String)>, Counter>,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, sessions) = mpsc::channel(64);
        let acceptor = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(Arc::clone(&https.config)),
            tx,
            refused,
        ));
        Ok(Self {
            sessions,
            local,
            acceptor,
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.sessions.recv().await {
            Some(session) => session,
            // The acceptor ended (it never does while the listener lives):
            // nothing more will arrive.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    sessions: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    refused: Family<Vec<(String, String)>, Counter>,
) {
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let (tcp, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait a little, as
                // axum's own listener does.
                tracing::warn!(error = %e, "cannot accept an HTTPS connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let sessions = sessions.clone();
        let refused = refused.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(tcp, &acceptor)).await;
            let reason = match outcome {
                Ok(Ok(session)) => {
                    let _ = sessions.send((session, addr)).await;
                    return;
                }
                Ok(Err(Refused::NotTls)) => "not_tls",
                Ok(Err(Refused::Handshake(e))) => {
                    tracing::info!(%addr, error = %e, "HTTPS handshake failed");
                    "handshake"
                }
                Err(_) => "handshake_timeout",
            };
            refused
                .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
                .inc();
        });
    }
}

enum Refused {
    NotTls,
    Handshake(std::io::Error),
}

async fn handshake(
    mut tcp: TcpStream,
    acceptor: &TlsAcceptor,
) -> Result<TlsStream<TcpStream>, Refused> {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(0) | Err(_) => return Err(Refused::Handshake(std::io::ErrorKind::UnexpectedEof.into())),
        Ok(_) => {}
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        // Plain HTTP (or anything else): say so, in a form an HTTP client shows.
        const BODY: &str = "{\"error\":\"https_required\",\"message\":\"this port serves HTTPS: \
                            use an https:// URL (and the server's CA, --tls-ca)\"}";
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{BODY}",
            BODY.len()
        );
        let _ = tcp.write_all(answer.as_bytes()).await;
        let _ = tcp.shutdown().await;
        return Err(Refused::NotTls);
    }
    acceptor.accept(tcp).await.map_err(Refused::Handshake)
}
