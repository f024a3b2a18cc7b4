//! Garbage collection of content blobs that no version and no staged upload refers to,
//! and the guard that keeps a concurrent upload's bytes safe from it. (Stored renderings
//! of earlier states go too, in the same run: `registry::derived`.)
//!
//! Blobs are written before the metadata that names them, so a blob younger than the
//! grace period may belong to an upload still in flight: it is never collected. An old
//! blob can still be named again at any moment, when an upload brings the same bytes,
//! and neither port can delete "only if still unreferenced" atomically. So:
//!
//! - The collector first puts a mark (`GCMARK`, one item per blob, conditional on no
//!   other collector's mark), then reads every reference again, then deletes the
//!   still-unreferenced blobs, then removes its marks.
//! - Every commit that names a blob includes a condition: either no mark on that blob
//!   ([`Hold::Spare`]), or the staged record it came from still exists ([`Hold::Staged`],
//!   which the collector counts as a reference). A writer that meets a mark waits for it.
//! - A writer keeps a spare copy of its bytes until its commit has gone through, then
//!   puts the bytes back if a collector removed them ([`Registry::settle`]).
//!
//! - A version's further files (a strux tree's) are too many for one transaction's
//!   conditions. A spare is settled after the commit the same way. A staged one is held
//!   by a lease instead ([`Registry::check_staged_leases`]): staged records go only when
//!   their expiry passes (or with their repository), so one with [`STAGED_LEASE`] left
//!   just before the commit is still there when the commit lands, and every collector
//!   until then keeps the blob.
//!
//! If a commit passed its condition, no collector held a mark then: a later collector
//! reads the new reference after marking and keeps the blob, and an earlier one had
//! already deleted (so the writer's check after the commit restores the spare).
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::uploads::{session_of_key, UploadState, UPLOADS_PREFIX};
use super::Registry;
use crate::error::Kind;
use crate::model::PackageVersion;
use crate::store::schema::{
    from_item, gc_gone_key, gc_mark_key, package_partition, repo_partition, staged_partition, PKG_SK_PREFIX, VER_SK_PREFIX,
};
use crate::store::{query_all, BlobInfo, Cond, Key, Query, TxOp, TTL_ATTR};
use crate::{Error, Result};

/// How long a collector's mark holds. A collector deletes nothing once less than
/// [`MARK_MARGIN`] of it is left, and a writer treats an older mark as abandoned.
pub const MARK_TTL: Duration = Duration::from_secs(15 * 60);
const MARK_MARGIN: Duration = Duration::from_secs(60);
/// How long a writer waits for a collector's mark to go before answering "retry".
const WAIT_FOR_COLLECTOR: Duration = Duration::from_secs(30);
const WAIT_STEP: Duration = Duration::from_millis(200);
/// How long a staged blob that a version's further files name must stay staged past the
/// commit's start: far longer than a commit takes, clock skew included.
pub const STAGED_LEASE: Duration = Duration::from_secs(15 * 60);
/// The age at which an upload's spare copy under `tmp/` counts as left over.
pub const SPARE_GRACE_SECS: i64 = 24 * 3600;

/// What keeps an upload's bytes safe until the metadata naming them is committed.
#[derive(Debug, Clone, PartialEq)]
pub enum Hold {
    /// A spare copy of the bytes under this key, kept until the commit settles.
    Spare(String),
    /// The staged-upload record the blob was resolved from; the commit requires that it
    /// still exists.
    Staged(Key),
    /// The bytes themselves, hashed in memory and written straight to their content key
    /// (a small upload): no spare to write, copy and drop. The commit requires that no
    /// collector's mark, nor the record a collector leaves before it deletes
    /// (`schema::gc_gone_key`), is on the blob; one that finds such a record writes the
    /// bytes again, lifts it and commits.
    Bytes(bytes::Bytes),
}

