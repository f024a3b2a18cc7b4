//! Versions and their packages: create, replace, delete, move through stages.
//!
//! A version and its package summary change together in one transaction, with the
//! repository's generation bumped in the same transaction, so that anything derived from
//! the repository (an `index.yaml`) can be cached under the generation and never be
//! stale. Writers read the package summary, compute the new one, and write it on the
//! condition that its `revision` has not moved; on a lost race they read again.
use serde_json::{Map, Value};

use super::listings::listing_ops;
use super::{Hold, Registry};
use crate::error::Kind;
use crate::model::{
    compare_versions, now_iso, printable, validate_name, validate_package_key, validate_version, Action, Actor, Listing,
    MetadataEntry, PackageSummary, PackageVersion, RepoType,
};
use crate::store::schema::{
    change_key, from_item, history_key, history_prefix, index_package, index_upload, index_version, names_index_sk, package_key,
    number_key, numbers_key, package_partition, path_key, repo_key, to_item, version_key, DELETING_ATTR, NAMES_INDEX_SK_ATTR,
};
use crate::store::{content_key, delete_all, ByteStream, Cond, Digests, Item, Query, TxOp};
use crate::{Error, Result};

/// How often a writer retries after losing a race on the package summary.
const MAX_ATTEMPTS: usize = 64;

/// Bytes already in the blob store, with their digests.
#[derive(Debug, Clone)]
pub struct BlobRef {
    pub key: String,
    pub digests: Digests,
    /// What keeps the bytes safe from garbage collection until the version is committed.
    pub hold: Hold,
}

/// What a surface asks for when a version is uploaded.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub project_id: String,
    pub repo_name: String,
    pub package_key: String,
    pub package_name: String,
    pub package_type: RepoType,
    pub version: String,
    pub description: String,
    pub content_path: String,
    pub blob: BlobRef,
    pub metadata: Map<String, Value>,
    pub package_metadata: Vec<MetadataEntry>,
    /// Replaces the package summary's `extension`.
    pub extension: Map<String, Value>,
    /// Replace an existing version instead of refusing with `Exists` (a `@release`
    /// version also needs the caller's MANAGE).
    pub overwrite: bool,
    /// Further blobs the version names (a strux tree's files; `blob` is its manifest).
    pub files: Vec<BlobRef>,
    /// Its number, from [`Registry::next_number`], for surfaces that name versions by an
    /// integer: the commit records it, and the version's delete removes it.
    pub number: Option<u64>,
    /// Further conditions of the commit (`TxOp::Check`s), such as that the uploader is
    /// still signed in (`Accounts::still_signed_in`). One that fails is `Unauthenticated`.
    pub requires: Vec<TxOp>,
    /// The stages a new version starts with (an APS package approved and published at
    /// upload): `@release` needs `by`'s MANAGE. A replaced version keeps its own.
    pub stages: Vec<&'static str>,
    /// The listings the version belongs to while it is released (`registry::listings`).
    pub listing: Option<Listing>,
    /// Names to take instead of `version`, in order, when it is taken (a concurrent
    /// upload of another APS package of the same application version).
    pub fallback_names: Vec<String>,
}

/// The write that claims a version's content path: a path is held by one version of
/// one package in a repository (bkrepo's node paths are unique too), so that a file name
/// never names two versions' bytes.
fn path_op(req: &NewVersion, existing: Option<&PackageVersion>) -> TxOp {
    let mut item = path_key(&req.project_id, &req.repo_name, &req.content_path).item();
    let owner = format!("{}\n{}", req.package_key, req.version);
    item.insert("owner".into(), owner.clone().into());
    // A version replacing itself at the same path keeps it; anything else needs it free.
    let cond = match existing {
        Some(old) if old.content_path == req.content_path => Cond::None,
        _ => Cond::NotExists,
    };
    TxOp::Put { item, cond }
}

impl NewVersion {
    /// A version of `key` (`{type}://{value}`) in `project/repo` with no description,
    /// metadata or extension, stored at `/{value}/{version}`, refused if it exists. Set
    /// the other fields as needed.
    pub fn new(project: &str, repo: &str, key: &str, name: &str, ty: RepoType, version: &str, blob: BlobRef) -> Self {
        NewVersion {
            project_id: project.into(),
            repo_name: repo.into(),
            package_key: key.into(),
            package_name: name.into(),
            package_type: ty,
            version: version.into(),
            description: String::new(),
            content_path: format!("/{}/{version}", key.split_once("://").map_or(key, |(_, v)| v)),
            blob,
            metadata: Map::new(),
            package_metadata: vec![],
            extension: Map::new(),
            overwrite: false,
            files: vec![],
            number: None,
            requires: vec![],
            stages: vec![],
            listing: None,
            fallback_names: vec![],
        }
    }
}

