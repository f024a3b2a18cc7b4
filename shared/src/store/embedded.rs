//! `Table` on an embedded database file (redb).
//!
//! Items live in one redb table keyed by `PK\0SK\0`; each secondary index is a redb
//! table keyed by `GPK\0GSK\0PK\0SK\0`. Every read is one redb read transaction. Writes
//! go through one writer thread, in order: the writes waiting for it are committed in one
//! redb transaction (a group commit), each applying all or nothing and seeing the ones
//! before it, so that concurrent writers share a flush. What the thread need not do is
//! done on the caller's task: a put's item is checked and encoded there (so an item over
//! the size limit is refused before its conditions are read, as DynamoDB refuses it), and
//! of an item that a write replaces the writer decodes only the attributes the condition
//! and the index entries read. An update is patched into the stored encoding, whose other
//! attributes are copied undecoded, and the updated item goes back encoded; each write
//! goes back to its caller too, to be freed there.
//!
//! The commit is flushed (fdatasync) by a thread of its own (`flush.rs`, the file's
//! redb storage backend) while the writer applies the next group; a group's writers
//! are answered once its flush is done. A read may see a group up to one flush before
//! its writers are answered.
//!
//! The blob store's small rows (`small.rs`) share the file and the writer. A row that
//! the caller's next write names does not wait for the writer either: it is pending in
//! memory ([`PendingRows`]) and written ahead of the next group, that write's.
//!
//! Counters added through `Table::update_relaxed` (downloads) do not wait for the
//! writer: they are kept as deltas in memory, added to every read of their item, and
//! written by the writer in its next transaction, or within [`DRAIN_EVERY`] (a durable
//! one), or when the table closes. A crash loses at most that window's counts, inside
//! the port's `RELAXED_WINDOW`. Reads and the transactions that write the deltas
//! exclude each other, so that no read sees a delta twice or not at all.
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde_json::Value;

use super::flush::{FlushedFile, Flusher, Flushes};
use super::table::{check_key_str, check_tx, decode_token, encode_token};
use super::{Cond, IndexDef, Item, Key, Page, Query, SkCond, Table, TxOp, INDEXES, PK, SK};
use crate::{Error, Result};

const ITEMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("items");

/// DynamoDB's item size limit, enforced here too so that nothing works only embedded.
const MAX_ITEM_BYTES: usize = 400 * 1024;

fn index_table(def: &IndexDef) -> TableDefinition<'static, &'static [u8], ()> {
    TableDefinition::new(def.name)
}

fn db_err(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("embedded table: {e}"))
}

/// Joins key parts, each followed by a NUL, so byte order equals part-by-part order.
fn enc(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for p in parts {
        out.extend_from_slice(p.as_bytes());
        out.push(0);
    }
    out
}

fn cat(a: &[u8], b: &[u8]) -> Vec<u8> {
    [a, b].concat()
}

/// The byte bounds of a sort-key condition within a partition whose encoded prefix is `base`.
fn bounds(base: &[u8], sk: &SkCond) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    use Bound::*;
    let with = |s: &str, tail: &[u8]| cat(&cat(base, s.as_bytes()), tail);
    match sk {
        SkCond::Any => (Included(base.to_vec()), Excluded(cat(base, &[0xFF]))),
        SkCond::Prefix(p) => (Included(with(p, b"")), Excluded(with(p, &[0xFF]))),
        SkCond::Between(a, b) => (Included(with(a, &[0])), Excluded(with(b, &[1]))),
        SkCond::Ge(a) => (Included(with(a, &[0])), Excluded(cat(base, &[0xFF]))),
        SkCond::Gt(a) => (Included(with(a, &[1])), Excluded(cat(base, &[0xFF]))),
        SkCond::Le(b) => (Included(base.to_vec()), Excluded(with(b, &[1]))),
        SkCond::Lt(b) => (Included(base.to_vec()), Excluded(with(b, &[0]))),
    }
}

fn cond_holds(existing: Option<&Item>, cond: &Cond) -> bool {
    match cond {
        Cond::None => true,
        Cond::NotExists => existing.is_none(),
        Cond::Exists => existing.is_some(),
        Cond::Eq(attr, v) => existing.and_then(|i| i.get(attr)) == Some(v),
        Cond::Ge(attr, n) => existing.and_then(|i| i.get(attr)).and_then(Value::as_i64).is_some_and(|x| x >= *n),
        Cond::Lacks(attr) => existing.is_some_and(|i| !i.contains_key(attr)),
        Cond::All(cs) => cs.iter().all(|c| cond_holds(existing, c)),
    }
}

fn check_item(item: &Item) -> Result<Key> {
    let key = Key::of(item).map_err(|_| Error::Invalid("an item needs string PK and SK attributes".into()))?;
    check_key_str(&key.pk)?;
    check_key_str(&key.sk)?;
    for idx in INDEXES {
        for attr in [idx.pk, idx.sk] {
            match item.get(attr) {
                None => {}
                Some(Value::String(s)) => check_key_str(s)?,
                Some(_) => return Err(Error::Invalid(format!("index key attribute {attr} must be a string"))),
            }
        }
    }
    Ok(key)
}

fn index_entry(def: &IndexDef, item: &Item) -> Option<Vec<u8>> {
    index_entry_at(def, item, &Key::of(item).ok()?)
}

/// `def`'s entry for an item stored at `key`, when it has both of the index's attributes.
fn index_entry_at(def: &IndexDef, item: &Item, key: &Key) -> Option<Vec<u8>> {
    let gpk = item.get(def.pk)?.as_str()?;
    let gsk = item.get(def.sk)?.as_str()?;
    Some(enc(&[gpk, gsk, &key.pk, &key.sk]))
}

/// The table file, shared by every task of the process. Writes go through one writer
/// thread, which commits every write waiting for it in one redb transaction (a group
/// commit): each is answered once that transaction is durable, so concurrent writers
/// share its flushes.
#[derive(Clone)]
pub struct EmbeddedTable {
    pub(super) db: Arc<Database>,
    writer: Arc<Writer>,
    deltas: Arc<Deltas>,
    pending: Arc<PendingRows>,
}

/// What waits for the writer: a write's operations, or changes to the blob store's rows
/// (`small.rs`), each with where its answer goes.
enum Request {
    Write { write: Write, answer: tokio::sync::oneshot::Sender<Answer> },
    Rows { ops: Vec<super::small::Op>, answer: tokio::sync::oneshot::Sender<Result<Vec<bool>>> },
}

