//! TLS for the server: a web config's `tls_server_config` as a rustls configuration (ring provider,
//! which builds with the Rust toolchain alone), and the answer to plain HTTP sent to the TLS port.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{ring, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use super::web_config::{ClientAuth, TlsSettings};

/// Go's curve names → ring's key exchange groups.
const CURVES: [(&str, &dyn rustls::crypto::SupportedKxGroup); 3] = [
    ("X25519", ring::kx_group::X25519),
    ("CurveP256", ring::kx_group::SECP256R1),
    ("CurveP384", ring::kx_group::SECP384R1),
];

/// The rustls server configuration for `settings`; the error says what is wrong, for the web config's message.
pub fn server_config(settings: TlsSettings) -> Result<Arc<ServerConfig>, String> {
    let mut provider = ring::default_provider();
    if let Some(names) = &settings.cipher_suites {
        // As in Go, the list chooses among TLS 1.2 suites; TLS 1.3's are not configurable (their names
        // pass). rustls's names are Go's, but for TLS 1.3's prefix, and ChaCha20's `_SHA256`, optional in Go.
        let name_of = |s: &rustls::SupportedCipherSuite| {
            let name = s.suite().as_str().unwrap_or("");
            name.strip_prefix("TLS13_")
                .map_or(name.to_string(), |rest| format!("TLS_{rest}"))
        };
        let is = |s: &rustls::SupportedCipherSuite, name: &str| {
            let full = name_of(s);
            full == name || (name.ends_with("CHACHA20_POLY1305") && full == format!("{name}_SHA256"))
        };
        let (tls13, tls12): (Vec<_>, Vec<_>) = provider
            .cipher_suites
            .iter()
            .copied()
            .partition(|s| s.version() == &rustls::version::TLS13);
        let mut chosen = tls13.clone();
        for name in names {
            let found = tls12.iter().find(|s| is(s, name));
            match found {
                Some(suite) => chosen.push(*suite),
                None if tls13.iter().any(|s| is(s, name)) => {}
                None => {
                    let known: Vec<_> = tls12.iter().map(name_of).collect();
                    return Err(format!(
                        "cipher suite {name:?} is not supported by rustls; supported: {}",
                        known.join(", ")
                    ));
                }
            }
        }
        provider.cipher_suites = chosen;
    }
    if let Some(names) = &settings.curve_preferences {
        provider.kx_groups = names
            .iter()
            .map(|name| {
                CURVES.iter().find(|(n, _)| n == name).map(|(_, g)| *g).ok_or_else(|| {
                    let known: Vec<_> = CURVES.iter().map(|(n, _)| *n).collect();
                    format!(
                        "curve {name:?} is not supported by rustls; supported: {}",
                        known.join(", ")
                    )
                })
            })
            .collect::<Result<_, _>>()?;
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (settings.versions.0..=settings.versions.1).contains(v))
            .map(|(_, v)| v)
            .collect();
    let provider = Arc::new(provider);
    let algorithms = provider.signature_verification_algorithms;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("no cipher suite left for the TLS versions chosen ({e})"))?;
    let verifier = client_verifier(&settings, provider, algorithms)?;
    let mut config = builder
        .with_client_cert_verifier(verifier)
        .with_single_cert(settings.certs, settings.key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => "the key does not match the certificate".to_string(),
            e => format!("the certificate or key is not usable: {e}"),
        })?;
    config.ignore_client_order = settings.prefer_server_cipher_suites;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn client_verifier(
    settings: &TlsSettings,
    provider: Arc<CryptoProvider>,
    algorithms: WebPkiSupportedAlgorithms,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let auth = settings.client_auth;
    if auth == ClientAuth::NoClientCert {
        return Ok(WebPkiClientVerifier::no_client_auth());
    }
    let chain = if auth.verifies() {
        let mut roots = RootCertStore::empty();
        for ca in &settings.client_cas {
            roots
                .add(ca.clone())
                .map_err(|e| format!("client CA certificate not usable: {e}"))?;
        }
        let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        if !auth.requires() {
            builder = builder.allow_unauthenticated();
        }
        Some(builder.build().map_err(|e| format!("client CA not usable: {e}"))?)
    } else {
        None
    };
    let allowed_sans = settings
        .allowed_sans
        .iter()
        .map(|s| {
            ServerName::try_from(s.clone())
                .map_err(|_| format!("client_allowed_sans: {s:?} is not a DNS name or IP address"))
        })
        .collect::<Result<_, _>>()?;
    Ok(Arc::new(ClientCerts {
        chain,
        mandatory: auth.requires(),
        allowed_sans,
        algorithms,
    }))
}

/// Client certificates as a `client_auth_type` other than `NoClientCert` asks for them.
#[derive(Debug)]
struct ClientCerts {
    /// The CA's verifier; `None` for `RequestClientCert` and `RequireAnyClientCert`, which take any
    /// certificate, as in Go (the toolkit calls them insecure for authentication). The client's
    /// signature of the handshake is checked all the same: it holds the certificate's key.
    chain: Option<Arc<dyn ClientCertVerifier>>,
    mandatory: bool,
    /// `client_allowed_sans`: if any, a verified certificate must also name one (DNS names, IP addresses).
    allowed_sans: Vec<ServerName<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for ClientCerts {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.as_ref().map_or(&[], |c| c.root_hint_subjects())
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Some(chain) = &self.chain {
            chain.verify_client_cert(end_entity, intermediates, now)?;
        }
        if !self.allowed_sans.is_empty() {
            let cert = ParsedCertificate::try_from(end_entity)?;
            if !self
                .allowed_sans
                .iter()
                .any(|name| rustls::client::verify_server_name(&cert, name).is_ok())
            {
                return Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName,
                ));
            }
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Whether the client's first byte opens a TLS handshake record (false: plain HTTP); `None` if it
/// closed without sending one.
pub async fn starts_tls(stream: &TcpStream) -> Option<bool> {
    const HANDSHAKE_RECORD: u8 = 0x16;
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) => Some(first[0] == HANDSHAKE_RECORD),
        _ => None,
    }
}

/// Answers plain HTTP on the TLS port with a 400 that says so, as Go's servers do, rather than a
/// TLS alert a person reading curl's output cannot make sense of.
pub async fn refuse_plain_http(mut stream: TcpStream) {
    const BODY: &str = "Client sent an HTTP request to an HTTPS server.\n";
    let reply = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    // What the client sent is read first: closing with unread data would reset the connection,
    // and the client would lose the answer.
    let mut sink = [0u8; 4096];
    while matches!(stream.try_read(&mut sink), Ok(n) if n > 0) {}
    if stream.writable().await.is_err() || !matches!(stream.try_write(reply.as_bytes()), Ok(n) if n == reply.len()) {
        return;
    }
    let _ = poll_fn(|cx| Pin::new(&mut stream).poll_shutdown(cx)).await;
    // Until the client closes (briefly), so that the rest of its request is read too.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while stream.readable().await.is_ok() {
            match stream.try_read(&mut sink) {
                Ok(0) => return,
                Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => return,
                _ => {}
            }
        }
    })
    .await;
}
