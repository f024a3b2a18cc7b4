//! `BlobStore` on a local directory. A put whose body is at most the inline limit
//! ([`INLINE_BYTES`], `DEPOT_INLINE_BLOB_BYTES`) is a row of a redb file: the embedded
//! table's, or the store's own `<root>/.small.redb` (`small.rs`: group commits, and
//! `put_named_next` shares the next table write's flush). A larger one streams into a
//! temporary file under `<root>/.tmp/`, flushes it, and renames it into place, so a
//! failed put leaves nothing behind; then flushes the directory, so that the name
//! survives a power cut too. Reads look for a row first: a row shadows a file under the
//! same key, so every write of a file removes the key's row.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use super::blob::{resolve_range, stream_from_bytes, validate_blob_key};
use super::small::{Op, SmallBlobs};
use super::{BlobInfo, BlobObject, BlobStore, ByteRange, ByteStream, Digests, MultiHasher, UrlSigner};
use crate::{Error, Result};

/// How much a file read takes at a time (tokio's default, 4 KiB, costs a blocking-pool
/// round trip per 4 KiB).
const READ_CHUNK: usize = 256 * 1024;

/// The blob store of the embedded backend. Its "presigned" URLs are depot's own signed
/// local routes (see [`UrlSigner`]); multipart parts are files under `<key>.parts/<id>/`.
#[derive(Clone)]
pub struct FsBlobStore {
    root: PathBuf,
    signer: Arc<UrlSigner>,
    small: Arc<SmallBlobs>,
    inline_bytes: usize,
}

pub use crate::config::INLINE_BLOB_BYTES as INLINE_BYTES;

/// Whether a put to `key` may be a row: the parts of a multipart upload are files, which
/// its completion reads from their directory.
fn may_inline(key: &str) -> bool {
    !key.contains(".parts/")
}

fn check_upload_id(upload_id: &str) -> Result<()> {
    if crate::model::is_generated_id(upload_id) {
        Ok(())
    } else {
        Err(Error::not_found_as(
            crate::error::Kind::Upload,
            upload_id,
            format!("multipart upload \'{}\' not found", crate::model::printable(upload_id)),
        ))
    }
}

impl FsBlobStore {
    /// Opens (and creates) the store under `root`, with the URL-signing secret in
    /// `<root>/.signing-key`, and the default inline limit.
    pub fn open(root: &Path) -> Result<Self> {
        Self::open_with(root, INLINE_BYTES)
    }

    /// Opens the store with puts of at most `inline_bytes` kept as rows (0: none), in
    /// `<root>/.small.redb`, each put flushed on its own. Rows written earlier are read
    /// whatever the limit.
    pub fn open_with(root: &Path, inline_bytes: usize) -> Result<Self> {
        let small = SmallBlobs::open(&root.join(".small.redb"))?;
        Self::with_rows(root, inline_bytes, small)
    }

    /// Opens the store with its rows in `table`'s file, the table the registry writes
    /// to: a put whose bytes the next table write names then shares that write's flush
    /// ([`BlobStore::put_named_next`]).
    pub fn open_beside(root: &Path, inline_bytes: usize, table: &super::embedded::EmbeddedTable) -> Result<Self> {
        Self::with_rows(root, inline_bytes, SmallBlobs::shared(table.clone()))
    }

    fn with_rows(root: &Path, inline_bytes: usize, small: SmallBlobs) -> Result<Self> {
        std::fs::create_dir_all(root.join(".tmp"))?;
        let signer = UrlSigner::load_or_create(&root.join(".signing-key"))?;
        Ok(FsBlobStore { root: root.to_path_buf(), signer: Arc::new(signer), small: Arc::new(small), inline_bytes })
    }

    /// The signer of this store's local URLs, which the local blob routes verify with.
    pub fn signer(&self) -> Arc<UrlSigner> {
        self.signer.clone()
    }

    fn parts_dir(key: &str, upload_id: &str) -> String {
        format!("{key}.parts/{upload_id}")
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        validate_blob_key(key)?;
        Ok(self.root.join(key))
    }

    async fn write_temp(&self, mut body: ByteStream) -> Result<(PathBuf, Digests)> {
        let tmp = self.root.join(".tmp").join(uuid::Uuid::new_v4().simple().to_string());
        let mut file = tokio::fs::File::create(&tmp).await?;
        let mut hasher = MultiHasher::new();
        let written: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| Error::Invalid(format!("upload interrupted: {e}")))?;
                hasher.update(&chunk);
                file.write_all(&chunk).await?;
            }
            file.sync_all().await?;
            Ok(())
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        Ok((tmp, hasher.finish()))
    }
}

