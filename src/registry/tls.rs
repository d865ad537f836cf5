//! TLS to the schema registry: the `registry.tls` config block and the HTTP client it becomes.
//!
//! Owns: the serde shape of `registry.tls` (`ca_file`, `cert_file`, `key_file`), its checks
//! (key path in every error), and turning it into a rustls client config on the `ring` provider
//! handed to reqwest. Trust: Mozilla's roots compiled in (webpki-roots, so a slim image without
//! a CA bundle still reaches a public registry) unless `ca_file` names a PEM bundle, which then
//! replaces them (as librdkafka's `ssl.ca.location` and `curl --cacert` do; to trust both, name
//! a bundle holding both, e.g. the system's `/etc/ssl/certs/ca-certificates.crt` plus yours).
//! `cert_file` + `key_file` (PEM) are the client identity for mTLS.
//!
//! Must not: log, or put in an error, anything read from these files (a key's bytes, a
//! certificate's text): errors name the key, the file and the problem only. Must not know about
//! the Confluent REST API (see `confluent`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::config::ConfigError;

/// `registry.tls`: what to trust and who we are. Every field is optional; `cert_file` and
/// `key_file` go together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryTls {
    /// PEM bundle of the CA certificates to trust instead of the built-in (Mozilla) roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain, leaf first) for mTLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

const KEY: &str = "registry.tls";

fn error(field: &str, message: String) -> ConfigError {
    ConfigError {
        path: format!("{KEY}.{field}"),
        message,
    }
}

impl RegistryTls {
    /// Makes relative file names relative to `base`, the config file's directory.
    pub fn resolve_relative_paths(&mut self, base: &Path) {
        for path in [&mut self.ca_file, &mut self.cert_file, &mut self.key_file]
            .into_iter()
            .flatten()
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// The problems a config file shows by itself: `cert_file` without `key_file` (or the
    /// reverse), an empty file name. Nothing is read: see [`Self::preflight`].
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => errs.push(error(
                "key_file",
                "required with `cert_file` (the client certificate's private key)".into(),
            )),
            (None, Some(_)) => errs.push(error(
                "cert_file",
                "required with `key_file` (the client certificate for that key)".into(),
            )),
            _ => {}
        }
        for (field, path) in self.files() {
            if path.as_os_str().is_empty() {
                errs.push(error(field, "must not be empty".into()));
            }
        }
        errs
    }

    /// The problems of the files on this machine, every one: a file that cannot be read, is not
    /// PEM of the expected kind, a CA certificate rustls cannot use, a key that does not belong
    /// to the certificate. Call it after [`Self::resolve_relative_paths`] and a clean
    /// [`Self::validate`].
    pub fn preflight(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        if let Some(ca) = &self.ca_file
            && let Err(e) = roots_from("ca_file", ca)
        {
            errs.push(e);
        }
        if let Some(cert) = &self.cert_file
            && let Err(e) = certificates("cert_file", cert)
        {
            errs.push(e);
        }
        if let Some(key) = &self.key_file
            && let Err(e) = private_key(key)
        {
            errs.push(e);
        }
        if errs.is_empty()
            && let Err(e) = client_config(Some(self))
        {
            errs.push(e);
        }
        errs
    }

    fn files(&self) -> impl Iterator<Item = (&'static str, &PathBuf)> {
        [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ]
        .into_iter()
        .filter_map(|(field, path)| path.as_ref().map(|p| (field, p)))
    }
}

/// The reqwest client builder for the registry: HTTPS always available, configured by `tls`
/// (`None`: the built-in roots, no client certificate). Plain `http://` URLs ignore it.
pub fn client_builder(tls: Option<&RegistryTls>) -> Result<reqwest::ClientBuilder, ConfigError> {
    let config = client_config(tls)?;
    Ok(reqwest::Client::builder().tls_backend_preconfigured(config))
}

/// The rustls client config for `tls`, on the `ring` provider (passed explicitly: reqwest is
/// built without a provider of its own, and nothing relies on a process-wide default).
pub fn client_config(tls: Option<&RegistryTls>) -> Result<rustls::ClientConfig, ConfigError> {
    let default = RegistryTls::default();
    let tls = tls.unwrap_or(&default);
    let roots = match &tls.ca_file {
        Some(path) => roots_from("ca_file", path)?,
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError {
            path: KEY.into(),
            message: format!("cannot set up TLS: {e}"),
        })?
        .with_root_certificates(roots);
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert_path), Some(key_path)) => {
            let chain = certificates("cert_file", cert_path)?;
            let key = private_key(key_path)?;
            // rustls names the problem (key type unsupported, key does not match the
            // certificate), never the key.
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                error(
                    "key_file",
                    format!(
                        "cannot use {} with {} as the client identity: {e}",
                        key_path.display(),
                        cert_path.display()
                    ),
                )
            })
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(_), None) => Err(error(
            "key_file",
            "required with `cert_file` (the client certificate's private key)".into(),
        )),
        (None, Some(_)) => Err(error(
            "cert_file",
            "required with `key_file` (the client certificate for that key)".into(),
        )),
    }
}

