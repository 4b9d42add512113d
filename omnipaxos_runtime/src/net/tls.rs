//! Optional mutual TLS under the handshake: [`TlsConfig`] (the certificates
//! a node is given), the rustls contexts built from it once at bind, and the
//! check that a certificate names the node its holder claims to be. The
//! module docs of [`net`](super#tls) describe the rules.

use super::handshake::HandshakeError;
use omnipaxos::util::NodeId;
use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    client::Resumption,
    crypto::ring,
    pki_types::{CertificateDer, DnsName, PrivateKeyDer, ServerName, pem::PemObject},
    server::WebPkiClientVerifier,
};
use std::{
    fmt, io,
    path::{Path, PathBuf},
    sync::Arc,
};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

/// The certificates that let a node take part in a cluster that runs over
/// mutual TLS, set as [`NetConfig::tls`](super::NetConfig::tls).
///
/// Every node holds a certificate, signed by one of the cluster's CAs, whose
/// subject alternative names include the DNS name
/// [`TlsConfig::node_name`]`(cluster_id, pid)`, e.g.
/// `node-2.cluster-42.omnipaxos` for node 2 of cluster 42. A dialer accepts
/// only an acceptor whose certificate names the pid it dialed, and an
/// acceptor only a dialer whose certificate names the pid its handshake
/// claims. Both ends must use TLS, or neither.
///
/// ```no_run
/// use omnipaxos_runtime::net::{NetConfig, TlsConfig};
/// use std::collections::BTreeMap;
///
/// # fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let peers = BTreeMap::from([(1, "10.0.0.1:7000".parse()?)]);
/// let mut config = NetConfig::new(42, 2, "0.0.0.0:7000".parse()?, peers);
/// config.tls = Some(TlsConfig::from_pem_files(
///     "/etc/omnipaxos/ca.pem",
///     "/etc/omnipaxos/node-2.pem",
///     "/etc/omnipaxos/node-2.key",
/// )?);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    /// The CAs whose signature makes a certificate a member's.
    cas: Vec<CertificateDer<'static>>,
    /// This node's certificate first, then any intermediates.
    chain: Vec<CertificateDer<'static>>,
    /// Shared so that cloning a config does not copy the key around.
    key: Arc<PrivateKeyDer<'static>>,
}

impl TlsConfig {
    /// A configuration from PEM text: `ca_pem` holds one or more CA
    /// certificates, `chain_pem` this node's certificate followed by any
    /// intermediate ones, and `key_pem` its private key (PKCS #8, PKCS #1 or
    /// SEC1). Fails, naming the input, if one holds no such item or is not
    /// valid PEM; whether they fit together is checked by
    /// [`Transport::bind`](super::Transport::bind).
    pub fn from_pem(ca_pem: &[u8], chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let certs = |input, pem| {
            let certs = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TlsError::Pem {
                    input,
                    detail: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(TlsError::NoCertificate { input });
            }
            Ok(certs)
        };
        let cas = certs(TlsInput::Ca, ca_pem)?;
        let chain = certs(TlsInput::CertChain, chain_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey,
            e => TlsError::Pem {
                input: TlsInput::Key,
                detail: e.to_string(),
            },
        })?;
        Ok(Self {
            cas,
            chain,
            key: Arc::new(key),
        })
    }

    /// As [`from_pem`](Self::from_pem), reading each input from a file;
    /// fails with [`TlsError::Read`], naming the file, if one cannot be read.
    pub fn from_pem_files(
        ca: impl AsRef<Path>,
        chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        Self::from_pem(
            &read(ca.as_ref())?,
            &read(chain.as_ref())?,
            &read(key.as_ref())?,
        )
    }

    /// The DNS name that a certificate of node `pid` of cluster `cluster_id`
    /// must carry among its subject alternative names:
    /// `node-<pid>.cluster-<cluster_id>.omnipaxos`.
    pub fn node_name(cluster_id: u64, pid: NodeId) -> String {
        format!("node-{pid}.cluster-{cluster_id}.omnipaxos")
    }
}

impl fmt::Debug for TlsConfig {
    /// Counts the certificates; the private key is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("cas", &self.cas.len())
            .field("chain", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Which input of a [`TlsConfig`] an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsInput {
    /// The CA certificates.
    Ca,
    /// This node's certificate chain.
    CertChain,
    /// This node's private key.
    Key,
}

impl fmt::Display for TlsInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ca => "the CA certificates",
            Self::CertChain => "the node's certificate chain",
            Self::Key => "the node's private key",
        })
    }
}

