//! Packages and versions: create, read, list, delete, count downloads.
//!
//! A version and its package summary change together in one transaction, with the
//! repository's generation bumped in the same transaction, so that anything derived from
//! the repository (an `index.yaml`) can be cached under the generation and never be
//! stale. Writers read the package summary, compute the new one, and write it on the
//! condition that its `revision` has not moved; on a lost race they read again.
use serde_json::{Map, Value};

use super::{from_item, to_item, Hold, Registry};
use crate::model::{
    compare_versions, download_day_key, now_iso, package_key, package_partition, printable, repo_key, repo_partition,
    validate_name, validate_package_key, validate_version, MetadataEntry, PackageSummary, PackageVersion, RepoType,
    Repository, PKG_SK_PREFIX, VER_SK_PREFIX,
};
use crate::store::{content_key, query_all, ByteStream, Cond, Digests, Item, Key, Query, SkCond, TxOp, SK};
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
    /// Replace an existing version instead of refusing with `Exists`.
    pub overwrite: bool,
    /// The caller holds MANAGE: it may overwrite a `@release` version.
    pub may_change_released: bool,
}

/// Where a repository's remembered page starts live.
pub(crate) fn pages_partition(project: &str, repo: &str) -> String {
    format!("PAGES#{project}/{repo}")
}

/// Index GSI1 lists a repository's packages by lower-case name, then key.
fn names_index_pk(project: &str, repo: &str) -> String {
    format!("NAMES#{project}/{repo}")
}

fn names_index_sk(name: &str, key: &str) -> String {
    format!("{}#{key}", name.to_lowercase())
}

/// Index GSI2 lists a package's versions in version order.
fn versions_index_pk(project: &str, repo: &str, key: &str) -> String {
    format!("VERS#{project}/{repo}/{key}")
}

/// The largest page a listing serves.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// About how many items one read of a jump to a far page takes.
const WALK_ITEMS: u32 = 1000;

/// A page request: `number` from 1.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub number: u32,
    pub size: u32,
}

impl PageRequest {
    /// bkrepo's rules: pages start at 1, size 20 by default; zero or less means the
    /// default; a size over [`MAX_PAGE_SIZE`] is refused.
    pub fn from_query(number: Option<i64>, size: Option<i64>) -> Result<Self> {
        let number = number.filter(|n| *n > 0).unwrap_or(1);
        let size = size.filter(|n| *n > 0).unwrap_or(20);
        if size > MAX_PAGE_SIZE as i64 {
            return Err(Error::Invalid(format!("pageSize {size} is over the maximum of {MAX_PAGE_SIZE}")));
        }
        if number > 1_000_000 {
            return Err(Error::Invalid(format!("pageNumber {number} is out of range")));
        }
        Ok(PageRequest { number: number as u32, size: size as u32 })
    }
}

/// One page of a listing, with the total the counters give.
#[derive(Debug, Clone)]
pub struct PageOf<T> {
    pub request: PageRequest,
    pub total: i64,
    pub items: Vec<T>,
}

/// Reads up to `n` items of a query from `start`; returns them and the token after them.
async fn take(
    table: &dyn crate::store::Table,
    query: &Query,
    start: Option<String>,
    n: u32,
) -> Result<(Vec<Item>, Option<String>)> {
    let mut items = Vec::new();
    let mut token = start;
    loop {
        let page = table.query(&query.clone().start(token).limit(n - items.len() as u32)).await?;
        items.extend(page.items);
        token = page.next;
        if items.len() as u32 >= n || token.is_none() {
            return Ok((items, token));
        }
    }
}

impl NewVersion {
    /// A version of `key` in `project/repo` with no description, metadata or extension,
    /// stored at `/{version}`, refused if it exists. Set the other fields as needed.
    pub fn new(project: &str, repo: &str, key: &str, name: &str, ty: RepoType, version: &str, blob: BlobRef) -> Self {
        NewVersion {
            project_id: project.into(),
            repo_name: repo.into(),
            package_key: key.into(),
            package_name: name.into(),
            package_type: ty,
            version: version.into(),
            description: String::new(),
            content_path: format!("/{version}"),
            blob,
            metadata: Map::new(),
            package_metadata: vec![],
            extension: Map::new(),
            overwrite: false,
            may_change_released: false,
        }
    }
}

