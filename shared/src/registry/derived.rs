//! Renderings derived from a repository (an `index.yaml`, catalog pages and feeds),
//! stored under the repository's state.
//!
//! Every write to a repository bumps its generation in the same transaction, and a
//! repository created again under an old name has another uid, so a rendering kept
//! under the uid and generation is never stale: a reader that has just read the
//! repository gets the rendering of exactly that state, or makes it.
//!
//! Renderings live in the blob store under `derived/{project}/{repo}/{uid}/{kind}/{generation}`
//! (the kind hashed), so that a Lambda instance that starts empty pays one read for one,
//! and in a small in-process cache in front of that.
//!
//! A rendering made of one part per package (an `index.yaml`, [`Registry::assembled`])
//! is made again from the parts of the last one, reading only the packages that changed:
//! every write leaves its package's key in the repository's changes partition
//! (`schema::change_key`), in its transaction. The repository item names the generation
//! whose parts are the base (`rendered:{kind}`). A rendering reads that pointer, then the
//! changes, then the pointer again (a changed pointer starts over); reads every changed
//! package; stores the rendering and its parts; moves the pointer from what it read to
//! its generation; and only then removes the changes it read. So a change is removed
//! only once the pointer's parts hold it, and no renderer whose base lacks it can miss it:
//! one that read the pointer before it moved sees it moved and starts over.
//!
//! A rendering the pointer moves off stays stored for [`KEEP_SUPERSEDED_SECS`] (the
//! repository item lists it, `superseded:{kind}`), so that a presigned URL of it handed
//! out just before (valid [`RENDERING_URL_TTL`]) still serves it; a later move removes
//! it, or the collection does.
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Registry;
use crate::model::Repository;
use crate::store::schema::{changes_partition, from_item, repo_key};
use crate::store::{query_all, stream_from_bytes, Cond, Item, Key, Query};
use crate::{Error, Result};

/// How many renderings (and sets of parts) a process keeps.
const CAPACITY: usize = 64;

/// Where renderings are stored in the blob store.
pub const DERIVED_PREFIX: &str = "derived/";

/// How many packages a rendering reads at once.
const PARALLEL_READS: usize = 16;

/// The parts of an assembled rendering: each package's, by package key.
pub type Parts = BTreeMap<String, String>;

/// A rendering, and where it is stored (for a presigned URL when it is too large to
/// answer with).
#[derive(Debug, Clone)]
pub struct Rendering {
    pub bytes: Bytes,
    pub key: String,
}

/// A small in-process cache in front of the stored renderings (cheap to clone: `Bytes`
/// shares the buffer): renderings by their stored key, and the last parts of each
/// assembled kind with their generation.
#[derive(Default)]
pub struct DerivedCache {
    entries: Mutex<HashMap<String, Bytes>>,
    parts: Mutex<HashMap<String, (i64, Arc<Parts>)>>,
}

impl DerivedCache {
    fn get(&self, key: &str) -> Option<Bytes> {
        self.entries.lock().expect("derived cache").get(key).cloned()
    }

    fn put(&self, key: &str, rendering: Bytes) {
        let mut entries = self.entries.lock().expect("derived cache");
        if entries.len() >= CAPACITY && !entries.contains_key(key) {
            entries.clear();
        }
        entries.insert(key.to_string(), rendering);
    }

    fn parts(&self, prefix: &str, generation: i64) -> Option<Arc<Parts>> {
        let parts = self.parts.lock().expect("derived cache");
        parts.get(prefix).filter(|(g, _)| *g == generation).map(|(_, p)| p.clone())
    }

    fn put_parts(&self, prefix: &str, generation: i64, p: Arc<Parts>) {
        let mut parts = self.parts.lock().expect("derived cache");
        if parts.len() >= CAPACITY && !parts.contains_key(prefix) {
            parts.clear();
        }
        if parts.get(prefix).is_none_or(|(g, _)| *g <= generation) {
            parts.insert(prefix.to_string(), (generation, p));
        }
    }
}

/// Where the renderings of `kind` of this repository (this uid) are stored.
fn object_prefix(repo: &Repository, kind: &str) -> String {
    let kind = kind_segment(kind);
    let uid = if repo.uid.is_empty() { "-" } else { &repo.uid };
    format!("{DERIVED_PREFIX}{}/{}/{uid}/{kind}/", repo.project_id, repo.name)
}

/// A kind as its objects' keys name it (hashed: a kind may hold any character).
fn kind_segment(kind: &str) -> String {
    hex::encode(&Sha256::digest(kind.as_bytes())[..8])
}

