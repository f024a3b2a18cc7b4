//! Listings: every package or version of a repository, and pages of them whose cost
//! follows the page size.
use serde_json::Value;

use super::Registry;
use crate::model::{compare_versions, PackageSummary, PackageVersion, Repository};
use crate::store::schema::{
    from_item, history_prefix, names_index_pk, uploads_index_pk, package_partition, pages_partition, repo_partition, versions_index_pk,
    NAMES_INDEX,
    PKG_SK_PREFIX, UPLOADS_INDEX, VERSIONS_INDEX, VER_SK_PREFIX,
};
use crate::store::{query_all, Cond, Item, Key, Query, SkCond, SK};
use crate::{Error, Result};

/// The largest page a listing serves.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// About how many items one read of a jump to a far page takes.
const WALK_ITEMS: u32 = 1000;

/// Reads that hold a whole repository's or project's records in memory (searches,
/// filtered listings) run two at a time per process; one that waits 10 s for its turn is
/// a 503 with `Retry-After`.
pub async fn whole_read_slot() -> Result<tokio::sync::SemaphorePermit<'static>> {
    static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
    const WAIT: std::time::Duration = std::time::Duration::from_secs(10);
    match tokio::time::timeout(WAIT, SLOTS.acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(Error::unavailable("too many searches and filtered listings at once; retry in a moment", WAIT.as_secs())),
    }
}

/// A page request: `number` from 1.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub number: u32,
    pub size: u32,
}

/// A paging parameter as the client sent it: a whole number, or the text of one too
/// large for any (so that the 400 quotes it and states the range), from a query string,
/// a path or JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageParam {
    Number(i64),
    OutOfRange(String),
}

impl PageParam {
    fn checked(v: Option<PageParam>, name: &str, default: i64, max: i64) -> Result<i64> {
        let bad = |shown: &str| Error::Invalid(format!("{name} must be from 1 to {max}, not {shown}"));
        match v {
            None => Ok(default),
            Some(PageParam::Number(n)) if (1..=max).contains(&n) => Ok(n),
            Some(PageParam::Number(n)) => Err(bad(&n.to_string())),
            Some(PageParam::OutOfRange(text)) => Err(bad(&crate::model::printable(&text))),
        }
    }
}

