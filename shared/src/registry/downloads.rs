//! Downloads: every surface's go through here, so that each one is counted and answered
//! the same way: a redirect to a presigned URL, or the bytes streamed through depot
//! (`DEPOT_DOWNLOAD_MODE`).
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;

use super::Registry;
use crate::config::DownloadMode;
use crate::model::{now_iso, PackageSummary, PackageVersion};
use crate::store::schema::{download_day_key, download_days_partition, from_item, package_key, version_key};
use crate::store::{query_all, BlobObject, ByteRange, Cond, Item, Key, Query, TxOp, TTL_ATTR};
use crate::{Error, Result};

/// How long a presigned download URL stays valid.
pub const DOWNLOAD_URL_TTL: Duration = Duration::from_secs(15 * 60);

/// How a download is answered.
pub enum Download {
    /// A presigned URL that names the file in its content-disposition. One that starts
    /// with `/` is relative to depot's own base URL (the embedded backend's signed routes).
    Redirect(String),
    /// The bytes (or the asked range of them), saved as `filename`.
    Stream { object: BlobObject, range: Option<ByteRange>, filename: String },
}

/// A download counted on its package's item and not yet rolled up into its version's
/// and its day's counters: the attribute `dl#{day}#{version}`, a count.
pub const PENDING_DOWNLOADS_PREFIX: &str = "dl#";

/// Pending counters on a package item that start a roll-up (also started by one from an
/// earlier day); a roll-up moves at most this many, so its transaction stays small.
pub const ROLL_UP_AT: usize = 32;

/// How long a day's download counter is kept (DynamoDB TTL), in days.
pub const DOWNLOAD_DAYS_KEPT: i64 = 400;

/// One pending counter of a package item.
#[derive(Debug, Clone, PartialEq)]
struct Pending {
    attr: String,
    day: String,
    version: String,
    count: i64,
}

fn pending_of(item: &Item) -> Vec<Pending> {
    item.iter()
        .filter_map(|(attr, v)| {
            let rest = attr.strip_prefix(PENDING_DOWNLOADS_PREFIX)?;
            let (day, version) = rest.split_once('#')?;
            Some(Pending { attr: attr.clone(), day: day.into(), version: version.into(), count: v.as_i64()? })
        })
        .collect()
}

/// The downloads of a package's versions that its item holds and their version items do
/// not yet (see [`Registry::record_download`]): added to what a version shows.
#[derive(Debug, Default, Clone)]
pub struct PendingDownloads(HashMap<String, (i64, Vec<String>)>);

impl PendingDownloads {
    pub fn of_item(item: &Item) -> Self {
        let mut by_version: HashMap<String, (i64, Vec<String>)> = HashMap::new();
        for p in pending_of(item) {
            let e = by_version.entry(p.version).or_default();
            e.0 += p.count;
            e.1.push(p.attr);
        }
        PendingDownloads(by_version)
    }

    /// The package item's attributes that hold `version`'s pending counts.
    pub fn attrs_of(&self, version: &str) -> Vec<String> {
        self.0.get(version).map(|(_, attrs)| attrs.clone()).unwrap_or_default()
    }

    /// Adds each version's pending downloads to its count.
    pub fn apply(&self, versions: &mut [PackageVersion]) {
        for v in versions {
            v.downloads += self.0.get(&v.name).map_or(0, |(n, _)| *n);
        }
    }
}

impl Registry {
    /// Counts one download of a version its caller has read, with one single-item write:
    /// the package's item adds it to the package's count and to a pending counter of the
    /// version and the day. Those move into the version's and the day's counters in
    /// batches (a roll-up, in a transaction: the version item, the day item, and the
    /// package item's counter removed on condition that it still holds what was moved),
    /// so that a download costs one write and never conflicts with another. A version's
    /// count is its item's plus what is pending ([`PendingDownloads`]).
    pub async fn record_download(&self, project: &str, repo: &str, key: &str, version: &str) -> Result<()> {
        let day = &now_iso()[..10];
        let add = [("downloads".to_string(), 1), (format!("{PENDING_DOWNLOADS_PREFIX}{day}#{version}"), 1)];
        let item = self
            .table
            .update_relaxed(&package_key(project, repo, key), &add, Cond::Exists)
            .await
            .map_err(|e| e.on_conflict(|| Error::version_not_found(key, version)))?;
        let pending = pending_of(&item);
        if pending.len() >= ROLL_UP_AT || pending.iter().any(|p| p.day.as_str() < day) {
            // The download is counted whatever happens here: a roll-up that fails is
            // repeated by the next one that starts.
            if let Err(e) = self.roll_up_downloads(project, repo, key).await {
                tracing::warn!(error = %e, package = key, "rolling up download counts failed; a later download retries");
            }
        }
        Ok(())
    }

