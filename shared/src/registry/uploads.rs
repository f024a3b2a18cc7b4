//! Upload sessions: the way in for bodies over the request limit.
//!
//! A session hands out presigned URLs (one PUT, or one per multipart part). The client
//! sends the bytes straight to the blob store, then asks depot to complete the session.
//! Completion first takes the bytes out of the client's reach (a private copy that no URL
//! names), then reads that copy back, computes its digests, and keeps it only when the
//! size and sha256 match what the client declared: what is published is exactly what was
//! hashed, whatever the client sends to its URLs meanwhile. The verified blob is copied
//! to its content-addressed key and recorded as *staged* for the session's repository; an
//! upload route of any surface may then name it (`X-Depot-Blob: sha256:<hex>`) instead
//! of carrying the bytes.
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Hold, Registry};
use crate::error::Kind;
use crate::model::{format_iso, now_iso, parse_iso, validate_name};
use crate::store::schema::{
    from_item, repo_key, staged_key, to_item, upload_key, DELETING_ATTR, UPLOADS_PK, UPLOAD_SK_PREFIX,
};
use crate::store::{content_key, query_all, Cond, Digests, Item, MultiHasher, Query, TxOp, TTL_ATTR};
use crate::{Error, Result};

/// How many times a completion waits out a garbage collection's mark on its bytes.
const MAX_GUARD_WAITS: usize = 8;

/// How long the URLs of a session stay valid.
pub const UPLOAD_URL_TTL: Duration = Duration::from_secs(3600);
/// How long an open session may still be completed: the URLs' life plus a grace period
/// for the last part to land.
pub const OPEN_SESSION_TTL: Duration = Duration::from_secs(2 * 3600);
/// How long a completed session's blob stays available for reference.
pub const STAGED_TTL: Duration = Duration::from_secs(24 * 3600);
/// Bodies above this size get multipart part URLs instead of one PUT.
pub const MULTIPART_THRESHOLD: u64 = 32 * 1024 * 1024;
/// The size of each part (S3's minimum is 5 MiB; its maximum count is 10,000).
pub const UPLOAD_PART_SIZE: u64 = 16 * 1024 * 1024;
/// How long a verifier's claim on a session holds: longer than the worker function's
/// 15 minutes, after which the verifier is taken to have died.
pub const VERIFY_CLAIM_LAPSE: Duration = Duration::from_secs(20 * 60);
/// Sessions above this size are verified off the request path by default
/// (`DEPOT_VERIFY_INLINE_BYTES`): at the hash rate of a 512 MB function, what hashes
/// within a few seconds of the gateway's 29 s.
pub const VERIFY_INLINE_BYTES: u64 = 256 * 1024 * 1024;
/// The largest session: S3's single-copy limit, which moving a blob to its content key
/// relies on.
pub const MAX_UPLOAD_SIZE: u64 = 5 * 1024 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum UploadState {
    Open,
    /// The bytes were taken and are being hashed off the request path (sessions over
    /// `Config::verify_inline_bytes`): poll the session until it is `COMPLETE` or `FAILED`.
    Verifying,
    Complete,
    /// The bytes did not match what was declared; `failure` says how. They were dropped.
    Failed,
}

/// A stored session.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadSession {
    pub id: String,
    pub project_id: String,
    pub repo_name: String,
    /// The creation id of the repository the session was opened in: a repository created
    /// again under its name is another one, and the session cannot stage for it.
    #[serde(default)]
    pub repo_uid: String,
    pub created_by: String,
    pub size: u64,
    /// The sha256 the client declared, if it declared one when opening the session.
    pub sha256: Option<String>,
    /// The multipart upload id, for multipart sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multipart_id: Option<String>,
    pub part_size: u64,
    pub parts: u32,
    pub state: UploadState,
    pub created_date: String,
    pub expires_at: String,
    /// `sha256:<hex>` once complete.
    pub digest: Option<String>,
    /// While `VERIFYING`: the key of the taken bytes that are hashed and published (no
    /// URL of the session writes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_key: Option<String>,
    /// The verifier working on the session, as `{epoch seconds}/{id}`: a claim that
    /// lapses after [`VERIFY_CLAIM_LAPSE`], so that a verifier that died is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier: Option<String>,
    /// Why a `FAILED` session failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Epoch seconds after which the store may drop the item (DynamoDB TTL).
    pub ttl: i64,
}

/// What a caller sends to open a session.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub project_id: String,
    pub repo_name: String,
    pub size: u64,
    pub sha256: Option<String>,
}

/// Where the client sends the bytes.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadTarget {
    pub part_number: u32,
    /// The bytes the URL takes: exactly these, no more and no fewer.
    pub size: u64,
    pub url: String,
}

