//! The small blobs of the filesystem blob store: rows of a redb table (`blobs`), in the
//! embedded table's own file when the store is opened with it (`depot serve`), else in
//! `<root>/.small.redb`.
//!
//! A small upload written as a file of its own costs a new inode, often a new fan-out
//! directory, a rename, and two flushes (the file's and its directory's) before its
//! version can be committed. Here it is a row, written by the table's writer thread,
//! which commits every write waiting for it in one transaction (a group commit). A put
//! is answered once that transaction is durable: the same guarantee as a file's (an
//! acknowledged put survives a power cut). A put whose bytes the caller's next table
//! write names ([`BlobStore::put_named_next`](super::BlobStore::put_named_next)), when
//! it shares the table's file, does not wait for the writer at all: its row is pending
//! in memory, read from there, and the writer writes it ahead of the next group it
//! commits, which holds that write (`embedded.rs`, `PendingRows`). The upload pays one
//! trip to the writer, one commit and one flush, not two of each.
//!
//! Each row is the time it was written (seconds since the epoch, 8 bytes little-endian)
//! followed by the bytes. The store in `fs.rs` decides what goes here and keeps one
//! rule: a row shadows a file under the same key, so it removes the row whenever it
//! writes a file.
use std::path::Path;

use bytes::Bytes;
use redb::{ReadableTable, TableDefinition};

use super::embedded::EmbeddedTable;
use super::BlobInfo;
use crate::{Error, Result};

/// The rows: key to time and bytes.
pub(super) const ROWS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");

fn db_err(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("small blobs: {e}"))
}

/// One change to the rows.
pub(super) enum Op {
    /// Writes `bytes` under `key`, written at `modified`.
    Put { key: String, modified: i64, bytes: Vec<Bytes> },
    /// Removes `key`'s row; answers whether there was one.
    Delete(String),
    /// Writes `from`'s row (bytes and time) under `to`, and removes `from`'s when `moving`;
    /// answers whether `from` had a row (when not, nothing changed).
    Copy { from: String, to: String, moving: bool },
}

/// A row: the time it was written, then the bytes.
fn row(modified: i64, bytes: &[Bytes]) -> Vec<u8> {
    let mut row = Vec::with_capacity(8 + bytes.iter().map(Bytes::len).sum::<usize>());
    row.extend_from_slice(&modified.to_le_bytes());
    for b in bytes {
        row.extend_from_slice(b);
    }
    row
}

/// Applies `ops` in the writer's open transaction; what each answers.
pub(super) fn apply(t: &mut redb::Table<&str, &[u8]>, ops: &[Op]) -> Result<Vec<bool>> {
    let mut answers = Vec::with_capacity(ops.len());
    for op in ops {
        answers.push(match op {
            Op::Put { key, modified, bytes } => {
                t.insert(key.as_str(), row(*modified, bytes).as_slice()).map_err(db_err)?;
                true
            }
            Op::Delete(key) => t.remove(key.as_str()).map_err(db_err)?.is_some(),
            Op::Copy { from, to, moving } => {
                let row = t.get(from.as_str()).map_err(db_err)?.map(|v| v.value().to_vec());
                match row {
                    None => false,
                    Some(row) => {
                        t.insert(to.as_str(), row.as_slice()).map_err(db_err)?;
                        if *moving && from != to {
                            t.remove(from.as_str()).map_err(db_err)?;
                        }
                        true
                    }
                }
            }
        });
    }
    Ok(answers)
}

/// The time a row was written.
fn modified(row: &[u8]) -> i64 {
    row.get(..8).map_or(0, |m| i64::from_le_bytes(m.try_into().expect("8 bytes")))
}

/// The rows of one blob store, in a table's file.
pub(super) struct SmallBlobs {
    table: EmbeddedTable,
    /// Whether the file is the registry's table's, whose commits make rows durable.
    shared: bool,
}

impl SmallBlobs {
    /// Rows in a file of their own.
    pub(super) fn open(path: &Path) -> Result<Self> {
        Ok(SmallBlobs { table: EmbeddedTable::open(path)?, shared: false })
    }

    /// Rows in the file of the table the registry writes to.
    pub(super) fn shared(table: EmbeddedTable) -> Self {
        SmallBlobs { table, shared: true }
    }

    /// Applies `ops` and answers once they are durable.
    pub(super) async fn apply(&self, ops: Vec<Op>) -> Result<Vec<bool>> {
        self.table.write_rows(ops).await
    }

    /// Writes `bytes` under `key`: durably before it answers, or, when `named_next` and
    /// the file is the table's, pending until the table's next commit (module doc).
    pub(super) async fn put(&self, key: &str, modified: i64, bytes: Vec<Bytes>, named_next: bool) -> Result<()> {
        if named_next && self.shared {
            self.table.put_row_pending(key.to_string(), row(modified, &bytes).into());
            return Ok(());
        }
        self.apply(vec![Op::Put { key: key.to_string(), modified, bytes }]).await.map(drop)
    }

    /// Runs `f` on the row under `key`: the pending one, else the committed one. Pending
    /// rows are looked at first: one leaves them only once its commit has returned, so
    /// that a row is always in one or the other.
    fn read<T>(&self, key: &str, f: impl FnOnce(&[u8]) -> T) -> Result<Option<T>> {
        if let Some(row) = self.table.pending_rows().get(key) {
            return Ok(Some(f(&row)));
        }
        let rtx = self.table.db.begin_read().map_err(db_err)?;
        let t = rtx.open_table(ROWS).map_err(db_err)?;
        Ok(t.get(key).map_err(db_err)?.map(|v| f(v.value())))
    }

    /// The bytes of the row under `key`. A row is at most the inline limit: read on the
    /// calling task, as the embedded table reads an item.
    pub(super) fn get(&self, key: &str) -> Result<Option<Bytes>> {
        match self.read(key, |v| v.get(8..).map(Bytes::copy_from_slice))? {
            None => Ok(None),
            Some(None) => Err(db_err(format!("the row of {key} is cut short"))),
            Some(bytes) => Ok(bytes),
        }
    }

    /// The size of `key`'s bytes, when it has a row.
    pub(super) fn size(&self, key: &str) -> Result<Option<u64>> {
        self.read(key, |v| v.len().saturating_sub(8) as u64)
    }

    /// Removes `key`'s row when it has one (a read first, so that a key without one costs
    /// no write).
    pub(super) async fn clear(&self, key: &str) -> Result<()> {
        if self.size(key)?.is_some() {
            self.apply(vec![Op::Delete(key.to_string())]).await?;
        }
        Ok(())
    }

    /// Every row whose key starts with `prefix`, in key order, pending ones included.
    pub(super) fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>> {
        let info = |key: &str, v: &[u8]| {
            let size = v.len().saturating_sub(8) as u64;
            (key.to_string(), BlobInfo { key: key.to_string(), size, modified: modified(v) })
        };
        let pending = self.table.pending_rows().under(prefix);
        let mut rows: std::collections::BTreeMap<String, BlobInfo> = pending.iter().map(|(k, v)| info(k, v)).collect();
        let rtx = self.table.db.begin_read().map_err(db_err)?;
        let t = rtx.open_table(ROWS).map_err(db_err)?;
        for entry in t.range(prefix..).map_err(db_err)? {
            let (k, v) = entry.map_err(db_err)?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            if !rows.contains_key(key) {
                let (k, i) = info(key, v.value());
                rows.insert(k, i);
            }
        }
        Ok(rows.into_values().collect())
    }
}