/// What a write's result is: each update's item, encoded, at the update's place.
type Written = Result<Vec<Option<Vec<u8>>>>;

/// A write's answer: its result, and the write itself, handed back so that the caller's
/// task, not the one writer thread, frees it.
type Answer = (Written, Write);

/// What a group's commit answers: each write's result, and each row change's.
struct Outcome {
    writes: Vec<Written>,
    rows: Vec<Vec<bool>>,
}

/// A group's writes and row changes, as the writer commits them, after the rows that were
/// pending when it began (see [`PendingRows`]).
#[derive(Default)]
struct Batch<'a> {
    pending: Vec<PendingRow>,
    writes: Vec<&'a Write>,
    rows: Vec<&'a [super::small::Op]>,
}

/// A pending row: its key, the number it was put under, and the row.
type PendingRow = (String, u64, Arc<[u8]>);

/// Blob rows put without waiting for the writer (`small.rs`: a small blob that the
/// caller's next table write names). Each stays here, and is read from here, until a
/// commit holds it: the writer takes what is here when it begins a group and writes it
/// ahead of the group's requests, so the write that names a row, sent after the row was
/// put here, commits with it (one commit, one flush) or after it. A row leaves once the
/// commit that wrote it has returned, unless it was put again meanwhile; rows no write
/// follows are committed, durably, within [`DRAIN_EVERY`], or when the table closes.
#[derive(Default)]
pub(super) struct PendingRows {
    rows: std::sync::Mutex<(u64, std::collections::BTreeMap<String, (u64, Arc<[u8]>)>)>,
}

impl PendingRows {
    fn is_empty(&self) -> bool {
        self.rows.lock().expect("pending rows").1.is_empty()
    }

    fn put(&self, key: String, row: Arc<[u8]>) {
        let mut rows = self.rows.lock().expect("pending rows");
        rows.0 += 1;
        let n = rows.0;
        rows.1.insert(key, (n, row));
    }

    /// The row pending under `key`.
    pub(super) fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        self.rows.lock().expect("pending rows").1.get(key).map(|(_, row)| row.clone())
    }

    /// Every row pending under a key that starts with `prefix`, in key order.
    pub(super) fn under(&self, prefix: &str) -> Vec<(String, Arc<[u8]>)> {
        let rows = self.rows.lock().expect("pending rows");
        rows.1
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (_, row))| (k.clone(), row.clone()))
            .collect()
    }

    /// What is pending now; it stays until [`Self::written`].
    fn snapshot(&self) -> Vec<PendingRow> {
        let rows = self.rows.lock().expect("pending rows");
        rows.1.iter().map(|(k, (n, row))| (k.clone(), *n, row.clone())).collect()
    }

    /// Forgets the rows a commit wrote, but not those put again since.
    fn written(&self, taken: &[PendingRow]) {
        let mut rows = self.rows.lock().expect("pending rows");
        for (key, n, _) in taken {
            if rows.1.get(key).is_some_and(|(m, _)| m == n) {
                rows.1.remove(key);
            }
        }
    }
}

/// How often the writer writes the counters' deltas when nothing else comes (well
/// within `RELAXED_WINDOW`, the transaction's flush included).
pub const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Counters added through `update_relaxed`, not written yet: per item, the amounts to
/// add. `gate` is held for reading by every read and every relaxed add, and for writing
/// by the transaction that writes them, from taking them until it is committed.
#[derive(Default)]
struct Deltas {
    gate: std::sync::RwLock<()>,
    pending: std::sync::Mutex<std::collections::HashMap<Key, Vec<(String, i64)>>>,
}

impl Deltas {
    fn is_empty(&self) -> bool {
        self.pending.lock().expect("deltas").is_empty()
    }

    /// Adds what is pending for its key to an item read from the database.
    fn merge(&self, key: &Key, item: &mut Item) {
        if let Some(adds) = self.pending.lock().expect("deltas").get(key) {
            add_to_item(item, adds);
        }
    }

    /// Takes every pending delta, as the writes that add them (each refused, and so
    /// dropped, when its item is gone: a deleted item's counts go with it).
    fn take(&self) -> Vec<Write> {
        let pending = std::mem::take(&mut *self.pending.lock().expect("deltas"));
        pending
            .into_iter()
            // Each key was read, and so checked, when its delta was added.
            .filter_map(|(key, add)| {
                Write::new(vec![TxOp::Update { key, set: Item::new(), add, cond: Cond::Exists }]).ok()
            })
            .collect()
    }

    /// Puts back deltas a failed transaction did not write.
    fn restore(&self, writes: Vec<Write>) {
        let mut pending = self.pending.lock().expect("deltas");
        for op in writes.into_iter().flat_map(|w| w.ops) {
            if let TxOp::Update { key, add, .. } = op {
                add_into(pending.entry(key).or_default(), &add);
            }
        }
    }
}

/// Adds pending deltas to an item's counters (an attribute missing counts from 0).
fn add_to_item(item: &mut Item, adds: &[(String, i64)]) {
    for (attr, delta) in adds {
        let cur = item.get(attr).and_then(Value::as_i64).unwrap_or(0);
        item.insert(attr.clone(), Value::from(cur.saturating_add(*delta)));
    }
}

/// Sums `add` into `into`, attribute by attribute.
fn add_into(into: &mut Vec<(String, i64)>, add: &[(String, i64)]) {
    for (attr, delta) in add {
        match into.iter_mut().find(|(a, _)| a == attr) {
            Some((_, d)) => *d = d.saturating_add(*delta),
            None => into.push((attr.clone(), *delta)),
        }
    }
}

/// The writer thread: it ends when the last handle's sender goes, and the last handle
/// waits for it, so that the file is free to open again once the table is dropped.
struct Writer {
    requests: Option<std::sync::mpsc::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The file's flusher, which ends after the writer (`flush.rs`).
    flusher: Option<Flusher>,
}

