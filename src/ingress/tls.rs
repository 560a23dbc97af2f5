//! TLS for the ingress listener: the configured certificate, or a development one created
//! on first start when the configuration asks for it, and optionally client certificates
//! (mTLS).
//!
//! With `client_ca` set, the handshake asks for a certificate and checks that the client
//! holds its key, but lets the connection open whatever the certificate is: the chain is
//! judged afterwards, so an untrusted or missing certificate gets a `403` with a JSON body
//! the sender's logs can show, instead of a bare TLS alert.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConnection, WebPkiClientVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

/// Why the listener's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the certificate and key.
    #[error("certificate and key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The listener's TLS: what accepts connections, and what judges client certificates.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    clients: Option<Arc<dyn ClientCertVerifier>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("client_auth", &self.clients.is_some())
            .finish()
    }
}

/// What a connection's client certificate proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCert {
    /// The listener does not ask for one.
    NotAsked,
    /// It chains to `client_ca`.
    Trusted,
    /// None was presented.
    Missing,
    /// One was presented and refused, for this reason.
    Untrusted(String),
}

impl Tls {
    /// Loads the certificate, key and client CAs of `files`.
    pub fn load(files: &TlsFiles) -> Result<Tls, TlsError> {
        let clients = files
            .client_ca
            .as_deref()
            .map(client_verifier)
            .transpose()?;
        let config = server_config(files, clients.clone())?;
        Ok(Tls {
            acceptor: TlsAcceptor::from(config),
            clients,
        })
    }

    /// Loads the files as a start would, but creates nothing: `Ok(false)` when both the
    /// certificate and the key are missing and `create` is set, which a start answers with
    /// a development pair.
    pub fn check(files: &TlsFiles) -> Result<bool, TlsError> {
        if neither_exists(files) {
            return match files.create {
                true => Ok(false),
                false => Err(missing(files)),
            };
        }
        Tls::load(files).map(|_| true)
    }

    /// Accepts TLS connections.
    pub(super) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Judges the certificate the client presented during the handshake.
    pub(super) fn judge(&self, connection: &ServerConnection) -> ClientCert {
        let Some(verifier) = &self.clients else {
            return ClientCert::NotAsked;
        };
        let Some((leaf, chain)) = connection.peer_certificates().and_then(|c| c.split_first())
        else {
            return ClientCert::Missing;
        };
        match verifier.verify_client_cert(leaf, chain, UnixTime::now()) {
            Ok(_) => ClientCert::Trusted,
            Err(error) => ClientCert::Untrusted(error.to_string()),
        }
    }
}

fn client_verifier(path: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| file_error(path, e))? {
        let cert = cert.map_err(|e| file_error(path, e))?;
        roots.add(cert).map_err(|e| file_error(path, e))?;
    }
    if roots.is_empty() {
        return Err(file_error(path, "no CA certificate found"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| file_error(path, e))
}

/// Asks for a client certificate and checks the client holds its key, but leaves the
/// verdict on the chain to [`Tls::judge`].
#[derive(Debug)]
struct JudgedLater(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for JudgedLater {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _leaf: &CertificateDer<'_>,
        _chain: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

fn neither_exists(files: &TlsFiles) -> bool {
    !files.cert.exists() && !files.key.exists()
}

/// Neither file exists and none may be created: most likely a certificate not yet put in
/// place, which a self-signed one would only hide until senders fail to connect.
fn missing(files: &TlsFiles) -> TlsError {
    file_error(
        &files.cert,
        format!(
            "missing, and so is {}: put the certificate and key there, or set \
             `create = true` in server.tls to have a self-signed development pair made",
            files.key.display()
        ),
    )
}

/// Builds the server TLS configuration (TLS 1.2 and 1.3; h2 and http/1.1 by ALPN),
/// creating a development certificate when neither file exists and `create` is set.
fn server_config(
    files: &TlsFiles,
    clients: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    if neither_exists(files) {
        if !files.create {
            return Err(missing(files));
        }
        create_development_pair(files)?;
        tracing::warn!(cert = %files.cert.display(),
            "created a self-signed development certificate; configure a real one for production");
    }
    // One of the two alone: a pair half in place, which no setting completes.
    for (path, other) in [(&files.cert, &files.key), (&files.key, &files.cert)] {
        if !path.exists() {
            let made = if files.create {
                "; `create` makes a pair only when neither file exists"
            } else {
                ""
            };
            let message = format!(
                "missing, while {} is there: put the matching file here{made}",
                other.display()
            );
            return Err(file_error(path, message));
        }
    }
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(&files.cert, e))?;
    if certs.is_empty() {
        return Err(file_error(&files.cert, "no PEM certificate found"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => file_error(
            &files.key,
            "no PEM private key (-----BEGIN ... PRIVATE KEY-----) found",
        ),
        other => file_error(&files.key, other),
    })?;

    let builder = ServerConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS13,
        &rustls::version::TLS12,
    ]);
    let builder = match clients {
        Some(verifier) => builder.with_client_cert_verifier(Arc::new(JudgedLater(verifier))),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn file_error(path: &Path, error: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: error.to_string(),
    }
}

/// A self-signed certificate for `localhost`, `127.0.0.1` and `::1`.
fn create_development_pair(files: &TlsFiles) -> Result<(), TlsError> {
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let pair = rcgen::generate_simple_self_signed(names)
        .map_err(|e| file_error(&files.cert, format!("generating: {e}")))?;
    crate::config::secret::write_private(&files.key, &pair.signing_key.serialize_pem())
        .map_err(|e| file_error(&files.key, e))?;
    crate::config::secret::write_private(&files.cert, &pair.cert.pem())
        .map_err(|e| file_error(&files.cert, e))?;
    Ok(())
}