/// The largest body a put writes in one go, on one blocking thread, once it has it all:
/// each `tokio::fs` call is a round trip to the blocking pool, and a small upload's
/// create, write, fsync, directory and rename cost more in those than in the disk.
const SMALL_PUT: usize = crate::config::MAX_INLINE_BLOB_BYTES;

/// Moves a written (and flushed) temporary file to `dest`, making its directory when it
/// lacks one, and makes the new name durable: a file's fsync does not cover a rename
/// after it, so without the directory's a power cut could lose the name of a blob whose
/// version was acknowledged.
fn rename_into(tmp: &Path, dest: &Path) -> std::io::Result<()> {
    let dir = dest.parent().ok_or_else(|| std::io::Error::other("a blob path has a directory"))?;
    match std::fs::rename(tmp, dest) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            make_dirs(dir)?;
            std::fs::rename(tmp, dest)?;
        }
        other => other?,
    }
    sync_dir(dir)
}

/// Makes `dir` and its missing ancestors, each durable in its parent.
fn make_dirs(dir: &Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.is_dir() {
        missing.push(at);
        at = at.parent().ok_or_else(|| std::io::Error::other("no directory to make blobs in"))?;
    }
    for d in missing.into_iter().rev() {
        match std::fs::create_dir(d) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => sync_dir(d.parent().expect("made under a parent"))?,
        }
    }
    Ok(())
}

/// Whether two paths name the same file (two hard links of it).
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::symlink_metadata(a), std::fs::symlink_metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        false
    }
}

/// Flushes a directory's entries (names made or moved in it) to disk.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// [`make_dirs`] for `path`'s directory, off the async threads.
async fn make_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().map(Path::to_path_buf) {
        tokio::task::spawn_blocking(move || make_dirs(&dir)).await.map_err(Error::internal)??;
    }
    Ok(())
}

/// [`sync_dir`] for `path`'s directory, off the async threads.
async fn sync_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().map(Path::to_path_buf) {
        tokio::task::spawn_blocking(move || sync_dir(&dir)).await.map_err(Error::internal)??;
    }
    Ok(())
}

impl FsBlobStore {
    /// A put whose whole body is `bytes`, within the inline limit: a row. A file under the
    /// same key is left, shadowed, until the key is deleted.
    async fn put_row(&self, key: &str, bytes: Vec<bytes::Bytes>, named_next: bool) -> Result<Digests> {
        let mut hasher = MultiHasher::new();
        for chunk in &bytes {
            hasher.update(chunk);
        }
        let modified =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        self.small.put(key, modified, bytes, named_next).await?;
        Ok(hasher.finish())
    }

    /// Moves or copies `from`'s row to `to`, when `from` has one; whether it had.
    async fn copy_row(&self, from: &str, to: &str, moving: bool) -> Result<bool> {
        if self.small.size(from)?.is_none() {
            return Ok(false);
        }
        let op = Op::Copy { from: from.to_string(), to: to.to_string(), moving };
        Ok(self.small.apply(vec![op]).await?.first().copied().unwrap_or(false))
    }

    /// A put whose whole body is `bytes`: written, flushed and renamed into place on one
    /// blocking thread.
    async fn put_small(&self, dest: PathBuf, bytes: Vec<bytes::Bytes>) -> Result<Digests> {
        let tmp = self.root.join(".tmp").join(uuid::Uuid::new_v4().simple().to_string());
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut hasher = MultiHasher::new();
            let written = (|| {
                let mut file = std::fs::File::create(&tmp)?;
                for chunk in &bytes {
                    hasher.update(chunk);
                    file.write_all(chunk)?;
                }
                file.sync_all()?;
                rename_into(&tmp, &dest)
            })();
            match written {
                Ok(()) => Ok(hasher.finish()),
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    Err(e.into())
                }
            }
        })
        .await
        .map_err(Error::internal)?
    }
}