impl Writer {
    /// Starts the thread `name`, which runs `run` on the requests sent to it, with the
    /// file's flusher.
    fn spawn(
        name: &str,
        flusher: Flusher,
        run: impl FnOnce(std::sync::mpsc::Receiver<Request>) + Send + 'static,
    ) -> Result<Self> {
        let (requests, rx) = std::sync::mpsc::channel::<Request>();
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || run(rx)).map_err(db_err)?;
        Ok(Writer { requests: Some(requests), thread: Some(thread), flusher: Some(flusher) })
    }

    /// Hands a request to the thread.
    fn send(&self, request: Request) -> Result<()> {
        let requests = self.requests.as_ref().ok_or_else(|| db_err("the table is closed"))?;
        requests.send(request).map_err(|_| db_err("the table's writer stopped"))
    }
}

/// `first` and the requests waiting behind it, at most [`GROUP_MAX`]: what one
/// transaction commits together.
fn group(first: Request, rx: &std::sync::mpsc::Receiver<Request>) -> Vec<Request> {
    let mut group = vec![first];
    while group.len() < GROUP_MAX {
        match rx.try_recv() {
            Ok(r) => group.push(r),
            Err(_) => break,
        }
    }
    group
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // What the writer's last commits asked for is flushed before this returns.
        drop(self.flusher.take());
    }
}

/// The most writes committed together.
const GROUP_MAX: usize = 256;

/// One write as the writer runs it: its operations, with each put's item prepared on
/// the caller's task ([`Encoded`]), so that the one writer thread only checks and stores.
struct Write {
    ops: Vec<TxOp>,
    /// A put's encoding, at the put's place; `None` for the other operations.
    puts: Vec<Option<Encoded>>,
    /// An update's set values, encoded, at the update's place; empty for the others.
    sets: Vec<Vec<RawSet>>,
}

/// A put's item as stored: its key, its encoding (within the size limit), and its entry
/// in each secondary index.
struct Encoded {
    key: Key,
    bytes: Vec<u8>,
    entries: Vec<Option<Vec<u8>>>,
}

impl Write {
    /// Checks every operation's key and encodes the puts of `ops`: what the port refuses
    /// (a bad key, an item over the size limit) refuses this write alone, before it
    /// reaches the writer, whose errors fail its whole group.
    fn new(ops: Vec<TxOp>) -> Result<Self> {
        let puts = ops
            .iter()
            .map(|op| match op {
                TxOp::Put { item, .. } => Encoded::new(item).map(Some),
                TxOp::Delete { key, .. } | TxOp::Check { key, .. } | TxOp::Update { key, .. } => {
                    check_key_str(&key.pk)?;
                    check_key_str(&key.sk)?;
                    Ok(None)
                }
            })
            .collect::<Result<_>>()?;
        let sets = ops
            .iter()
            .map(|op| match op {
                TxOp::Update { set, .. } => encode_set(set),
                _ => Ok(Vec::new()),
            })
            .collect::<Result<_>>()?;
        Ok(Write { ops, puts, sets })
    }
}

impl Encoded {
    fn new(item: &Item) -> Result<Self> {
        let key = check_item(item)?;
        let bytes = encode_item(&key, item)?;
        let entries = INDEXES.iter().map(|d| index_entry(d, item)).collect();
        Ok(Encoded { key, bytes, entries })
    }
}

/// An item's encoding, refused over the size limit.
fn encode_item(key: &Key, item: &Item) -> Result<Vec<u8>> {
    let bytes = serde_json::to_vec(item).map_err(db_err)?;
    if bytes.len() > MAX_ITEM_BYTES {
        return Err(too_large(key, bytes.len()));
    }
    Ok(bytes)
}

/// The refusal of an item whose encoding is `bytes` long, over the size limit.
fn too_large(key: &Key, bytes: usize) -> Error {
    tracing::warn!(pk = %key.pk, sk = %key.sk, bytes, "item over the size limit refused");
    Error::TooLarge(super::table::ITEM_TOO_LARGE.into())
}

/// An attribute an update sets, its value encoded (`None`: the attribute is removed).
type RawSet = (String, Option<Box<serde_json::value::RawValue>>);

/// The values an update sets, encoded (on the caller's task, by [`Write::new`]).
fn encode_set(set: &Item) -> Result<Vec<RawSet>> {
    set.iter()
        .map(|(k, v)| {
            let raw = (!v.is_null()).then(|| serde_json::value::to_raw_value(v)).transpose().map_err(db_err)?;
            Ok((k.clone(), raw))
        })
        .collect()
}

/// An update applied to an item's encoding (`stored`, as [`encode_item`] wrote it)
/// without decoding the attributes it leaves alone, which are copied as they are. Returns
/// the new encoding, and the attributes the secondary indexes read, checked as
/// [`check_item`] checks them; `None` when `stored` names an attribute with escapes, which
/// this does not take apart (the caller then decodes the whole item). The checks and
/// refusals are [`Tx::updated`]'s.
fn patch_encoded(set: &[RawSet], add: &[(String, i64)], stored: &[u8]) -> Result<Option<(Vec<u8>, Item)>> {
    use serde_json::value::RawValue;
    use std::collections::BTreeMap;
    /// An attribute's value: borrowed as stored or as the update's set encoded it, or a
    /// sum the update computed.
    type Raw<'a> = std::borrow::Cow<'a, RawValue>;
    // Sorted as `Item`'s own map sorts, so the encoding keeps the order a decode and
    // encode would give it.
    let Ok(stored) = serde_json::from_slice::<BTreeMap<&str, &RawValue>>(stored) else {
        return Ok(None);
    };
    let mut attrs: BTreeMap<&str, Raw> = stored.into_iter().map(|(k, v)| (k, Raw::Borrowed(v))).collect();
    for (k, v) in set {
        if k == PK || k == SK {
            return Err(Error::Internal("an update cannot change PK or SK".into()));
        }
        match v {
            None => attrs.remove(k.as_str()),
            Some(v) => attrs.insert(k, Raw::Borrowed(v)),
        };
    }
    for (attr, delta) in add {
        let cur = match attrs.get(attr.as_str()) {
            None => 0,
            Some(v) => serde_json::from_str::<Value>(v.get())
                .ok()
                .and_then(|v| v.as_i64())
                .ok_or_else(|| Error::Invalid(format!("attribute {attr} is not a number")))?,
        };
        let sum = cur.checked_add(*delta).ok_or_else(|| Error::Invalid(format!("attribute {attr} overflows")))?;
        attrs.insert(attr, Raw::Owned(serde_json::value::to_raw_value(&sum).map_err(db_err)?));
    }
    let mut indexed = Item::new();
    for attr in INDEXES.iter().flat_map(|d| [d.pk, d.sk]) {
        if let Some(v) = attrs.get(attr) {
            match serde_json::from_str::<Value>(v.get()).map_err(db_err)? {
                Value::String(s) => {
                    check_key_str(&s)?;
                    indexed.insert(attr.to_string(), Value::String(s));
                }
                _ => return Err(Error::Invalid(format!("index key attribute {attr} must be a string"))),
            }
        }
    }
    Ok(Some((serde_json::to_vec(&attrs).map_err(db_err)?, indexed)))
}

