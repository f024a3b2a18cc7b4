//! Users, password hashes and request identity.
//!
//! Passwords are hashed with argon2 and never stored or logged in clear. Verified Basic
//! credentials are cached in memory for a short time, keyed by a sha256 of the pair, so
//! that the slow hash does not run on every request.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::model::{now_iso, user_key};
use crate::registry::{from_item, to_item};
use crate::store::{Cond, Table};
use crate::{Error, Result};

/// The system administrator created on first start.
pub const ADMIN_USER: &str = "admin";

/// How long a verified credential stays trusted without re-hashing.
const CACHE_TTL: Duration = Duration::from_secs(60);
const CACHE_CAPACITY: usize = 1024;

/// A stored user. `pwd_hash` is an argon2 PHC string.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub user_id: String,
    pub name: String,
    pub pwd_hash: String,
    pub admin: bool,
    pub created_date: String,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    User { id: String, admin: bool },
}

impl Identity {
    /// The caller's id when it is a system administrator; `Unauthenticated` for anonymous
    /// callers and `Forbidden` for other users.
    pub fn require_admin(&self) -> Result<&str> {
        match self {
            Identity::Anonymous => Err(Error::Unauthenticated("authentication required".into())),
            Identity::User { id, admin: true } => Ok(id),
            Identity::User { id, .. } => Err(Error::Forbidden(format!("user [{id}] is not a system administrator"))),
        }
    }
}

pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| Error::Internal(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("hashing a password: {e}")))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A random password for a generated administrator: 24 characters of URL-safe base64.
pub fn generate_password() -> String {
    let bytes: [u8; 18] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Checks credentials against the user table, with a bounded in-memory cache.
pub struct Authenticator {
    table: Arc<dyn Table>,
    admin_password: Option<String>,
    bootstrapped: OnceCell<()>,
    cache: Mutex<HashMap<[u8; 32], (Identity, Instant)>>,
}

impl Authenticator {
    pub fn new(table: Arc<dyn Table>, admin_password: Option<String>) -> Self {
        Authenticator { table, admin_password, bootstrapped: OnceCell::new(), cache: Mutex::new(HashMap::new()) }
    }

    /// Creates the administrator `admin` when it does not exist yet, with the configured
    /// password, or a generated one when `generate` is set and none is configured.
    /// Returns the generated password, which the caller prints once. An existing admin is
    /// never changed.
    pub async fn bootstrap_admin(&self, generate: bool) -> Result<Option<String>> {
        let (password, generated) = match (&self.admin_password, generate) {
            (Some(p), _) => (p.clone(), false),
            (None, true) => (generate_password(), true),
            (None, false) => return Ok(None),
        };
        if self.table.get(&user_key(ADMIN_USER)).await?.is_some() {
            return Ok(None);
        }
        let user = User {
            user_id: ADMIN_USER.into(),
            name: ADMIN_USER.into(),
            pwd_hash: hash_password(&password)?,
            admin: true,
            created_date: now_iso(),
        };
        match self.table.put(to_item(&user_key(ADMIN_USER), &user)?, Cond::NotExists).await {
            Ok(()) => Ok(generated.then_some(password)),
            // Another process created it first.
            Err(e) if e.is_conflict() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Resolves an `Authorization` header. No header is `Anonymous`; a malformed header or
    /// wrong credentials are `Unauthenticated`.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Identity> {
        let Some(header) = authorization else { return Ok(Identity::Anonymous) };
        let bad = || Error::Unauthenticated("invalid credentials".into());
        let (scheme, value) = header.trim().split_once(' ').ok_or_else(bad)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(Error::Unauthenticated(format!("unsupported authorization scheme '{scheme}'")));
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(value.trim()).map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (user, password) = decoded.split_once(':').ok_or_else(bad)?;
        self.verify_basic(user, password).await
    }

    async fn verify_basic(&self, user_id: &str, password: &str) -> Result<Identity> {
        let cache_key: [u8; 32] = Sha256::new().chain_update(user_id).chain_update([0]).chain_update(password).finalize().into();
        if let Some((id, at)) = self.cache.lock().expect("auth cache").get(&cache_key) {
            if at.elapsed() < CACHE_TTL {
                return Ok(id.clone());
            }
        }
        // The first request of a process creates the configured admin (on Lambda there is
        // no start-up hook that may touch the network).
        self.bootstrapped.get_or_try_init(|| async { self.bootstrap_admin(false).await.map(drop) }).await?;
        let bad = || Error::Unauthenticated("invalid credentials".into());
        if crate::model::validate_name("user id", user_id).is_err() {
            return Err(bad());
        }
        let item = self.table.get(&user_key(user_id)).await?.ok_or_else(bad)?;
        let user: User = from_item(item)?;
        let hash = user.pwd_hash.clone();
        let pw = password.to_string();
        let ok = tokio::task::spawn_blocking(move || verify_password(&pw, &hash)).await.map_err(Error::internal)?;
        if !ok {
            return Err(bad());
        }
        let identity = Identity::User { id: user.user_id, admin: user.admin };
        let mut cache = self.cache.lock().expect("auth cache");
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(cache_key, (identity.clone(), Instant::now()));
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash_password("s3cret").unwrap();
        let b = hash_password("s3cret").unwrap();
        assert_ne!(a, b, "salted");
        assert!(!a.contains("s3cret"));
        assert!(verify_password("s3cret", &a));
        assert!(!verify_password("s3cre", &a));
        assert!(!verify_password("s3cret", "not a hash"));
        assert_eq!(generate_password().len(), 24);
    }
}
