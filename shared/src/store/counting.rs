//! A `Table` that counts the calls made through it: wraps any adapter in the same port,
//! so that a test or a benchmark can say what an operation costs in storage requests.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use super::{Cond, Item, Key, Page, Query, Table, TxOp};
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