/// The attributes a condition reads.
fn cond_attrs<'a>(cond: &'a Cond, out: &mut Vec<&'a str>) {
    match cond {
        Cond::None | Cond::NotExists | Cond::Exists => {}
        Cond::Eq(attr, _) | Cond::Ge(attr, _) | Cond::Lacks(attr) => out.push(attr),
        Cond::All(cs) => cs.iter().for_each(|c| cond_attrs(c, out)),
    }
}

/// Decodes only the `wanted` attributes of an encoded item, skipping the others' values
/// unread into memory: what a condition and the index entries of an item that is
/// replaced or deleted need, at a fraction of a whole decode's cost.
fn decode_attrs(bytes: &[u8], wanted: &[&str]) -> Result<Item> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Attrs<'w>(&'w [&'w str]);
    /// A key: its name when it is wanted.
    struct Name<'w>(&'w [&'w str]);
    impl<'de> DeserializeSeed<'de> for Name<'_> {
        type Value = Option<String>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }
    }
    impl<'de> Visitor<'de> for Name<'_> {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an attribute name")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
            Ok(self.0.contains(&v).then(|| v.to_string()))
        }
    }
    impl<'de> Visitor<'de> for Attrs<'_> {
        type Value = Item;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an item")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Item, A::Error> {
            let mut item = Item::new();
            while let Some(name) = map.next_key_seed(Name(self.0))? {
                match name {
                    Some(name) => {
                        item.insert(name, map.next_value::<Value>()?);
                    }
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(item)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let item = de.deserialize_map(Attrs(wanted)).map_err(db_err)?;
    de.end().map_err(db_err)?;
    Ok(item)
}

struct Tx<'a> {
    items: redb::Table<'a, &'static [u8], &'static [u8]>,
    indexes: Vec<(&'static IndexDef, redb::Table<'a, &'static [u8], ()>)>,
}

impl Tx<'_> {
    /// The attributes of the item at `key` (checked by [`Write::new`]) that `cond` and
    /// the index entries read.
    fn read_attrs(&self, key: &Key, cond: &Cond) -> Result<Option<Item>> {
        match self.items.get(enc(&[&key.pk, &key.sk]).as_slice()).map_err(db_err)? {
            Some(v) => Ok(Some(decode_attrs(v.value(), &Self::wanted(cond))?)),
            None => Ok(None),
        }
    }

    /// [`Self::read_attrs`], and the item's encoding.
    fn read_attrs_and_bytes(&self, key: &Key, cond: &Cond) -> Result<(Option<Item>, Option<Vec<u8>>)> {
        match self.items.get(enc(&[&key.pk, &key.sk]).as_slice()).map_err(db_err)? {
            Some(v) => Ok((Some(decode_attrs(v.value(), &Self::wanted(cond))?), Some(v.value().to_vec()))),
            None => Ok((None, None)),
        }
    }

    /// The attributes a condition and the index entries read.
    fn wanted(cond: &Cond) -> Vec<&str> {
        let mut wanted: Vec<&str> = INDEXES.iter().flat_map(|d| [d.pk, d.sk]).collect();
        cond_attrs(cond, &mut wanted);
        wanted
    }

    /// Replaces (or removes, when `new` is None) the item at `key`, keeping indexes in
    /// step. `new` is the item's encoding and its index entries, checked before anything
    /// was written.
    fn write(&mut self, key: &Key, old: Option<&Item>, new: Option<(&[u8], &[Option<Vec<u8>>])>) -> Result<()> {
        let k = enc(&[&key.pk, &key.sk]);
        for (i, (def, table)) in self.indexes.iter_mut().enumerate() {
            let was = old.and_then(|o| index_entry_at(def, o, key));
            let is = new.and_then(|(_, entries)| entries.get(i).cloned().flatten());
            // An entry that stays (a counter's update) is left alone.
            if was == is {
                continue;
            }
            if let Some(e) = was {
                table.remove(e.as_slice()).map_err(db_err)?;
            }
            if let Some(e) = is {
                table.insert(e.as_slice(), ()).map_err(db_err)?;
            }
        }
        match new {
            Some((bytes, _)) => {
                self.items.insert(k.as_slice(), bytes).map_err(db_err)?;
            }
            None => {
                self.items.remove(k.as_slice()).map_err(db_err)?;
            }
        }
        Ok(())
    }

    /// The encoding of the item an update leaves at `key` over the one stored (`stored`),
    /// and its index entries, checked as the port requires. The stored encoding is
    /// patched ([`patch_encoded`]), not decoded: what the update leaves alone is copied as
    /// it is, so that a large item (a package summary's history) costs the one writer
    /// little more than a small one.
    #[cfg(test)]
    fn updated_encoding(
        key: &Key,
        set: &Item,
        add: &[(String, i64)],
        stored: Option<&[u8]>,
    ) -> Result<(Vec<u8>, Vec<Option<Vec<u8>>>)> {
        Self::updated_encoding_raw(key, set, &encode_set(set)?, add, stored)
    }

    /// [`Self::updated_encoding`], with the set values encoded already (`raw`, by
    /// [`Write::new`] on the caller's task): what the writer runs.
    fn updated_encoding_raw(
        key: &Key,
        set: &Item,
        raw: &[RawSet],
        add: &[(String, i64)],
        stored: Option<&[u8]>,
    ) -> Result<(Vec<u8>, Vec<Option<Vec<u8>>>)> {
        if let Some(bytes) = stored {
            if let Some((bytes, indexed)) = patch_encoded(raw, add, bytes)? {
                if bytes.len() > MAX_ITEM_BYTES {
                    return Err(too_large(key, bytes.len()));
                }
                let entries = INDEXES.iter().map(|d| index_entry_at(d, &indexed, key)).collect();
                return Ok((bytes, entries));
            }
        }
        let old = stored.map(|b| serde_json::from_slice(b).map_err(db_err)).transpose()?;
        let item = Self::updated(key, set, add, old.as_ref())?;
        let bytes = encode_item(key, &item)?;
        let entries = INDEXES.iter().map(|d| index_entry(d, &item)).collect();
        Ok((bytes, entries))
    }

    /// The item an update leaves at `key`, over `old`, checked as the port requires.
    fn updated(key: &Key, set: &Item, add: &[(String, i64)], old: Option<&Item>) -> Result<Item> {
        let mut item = old.cloned().unwrap_or_else(|| key.item());
        for (k, v) in set {
            if k == PK || k == SK {
                return Err(Error::Internal("an update cannot change PK or SK".into()));
            }
            if v.is_null() {
                item.remove(k);
            } else {
                item.insert(k.clone(), v.clone());
            }
        }
        for (attr, delta) in add {
            let cur = match item.get(attr) {
                None => 0,
                Some(v) => v.as_i64().ok_or_else(|| Error::Invalid(format!("attribute {attr} is not a number")))?,
            };
            let sum = cur.checked_add(*delta).ok_or_else(|| Error::Invalid(format!("attribute {attr} overflows")))?;
            item.insert(attr.clone(), Value::from(sum));
        }
        check_item(&item)?;
        Ok(item)
    }

    /// Runs one write's operations in the open transaction: every condition is checked
    /// and every update computed and encoded, then all of them written, or none is. The
    /// outer error is one that leaves the transaction unusable (storage failed while
    /// writing); the inner one refuses this write alone. The results hold each update's
    /// item, encoded (`None` for the other operations): the caller decodes it, if it
    /// wants it, on its own task.
    fn run(&mut self, w: &Write) -> Result<Result<Vec<Option<Vec<u8>>>>> {
        let mut planned = Vec::with_capacity(w.ops.len());
        let mut failed = Vec::new();
        for (i, op) in w.ops.iter().enumerate() {
            let (key, cond) = match (op, w.puts.get(i).and_then(Option::as_ref)) {
                (TxOp::Put { cond, .. }, Some(put)) => (&put.key, cond),
                (TxOp::Put { .. }, None) => return Err(db_err("a put reached the writer unprepared")),
                (TxOp::Delete { key, cond } | TxOp::Check { key, cond } | TxOp::Update { key, cond, .. }, _) => {
                    (key, cond)
                }
            };
            // Each reads what its condition and the index entries read; an update keeps
            // the stored encoding too, which it patches.
            let (old, stored) = match op {
                TxOp::Update { .. } => self.read_attrs_and_bytes(key, cond)?,
                _ => (self.read_attrs(key, cond)?, None),
            };
            if !cond_holds(old.as_ref(), cond) {
                failed.push(i);
            }
            planned.push((key, old, stored));
        }
        if !failed.is_empty() {
            return Ok(Err(Error::Conflict { message: format!("condition failed on operations {failed:?}"), failed }));
        }
        let mut updates = Vec::with_capacity(w.ops.len());
        for (i, (op, (key, _, stored))) in w.ops.iter().zip(&planned).enumerate() {
            updates.push(match op {
                TxOp::Update { set, add, .. } => {
                    match Self::updated_encoding_raw(key, set, &w.sets[i], add, stored.as_deref()) {
                        Ok(update) => Some(update),
                        Err(e) => return Ok(Err(e)),
                    }
                }
                _ => None,
            });
        }
        let mut results = Vec::with_capacity(w.ops.len());
        for (i, (op, ((key, old, _), update))) in w.ops.iter().zip(planned.iter().zip(updates)).enumerate() {
            match (op, update) {
                (TxOp::Check { .. }, _) => results.push(None),
                (TxOp::Delete { .. }, _) => {
                    self.write(key, old.as_ref(), None)?;
                    results.push(None);
                }
                (TxOp::Put { .. }, _) => {
                    let put = w.puts[i].as_ref().expect("a put prepared");
                    self.write(key, old.as_ref(), Some((&put.bytes, &put.entries)))?;
                    results.push(None);
                }
                (TxOp::Update { .. }, Some((bytes, entries))) => {
                    self.write(key, old.as_ref(), Some((&bytes, &entries)))?;
                    results.push(Some(bytes));
                }
                (TxOp::Update { .. }, None) => return Err(db_err("an update without its item")),
            }
        }
        Ok(Ok(results))
    }
}

