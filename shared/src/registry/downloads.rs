//! Downloads: every surface's go through here, so that each one is counted and answered
//! the same way: a redirect to a presigned URL, or the bytes streamed through depot
//! (`DEPOT_DOWNLOAD_MODE`).
use std::time::Duration;

use super::Registry;
use crate::config::DownloadMode;
use crate::model::{now_iso, PackageVersion};
use crate::store::schema::{download_day_key, package_key, version_key};
use crate::store::{BlobObject, ByteRange, Cond, Item, TxOp};
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

impl Registry {
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
                key: version_key(project, repo, key, version),
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
        self.table.transact(ops).await.map_err(|e| e.on_conflict(|| Error::version_not_found(key, version)))
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

    /// Counts a download of `v` (unless `counted` is false: a HEAD request), then answers
    /// it, saved as `filename` (the last segment of its content path when `None`).
    pub async fn download_version(
        &self,
        v: &PackageVersion,
        filename: Option<&str>,
        range: Option<ByteRange>,
        counted: bool,
    ) -> Result<Download> {
        if counted {
            self.record_download(&v.project_id, &v.repo_name, &v.package_key, &v.name).await?;
        }
        let default = v.content_path.rsplit('/').next().filter(|f| !f.is_empty()).unwrap_or(&v.name);
        self.fetch(&v.blob_key, filename.unwrap_or(default), range).await
    }
}
