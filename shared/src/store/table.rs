use async_trait::async_trait;
use base64::Engine;
use serde_json::{Map, Value};

use crate::{Error, Result};

/// An item: a JSON object of attributes, including the string keys `PK` and `SK`.
/// Numbers are integers; strings, booleans, null, lists and maps nest freely.
pub type Item = Map<String, Value>;

pub const PK: &str = "PK";
pub const SK: &str = "SK";
/// The attribute holding an item's expiry in epoch seconds (DynamoDB TTL).
pub const TTL_ATTR: &str = "ttl";

/// What a write of an item over DynamoDB's 400 KB limit answers, on both adapters. It
/// names no key: keys are internal.
pub const ITEM_TOO_LARGE: &str =
    "the record would be over the table's 400 KB item limit; shorten its metadata (descriptions, names, version strings)";

/// A global secondary index: an item appears in it when it carries both attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexDef {
    pub name: &'static str,
    pub pk: &'static str,
    pub sk: &'static str,
}

/// The table's secondary indexes. Adapters and `create-resources` read this list.
pub const INDEXES: &[IndexDef] =
    &[
        IndexDef { name: "GSI1", pk: "GSI1PK", sk: "GSI1SK" },
        IndexDef { name: "GSI2", pk: "GSI2PK", sk: "GSI2SK" },
        IndexDef { name: "GSI3", pk: "GSI3PK", sk: "GSI3SK" },
    ];

pub fn index_def(name: &str) -> Result<&'static IndexDef> {
    INDEXES.iter().find(|i| i.name == name).ok_or_else(|| Error::Internal(format!("unknown index {name}")))
}

/// An item's primary key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Key { pk: pk.into(), sk: sk.into() }
    }

    /// An item holding just this key, to add attributes to.
    pub fn item(&self) -> Item {
        let mut item = Item::new();
        item.insert(PK.into(), Value::String(self.pk.clone()));
        item.insert(SK.into(), Value::String(self.sk.clone()));
        item
    }

    pub fn of(item: &Item) -> Result<Key> {
        match (item.get(PK), item.get(SK)) {
            (Some(Value::String(pk)), Some(Value::String(sk))) => Ok(Key::new(pk.clone(), sk.clone())),
            _ => Err(Error::Internal("item without string PK and SK".into())),
        }
    }
}

/// A condition on the item a write targets, checked atomically with the write.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    None,
    /// The item does not exist.
    NotExists,
    /// The item exists.
    Exists,
    /// The item exists and the attribute equals the value.
    Eq(String, Value),
    /// The item exists and the numeric attribute is at least the value.
    Ge(String, i64),
    /// The item exists and has no such attribute.
    Lacks(String),
    /// Every one of these holds (a revision and a flag, say).
    All(Vec<Cond>),
}

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum TxOp {
    Put {
        item: Item,
        cond: Cond,
    },
    Delete {
        key: Key,
        cond: Cond,
    },
    /// A condition on another item, with no write.
    Check {
        key: Key,
        cond: Cond,
    },
    /// Sets attributes and atomically adds to numeric ones; creates the item if missing.
    Update {
        key: Key,
        set: Item,
        add: Vec<(String, i64)>,
        cond: Cond,
    },
}

/// A condition on the sort key of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkCond {
    Any,
    Prefix(String),
    /// Inclusive at both ends.
    Between(String, String),
    Lt(String),
    Le(String),
    Gt(String),
    Ge(String),
}

/// A query of one partition, of the table or of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub index: Option<&'static str>,
    pub pk: String,
    pub sk: SkCond,
    pub forward: bool,
    pub limit: Option<u32>,
    /// The `next` token of the previous page.
    pub start: Option<String>,
}

impl Query {
    pub fn partition(pk: impl Into<String>) -> Self {
        Query { index: None, pk: pk.into(), sk: SkCond::Any, forward: true, limit: None, start: None }
    }

    pub fn prefix(pk: impl Into<String>, prefix: impl Into<String>) -> Self {
        Query { sk: SkCond::Prefix(prefix.into()), ..Self::partition(pk) }
    }

    pub fn index(mut self, name: &'static str) -> Self {
        self.index = Some(name);
        self
    }

    pub fn backward(mut self) -> Self {
        self.forward = false;
        self
    }

    pub fn limit(mut self, n: u32) -> Self {
        self.limit = Some(n);
        self
    }

    pub fn start(mut self, token: Option<String>) -> Self {
        self.start = token;
        self
    }

    /// The (partition, sort) attribute names this query reads.
    pub fn key_attrs(&self) -> Result<(&'static str, &'static str)> {
        match self.index {
            None => Ok((PK, SK)),
            Some(name) => index_def(name).map(|i| (i.pk, i.sk)),
        }
    }
}

/// One page of a query. `next` is set when more items may follow; like DynamoDB, a
/// page that fills its limit carries a token even if nothing follows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    pub items: Vec<Item>,
    pub next: Option<String>,
}