impl FsBlobStore {
    /// A put; with `named_next`, one whose row may wait for the table's next flush.
    async fn put_as(&self, key: &str, mut body: ByteStream, named_next: bool) -> Result<Digests> {
        let dest = self.path(key)?;
        // A body that ends within SMALL_PUT is written in one go (a row when it is within
        // the inline limit); a longer one streams.
        let mut head = Vec::new();
        let mut held = 0;
        loop {
            match body.next().await {
                None if held <= self.inline_bytes && may_inline(key) => {
                    return self.put_row(key, head, named_next).await
                }
                None => {
                    let digests = self.put_small(dest, head).await?;
                    self.small.clear(key).await?;
                    return Ok(digests);
                }
                Some(Err(e)) => return Err(Error::Invalid(format!("upload interrupted: {e}"))),
                Some(Ok(chunk)) => {
                    held += chunk.len();
                    head.push(chunk);
                    if held > SMALL_PUT {
                        break;
                    }
                }
            }
        }
        let body: ByteStream = Box::pin(futures::stream::iter(head.into_iter().map(Ok)).chain(body));
        let (tmp, digests) = self.write_temp(body).await?;
        if let Err(e) = tokio::task::spawn_blocking({
            let (tmp, dest) = (tmp.clone(), dest.clone());
            move || rename_into(&tmp, &dest)
        })
        .await
        .map_err(Error::internal)?
        {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e.into());
        }
        self.small.clear(key).await?;
        Ok(digests)
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(&self, key: &str, body: ByteStream) -> Result<Digests> {
        self.put_as(key, body, false).await
    }

