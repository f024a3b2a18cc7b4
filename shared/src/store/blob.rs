use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use super::Digests;
use crate::{Error, Result};

/// A stream of bytes going into or coming out of a blob store.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// An inclusive byte range, as in an HTTP `Range: bytes=start-end` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    /// Inclusive end; `None` reads to the end of the blob.
    pub end: Option<u64>,
}

/// What a get returns: the bytes (or the asked range of them) and the blob's total size.
pub struct BlobObject {
    pub size: u64,
    pub body: ByteStream,
}

impl BlobObject {
    /// Collects the whole body. For tests and small blobs only.
    pub async fn bytes(self) -> Result<Vec<u8>> {
        use futures::TryStreamExt;
        let chunks: Vec<Bytes> = self.body.try_collect().await?;
        Ok(chunks.concat())
    }
}

/// One stored blob, as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub key: String,
    pub size: u64,
    /// When the bytes were last written, in seconds since the epoch.
    pub modified: i64,
}

/// The blob port: streamed bytes under string keys.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores the stream under `key`, replacing what was there, computing the digests while
    /// streaming. Never holds the whole blob in memory. A failed put leaves nothing under `key`.
    async fn put(&self, key: &str, body: ByteStream) -> Result<Digests>;

    /// [`BlobStore::put`] for bytes that the caller's next table write names (a version's
    /// blob): they must survive a power cut once that write has, not before, and need
    /// not be readable before it is committed. The embedded store keeps small blobs in
    /// the embedded table's file, pending in memory until that write's commit makes them
    /// durable, and so skips a commit and a flush of their own. Every other store puts as
    /// usual, which is what this does unless a store says otherwise.
    async fn put_named_next(&self, key: &str, body: ByteStream) -> Result<Digests> {
        self.put(key, body).await
    }

    /// Reads a blob, or a byte range of it. A missing key is `NotFound`; a range that
    /// starts past the end is `Invalid`.
    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<BlobObject>;

    /// The size of a blob, or `None` when it does not exist.
    async fn head(&self, key: &str) -> Result<Option<u64>>;

    /// Deletes a blob. Deleting a missing key succeeds.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Moves a blob to another key, replacing what was there.
    async fn rename(&self, from: &str, to: &str) -> Result<()>;

    /// Copies a blob to another key, replacing what was there; `from` stays. A missing
    /// `from` is `NotFound`.
    async fn copy(&self, from: &str, to: &str) -> Result<()>;

    /// A URL that lets its holder GET the blob, without credentials, until `expires_in`
    /// has passed; `filename` becomes the response's content-disposition. A URL that
    /// starts with `/` is relative to depot's own base URL (the embedded backend's signed
    /// local routes).
    async fn presign_get(&self, key: &str, expires_in: Duration, filename: Option<&str>) -> Result<String>;

    /// A URL that lets its holder PUT exactly `size` bytes to the blob until `expires_in`
    /// has passed. On S3 the length is signed, so S3 refuses any other; the local routes
    /// check it from the upload session (`Registry::accepts_upload_bytes`).
    async fn presign_put(&self, key: &str, size: u64, expires_in: Duration) -> Result<String>;

    /// Starts a multipart upload to `key`; returns its upload id.
    async fn start_multipart(&self, key: &str) -> Result<String>;

    /// A URL that lets its holder PUT part `part` (from 1) of a multipart upload: exactly
    /// `size` bytes, as for [`BlobStore::presign_put`].
    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part: u32,
        size: u64,
        expires_in: Duration,
    ) -> Result<String>;

    /// Joins the uploaded parts, in part-number order, into the blob at `key`. `parts`
    /// lists `(part number, ETag)` as the client saw them when it sent each part (the S3
    /// protocol); the store refuses an ETag that does not match what it holds. Without
    /// the list, the store's own list of received parts is used. `Invalid` when no part
    /// was uploaded or a listed part does not match; `NotFound` when the upload does not
    /// exist. Returns the blob's digests when the store computed them while joining (the
    /// embedded store does; S3 joins on its side, so the caller reads the blob back).
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Option<&[(u32, String)]>,
    ) -> Result<Option<Digests>>;

    /// Every blob whose key starts with `prefix` (a whole `/`-separated folder), in key
    /// order. For maintenance (garbage collection), never on a request path.
    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>>;

    /// Drops a multipart upload and the parts uploaded so far. Dropping a missing upload
    /// succeeds.
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()>;
}

/// Checks a blob key: relative, `/`-separated, no empty, `.` or `..` segments, no
/// backslash, NUL or control characters.
pub fn validate_blob_key(key: &str) -> Result<()> {
    let bad = key.is_empty()
        || key.len() > 1024
        || key.starts_with('/')
        || key.chars().any(|c| c == '\\' || c.is_control())
        || key.split('/').any(|s| s.is_empty() || s == "." || s == "..");
    if bad {
        Err(Error::Invalid(format!("invalid blob key '{}'", crate::model::printable(key))))
    } else {
        Ok(())
    }
}

/// Turns any byte source into a [`ByteStream`] of owned chunks.
pub fn stream_from_bytes(bytes: impl Into<Bytes>) -> ByteStream {
    let b: Bytes = bytes.into();
    Box::pin(futures::stream::once(async move { Ok(b) }))
}

/// Checks a range against a blob's size and returns the (start, inclusive end) to read.
pub(crate) fn resolve_range(range: Option<ByteRange>, size: u64) -> Result<Option<(u64, u64)>> {
    let Some(r) = range else { return Ok(None) };
    if r.start >= size || r.end.is_some_and(|e| e < r.start) {
        return Err(Error::RangeNotSatisfiable {
            message: format!(
                "range {}-{} is not satisfiable for a blob of {size} bytes",
                r.start,
                r.end.map(|e| e.to_string()).unwrap_or_default()
            ),
            size,
        });
    }
    Ok(Some((r.start, r.end.unwrap_or(size - 1).min(size - 1))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(validate_blob_key("blobs/sha256/ab/cd/abcd").is_ok());
        for bad in ["", "/a", "a//b", "a/../b", "..", "a\\b", "a\0b", "a/./b", "a/"] {
            assert!(validate_blob_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(resolve_range(None, 10).unwrap(), None);
        assert_eq!(resolve_range(Some(ByteRange { start: 2, end: None }), 10).unwrap(), Some((2, 9)));
        assert_eq!(resolve_range(Some(ByteRange { start: 2, end: Some(99) }), 10).unwrap(), Some((2, 9)));
        assert!(resolve_range(Some(ByteRange { start: 10, end: None }), 10).is_err());
        assert!(resolve_range(Some(ByteRange { start: 5, end: Some(4) }), 10).is_err());
    }
}
