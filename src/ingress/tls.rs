//! TLS for the ingress listener: the configured certificate, or a development one created
//! on first start.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

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

/// Builds the server TLS configuration (TLS 1.2 and 1.3; h2 and http/1.1 by ALPN),
/// creating a development certificate when neither file exists.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    if !files.cert.exists() && !files.key.exists() {
        create_development_pair(files)?;
        tracing::warn!(cert = %files.cert.display(),
            "created a self-signed development certificate; configure a real one for production");
    }
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(&files.cert, e))?;
    if certs.is_empty() {
        return Err(file_error(&files.cert, "no certificate found"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_error(&files.key, e))?;

    let mut config = ServerConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS13,
        &rustls::version::TLS12,
    ])
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
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
