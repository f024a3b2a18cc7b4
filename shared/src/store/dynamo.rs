//! `Table` on DynamoDB. Items map to attribute values one to one (strings S, integers N,
//! booleans, null, lists L, maps M). Conditions become condition expressions, transactions
//! `TransactWriteItems`, atomic adds `UpdateItem ... ADD`. Base-table reads are strongly
//! consistent; index queries are eventually consistent, as DynamoDB's GSIs always are.
use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, DeleteRequest, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, KeysAndAttributes, Projection, ProjectionType, Put, ReturnValue, ScalarAttributeType, TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use serde_json::{Number, Value};

use super::table::{check_key_str, check_tx, decode_token, encode_token};
use super::{Cond, Item, Key, Page, Query, SkCond, Table, TxOp, INDEXES, PK, SK};
use crate::{Error, Result};

#[derive(Clone)]
pub struct DynamoTable {
    client: Client,
    table: String,
}

pub fn to_av(v: &Value) -> AttributeValue {
    match v {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(a) => AttributeValue::L(a.iter().map(to_av).collect()),
        Value::Object(m) => AttributeValue::M(m.iter().map(|(k, v)| (k.clone(), to_av(v))).collect()),
    }
}

pub fn from_av(av: &AttributeValue) -> Value {
    match av {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => n
            .parse::<i64>()
            .map(Value::from)
            .ok()
            .or_else(|| n.parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number))
            .unwrap_or(Value::Null),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::L(l) => Value::Array(l.iter().map(from_av).collect()),
        AttributeValue::M(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), from_av(v))).collect()),
        AttributeValue::Ss(s) => Value::Array(s.iter().cloned().map(Value::String).collect()),
        _ => Value::Null,
    }
}

fn to_map(item: &Item) -> HashMap<String, AttributeValue> {
    item.iter().map(|(k, v)| (k.clone(), to_av(v))).collect()
}

fn from_map(map: &HashMap<String, AttributeValue>) -> Item {
    map.iter().map(|(k, v)| (k.clone(), from_av(v))).collect()
}

fn key_map(key: &Key) -> Result<HashMap<String, AttributeValue>> {
    check_key_str(&key.pk)?;
    check_key_str(&key.sk)?;
    Ok(HashMap::from([
        (PK.to_string(), AttributeValue::S(key.pk.clone())),
        (SK.to_string(), AttributeValue::S(key.sk.clone())),
    ]))
}

fn check_item_keys(item: &Item) -> Result<()> {
    let key = Key::of(item).map_err(|_| Error::Invalid("an item needs string PK and SK attributes".into()))?;
    key_map(&key).map(drop)
}

fn dynamo_err<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(what: &str, e: SdkError<E, R>) -> Error {
    match e.code() {
        Some("ConditionalCheckFailedException") => Error::conflict("condition failed"),
        // Throttled past the SDK's own retries, or an item that a transaction holds: the
        // client may repeat the request in a moment.
        Some(
            "ThrottlingException"
            | "ProvisionedThroughputExceededException"
            | "RequestLimitExceeded"
            | "TransactionConflictException"
            | "TransactionInProgressException",
        ) => {
            tracing::warn!(call = what, code = ?e.code(), "dynamodb is busy; answering 503");
            Error::unavailable("the table is busy with other writes to the same items; retry in a moment", 1)
        }
        code => {
            let msg = e.message().map(str::to_string).unwrap_or_else(|| format!("{e:?}"));
            if msg.contains("Item size") {
                tracing::warn!(call = what, error = %msg, "item over the size limit refused");
                return Error::TooLarge(super::table::ITEM_TOO_LARGE.into());
            }
            Error::Internal(format!("dynamodb {what}: {}: {msg}", code.unwrap_or("unknown")))
        }
    }
}