/// An opened session and its URLs: one target for a single PUT, or one per part.
#[derive(Debug, Clone)]
pub struct OpenedUpload {
    pub session: UploadSession,
    pub targets: Vec<UploadTarget>,
}

/// A verified blob that a completed session staged for a repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedBlob {
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: u64,
    pub sha256: String,
    pub sha1: String,
    pub md5: String,
    /// The blob store key of the bytes.
    pub key: String,
    pub session_id: String,
    /// Who opened the session that staged it (the latest one, when several staged the
    /// same bytes). Records from before this field read as empty.
    #[serde(default)]
    pub staged_by: String,
    pub ttl: i64,
}

impl StagedBlob {
    pub fn digests(&self) -> Digests {
        Digests { sha256: self.sha256.clone(), sha1: self.sha1.clone(), md5: self.md5.clone(), size: self.size }
    }

    /// The blob as a version names it, staged for `project/repo`: the commit requires the
    /// staged record to still exist, which keeps garbage collection off the bytes.
    pub fn into_blob_ref(self, project: &str, repo: &str) -> super::BlobRef {
        let hold = Hold::Staged(staged_key(project, repo, &self.digest));
        super::BlobRef { digests: self.digests(), key: self.key, hold }
    }
}

/// Reads a client's sha256: 64 hex digits, with or without a `sha256:` prefix.
pub fn parse_sha256(s: &str) -> Result<String> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s).to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(Error::Invalid(format!(
            "invalid sha256 '{}': expected 64 hex digits, optionally prefixed with 'sha256:'",
            crate::model::printable(s)
        )))
    }
}

/// Where a session's bytes go, under [`UPLOADS_PREFIX`].
fn staging_key(id: &str) -> String {
    format!("{UPLOADS_PREFIX}{id}")
}

/// The blob store folder of the keys that sessions' URLs write: `uploads/{id}`, and on
/// the filesystem `uploads/{id}.parts/{upload}/{part}`.
pub const UPLOADS_PREFIX: &str = "uploads/";

/// The session whose URLs write `key`, if `key` is under [`UPLOADS_PREFIX`].
pub fn session_of_key(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(UPLOADS_PREFIX)?;
    let end = rest.find(['.', '/']).unwrap_or(rest.len());
    Some(&rest[..end])
}

fn epoch_after(d: Duration) -> (String, i64) {
    let t = OffsetDateTime::now_utc() + d;
    (format_iso(t), t.unix_timestamp())
}

fn state_value(s: UploadState) -> serde_json::Value {
    serde_json::to_value(s).unwrap_or_default()
}

/// Whether a verifier's claim on the session still holds (an empty claim was given up).
fn claim_is_live(session: &UploadSession) -> bool {
    let since = session.verifier.as_deref().and_then(|c| c.split('/').next()).and_then(|t| t.parse::<i64>().ok());
    since.is_some_and(|t| OffsetDateTime::now_utc().unix_timestamp() - t < VERIFY_CLAIM_LAPSE.as_secs() as i64)
}

fn public_reason(e: &Error) -> String {
    match e {
        Error::Invalid(m) => m.clone(),
        other => other.to_string(),
    }
}

/// The answer to completing a session whose verification failed.
fn failed_message(session: &UploadSession) -> String {
    format!(
        "upload session [{}] failed verification: {}",
        session.id,
        session.failure.as_deref().unwrap_or("the bytes were not what was declared")
    )
}

/// What completing a session comes to.
#[derive(Debug, Clone)]
pub enum Completion {
    /// The bytes were verified and staged.
    Staged(StagedBlob),
    /// The bytes were taken and are being verified: poll the session.
    Verifying(UploadSession),
}

fn check_session_id(id: &str) -> Result<()> {
    if crate::model::is_generated_id(id) {
        Ok(())
    } else {
        Err(Error::not_found(Kind::Upload, id))
    }
}

impl UploadSession {
    fn expired(&self, now: OffsetDateTime) -> bool {
        parse_iso(&self.expires_at).is_none_or(|t| t <= now)
    }

    /// The bytes a URL of this session that writes `key` takes: the whole size for the
    /// single URL, a part's size for a part URL (its key ends in the part number).
    fn bytes_for(&self, key: &str) -> Option<u64> {
        if key == staging_key(&self.id) {
            return Some(self.size);
        }
        let n = key.rsplit('/').next()?.parse::<u32>().ok()?;
        (1..=self.parts).contains(&n).then(|| part_bytes(self.size, self.part_size, self.parts, n))
    }
}

/// The size of part `n` of `parts` for `size` bytes in parts of `part_size`.
fn part_bytes(size: u64, part_size: u64, parts: u32, n: u32) -> u64 {
    if n < parts {
        part_size
    } else {
        size - part_size * (parts as u64 - 1)
    }
}

