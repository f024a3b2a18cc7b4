//! The small blobs of the filesystem blob store, in one redb file (`<root>/.small.redb`).
//!
//! A small upload written as a file of its own costs a new inode, often a new fan-out
//! directory, a rename, and two flushes (the file's and its directory's) before its
//! version can be committed. Here it is a row: writes go through one writer thread that
//! commits every write waiting for it in one durable transaction (a group commit), so a
//! put is one flush, shared by concurrent puts, and it is answered once that flush is
//! done: the same guarantee as a file's (an acknowledged put survives a power cut).
//!
//! Each row is the time it was written (seconds since the epoch, 8 bytes little-endian)
//! followed by the bytes. The store in `fs.rs` decides what goes here and keeps one
//! rule: a row shadows a file under the same key, so it removes the row whenever it
//! writes a file.
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use redb::{Database, Durability, ReadableTable, TableDefinition};

use super::embedded::{group, Writer};
use super::BlobInfo;
use crate::{Error, Result};

const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");

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

struct Request {
    ops: Vec<Op>,
    answer: tokio::sync::oneshot::Sender<Result<Vec<bool>>>,
}

pub(super) struct SmallBlobs {
    db: Arc<Database>,
    writer: Writer<Request>,
}

impl SmallBlobs {
    pub(super) fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::unavailable(
                format!("{} is in use by another depot process: stop that one first", path.display()),
                30,
            ),
            e => db_err(e),
        })?;
        let tx = db.begin_write().map_err(db_err)?;
        tx.open_table(BLOBS).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        let db = Arc::new(db);
        let for_writer = db.clone();
        let writer = Writer::spawn("depot-small-blobs", move |rx| Self::writer(&for_writer, rx))?;
        Ok(SmallBlobs { db, writer })
    }

    fn writer(db: &Database, rx: std::sync::mpsc::Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let group = group(first, &rx);
            match Self::commit(db, &group) {
                Ok(results) => {
                    for (r, result) in group.into_iter().zip(results) {
                        let _ = r.answer.send(Ok(result));
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    for r in group {
                        let _ = r.answer.send(Err(Error::Internal(message.clone())));
                    }
                }
            }
        }
    }

    /// Applies every request's operations, in order, in one durable transaction.
    fn commit(db: &Database, group: &[Request]) -> Result<Vec<Vec<bool>>> {
        let mut wtx = db.begin_write().map_err(db_err)?;
        wtx.set_durability(Durability::Immediate);
        let results = {
            let mut t = wtx.open_table(BLOBS).map_err(db_err)?;
            let mut results = Vec::with_capacity(group.len());
            for r in group {
                let mut answers = Vec::with_capacity(r.ops.len());
                for op in &r.ops {
                    answers.push(match op {
                        Op::Put { key, modified, bytes } => {
                            let mut row = Vec::with_capacity(8 + bytes.iter().map(Bytes::len).sum::<usize>());
                            row.extend_from_slice(&modified.to_le_bytes());
                            for b in bytes {
                                row.extend_from_slice(b);
                            }
                            t.insert(key.as_str(), row.as_slice()).map_err(db_err)?;
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
                results.push(answers);
            }
            results
        };
        wtx.commit().map_err(db_err)?;
        Ok(results)
    }

    /// Applies `ops` and answers once they are durable.
    pub(super) async fn apply(&self, ops: Vec<Op>) -> Result<Vec<bool>> {
        let (answer, got) = tokio::sync::oneshot::channel();
        self.writer.send(Request { ops, answer })?;
        got.await.map_err(|_| db_err("the writer stopped"))?
    }

    /// The bytes of the row under `key`. A row is at most the inline limit: read on the
    /// calling task, as the embedded table reads an item.
    pub(super) fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let rtx = self.db.begin_read().map_err(db_err)?;
        let t = rtx.open_table(BLOBS).map_err(db_err)?;
        let Some(v) = t.get(key).map_err(db_err)? else { return Ok(None) };
        let v = v.value();
        if v.len() < 8 {
            return Err(db_err(format!("the row of {key} is cut short")));
        }
        Ok(Some(Bytes::copy_from_slice(&v[8..])))
    }

    /// The size of `key`'s bytes, when it has a row.
    pub(super) fn size(&self, key: &str) -> Result<Option<u64>> {
        let rtx = self.db.begin_read().map_err(db_err)?;
        let t = rtx.open_table(BLOBS).map_err(db_err)?;
        Ok(t.get(key).map_err(db_err)?.map(|v| v.value().len().saturating_sub(8) as u64))
    }

    /// Removes `key`'s row when it has one (a read first, so that a key without one costs
    /// no write).
    pub(super) async fn clear(&self, key: &str) -> Result<()> {
        if self.size(key)?.is_some() {
            self.apply(vec![Op::Delete(key.to_string())]).await?;
        }
        Ok(())
    }

    /// Every row whose key starts with `prefix`, in key order.
    pub(super) fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>> {
        let rtx = self.db.begin_read().map_err(db_err)?;
        let t = rtx.open_table(BLOBS).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in t.range(prefix..).map_err(db_err)? {
            let (k, v) = entry.map_err(db_err)?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            let v = v.value();
            let modified = v.get(..8).map_or(0, |m| i64::from_le_bytes(m.try_into().expect("8 bytes")));
            out.push(BlobInfo { key: key.to_string(), size: v.len().saturating_sub(8) as u64, modified });
        }
        Ok(out)
    }
}