fn object_key(prefix: &str, generation: i64) -> String {
    format!("{prefix}{generation:020}")
}

fn parts_key(prefix: &str, generation: i64) -> String {
    format!("{prefix}{generation:020}.parts")
}

/// The repository attribute that names the generation whose parts are `kind`'s base.
fn pointer_attr(kind: &str) -> String {
    format!("rendered:{kind}")
}

/// The pointer's earlier values, each with when it was moved off it (unix seconds), as
/// `[[generation, at], ...]`: their objects are kept for [`KEEP_SUPERSEDED_SECS`] after
/// that, since a URL handed out for one may still be followed, then removed by a later
/// move (or by the collection).
fn superseded_attr(kind: &str) -> String {
    format!("superseded:{kind}")
}

/// How long a presigned URL of a stored rendering (an index too large for a response)
/// is valid: it is followed at once.
pub const RENDERING_URL_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// How long a rendering is kept once a newer one replaced it: its URLs' lifetime, and as
/// long again for clocks that differ between instances.
pub const KEEP_SUPERSEDED_SECS: i64 = 2 * RENDERING_URL_TTL.as_secs() as i64;

/// At most this many superseded renderings of one kind are listed; older ones are left
/// to the collection.
const SUPERSEDED_MAX: usize = 64;

/// The superseded generations an item lists, with when each was superseded.
fn superseded_of(item: &Item, kind: &str) -> Vec<(i64, i64)> {
    item.get(&superseded_attr(kind))
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(|e| Some((e.get(0)?.as_i64()?, e.get(1)?.as_i64()?))).collect())
        .unwrap_or_default()
}

/// Whether a repository item lists `generation` of the kind whose key segment is
/// `hashed` as superseded less than [`KEEP_SUPERSEDED_SECS`] before `now`.
fn superseded_lately(item: &Item, hashed: &str, generation: i64, now: i64) -> bool {
    let mut kinds = item.keys().filter_map(|k| k.strip_prefix("superseded:")).filter(|k| kind_segment(k) == hashed);
    kinds.any(|kind| superseded_of(item, kind).iter().any(|(g, at)| *g == generation && now - at < KEEP_SUPERSEDED_SECS))
}

/// When the repository last changed, as its writes record it (`changedAt`): an
/// assembled rendering that names a time takes this one, so that two renderings of one
/// state are the same bytes.
pub const CHANGED_AT_ATTR: &str = "changedAt";

/// A rendering's stored state as a generation and the item's other facts.
struct Pointer {
    generation: i64,
    uid: String,
    rendered: Option<i64>,
    item: Item,
}

