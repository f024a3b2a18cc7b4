//! Who calls, what they may do, and the accounts behind both. Three roles:
//!
//! - [`Authenticator`]: turns an `Authorization` header into an [`Identity`].
//! - [`Authorizer`]: what an identity may do on a project or repository, from the grants.
//! - [`Accounts`]: administration of users, API tokens and grants.
//!
//! Passwords are hashed with argon2 and never stored, returned or logged in clear. API
//! tokens are stored as the sha256 of their secret. Verified credentials are cached in
//! memory for a short time, keyed by a sha256 of what the client sent, so that the slow
//! hash does not run on every request; changing a password, deleting a user or deleting
//! a token drops that user's entries in the same process.
//!
//! A password check costs about 19 MiB and tens of milliseconds, so its cost is bounded
//! whatever the number of clients: at most one check per core runs at once
//! ([`LoginLimits::slots`]), a check that waits longer than [`LoginLimits::wait`] is a
//! 503 with `Retry-After`, and repeated failures for one user id or from one address are
//! refused for a while (429 with `Retry-After`). Cached credentials and API tokens never
//! wait for a slot and are never throttled.
mod accounts;
mod throttle;
mod authorizer;

pub use crate::model::{Action, Identity, PermUser, Permission, ResourceType};
pub use accounts::{
    Accounts, NewPermission, NewUser, PermissionChange, Token, UserUpdate, UserView, MIN_PASSWORD_LEN, TOKEN_PREFIX,
};
pub use authorizer::{require, Authorizer, ProjectGrants};

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::{OnceCell, Semaphore};

pub use throttle::LoginLimits;
use throttle::Throttle;

use crate::model::parse_iso;
use crate::store::schema::{bootstrap_key, from_item, to_item, token_key, user_key, USERS_PK, USER_SK_PREFIX};
use crate::store::{query_all, Cond, Query, Table, TxOp};
use crate::{model::now_iso, Error, Result};

/// The system administrator created on first start.
pub const ADMIN_USER: &str = "admin";

/// How long a verified credential stays trusted without re-checking, by default.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
const CACHE_CAPACITY: usize = 1024;

/// A stored user. `pwd_hash` is an argon2 PHC string. `uid` names this user's
/// incarnation: a user deleted and created again under its id has another, and the
/// tokens of the first never authenticate the second. Its item also carries a revision
/// (`schema::REVISION_ATTR`), which every change requires and advances.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    pub user_id: String,
    pub name: String,
    pub pwd_hash: String,
    pub admin: bool,
    pub created_date: String,
    #[serde(default)]
    pub last_modified_date: String,
    /// Empty for users created before incarnations existed.
    #[serde(default)]
    pub uid: String,
    /// Set while the user is deleted: no token or grant may be created for it then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
    /// Moves on with every change of the password or the admin flag.
    #[serde(default)]
    pub epoch: u64,
}

impl UserRecord {
    /// A new user, with a fresh incarnation.
    pub fn new(user_id: String, name: String, pwd_hash: String, admin: bool) -> Self {
        let now = now_iso();
        UserRecord {
            user_id,
            name,
            pwd_hash,
            admin,
            created_date: now.clone(),
            last_modified_date: now,
            uid: uuid::Uuid::new_v4().simple().to_string(),
            deleting: false,
            epoch: 0,
        }
    }

    /// Its item, at the first revision.
    pub fn new_item(&self) -> Result<crate::store::Item> {
        let mut item = to_item(&user_key(&self.user_id), self)?;
        crate::store::schema::set_next_revision(&mut item, 0);
        Ok(item)
    }
}

fn bad_credentials() -> Error {
    Error::Unauthenticated("invalid credentials".into())
}

/// argon2's working memory (about 19 MiB with the default parameters). Each password
/// slot keeps one and reuses it: allocating it per check leaves the allocator holding
/// many of them once checks overlap (300 clients reached 17 GB of resident memory).
pub type Blocks = Vec<argon2::Block>;

/// The most working memory a stored hash may ask for (64 MiB); depot writes 19 MiB ones.
const MAX_BLOCKS: usize = 64 * 1024;