/// After as many lost races as a commit tries: busy, not broken.
fn conflict_retry<T>() -> Result<T> {
    Err(Error::unavailable("too many writers changed this package at once; retry in a moment", 1))
}

impl Registry {
    /// Stores a stream under its content address and returns where and what it is.
    /// The bytes also stay under `tmp/` as a spare until [`Registry::create_version`]
    /// settles (see `registry::gc`).
    pub async fn store_content(&self, body: ByteStream) -> Result<BlobRef> {
        let tmp = format!("tmp/{}", uuid::Uuid::new_v4().simple());
        let digests = self.blobs.put(&tmp, body).await?;
        let key = content_key(&digests.sha256);
        let hold = Hold::Spare(tmp);
        if let Err(e) = self.publish(&key, &hold).await {
            self.release(&hold).await;
            return Err(e);
        }
        Ok(BlobRef { key, digests, hold })
    }

    /// Stores bytes held in memory (a request's body of a few MB) straight under their
    /// content address, hashed here first: one write, and no spare to copy and drop. The
    /// bytes are the hold ([`Hold::Bytes`]): a commit that finds a collection removed
    /// them writes them again.
    pub async fn store_bytes(&self, bytes: bytes::Bytes) -> Result<BlobRef> {
        use sha2::Digest;
        let key = content_key(&hex::encode(sha2::Sha256::digest(&bytes)));
        // The version's commit names these bytes next (or they are an orphan for gc).
        let digests = self.blobs.put_named_next(&key, crate::store::stream_from_bytes(bytes.clone())).await?;
        if content_key(&digests.sha256) != key {
            return Err(Error::Internal(format!("the blob store hashed {key} otherwise")));
        }
        Ok(BlobRef { key, digests, hold: Hold::Bytes(bytes) })
    }

    pub async fn get_package(&self, project: &str, repo: &str, key: &str) -> Result<PackageSummary> {
        validate_package_key(key)?;
        self.find_package(project, repo, key).await?.ok_or_else(|| Error::not_found(Kind::Package, key))
    }

    /// The package, or `None` when it does not exist.
    pub async fn find_package(&self, project: &str, repo: &str, key: &str) -> Result<Option<PackageSummary>> {
        validate_package_key(key)?;
        self.table.get(&package_key(project, repo, key)).await?.map(from_item).transpose()
    }

    pub async fn get_version(&self, project: &str, repo: &str, key: &str, version: &str) -> Result<PackageVersion> {
        validate_package_key(key)?;
        validate_version(version)?;
        match self.table.get(&version_key(project, repo, key, version)).await? {
            Some(item) => from_item(item),
            None => Err(Error::version_not_found(key, version)),
        }
    }

    /// A new version number for `project/repo`, from an atomic counter that outlives the
    /// repository: numbers are never handed out twice, even to a repository created
    /// again under the same name.
    pub async fn next_number(&self, project: &str, repo: &str) -> Result<u64> {
        let n = crate::store::atomic_add(&*self.table, &numbers_key(project, repo), "next", 1).await?;
        u64::try_from(n).map_err(|_| Error::Internal(format!("version counter of {project}/{repo} is {n}")))
    }

    /// The version numbered `n` in `project/repo`.
    pub async fn version_by_number(&self, project: &str, repo: &str, n: u64) -> Result<PackageVersion> {
        let missing = || Error::not_found_as(Kind::Version, n.to_string(), format!("no version numbered {n}"));
        let Some(item) = self.table.get(&number_key(project, repo, n)).await? else { return Err(missing()) };
        let owner = item.get("owner").and_then(|v| v.as_str()).unwrap_or_default();
        let Some((key, version)) = owner.split_once('\n') else { return Err(missing()) };
        match self.get_version(project, repo, key, version).await {
            Ok(v) if v.number == Some(n) => Ok(v),
            Ok(_) => Err(missing()),
            Err(e) if e.is_not_found() => Err(missing()),
            Err(e) => Err(e),
        }
    }

