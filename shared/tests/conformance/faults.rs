//! DynamoDB as it behaves under real concurrency, which moto does not emulate: a
//! transaction that races another is cancelled (TransactionConflict), and a hot item is
//! throttled. The test command's moto (`infra/moto_serial.py`) fails the requests of one
//! table on demand, as DynamoDB fails them; every write then retries with jittered
//! backoff, or answers 503 with `Retry-After`, never a 500.
use depot_core::store::{dynamo::DynamoTable, Cond, Item, Key, Table, TxOp};
use depot_core::Error;
use serde_json::{json, Value};

use crate::common;

/// Arms a fault for `table`: the next `count` requests of `op` fail with `kind`.
pub async fn arm(table: &str, op: &str, count: u32, kind: &str) {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let res = reqwest::Client::new()
        .post(format!("{endpoint}/_depot/faults"))
        .json(&json!({"table": table, "op": op, "count": count, "kind": kind}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "the test command's moto takes faults (infra/moto_serial.py)");
}

/// How many requests the fault of `table` and `op` has failed.
pub async fn failed(table: &str, op: &str) -> u64 {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let all: Vec<Value> = reqwest::get(format!("{endpoint}/_depot/faults")).await.unwrap().json().await.unwrap();
    all.iter().find(|f| f["table"] == table && f["op"] == op).map_or(0, |f| f["failed"].as_u64().unwrap())
}

fn item(pk: &str, sk: &str) -> Item {
    Key::new(pk, sk).item()
}

#[tokio::test]
async fn dynamo_conflicts_and_throttling_retry_or_answer_503() {
    let name = common::unique("faults");
    let t = DynamoTable::new(&common::sdk_config().await, &name);
    t.ensure_table().await.unwrap();
    let tx = |n: &str| vec![TxOp::Put { item: item("P", n), cond: Cond::None }, TxOp::Put { item: item("Q", n), cond: Cond::None }];

    // A few conflicts, or throttled items in a transaction: retried until it commits.
    for kind in ["TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"] {
        arm(&name, "TransactWriteItems", 3, kind).await;
        t.transact(tx(kind)).await.unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(failed(&name, "TransactWriteItems").await, 3, "{kind}: three attempts were cancelled");
        assert!(t.get(&Key::new("Q", kind)).await.unwrap().is_some(), "{kind}: it committed");
    }
    // Conflicts that do not end: a 503 with Retry-After, not an internal error.
    arm(&name, "TransactWriteItems", 1000, "TransactionConflict").await;
    let started = std::time::Instant::now();
    let busy = t.transact(tx("never")).await;
    assert!(matches!(&busy, Err(e @ Error::Unavailable { .. }) if e.retry_after() == Some(1)), "{busy:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "the retries are bounded: {:?}", started.elapsed());
    let tries = failed(&name, "TransactWriteItems").await;
    assert!((5..=20).contains(&tries), "retried a bounded number of times: {tries}");
    arm(&name, "TransactWriteItems", 0, "TransactionConflict").await;
    assert!(t.get(&Key::new("P", "never")).await.unwrap().is_none(), "nothing of it was written");

    // Single-item writes: the SDK retries throttling, then depot answers 503.
    arm(&name, "PutItem", 2, "ProvisionedThroughputExceededException").await;
    t.put(item("R", "1"), Cond::None).await.unwrap();
    // An item inside another's transaction: depot retries the update itself.
    arm(&name, "UpdateItem", 2, "TransactionConflictException").await;
    t.update(&Key::new("R", "1"), Item::new(), &[("n".into(), 1)], Cond::Exists).await.unwrap();
    assert_eq!(failed(&name, "UpdateItem").await, 2);
    for (op, kind) in [("UpdateItem", "ThrottlingException"), ("PutItem", "TransactionConflictException")] {
        arm(&name, op, 1000, kind).await;
        let busy = match op {
            "UpdateItem" => t.update(&Key::new("R", "1"), Item::new(), &[("n".into(), 1)], Cond::Exists).await.map(drop),
            _ => t.put(item("R", "2"), Cond::None).await,
        };
        assert!(matches!(&busy, Err(Error::Unavailable { .. })), "{op} {kind}: {busy:?}");
        arm(&name, op, 0, kind).await;
    }
    t.update(&Key::new("R", "1"), Item::new(), &[("n".into(), 1)], Cond::Exists).await.unwrap();
}
