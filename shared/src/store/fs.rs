//! `BlobStore` on a local directory. Puts stream into a temporary file under
//! `<root>/.tmp/` and rename it into place, so a failed put leaves nothing behind.
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use super::blob::{resolve_range, validate_blob_key};
use super::{BlobObject, BlobStore, ByteRange, ByteStream, Digests, MultiHasher};
use crate::{Error, Result};

#[derive(Clone)]
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    pub fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root.join(".tmp"))?;
        Ok(FsBlobStore { root: root.to_path_buf() })
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

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(&self, key: &str, body: ByteStream) -> Result<Digests> {
        let dest = self.path(key)?;
        let (tmp, digests) = self.write_temp(body).await?;
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        if let Err(e) = tokio::fs::rename(&tmp, &dest).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e.into());
        }
        Ok(digests)
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<BlobObject> {
        let path = self.path(key)?;
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(format!("blob {key} not found")))
            }
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata().await?.len();
        let body: ByteStream = match resolve_range(range, size)? {
            None => ReaderStream::new(file).boxed(),
            Some((start, end)) => {
                file.seek(std::io::SeekFrom::Start(start)).await?;
                ReaderStream::new(file.take(end - start + 1)).boxed()
            }
        };
        Ok(BlobObject { size, body })
    }

    async fn head(&self, key: &str) -> Result<Option<u64>> {
        match tokio::fs::metadata(self.path(key)?).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (src, dst) = (self.path(from)?, self.path(to)?);
        if let Some(dir) = dst.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        match tokio::fs::rename(&src, &dst).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound(format!("blob {from} not found"))),
            r => Ok(r?),
        }
    }
}