    /// The version that holds `content_path` in `project/repo`, if one does (versions
    /// stored before paths were claimed are not found here).
    pub async fn version_at_path(
        &self,
        project: &str,
        repo: &str,
        content_path: &str,
    ) -> Result<Option<PackageVersion>> {
        let Some(item) = self.table.get(&path_key(project, repo, content_path)).await? else { return Ok(None) };
        let owner = item.get("owner").and_then(|v| v.as_str()).unwrap_or_default();
        let Some((key, version)) = owner.split_once('\n') else { return Ok(None) };
        match self.get_version(project, repo, key, version).await {
            Ok(v) if v.content_path == content_path => Ok(Some(v)),
            Ok(_) => Ok(None),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a version (or, with `overwrite`, replaces one) and updates its package
    /// summary and the repository's counters in one transaction. Returns the version and
    /// whether it is new. Replacing a `@release` version needs `by`'s MANAGE. A spare the
    /// blob came with is settled (or dropped, when this fails).
    pub async fn create_version(&self, req: NewVersion, by: &Actor) -> Result<(PackageVersion, bool)> {
        let committed = match self.check_staged_leases(&req.files).await {
            Ok(()) => self.commit_version(&req, by).await,
            Err(e) => Err(e),
        };
        match committed {
            Ok(done) => {
                self.settle(&req.blob.key, &req.blob.hold).await;
                self.settle_files(&req.files).await;
                Ok(done)
            }
            Err(e) => {
                self.release(&req.blob.hold).await;
                for f in &req.files {
                    self.release(&f.hold).await;
                }
                Err(e)
            }
        }
    }

    /// Settles the further blobs of a committed version. Their guard is not in the
    /// commit's transaction (a tree may have more files than a transaction has
    /// operations), so it comes after it, with the same effect: once no collector's mark
    /// is on a blob, any later collector reads the committed version and keeps it, and
    /// one that removed it before is undone from the spare. Staged ones were held by
    /// their lease, checked before the commit.
    async fn settle_files(&self, files: &[BlobRef]) {
        use futures::StreamExt;
        futures::stream::iter(files.iter().filter(|f| matches!(f.hold, Hold::Spare(_))))
            .for_each_concurrent(16, |f| async move {
                if let Err(e) = self.wait_for_collector(&f.key, &f.hold).await {
                    tracing::warn!(blob = %f.key, error = %e, "a collector's mark outlived the wait; settling anyway");
                }
                self.settle(&f.key, &f.hold).await;
            })
            .await;
    }

    /// The transaction of [`Registry::create_version`]: the version item (new, or the
    /// one read, unchanged since), the package summary (new, or updated on its
    /// `revision`), the repository's counters, and the garbage-collection guard on the
    /// blob. A lost race reads again.
    async fn commit_version(&self, req: &NewVersion, by: &Actor) -> Result<(PackageVersion, bool)> {
        let mut names = req.fallback_names.iter();
        let mut current = std::borrow::Cow::Borrowed(req);
        validate_name("project name", &req.project_id)?;
        validate_name("repository name", &req.repo_name)?;
        validate_package_key(&req.package_key)?;
        validate_version(&req.version)?;
        for n in &req.fallback_names {
            validate_version(n)?;
        }
        if req.stages.contains(&crate::model::STAGE_RELEASE) && !by.may(Action::Manage) {
            return Err(Error::Forbidden(format!(
                "a version that starts at @release needs MANAGE on {}/{}",
                req.project_id, req.repo_name
            )));
        }
        let exists = |req: &NewVersion| {
            Error::exists_as(
                Kind::Version,
                &req.version,
                format!("version [{}] of package [{}] already exists", req.version, req.package_key),
            )
        };
        for _ in 0..MAX_ATTEMPTS {
            let snapshot = current.clone();
            let req = snapshot.as_ref();
            let (p, r, k) = (req.project_id.as_str(), req.repo_name.as_str(), req.package_key.as_str());
            let vkey = version_key(p, r, k, &req.version);
            let now = now_iso();
            // The version and its package, in one read.
            let mut read = self.table.get_many(&[vkey.clone(), package_key(p, r, k)]).await?.into_iter();
            let existing: Option<PackageVersion> = read.next().flatten().map(from_item).transpose()?;
            let summary: Option<PackageSummary> = read.next().flatten().map(from_item).transpose()?;
            if let Some(old) = &existing {
                if !req.overwrite {
                    // Taken: the next name the caller gave, if any.
                    match names.next() {
                        Some(n) => {
                            current.to_mut().version = n.clone();
                            continue;
                        }
                        None => return Err(exists(req)),
                    }
                }
                if old.is_released() && !by.may(Action::Manage) {
                    return Err(Error::Forbidden(format!(
                        "version [{}] of package [{k}] is a @release version: overwriting it needs MANAGE",
                        req.version
                    )));
                }
                if old.is_released() && old.listing.is_some() {
                    return Err(Error::conflict(format!(
                        "version [{}] of package [{k}] is published in a catalog: delete it before uploading it again",
                        req.version
                    )));
                }
            }
            let version = version_record(req, existing.as_ref(), by.name(), &now);
            let version_cond = match &existing {
                None => Cond::NotExists,
                Some(o) => Cond::Eq("revision".into(), Value::from(o.revision)),
            };
            let is_new_version = existing.is_none();
            let new_package = summary.is_none();
            // A new version goes into the history, unless it was deleted and is uploaded
            // again (it is in the history already).
            let goes_in_history = match &summary {
                None => true,
                Some(s) if is_new_version => {
                    !(s.history_version.contains(&req.version)
                        || (s.history_spilled()
                            && self.table.get(&history_key(p, r, k, &s.history_id, &req.version)).await?.is_some()))
                }
                Some(_) => false,
            };
            let record = goes_in_history.then_some(self.inline_history);
            let (summary_op, history_op) = summary_op(req, summary, is_new_version, record, by.name(), &now)?;
            let mut repo_add = vec![("generation".to_string(), 1)];
            if new_package {
                repo_add.push(("packageCount".to_string(), 1));
            }
            if is_new_version {
                repo_add.push(("versionCount".to_string(), 1));
            }
            let mut version_item = to_item(&vkey, &version)?;
            index_version(&mut version_item, p, r, k, &version.name);
            index_upload(&mut version_item, p, r, k, &version.name, &version.created_date);
            // A version released with listings goes into them in the same transaction,
            // under the repository's uid (the condition makes sure it is that one).
            let listed = match (&version.listing, &version.released_date) {
                (Some(l), Some(at)) if existing.is_none() => {
                    let uid = self.get_repository(p, r).await?.uid;
                    Some((listing_ops(&uid, &version, l, at, 1)?, uid))
                }
                _ => None,
            };
            let repo_cond = match &listed {
                Some((_, uid)) => Cond::All(vec![open_repo(), Cond::Eq("uid".into(), Value::from(uid.clone()))]),
                None => open_repo(),
            };
            let mut ops = vec![
                TxOp::Put { item: version_item, cond: version_cond },
                summary_op,
                TxOp::Update { key: repo_key(p, r), set: changed_at(&now), add: repo_add, cond: repo_cond },
                Registry::guard_op(&req.blob.key, &req.blob.hold),
                path_op(req, existing.as_ref()),
            ];
            // The caller's conditions come next, at known places.
            let required = ops.len()..ops.len() + req.requires.len();
            ops.extend(req.requires.iter().cloned());
            if let Some(old) = existing.as_ref().filter(|o| o.content_path != req.content_path) {
                ops.push(TxOp::Delete { key: path_key(p, r, &old.content_path), cond: Cond::None });
            }
            if let Some(n) = existing.as_ref().and_then(|o| o.number).filter(|n| Some(*n) != req.number) {
                ops.push(TxOp::Delete { key: number_key(p, r, n), cond: Cond::None });
            }
            if let Some(n) = req.number {
                let mut item = number_key(p, r, n).item();
                item.insert("owner".into(), format!("{k}\n{}", req.version).into());
                ops.push(TxOp::Put { item, cond: Cond::None });
            }
            ops.extend(history_op);
            if let Some((listing, _)) = listed {
                ops.extend(listing);
            }
            ops.push(change_op(p, r, k));
            let gone = Registry::gone_op(&req.blob.key, &req.blob.hold).map(|op| {
                ops.push(op);
                ops.len() - 1
            });
            match self.table.transact(ops).await {
                Ok(()) => return Ok((version, is_new_version)),
                Err(e) if gone.is_some_and(|i| e.failed_op(i)) => {
                    self.restore_collected(&req.blob.key, &req.blob.hold).await?
                }
                Err(e) if required.clone().any(|i| e.failed_op(i)) => {
                    return Err(Error::Unauthenticated(
                        "the uploader's account changed or went while the upload ran: sign in again".into(),
                    ))
                }
                Err(e) if e.failed_op(3) => self.wait_for_collector(&req.blob.key, &req.blob.hold).await?,
                // The version itself was taken first: that is the truer answer than its path.
                Err(e) if e.failed_op(0) && is_new_version && !req.overwrite => match names.next() {
                    Some(n) => {
                        current.to_mut().version = n.clone();
                        continue;
                    }
                    None => return Err(exists(req)),
                },
                // The path held by another version. When the version's own condition failed
                // too, the path is that version's, which changed meanwhile (created or
                // deleted by a racing writer): read again, below.
                Err(e) if e.failed_op(4) && !e.failed_op(0) => {
                    let file = req.content_path.trim_start_matches('/');
                    let message = format!("{file} already exists: another version holds this path");
                    return Err(Error::exists_as(Kind::File, file, message));
                }
                Err(e) if e.failed_op(2) => return Err(self.closed_repository(p, r).await),
                // Another writer changed the version or the summary first: read again.
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        conflict_retry()
    }

    /// Deletes a version. The package goes with its last version; otherwise `versions`
    /// drops by one and `latest` is recomputed. A `@release` version needs `by`'s MANAGE.
    pub async fn delete_version(
        &self,
        by: &Actor,
        project: &str,
        repo: &str,
        key: &str,
        version: &str,
    ) -> Result<PackageVersion> {
        let vkey = version_key(project, repo, key, version);
        for _ in 0..MAX_ATTEMPTS {
            let old = self.get_version(project, repo, key, version).await?;
            if old.is_released() && !by.may(Action::Manage) {
                return Err(released_needs_manage(&old.name, key));
            }
            // A catalog package (one with listings) goes by its uploader or a manager: no
            // one swaps another's package before it is published.
            if old.listing.is_some() && !by.may(Action::Manage) && old.created_by != by.name() {
                return Err(Error::Forbidden(format!(
                    "version [{version}] of package [{}] is [{}]'s catalog package: deleting it needs MANAGE",
                    printable(key),
                    old.created_by
                )));
            }
            let (summary, pending) = match self.find_package_counted(project, repo, key).await? {
                Some(found) => found,
                None => return Err(Error::not_found(Kind::Package, key)),
            };
            let version_op =
                TxOp::Delete { key: vkey.clone(), cond: Cond::Eq("revision".into(), Value::from(old.revision)) };
            let summary_cond = Cond::Eq("revision".into(), Value::from(summary.revision));
            let mut repo_add = vec![("generation".to_string(), 1), ("versionCount".to_string(), -1)];
            let summary_op = if summary.versions <= 1 {
                repo_add.push(("packageCount".to_string(), -1));
                TxOp::Delete { key: package_key(project, repo, key), cond: summary_cond }
            } else {
                let mut set = Item::new();
                if summary.latest == version {
                    let remaining = self.list_versions(project, repo, key).await?;
                    set.insert("latest".into(), latest_without(&remaining, version).into());
                }
                set.insert("lastModifiedDate".into(), now_iso().into());
                // Its downloads not rolled up yet go with it: a version uploaded again
                // under its name starts from none.
                for attr in pending.attrs_of(version) {
                    set.insert(attr, Value::Null);
                }
                TxOp::Update {
                    key: package_key(project, repo, key),
                    set,
                    add: vec![("versions".to_string(), -1), ("revision".to_string(), 1)],
                    cond: summary_cond,
                }
            };
            // A released version leaves its listings with it.
            let (listed, repo_cond) = match (&old.listing, old.is_released()) {
                (Some(l), true) => {
                    let uid = self.get_repository(project, repo).await?.uid;
                    let at = old.released_date.clone().unwrap_or_else(|| old.created_date.clone());
                    let cond = Cond::All(vec![Cond::Exists, Cond::Eq("uid".into(), Value::from(uid.clone()))]);
                    (listing_ops(&uid, &old, l, &at, -1)?, cond)
                }
                _ => (vec![], Cond::Exists),
            };
            let mut ops = vec![
                version_op,
                summary_op,
                TxOp::Update { key: repo_key(project, repo), set: changed_at(&now_iso()), add: repo_add, cond: repo_cond },
                TxOp::Delete { key: path_key(project, repo, &old.content_path), cond: Cond::None },
            ];
            ops.extend(listed);
            if let Some(n) = old.number {
                ops.push(TxOp::Delete { key: number_key(project, repo, n), cond: Cond::None });
            }
            // The package goes, and its history with it: in the same transaction when the
            // item lists it all and it is short, else after (a package uploaded again
            // under its key starts another history, under another history id).
            let gone = summary.versions <= 1;
            let history_in_tx = !summary.history_spilled() && summary.history_version.len() <= 64;
            if gone && history_in_tx {
                for v in &summary.history_version {
                    let key = history_key(project, repo, key, &summary.history_id, v);
                    ops.push(TxOp::Delete { key, cond: Cond::None });
                }
            }
            ops.push(change_op(project, repo, key));
            match self.table.transact(ops).await {
                Ok(()) => {
                    // Its day counters go with it (on AWS they expire anyway, by TTL).
                    if summary.downloads > 0 {
                        if let Err(e) = self.drop_download_days(project, repo, key, (!gone).then_some(version)).await {
                            tracing::warn!(error = %e, package = key, "removing a deleted version's day counters failed");
                        }
                    }
                    if gone && !history_in_tx {
                        let q = Query::prefix(package_partition(project, repo, key), history_prefix(&summary.history_id));
                        if let Err(e) = delete_all(&*self.table, q).await {
                            tracing::warn!(error = %e, package = key, "removing a deleted package's history failed");
                        }
                    }
                    return Ok(old);
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        conflict_retry()
    }

    /// Deletes every version of a package, then the package. Returns how many versions
    /// went. A `@release` version among them needs `by`'s MANAGE.
    pub async fn delete_package(&self, by: &Actor, project: &str, repo: &str, key: &str) -> Result<usize> {
        self.get_package(project, repo, key).await?;
        let versions = self.list_versions(project, repo, key).await?;
        if !by.may(Action::Manage) {
            if let Some(v) = versions.iter().find(|v| v.is_released()) {
                return Err(released_needs_manage(&v.name, key));
            }
        }
        let mut n = 0;
        for v in versions {
            match self.delete_version(by, project, repo, key, &v.name).await {
                Ok(_) => n += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// Moves a version to a later stage: to `tag`, or to the next stage when `tag` is
    /// `None`. Stages only move forward (none → `@prerelease` → `@release`); the version
    /// keeps every tag it passed.
    pub async fn upgrade_stage(
        &self,
        project: &str,
        repo: &str,
        key: &str,
        version: &str,
        tag: Option<&str>,
        by: &Actor,
    ) -> Result<PackageVersion> {
        use crate::model::{parse_stage, STAGES};
        let target = tag.filter(|t| !t.trim().is_empty()).map(parse_stage).transpose()?;
        for _ in 0..MAX_ATTEMPTS {
            let mut v = self.get_version(project, repo, key, version).await?;
            // In a catalog (a version with listings), stages are approval and publishing:
            // only a manager moves them, as only a manager sets them at upload.
            if v.listing.is_some() && !by.may(Action::Manage) {
                return Err(Error::Forbidden(format!(
                    "version [{version}] of package [{key}] is a catalog package: approving or publishing it needs MANAGE"
                )));
            }
            let current = v.stage();
            let next = match target {
                Some(t) => STAGES.iter().position(|s| *s == t).expect("a known stage") + 1,
                None if current >= STAGES.len() => {
                    return Err(Error::Invalid(format!("version [{version}] of package [{key}] is already @release")))
                }
                None => current + 1,
            };
            if next <= current {
                return Err(Error::Invalid(format!(
                    "stages only move forward: version [{version}] of package [{key}] is already {}",
                    STAGES[current - 1]
                )));
            }
            // Only the stage reached is appended: straight to `@release` adds only that tag,
            // as bkrepo's StageServiceImpl does.
            let was_released = v.is_released();
            let old_revision = v.revision;
            let now = now_iso();
            v.stage_tag.push(STAGES[next - 1].to_string());
            v.revision += 1;
            v.last_modified_by = by.name().to_string();
            v.last_modified_date = now.clone();
            let mut set = Item::new();
            set.insert("stageTag".into(), serde_json::to_value(&v.stage_tag).map_err(Error::internal)?);
            set.insert("lastModifiedBy".into(), by.name().into());
            set.insert("lastModifiedDate".into(), now.clone().into());
            // Released now: into its listings, in the same transaction.
            let mut listed = vec![];
            let mut repo_cond = open_repo();
            if let (Some(l), false, true) = (v.listing.clone(), was_released, v.is_released()) {
                let uid = self.get_repository(project, repo).await?.uid;
                v.released_date = Some(now.clone());
                set.insert("releasedDate".into(), now.clone().into());
                listed = listing_ops(&uid, &v, &l, &now, 1)?;
                repo_cond = Cond::All(vec![open_repo(), Cond::Eq("uid".into(), Value::from(uid))]);
            }
            let mut ops = vec![
                TxOp::Update {
                    key: version_key(project, repo, key, version),
                    set,
                    add: vec![("revision".into(), 1)],
                    cond: Cond::Eq("revision".into(), Value::from(old_revision)),
                },
                TxOp::Update {
                    key: repo_key(project, repo),
                    set: changed_at(&now),
                    add: vec![("generation".into(), 1)],
                    cond: repo_cond,
                },
            ];
            ops.extend(listed);
            ops.push(change_op(project, repo, key));
            match self.table.transact(ops).await {
                Ok(()) => return Ok(v),
                Err(e) if e.failed_op(1) => return Err(self.closed_repository(project, repo).await),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        conflict_retry()
    }
}

/// What every write sets on its repository besides its generation: the time of the
/// write, which renderings that name a time take (`registry::derived`).
fn changed_at(now: &str) -> Item {
    let mut set = Item::new();
    set.insert(super::derived::CHANGED_AT_ATTR.into(), now.into());
    set
}

/// The record of a write to a package, in the write's transaction (every write that
/// bumps the repository's generation leaves one): renderings built from parts read the
/// package again (`registry::derived`).
fn change_op(project: &str, repo: &str, key: &str) -> TxOp {
    TxOp::Put { item: change_key(project, repo, key).item(), cond: Cond::None }
}

/// The condition every commit puts on its repository: it exists and no forced delete is
/// removing its contents.
fn open_repo() -> Cond {
    Cond::Lacks(DELETING_ATTR.into())
}

impl Registry {
    /// Why a commit's condition on its repository failed: it is gone, or being deleted.
    async fn closed_repository(&self, project: &str, repo: &str) -> Error {
        match self.table.get(&repo_key(project, repo)).await {
            Ok(Some(_)) => Error::conflict(format!("repository [{project}/{repo}] is being deleted")),
            Ok(None) => Error::not_found(Kind::Repository, format!("{project}/{repo}")),
            Err(e) => e,
        }
    }
}

fn released_needs_manage(version: &str, key: &str) -> Error {
    Error::Forbidden(format!(
        "version [{version}] of package [{}] is a @release version: deleting it needs MANAGE",
        printable(key)
    ))
}

/// The package's `latest` once `gone` is deleted: the highest semantic version, or the
/// newest upload when the versions are not all semantic.
fn latest_without(versions: &[PackageVersion], gone: &str) -> String {
    let all_semver = versions.iter().all(|v| crate::model::is_semver(&v.name));
    versions
        .iter()
        .filter(|v| v.name != gone)
        .max_by(
            |a, b| if all_semver { compare_versions(&a.name, &b.name) } else { a.created_date.cmp(&b.created_date) },
        )
        .map(|v| v.name.clone())
        .unwrap_or_default()
}

/// The version item a commit writes: new, or replacing `existing` (whose counters,
/// stages and creation it keeps).
fn version_record(req: &NewVersion, existing: Option<&PackageVersion>, by: &str, now: &str) -> PackageVersion {
    PackageVersion {
        project_id: req.project_id.clone(),
        repo_name: req.repo_name.clone(),
        package_key: req.package_key.clone(),
        name: req.version.clone(),
        size: req.blob.digests.size,
        downloads: existing.map_or(0, |o| o.downloads),
        stage_tag: existing
            .map(|o| o.stage_tag.clone())
            .unwrap_or_else(|| req.stages.iter().map(|s| s.to_string()).collect()),
        metadata: req.metadata.clone(),
        package_metadata: req.package_metadata.clone(),
        created_by: existing.map_or_else(|| by.to_string(), |o| o.created_by.clone()),
        created_date: existing.map_or_else(|| now.to_string(), |o| o.created_date.clone()),
        last_modified_by: by.to_string(),
        last_modified_date: now.to_string(),
        content_path: req.content_path.clone(),
        sha256: req.blob.digests.sha256.clone(),
        sha1: req.blob.digests.sha1.clone(),
        md5: req.blob.digests.md5.clone(),
        blob_key: req.blob.key.clone(),
        revision: existing.map_or(0, |o| o.revision + 1),
        blobs: {
            let mut keys: Vec<String> = req.files.iter().map(|f| f.key.clone()).collect();
            keys.sort();
            keys.dedup();
            keys
        },
        number: req.number,
        listing: req.listing.clone().filter(|l| !l.is_empty()),
        released_date: match existing {
            Some(o) => o.released_date.clone(),
            None => req.stages.contains(&crate::model::STAGE_RELEASE).then(|| now.to_string()),
        },
    }
}

/// The write of the package summary in a commit: a new summary, or an update of the one
/// read, conditioned on its `revision`.
///
/// With `record_history: Some(inline)`, the version goes into the history too: inline
/// while the item lists fewer than `inline` versions (`model::INLINE_HISTORY`), else in a
/// history item of its own (the second operation), numbered in upload order. (Packages
/// from before this have a history item for their inline versions too: readers skip
/// those, `Registry::package_history`.) An upload that only adds to the inline list so
/// writes one item less, which on embedded storage is one page less of the commit.
fn summary_op(
    req: &NewVersion,
    summary: Option<PackageSummary>,
    is_new_version: bool,
    record_history: Option<usize>,
    by: &str,
    now: &str,
) -> Result<(TxOp, Option<TxOp>)> {
    let (p, r, k) = (req.project_id.as_str(), req.repo_name.as_str(), req.package_key.as_str());
    let history_op = |id: &str, seq: usize| {
        let mut item = history_key(p, r, k, id, &req.version).item();
        item.insert("version".into(), req.version.clone().into());
        item.insert("seq".into(), (seq as i64).into());
        TxOp::Put { item, cond: Cond::NotExists }
    };
    let Some(s) = summary else {
        let s = PackageSummary {
            project_id: p.to_string(),
            repo_name: r.to_string(),
            name: req.package_name.clone(),
            key: k.to_string(),
            package_type: req.package_type.as_str().to_string(),
            latest: req.version.clone(),
            downloads: 0,
            versions: 1,
            description: req.description.clone(),
            created_by: by.to_string(),
            created_date: now.to_string(),
            last_modified_by: by.to_string(),
            last_modified_date: now.to_string(),
            extension: req.extension.clone(),
            history_version: vec![req.version.clone()],
            revision: 0,
            history_count: 1,
            history_id: uuid::Uuid::new_v4().simple().to_string(),
        };
        let mut item = to_item(&package_key(p, r, k), &s)?;
        index_package(&mut item, p, r, &s.name, k);
        return Ok((TxOp::Put { item, cond: Cond::NotExists }, None));
    };
    let latest = if !is_new_version {
        s.latest.clone()
    } else if !crate::model::is_semver(&req.version) || !crate::model::is_semver(&s.latest) {
        // Not semver: the newest upload is the latest.
        req.version.clone()
    } else if compare_versions(&req.version, &s.latest).is_gt() {
        req.version.clone()
    } else {
        s.latest.clone()
    };
    let mut set = Item::new();
    let mut history = None;
    if let Some(inline_max) = record_history {
        let seq = s.history_len();
        if s.history_version.len() < inline_max && !s.history_spilled() {
            let mut inline = s.history_version.clone();
            inline.push(req.version.clone());
            set.insert("historyVersion".into(), serde_json::to_value(inline).map_err(Error::internal)?);
        } else {
            history = Some(history_op(&s.history_id, seq));
        }
        // Set, not added: a package from before the count has none stored.
        set.insert("historyCount".into(), ((seq + 1) as i64).into());
    }
    set.insert("latest".into(), latest.into());
    set.insert("name".into(), req.package_name.clone().into());
    set.insert(NAMES_INDEX_SK_ATTR.into(), names_index_sk(&req.package_name, k).into());
    set.insert("description".into(), req.description.clone().into());
    set.insert("extension".into(), Value::Object(req.extension.clone()));
    set.insert("lastModifiedBy".into(), by.into());
    set.insert("lastModifiedDate".into(), now.into());
    let mut add = vec![("revision".to_string(), 1)];
    if is_new_version {
        add.push(("versions".to_string(), 1));
    }
    let cond = Cond::Eq("revision".into(), Value::from(s.revision));
    Ok((TxOp::Update { key: package_key(p, r, k), set, add, cond }, history))
}
