//! A `Table` and a `BlobStore` that count the calls made through them: each wraps any
//! adapter in the same port, so that a test or a benchmark can say what an operation
//! costs in storage requests.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use std::time::Duration;

use async_trait::async_trait;

use super::{
    BlobInfo, BlobObject, BlobStore, ByteRange, ByteStream, Cond, Digests, Item, Key, Page, Query, Table, TxOp,
};
use crate::Result;

pub struct CountingTable {
    pub inner: Arc<dyn Table>,
    /// Every call: one storage request each.
    pub calls: AtomicUsize,
    pub queries: AtomicUsize,
    /// Items that queries returned.
    pub items_read: AtomicUsize,
    /// Single-item writes (put, update, delete).
    pub writes: AtomicUsize,
    /// Transactions.
    pub transactions: AtomicUsize,
}

impl CountingTable {
    pub fn new(inner: Arc<dyn Table>) -> Arc<Self> {
        Arc::new(CountingTable {
            inner,
            calls: AtomicUsize::new(0),
            queries: AtomicUsize::new(0),
            items_read: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
            transactions: AtomicUsize::new(0),
        })
    }

    /// (calls, queries, items read by queries) so far.
    pub fn snapshot(&self) -> (usize, usize, usize) {
        (self.calls.load(Ordering::SeqCst), self.queries.load(Ordering::SeqCst), self.items_read.load(Ordering::SeqCst))
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Table for CountingTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>> {
        self.count();
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Item>>> {
        self.count();
        self.inner.get_many(keys).await
    }
    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        // One request for each 25 keys, as DynamoDB takes them.
        self.calls.fetch_add(keys.len().div_ceil(25), Ordering::SeqCst);
        self.inner.delete_many(keys).await
    }
    async fn put(&self, item: Item, cond: Cond) -> Result<()> {
        self.count();
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.put(item, cond).await
    }
    async fn delete(&self, key: &Key, cond: Cond) -> Result<()> {
        self.count();
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(key, cond).await
    }
    async fn update(&self, key: &Key, set: Item, add: &[(String, i64)], cond: Cond) -> Result<Item> {
        self.count();
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.update(key, set, add, cond).await
    }
    async fn update_relaxed(&self, key: &Key, add: &[(String, i64)], cond: Cond) -> Result<Item> {
        self.count();
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.update_relaxed(key, add, cond).await
    }
    async fn transact(&self, ops: Vec<TxOp>) -> Result<()> {
        self.count();
        self.transactions.fetch_add(1, Ordering::SeqCst);
        self.inner.transact(ops).await
    }
    async fn query(&self, q: &Query) -> Result<Page> {
        self.count();
        self.queries.fetch_add(1, Ordering::SeqCst);
        let page = self.inner.query(q).await?;
        self.items_read.fetch_add(page.items.len(), Ordering::SeqCst);
        Ok(page)
    }
}

/// A `BlobStore` that counts the requests made through it, as [`CountingTable`] does
/// for the table. Presigning is not a request (the URL is signed locally), so it is
/// not counted.
pub struct CountingBlobs {
    pub inner: Arc<dyn BlobStore>,
    /// Every call that is a storage request.
    pub calls: AtomicUsize,
    /// Puts (whole objects).
    pub puts: AtomicUsize,
}

impl CountingBlobs {
    pub fn new(inner: Arc<dyn BlobStore>) -> Arc<Self> {
        Arc::new(CountingBlobs { inner, calls: AtomicUsize::new(0), puts: AtomicUsize::new(0) })
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl BlobStore for CountingBlobs {
    async fn put(&self, key: &str, body: ByteStream) -> Result<Digests> {
        self.count();
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put(key, body).await
    }

    async fn put_named_next(&self, key: &str, body: ByteStream) -> Result<Digests> {
        self.count();
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put_named_next(key, body).await
    }
    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<BlobObject> {
        self.count();
        self.inner.get(key, range).await
    }
    async fn head(&self, key: &str) -> Result<Option<u64>> {
        self.count();
        self.inner.head(key).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.count();
        self.inner.delete(key).await
    }
    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.count();
        self.inner.rename(from, to).await
    }
    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        self.count();
        self.inner.copy(from, to).await
    }
    async fn presign_get(&self, key: &str, expires_in: Duration, filename: Option<&str>) -> Result<String> {
        self.inner.presign_get(key, expires_in, filename).await
    }
    async fn presign_put(&self, key: &str, size: u64, expires_in: Duration) -> Result<String> {
        self.inner.presign_put(key, size, expires_in).await
    }
    async fn start_multipart(&self, key: &str) -> Result<String> {
        self.count();
        self.inner.start_multipart(key).await
    }
    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part: u32,
        size: u64,
        expires_in: Duration,
    ) -> Result<String> {
        self.inner.presign_part(key, upload_id, part, size, expires_in).await
    }
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Option<&[(u32, String)]>,
    ) -> Result<Option<Digests>> {
        self.count();
        self.inner.complete_multipart(key, upload_id, parts).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>> {
        self.count();
        self.inner.list(prefix).await
    }
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        self.count();
        self.inner.abort_multipart(key, upload_id).await
    }
}