fn read(field: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| error(field, format!("cannot read {}: {e}", path.display())))
}

/// What went wrong in a PEM file, without quoting any of it (`pem::Error`'s own text can carry
/// a line of the file).
fn pem_problem(e: &pem::Error) -> &'static str {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a PEM section is not valid base64",
        pem::Error::NoItemsFound => "no PEM section of the expected type",
        pem::Error::SectionTooLarge => "a PEM section is too large",
        _ => "not readable as PEM",
    }
}

fn certificates(field: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bytes = read(field, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(field, format!("{}: {}", path.display(), pem_problem(&e))))?;
    if certs.is_empty() {
        return Err(error(
            field,
            format!(
                "{}: no CERTIFICATE section (expected PEM certificates)",
                path.display()
            ),
        ));
    }
    Ok(certs)
}

fn roots_from(field: &str, path: &Path) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for (i, cert) in certificates(field, path)?.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            error(
                field,
                format!(
                    "{}: certificate #{} is not a usable CA certificate: {e}",
                    path.display(),
                    i + 1
                ),
            )
        })?;
    }
    Ok(roots)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let bytes = read("key_file", path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        let problem = match e {
            pem::Error::NoItemsFound => {
                "no PRIVATE KEY section (expected a PEM PKCS#8, RSA or EC private key)"
            }
            ref other => pem_problem(other),
        };
        error("key_file", format!("{}: {problem}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(ca: Option<&str>, cert: Option<&str>, key: Option<&str>) -> RegistryTls {
        RegistryTls {
            ca_file: ca.map(PathBuf::from),
            cert_file: cert.map(PathBuf::from),
            key_file: key.map(PathBuf::from),
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = serde_yaml::from_str::<RegistryTls>("ca_file: a.pem\nca_path: b\n")
            .expect_err("unknown key");
        assert!(e.to_string().contains("ca_path"), "{e}");
    }

    #[test]
    fn cert_and_key_go_together_and_relative_paths_follow_the_config() {
        let base = Path::new("/etc/schemabridge");
        let mut t = tls(Some("ca.pem"), Some("client.pem"), None);
        t.resolve_relative_paths(base);
        assert_eq!(t.ca_file.as_deref(), Some(base.join("ca.pem").as_path()));
        let errs = t.validate();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["registry.tls.key_file"]);

        let errs = tls(None, Some(""), Some("/abs/key.pem")).validate();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["registry.tls.cert_file"]);
        assert!(tls(None, None, None).validate().is_empty());
    }

    #[test]
    fn preflight_names_every_unreadable_file() {
        let errs = tls(
            Some("/nonexistent/ca.pem"),
            Some("/nonexistent/client.pem"),
            Some("/nonexistent/client.key"),
        )
        .preflight();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "registry.tls.ca_file",
                "registry.tls.cert_file",
                "registry.tls.key_file"
            ]
        );
        assert!(
            errs[0].message.contains("/nonexistent/ca.pem"),
            "{}",
            errs[0]
        );
        assert!(tls(None, None, None).preflight().is_empty());
    }

    #[test]
    fn no_block_means_the_built_in_roots() {
        let config = client_config(None).expect("default TLS config");
        assert!(config.alpn_protocols.is_empty());
        client_builder(None)
            .expect("builder")
            .build()
            .expect("a client without a process-wide crypto provider");
    }

    #[test]
    fn file_contents_never_appear_in_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = "c2VjcmV0LWtleS1tYXRlcmlhbA";
        // A key file that is not PEM at all, and one with a broken section holding "key" bytes.
        let raw = dir.path().join("raw.key");
        std::fs::write(&raw, secret).expect("write");
        let broken = dir.path().join("broken.key");
        std::fs::write(
            &broken,
            format!("-----BEGIN PRIVATE KEY-----\n{secret}!!\n-----END PRIVATE KEY-----\n"),
        )
        .expect("write");
        let unterminated = dir.path().join("unterminated.pem");
        std::fs::write(
            &unterminated,
            format!("-----BEGIN CERTIFICATE-----\n{secret}\n"),
        )
        .expect("write");
        let s = |p: &Path| p.to_str().expect("utf-8 path").to_string();
        for (t, field) in [
            (
                tls(None, Some(&s(&unterminated)), Some(&s(&raw))),
                "cert_file",
            ),
            (tls(Some(&s(&unterminated)), None, None), "ca_file"),
            (tls(Some(&s(&raw)), None, None), "ca_file"),
        ] {
            let e = client_config(Some(&t)).expect_err("bad PEM");
            assert_eq!(e.path, format!("registry.tls.{field}"), "{e}");
            assert!(!e.to_string().contains(secret), "{e}");
        }
        for key in [&raw, &broken] {
            let e = private_key(key).expect_err("bad key");
            assert_eq!(e.path, "registry.tls.key_file");
            assert!(e.message.contains(&s(key)), "{e}");
            assert!(!e.to_string().contains(secret), "{e}");
        }
    }
}