fn hash_err(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("hashing a password: {e}"))
}

/// Hashes a password with argon2id's default parameters, in `blocks`.
pub fn hash_password_with(password: &str, blocks: &mut Blocks) -> Result<String> {
    let argon = Argon2::default();
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(hash_err)?;
    let mut salt_buf = [0u8; 64];
    let raw_salt = salt.as_salt().decode_b64(&mut salt_buf).map_err(hash_err)?;
    let params = argon.params().clone();
    let n = params.block_count();
    if blocks.len() < n {
        blocks.resize(n, argon2::Block::default());
    }
    let output = argon2::password_hash::Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        argon
            .hash_password_into_with_memory(password.as_bytes(), raw_salt, out, &mut blocks[..n])
            .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .map_err(hash_err)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: (&params).try_into().map_err(hash_err)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

pub fn hash_password(password: &str) -> Result<String> {
    hash_password_with(password, &mut Blocks::new())
}

/// Checks a password against an argon2 PHC string, in `blocks`.
pub fn verify_password_with(password: &str, hash: &str, blocks: &mut Blocks) -> bool {
    let Ok(h) = PasswordHash::new(hash) else { return false };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(h.algorithm), Params::try_from(&h)) else { return false };
    let version = match h.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else { return false };
    let n = params.block_count();
    if n > MAX_BLOCKS {
        return false;
    }
    if blocks.len() < n {
        blocks.resize(n, argon2::Block::default());
    }
    let mut salt_buf = [0u8; 64];
    let Ok(raw_salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    argon.hash_password_into_with_memory(password.as_bytes(), raw_salt, &mut out, &mut blocks[..n]).is_ok()
        && bool::from(subtle::ConstantTimeEq::ct_eq(&out[..], expected.as_bytes()))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    verify_password_with(password, hash, &mut Blocks::new())
}

/// A random password for a generated administrator: 24 characters of URL-safe base64.
pub fn generate_password() -> String {
    let bytes: [u8; 18] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A stored secret that holds the bootstrap administrator's password (Secrets Manager
/// on AWS: `DEPOT_ADMIN_SECRET`).
#[async_trait::async_trait]
pub trait AdminSecret: Send + Sync {
    async fn read(&self) -> Result<String>;
}

/// A cached verification: who it proved, until when, and for which user (to invalidate).
struct CacheEntry {
    identity: Identity,
    until: Instant,
}

/// Authentication: checks credentials against the user and token items, with a bounded
/// in-memory cache.
pub struct Authenticator {
    table: Arc<dyn Table>,
    admin_password: Option<String>,
    /// Where the bootstrap password comes from when none is configured: a secret, read
    /// only while the table has no administrator yet.
    admin_secret: Option<Arc<dyn AdminSecret>>,
    bootstrapped: OnceCell<()>,
    cache_ttl: Duration,
    cache: Mutex<HashMap<[u8; 32], CacheEntry>>,
    /// Moves on with every invalidation: a check that started before one does not put
    /// what it proved in the cache (it may be a password just changed).
    invalidations: std::sync::atomic::AtomicU64,
    /// A hash to verify against when the user does not exist, so that the answer takes
    /// as long as for a wrong password and does not tell which users exist.
    dummy_hash: OnceCell<String>,
    /// The password checks (and hashes) that may run at once, and their working memory.
    slots: Arc<Semaphore>,
    buffers: Arc<Mutex<Vec<Blocks>>>,
    limits: LoginLimits,
    throttle: Throttle,
    /// The checks running now, by the key of their credentials.
    inflight: Mutex<HashMap<[u8; 32], Arc<InFlight>>>,
}

/// The answer of a check that others may be waiting for.
type InFlight = OnceCell<Result<Identity>>;

impl Authenticator {
    pub fn new(table: Arc<dyn Table>, admin_password: Option<String>) -> Self {
        Self::with_cache_ttl(table, admin_password, CACHE_TTL)
    }

    /// An authenticator whose cache keeps entries for `ttl`; zero disables the cache.
    pub fn with_cache_ttl(table: Arc<dyn Table>, admin_password: Option<String>, ttl: Duration) -> Self {
        Authenticator {
            table,
            admin_password,
            admin_secret: None,
            bootstrapped: OnceCell::new(),
            cache_ttl: ttl,
            cache: Mutex::new(HashMap::new()),
            invalidations: std::sync::atomic::AtomicU64::new(0),
            dummy_hash: OnceCell::new(),
            slots: Arc::new(Semaphore::new(LoginLimits::default().slots)),
            buffers: Arc::default(),
            limits: LoginLimits::default(),
            throttle: Throttle::default(),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// The same authenticator, bootstrapping the administrator with the password `secret`
    /// holds (when no password is configured).
    pub fn with_admin_secret(mut self, secret: Option<Arc<dyn AdminSecret>>) -> Self {
        self.admin_secret = secret;
        self
    }

    /// The same authenticator with other bounds on password checks.
    pub fn with_login_limits(mut self, limits: LoginLimits) -> Self {
        self.slots = Arc::new(Semaphore::new(limits.slots.max(1)));
        self.limits = limits;
        self
    }

    /// Runs a slow password function (argon2) on the blocking pool, once a slot is free,
    /// with the slot's working memory: at most `slots` run at once, and one that waits
    /// longer than `wait` is a 503.
    pub async fn slow<T: Send + 'static>(&self, f: impl FnOnce(&mut Blocks) -> T + Send + 'static) -> Result<T> {
        let until = tokio::time::Instant::from_std(crate::deadline::wait_until(self.limits.wait));
        let permit = match tokio::time::timeout_at(until, self.slots.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => {
                return Err(Error::unavailable(
                    "too many password checks at once; retry in a moment, or use an API token",
                    self.limits.wait.as_secs().max(1),
                ))
            }
        };
        // The slot and the working memory go with the blocking task, not the request: a
        // client that hangs up mid-check frees neither before the hash is done.
        let buffers = self.buffers.clone();
        tokio::task::spawn_blocking(move || {
            let mut blocks = buffers.lock().expect("argon2 buffers").pop().unwrap_or_default();
            let out = f(&mut blocks);
            buffers.lock().expect("argon2 buffers").push(blocks);
            drop(permit);
            out
        })
        .await
        .map_err(Error::internal)
    }

    /// Creates the administrator `admin` once in the life of a table: when the table holds
    /// no system administrator at all and none was ever created, with the configured
    /// password, or a generated one when `generate` is set and none is configured.
    /// Returns the generated password, which the caller prints once. An existing user is
    /// never changed, and a deleted `admin` is not created again (`depot admin
    /// set-password` is the way back to an administrator).
    pub async fn bootstrap_admin(&self, generate: bool) -> Result<Option<String>> {
        if self.table.get(&bootstrap_key()).await?.is_some() {
            return Ok(None);
        }
        let marker = || {
            let mut item = bootstrap_key().item();
            item.insert("at".into(), now_iso().into());
            item
        };
        // A table from before the marker, or whose administrators were made otherwise.
        let users = query_all(&*self.table, Query::prefix(USERS_PK, USER_SK_PREFIX)).await?;
        let any_admin = users.into_iter().filter_map(|i| from_item::<UserRecord>(i).ok()).any(|u| u.admin);
        if any_admin || self.table.get(&user_key(ADMIN_USER)).await?.is_some() {
            match self.table.put(marker(), Cond::NotExists).await {
                Err(e) if !e.is_conflict() => return Err(e),
                _ => return Ok(None),
            }
        }
        let (password, generated) = match (&self.admin_password, &self.admin_secret, generate) {
            (Some(p), _, _) => (p.clone(), false),
            (None, Some(secret), _) => (secret.read().await?, false),
            (None, None, true) => (generate_password(), true),
            (None, None, false) => return Ok(None),
        };
        let user = UserRecord::new(ADMIN_USER.into(), ADMIN_USER.into(), hash_password(&password)?, true);
        let ops = vec![
            TxOp::Put { item: user.new_item()?, cond: Cond::NotExists },
            TxOp::Put { item: marker(), cond: Cond::NotExists },
        ];
        match self.table.transact(ops).await {
            Ok(()) => Ok(generated.then_some(password)),
            // Another process created it first.
            Err(e) if e.is_conflict() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Resolves an `Authorization` header. No header is `Anonymous`; a malformed header or
    /// wrong credentials are `Unauthenticated`. Accepts `Basic base64(user:password)`,
    /// `Basic base64(user:token)` and `Bearer token`.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Identity> {
        self.authenticate_from(authorization, None).await
    }

    /// [`Self::authenticate`] for a request from `client`, whose failed password checks
    /// count against that address too.
    pub async fn authenticate_from(&self, authorization: Option<&str>, client: Option<IpAddr>) -> Result<Identity> {
        let Some(header) = authorization else { return Ok(Identity::Anonymous) };
        let (scheme, value) = header.trim().split_once(' ').ok_or_else(bad_credentials)?;
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return self.verify(None, value, client).await;
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(Error::Unauthenticated(format!(
                "unsupported authorization scheme '{}'",
                crate::model::printable(scheme)
            )));
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(value).map_err(|_| bad_credentials())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad_credentials())?;
        let (user, secret) = decoded.split_once(':').ok_or_else(bad_credentials)?;
        self.verify(Some(user), secret, client).await
    }

    async fn verify(&self, user_id: Option<&str>, secret: &str, client: Option<IpAddr>) -> Result<Identity> {
        let cache_key: [u8; 32] = Sha256::new()
            .chain_update(user_id.map(|u| u.as_bytes()).unwrap_or(b"\0bearer"))
            .chain_update([0])
            .chain_update(secret)
            .finalize()
            .into();
        if let Some(e) = self.cache.lock().expect("auth cache").get(&cache_key) {
            if Instant::now() < e.until {
                return Ok(e.identity.clone());
            }
        }
        // Identical credentials checked at once (an agent fleet, a burst of uploads) are
        // one check: the others wait for its answer instead of hashing, and counting, again.
        let cell = {
            let mut inflight = self.inflight.lock().expect("auth in flight");
            inflight.entry(cache_key).or_insert_with(|| Arc::new(OnceCell::new())).clone()
        };
        let answer = cell.get_or_init(|| self.check(cache_key, user_id, secret, client)).await.clone();
        let mut inflight = self.inflight.lock().expect("auth in flight");
        if inflight.get(&cache_key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            inflight.remove(&cache_key);
        }
        answer
    }

    /// The check behind [`Self::verify`], once per credentials in flight: a token, else
    /// the password; a success is cached.
    async fn check(&self, cache_key: [u8; 32], user_id: Option<&str>, secret: &str, client: Option<IpAddr>) -> Result<Identity> {
        let invalidations = self.invalidations.load(std::sync::atomic::Ordering::SeqCst);
        let (identity, valid_for) = match self.verify_token(user_id, secret).await? {
            Some(found) => found,
            None => match user_id {
                Some(u) => {
                    // The first password check of a process creates the configured admin
                    // (on Lambda there is no start-up hook that may touch the network). A
                    // token needs none: its user was made by an administrator.
                    self.bootstrapped.get_or_try_init(|| async { self.bootstrap_admin(false).await.map(drop) }).await?;
                    (self.verify_password_of(u, secret, client).await?, self.cache_ttl)
                }
                None => return Err(bad_credentials()),
            },
        };
        let mut cache = self.cache.lock().expect("auth cache");
        // Under the cache's lock, which invalidate holds too.
        let unchanged = self.invalidations.load(std::sync::atomic::Ordering::SeqCst) == invalidations;
        if !valid_for.is_zero() && unchanged {
            if cache.len() >= CACHE_CAPACITY {
                let now = Instant::now();
                cache.retain(|_, e| now < e.until);
                if cache.len() >= CACHE_CAPACITY {
                    cache.clear();
                }
            }
            cache.insert(cache_key, CacheEntry { identity: identity.clone(), until: Instant::now() + valid_for });
        }
        Ok(identity)
    }

    /// Counts an open sign-up from `client` against its address (`LoginLimits::addr_sign_ups`).
    pub fn count_sign_up(&self, client: Option<IpAddr>) -> Result<()> {
        self.throttle.sign_up(&self.limits, client)
    }

    async fn verify_password_of(&self, user_id: &str, password: &str, client: Option<IpAddr>) -> Result<Identity> {
        // Counted before it runs; an invalid id counts against the address alone, so
        // that no string a client makes up is kept.
        let valid = crate::model::validate_name("user id", user_id).is_ok();
        let ticket = self.throttle.attempt(&self.limits, valid.then_some(user_id), client)?;
        let user = match valid {
            true => self.table.get(&user_key(user_id)).await?.map(from_item::<UserRecord>).transpose()?,
            false => None,
        };
        let hash = match &user {
            Some(u) => u.pwd_hash.clone(),
            None => {
                let make = || async { self.slow(|b| hash_password_with(&generate_password(), b)).await? };
                self.dummy_hash.get_or_try_init(make).await?.clone()
            }
        };
        let pw = password.to_string();
        let ok = self.slow(move |b| verify_password_with(&pw, &hash, b)).await?;
        match user {
            Some(u) if ok => {
                ticket.passed();
                Ok(Identity::User { id: u.user_id, admin: u.admin, epoch: u.epoch })
            }
            _ => Err(bad_credentials()),
        }
    }

    /// Checks `secret` as an API token. `None` when it is not one, so that a Basic
    /// password is then checked as a password. Returns the identity and how long it may
    /// be cached (never past the token's expiry).
    async fn verify_token(&self, user_id: Option<&str>, secret: &str) -> Result<Option<(Identity, Duration)>> {
        if !secret.starts_with(TOKEN_PREFIX) {
            return if user_id.is_some() { Ok(None) } else { Err(bad_credentials()) };
        }
        // Named with its user (`Basic user:token`, as helm and pip send one), the token
        // and the user are read in one request; a bare token names its user.
        let tkey = token_key(&accounts::sha256_hex(secret));
        let (item, mut user_item) = match user_id {
            Some(u) => {
                let mut both = self.table.get_many(&[tkey, user_key(u)]).await?.into_iter();
                (both.next().flatten(), Some(both.next().flatten()))
            }
            None => (self.table.get(&tkey).await?, None),
        };
        let Some(item) = item else {
            return if user_id.is_some() { Ok(None) } else { Err(bad_credentials()) };
        };
        let token: accounts::Token = from_item(item)?;
        if user_id.is_some_and(|u| u != token.user_id) {
            return Err(bad_credentials());
        }
        let now = OffsetDateTime::now_utc();
        if token.expired(now) {
            return Err(Error::Unauthenticated(format!("token [{}] has expired", token.name)));
        }
        let user_item = match user_item.take() {
            Some(read) => read,
            None => self.table.get(&user_key(&token.user_id)).await?,
        };
        let user = match user_item {
            Some(item) => from_item::<UserRecord>(item)?,
            None => return Err(bad_credentials()),
        };
        // A token of an earlier user under this id is not this user's.
        if token.user_uid != user.uid || user.deleting {
            return Err(bad_credentials());
        }
        let mut valid_for = self.cache_ttl;
        if let Some(until) = token.expired_at.as_deref().and_then(parse_iso) {
            let left = (until - now).try_into().unwrap_or(Duration::ZERO);
            valid_for = valid_for.min(left);
        }
        Ok(Some((Identity::User { id: user.user_id, admin: user.admin, epoch: user.epoch }, valid_for)))
    }

    /// Drops every cached verification of `user_id`, so that the next request re-checks.
    pub fn invalidate(&self, user_id: &str) {
        let mut cache = self.cache.lock().expect("auth cache");
        self.invalidations.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        cache.retain(|_, e| !matches!(&e.identity, Identity::User { id, .. } if id == user_id));
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
        // Hashes written by argon2's own hasher (earlier depot versions) still verify, and
        // its verifier accepts ours.
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let old = Argon2::default().hash_password(b"old-password", &salt).unwrap().to_string();
        assert!(verify_password("old-password", &old) && !verify_password("old-passwore", &old));
        let parsed = PasswordHash::new(&a).unwrap();
        assert!(Argon2::default().verify_password(b"s3cret", &parsed).is_ok());
        assert_eq!(generate_password().len(), 24);
    }
}