/// The table port: items with conditional writes, transactions, atomic adds and
/// paged queries by partition and sort-key range. Every adapter passes the same
/// conformance suite and offers nothing DynamoDB lacks.
#[async_trait]
pub trait Table: Send + Sync + 'static {
    async fn get(&self, key: &Key) -> Result<Option<Item>>;

    /// Reads up to [`MAX_GET_MANY`] items at once, as strongly consistent as [`Table::get`],
    /// in `keys`' order: one request on DynamoDB (BatchGetItem), where reading items that
    /// do not depend on each other one by one would cost one each.
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Item>>> {
        if keys.len() > MAX_GET_MANY {
            return Err(Error::Internal(format!("{} keys in one read, at most {MAX_GET_MANY}", keys.len())));
        }
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.get(k).await?);
        }
        Ok(out)
    }

    /// Deletes items with no condition, not as one transaction: a batch that a failure
    /// may leave partly done (DynamoDB's BatchWriteItem, 25 keys a request; a key asked
    /// twice is deleted once). For tidying, where each delete stands alone.
    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        for k in keys {
            self.delete(k, Cond::None).await?;
        }
        Ok(())
    }

    /// Writes a whole item. A failed condition is `Conflict`.
    async fn put(&self, item: Item, cond: Cond) -> Result<()>;

    /// Deletes an item; deleting a missing item succeeds unless the condition says otherwise.
    async fn delete(&self, key: &Key, cond: Cond) -> Result<()>;

    /// Sets attributes and atomically adds to numeric ones (creating the item and the
    /// attributes when missing), and returns the whole item as written. An attribute set
    /// to `null` is removed (in a transaction's `TxOp::Update` too).
    async fn update(&self, key: &Key, set: Item, add: &[(String, i64)], cond: Cond) -> Result<Item>;

    /// [`Table::update`] of a counter that a crash may lose within [`RELAXED_WINDOW`]: an
    /// adapter may answer before the write is durable, as long as it makes it durable
    /// within the window and on a clean shutdown. DynamoDB's writes are always durable.
    async fn update_relaxed(&self, key: &Key, add: &[(String, i64)], cond: Cond) -> Result<Item> {
        self.update(key, Item::new(), add, cond).await
    }

    /// Applies every operation or none. Any failed condition is `Conflict`, whose message
    /// names the failed operations by index.
    async fn transact(&self, ops: Vec<TxOp>) -> Result<()>;

    async fn query(&self, query: &Query) -> Result<Page>;
}

/// The most keys one [`Table::get_many`] reads (DynamoDB's BatchGetItem limit).
pub const MAX_GET_MANY: usize = 100;

/// How long a write made through [`Table::update_relaxed`] may stay not durable.
pub const RELAXED_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

/// Atomically adds `delta` to one numeric attribute and returns its new value.
pub async fn atomic_add(table: &dyn Table, key: &Key, attr: &str, delta: i64) -> Result<i64> {
    let item = table.update(key, Item::new(), &[(attr.to_string(), delta)], Cond::None).await?;
    item.get(attr).and_then(Value::as_i64).ok_or_else(|| Error::Internal(format!("attribute {attr} is not a number")))
}

/// Runs a query to its end, page by page. For bounded partitions only.
pub async fn query_all(table: &dyn Table, query: Query) -> Result<Vec<Item>> {
    let mut q = query;
    let mut out = Vec::new();
    loop {
        let page = table.query(&q).await?;
        out.extend(page.items);
        match page.next {
            Some(t) => q.start = Some(t),
            None => return Ok(out),
        }
    }
}

/// Deletes every item a query finds, one by one (not atomically). For bounded
/// partitions only.
pub async fn delete_all(table: &dyn Table, query: Query) -> Result<()> {
    for item in query_all(table, query).await? {
        table.delete(&Key::of(&item)?, Cond::None).await?;
    }
    Ok(())
}

/// The maximum number of operations in one transaction (DynamoDB's limit).
pub const MAX_TX_OPS: usize = 100;

/// Checks what both adapters must refuse alike.
pub(crate) fn check_tx(ops: &[TxOp]) -> Result<()> {
    if ops.is_empty() || ops.len() > MAX_TX_OPS {
        return Err(Error::Internal(format!("a transaction holds 1 to {MAX_TX_OPS} operations, not {}", ops.len())));
    }
    let mut keys = std::collections::HashSet::new();
    for op in ops {
        let key = match op {
            TxOp::Put { item, .. } => Key::of(item)?,
            TxOp::Delete { key, .. } | TxOp::Check { key, .. } | TxOp::Update { key, .. } => key.clone(),
        };
        if !keys.insert(key.clone()) {
            return Err(Error::Internal(format!("a transaction touches {}/{} twice", key.pk, key.sk)));
        }
    }
    Ok(())
}

/// Key strings may not contain NUL or U+0001: the embedded adapter uses them as separators.
pub(crate) fn check_key_str(s: &str) -> Result<()> {
    if s.is_empty() || s.bytes().any(|b| b <= 1) {
        Err(Error::Invalid(format!("invalid key attribute '{}'", crate::model::printable(s))))
    } else {
        Ok(())
    }
}

/// Continuation tokens: the last key of a page, as URL-safe base64 of a JSON object of
/// key attributes. Both adapters write and read the same form.
pub(crate) fn encode_token(attrs: &Map<String, Value>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(attrs).expect("json"))
}

pub(crate) fn decode_token(token: &str, query: &Query) -> Result<std::collections::BTreeMap<String, String>> {
    let bad = || Error::Invalid("invalid continuation token".to_string());
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let map: Map<String, Value> = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let mut out = std::collections::BTreeMap::new();
    for (k, v) in map {
        let v = v.as_str().ok_or_else(bad)?;
        check_key_str(v).map_err(|_| bad())?;
        out.insert(k, v.to_string());
    }
    let (pk_attr, sk_attr) = query.key_attrs()?;
    let complete = [pk_attr, sk_attr, PK, SK].iter().all(|a| out.contains_key(*a));
    if !complete || out.get(pk_attr) != Some(&query.pk) {
        return Err(bad());
    }
    Ok(out)
}