impl Registry {
    /// Opens a session for `size` bytes bound for a repository. The caller has already
    /// been authorised for WRITE on it. `max_size` is the deployment's limit
    /// (`Config::max_session_bytes`); [`MAX_UPLOAD_SIZE`] bounds it.
    pub async fn open_upload(&self, req: NewUpload, by: &str, max_size: u64) -> Result<OpenedUpload> {
        validate_name("project name", &req.project_id)?;
        validate_name("repository name", &req.repo_name)?;
        let sha256 = req.sha256.as_deref().map(parse_sha256).transpose()?;
        let max = max_size.min(MAX_UPLOAD_SIZE);
        if req.size > max {
            return Err(Error::TooLarge(format!(
                "this deployment opens upload sessions of at most {max} bytes, not {}",
                req.size
            )));
        }
        let repo: crate::model::Repository = match self.table.get(&repo_key(&req.project_id, &req.repo_name)).await? {
            Some(item) => from_item(item)?,
            None => return Err(Error::not_found(Kind::Repository, format!("{}/{}", req.project_id, req.repo_name))),
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let key = staging_key(&id);
        let (multipart_id, part_size, parts) = if req.size > MULTIPART_THRESHOLD {
            let parts = req.size.div_ceil(UPLOAD_PART_SIZE) as u32;
            (Some(self.blobs.start_multipart(&key).await?), UPLOAD_PART_SIZE, parts)
        } else {
            (None, req.size, 1)
        };
        let mut targets = Vec::with_capacity(parts as usize);
        match &multipart_id {
            Some(mp) => {
                for n in 1..=parts {
                    let size = part_bytes(req.size, UPLOAD_PART_SIZE, parts, n);
                    targets.push(UploadTarget {
                        part_number: n,
                        size,
                        url: self.blobs.presign_part(&key, mp, n, size, UPLOAD_URL_TTL).await?,
                    });
                }
            }
            None => {
                let url = self.blobs.presign_put(&key, req.size, UPLOAD_URL_TTL).await?;
                targets.push(UploadTarget { part_number: 1, size: req.size, url })
            }
        }
        let (expires_at, ttl) = epoch_after(OPEN_SESSION_TTL);
        let session = UploadSession {
            id,
            project_id: req.project_id,
            repo_name: req.repo_name,
            repo_uid: repo.uid,
            created_by: by.to_string(),
            size: req.size,
            sha256,
            multipart_id,
            part_size,
            parts,
            state: UploadState::Open,
            created_date: now_iso(),
            expires_at,
            digest: None,
            verify_key: None,
            verifier: None,
            failure: None,
            ttl,
        };
        self.table.put(to_item(&upload_key(&session.id), &session)?, Cond::NotExists).await?;
        Ok(OpenedUpload { session, targets })
    }

    /// Refuses bytes for `key` unless it belongs to a session that is open: a signed URL
    /// of a completed, aborted or expired session stores nothing (`Conflict`). Keys
    /// outside [`UPLOADS_PREFIX`] are not a session's and pass.
    ///
    /// For a session's key, answers how many bytes its URL takes (exactly these).
    pub async fn accepts_upload_bytes(&self, key: &str) -> Result<Option<u64>> {
        let Some(id) = session_of_key(key) else { return Ok(None) };
        let refused = || {
            Error::conflict(format!(
                "upload session [{}] is not open (it was completed, aborted or has expired): its URLs take no more bytes",
                crate::model::printable(id)
            ))
        };
        match self.get_upload(id).await {
            Ok(s) if s.state == UploadState::Open => match s.bytes_for(key) {
                Some(n) => Ok(Some(n)),
                None => Err(Error::Invalid(format!("{key} is not a URL of upload session [{id}]"))),
            },
            Ok(_) => Err(refused()),
            Err(e) if e.is_not_found() => Err(refused()),
            Err(e) => Err(e),
        }
    }

    /// A session, whatever its state. An expired one is `NotFound`.
    pub async fn get_upload(&self, id: &str) -> Result<UploadSession> {
        check_session_id(id)?;
        let session: UploadSession = match self.table.get(&upload_key(id)).await? {
            Some(item) => from_item(item)?,
            None => return Err(Error::not_found(Kind::Upload, id)),
        };
        if session.expired(OffsetDateTime::now_utc()) {
            return Err(Error::not_found_as(Kind::Upload, id, format!("upload session [{id}] has expired")));
        }
        Ok(session)
    }

    /// Completes a session: checks the bytes the client sent against the declared size
    /// and sha256 (`sha256` here, or the one declared when opening), stages the blob for
    /// the session's repository and returns it. A mismatch discards the bytes and the
    /// session. Completing a completed session returns the same blob. For a multipart
    /// session, `parts` may list `(part number, ETag)` as the PUT responses gave them;
    /// without it the store's own list of received parts is used.
    ///
    /// A session over `inline_limit` bytes is only taken here: its bytes are put out of
    /// the URLs' reach, the session becomes `VERIFYING`, and [`Registry::verify_upload`]
    /// does the rest off the request path (a task of `depot serve`, or the worker
    /// function that the bucket's object-created event starts on AWS).
    pub async fn complete_upload_within(
        &self,
        session: UploadSession,
        sha256: Option<&str>,
        parts: Option<&[(u32, String)]>,
        inline_limit: u64,
    ) -> Result<Completion> {
        let declared = sha256.map(parse_sha256).transpose()?;
        match session.state {
            UploadState::Complete => {
                let staged = self.staged_of(&session).await?;
                if let Some(d) = declared.filter(|d| *d != staged.sha256) {
                    return Err(Error::Invalid(format!(
                        "sha256 {d} differs from sha256 {} of the bytes this session completed with",
                        staged.sha256
                    )));
                }
                return Ok(Completion::Staged(staged));
            }
            UploadState::Verifying => {
                if let (Some(d), Some(a)) = (&declared, &session.sha256) {
                    if d != a {
                        return Err(Error::Invalid(format!(
                            "sha256 {d} differs from sha256 {a} that this session is being verified against"
                        )));
                    }
                }
                return Ok(Completion::Verifying(session));
            }
            UploadState::Failed => return Err(Error::Invalid(failed_message(&session))),
            UploadState::Open => {}
        }
        let expected = match (&session.sha256, &declared) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::Invalid(format!(
                    "sha256 {b} differs from sha256 {a} declared when the session was opened"
                )))
            }
            (Some(a), _) => a.clone(),
            (None, Some(b)) => b.clone(),
            (None, None) => {
                return Err(Error::Invalid("Parameter [sha256] is missing: declare the sha256 of the bytes".into()))
            }
        };
        // Each listed part once, and only parts the session has: a list that names a part
        // many times would have the join write it as many times.
        if let Some(list) = parts {
            let mut seen = std::collections::HashSet::new();
            for (n, _) in list {
                if !(1..=session.parts).contains(n) {
                    return Err(Error::Invalid(format!("part {n} is not a part of this session (1 to {})", session.parts)));
                }
                if !seen.insert(*n) {
                    return Err(Error::Invalid(format!("part {n} is listed more than once")));
                }
            }
        }
        if session.size > inline_limit {
            return self.start_verifying(session, expected, parts, inline_limit).await;
        }
        let key = staging_key(&session.id);
        let mut joined = None;
        if session.multipart_id.is_some() && self.blobs.head(&key).await?.is_none() {
            let mp = session.multipart_id.as_deref().unwrap_or_default();
            match self.blobs.complete_multipart(&key, mp, parts).await {
                // No URL writes a multipart session's key: only its parts, which the join
                // read once each. The digests describe exactly the bytes the join wrote.
                Ok(digests) => joined = digests,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        // Take the bytes out of the clients' reach first: a private copy that no URL names
        // (a hard link on the filesystem, CopyObject on S3). A PUT to the session's URL
        // from now on cannot change what is hashed and published.
        let taken = format!("tmp/{}", uuid::Uuid::new_v4().simple());
        match self.blobs.copy(&key, &taken).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {
                // A concurrent completion may have taken the bytes already.
                let now = self.get_upload(&session.id).await?;
                return match now.state {
                    UploadState::Complete => Ok(Completion::Staged(self.staged_of(&now).await?)),
                    UploadState::Verifying => Ok(Completion::Verifying(now)),
                    _ => Err(Error::Invalid(format!("no bytes have been uploaded to session [{}] yet", session.id))),
                };
            }
            Err(e) => return Err(e),
        }
        // The private copy is the spare until the staged record is committed.
        let hold = Hold::Spare(taken.clone());
        match self.stage_taken(&session, &expected, &taken, joined, &hold).await {
            Ok(staged) => {
                // What the client sent is published; its key is left to nobody.
                if let Err(e) = self.blobs.delete(&key).await {
                    tracing::warn!(key = %key, error = %e, "could not remove a completed session's bytes; depot gc will");
                }
                Ok(Completion::Staged(staged))
            }
            Err(e) => {
                self.release(&hold).await;
                Err(e)
            }
        }
    }

    /// [`Registry::complete_upload_within`] with every size verified within the call.
    pub async fn complete_upload(
        &self,
        session: UploadSession,
        sha256: Option<&str>,
        parts: Option<&[(u32, String)]>,
    ) -> Result<StagedBlob> {
        match self.complete_upload_within(session, sha256, parts, u64::MAX).await? {
            Completion::Staged(s) => Ok(s),
            Completion::Verifying(s) => {
                Err(Error::unavailable(format!("upload session [{}] is being verified: poll it", s.id), 5))
            }
        }
    }

    /// Takes a large session's bytes for verification off the request path. The session
    /// is `VERIFYING` first, then its bytes land where the verifier reads them: the join
    /// of a multipart session's parts (which no URL writes), or a copy of a single PUT's
    /// key. Either landing is an object-created event under `uploads/`, which on AWS
    /// starts the worker, and finds the session ready for it.
    async fn start_verifying(
        &self,
        session: UploadSession,
        expected: String,
        parts: Option<&[(u32, String)]>,
        inline_limit: u64,
    ) -> Result<Completion> {
        let key = staging_key(&session.id);
        let verify_key = match session.multipart_id {
            Some(_) => key.clone(),
            None => format!("{key}.verify"),
        };
        let (expires_at, ttl) = epoch_after(OPEN_SESSION_TTL);
        let mut set = Item::new();
        set.insert("state".into(), state_value(UploadState::Verifying));
        set.insert("sha256".into(), expected.clone().into());
        set.insert("verifyKey".into(), verify_key.clone().into());
        set.insert("expiresAt".into(), expires_at.clone().into());
        set.insert(TTL_ATTR.into(), ttl.into());
        let open = Cond::Eq("state".into(), state_value(UploadState::Open));
        match self.table.update(&upload_key(&session.id), set, &[], open).await {
            Ok(_) => {}
            // A concurrent completion won: answer as the session is now.
            Err(e) if e.is_conflict() => {
                let now = self.get_upload(&session.id).await?;
                return Box::pin(self.complete_upload_within(now, Some(&expected), parts, inline_limit)).await;
            }
            Err(e) => return Err(e),
        }
        let landed = match &session.multipart_id {
            Some(mp) if self.blobs.head(&key).await?.is_none() => {
                self.blobs.complete_multipart(&key, mp, parts).await.map(|_| ())
            }
            Some(_) => Ok(()),
            None => self.blobs.copy(&key, &verify_key).await,
        };
        if let Err(e) = landed {
            // Nothing was taken: the session is open again, exactly as it was (its declared
            // sha256 too: a refused completion changes nothing), for the client to fix its
            // parts (or send its bytes) and complete again.
            let mut set = Item::new();
            set.insert("state".into(), state_value(UploadState::Open));
            set.insert("sha256".into(), session.sha256.clone().map_or(serde_json::Value::Null, Into::into));
            set.insert("verifyKey".into(), serde_json::Value::Null);
            let verifying = Cond::Eq("state".into(), state_value(UploadState::Verifying));
            match self.table.update(&upload_key(&session.id), set, &[], verifying).await {
                Ok(_) => {}
                // Aborted meanwhile (its bytes went with it): the session is gone.
                Err(c) if c.is_conflict() => {
                    self.get_upload(&session.id).await?;
                }
                Err(c) => tracing::warn!(session = %session.id, error = %c, "could not reopen a session whose bytes were not taken"),
            }
            if e.is_not_found() {
                return Err(Error::Invalid(format!("no bytes have been uploaded to session [{}] yet", session.id)));
            }
            return Err(e);
        }
        let now = UploadSession {
            state: UploadState::Verifying,
            sha256: Some(expected),
            verify_key: Some(verify_key),
            expires_at,
            ttl,
            ..session
        };
        Ok(Completion::Verifying(now))
    }

    /// Verifies a `VERIFYING` session's taken bytes and stages them, or marks the session
    /// `FAILED` with the reason when they are not what was declared. Anything else (a
    /// session in another state, one another verifier holds, bytes not landed yet) is
    /// left alone: each start (an event delivered twice, a sweep) may call this. Answers
    /// the session's state afterwards, `None` when it is gone.
    pub async fn verify_upload(&self, id: &str) -> Result<Option<UploadState>> {
        let session = match self.get_upload(id).await {
            Ok(s) => s,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        if session.state != UploadState::Verifying {
            return Ok(Some(session.state));
        }
        let Some(session) = self.claim_verification(session).await? else { return Ok(Some(UploadState::Verifying)) };
        let (Some(verify_key), Some(expected)) = (session.verify_key.clone(), session.sha256.clone()) else {
            return Err(Error::Internal(format!("verifying session [{id}] names no bytes or sha256")));
        };
        if self.blobs.head(&verify_key).await?.is_none() {
            // The join (or copy) has not landed yet: its own event brings it back.
            self.unclaim(&session).await;
            return Ok(Some(UploadState::Verifying));
        }
        let hold = Hold::Spare(verify_key.clone());
        match self.stage_taken(&session, &expected, &verify_key, None, &hold).await {
            Ok(_) => {
                // A single PUT's key still holds what the client sent: nobody's now.
                if verify_key != staging_key(id) {
                    if let Err(e) = self.blobs.delete(&staging_key(id)).await {
                        tracing::warn!(session = %id, error = %e, "could not remove a verified session's bytes; depot gc will");
                    }
                }
                Ok(Some(UploadState::Complete))
            }
            // Bytes not as declared, or a repository deleted meanwhile: nothing to retry.
            Err(e) if matches!(e, Error::Invalid(_)) || e.is_not_found() => {
                self.fail_upload(&session, &public_reason(&e)).await?;
                Ok(Some(UploadState::Failed))
            }
            Err(e) => {
                self.unclaim(&session).await;
                Err(e)
            }
        }
    }

    /// Verifies every `VERIFYING` session that no live verifier holds: those whose start
    /// was lost (a process that stopped, an event not delivered). Answers how many were
    /// settled (completed or failed).
    pub async fn resume_verifications(&self) -> Result<usize> {
        let mut settled = 0;
        for item in query_all(&*self.table, Query::prefix(UPLOADS_PK, UPLOAD_SK_PREFIX)).await? {
            let session: UploadSession = from_item(item)?;
            if session.state != UploadState::Verifying || claim_is_live(&session) {
                continue;
            }
            match self.verify_upload(&session.id).await {
                Ok(Some(UploadState::Complete | UploadState::Failed)) => settled += 1,
                Ok(_) => {}
                Err(e) => tracing::warn!(session = %session.id, error = %e, "a verification failed; the next sweep retries it"),
            }
        }
        Ok(settled)
    }

    /// Takes the verifier's claim on a session, unless a live one holds it. Answers the
    /// session as claimed.
    async fn claim_verification(&self, session: UploadSession) -> Result<Option<UploadSession>> {
        if claim_is_live(&session) {
            return Ok(None);
        }
        let claim = format!("{}/{}", OffsetDateTime::now_utc().unix_timestamp(), uuid::Uuid::new_v4().simple());
        let mut set = Item::new();
        set.insert("verifier".into(), claim.clone().into());
        let unclaimed = match &session.verifier {
            Some(old) => Cond::Eq("verifier".into(), old.clone().into()),
            None => Cond::Lacks("verifier".into()),
        };
        let cond = Cond::All(vec![Cond::Eq("state".into(), state_value(UploadState::Verifying)), unclaimed]);
        match self.table.update(&upload_key(&session.id), set, &[], cond).await {
            Ok(_) => Ok(Some(UploadSession { verifier: Some(claim), ..session })),
            Err(e) if e.is_conflict() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Gives a claim up, for the next start to take.
    async fn unclaim(&self, session: &UploadSession) {
        let Some(claim) = &session.verifier else { return };
        let cond = Cond::Eq("verifier".into(), claim.clone().into());
        let mut set = Item::new();
        set.insert("verifier".into(), "".into());
        if let Err(e) = self.table.update(&upload_key(&session.id), set, &[], cond).await {
            if !e.is_conflict() {
                tracing::warn!(session = %session.id, error = %e, "could not give up a verification claim; it lapses");
            }
        }
    }

    /// Marks a verified session `FAILED`, and drops its bytes.
    async fn fail_upload(&self, session: &UploadSession, reason: &str) -> Result<()> {
        let mut set = Item::new();
        set.insert("state".into(), state_value(UploadState::Failed));
        set.insert("failure".into(), reason.into());
        let cond = Cond::Eq("state".into(), state_value(UploadState::Verifying));
        match self.table.update(&upload_key(&session.id), set, &[], cond).await {
            Err(e) if !e.is_conflict() => return Err(e),
            _ => {}
        }
        self.drop_session_bytes(session).await
    }

    /// The rest of a completion, on the bytes it took: checks them against the session,
    /// publishes them under their digest and commits the staged record.
    async fn stage_taken(
        &self,
        session: &UploadSession,
        expected: &str,
        taken: &str,
        joined: Option<Digests>,
        hold: &Hold,
    ) -> Result<StagedBlob> {
        // Off the request path the session stays, `FAILED`, for its client to learn why.
        let verifying = session.state == UploadState::Verifying;
        let received = self.blobs.head(taken).await?.unwrap_or(0);
        if received != session.size {
            if !verifying {
                if let Some(won) = self.discard_refused(session, expected).await? {
                    return Ok(won);
                }
            }
            return Err(Error::Invalid(format!(
                "size mismatch: the session declared {} bytes and {received} arrived; the upload was discarded",
                session.size
            )));
        }
        let digests = match joined {
            Some(d) => d,
            None => self.digest_blob(taken).await?,
        };
        if digests.sha256 != expected {
            if !verifying {
                if let Some(won) = self.discard_refused(session, expected).await? {
                    return Ok(won);
                }
            }
            return Err(Error::Invalid(format!(
                "sha256 mismatch: declared {expected}, received {}; the upload was discarded",
                digests.sha256
            )));
        }
        let content = content_key(&digests.sha256);
        self.publish(&content, hold).await?;
        let (expires_at, ttl) = epoch_after(STAGED_TTL);
        let staged = StagedBlob {
            digest: format!("sha256:{}", digests.sha256),
            size: digests.size,
            sha256: digests.sha256.clone(),
            sha1: digests.sha1,
            md5: digests.md5,
            key: content.clone(),
            session_id: session.id.clone(),
            staged_by: session.created_by.clone(),
            ttl,
        };
        let mut set = Item::new();
        set.insert("state".into(), state_value(UploadState::Complete));
        set.insert("digest".into(), staged.digest.clone().into());
        set.insert("expiresAt".into(), expires_at.into());
        set.insert(TTL_ATTR.into(), ttl.into());
        let ops = vec![
            TxOp::Put {
                item: to_item(&staged_key(&session.project_id, &session.repo_name, &staged.digest), &staged)?,
                cond: Cond::None,
            },
            TxOp::Update {
                key: upload_key(&session.id),
                set,
                add: vec![],
                cond: Cond::Eq("state".into(), state_value(session.state)),
            },
            Registry::guard_op(&content, hold),
            // The repository is still the one the session was opened in, and no forced
            // delete is removing its contents.
            TxOp::Check {
                key: repo_key(&session.project_id, &session.repo_name),
                cond: Cond::All(vec![
                    match session.repo_uid.as_str() {
                        "" => Cond::Exists,
                        uid => Cond::Eq("uid".into(), uid.into()),
                    },
                    Cond::Lacks(DELETING_ATTR.into()),
                ]),
            },
        ];
        for _ in 0..MAX_GUARD_WAITS {
            match self.table.transact(ops.clone()).await {
                Ok(()) => {
                    self.settle(&content, hold).await;
                    return Ok(staged);
                }
                Err(e) if e.failed_op(2) => self.wait_for_collector(&content, hold).await?,
                Err(e) if e.failed_op(3) => {
                    let (p, r) = (&session.project_id, &session.repo_name);
                    let message = format!(
                        "the repository [{p}/{r}] this session was opened in was deleted, or is being deleted: open a session in the repository as it is now"
                    );
                    return Err(Error::not_found_as(Kind::Repository, format!("{p}/{r}"), message));
                }
                // A concurrent completion of the same session won: answer what it staged.
                Err(e) if e.is_conflict() => {
                    self.release(hold).await;
                    return self.staged_of(&self.get_upload(&session.id).await?).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::unavailable("garbage collection keeps claiming these bytes; retry the completion", 30))
    }

    async fn staged_of(&self, session: &UploadSession) -> Result<StagedBlob> {
        let digest =
            session.digest.as_deref().ok_or_else(|| Error::Internal("complete session without digest".into()))?;
        self.resolve_staged(&session.project_id, &session.repo_name, digest).await
    }

    /// Streams a blob through the hashers.
    async fn digest_blob(&self, key: &str) -> Result<Digests> {
        let mut body = self.blobs.get(key, None).await?.body;
        let mut hasher = MultiHasher::new();
        while let Some(chunk) = body.next().await {
            hasher.update(&chunk.map_err(|e| Error::Internal(format!("reading an uploaded blob: {e}")))?);
        }
        Ok(hasher.finish())
    }

    /// Aborts a session, in whatever state it is: its bytes go, and so does the blob it
    /// staged (the staged record, if this session's: the bytes are left to the collector),
    /// so that its digest no longer publishes anything. A state that changes meanwhile (a
    /// verification that completes) is read again.
    pub async fn abort_upload(&self, session: UploadSession) -> Result<()> {
        let mut session = session;
        for _ in 0..4 {
            if let (UploadState::Complete, Some(d)) = (session.state, &session.digest) {
                let key = staged_key(&session.project_id, &session.repo_name, d);
                match self.table.delete(&key, Cond::Eq("sessionId".into(), session.id.clone().into())).await {
                    Err(e) if !e.is_conflict() => return Err(e),
                    _ => {}
                }
            }
            match self.table.delete(&upload_key(&session.id), Cond::Eq("state".into(), state_value(session.state))).await {
                Ok(()) => return self.drop_session_bytes(&session).await,
                Err(e) if e.is_conflict() => match self.get_upload(&session.id).await {
                    Ok(now) => session = now,
                    Err(e) if e.is_not_found() => return Ok(()),
                    Err(e) => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
        Err(Error::unavailable("the session kept changing while it was aborted; retry", 1))
    }

    /// A session's bytes: its key, its parts and what a verification took.
    async fn drop_session_bytes(&self, session: &UploadSession) -> Result<()> {
        let key = staging_key(&session.id);
        if let Some(mp) = &session.multipart_id {
            self.blobs.abort_multipart(&key, mp).await?;
        }
        self.blobs.delete(&key).await?;
        if let Some(k) = session.verify_key.as_deref().filter(|k| *k != key) {
            self.blobs.delete(k).await?;
        }
        Ok(())
    }

    /// Drops the bytes of a session whose completion refused them, and the session while
    /// it is still open. A concurrent completion may have completed it meanwhile, with
    /// the right bytes taken before these replaced them: then it stays, and this
    /// completion answers as that one did (the blob it staged), when it staged the
    /// `expected` sha256.
    async fn discard_refused(&self, session: &UploadSession, expected: &str) -> Result<Option<StagedBlob>> {
        let open = Cond::Eq("state".into(), state_value(UploadState::Open));
        match self.discard_upload_if(session, open).await {
            Ok(()) => Ok(None),
            Err(e) if e.is_conflict() => match self.table.get(&upload_key(&session.id)).await? {
                Some(item) => {
                    let now: UploadSession = from_item(item)?;
                    match now.state {
                        UploadState::Complete => {
                            let staged = self.staged_of(&now).await?;
                            Ok((staged.sha256 == expected).then_some(staged))
                        }
                        _ => Ok(None),
                    }
                }
                None => Ok(None),
            },
            Err(e) => Err(e),
        }
    }

    /// Drops a session's bytes and the session.
    pub async fn discard_upload(&self, session: &UploadSession) -> Result<()> {
        self.discard_upload_if(session, Cond::None).await
    }

    /// Drops a session's bytes, and the session when `cond` holds on it.
    async fn discard_upload_if(&self, session: &UploadSession, cond: Cond) -> Result<()> {
        self.drop_session_bytes(session).await?;
        self.table.delete(&upload_key(&session.id), cond).await
    }

    /// The blob a completed session staged for a repository, by `sha256:<hex>`. This is
    /// what an upload route resolves an `X-Depot-Blob` reference with: only blobs staged
    /// for the same repository, and not yet expired, are found.
    pub async fn resolve_staged(&self, project: &str, repo: &str, digest: &str) -> Result<StagedBlob> {
        let hex = parse_sha256(digest)?;
        let digest = format!("sha256:{hex}");
        let missing = || {
            let message = format!("no completed upload session staged blob {digest} for repository [{project}/{repo}]");
            Error::not_found_as(Kind::StagedBlob, &digest, message)
        };
        let item = self.table.get(&staged_key(project, repo, &digest)).await?.ok_or_else(missing)?;
        let staged: StagedBlob = from_item(item)?;
        if staged.ttl <= OffsetDateTime::now_utc().unix_timestamp() {
            return Err(missing());
        }
        Ok(staged)
    }

    /// A blob that `user`'s own upload session staged: another user's staged bytes are
    /// not found, so that knowing a digest does not publish what someone else has not.
    pub async fn resolve_own_staged(&self, project: &str, repo: &str, digest: &str, user: &str) -> Result<StagedBlob> {
        let staged = self.resolve_staged(project, repo, digest).await?;
        if staged.staged_by != user {
            let message = format!(
                "no completed upload session of user [{user}] staged blob {} (if one did, another user has staged the \
                 same bytes since: stage them again)",
                staged.digest
            );
            return Err(Error::not_found_as(Kind::StagedBlob, &staged.digest, message));
        }
        Ok(staged)
    }

    /// Removes expired sessions with their bytes and staged records. DynamoDB's TTL and
    /// the bucket's lifecycle rules do this on AWS; `depot serve` calls it periodically.
    /// Returns how many sessions it removed.
    pub async fn expire_uploads(&self) -> Result<usize> {
        let now = OffsetDateTime::now_utc();
        let mut removed = 0;
        for item in query_all(&*self.table, Query::prefix(UPLOADS_PK, UPLOAD_SK_PREFIX)).await? {
            let session: UploadSession = from_item(item)?;
            if !session.expired(now) {
                continue;
            }
            if let Some(d) = &session.digest {
                // Only this session's record: a later session may have staged the same
                // bytes since, and its record is not this one's to remove.
                let key = staged_key(&session.project_id, &session.repo_name, d);
                match self.table.delete(&key, Cond::Eq("sessionId".into(), session.id.clone().into())).await {
                    Err(e) if !e.is_conflict() => return Err(e),
                    _ => {}
                }
            }
            self.discard_upload(&session).await?;
            removed += 1;
        }
        Ok(removed)
    }
}