impl EmbeddedTable {
    /// Opens (or creates) the database file and its tables.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let opened = FlushedFile::open(file)
            .and_then(|(backend, flusher)| Ok((redb::Builder::new().create_with_backend(backend)?, flusher)));
        let (db, flusher) = opened.map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::unavailable(
                format!(
                    "{} is in use by another depot process (depot serve, gc or verify): stop that one first; \
                     the embedded database takes one process at a time",
                    path.display()
                ),
                30,
            ),
            e => db_err(e),
        })?;
        let tx = db.begin_write().map_err(db_err)?;
        tx.open_table(ITEMS).map_err(db_err)?;
        tx.open_table(super::small::ROWS).map_err(db_err)?;
        for def in INDEXES {
            tx.open_table(index_table(def)).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        flusher.flushes.settle().map_err(db_err)?;
        let db = Arc::new(db);
        let deltas = Arc::new(Deltas::default());
        let pending = Arc::new(PendingRows::default());
        let (for_writer, deltas_for_writer, pending_for_writer) = (db.clone(), deltas.clone(), pending.clone());
        let flushes = flusher.flushes.clone();
        let writer = Arc::new(Writer::spawn("depot-table-writer", flusher, move |rx| {
            Self::writer(&for_writer, &deltas_for_writer, &pending_for_writer, &flushes, rx)
        })?);
        Ok(EmbeddedTable { db, writer, deltas, pending })
    }

    /// Writes every pending delta in a transaction of its own, committed without a flush
    /// while no read runs (so that a read sees each delta once: pending or written); the
    /// next durable commit makes them durable. Deltas it did not write are kept.
    fn write_deltas(db: &Database, deltas: &Deltas) -> Result<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        let _gate = deltas.gate.write().expect("deltas gate");
        let taken = deltas.take();
        let writes = taken.iter().collect();
        let batch = Batch { writes, ..Batch::default() };
        if let Err(e) = Self::commit_group(db, &batch, Durability::None) {
            deltas.restore(taken);
            return Err(e);
        }
        Ok(())
    }

    /// Commits durably the pending deltas and rows, and whatever was committed without a
    /// flush before: they are on disk once this returns.
    fn commit_durably(db: &Database, deltas: &Deltas, pending: &PendingRows) -> Result<()> {
        Self::write_deltas(db, deltas)?;
        Self::commit_pending(db, pending, &mut Batch::default()).map(drop)
    }

    /// The writer thread. Each round takes the requests waiting, writes the counters'
    /// deltas (a transaction of their own, see [`Self::write_deltas`]), then the pending
    /// rows and the requests in one transaction, and commits it durably. Every
    /// [`DRAIN_EVERY`] with nothing else to do, it commits durably what is pending or was
    /// committed without a flush; when the last handle goes, it does so and ends.
    fn writer(
        db: &Database,
        deltas: &Deltas,
        pending: &PendingRows,
        flushes: &Flushes,
        rx: std::sync::mpsc::Receiver<Request>,
    ) {
        use std::sync::mpsc::RecvTimeoutError;
        let mut last_drain = std::time::Instant::now();
        loop {
            let first = match rx.recv_timeout(DRAIN_EVERY.saturating_sub(last_drain.elapsed())) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => {
                    last_drain = std::time::Instant::now();
                    if !deltas.is_empty() || !pending.is_empty() {
                        if let Err(e) = Self::commit_durably(db, deltas, pending) {
                            tracing::warn!(error = %e, "writing counters and rows failed; kept for the next try");
                        }
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    if let Err(e) = Self::commit_durably(db, deltas, pending) {
                        tracing::warn!(error = %e, "writing the last counters and rows failed");
                    }
                    if let Err(e) = flushes.settle() {
                        tracing::warn!(error = %e, "flushing the last commits failed");
                    }
                    return;
                }
            };
            let waiting = group(first, &rx);
            if let Err(e) = Self::write_deltas(db, deltas) {
                Self::fail(waiting, &e);
                continue;
            }
            let mut batch = Batch::default();
            for r in &waiting {
                match r {
                    Request::Write { write, .. } => batch.writes.push(write),
                    Request::Rows { ops, .. } => batch.rows.push(ops),
                }
            }
            let committed = Self::commit_pending(db, pending, &mut batch);
            drop(batch);
            match committed {
                // Answered once the flush after this commit is done, while this thread
                // goes on with the next group.
                Ok(outcome) => {
                    last_drain = std::time::Instant::now();
                    flushes.after(Box::new(move |flushed| Self::answer(waiting, outcome, flushed)));
                }
                // The pending rows stay pending (redb takes no write after a failed
                // commit until it is opened again).
                Err(e) => Self::fail(waiting, &e),
            }
        }
    }

    /// Answers a group's requests with its commit's outcome, once the flush after it
    /// is done; every one with the error, if that flush failed.
    fn answer(waiting: Vec<Request>, outcome: Outcome, flushed: std::io::Result<()>) {
        if let Err(e) = flushed {
            return Self::fail(waiting, &db_err(e));
        }
        let (mut writes, mut rows) = (outcome.writes.into_iter(), outcome.rows.into_iter());
        for r in waiting {
            match r {
                Request::Write { answer, write } => {
                    let _ = answer.send((writes.next().expect("a result a write"), write));
                }
                Request::Rows { answer, .. } => {
                    let _ = answer.send(Ok(rows.next().expect("a result a row change")));
                }
            }
        }
    }

    /// Answers every request with `e`.
    fn fail(requests: Vec<Request>, e: &Error) {
        let message = e.to_string();
        for r in requests {
            let failed = Error::Internal(message.clone());
            match r {
                Request::Write { answer, write } => drop(answer.send((Err(failed), write))),
                Request::Rows { answer, .. } => drop(answer.send(Err(failed))),
            }
        }
    }

    /// Commits durably the rows pending now, then `batch`, and forgets those rows.
    fn commit_pending(db: &Database, pending: &PendingRows, batch: &mut Batch) -> Result<Outcome> {
        batch.pending = pending.snapshot();
        let outcome = Self::commit_group(db, batch, Durability::Immediate)?;
        pending.written(&batch.pending);
        Ok(outcome)
    }

    /// Runs the batch's pending rows, its row changes, then each write, in one write
    /// transaction, in order (each sees the ones before it), and commits: the results of
    /// all, or an error for all when nothing was committed.
    fn commit_group(db: &Database, batch: &Batch, durability: Durability) -> Result<Outcome> {
        let mut wtx = db.begin_write().map_err(db_err)?;
        wtx.set_durability(durability);
        let outcome = Self::apply_batch(&wtx, batch)?;
        wtx.commit().map_err(db_err)?;
        Ok(outcome)
    }

    /// Applies the batch's pending rows, its row changes, then each write, in the open
    /// transaction.
    fn apply_batch(wtx: &redb::WriteTransaction, batch: &Batch) -> Result<Outcome> {
        let rows = if batch.rows.is_empty() && batch.pending.is_empty() {
            vec![]
        } else {
            let mut table = wtx.open_table(super::small::ROWS).map_err(db_err)?;
            for (key, _, row) in &batch.pending {
                table.insert(key.as_str(), &row[..]).map_err(db_err)?;
            }
            batch.rows.iter().map(|ops| super::small::apply(&mut table, ops)).collect::<Result<_>>()?
        };
        let mut writes = Vec::with_capacity(batch.writes.len());
        if !batch.writes.is_empty() {
            let mut tx = Tx {
                items: wtx.open_table(ITEMS).map_err(db_err)?,
                indexes: INDEXES
                    .iter()
                    .map(|d| wtx.open_table(index_table(d)).map(|t| (d, t)))
                    .collect::<Result<_, _>>()
                    .map_err(db_err)?,
            };
            for w in &batch.writes {
                // A storage failure mid-write drops the transaction: nothing of the group lands.
                writes.push(tx.run(w)?);
            }
        }
        Ok(Outcome { writes, rows })
    }

    /// Hands `ops` to the writer, which applies every one or none, and answers once the
    /// group it went in is durable.
    async fn write(&self, ops: Vec<TxOp>) -> Written {
        let write = Write::new(ops)?;
        let (answer, got) = tokio::sync::oneshot::channel();
        self.writer.send(Request::Write { write, answer })?;
        let (written, write) = got.await.map_err(|_| db_err("the table's writer stopped"))?;
        drop(write);
        written
    }

    /// Hands changes of the blob store's rows to the writer; answers once they are
    /// committed and flushed.
    pub(super) async fn write_rows(&self, ops: Vec<super::small::Op>) -> Result<Vec<bool>> {
        let (answer, got) = tokio::sync::oneshot::channel();
        self.writer.send(Request::Rows { ops, answer })?;
        got.await.map_err(|_| db_err("the table's writer stopped"))?
    }

    /// Puts a blob's row without waiting: readable at once (through [`Self::pending_rows`]),
    /// and committed with the next write, which must not be answered before it
    /// ([`PendingRows`]).
    pub(super) fn put_row_pending(&self, key: String, row: Arc<[u8]>) {
        self.pending.put(key, row);
    }

    /// The rows put without waiting and not committed yet.
    pub(super) fn pending_rows(&self) -> &PendingRows {
        &self.pending
    }

    /// The item as written in the database, without pending deltas.
    fn read_committed(&self, key: &Key) -> Result<Option<Item>> {
        let rtx = self.db.begin_read().map_err(db_err)?;
        let t = rtx.open_table(ITEMS).map_err(db_err)?;
        check_key_str(&key.pk)?;
        check_key_str(&key.sk)?;
        match t.get(enc(&[&key.pk, &key.sk]).as_slice()).map_err(db_err)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(db_err)?)),
            None => Ok(None),
        }
    }

    fn query_sync(db: &Database, deltas: &Deltas, q: &Query) -> Result<Page> {
        let _gate = deltas.gate.read().expect("deltas gate");
        let mut page = Self::query_committed(db, q)?;
        if !deltas.is_empty() {
            for item in &mut page.items {
                if let Ok(key) = Key::of(item) {
                    deltas.merge(&key, item);
                }
            }
        }
        Ok(page)
    }

    fn query_committed(db: &Database, q: &Query) -> Result<Page> {
        check_key_str(&q.pk)?;
        let base = enc(&[&q.pk]);
        let (mut lo, mut hi) = bounds(&base, &q.sk);
        if let Some(token) = &q.start {
            let t = decode_token(token, q)?;
            let at = match q.index {
                None => enc(&[&t[PK], &t[SK]]),
                Some(name) => {
                    let d = super::index_def(name)?;
                    enc(&[&t[d.pk], &t[d.sk], &t[PK], &t[SK]])
                }
            };
            if q.forward {
                lo = Bound::Excluded(at);
            } else {
                hi = Bound::Excluded(at);
            }
        }
        let limit = q.limit.map(|l| l as usize).unwrap_or(usize::MAX);
        if limit == 0 {
            return Err(Error::Invalid("a query limit must be at least 1".into()));
        }
        let rtx = db.begin_read().map_err(db_err)?;
        let items_t = rtx.open_table(ITEMS).map_err(db_err)?;
        let range = (lo.as_ref().map(|v| v.as_slice()), hi.as_ref().map(|v| v.as_slice()));
        let mut items = Vec::new();
        match q.index {
            None => {
                let iter = items_t.range::<&[u8]>(range).map_err(db_err)?;
                let iter: Box<dyn Iterator<Item = _>> = if q.forward { Box::new(iter) } else { Box::new(iter.rev()) };
                for entry in iter.take(limit) {
                    let (_, v) = entry.map_err(db_err)?;
                    items.push(serde_json::from_slice::<Item>(v.value()).map_err(db_err)?);
                }
            }
            Some(name) => {
                let def = super::index_def(name)?;
                let idx = rtx.open_table(index_table(def)).map_err(db_err)?;
                let iter = idx.range::<&[u8]>(range).map_err(db_err)?;
                let iter: Box<dyn Iterator<Item = _>> = if q.forward { Box::new(iter) } else { Box::new(iter.rev()) };
                for entry in iter.take(limit) {
                    let (k, _) = entry.map_err(db_err)?;
                    let parts: Vec<&[u8]> = k.value().split(|b| *b == 0).collect();
                    let base_key = [parts[2], &[0], parts[3], &[0]].concat();
                    let v = items_t
                        .get(base_key.as_slice())
                        .map_err(db_err)?
                        .ok_or_else(|| db_err("index entry without item"))?;
                    items.push(serde_json::from_slice::<Item>(v.value()).map_err(db_err)?);
                }
            }
        }
        let next = if items.len() == limit {
            let (pk_attr, sk_attr) = q.key_attrs()?;
            let last = items.last().expect("a full page is not empty");
            let mut attrs = serde_json::Map::new();
            for a in [pk_attr, sk_attr, PK, SK] {
                attrs.insert(a.to_string(), last.get(a).cloned().unwrap_or(Value::Null));
            }
            Some(encode_token(&attrs))
        } else {
            None
        };
        Ok(Page { items, next })
    }
}

