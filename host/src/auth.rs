//! The admin bearer token: where it comes from, and the one check every
//! state-changing endpoint applies.
//!
//! The token is `SCREAM_ICE_ADMIN_TOKEN` when that is set (at least 16
//! characters), else the contents of `DATA_DIR/admin-token`, generated on
//! the first start (32 random bytes, hex) and written with mode 0600
//! (created exclusively, so an existing file is never replaced; a file
//! readable by others is refused). `serve` prints the file's path, never
//! the token.
//!
//! Handlers take the [`RequireAdmin`] extractor: the request must carry
//! `Authorization: Bearer TOKEN`; the comparison is constant-time
//! ([`subtle::ConstantTimeEq`] over equal-length SHA-256 digests, so
//! neither the content nor the length of the token leaks through timing).
//! Without a configured token (in-process tests) every admin request is
//! refused with 503.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::{AppState, ConnAddrs};

/// The environment variable that sets the token.
pub const ENV_ADMIN_TOKEN: &str = "SCREAM_ICE_ADMIN_TOKEN";
/// The token file's name in the data dir.
pub const TOKEN_FILE: &str = "admin-token";
/// Shortest accepted token.
pub const MIN_TOKEN: usize = 16;

/// Why the token could not be set up; one line each.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// `SCREAM_ICE_ADMIN_TOKEN` is too short.
    #[error("{ENV_ADMIN_TOKEN}: at least {MIN_TOKEN} characters")]
    TooShort,
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is readable by group or others.
    #[error("{0}: mode must be 0600 (it is readable by others); chmod 600 it")]
    Permissions(String),
    /// The file is empty or too short.
    #[error("{0}: holds no token of at least {MIN_TOKEN} characters")]
    Empty(String),
    /// No system randomness.
    #[error("system randomness unavailable")]
    Random,
}

/// Where the token came from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenSource {
    /// `SCREAM_ICE_ADMIN_TOKEN`.
    Env,
    /// This file (generated now or earlier).
    File(PathBuf),
}

/// The admin token (a SHA-256 digest of it, compared in constant time).
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
    /// Where it came from.
    pub source: TokenSource,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

impl AdminToken {
    /// A token from its text.
    pub fn from_secret(secret: &str, source: TokenSource) -> AdminToken {
        AdminToken {
            digest: digest(secret.as_bytes()),
            source,
        }
    }

    /// The token for a daemon: `env` (the value of
    /// `SCREAM_ICE_ADMIN_TOKEN`) if set, else `data_dir/admin-token`,
    /// generated if missing.
    pub fn load_or_create(env: Option<&str>, data_dir: &Path) -> Result<AdminToken, TokenError> {
        if let Some(v) = env {
            if v.len() < MIN_TOKEN {
                return Err(TokenError::TooShort);
            }
            return Ok(AdminToken::from_secret(v, TokenSource::Env));
        }
        let path = data_dir.join(TOKEN_FILE);
        let secret = read_or_create_token_file(&path)?;
        Ok(AdminToken::from_secret(&secret, TokenSource::File(path)))
    }

    /// Whether `presented` is the token (constant time).
    pub fn matches(&self, presented: &str) -> bool {
        bool::from(self.digest.ct_eq(&digest(presented.as_bytes())))
    }

    /// Whether `headers` carry `Authorization: Bearer TOKEN`.
    pub fn authorizes(&self, headers: &HeaderMap) -> bool {
        bearer(headers).is_some_and(|t| self.matches(t))
    }
}

/// The token of `Authorization: Bearer TOKEN`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Read the token file (refusing one readable by others), or create it
/// exclusively with mode 0600 and a fresh 256-bit hex token.
pub fn read_or_create_token_file(path: &Path) -> Result<String, TokenError> {
    let io = |source| TokenError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        crate::store::create_private_dir(dir).map_err(|e| TokenError::Io {
            path: dir.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|_| TokenError::Random)?;
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            f.write_all(format!("{token}\n").as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = std::fs::metadata(path).map_err(io)?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(TokenError::Permissions(path.display().to_string()));
            }
            let t = std::fs::read_to_string(path)
                .map_err(io)?
                .trim()
                .to_string();
            if t.len() < MIN_TOKEN {
                return Err(TokenError::Empty(path.display().to_string()));
            }
            Ok(t)
        }
        Err(e) => Err(io(e)),
    }
}

/// Proof that the request carried the admin token. Rejections: 401 with
/// `WWW-Authenticate: Bearer` (missing or wrong token), 503 when the
/// daemon has no token configured.
#[derive(Clone, Copy, Debug)]
pub struct RequireAdmin;

fn unauthorized() -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        "admin token required: Authorization: Bearer TOKEN\n",
    )
        .into_response();
    r.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"scream-ice\""),
    );
    r
}

/// The check itself, for handlers and layers that are not extractors.
// The error is the rejection response itself, as axum's extractors return.
#[allow(clippy::result_large_err)]
pub fn check_admin(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    match &state.hub().admin {
        None => Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "the admin API is not enabled on this daemon\n",
        )
            .into_response()),
        Some(t) if t.authorizes(headers) => Ok(()),
        Some(_) => Err(unauthorized()),
    }
}

impl FromRequestParts<AppState> for RequireAdmin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        check_admin(state, &parts.headers).map(|()| RequireAdmin)
    }
}

/// Admin token, or a loopback client (the dashboard): a person on the
/// router itself may look without the token.
#[derive(Clone, Copy, Debug)]
pub struct AdminOrLoopback;

impl FromRequestParts<AppState> for AdminOrLoopback {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let loopback = parts
            .extensions
            .get::<ConnectInfo<ConnAddrs>>()
            .is_some_and(|c| {
                scream_ice_core::net::canonical(c.0.remote.ip()).is_loopback()
                    && parts.headers.get("x-forwarded-for").is_none()
            });
        if loopback {
            return Ok(AdminOrLoopback);
        }
        match &state.hub().admin {
            Some(t) if t.authorizes(&parts.headers) => Ok(AdminOrLoopback),
            _ => Err(unauthorized()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_is_0600_and_stable() {
        let dir = std::env::temp_dir().join(format!("scream-ice-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let t1 = AdminToken::load_or_create(None, &dir).unwrap();
        let path = dir.join(TOKEN_FILE);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let secret = std::fs::read_to_string(&path).unwrap();
        assert_eq!(secret.trim().len(), 64);
        let t2 = AdminToken::load_or_create(None, &dir).unwrap();
        assert!(t1.matches(secret.trim()) && t2.matches(secret.trim()));
        assert!(!t1.matches("wrong"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            AdminToken::load_or_create(None, &dir),
            Err(TokenError::Permissions(_))
        ));
        assert!(matches!(
            AdminToken::load_or_create(Some("short"), &dir),
            Err(TokenError::TooShort)
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert("authorization", HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }
}