/// Builds expression attribute names and values.
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn name(&mut self, attr: &str) -> String {
        let n = format!("#n{}", self.names.len());
        self.names.insert(n.clone(), attr.to_string());
        n
    }

    fn value(&mut self, v: AttributeValue) -> String {
        let n = format!(":v{}", self.values.len());
        self.values.insert(n, v);
        format!(":v{}", self.values.len() - 1)
    }

    fn cond(&mut self, c: &Cond) -> Option<String> {
        Some(match c {
            Cond::None => return None,
            Cond::NotExists => format!("attribute_not_exists({})", self.name(PK)),
            Cond::Exists => format!("attribute_exists({})", self.name(PK)),
            Cond::Eq(a, v) => format!("{} = {}", self.name(a), self.value(to_av(v))),
            Cond::Ge(a, n) => format!("{} >= {}", self.name(a), self.value(AttributeValue::N(n.to_string()))),
            Cond::Lacks(a) => format!("attribute_exists({}) AND attribute_not_exists({})", self.name(PK), self.name(a)),
            Cond::All(cs) => {
                let parts: Vec<String> = cs.iter().filter_map(|c| self.cond(c)).map(|e| format!("({e})")).collect();
                if parts.is_empty() {
                    return None;
                }
                parts.join(" AND ")
            }
        })
    }

    fn update(&mut self, set: &Item, add: &[(String, i64)]) -> Result<String> {
        let (mut sets, mut removes) = (Vec::new(), Vec::new());
        for (k, v) in set {
            if k == PK || k == SK {
                return Err(Error::Internal("an update cannot change PK or SK".into()));
            }
            // Null removes the attribute (the port's rule), as the embedded table does.
            if v.is_null() {
                removes.push(self.name(k));
            } else {
                sets.push(format!("{} = {}", self.name(k), self.value(to_av(v))));
            }
        }
        let adds: Vec<String> = add
            .iter()
            .map(|(k, d)| format!("{} {}", self.name(k), self.value(AttributeValue::N(d.to_string()))))
            .collect();
        let mut expr = String::new();
        if !sets.is_empty() {
            expr = format!("SET {}", sets.join(", "));
        }
        if !adds.is_empty() {
            expr = format!("{expr} ADD {}", adds.join(", "));
        }
        if !removes.is_empty() {
            expr = format!("{expr} REMOVE {}", removes.join(", "));
        }
        if expr.is_empty() {
            return Err(Error::Internal("an update needs something to set or add".into()));
        }
        Ok(expr)
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

impl DynamoTable {
    pub fn new(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        DynamoTable { client: Client::new(config), table: table.into() }
    }

    /// Creates the table, its indexes and TTL on `ttl` when missing (for LocalStack and
    /// moto), on-demand billing.
    pub async fn ensure_table(&self) -> Result<()> {
        if self.client.describe_table().table_name(&self.table).send().await.is_ok() {
            return Ok(());
        }
        let attr = |n: &str| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute")
        };
        let key = |n: &str, t: KeyType| KeySchemaElement::builder().attribute_name(n).key_type(t).build().expect("key");
        let mut req = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr(PK))
            .attribute_definitions(attr(SK))
            .key_schema(key(PK, KeyType::Hash))
            .key_schema(key(SK, KeyType::Range));
        for idx in INDEXES {
            req = req.attribute_definitions(attr(idx.pk)).attribute_definitions(attr(idx.sk)).global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(idx.name)
                    .key_schema(key(idx.pk, KeyType::Hash))
                    .key_schema(key(idx.sk, KeyType::Range))
                    .projection(Projection::builder().projection_type(ProjectionType::All).build())
                    .build()
                    .expect("index"),
            );
        }
        match req.send().await {
            Ok(_) => {}
            Err(e) if matches!(e.code(), Some("ResourceInUseException")) => {}
            Err(e) => return Err(dynamo_err("create table", e)),
        }
        for _ in 0..120 {
            let out = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| dynamo_err("describe table", e))?;
            if out.table().and_then(|t| t.table_status()).map(|s| s.as_str() == "ACTIVE").unwrap_or(false) {
                // Upload sessions and staged blobs carry `ttl` (epoch seconds), as in
                // template.yaml; depot also checks expiry itself, TTL only cleans up.
                let spec = aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
                    .attribute_name(super::TTL_ATTR)
                    .enabled(true)
                    .build()
                    .expect("ttl spec");
                match self
                    .client
                    .update_time_to_live()
                    .table_name(&self.table)
                    .time_to_live_specification(spec)
                    .send()
                    .await
                {
                    Ok(_) => {}
                    Err(e) if matches!(e.code(), Some("ValidationException")) => {} // already enabled
                    Err(e) => return Err(dynamo_err("enable ttl", e)),
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(Error::Internal(format!("table {} did not become active", self.table)))
    }

    fn tx_item(&self, op: &TxOp) -> Result<TransactWriteItem> {
        let mut e = Expr::default();
        let b = TransactWriteItem::builder();
        let built = match op {
            TxOp::Put { item, cond } => {
                check_item_keys(item)?;
                let c = e.cond(cond);
                b.put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(to_map(item)))
                        .set_condition_expression(c)
                        .set_expression_attribute_names(e.names())
                        .set_expression_attribute_values(e.values())
                        .build()
                        .map_err(Error::internal)?,
                )
            }
            TxOp::Delete { key, cond } => {
                let c = e.cond(cond);
                b.delete(
                    Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(key_map(key)?))
                        .set_condition_expression(c)
                        .set_expression_attribute_names(e.names())
                        .set_expression_attribute_values(e.values())
                        .build()
                        .map_err(Error::internal)?,
                )
            }
            TxOp::Check { key, cond } => {
                let c = e.cond(cond).ok_or_else(|| Error::Internal("a check needs a condition".into()))?;
                b.condition_check(
                    ConditionCheck::builder()
                        .table_name(&self.table)
                        .set_key(Some(key_map(key)?))
                        .condition_expression(c)
                        .set_expression_attribute_names(e.names())
                        .set_expression_attribute_values(e.values())
                        .build()
                        .map_err(Error::internal)?,
                )
            }
            TxOp::Update { key, set, add, cond } => {
                let u = e.update(set, add)?;
                let c = e.cond(cond);
                b.update(
                    Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(key_map(key)?))
                        .update_expression(u)
                        .set_condition_expression(c)
                        .set_expression_attribute_names(e.names())
                        .set_expression_attribute_values(e.values())
                        .build()
                        .map_err(Error::internal)?,
                )
            }
        };
        Ok(built.build())
    }
}

