//! The exporter-toolkit web-config file (the `--web.config.file` of every official exporter): read
//! strictly and checked whole when the server starts, so that a bad file stops it with one clear error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::errors::{ExporterError, Result};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<HttpFile>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    rate_limit: Option<RateFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<String>,
    key_file: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_ca: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    /// Accepted for files written for other exporters; this server speaks HTTP/1.1, which Prometheus uses.
    #[serde(rename = "http2")]
    _http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RateFile {
    interval: Option<String>,
    burst: Option<u32>,
}

/// Go's `tls.ClientAuthType`, by the names the toolkit's files use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    const NAMES: [(&str, ClientAuth); 5] = [
        ("NoClientCert", ClientAuth::NoClientCert),
        ("RequestClientCert", ClientAuth::RequestClientCert),
        ("RequireAnyClientCert", ClientAuth::RequireAnyClientCert),
        ("VerifyClientCertIfGiven", ClientAuth::VerifyClientCertIfGiven),
        ("RequireAndVerifyClientCert", ClientAuth::RequireAndVerifyClientCert),
    ];

    pub fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }

    pub fn requires(self) -> bool {
        matches!(
            self,
            ClientAuth::RequireAnyClientCert | ClientAuth::RequireAndVerifyClientCert
        )
    }
}

/// The TLS part of a web config, parsed; `server::tls` turns it into a rustls configuration.
pub struct TlsSettings {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub client_auth: ClientAuth,
    pub client_cas: Vec<CertificateDer<'static>>,
    pub allowed_sans: Vec<String>,
    /// TLS 1.2 and 1.3 are the versions rustls speaks: (min, max) as 12 or 13.
    pub versions: (u8, u8),
    pub cipher_suites: Option<Vec<String>>,
    pub prefer_server_cipher_suites: bool,
    pub curve_preferences: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub interval: Duration,
    pub burst: u32,
}

/// A web config, checked: every file it names was read and parsed.
pub struct WebConfig {
    pub tls: Option<TlsSettings>,
    /// User → bcrypt hash; empty: no basic auth.
    pub users: BTreeMap<String, String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub rate_limit: Option<RateLimit>,
    /// The config file and the files it names: a change to any of them reloads the config.
    pub files: Vec<PathBuf>,
}

