//! Use cases, written only against the two ports (and the table's schema).
//!
//! Rules that depend on the data are decided here, from the caller's [`Actor`]
//! (who it is and what it may do on the repository): a `@release` version needs MANAGE.
//!
//! [`Actor`]: crate::model::Actor
mod derived;
mod downloads;
mod gc;
mod listing;
mod listings;
mod projects;
mod uploads;
mod verify;
mod versions;

pub use derived::{DerivedCache, Parts, Rendering, CHANGED_AT_ATTR, DERIVED_PREFIX, KEEP_SUPERSEDED_SECS, RENDERING_URL_TTL};
pub use downloads::{Download, PendingDownloads, DOWNLOAD_DAYS_KEPT, DOWNLOAD_URL_TTL, PENDING_DOWNLOADS_PREFIX, ROLL_UP_AT};
pub use gc::{GcReport, Hold, STAGED_LEASE};
pub use listing::{whole_read_slot, PageOf, PageParam, PageRequest, MAX_PAGE_SIZE};
pub use crate::model::Listing;
pub use projects::{NewProject, NewRepository, RepositoryUpdate};
pub use uploads::*;
pub use verify::{BadBlob, Target, VerifyReport, VerifyScope};
pub use versions::{BlobRef, NewVersion};

use std::sync::Arc;

use crate::config::DownloadMode;
use crate::store::{BlobStore, Table};

/// The domain's entry point: every surface calls these use cases.
#[derive(Clone)]
pub struct Registry {
    pub table: Arc<dyn Table>,
    pub blobs: Arc<dyn BlobStore>,
    /// How downloads are answered.
    pub download_mode: DownloadMode,
    /// Renderings derived from repositories, by repository state.
    pub derived: Arc<DerivedCache>,
    /// How many versions a package item lists inline (`model::INLINE_HISTORY`; tests
    /// lower it to reach the spilled history in a few uploads).
    pub inline_history: usize,
    /// The largest download streamed through depot in proxy mode (on Lambda, what a
    /// response carries); a larger one is a redirect to a presigned URL.
    pub max_proxy_bytes: Option<u64>,
}

impl Registry {
    /// A registry over the two ports, answering downloads with redirects.
    pub fn new(table: Arc<dyn Table>, blobs: Arc<dyn BlobStore>) -> Self {
        Registry {
            table,
            blobs,
            download_mode: DownloadMode::Redirect,
            derived: Arc::default(),
            inline_history: crate::model::INLINE_HISTORY,
            max_proxy_bytes: None,
        }
    }

    pub fn with_max_proxy_bytes(mut self, limit: Option<u64>) -> Self {
        self.max_proxy_bytes = limit;
        self
    }

    pub fn with_inline_history(mut self, n: usize) -> Self {
        self.inline_history = n;
        self
    }

    pub fn with_download_mode(mut self, mode: DownloadMode) -> Self {
        self.download_mode = mode;
        self
    }
}