/// Why a [`TlsConfig`] could not be made, or could not be used by
/// [`Transport::bind`](super::Transport::bind) (inside [`NetError::Tls`](super::NetError::Tls)).
/// Always the fault of whoever provided the certificates.
///
/// The details are rustls' and webpki's own descriptions, kept as text so
/// that this crate's API does not change with theirs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file given to [`TlsConfig::from_pem_files`] cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// An input is not valid PEM.
    #[error("{input} are not valid PEM: {detail}")]
    Pem {
        /// The input.
        input: TlsInput,
        /// What is wrong with it.
        detail: String,
    },
    /// An input that must hold certificates holds no `CERTIFICATE` section.
    #[error("{input} contain no PEM `CERTIFICATE` section")]
    NoCertificate {
        /// The input.
        input: TlsInput,
    },
    /// The key input holds no private key section.
    #[error("the node's private key contains no PEM private key section")]
    NoPrivateKey,
    /// A CA certificate cannot be a trust anchor (it does not parse as an
    /// X.509 certificate).
    #[error("a CA certificate cannot be used: {detail}")]
    BadCa {
        /// rustls' reason.
        detail: String,
    },
    /// rustls refused the node's certificate chain or key, e.g. the key
    /// does not belong to the certificate or is of an unsupported kind.
    #[error("the node's certificate or key cannot be used: {detail}")]
    BadCertificate {
        /// rustls' reason.
        detail: String,
    },
    /// The node's certificate does not carry the DNS name of its node, so
    /// every peer would refuse it.
    #[error(
        "the node's certificate does not name it: it needs the subject alternative DNS name `{expected}`"
    )]
    NotThisNode {
        /// The name it needs ([`TlsConfig::node_name`]).
        expected: String,
    },
}

/// The rustls contexts of one transport, built once at bind.
#[derive(Clone)]
pub(super) struct TlsContext {
    cluster_id: u64,
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsContext").finish_non_exhaustive()
    }
}

impl TlsContext {
    /// Checks `tls` for node `pid` of cluster `cluster_id` and builds both
    /// sides' contexts: TLS 1.3 only (both ends run this code), a
    /// certificate required of every dialer, no session resumption (links
    /// are long-lived, and a resumed session would skip the certificate
    /// check).
    pub(super) fn new(tls: &TlsConfig, cluster_id: u64, pid: NodeId) -> Result<Self, TlsError> {
        let expected = TlsConfig::node_name(cluster_id, pid);
        if !names(&tls.chain[0], &expected) {
            return Err(TlsError::NotThisNode { expected });
        }
        let provider = Arc::new(ring::default_provider());
        let mut roots = RootCertStore::empty();
        for ca in &tls.cas {
            roots.add(ca.clone()).map_err(|e| TlsError::BadCa {
                detail: e.to_string(),
            })?;
        }
        let roots = Arc::new(roots);
        let bad_cert = |e: rustls::Error| TlsError::BadCertificate {
            detail: e.to_string(),
        };
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .build()
                .map_err(|e| TlsError::BadCa {
                    detail: e.to_string(),
                })?;
        let mut server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(bad_cert)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(tls.chain.clone(), tls.key.clone_key())
            .map_err(bad_cert)?;
        server.send_tls13_tickets = 0;
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(bad_cert)?
            .with_root_certificates(roots)
            .with_client_auth_cert(tls.chain.clone(), tls.key.clone_key())
            .map_err(bad_cert)?;
        client.resumption = Resumption::disabled();
        Ok(Self {
            cluster_id,
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// The dialer's TLS handshake with node `peer`: its certificate must
    /// chain to a configured CA, be valid now, and name `peer`.
    pub(super) async fn connect(
        &self,
        stream: TcpStream,
        peer: NodeId,
    ) -> Result<client::TlsStream<TcpStream>, HandshakeError> {
        let name = DnsName::try_from(TlsConfig::node_name(self.cluster_id, peer))
            .expect("a node name is a valid DNS name: letters, digits, dashes and dots");
        self.connector
            .connect(ServerName::DnsName(name), stream)
            .await
            .map_err(from_io)
    }

    /// The acceptor's TLS handshake: the dialer's certificate must chain to
    /// a configured CA and be valid now. Which node it names is checked
    /// against the pid the dialer claims, by [`Self::certifies`].
    pub(super) async fn accept(
        &self,
        stream: TcpStream,
    ) -> Result<server::TlsStream<TcpStream>, HandshakeError> {
        self.acceptor.accept(stream).await.map_err(from_io)
    }

    /// Whether the certificate a dialer presented on `stream` names node
    /// `pid` of this cluster.
    pub(super) fn certifies(&self, stream: &server::TlsStream<TcpStream>, pid: NodeId) -> bool {
        stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(<[_]>::first)
            .is_some_and(|cert| names(cert, &TlsConfig::node_name(self.cluster_id, pid)))
    }
}

/// Whether `cert` carries the DNS name `name` among its subject alternative
/// names. A certificate that does not parse names nothing.
fn names(cert: &CertificateDer<'_>, name: &str) -> bool {
    let (Ok(cert), Ok(name)) = (
        webpki::EndEntityCert::try_from(cert),
        DnsName::try_from(name),
    ) else {
        return false;
    };
    cert.verify_is_valid_for_subject_name(&ServerName::DnsName(name))
        .is_ok()
}

/// tokio-rustls reports a TLS failure as an `io::Error` wrapping rustls'
/// error; unwrap it, so the reason can be told and counted.
fn from_io(e: io::Error) -> HandshakeError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => HandshakeError::Tls(tls.clone()),
        None => HandshakeError::Io(e),
    }
}