#[async_trait]
impl Table for DynamoTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_map(key)?))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamo_err("get item", e))?;
        Ok(out.item().map(from_map))
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Item>>> {
        if keys.len() > super::MAX_GET_MANY {
            return Err(Error::Internal(format!("{} keys in one read, at most {}", keys.len(), super::MAX_GET_MANY)));
        }
        // Duplicates are refused by BatchGetItem: each distinct key is asked once.
        let mut distinct = Vec::with_capacity(keys.len());
        for k in distinct_keys(keys) {
            distinct.push(key_map(k)?);
        }
        let found = std::sync::Mutex::new(Vec::<Item>::new());
        until_processed(distinct, |pending| {
            let found = &found;
            async move {
                let ask = KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .consistent_read(true)
                    .build()
                    .map_err(Error::internal)?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, ask)
                    .send()
                    .await
                    .map_err(|e| dynamo_err("batch get items", e))?;
                if let Some(items) = out.responses().and_then(|r| r.get(&self.table)) {
                    found.lock().expect("found").extend(items.iter().map(from_map));
                }
                Ok(out.unprocessed_keys().and_then(|u| u.get(&self.table)).map(|k| k.keys().to_vec()).unwrap_or_default())
            }
        })
        .await?;
        let found = found.into_inner().expect("found");
        Ok(keys
            .iter()
            .map(|k| found.iter().find(|i| Key::of(i).is_ok_and(|f| f == *k)).cloned())
            .collect())
    }

    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        for chunk in distinct_keys(keys).chunks(25) {
            let mut requests = Vec::with_capacity(chunk.len());
            for k in chunk {
                let delete = DeleteRequest::builder().set_key(Some(key_map(k)?)).build().map_err(Error::internal)?;
                requests.push(WriteRequest::builder().delete_request(delete).build());
            }
            until_processed(requests, |pending| async move {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| dynamo_err("batch delete items", e))?;
                Ok(out.unprocessed_items().and_then(|u| u.get(&self.table)).cloned().unwrap_or_default())
            })
            .await?;
        }
        Ok(())
    }

    async fn put(&self, item: Item, cond: Cond) -> Result<()> {
        check_item_keys(&item)?;
        let mut e = Expr::default();
        let c = e.cond(&cond);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_map(&item)))
            .set_condition_expression(c)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .send()
            .await
            .map_err(|e| dynamo_err("put item", e))?;
        Ok(())
    }

    async fn delete(&self, key: &Key, cond: Cond) -> Result<()> {
        let mut e = Expr::default();
        let c = e.cond(&cond);
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_map(key)?))
            .set_condition_expression(c)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .send()
            .await
            .map_err(|e| dynamo_err("delete item", e))?;
        Ok(())
    }

    async fn update(&self, key: &Key, set: Item, add: &[(String, i64)], cond: Cond) -> Result<Item> {
        let mut e = Expr::default();
        let u = e.update(&set, add)?;
        let c = e.cond(&cond);
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_map(key)?))
            .update_expression(u)
            .set_condition_expression(c)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .return_values(ReturnValue::AllNew);
        // An item that a transaction is writing refuses the update (TransactionConflict),
        // which the SDK does not retry: retried here with jittered backoff, then a 503.
        let mut delay = Duration::from_millis(20);
        for attempt in 0.. {
            match request.clone().send().await {
                Ok(out) => return Ok(out.attributes().map(from_map).unwrap_or_default()),
                Err(err) if err.code() == Some("TransactionConflictException") && attempt < 6 => {
                    tokio::time::sleep(delay + Duration::from_millis(rand::random::<u64>() % 20)).await;
                    delay = (delay * 2).min(Duration::from_millis(400));
                }
                Err(err) => return Err(dynamo_err("update item", err)),
            }
        }
        unreachable!()
    }

    async fn transact(&self, ops: Vec<TxOp>) -> Result<()> {
        check_tx(&ops)?;
        let items = ops.iter().map(|op| self.tx_item(op)).collect::<Result<Vec<_>>>()?;
        // DynamoDB cancels a transaction that races another on the same item
        // (TransactionConflict) instead of waiting; retry those a few times.
        let mut delay = Duration::from_millis(20);
        for attempt in 0.. {
            let err = match self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            let reasons: Vec<String> = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                    c.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_string()).collect()
                }
                _ => return Err(dynamo_err("transact write items", err)),
            };
            let failed: Vec<usize> = reasons
                .iter()
                .enumerate()
                .filter(|(_, r)| r.as_str() == "ConditionalCheckFailed")
                .map(|(i, _)| i)
                .collect();
            if !failed.is_empty() {
                return Err(Error::Conflict { message: format!("condition failed on operations {failed:?}"), failed });
            }
            // A race on an item, or throttling: retried with jittered backoff, then a 503.
            let retryable = reasons
                .iter()
                .any(|r| matches!(r.as_str(), "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"))
                || matches!(
                    err.code(),
                    Some(
                        "TransactionInProgressException"
                            | "ThrottlingException"
                            | "ProvisionedThroughputExceededException"
                            | "RequestLimitExceeded"
                    )
                );
            if !retryable {
                return Err(dynamo_err("transact write items", err));
            }
            if attempt >= 8 {
                tracing::warn!(reasons = ?reasons, "a transaction kept conflicting; answering 503");
                return Err(Error::unavailable(
                    "the table is busy with other writes to the same items; retry in a moment",
                    1,
                ));
            }
            tokio::time::sleep(delay + Duration::from_millis(rand::random::<u64>() % 20)).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
        unreachable!()
    }

    async fn query(&self, q: &Query) -> Result<Page> {
        check_key_str(&q.pk)?;
        if q.limit == Some(0) {
            return Err(Error::Invalid("a query limit must be at least 1".into()));
        }
        let (pk_attr, sk_attr) = q.key_attrs()?;
        let mut e = Expr::default();
        let pk_name = e.name(pk_attr);
        let pk_val = e.value(AttributeValue::S(q.pk.clone()));
        let mut kc = format!("{pk_name} = {pk_val}");
        let s = |v: &String| AttributeValue::S(v.clone());
        let sk_expr = match &q.sk {
            SkCond::Any => None,
            // DynamoDB refuses an empty begins_with; an empty prefix matches everything.
            SkCond::Prefix(p) if p.is_empty() => None,
            SkCond::Prefix(p) => Some(format!("begins_with({}, {})", e.name(sk_attr), e.value(s(p)))),
            SkCond::Between(a, b) => {
                let n = e.name(sk_attr);
                Some(format!("{n} BETWEEN {} AND {}", e.value(s(a)), e.value(s(b))))
            }
            SkCond::Lt(v) => Some(format!("{} < {}", e.name(sk_attr), e.value(s(v)))),
            SkCond::Le(v) => Some(format!("{} <= {}", e.name(sk_attr), e.value(s(v)))),
            SkCond::Gt(v) => Some(format!("{} > {}", e.name(sk_attr), e.value(s(v)))),
            SkCond::Ge(v) => Some(format!("{} >= {}", e.name(sk_attr), e.value(s(v)))),
        };
        if let Some(x) = sk_expr {
            kc = format!("{kc} AND {x}");
        }
        let start = match &q.start {
            Some(t) => Some(decode_token(t, q)?.into_iter().map(|(k, v)| (k, AttributeValue::S(v))).collect()),
            None => None,
        };
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(q.index.map(str::to_string))
            .key_condition_expression(kc)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .scan_index_forward(q.forward)
            .set_limit(q.limit.map(|l| l.min(i32::MAX as u32) as i32))
            .set_exclusive_start_key(start)
            .set_consistent_read(q.index.is_none().then_some(true))
            .send()
            .await
            .map_err(|e| dynamo_err("query", e))?;
        let items = out.items().iter().map(from_map).collect();
        let next = out.last_evaluated_key().map(|k| encode_token(&from_map(k)));
        Ok(Page { items, next })
    }
}

/// Each key once, in their order.
fn distinct_keys(keys: &[Key]) -> Vec<&Key> {
    let mut distinct: Vec<&Key> = Vec::with_capacity(keys.len());
    for k in keys {
        if !distinct.contains(&k) {
            distinct.push(k);
        }
    }
    distinct
}

/// Sends a batch until DynamoDB has processed all of it: `send` answers what it left
/// unprocessed (throttled), which is sent again after a short backoff, 8 times at most.
async fn until_processed<T, F, Fut>(mut pending: Vec<T>, mut send: F) -> Result<()>
where
    F: FnMut(Vec<T>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>>>,
{
    for attempt in 0..8u32 {
        if pending.is_empty() {
            return Ok(());
        }
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(25 << attempt.min(5))).await;
        }
        pending = send(pending).await?;
    }
    if pending.is_empty() {
        Ok(())
    } else {
        Err(Error::unavailable("DynamoDB left part of a batch unprocessed; retry in a moment", 1))
    }
}