impl<'de> serde::Deserialize<'de> for PageParam {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = PageParam;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<PageParam, E> {
                Ok(PageParam::Number(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<PageParam, E> {
                Ok(i64::try_from(v).map_or_else(|_| PageParam::OutOfRange(v.to_string()), PageParam::Number))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<PageParam, E> {
                let t = v.trim();
                let digits = t.strip_prefix('-').unwrap_or(t);
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Ok(t.parse().map_or_else(|_| PageParam::OutOfRange(t.to_string()), PageParam::Number));
                }
                Err(E::custom(format!("'{}' is not a whole number", crate::model::printable(v))))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl PageRequest {
    /// One rule on every route: pages start at 1, size 20 by default (when absent); a
    /// value outside the range is a 400 that states it (never a silent default).
    pub fn from_query(number: Option<PageParam>, size: Option<PageParam>) -> Result<Self> {
        const MAX_PAGE_NUMBER: i64 = 1_000_000;
        let size = PageParam::checked(size, "pageSize", 20, MAX_PAGE_SIZE as i64)?;
        let number = PageParam::checked(number, "pageNumber", 1, MAX_PAGE_NUMBER)?;
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

impl Registry {
    /// Every package of a repository, by key.
    pub async fn list_packages(&self, project: &str, repo: &str) -> Result<Vec<PackageSummary>> {
        let items = query_all(&*self.table, Query::prefix(repo_partition(project, repo), PKG_SK_PREFIX)).await?;
        items.into_iter().map(from_item).collect()
    }

    /// The packages of a repository whose key starts with `prefix` (such as
    /// `aps://{vendor}/`), by key: one Query for each 1 MB of them.
    pub async fn packages_with_key_prefix(&self, project: &str, repo: &str, prefix: &str) -> Result<Vec<PackageSummary>> {
        let q = Query::prefix(repo_partition(project, repo), format!("{PKG_SK_PREFIX}{prefix}"));
        query_all(&*self.table, q).await?.into_iter().map(from_item).collect()
    }

    /// The packages of a repository whose lower-case name starts with `prefix` (which
    /// must be lower-case), by that name, then key: through the name index, one Query
    /// for each 1 MB of them.
    pub async fn packages_with_name_prefix(&self, project: &str, repo: &str, prefix: &str) -> Result<Vec<PackageSummary>> {
        let q = Query::prefix(names_index_pk(project, repo), prefix.to_string()).index(NAMES_INDEX);
        query_all(&*self.table, q).await?.into_iter().map(from_item).collect()
    }

    /// A package's whole `historyVersion`, in upload order: what its item lists inline,
    /// then the versions kept in history items (one query, only for packages past
    /// [`crate::model::INLINE_HISTORY`] versions).
    pub async fn package_history(&self, s: &PackageSummary) -> Result<Vec<String>> {
        if !s.history_spilled() {
            return Ok(s.history_version.clone());
        }
        let q = Query::prefix(package_partition(&s.project_id, &s.repo_name, &s.key), history_prefix(&s.history_id));
        let mut spilled: Vec<(i64, String)> = query_all(&*self.table, q)
            .await?
            .into_iter()
            .filter_map(|i| Some((i.get("seq")?.as_i64()?, i.get("version")?.as_str()?.to_string())))
            .collect();
        spilled.sort();
        let inline: std::collections::HashSet<&str> = s.history_version.iter().map(String::as_str).collect();
        let mut out = s.history_version.clone();
        out.extend(spilled.into_iter().map(|(_, v)| v).filter(|v| !inline.contains(v.as_str())));
        Ok(out)
    }

    /// The package with its whole history in `history_version`.
    pub async fn with_history(&self, mut s: PackageSummary) -> Result<PackageSummary> {
        if s.history_spilled() {
            s.history_version = self.package_history(&s).await?;
        }
        Ok(s)
    }

    /// The versions of a package whose name starts with `prefix` (one Query of just
    /// those), newest first by version order.
    pub async fn versions_with_prefix(&self, project: &str, repo: &str, key: &str, prefix: &str) -> Result<Vec<PackageVersion>> {
        let q = Query::prefix(package_partition(project, repo, key), format!("{VER_SK_PREFIX}{prefix}"));
        let mut versions: Vec<PackageVersion> = query_all(&*self.table, q).await?.into_iter().map(from_item).collect::<Result<_>>()?;
        versions.sort_by(|a, b| compare_versions(&b.name, &a.name));
        Ok(versions)
    }

    /// Every version of a package, newest first by version order.
    pub async fn list_versions(&self, project: &str, repo: &str, key: &str) -> Result<Vec<PackageVersion>> {
        let items =
            query_all(&*self.table, Query::prefix(package_partition(project, repo, key), VER_SK_PREFIX)).await?;
        let mut versions: Vec<PackageVersion> = items.into_iter().map(from_item).collect::<Result<_>>()?;
        versions.sort_by(|a, b| compare_versions(&b.name, &a.name));
        Ok(versions)
    }

    /// Reads page `req` of `query`. Where each page starts is remembered in the table
    /// under the repository's state (`Repository::state_tag`: its generation and uid), so
    /// a client that walks the pages in order reads about one page of items per page. A
    /// jump to a page not yet reached in this state walks there from the nearest page
    /// start remembered below it, in reads of about [`WALK_ITEMS`] items (not one read
    /// per page), remembering where each read ends.
    pub(super) async fn paged(
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

    /// A page of a repository's packages, by name (case-insensitive), then key; `r` is
    /// the repository as the caller read it (its state keys the remembered page starts).
    /// `name_prefix` keeps names that start with it, ignoring case.
    pub async fn package_page(
        &self,
        r: &Repository,
        name_prefix: Option<&str>,
        req: PageRequest,
    ) -> Result<PageOf<PackageSummary>> {
        let (project, repo) = (r.project_id.as_str(), r.name.as_str());
        let prefix = name_prefix.map(str::to_lowercase).unwrap_or_default();
        let query = Query::prefix(names_index_pk(project, repo), prefix.clone()).index(NAMES_INDEX);
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
    /// `ascending`), without filters: its cost follows the page size. `r` and `pkg` are
    /// as the caller read them.
    pub async fn version_page(
        &self,
        r: &Repository,
        pkg: &PackageSummary,
        ascending: bool,
        req: PageRequest,
    ) -> Result<PageOf<PackageVersion>> {
        let (project, repo, key) = (r.project_id.as_str(), r.name.as_str(), pkg.key.as_str());
        let mut query = Query::partition(versions_index_pk(project, repo, key)).index(VERSIONS_INDEX);
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

    /// A page of a repository's versions in upload order (newest first unless
    /// `ascending`), across its packages: its cost follows the page size. The total is
    /// the repository's version count.
    pub async fn upload_page(&self, r: &Repository, ascending: bool, req: PageRequest) -> Result<PageOf<PackageVersion>> {
        let (project, repo) = (r.project_id.as_str(), r.name.as_str());
        let mut query = Query::partition(uploads_index_pk(project, repo)).index(UPLOADS_INDEX);
        if !ascending {
            query = query.backward();
        }
        let dir = if ascending { "asc" } else { "desc" };
        let items = self.paged(pages_partition(project, repo), &format!("up:{dir}"), &r.state_tag(), query, req).await?;
        Ok(PageOf {
            request: req,
            total: r.version_count.max(0),
            items: items.into_iter().map(from_item).collect::<Result<_>>()?,
        })
    }

    /// Every version of a repository in upload order, oldest first: for filters that
    /// no index serves (the cost follows the repository's size).
    pub async fn all_uploads(&self, project: &str, repo: &str) -> Result<Vec<PackageVersion>> {
        self.uploads_where(project, repo, |_| true).await
    }

    /// The versions of a repository that `keep` keeps, in upload order, oldest first,
    /// read a page at a time: only the kept ones are held. Callers that may keep many
    /// hold a [`whole_read_slot`] while they run.
    pub async fn uploads_where(
        &self,
        project: &str,
        repo: &str,
        keep: impl Fn(&PackageVersion) -> bool,
    ) -> Result<Vec<PackageVersion>> {
        let mut q = Query::partition(uploads_index_pk(project, repo)).index(UPLOADS_INDEX);
        let mut out = Vec::new();
        loop {
            let page = self.table.query(&q).await?;
            for item in page.items {
                let v: PackageVersion = from_item(item)?;
                if keep(&v) {
                    out.push(v);
                }
            }
            match page.next {
                Some(t) => q.start = Some(t),
                None => return Ok(out),
            }
        }
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
}
