//! Renderings derived from a repository (an `index.yaml`; catalog pages and feeds
//! later), cached under the repository's state.
//!
//! Every write to a repository bumps its generation in the same transaction, and a
//! repository created again under an old name has another uid, so a rendering cached
//! under `Repository::state_tag` is never stale: a reader that has just read the
//! repository gets the rendering of exactly that state, or renders it.
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use bytes::Bytes;

use super::Registry;
use crate::model::Repository;
use crate::Result;

/// How many renderings a process keeps.
const CAPACITY: usize = 256;

/// A small in-process cache of renderings (cheap to clone: `Bytes` shares the buffer),
/// each kept with the repository state it was rendered at.
#[derive(Default)]
pub struct DerivedCache {
    entries: Mutex<HashMap<String, (i64, Bytes)>>,
}

impl DerivedCache {
    fn get(&self, key: &str, generation: i64) -> Option<Bytes> {
        let entries = self.entries.lock().expect("derived cache");
        entries.get(key).filter(|(g, _)| *g == generation).map(|(_, b)| b.clone())
    }

    /// Keeps a rendering, unless one of a newer generation is kept already.
    fn put(&self, key: String, generation: i64, rendering: Bytes) {
        let mut entries = self.entries.lock().expect("derived cache");
        if entries.len() >= CAPACITY && !entries.contains_key(&key) {
            entries.clear();
        }
        if entries.get(&key).is_none_or(|(g, _)| *g <= generation) {
            entries.insert(key, (generation, rendering));
        }
    }
}

impl Registry {
    /// The rendering `kind` of `repo` in the state the caller read it in: cached, or
    /// made by `render` and kept. `render` must read the repository's contents after
    /// `repo` was read, so that it is never older than the state it is kept under.
    pub async fn rendering<F, Fut>(&self, repo: &Repository, kind: &str, render: F) -> Result<Bytes>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes>>,
    {
        // The uid tells a repository from an earlier one of the same name.
        let key = format!("{kind}\0{}\0{}\0{}", repo.project_id, repo.name, repo.uid);
        if let Some(b) = self.derived.get(&key, repo.generation) {
            return Ok(b);
        }
        let rendered = render().await?;
        self.derived.put(key, repo.generation, rendered.clone());
        Ok(rendered)
    }
}