impl Registry {
    /// A stored rendering, or `None` when there is none.
    async fn stored(&self, key: &str) -> Result<Option<Bytes>> {
        match self.blobs.get(key, None).await {
            Ok(obj) => Ok(Some(Bytes::from(obj.bytes().await?))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn store(&self, key: &str, bytes: &Bytes) -> Result<()> {
        self.blobs.put(key, stream_from_bytes(bytes.clone())).await.map(|_| ())
    }

    /// The rendering `kind` of `repo` in the state the caller read it in: cached, stored,
    /// or made by `render` and stored. `render` must read the repository's contents after
    /// `repo` was read, so that it is never older than the state it is kept under.
    pub async fn rendering<F, Fut>(&self, repo: &Repository, kind: &str, render: F) -> Result<Rendering>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes>>,
    {
        let key = object_key(&object_prefix(repo, kind), repo.generation);
        if let Some(bytes) = self.derived.get(&key) {
            return Ok(Rendering { bytes, key });
        }
        let bytes = match self.stored(&key).await? {
            Some(b) => b,
            None => {
                let b = render().await?;
                self.store(&key, &b).await?;
                b
            }
        };
        self.derived.put(&key, bytes.clone());
        Ok(Rendering { bytes, key })
    }

    /// A rendering made of one part per package: `part` renders a package's (`None` when
    /// the package is gone or has none), and `assemble` puts the parts together (with the
    /// repository item's `changedAt`, the time of its last write). Cached and stored as
    /// [`Registry::rendering`] is; when this state has none yet, it is made from the
    /// stored parts of the last one and the packages changed since (module doc), or from
    /// every package when there are none.
    pub async fn assembled<P, PF, A>(&self, repo: &Repository, kind: &str, part: P, assemble: A) -> Result<Rendering>
    where
        P: Fn(String) -> PF,
        PF: Future<Output = Result<Option<String>>>,
        A: Fn(&Parts, Option<&str>) -> Result<Bytes>,
    {
        let prefix = object_prefix(repo, kind);
        let key = object_key(&prefix, repo.generation);
        if let Some(bytes) = self.derived.get(&key) {
            return Ok(Rendering { bytes, key });
        }
        if let Some(bytes) = self.stored(&key).await? {
            self.derived.put(&key, bytes.clone());
            return Ok(Rendering { bytes, key });
        }
        for _ in 0..8 {
            let before = self.pointer(repo, kind).await?;
            // A rendering of this state or a later one is there already: it is not stale.
            if let Some(p) = before.rendered.filter(|p| *p >= repo.generation) {
                let at = object_key(&prefix, p);
                if let Some(bytes) = self.stored(&at).await? {
                    self.derived.put(&at, bytes.clone());
                    return Ok(Rendering { bytes, key: at });
                }
            }
            let changes =
                query_all(&*self.table, Query::partition(changes_partition(&repo.project_id, &repo.name))).await?;
            let after = self.pointer(repo, kind).await?;
            if after.rendered != before.rendered {
                continue;
            }
            let base = match before.rendered {
                Some(p) => match self.derived.parts(&prefix, p) {
                    Some(parts) => Some(parts),
                    None => self.stored_parts(&parts_key(&prefix, p)).await?.map(Arc::new),
                },
                None => None,
            };
            let (mut parts, keys): (Parts, Vec<String>) = match base {
                Some(b) => {
                    let mut keys: Vec<String> = changes.iter().filter_map(changed_package).collect();
                    keys.sort();
                    keys.dedup();
                    (Arc::unwrap_or_clone(b), keys)
                }
                None => {
                    let all = self.list_packages(&repo.project_id, &repo.name).await?;
                    (Parts::new(), all.into_iter().map(|p| p.key).collect())
                }
            };
            let read: Vec<(String, Result<Option<String>>)> = futures::stream::iter(keys)
                .map(|k| {
                    let f = part(k.clone());
                    async move { (k, f.await) }
                })
                .buffer_unordered(PARALLEL_READS)
                .collect()
                .await;
            for (k, r) in read {
                match r? {
                    Some(p) => parts.insert(k, p),
                    None => parts.remove(&k),
                };
            }
            // Repositories older than `changedAt` name the time they were last changed.
            let changed_at =
                before.item.get(CHANGED_AT_ATTR).or(before.item.get("lastModifiedDate")).and_then(Value::as_str);
            let bytes = assemble(&parts, changed_at)?;
            let g = before.generation;
            let at = object_key(&prefix, g);
            let encoded = Bytes::from(serde_json::to_vec(&parts).map_err(Error::internal)?);
            let parts_at = parts_key(&prefix, g);
            let (r1, r2) = futures::future::join(self.store(&at, &bytes), self.store(&parts_at, &encoded)).await;
            r1?;
            r2?;
            let parts = Arc::new(parts);
            self.derived.put_parts(&prefix, g, parts);
            self.derived.put(&at, bytes.clone());
            if before.rendered.is_none_or(|p| p < g) {
                if let Some(expired) = self.move_pointer(repo, kind, &after, g).await? {
                    self.forget_changes(&changes).await;
                    for old in expired.into_iter().filter(|b| Some(*b) != after.rendered && *b != g) {
                        let (old_at, old_parts) = (object_key(&prefix, old), parts_key(&prefix, old));
                        let (a, b) =
                            futures::future::join(self.blobs.delete(&old_at), self.blobs.delete(&old_parts)).await;
                        if let Err(e) = a.and(b) {
                            tracing::warn!(error = %e, "removing an old rendering failed");
                        }
                    }
                }
            }
            return Ok(Rendering { bytes, key: at });
        }
        Err(Error::unavailable("the repository's index is being rendered by many readers at once; retry", 1))
    }

    /// The repository item as an assembled rendering of `kind` needs it. A repository
    /// gone or created again since `repo` was read is `NotFound`.
    async fn pointer(&self, repo: &Repository, kind: &str) -> Result<Pointer> {
        let gone = || Error::not_found(crate::error::Kind::Repository, format!("{}/{}", repo.project_id, repo.name));
        let item = self.table.get(&repo_key(&repo.project_id, &repo.name)).await?.ok_or_else(gone)?;
        let current: Repository = from_item(item.clone())?;
        if current.uid != repo.uid {
            return Err(gone());
        }
        let num = |attr: String| item.get(&attr).and_then(Value::as_i64);
        Ok(Pointer { generation: current.generation, uid: current.uid, rendered: num(pointer_attr(kind)), item })
    }

    /// Moves the pointer from what `read` saw to `generation`, listing the generation it
    /// leaves as superseded now; `None` when it moved meanwhile (another rendering took
    /// it), else the superseded generations whose time is up, for the caller to remove.
    async fn move_pointer(
        &self,
        repo: &Repository,
        kind: &str,
        read: &Pointer,
        generation: i64,
    ) -> Result<Option<Vec<i64>>> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut listed = superseded_of(&read.item, kind);
        listed.extend(read.rendered.map(|p| (p, now)));
        let (expired, mut kept): (Vec<_>, Vec<_>) =
            listed.into_iter().partition(|(_, at)| now - at >= KEEP_SUPERSEDED_SECS);
        // The oldest beyond the list's length go to the collection, which keeps them no
        // less long (their objects' age and its grace).
        kept.drain(..kept.len().saturating_sub(SUPERSEDED_MAX));
        let mut set = Item::new();
        set.insert(pointer_attr(kind), generation.into());
        set.insert(superseded_attr(kind), kept.iter().map(|(g, at)| serde_json::json!([g, at])).collect());
        let was = match read.rendered {
            Some(p) => Cond::Eq(pointer_attr(kind), p.into()),
            None => Cond::Lacks(pointer_attr(kind)),
        };
        let cond = Cond::All(vec![Cond::Eq("uid".into(), read.uid.clone().into()), was]);
        match self.table.update(&repo_key(&repo.project_id, &repo.name), set, &[], cond).await {
            Ok(_) => Ok(Some(expired.into_iter().map(|(g, _)| g).collect())),
            Err(e) if e.is_conflict() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the changes a rendering read, now that the pointer's parts hold them.
    /// A failure only leaves them to be read again.
    async fn forget_changes(&self, changes: &[Item]) {
        let keys: Vec<Key> = changes.iter().filter_map(|i| Key::of(i).ok()).collect();
        if let Err(e) = self.table.delete_many(&keys).await {
            tracing::warn!(error = %e, "removing the changes a rendering read failed");
        }
    }

    /// Stored parts, or `None` when they are gone or unreadable (then every part is read).
    async fn stored_parts(&self, key: &str) -> Result<Option<Parts>> {
        Ok(self.stored(key).await?.and_then(|b| serde_json::from_slice(&b).ok()))
    }
}

impl Registry {
    /// Stored renderings nothing will read again, older than `grace_secs` (the
    /// collection's grace, far longer than a rendering takes): those of repositories gone
    /// or created again, and those of earlier states, except each kind's base (the
    /// pointer's parts and rendering). Removes them unless `dry_run`. A rendering removed
    /// too early is only made again.
    pub async fn sweep_renderings(&self, dry_run: bool, grace_secs: i64) -> Result<Vec<crate::store::BlobInfo>> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut repos: HashMap<(String, String), Option<Item>> = HashMap::new();
        let mut old = Vec::new();
        for obj in self.blobs.list(DERIVED_PREFIX.trim_end_matches('/')).await? {
            if now - obj.modified < grace_secs {
                continue;
            }
            let rest = obj.key.trim_start_matches(DERIVED_PREFIX);
            let parts: Vec<&str> = rest.split('/').collect();
            let [project, repo, uid, hashed, file] = parts[..] else { continue };
            let item = match repos.get(&(project.to_string(), repo.to_string())) {
                Some(i) => i.clone(),
                None => {
                    let i = self.table.get(&repo_key(project, repo)).await?;
                    repos.insert((project.to_string(), repo.to_string()), i.clone());
                    i
                }
            };
            let generation = file.trim_end_matches(".parts").parse::<i64>().ok();
            let keep = item.is_some_and(|item| {
                let same =
                    item.get("uid").and_then(Value::as_str).map_or("-", |u| if u.is_empty() { "-" } else { u }) == uid;
                let current = item.get("generation").and_then(Value::as_i64).unwrap_or(0);
                let base = |g: i64| item.iter().any(|(k, v)| k.starts_with("rendered:") && v.as_i64() == Some(g));
                // Superseded only a moment ago: a URL handed out for it may be followed.
                let recent = |g: i64| superseded_lately(&item, hashed, g, now);
                same && generation.is_some_and(|g| g >= current || base(g) || recent(g))
            });
            if !keep {
                old.push(obj);
            }
        }
        if !dry_run {
            for obj in &old {
                self.blobs.delete(&obj.key).await?;
            }
        }
        Ok(old)
    }
}

/// The package a change names.
fn changed_package(item: &Item) -> Option<String> {
    let sk = item.get(crate::store::SK)?.as_str()?;
    crate::store::schema::changed_package(sk).map(str::to_string)
}