fn conflict_retry<T>() -> Result<T> {
    Err(Error::Internal("gave up after too many concurrent writers on one package".into()))
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

    /// The repository, checked to be of `ty`: another type is `Invalid`.
    pub async fn repository_of_type(&self, project: &str, repo: &str, ty: RepoType) -> Result<Repository> {
        let r = self.get_repository(project, repo).await?;
        if r.repo_type != ty {
            return Err(Error::Invalid(format!(
                "repository [{project}/{repo}] is a {} repository, not {}",
                r.repo_type.as_str(),
                ty.as_str()
            )));
        }
        Ok(r)
    }

    pub async fn get_package(&self, project: &str, repo: &str, key: &str) -> Result<PackageSummary> {
        validate_package_key(key)?;
        match self.table.get(&package_key(project, repo, key)).await? {
            Some(item) => from_item(item),
            None => Err(Error::NotFound(format!("package [{}] not found", printable(key)))),
        }
    }

    pub async fn get_version(&self, project: &str, repo: &str, key: &str, version: &str) -> Result<PackageVersion> {
        validate_package_key(key)?;
        validate_version(version)?;
        match self.table.get(&crate::model::version_key(project, repo, key, version)).await? {
            Some(item) => from_item(item),
            None => Err(Error::NotFound(format!("version [{version}] of package [{}] not found", printable(key)))),
        }
    }

    /// Every package of a repository, by key.
    pub async fn list_packages(&self, project: &str, repo: &str) -> Result<Vec<PackageSummary>> {
        let items = query_all(&*self.table, Query::prefix(repo_partition(project, repo), PKG_SK_PREFIX)).await?;
        items.into_iter().map(from_item).collect()
    }

    /// Every version of a package, newest first by version order.
    pub async fn list_versions(&self, project: &str, repo: &str, key: &str) -> Result<Vec<PackageVersion>> {
        let items =
            query_all(&*self.table, Query::prefix(package_partition(project, repo, key), VER_SK_PREFIX)).await?;
        let mut versions: Vec<PackageVersion> = items.into_iter().map(from_item).collect::<Result<_>>()?;
        versions.sort_by(|a, b| compare_versions(&b.name, &a.name));
        Ok(versions)
    }

    /// Creates a version (or, with `overwrite`, replaces one) and updates its package
    /// summary and the repository's counters in one transaction. Returns the version and
    /// whether it is new.
    /// A spare the blob came with is settled (or dropped, when this fails).
    pub async fn create_version(&self, req: NewVersion, by: &str) -> Result<(PackageVersion, bool)> {
        match self.commit_version(&req, by).await {
            Ok(done) => {
                self.settle(&req.blob.key, &req.blob.hold).await;
                Ok(done)
            }
            Err(e) => {
                self.release(&req.blob.hold).await;
                Err(e)
            }
        }
    }

    async fn commit_version(&self, req: &NewVersion, by: &str) -> Result<(PackageVersion, bool)> {
        validate_name("project name", &req.project_id)?;
        validate_name("repository name", &req.repo_name)?;
        validate_package_key(&req.package_key)?;
        validate_version(&req.version)?;
        let (p, r, k) = (req.project_id.as_str(), req.repo_name.as_str(), req.package_key.as_str());
        let vkey = crate::model::version_key(p, r, k, &req.version);
        for _ in 0..MAX_ATTEMPTS {
            let now = now_iso();
            let existing: Option<PackageVersion> = self.table.get(&vkey).await?.map(from_item).transpose()?;
            if let Some(old) = &existing {
                if !req.overwrite {
                    return Err(Error::Exists(format!("version [{}] of package [{k}] already exists", req.version)));
                }
                if old.is_released() && !req.may_change_released {
                    return Err(Error::Forbidden(format!(
                        "version [{}] of package [{k}] is a @release version: overwriting it needs MANAGE",
                        req.version
                    )));
                }
            }
            let summary: Option<PackageSummary> =
                self.table.get(&package_key(p, r, k)).await?.map(from_item).transpose()?;
            let version = PackageVersion {
                project_id: p.to_string(),
                repo_name: r.to_string(),
                package_key: k.to_string(),
                name: req.version.clone(),
                size: req.blob.digests.size,
                downloads: existing.as_ref().map_or(0, |o| o.downloads),
                stage_tag: existing.as_ref().map(|o| o.stage_tag.clone()).unwrap_or_default(),
                metadata: req.metadata.clone(),
                package_metadata: req.package_metadata.clone(),
                created_by: existing.as_ref().map_or_else(|| by.to_string(), |o| o.created_by.clone()),
                created_date: existing.as_ref().map_or_else(|| now.clone(), |o| o.created_date.clone()),
                last_modified_by: by.to_string(),
                last_modified_date: now.clone(),
                content_path: req.content_path.clone(),
                sha256: req.blob.digests.sha256.clone(),
                sha1: req.blob.digests.sha1.clone(),
                md5: req.blob.digests.md5.clone(),
                blob_key: req.blob.key.clone(),
                revision: existing.as_ref().map_or(0, |o| o.revision + 1),
            };
            let version_cond = match &existing {
                None => Cond::NotExists,
                Some(o) => Cond::Eq("revision".into(), Value::from(o.revision)),
            };
            let is_new_version = existing.is_none();
            let (summary_op, new_package) = match summary {
                None => {
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
                        created_date: now.clone(),
                        last_modified_by: by.to_string(),
                        last_modified_date: now.clone(),
                        extension: req.extension.clone(),
                        history_version: vec![req.version.clone()],
                        revision: 0,
                    };
                    let mut item = to_item(&package_key(p, r, k), &s)?;
                    item.insert("GSI1PK".into(), names_index_pk(p, r).into());
                    item.insert("GSI1SK".into(), names_index_sk(&s.name, k).into());
                    (TxOp::Put { item, cond: Cond::NotExists }, true)
                }
                Some(s) => {
                    let mut set = Item::new();
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
                    set.insert("latest".into(), latest.into());
                    let mut history = s.history_version.clone();
                    if !history.contains(&req.version) {
                        history.push(req.version.clone());
                    }
                    set.insert("historyVersion".into(), serde_json::to_value(history).map_err(Error::internal)?);
                    set.insert("name".into(), req.package_name.clone().into());
                    set.insert("GSI1SK".into(), names_index_sk(&req.package_name, k).into());
                    set.insert("description".into(), req.description.clone().into());
                    set.insert("extension".into(), Value::Object(req.extension.clone()));
                    set.insert("lastModifiedBy".into(), by.into());
                    set.insert("lastModifiedDate".into(), now.clone().into());
                    let mut add = vec![("revision".to_string(), 1)];
                    if is_new_version {
                        add.push(("versions".to_string(), 1));
                    }
                    let op = TxOp::Update {
                        key: package_key(p, r, k),
                        set,
                        add,
                        cond: Cond::Eq("revision".into(), Value::from(s.revision)),
                    };
                    (op, false)
                }
            };
            let mut repo_add = vec![("generation".to_string(), 1)];
            if new_package {
                repo_add.push(("packageCount".to_string(), 1));
            }
            let mut version_item = to_item(&vkey, &version)?;
            version_item.insert("GSI2PK".into(), versions_index_pk(p, r, k).into());
            version_item.insert("GSI2SK".into(), crate::model::version_sort_key(&version.name).into());
            let ops = vec![
                TxOp::Put { item: version_item, cond: version_cond },
                summary_op,
                TxOp::Update { key: repo_key(p, r), set: Item::new(), add: repo_add, cond: Cond::Exists },
                Registry::guard_op(&req.blob.key, &req.blob.hold),
            ];
            match self.table.transact(ops).await {
                Ok(()) => return Ok((version, is_new_version)),
                Err(e) if e.failed_op(3) => self.wait_for_collector(&req.blob.key, &req.blob.hold).await?,
                Err(e) if e.failed_op(2) => return Err(Error::NotFound(format!("repository [{p}/{r}] not found"))),
                Err(e) if e.failed_op(0) && is_new_version && !req.overwrite => {
                    return Err(Error::Exists(format!("version [{}] of package [{k}] already exists", req.version)))
                }
                // Another writer changed the version or the summary first: read again.
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        conflict_retry()
    }

    /// Deletes a version. The package goes with its last version; otherwise `versions`
    /// drops by one and `latest` is recomputed. A `@release` version needs
    /// `may_change_released` (MANAGE).
    pub async fn delete_version(
        &self,
        project: &str,
        repo: &str,
        key: &str,
        version: &str,
        may_change_released: bool,
    ) -> Result<PackageVersion> {
        let vkey = crate::model::version_key(project, repo, key, version);
        for _ in 0..MAX_ATTEMPTS {
            let old = self.get_version(project, repo, key, version).await?;
            if old.is_released() && !may_change_released {
                return Err(Error::Forbidden(format!(
                    "version [{version}] of package [{key}] is a @release version: deleting it needs MANAGE"
                )));
            }
            let summary = self.get_package(project, repo, key).await?;
            let version_op =
                TxOp::Delete { key: vkey.clone(), cond: Cond::Eq("revision".into(), Value::from(old.revision)) };
            let summary_cond = Cond::Eq("revision".into(), Value::from(summary.revision));
            let mut repo_add = vec![("generation".to_string(), 1)];
            let summary_op = if summary.versions <= 1 {
                repo_add.push(("packageCount".to_string(), -1));
                TxOp::Delete { key: package_key(project, repo, key), cond: summary_cond }
            } else {
                let mut set = Item::new();
                if summary.latest == version {
                    let remaining = self.list_versions(project, repo, key).await?;
                    let next = remaining
                        .iter()
                        .filter(|v| v.name != version)
                        .max_by(|a, b| {
                            if remaining.iter().all(|v| crate::model::is_semver(&v.name)) {
                                compare_versions(&a.name, &b.name)
                            } else {
                                a.created_date.cmp(&b.created_date)
                            }
                        })
                        .map(|v| v.name.clone())
                        .unwrap_or_default();
                    set.insert("latest".into(), next.into());
                }
                set.insert("lastModifiedDate".into(), now_iso().into());
                TxOp::Update {
                    key: package_key(project, repo, key),
                    set,
                    add: vec![("versions".to_string(), -1), ("revision".to_string(), 1)],
                    cond: summary_cond,
                }
            };
            let ops = vec![
                version_op,
                summary_op,
                TxOp::Update { key: repo_key(project, repo), set: Item::new(), add: repo_add, cond: Cond::Exists },
            ];
            match self.table.transact(ops).await {
                Ok(()) => return Ok(old),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        conflict_retry()
    }

    /// Deletes every version of a package, then the package. Returns how many versions
    /// went.
    pub async fn delete_package(
        &self,
        project: &str,
        repo: &str,
        key: &str,
        may_change_released: bool,
    ) -> Result<usize> {
        self.get_package(project, repo, key).await?;
        let versions = self.list_versions(project, repo, key).await?;
        if !may_change_released {
            if let Some(v) = versions.iter().find(|v| v.is_released()) {
                return Err(Error::Forbidden(format!(
                    "version [{}] of package [{key}] is a @release version: deleting it needs MANAGE",
                    v.name
                )));
            }
        }
        let mut n = 0;
        for v in versions {
            match self.delete_version(project, repo, key, &v.name, may_change_released).await {
                Ok(_) => n += 1,
                Err(Error::NotFound(_)) => {}
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
        by: &str,
    ) -> Result<PackageVersion> {
        use crate::model::{parse_stage, STAGES};
        let target = tag.filter(|t| !t.trim().is_empty()).map(parse_stage).transpose()?;
        for _ in 0..MAX_ATTEMPTS {
            let mut v = self.get_version(project, repo, key, version).await?;
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
            for s in &STAGES[current..next] {
                v.stage_tag.push(s.to_string());
            }
            let now = now_iso();
            let mut set = Item::new();
            set.insert("stageTag".into(), serde_json::to_value(&v.stage_tag).map_err(Error::internal)?);
            set.insert("lastModifiedBy".into(), by.into());
            set.insert("lastModifiedDate".into(), now.clone().into());
            let ops = vec![
                TxOp::Update {
                    key: crate::model::version_key(project, repo, key, version),
                    set,
                    add: vec![("revision".into(), 1)],
                    cond: Cond::Eq("revision".into(), Value::from(v.revision)),
                },
                TxOp::Update {
                    key: repo_key(project, repo),
                    set: Item::new(),
                    add: vec![("generation".into(), 1)],
                    cond: Cond::Exists,
                },
            ];
            match self.table.transact(ops).await {
                Ok(()) => {
                    v.revision += 1;
                    v.last_modified_by = by.to_string();
                    v.last_modified_date = now;
                    return Ok(v);
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        conflict_retry()
    }

    /// Reads page `req` of `query`. Where each page starts is remembered in the table
    /// under the repository's state (`Repository::state_tag`: its generation and uid), so
    /// a client that walks the pages in order reads about one page of items per page. A
    /// jump to a page not yet reached in this state walks there from the nearest page
    /// start remembered below it, in reads of about [`WALK_ITEMS`] items (not one read
    /// per page), remembering where each read ends.
    async fn paged(
        &self,
        partition: String,
        kind: &str,
        state: &str,
        query: Query,
        req: PageRequest,
    ) -> Result<Vec<Item>> {
        // Page numbers are zero-padded so that the remembered starts sort by page.
        let prefix = format!("{kind}#{state}#{}#", req.size);
        let boundary = |n: u32| Key::new(partition.clone(), format!("{prefix}{n:07}"));
        let remember = |n: u32, token: String| {
            let mut item = boundary(n).item();
            item.insert("start".into(), token.into());
            item.insert(
                crate::store::TTL_ATTR.into(),
                (time::OffsetDateTime::now_utc().unix_timestamp() + 86_400).into(),
            );
            item
        };
        let mut start = None;
        if req.number > 1 {
            // The page's own remembered start (the usual case: pages walked in order),
            // else the nearest one below it, else page 1.
            let start_of = |item: Item| {
                let n = item.get(SK).and_then(Value::as_str).and_then(|sk| sk.rsplit('#').next()?.parse::<u32>().ok());
                n.zip(item.get("start").and_then(Value::as_str).map(str::to_string))
            };
            let found = match self.table.get(&boundary(req.number)).await? {
                Some(item) => start_of(item),
                None => {
                    let nearest = Query {
                        sk: SkCond::Between(format!("{prefix}{:07}", 2), format!("{prefix}{:07}", req.number)),
                        ..Query::partition(partition.clone())
                    }
                    .backward()
                    .limit(1);
                    self.table.query(&nearest).await?.items.into_iter().next().and_then(start_of)
                }
            };
            let (mut at, mut token) = match found {
                Some((n, t)) => (n, Some(t)),
                None => (1, None),
            };
            while at < req.number {
                let pages = (WALK_ITEMS / req.size).clamp(1, req.number - at);
                let want = pages * req.size;
                let (got, next) = take(&*self.table, &query, token, want).await?;
                match next {
                    Some(t) if got.len() as u32 == want => {
                        at += pages;
                        self.table.put(remember(at, t.clone()), Cond::None).await?;
                        token = Some(t);
                    }
                    // The listing ends before the page.
                    _ => return Ok(vec![]),
                }
            }
            start = token;
        }
        let (items, next) = take(&*self.table, &query, start, req.size).await?;
        if let Some(t) = next {
            if items.len() as u32 == req.size {
                self.table.put(remember(req.number + 1, t), Cond::None).await?;
            }
        }
        Ok(items)
    }

    /// A page of a repository's packages, by name (case-insensitive), then key.
    /// `name_prefix` keeps names that start with it, ignoring case.
    pub async fn package_page(
        &self,
        project: &str,
        repo: &str,
        name_prefix: Option<&str>,
        req: PageRequest,
    ) -> Result<PageOf<PackageSummary>> {
        let r = self.get_repository(project, repo).await?;
        let prefix = name_prefix.map(str::to_lowercase).unwrap_or_default();
        let query = Query::prefix(names_index_pk(project, repo), prefix.clone()).index("GSI1");
        let total = if prefix.is_empty() {
            r.package_count
        } else {
            query_all(&*self.table, query.clone()).await?.len() as i64
        };
        let items =
            self.paged(pages_partition(project, repo), &format!("pkg:{prefix}"), &r.state_tag(), query, req).await?;
        Ok(PageOf { request: req, total, items: items.into_iter().map(from_item).collect::<Result<_>>()? })
    }

    /// A page of a package's versions in version order (newest first unless
    /// `ascending`), without filters: its cost follows the page size.
    pub async fn version_page(
        &self,
        project: &str,
        repo: &str,
        key: &str,
        ascending: bool,
        req: PageRequest,
    ) -> Result<PageOf<PackageVersion>> {
        let r = self.get_repository(project, repo).await?;
        let pkg = self.get_package(project, repo, key).await?;
        let mut query = Query::partition(versions_index_pk(project, repo, key)).index("GSI2");
        if !ascending {
            query = query.backward();
        }
        let dir = if ascending { "asc" } else { "desc" };
        let items =
            self.paged(pages_partition(project, repo), &format!("ver:{key}:{dir}"), &r.state_tag(), query, req).await?;
        Ok(PageOf {
            request: req,
            total: pkg.versions,
            items: items.into_iter().map(from_item).collect::<Result<_>>()?,
        })
    }

    /// Removes remembered page starts no read can use any more: those of an earlier state
    /// of their repository, or past their expiry. DynamoDB's TTL removes the latter on
    /// AWS; `depot serve` calls this periodically. Returns how many it removed.
    pub async fn expire_page_starts(&self) -> Result<usize> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut removed = 0;
        for project in self.list_projects().await? {
            for repo in self.list_repositories(&project.name).await? {
                let current = repo.state_tag();
                for item in
                    query_all(&*self.table, Query::partition(pages_partition(&project.name, &repo.name))).await?
                {
                    let key = Key::of(&item)?;
                    // `{kind}#{state}#{size}#{n}`: the kind may hold '#', the rest do not.
                    let state = key.sk.rsplit('#').nth(2);
                    let expired = item.get(crate::store::TTL_ATTR).and_then(Value::as_i64).is_some_and(|t| t <= now);
                    if expired || state != Some(current.as_str()) {
                        self.table.delete(&key, Cond::None).await?;
                        removed += 1;
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Counts one download: the version's, the package's and the day's counters move
    /// together.
    pub async fn record_download(&self, project: &str, repo: &str, key: &str, version: &str) -> Result<()> {
        let day = &now_iso()[..10];
        let day_key = download_day_key(project, repo, key, day, version);
        let mut day_set = Item::new();
        day_set.insert("day".into(), day.into());
        day_set.insert("version".into(), version.into());
        let ops = vec![
            TxOp::Update {
                key: crate::model::version_key(project, repo, key, version),
                set: Item::new(),
                add: vec![("downloads".into(), 1)],
                cond: Cond::Exists,
            },
            TxOp::Update {
                key: package_key(project, repo, key),
                set: Item::new(),
                add: vec![("downloads".into(), 1)],
                cond: Cond::Exists,
            },
            TxOp::Update { key: day_key, set: day_set, add: vec![("downloads".into(), 1)], cond: Cond::None },
        ];
        self.table
            .transact(ops)
            .await
            .map_err(|e| e.on_conflict(|| Error::NotFound(format!("version [{version}] of package [{key}] not found"))))
    }
}