    /// Moves a package's pending download counts into its versions' and days' counters,
    /// [`ROLL_UP_AT`] at a time. Counts of versions deleted since are dropped. Two
    /// roll-ups at once move each count once: each removes a counter only while it
    /// holds what that roll-up read, and a download racing it only makes it read again.
    pub async fn roll_up_downloads(&self, project: &str, repo: &str, key: &str) -> Result<()> {
        let pkey = package_key(project, repo, key);
        let ttl = (time::OffsetDateTime::now_utc() + time::Duration::days(DOWNLOAD_DAYS_KEPT)).unix_timestamp();
        let mut gone: HashSet<String> = HashSet::new();
        for _ in 0..crate::store::schema::RMW_ATTEMPTS {
            let Some(item) = self.table.get(&pkey).await? else { return Ok(()) };
            let mut pending = pending_of(&item);
            if pending.is_empty() {
                return Ok(());
            }
            pending.sort_by(|a, b| a.attr.cmp(&b.attr));
            pending.truncate(ROLL_UP_AT);
            // One write per version (a transaction touches an item once), one per day.
            let mut per_version: Vec<(String, i64)> = Vec::new();
            for p in pending.iter().filter(|p| !gone.contains(&p.version)) {
                match per_version.iter_mut().find(|(v, _)| *v == p.version) {
                    Some((_, n)) => *n += p.count,
                    None => per_version.push((p.version.clone(), p.count)),
                }
            }
            let mut ops = Vec::new();
            let mut owners = Vec::new();
            for (version, count) in &per_version {
                ops.push(TxOp::Update {
                    key: version_key(project, repo, key, version),
                    set: Item::new(),
                    add: vec![("downloads".into(), *count)],
                    cond: Cond::Exists,
                });
                owners.push(Some(version.clone()));
            }
            for p in pending.iter().filter(|p| !gone.contains(&p.version)) {
                let mut day_set = Item::new();
                day_set.insert("day".into(), p.day.clone().into());
                day_set.insert("version".into(), p.version.clone().into());
                day_set.insert(TTL_ATTR.into(), ttl.into());
                ops.push(TxOp::Update {
                    key: download_day_key(project, repo, key, &p.day, &p.version),
                    set: day_set,
                    add: vec![("downloads".into(), p.count)],
                    cond: Cond::None,
                });
                owners.push(None);
            }
            let set: Item = pending.iter().map(|p| (p.attr.clone(), Value::Null)).collect();
            let held = pending.iter().map(|p| Cond::Eq(p.attr.clone(), p.count.into())).collect();
            ops.push(TxOp::Update { key: pkey.clone(), set, add: vec![], cond: Cond::All(held) });
            owners.push(None);
            match self.table.transact(ops).await {
                Ok(()) => {
                    if pending.len() < ROLL_UP_AT {
                        return Ok(());
                    }
                }
                Err(e @ Error::Conflict { .. }) => {
                    // A deleted version: its counts go with it. A counter that moved on:
                    // read again.
                    let versions: Vec<String> = owners
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| e.failed_op(*i))
                        .filter_map(|(_, o)| o.clone())
                        .collect();
                    gone.extend(versions);
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::unavailable("download counts are being rolled up elsewhere; try again", 1))
    }

    /// Deletes the day counters of one version of a package, or of all its versions.
    pub async fn drop_download_days(&self, project: &str, repo: &str, key: &str, version: Option<&str>) -> Result<()> {
        let q = Query::prefix(download_days_partition(project, repo, key), "DAY#");
        for item in query_all(&*self.table, q).await? {
            if version.is_none_or(|v| item.get("version").and_then(Value::as_str) == Some(v)) {
                self.table.delete(&Key::of(&item)?, Cond::None).await?;
            }
        }
        Ok(())
    }

    /// The downloads pending on a package's item (none for a package that is gone).
    pub async fn pending_downloads(&self, project: &str, repo: &str, key: &str) -> Result<PendingDownloads> {
        let item = self.table.get(&package_key(project, repo, key)).await?;
        Ok(item.as_ref().map(PendingDownloads::of_item).unwrap_or_default())
    }

    /// A package with the downloads still pending on its item, in one read.
    pub async fn find_package_counted(
        &self,
        project: &str,
        repo: &str,
        key: &str,
    ) -> Result<Option<(PackageSummary, PendingDownloads)>> {
        crate::model::validate_package_key(key)?;
        let Some(item) = self.table.get(&package_key(project, repo, key)).await? else { return Ok(None) };
        let pending = PendingDownloads::of_item(&item);
        Ok(Some((from_item(item)?, pending)))
    }

    /// Answers a download of the bytes at `blob_key`, saved as `filename`, without
    /// counting it. `range` applies when the bytes stream through.
    pub async fn fetch(&self, blob_key: &str, filename: &str, range: Option<ByteRange>) -> Result<Download> {
        match self.download_mode {
            DownloadMode::Redirect => {
                Ok(Download::Redirect(self.blobs.presign_get(blob_key, DOWNLOAD_URL_TTL, Some(filename)).await?))
            }
            DownloadMode::Proxy => {
                let object = self.blobs.get(blob_key, range).await?;
                // A download larger than a response can carry (on Lambda) is a redirect;
                // the get's size says so without a request of its own.
                if let Some(limit) = self.max_proxy_bytes {
                    let size = object.size;
                    let wanted = range.map_or(size, |r| {
                        r.end.map_or(size, |e| e.saturating_add(1).min(size)).saturating_sub(r.start)
                    });
                    if wanted > limit {
                        drop(object);
                        let url = self.blobs.presign_get(blob_key, DOWNLOAD_URL_TTL, Some(filename)).await?;
                        return Ok(Download::Redirect(url));
                    }
                }
                Ok(Download::Stream { object, range, filename: filename.to_string() })
            }
        }
    }

    /// Answers a download of `v`, saved as `filename` (the last segment of its content
    /// path when `None`), and counts it once it can be answered, unless `counted` is
    /// false (a HEAD request). A range counts only when it starts at the first byte, so a
    /// file fetched in ranges counts once, and a range that cannot be served not at all.
    pub async fn download_version(
        &self,
        v: &PackageVersion,
        filename: Option<&str>,
        range: Option<ByteRange>,
        counted: bool,
    ) -> Result<Download> {
        let default = v.content_path.rsplit('/').next().filter(|f| !f.is_empty()).unwrap_or(&v.name);
        let answer = self.fetch(&v.blob_key, filename.unwrap_or(default), range).await?;
        if counted && range.is_none_or(|r| r.start == 0) {
            self.record_download(&v.project_id, &v.repo_name, &v.package_key, &v.name).await?;
        }
        Ok(answer)
    }
}