/// What a collection found (and, unless dry, removed).
#[derive(Debug, Clone, Default)]
pub struct GcReport {
    pub scanned: usize,
    pub referenced: usize,
    pub unreferenced: Vec<BlobInfo>,
    pub removed: usize,
    /// Candidates another collector had marked, or whose mark ran out: left for later.
    pub skipped: usize,
    /// Stored renderings of earlier states and gone repositories (`Registry::sweep_renderings`).
    pub old_renderings: Vec<BlobInfo>,
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Registry {
    /// Every blob key that metadata names: versions' blobs and staged uploads. Reads the
    /// base table (strongly consistent), never an index.
    pub async fn referenced_blobs(&self) -> Result<HashSet<String>> {
        let mut keys = HashSet::new();
        for project in self.list_projects().await? {
            for repo in self.list_repositories(&project.name).await? {
                let packages =
                    query_all(&*self.table, Query::prefix(repo_partition(&project.name, &repo.name), PKG_SK_PREFIX))
                        .await?;
                for pkg in packages {
                    let key = pkg.get("key").and_then(|v| v.as_str()).unwrap_or_default().to_string();
                    let partition = package_partition(&project.name, &repo.name, &key);
                    for item in query_all(&*self.table, Query::prefix(partition, VER_SK_PREFIX)).await? {
                        let v: PackageVersion = from_item(item)?;
                        keys.insert(v.blob_key);
                        keys.extend(v.blobs);
                    }
                }
                let staged =
                    query_all(&*self.table, Query::partition(staged_partition(&project.name, &repo.name))).await?;
                for item in staged {
                    if let Some(k) = item.get("key").and_then(|v| v.as_str()) {
                        keys.insert(k.to_string());
                    }
                }
            }
        }
        Ok(keys)
    }

    /// Finds content blobs no metadata names and older than `grace_secs`, upload spares
    /// (`tmp/`) left over for a day (a spare lives for one request), and bytes under
    /// `uploads/` that no open session owns (sent to a session's URL after it was
    /// completed, aborted or expired: on S3 a presigned URL cannot be revoked); removes
    /// them unless `dry_run`.
    pub async fn collect_garbage(&self, dry_run: bool, grace_secs: i64) -> Result<GcReport> {
        let mut report = self.plan_garbage(grace_secs).await?;
        if !dry_run {
            self.remove_garbage(&mut report).await?;
        }
        report.old_renderings = self.sweep_renderings(dry_run, grace_secs).await?;
        Ok(report)
    }

    /// The first half of a collection: what is unreferenced now. Removes nothing.
    pub async fn plan_garbage(&self, grace_secs: i64) -> Result<GcReport> {
        let referenced = self.referenced_blobs().await?;
        let now = now();
        let blobs = self.blobs.list("blobs").await?;
        let spares = self.blobs.list("tmp").await?;
        let uploads = self.blobs.list(UPLOADS_PREFIX.trim_end_matches('/')).await?;
        let mut report = GcReport {
            scanned: blobs.len() + spares.len() + uploads.len(),
            referenced: referenced.len(),
            ..Default::default()
        };
        let spare_grace = grace_secs.max(SPARE_GRACE_SECS);
        let mut open: HashMap<String, bool> = HashMap::new();
        let mut orphans = Vec::new();
        for b in uploads.into_iter().filter(|b| now - b.modified >= grace_secs) {
            let Some(id) = session_of_key(&b.key).map(str::to_string) else { continue };
            let is_open = match open.get(&id) {
                Some(o) => *o,
                None => {
                    let o = match self.get_upload(&id).await {
                        Ok(s) => matches!(s.state, UploadState::Open | UploadState::Verifying),
                        Err(e) if e.is_not_found() => false,
                        Err(e) => return Err(e),
                    };
                    open.insert(id, o);
                    o
                }
            };
            if !is_open {
                orphans.push(b);
            }
        }
        report.unreferenced = blobs
            .into_iter()
            .filter(|b| !referenced.contains(&b.key) && now - b.modified >= grace_secs)
            .chain(spares.into_iter().filter(|b| now - b.modified >= spare_grace))
            .chain(orphans)
            .collect();
        Ok(report)
    }

    /// The second half: marks the planned blobs, reads the references again, and deletes
    /// what is still unreferenced while the marks hold.
    pub async fn remove_garbage(&self, report: &mut GcReport) -> Result<()> {
        if report.unreferenced.is_empty() {
            return Ok(());
        }
        let run = uuid::Uuid::new_v4().simple().to_string();
        let expires = now() + MARK_TTL.as_secs() as i64;
        let deadline = std::time::Instant::now() + MARK_TTL - MARK_MARGIN;
        let mut marked = Vec::new();
        for b in &report.unreferenced {
            let mut item = gc_mark_key(&b.key).item();
            item.insert("run".into(), run.clone().into());
            item.insert(TTL_ATTR.into(), expires.into());
            let mut put = self.table.put(item.clone(), Cond::NotExists).await;
            // A mark its collector left behind (it died) is taken over.
            if put.as_ref().is_err_and(Error::is_conflict) {
                match self.clear_stale_mark(&gc_mark_key(&b.key)).await {
                    Ok(true) => put = self.table.put(item, Cond::NotExists).await,
                    Ok(false) => {}
                    Err(e) => put = Err(e),
                }
            }
            match put {
                Ok(()) => marked.push(b.key.clone()),
                Err(e) if e.is_conflict() => report.skipped += 1,
                Err(e) => {
                    self.unmark(&marked, &run).await;
                    return Err(e);
                }
            }
        }
        let result = self.delete_marked(&marked, &run, deadline, report).await;
        self.unmark(&marked, &run).await;
        result
    }

    async fn delete_marked(
        &self,
        marked: &[String],
        run: &str,
        deadline: std::time::Instant,
        report: &mut GcReport,
    ) -> Result<()> {
        // Any commit naming one of these blobs either went through before its mark (and
        // is read here) or waits for the mark to go.
        let again = self.referenced_blobs().await?;
        for key in marked {
            if again.contains(key) {
                continue;
            }
            if std::time::Instant::now() >= deadline {
                report.skipped += 1;
                continue;
            }
            // Before the bytes go: a commit that wrote them without a spare meets this
            // and writes them again (`Hold::Bytes`).
            let mut gone = gc_gone_key(key).item();
            gone.insert("run".into(), run.into());
            gone.insert(TTL_ATTR.into(), (now() + MARK_TTL.as_secs() as i64).into());
            self.table.put(gone, Cond::None).await?;
            self.blobs.delete(key).await?;
            report.removed += 1;
        }
        Ok(())
    }

    async fn unmark(&self, marked: &[String], run: &str) {
        for key in marked {
            if let Err(e) = self.table.delete(&gc_mark_key(key), Cond::Eq("run".into(), run.into())).await {
                tracing::warn!(blob = %key, error = %e, "could not remove a garbage-collection mark; it expires by itself");
            }
        }
    }

    /// The condition a commit naming `blob_key` includes.
    pub(crate) fn guard_op(blob_key: &str, hold: &Hold) -> TxOp {
        match hold {
            Hold::Spare(_) | Hold::Bytes(_) => TxOp::Check { key: gc_mark_key(blob_key), cond: Cond::NotExists },
            Hold::Staged(staged) => TxOp::Check { key: staged.clone(), cond: Cond::Exists },
        }
    }

    /// The further condition of a commit whose bytes were written without a spare: no
    /// collection removed them since (`None` for the other holds).
    pub(crate) fn gone_op(blob_key: &str, hold: &Hold) -> Option<TxOp> {
        matches!(hold, Hold::Bytes(_)).then(|| TxOp::Check { key: gc_gone_key(blob_key), cond: Cond::NotExists })
    }

    /// Called when [`Registry::gone_op`] failed: a collection deleted the blob after (or
    /// before) its bytes were written. Waits for that collector to finish, writes the
    /// bytes again and lifts the record (unless a later collection left another), so
    /// that the commit can be tried again.
    pub(crate) async fn restore_collected(&self, blob_key: &str, hold: &Hold) -> Result<()> {
        let Hold::Bytes(bytes) = hold else { return Ok(()) };
        let gone = gc_gone_key(blob_key);
        let Some(record) = self.table.get(&gone).await? else { return Ok(()) };
        self.wait_for_collector(blob_key, hold).await?;
        tracing::warn!(blob = %blob_key, "a garbage collection removed bytes an upload had just written; writing them again");
        self.blobs.put(blob_key, crate::store::stream_from_bytes(bytes.clone())).await?;
        let run = record.get("run").cloned().unwrap_or(serde_json::Value::Null);
        match self.table.delete(&gone, Cond::Eq("run".into(), run)).await {
            Err(e) if !e.is_conflict() => Err(e),
            _ => Ok(()),
        }
    }

    /// Checks, just before a commit, that each staged blob among a version's further
    /// files stays staged for at least [`STAGED_LEASE`]: what keeps it from collection
    /// until the commit names it (see the module's notes). One about to expire is
    /// `NotFound`, like an expired one: the client stages it again.
    pub(crate) async fn check_staged_leases(&self, files: &[super::BlobRef]) -> Result<()> {
        let until = now() + STAGED_LEASE.as_secs() as i64;
        let staged: Vec<(&Key, &str)> = files
            .iter()
            .filter_map(|f| match &f.hold {
                Hold::Staged(key) => Some((key, f.digests.sha256.as_str())),
                Hold::Spare(_) | Hold::Bytes(_) => None,
            })
            .collect();
        for batch in staged.chunks(16) {
            let reads = batch.iter().map(|(key, _)| self.table.get(key));
            for (item, (_, sha256)) in futures::future::try_join_all(reads).await?.into_iter().zip(batch) {
                if item.and_then(|i| i.get(TTL_ATTR).and_then(|v| v.as_i64())).is_none_or(|t| t <= until) {
                    let minutes = STAGED_LEASE.as_secs() / 60;
                    let message = format!("the staged blob sha256:{sha256} expires within {minutes} minutes (or has): stage it again");
                    return Err(Error::not_found_as(Kind::StagedBlob, format!("sha256:{sha256}"), message));
                }
            }
        }
        Ok(())
    }

    /// Called when a commit's guard failed. With a spare, waits until the collector's
    /// mark on the blob is gone (removing one left past its expiry) so the commit can be
    /// tried again; a staged blob whose record is gone is `NotFound`.
    pub(crate) async fn wait_for_collector(&self, blob_key: &str, hold: &Hold) -> Result<()> {
        if let Hold::Staged(_) = hold {
            let message = "the staged blob expired before the upload was committed: upload it again";
            return Err(Error::not_found_as(Kind::StagedBlob, blob_key, message));
        }
        let key = gc_mark_key(blob_key);
        // Within the request's time: the 503 must reach the client before the function is
        // stopped.
        let give_up = crate::deadline::wait_until(WAIT_FOR_COLLECTOR);
        loop {
            if self.clear_stale_mark(&key).await? {
                return Ok(());
            }
            if std::time::Instant::now() >= give_up {
                return Err(Error::unavailable(
                    format!(
                        "garbage collection is removing an earlier copy of these bytes ({blob_key}); retry the upload in a minute"
                    ),
                    60,
                ));
            }
            tokio::time::sleep(WAIT_STEP).await;
        }
    }

    /// Removes the mark `key` if it has expired (its collector died). Answers whether no
    /// live mark is left.
    async fn clear_stale_mark(&self, key: &Key) -> Result<bool> {
        let Some(mark) = self.table.get(key).await? else { return Ok(true) };
        let expires = mark.get(TTL_ATTR).and_then(|v| v.as_i64()).unwrap_or(0);
        if expires > now() {
            return Ok(false);
        }
        match self.table.delete(key, Cond::Eq(TTL_ATTR.into(), expires.into())).await {
            Ok(()) => Ok(true),
            // Replaced by a new mark meanwhile.
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Makes a spare's bytes available under `blob_key` (a copy: the spare stays until the
    /// commit settles). The spare was hashed as it was written or taken, so it replaces
    /// whatever is there: a blob is never trusted for holding what its key names because
    /// it is there.
    pub(crate) async fn publish(&self, blob_key: &str, hold: &Hold) -> Result<()> {
        if let Hold::Spare(spare) = hold {
            self.blobs.copy(spare, blob_key).await?;
        }
        Ok(())
    }

    /// After a commit that named `blob_key` went through: puts the bytes back from the
    /// spare if a collector removed them, then drops the spare. The commit stands whatever
    /// happens here, so a failure is retried, then logged rather than returned (answering
    /// an error for an upload that was stored would be untrue).
    pub(crate) async fn settle(&self, blob_key: &str, hold: &Hold) {
        let Hold::Spare(spare) = hold else { return };
        let once = || async {
            if self.blobs.head(blob_key).await?.is_none() {
                tracing::warn!(blob = %blob_key, "a garbage collection removed a blob an upload had just named; restoring it");
                return self.blobs.rename(spare, blob_key).await;
            }
            self.blobs.delete(spare).await
        };
        let mut last = None;
        for pause in [0, 100, 400] {
            if pause > 0 {
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            match once().await {
                Ok(()) => return,
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            tracing::error!(blob = %blob_key, spare = %spare, error = %e,
                "could not settle an upload's spare copy; if the blob is missing, copy the spare to it");
        }
    }

    /// After a commit that failed (or a blob stored for a version that will not be
    /// committed): drops the spare. The blob itself is left for the collector.
    pub async fn release(&self, hold: &Hold) {
        if let Hold::Spare(spare) = hold {
            if let Err(e) = self.blobs.delete(spare).await {
                tracing::warn!(blob = %spare, error = %e, "could not remove an upload's spare copy; garbage collection will");
            }
        }
    }
}
