//! The admin API's bearer token: read from a mounted Secret file, compared in constant time,
//! never logged (its `Debug` is redacted and only a digest is kept in memory).

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Clone, Default)]
pub struct AdminToken {
    /// SHA-256 of the token: comparing digests keeps the comparison constant-time even
    /// across different lengths.
    digest: Option<[u8; 32]>,
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.digest.is_some() {
            "AdminToken(<redacted>)"
        } else {
            "AdminToken(none)"
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the admin token file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the admin token file {path} is empty")]
    Empty { path: String },
}

impl AdminToken {
    /// No token: every admin request is refused.
    pub fn none() -> Self {
        AdminToken { digest: None }
    }

    pub fn from_secret(token: &str) -> Self {
        let token = token.trim();
        AdminToken {
            digest: (!token.is_empty()).then(|| Sha256::digest(token.as_bytes()).into()),
        }
    }

    /// Read the token from a file; surrounding whitespace (a trailing newline) is ignored.
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let token = AdminToken::from_secret(&text);
        if token.digest.is_none() {
            return Err(TokenError::Empty {
                path: path.display().to_string(),
            });
        }
        Ok(token)
    }

    #[cfg(test)]
    pub fn is_configured(&self) -> bool {
        self.digest.is_some()
    }

    /// Does this `Authorization` header value carry the token?
    pub fn verify(&self, authorization: Option<&[u8]>) -> bool {
        let Some(expected) = &self.digest else {
            return false;
        };
        let Some(value) = authorization else {
            return false;
        };
        let Some(presented) = strip_bearer(value) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented).into();
        bool::from(digest.ct_eq(expected))
    }
}

fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

#[cfg(test)]
mod tests;