#[async_trait]
impl Table for EmbeddedTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>> {
        // One item, at most 400 KB: read on the calling task. Handing so short a read to
        // the blocking pool cost more in thread switches than the read itself (queries,
        // which may read pages of many items, still go there).
        let _gate = self.deltas.gate.read().expect("deltas gate");
        let mut item = self.read_committed(key)?;
        if let Some(item) = item.as_mut() {
            self.deltas.merge(key, item);
        }
        Ok(item)
    }

    async fn put(&self, item: Item, cond: Cond) -> Result<()> {
        self.write(vec![TxOp::Put { item, cond }]).await.map(drop)
    }

    async fn delete(&self, key: &Key, cond: Cond) -> Result<()> {
        self.write(vec![TxOp::Delete { key: key.clone(), cond }]).await.map(drop)
    }

    async fn update(&self, key: &Key, set: Item, add: &[(String, i64)], cond: Cond) -> Result<Item> {
        let op = TxOp::Update { key: key.clone(), set, add: add.to_vec(), cond };
        let mut out = self.write(vec![op]).await?;
        let bytes = out.pop().flatten().ok_or_else(|| db_err("update wrote nothing"))?;
        serde_json::from_slice(&bytes).map_err(db_err)
    }

    async fn update_relaxed(&self, key: &Key, add: &[(String, i64)], cond: Cond) -> Result<Item> {
        let added = {
            let _gate = self.deltas.gate.read().expect("deltas gate");
            match self.read_committed(key)? {
                // A counter of an item that exists waits for no writer (module doc).
                Some(mut item) => {
                    let mut pending = self.deltas.pending.lock().expect("deltas");
                    if let Some(adds) = pending.get(key) {
                        add_to_item(&mut item, adds);
                    }
                    if !cond_holds(Some(&item), &cond) {
                        return Err(Error::Conflict {
                            message: "condition failed on operations [0]".into(),
                            failed: vec![0],
                        });
                    }
                    let new = Tx::updated(key, &Item::new(), add, Some(&item))?;
                    add_into(pending.entry(key.clone()).or_default(), add);
                    Some(new)
                }
                None => None,
            }
        };
        match added {
            Some(item) => Ok(item),
            // One that creates its item is an ordinary write.
            None => self.update(key, Item::new(), add, cond).await,
        }
    }

    async fn transact(&self, ops: Vec<TxOp>) -> Result<()> {
        check_tx(&ops)?;
        self.write(ops).await.map(drop)
    }

    async fn query(&self, query: &Query) -> Result<Page> {
        let (db, deltas) = (self.db.clone(), self.deltas.clone());
        let q = query.clone();
        tokio::task::spawn_blocking(move || Self::query_sync(&db, &deltas, &q)).await.map_err(db_err)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_patched_into_the_encoding_is_the_update_of_the_decoded_item() {
        use serde_json::json;
        let key = Key::new("P", "S");
        let stored: Item = serde_json::from_value(json!({
            "PK": "P", "SK": "S", "GSI1PK": "g", "GSI1SK": "s", "revision": 7, "downloads": 3,
            "historyVersion": ["1.0.0", "1.0.1"], "description": "a \"quoted\" \u{e9} \n", "n": {"x": [1, 2.5]},
        }))
        .unwrap();
        let bytes = serde_json::to_vec(&stored).unwrap();
        let item = |v: serde_json::Value| -> Item { serde_json::from_value(v).unwrap() };
        let adds = |a: &[(&str, i64)]| -> Vec<(String, i64)> { a.iter().map(|(k, d)| (k.to_string(), *d)).collect() };
        let cases = [
            (
                item(json!({"historyVersion": ["1.0.0", "1.0.1", "1.0.2"], "description": "new", "GSI1SK": "t"})),
                adds(&[("revision", 1), ("versions", 1)]),
            ),
            (item(json!({"n": null, "GSI1PK": null})), adds(&[])),
            (Item::new(), adds(&[("downloads", 5), ("downloads", -2)])),
        ];
        for (set, add) in &cases {
            let (patched, entries) = Tx::updated_encoding(&key, set, add, Some(&bytes)).unwrap();
            let want = Tx::updated(&key, set, add, Some(&stored)).unwrap();
            assert_eq!(serde_json::from_slice::<Item>(&patched).unwrap(), want, "{set:?} {add:?}");
            // The same bytes as a decode and an encode would give, and the same index entries.
            assert_eq!(patched, encode_item(&key, &want).unwrap());
            assert_eq!(entries, INDEXES.iter().map(|d| index_entry(d, &want)).collect::<Vec<_>>());
        }
        // An item that does not exist yet is made from its key.
        let (made, _) = Tx::updated_encoding(&key, &Item::new(), &adds(&[("n", 2)]), None).unwrap();
        assert_eq!(serde_json::from_slice::<Item>(&made).unwrap(), item(json!({"PK": "P", "SK": "S", "n": 2})));
        // The refusals are the decoded update's.
        let refused =
            |set: Item, add: Vec<(String, i64)>| Tx::updated_encoding(&key, &set, &add, Some(&bytes)).unwrap_err();
        assert!(
            matches!(refused(Item::new(), adds(&[("description", 1)])), Error::Invalid(m) if m.contains("not a number"))
        );
        assert!(
            matches!(refused(Item::new(), adds(&[("revision", i64::MAX)])), Error::Invalid(m) if m.contains("overflows"))
        );
        assert!(matches!(refused(item(json!({"PK": "Q"})), adds(&[])), Error::Internal(_)));
        assert!(
            matches!(refused(item(json!({"GSI1PK": 5})), adds(&[])), Error::Invalid(m) if m.contains("must be a string"))
        );
        let over = item(json!({"big": "x".repeat(MAX_ITEM_BYTES)}));
        assert!(matches!(refused(over, adds(&[])), Error::TooLarge(_)));
        // A name written with escapes is not taken apart: the whole item is decoded instead.
        let escaped = br#"{"PK":"P","SK":"S","\u0047SI1PK":"g","n":1}"#;
        assert!(patch_encoded(&[], &[], escaped).unwrap().is_none());
        let (bytes, entries) = Tx::updated_encoding(&key, &Item::new(), &adds(&[("n", 1)]), Some(escaped)).unwrap();
        let want = item(json!({"PK": "P", "SK": "S", "GSI1PK": "g", "n": 2}));
        assert_eq!(serde_json::from_slice::<Item>(&bytes).unwrap(), want);
        assert_eq!(entries, INDEXES.iter().map(|d| index_entry(d, &want)).collect::<Vec<_>>());
    }

    #[test]
    fn a_partial_decode_keeps_the_wanted_attributes_whole_and_nothing_else() {
        let item: Item = serde_json::from_value(serde_json::json!({
            "PK": "P", "SK": "S", "GSI1PK": "g", "revision": 7,
            "big": {"nested": [1, {"deep": "x"}], "s": "a\"b"},
            "wanted \"quoted\"": [true, null],
        }))
        .unwrap();
        let bytes = serde_json::to_vec(&item).unwrap();
        let got = decode_attrs(&bytes, &["GSI1PK", "revision", "wanted \"quoted\"", "absent"]).unwrap();
        let want: Item = serde_json::from_value(serde_json::json!({
            "GSI1PK": "g", "revision": 7, "wanted \"quoted\"": [true, null],
        }))
        .unwrap();
        assert_eq!(got, want);
        // A name written with escapes is the name it spells.
        let got = decode_attrs(br#"{"\u0047SI1PK":"g","x":[{"GSI1PK":"inner"}]}"#, &["GSI1PK"]).unwrap();
        assert_eq!(got.get("GSI1PK"), Some(&Value::from("g")));
        assert_eq!(got.len(), 1);
        // What is not one JSON object is refused, as a whole decode would.
        for bad in [&br#"{"a":1} x"#[..], br#"[1]"#, br#"{"a":"#] {
            assert!(decode_attrs(bad, &["a"]).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