/// Headers the toolkit lets a file add, with the values it accepts (`None`: any).
const HEADERS: [(&str, Option<&[&str]>); 5] = [
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

/// Reads and checks the file at `path`. Relative file names inside resolve against its directory,
/// as the toolkit does.
pub fn load(path: &Path) -> Result<WebConfig> {
    let shown = path.display().to_string();
    let bad = |problem: String| ExporterError::WebConfig {
        path: shown.clone(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|source| ExporterError::WebConfigFile {
        path: shown.clone(),
        what: "cannot read the file".into(),
        source,
    })?;
    // An empty file is an empty configuration, as in the toolkit.
    let file: File = if text.trim().is_empty() {
        File::default()
    } else {
        serde_norway::from_str(&text).map_err(|e| bad(e.to_string()))?
    };
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut files = vec![path.to_path_buf()];
    let tls = match file.tls_server_config {
        Some(t) => tls_settings(t, dir, &mut files, &shown)?,
        None => None,
    };
    let users = file.basic_auth_users.unwrap_or_default();
    for (user, hash) in &users {
        if hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(bad(format!(
                "basic_auth_users: the hash of user {user:?} is not a bcrypt hash"
            )));
        }
    }
    let headers = headers(file.http_server_config.and_then(|h| h.headers).unwrap_or_default()).map_err(bad)?;
    let rate_limit = match file.rate_limit {
        Some(r) => rate_limit(r).map_err(bad)?,
        None => None,
    };
    Ok(WebConfig {
        tls,
        users,
        headers,
        rate_limit,
        files,
    })
}

/// `Ok(None)`: a section without certificate, key nor client settings, which the toolkit reads as plain HTTP.
fn tls_settings(t: TlsFile, dir: &Path, files: &mut Vec<PathBuf>, shown: &str) -> Result<Option<TlsSettings>> {
    let bad = |problem: String| ExporterError::WebConfig {
        path: shown.to_string(),
        problem: format!("tls_server_config: {problem}"),
    };
    let empty = t.cert_file.is_none()
        && t.key_file.is_none()
        && t.cert.is_none()
        && t.key.is_none()
        && t.client_auth_type.is_none()
        && t.client_ca_file.is_none()
        && t.client_ca.is_none();
    if empty {
        return Ok(None);
    }
    // A PEM given inline or by file name: its bytes, read now.
    let mut pem = |file: Option<String>, inline: Option<String>, name: &str| -> Result<Option<(Vec<u8>, String)>> {
        match (file, inline) {
            (Some(_), Some(_)) => Err(bad(format!("{name} and {name}_file are both set; set one"))),
            (None, Some(text)) => Ok(Some((text.into_bytes(), name.to_string()))),
            (Some(f), None) => {
                let full = dir.join(&f);
                let bytes = std::fs::read(&full).map_err(|source| ExporterError::WebConfigFile {
                    path: shown.to_string(),
                    what: format!("cannot read {name}_file {}", full.display()),
                    source,
                })?;
                files.push(full.clone());
                Ok(Some((bytes, format!("{name}_file {}", full.display()))))
            }
            (None, None) => Ok(None),
        }
    };
    let cert = pem(t.cert_file, t.cert, "cert")?;
    let key = pem(t.key_file, t.key, "key")?;
    let ca = pem(t.client_ca_file, t.client_ca, "client_ca")?;
    let (Some((cert, cert_from)), Some((key, key_from))) = (cert, key) else {
        return Err(bad(
            "a certificate and its key are required: set cert_file and key_file".into(),
        ));
    };
    let certs = certificates(&cert).map_err(|e| bad(format!("{cert_from}: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|e| bad(format!("{key_from}: no private key in PEM form ({e})")))?;
    let client_auth = match t.client_auth_type.as_deref() {
        None | Some("") => ClientAuth::NoClientCert,
        Some(name) => ClientAuth::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| *a)
            .ok_or_else(|| {
                let names: Vec<_> = ClientAuth::NAMES.iter().map(|(n, _)| *n).collect();
                bad(format!(
                    "unknown client_auth_type {name:?}; one of {}",
                    names.join(", ")
                ))
            })?,
    };
    let client_cas = match ca {
        Some((bytes, from)) => certificates(&bytes).map_err(|e| bad(format!("{from}: {e}")))?,
        None => Vec::new(),
    };
    if client_auth.verifies() && client_cas.is_empty() {
        return Err(bad(format!("client_auth_type {client_auth:?} needs client_ca_file")));
    }
    let allowed_sans = t.client_allowed_sans.unwrap_or_default();
    if !allowed_sans.is_empty() && client_auth != ClientAuth::RequireAndVerifyClientCert {
        return Err(bad(
            "client_allowed_sans needs client_auth_type RequireAndVerifyClientCert".into(),
        ));
    }
    let version = |v: Option<String>, default: u8, name: &str| match v.as_deref() {
        None | Some("") => Ok(default),
        Some("TLS12") => Ok(12),
        Some("TLS13") => Ok(13),
        Some(v @ ("TLS10" | "TLS11")) => Err(bad(format!(
            "{name} {v} is not supported: rustls speaks TLS12 and TLS13"
        ))),
        Some(v) => Err(bad(format!("unknown {name} {v:?}; TLS12 or TLS13"))),
    };
    let versions = (
        version(t.min_version, 12, "min_version")?,
        version(t.max_version, 13, "max_version")?,
    );
    if versions.0 > versions.1 {
        return Err(bad("min_version is above max_version".into()));
    }
    Ok(Some(TlsSettings {
        certs,
        key,
        client_auth,
        client_cas,
        allowed_sans,
        versions,
        cipher_suites: t.cipher_suites,
        prefer_server_cipher_suites: t.prefer_server_cipher_suites.unwrap_or(false),
        curve_preferences: t.curve_preferences,
    }))
}

fn certificates(pem: &[u8]) -> std::result::Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("the PEM does not parse ({e})"))?;
    if certs.is_empty() {
        return Err("no certificate in PEM form".into());
    }
    Ok(certs)
}

fn headers(given: BTreeMap<String, String>) -> std::result::Result<Vec<(HeaderName, HeaderValue)>, String> {
    given
        .into_iter()
        .map(|(name, value)| {
            let Some((_, allowed)) = HEADERS.iter().find(|(n, _)| n.eq_ignore_ascii_case(&name)) else {
                let names: Vec<_> = HEADERS.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "http_server_config: header {name:?} cannot be set; these can: {}",
                    names.join(", ")
                ));
            };
            if let Some(allowed) = allowed {
                if !allowed.iter().any(|a| a.eq_ignore_ascii_case(&value)) {
                    return Err(format!(
                        "http_server_config: header {name}: {value:?} is not one of {allowed:?}"
                    ));
                }
            }
            let bad_value = |_| format!("http_server_config: header {name}: {value:?} is not a valid header value");
            Ok((
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("invalid header name {name:?}"))?,
                HeaderValue::from_str(&value).map_err(bad_value)?,
            ))
        })
        .collect()
}

fn rate_limit(r: RateFile) -> std::result::Result<Option<RateLimit>, String> {
    let interval = match r.interval.as_deref() {
        None => Duration::ZERO,
        Some(text) => go_duration(text)
            .ok_or_else(|| format!("rate_limit: interval {text:?} is not a duration like 1s or 500ms"))?,
    };
    let burst = r.burst.unwrap_or(0);
    if interval.is_zero() {
        return Ok(None);
    }
    if burst == 0 {
        return Err("rate_limit: burst must be at least 1 when interval is set".into());
    }
    Ok(Some(RateLimit { interval, burst }))
}

/// A duration in Go's notation (`1m30s`, `500ms`, `0`), which the toolkit's files use.
fn go_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&n| n > 0)?;
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    (!text.is_empty()).then(|| Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(go_duration("0"), Some(Duration::ZERO));
        for bad in ["", "1", "s", "1x", "1.2.3s", "-1s"] {
            assert_eq!(go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn rate_limit_needs_a_burst() {
        let r = |interval: &str, burst| RateFile {
            interval: Some(interval.into()),
            burst,
        };
        assert_eq!(rate_limit(r("0", None)), Ok(None));
        assert!(rate_limit(r("1s", None)).is_err());
        assert_eq!(
            rate_limit(r("2s", Some(3))),
            Ok(Some(RateLimit {
                interval: Duration::from_secs(2),
                burst: 3
            }))
        );
    }
}
