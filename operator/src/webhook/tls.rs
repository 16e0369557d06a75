//! The webhook's certificates: a CA made for one serving certificate (its key is dropped
//! right after signing, so nothing can ever sign with it again), rotated well before expiry.
//!
//! Rotation never leaves a window the API server cannot verify: the new bundle's `caBundle`
//! carries the new CA *and* the previous one, it is applied to the
//! `MutatingWebhookConfiguration` first, and only then does the server switch to the new
//! certificate ([`crate::webhook::registration`]). The bundle lives in a Secret so every
//! replica serves the same certificate.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::OffsetDateTime;

/// Secret keys.
pub const CA_KEY: &str = "ca.crt";
pub const PREVIOUS_CA_KEY: &str = "ca-previous.crt";
pub const CERT_KEY: &str = "tls.crt";
pub const KEY_KEY: &str = "tls.key";
pub const NOT_AFTER_KEY: &str = "not-after-ms";
pub const NOT_BEFORE_KEY: &str = "not-before-ms";
/// Backdating of `notBefore`, for clocks slightly behind ours.
const BACKDATE: Duration = Duration::from_secs(300);

/// Why certificates could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating a certificate")]
    Generate(#[source] rcgen::Error),
    #[error("the time {0} ms is out of range")]
    Time(u64),
    #[error("the certificate Secret lacks {0}")]
    Missing(&'static str),
    #[error("the certificate Secret's {0} is not valid")]
    Invalid(&'static str),
    #[error("loading the serving certificate into rustls")]
    Rustls(#[source] rustls::Error),
}

/// A serving certificate, its key and the CAs the API server must trust for it.
#[derive(Clone, PartialEq, Eq)]
pub struct CertBundle {
    /// The CA that signed `cert_pem`.
    pub ca_pem: String,
    /// The CA before the last rotation (still in `caBundle` until the next one).
    pub previous_ca_pem: Option<String>,
    pub cert_pem: String,
    pub key_pem: String,
    /// When it was issued (the certificates themselves are valid from a little earlier, for
    /// clocks behind ours); its lifetime for rotation runs from here to `not_after_ms`.
    pub not_before_ms: u64,
    pub not_after_ms: u64,
}

impl std::fmt::Debug for CertBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("CertBundle")
            .field("not_before_ms", &self.not_before_ms)
            .field("not_after_ms", &self.not_after_ms)
            .field("previous_ca", &self.previous_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

fn at(ms: u64) -> Result<OffsetDateTime, TlsError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|_| TlsError::Time(ms))
}

impl CertBundle {
    /// A fresh CA and a serving certificate for `names` (DNS names or IP addresses), valid
    /// from a little before `now_ms` for `validity`.
    pub fn generate(names: &[String], now_ms: u64, validity: Duration) -> Result<Self, TlsError> {
        let not_before_ms = now_ms;
        let valid_from_ms = now_ms.saturating_sub(BACKDATE.as_millis() as u64);
        let not_after_ms = now_ms + validity.as_millis() as u64;

        let mut ca = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!("stallwatch-webhook-ca-{now_ms}"),
        );
        ca.distinguished_name = dn;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.not_before = at(valid_from_ms)?;
        ca.not_after = at(not_after_ms)?;
        let ca_key = KeyPair::generate().map_err(TlsError::Generate)?;
        let ca_cert = ca.self_signed(&ca_key).map_err(TlsError::Generate)?;

        let mut leaf = CertificateParams::new(names.to_vec()).map_err(TlsError::Generate)?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        leaf.distinguished_name = dn;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.not_before = at(valid_from_ms)?;
        leaf.not_after = at(not_after_ms)?;
        let leaf_key = KeyPair::generate().map_err(TlsError::Generate)?;
        let issuer = Issuer::new(ca, ca_key);
        let leaf_cert = leaf
            .signed_by(&leaf_key, &issuer)
            .map_err(TlsError::Generate)?;
        Ok(CertBundle {
            ca_pem: ca_cert.pem(),
            previous_ca_pem: None,
            cert_pem: leaf_cert.pem(),
            key_pem: leaf_key.serialize_pem(),
            not_before_ms,
            not_after_ms,
        })
    }

    /// The next bundle: fresh certificates, with this bundle's CA kept as the previous one so
    /// the API server trusts both while replicas switch.
    pub fn rotated(
        &self,
        names: &[String],
        now_ms: u64,
        validity: Duration,
    ) -> Result<Self, TlsError> {
        let mut next = Self::generate(names, now_ms, validity)?;
        next.previous_ca_pem = (self.not_after_ms > now_ms).then(|| self.ca_pem.clone());
        Ok(next)
    }

    /// Due for rotation: less than a third of its lifetime left, expired, or issued further
    /// in the future than the certificates' backdating covers (a clock that jumped back).
    pub fn needs_rotation(&self, now_ms: u64) -> bool {
        let lifetime = self.not_after_ms.saturating_sub(self.not_before_ms);
        let left = self.not_after_ms.saturating_sub(now_ms);
        now_ms + (BACKDATE.as_millis() as u64) < self.not_before_ms || left < lifetime / 3
    }

    /// The PEM `caBundle` for the `MutatingWebhookConfiguration`: the current CA, then the
    /// previous one.
    pub fn ca_bundle(&self) -> String {
        let mut out = self.ca_pem.clone();
        if let Some(prev) = &self.previous_ca_pem {
            out.push_str(prev);
        }
        out
    }

    /// The Secret data holding this bundle.
    pub fn to_secret_data(&self) -> BTreeMap<String, ByteString> {
        let mut data = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            data.insert(k.to_string(), ByteString(v.as_bytes().to_vec()));
        };
        put(CA_KEY, &self.ca_pem);
        if let Some(prev) = &self.previous_ca_pem {
            put(PREVIOUS_CA_KEY, prev);
        }
        put(CERT_KEY, &self.cert_pem);
        put(KEY_KEY, &self.key_pem);
        put(NOT_BEFORE_KEY, &self.not_before_ms.to_string());
        put(NOT_AFTER_KEY, &self.not_after_ms.to_string());
        data
    }

    /// A bundle read back from its Secret's data.
    pub fn from_secret_data(data: &BTreeMap<String, ByteString>) -> Result<Self, TlsError> {
        let text = |k: &'static str| -> Result<String, TlsError> {
            let bytes = data.get(k).ok_or(TlsError::Missing(k))?;
            String::from_utf8(bytes.0.clone()).map_err(|_| TlsError::Invalid(k))
        };
        let number = |k: &'static str| -> Result<u64, TlsError> {
            text(k)?.trim().parse().map_err(|_| TlsError::Invalid(k))
        };
        Ok(CertBundle {
            ca_pem: text(CA_KEY)?,
            previous_ca_pem: text(PREVIOUS_CA_KEY).ok(),
            cert_pem: text(CERT_KEY)?,
            key_pem: text(KEY_KEY)?,
            not_before_ms: number(NOT_BEFORE_KEY)?,
            not_after_ms: number(NOT_AFTER_KEY)?,
        })
    }

    /// The serving certificate and key as rustls uses them.
    pub fn certified_key(&self) -> Result<rustls::sign::CertifiedKey, TlsError> {
        certified_key(&self.cert_pem, &self.key_pem)
    }
}

/// A certificate chain and key in PEM (also cert-manager's `tls.crt`/`tls.key`) for rustls.
pub fn certified_key(
    cert_pem: &str,
    key_pem: &str,
) -> Result<rustls::sign::CertifiedKey, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::Invalid(CERT_KEY))?;
    if chain.is_empty() {
        return Err(TlsError::Missing(CERT_KEY));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| TlsError::Invalid(KEY_KEY))?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain, key, &provider).map_err(TlsError::Rustls)
}

/// The names the serving certificate must carry: the Service's DNS names, plus the host of
/// an explicit webhook URL (tests, out-of-cluster).
pub fn serving_names(service: &str, namespace: &str, url_host: Option<&str>) -> Vec<String> {
    let mut names = vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ];
    if let Some(h) = url_host.filter(|h| !h.is_empty()) {
        names.push(h.to_string());
    }
    names
}

#[cfg(test)]
mod tests;
