//! Garbage collection of content blobs that no version and no staged upload refers to.
//!
//! Blobs are written before the metadata that names them, so a blob younger than the
//! grace period may belong to an upload still in flight: it is never collected. A blob
//! whose bytes another version still uses (the same content under another path) is
//! referenced, so it stays.
use std::collections::HashSet;

use super::{from_item, Registry};
use crate::model::{repo_partition, PackageVersion, PKG_SK_PREFIX, VER_SK_PREFIX};
use crate::store::{query_all, BlobInfo, Query};
use crate::Result;

/// What a collection found (and, unless dry, removed).
#[derive(Debug, Clone, Default)]
pub struct GcReport {
    pub scanned: usize,
    pub referenced: usize,
    pub unreferenced: Vec<BlobInfo>,
    pub removed: usize,
}

impl Registry {
    /// Every blob key that metadata names: versions' blobs and staged uploads.
    pub async fn referenced_blobs(&self) -> Result<HashSet<String>> {
        let mut keys = HashSet::new();
        for project in self.list_projects().await? {
            for repo in self.list_repositories(&project.name).await? {
                let packages =
                    query_all(&*self.table, Query::prefix(repo_partition(&project.name, &repo.name), PKG_SK_PREFIX))
                        .await?;
                for pkg in packages {
                    let key = pkg.get("key").and_then(|v| v.as_str()).unwrap_or_default().to_string();
                    let partition = crate::model::package_partition(&project.name, &repo.name, &key);
                    for item in query_all(&*self.table, Query::prefix(partition, VER_SK_PREFIX)).await? {
                        keys.insert(from_item::<PackageVersion>(item)?.blob_key);
                    }
                }
                let staged =
                    query_all(&*self.table, Query::partition(format!("STAGED#{}/{}", project.name, repo.name))).await?;
                for item in staged {
                    if let Some(k) = item.get("key").and_then(|v| v.as_str()) {
                        keys.insert(k.to_string());
                    }
                }
            }
        }
        Ok(keys)
    }

    /// Finds content blobs no metadata names and older than `grace_secs`; removes them
    /// unless `dry_run`. A blob referenced again by the time of removal is kept.
    pub async fn collect_garbage(&self, dry_run: bool, grace_secs: i64) -> Result<GcReport> {
        let referenced = self.referenced_blobs().await?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let blobs = self.blobs.list("blobs").await?;
        let mut report = GcReport { scanned: blobs.len(), referenced: referenced.len(), ..Default::default() };
        report.unreferenced =
            blobs.into_iter().filter(|b| !referenced.contains(&b.key) && now - b.modified >= grace_secs).collect();
        if dry_run || report.unreferenced.is_empty() {
            return Ok(report);
        }
        // Look again just before deleting: an upload may have started using a blob.
        let again = self.referenced_blobs().await?;
        for b in &report.unreferenced {
            if !again.contains(&b.key) {
                self.blobs.delete(&b.key).await?;
                report.removed += 1;
            }
        }
        Ok(report)
    }
}