    async fn put_named_next(&self, key: &str, body: ByteStream) -> Result<Digests> {
        self.put_as(key, body, true).await
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<BlobObject> {
        let path = self.path(key)?;
        if let Some(row) = self.small.get(key)? {
            let size = row.len() as u64;
            let bytes = match resolve_range(range, size)? {
                None => row,
                Some((start, end)) => row.slice(start as usize..=end as usize),
            };
            return Ok(BlobObject { size, body: stream_from_bytes(bytes) });
        }
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::not_found_as(crate::error::Kind::Blob, key, format!("blob {key} not found")))
            }
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata().await?.len();
        let body: ByteStream = match resolve_range(range, size)? {
            None => ReaderStream::with_capacity(file, READ_CHUNK).boxed(),
            Some((start, end)) => {
                file.seek(std::io::SeekFrom::Start(start)).await?;
                ReaderStream::with_capacity(file.take(end - start + 1), READ_CHUNK).boxed()
            }
        };
        Ok(BlobObject { size, body })
    }

    async fn head(&self, key: &str) -> Result<Option<u64>> {
        let path = self.path(key)?;
        if let Some(size) = self.small.size(key)? {
            return Ok(Some(size));
        }
        match tokio::fs::metadata(path).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        self.small.clear(key).await?;
        match tokio::fs::remove_file(path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (src, dst) = (self.path(from)?, self.path(to)?);
        if self.copy_row(from, to, true).await? {
            // A file under `from` was shadowed by the row that moved: it goes too.
            return match tokio::fs::remove_file(&src).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            };
        }
        make_parent(&dst).await?;
        match tokio::fs::rename(&src, &dst).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::not_found_as(crate::error::Kind::Blob, from, format!("blob {from} not found")))
            }
            r => {
                r?;
                // When `to` was already a link to the same file (a copy of `from`),
                // rename(2) does nothing and leaves `from`: remove it.
                if src != dst && same_file(&src, &dst) {
                    tokio::fs::remove_file(&src).await?;
                }
                sync_parent(&dst).await?;
                self.small.clear(to).await
            }
        }
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        let (src, dst) = (self.path(from)?, self.path(to)?);
        if self.copy_row(from, to, false).await? {
            return Ok(());
        }
        make_parent(&dst).await?;
        // Blobs are never changed in place (a put writes a new file and renames it), so a
        // hard link is a copy; it is made under a temporary name and renamed over `to`.
        let tmp = dst.with_file_name(format!(".copy-{}", uuid::Uuid::new_v4().simple()));
        let linked = match tokio::fs::hard_link(&src, &tmp).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::not_found_as(crate::error::Kind::Blob, from, format!("blob {from} not found")))
            }
            Err(_) => tokio::fs::copy(&src, &tmp).await.map(|_| ()),
            ok => ok,
        };
        let moved = match linked {
            Ok(()) => tokio::fs::rename(&tmp, &dst).await,
            Err(e) => Err(e),
        };
        // When `to` is already a link to the same file, rename(2) does nothing and leaves
        // the temporary link: remove it.
        if moved.is_ok() {
            match tokio::fs::remove_file(&tmp).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        if let Err(e) = moved {
            let _ = tokio::fs::remove_file(&tmp).await;
            if e.kind() == std::io::ErrorKind::NotFound {
                return Err(Error::not_found_as(crate::error::Kind::Blob, from, format!("blob {from} not found")));
            }
            return Err(e.into());
        }
        sync_parent(&dst).await?;
        self.small.clear(to).await
    }

    async fn presign_get(&self, key: &str, expires_in: Duration, filename: Option<&str>) -> Result<String> {
        validate_blob_key(key)?;
        Ok(self.signer.url("GET", key, expires_in, filename))
    }

    async fn presign_put(&self, key: &str, _size: u64, expires_in: Duration) -> Result<String> {
        validate_blob_key(key)?;
        Ok(self.signer.url("PUT", key, expires_in, None))
    }

    async fn start_multipart(&self, key: &str) -> Result<String> {
        validate_blob_key(key)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        tokio::fs::create_dir_all(self.path(&Self::parts_dir(key, &id))?).await?;
        Ok(id)
    }

    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part: u32,
        _size: u64,
        expires_in: Duration,
    ) -> Result<String> {
        check_upload_id(upload_id)?;
        let part_key = format!("{}/{part:05}", Self::parts_dir(key, upload_id));
        validate_blob_key(&part_key)?;
        Ok(self.signer.url("PUT", &part_key, expires_in, None))
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        listed: Option<&[(u32, String)]>,
    ) -> Result<Option<Digests>> {
        check_upload_id(upload_id)?;
        let dir = self.path(&Self::parts_dir(key, upload_id))?;
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::not_found_as(
                    crate::error::Kind::Upload,
                    upload_id,
                    format!("multipart upload {upload_id} not found"),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        let mut parts = Vec::new();
        while let Some(e) = entries.next_entry().await? {
            if let Some(n) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                parts.push((n, e.path()));
            }
        }
        if parts.is_empty() {
            return Err(Error::Invalid("no part of this upload has been sent".into()));
        }
        parts.sort();
        if let Some(listed) = listed {
            // Like S3: every listed part must exist with that ETag (the part's md5).
            let mut chosen = Vec::with_capacity(listed.len());
            for (n, etag) in listed {
                let Some((_, path)) = parts.iter().find(|(p, _)| p == n) else {
                    return Err(Error::Invalid(format!("part {n} was not uploaded")));
                };
                // The ETag is the part's md5; only that is computed here.
                let mut md5 = <md5::Md5 as md5::Digest>::new();
                let mut file = tokio::fs::File::open(path).await?;
                let mut buf = vec![0u8; READ_CHUNK];
                loop {
                    let read = file.read(&mut buf).await?;
                    if read == 0 {
                        break;
                    }
                    md5::Digest::update(&mut md5, &buf[..read]);
                }
                if hex::encode(md5::Digest::finalize(md5)) != etag.trim_matches('"') {
                    return Err(Error::Invalid(format!("part {n}: ETag {etag} does not match the part received")));
                }
                chosen.push((*n, path.clone()));
            }
            chosen.sort();
            parts = chosen;
        }
        let joined =
            futures::stream::iter(parts)
                .then(|(_, p)| async move {
                    tokio::fs::File::open(p).await.map(|f| ReaderStream::with_capacity(f, READ_CHUNK))
                })
                .try_flatten();
        let digests = self.put(key, joined.boxed()).await?;
        tokio::fs::remove_dir_all(&dir).await?;
        let _ = tokio::fs::remove_dir(dir.parent().expect("parts dir has a parent")).await;
        Ok(Some(digests))
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        check_upload_id(upload_id)?;
        let dir = self.path(&Self::parts_dir(key, upload_id))?;
        match tokio::fs::remove_dir_all(&dir).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => {
                let _ = tokio::fs::remove_dir(dir.parent().expect("parts dir has a parent")).await;
                Ok(())
            }
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>> {
        let folder = prefix.trim_end_matches('/');
        let dir = self.path(folder)?;
        let rows = self.small.list(&format!("{folder}/"))?;
        let root = self.root.clone();
        let mut out = tokio::task::spawn_blocking(move || -> Result<Vec<BlobInfo>> {
            let mut out = Vec::new();
            let mut stack = vec![dir];
            while let Some(d) = stack.pop() {
                let entries = match std::fs::read_dir(&d) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                };
                for entry in entries {
                    let entry = entry?;
                    let meta = entry.metadata()?;
                    if meta.is_dir() {
                        stack.push(entry.path());
                    } else if let Ok(rel) = entry.path().strip_prefix(&root) {
                        let modified = meta
                            .modified()
                            .ok()
                            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                            .map_or(0, |d| d.as_secs() as i64);
                        out.push(BlobInfo {
                            key: rel.to_string_lossy().replace('\\', "/"),
                            size: meta.len(),
                            modified,
                        });
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(Error::internal)??;
        // A row shadows a file under its key.
        out.retain(|f| rows.binary_search_by(|r| r.key.as_str().cmp(&f.key)).is_err());
        out.extend(rows);
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(store: &FsBlobStore, key: &str) -> Vec<u8> {
        store.get(key, None).await.unwrap().bytes().await.unwrap()
    }

    #[tokio::test]
    async fn small_blobs_are_rows_that_outlive_the_process_and_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        store.put("blobs/sha256/ab/cd/abcd", stream_from_bytes(&b"a small chart"[..])).await.unwrap();
        assert!(!dir.path().join("blobs").exists(), "a small blob makes no file and no directory");
        let listed = store.list("blobs").await.unwrap();
        assert_eq!((listed.len(), listed[0].size), (1, 13));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        assert!((now - listed[0].modified).abs() < 60, "the row keeps when it was written");
        let big = vec![7u8; INLINE_BYTES + 1];
        store.put("blobs/big", stream_from_bytes(big.clone())).await.unwrap();
        assert!(dir.path().join("blobs/big").is_file(), "a blob over the limit is a file");
        drop(store);

        // Reopened, with rows no longer written: the rows are still read.
        let store = FsBlobStore::open_with(dir.path(), 0).unwrap();
        assert_eq!(read(&store, "blobs/sha256/ab/cd/abcd").await, b"a small chart");
        assert_eq!(read(&store, "blobs/big").await, big);
        store.put("t/x", stream_from_bytes(&b"x"[..])).await.unwrap();
        assert!(dir.path().join("t/x").is_file(), "with the limit at 0 every blob is a file");
        // A file written over a row replaces it.
        store.put("blobs/sha256/ab/cd/abcd", stream_from_bytes(&b"now a file"[..])).await.unwrap();
        assert_eq!(read(&store, "blobs/sha256/ab/cd/abcd").await, b"now a file");
        assert_eq!(store.small.size("blobs/sha256/ab/cd/abcd").unwrap(), None);
    }

    #[tokio::test]
    async fn rows_beside_the_table_are_kept_by_its_commits_and_its_close() {
        use crate::store::{Cond, Key, Table};
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let table = super::super::embedded::EmbeddedTable::open(&dir.path().join("t.redb")).unwrap();
            let store = FsBlobStore::open_beside(&dir.path().join("blobs"), INLINE_BYTES, &table).unwrap();
            (table, store)
        };
        let (table, store) = open();
        // Named next: committed (readable and durable) with the table's next write.
        store.put_named_next("blobs/one", stream_from_bytes(&b"one"[..])).await.unwrap();
        table.put(Key::new("A", "B").item(), Cond::None).await.unwrap();
        assert!(table.pending_rows().get("blobs/one").is_none(), "the write's commit holds the row");
        assert_eq!(read(&store, "blobs/one").await, b"one");
        // A pending row deleted: gone, and stays gone.
        store.put_named_next("blobs/gone", stream_from_bytes(&b"gone"[..])).await.unwrap();
        store.delete("blobs/gone").await.unwrap();
        assert!(store.head("blobs/gone").await.unwrap().is_none());
        // Named next with no write after it: readable at once, pending, and made durable
        // by the table's close.
        store.put_named_next("blobs/two", stream_from_bytes(&b"two"[..])).await.unwrap();
        assert_eq!(read(&store, "blobs/two").await, b"two");
        assert_eq!(store.list("blobs/").await.unwrap().len(), 2, "a pending row is listed");
        store.put("blobs/three", stream_from_bytes(&b"three"[..])).await.unwrap();
        assert!(!dir.path().join("blobs/.small.redb").exists(), "the rows are in the table's file");
        drop((table, store));
        let (table, store) = open();
        for (key, want) in [("blobs/one", &b"one"[..]), ("blobs/two", b"two"), ("blobs/three", b"three")] {
            assert_eq!(read(&store, key).await, want, "{key}");
        }
        assert!(store.head("blobs/gone").await.unwrap().is_none());
        assert!(table.get(&Key::new("A", "B")).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn multipart_parts_stay_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        let id = store.start_multipart("up/one").await.unwrap();
        let part = format!("up/one.parts/{id}/00001");
        store.put(&part, stream_from_bytes(&b"part one"[..])).await.unwrap();
        assert!(dir.path().join(&part).is_file());
        let d = store.complete_multipart("up/one", &id, None).await.unwrap().unwrap();
        assert_eq!(d.size, 8);
        assert_eq!(read(&store, "up/one").await, b"part one");
    }
}
