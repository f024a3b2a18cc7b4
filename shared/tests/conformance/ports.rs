//! The port suites: every adapter of `BlobStore` and `Table` passes the same tests.
#![allow(unused_imports)]
use std::sync::Arc;

use bytes::Bytes;
use depot_core::store::{atomic_add, BlobStore, ByteRange, ByteStream, Cond, Item, Key, Query, SkCond, Table, TxOp};
use depot_core::Error;
use futures::StreamExt;
use md5::Md5;
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::common;

// ---------------------------------------------------------------- blob suite

const MIB: usize = 1024 * 1024;

/// A lazily generated pseudo-random stream of `total` bytes in 64 KiB chunks.
pub(crate) fn generated(total: usize, seed: u64) -> ByteStream {
    let chunk = 64 * 1024;
    futures::stream::unfold((0usize, seed), move |(sent, mut x)| async move {
        if sent >= total {
            return None;
        }
        let n = chunk.min(total - sent);
        let mut buf = Vec::with_capacity(n);
        while buf.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.extend_from_slice(&x.to_le_bytes());
        }
        buf.truncate(n);
        Some((Ok(Bytes::from(buf)), (sent + n, x)))
    })
    .boxed()
}

pub(crate) fn vm_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

pub(crate) async fn blob_put_streams_50mb(blobs: Arc<dyn BlobStore>) {
    let total = 50 * MIB;
    // The expected digests, from the same generator, hashed independently of the adapter.
    let (mut s256, mut s1, mut m5) = (Sha256::new(), Sha1::new(), Md5::new());
    let mut g = generated(total, 42);
    while let Some(c) = g.next().await {
        let c = c.unwrap();
        s256.update(&c);
        s1.update(&c);
        m5.update(&c);
    }
    // Reset the peak-RSS mark, then put: the growth must stay far below the blob size.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = vm_kib("VmRSS:");
    let d = blobs.put("big/blob", generated(total, 42)).await.unwrap();
    let peak_growth_mib = (vm_kib("VmHWM:").saturating_sub(before)) / 1024;
    assert_eq!(d.size, total as u64);
    assert_eq!(d.sha256, hex::encode(s256.finalize()));
    assert_eq!(d.sha1, hex::encode(s1.finalize()));
    assert_eq!(d.md5, hex::encode(m5.finalize()));
    assert!(peak_growth_mib < 40, "a 50 MiB put grew the peak RSS by {peak_growth_mib} MiB");
    assert_eq!(blobs.head("big/blob").await.unwrap(), Some(total as u64));
    // Read it back, streamed, and compare digests.
    let got = blobs.get("big/blob", None).await.unwrap();
    assert_eq!(got.size, total as u64);
    let mut h = Sha256::new();
    let mut body = got.body;
    let mut n = 0;
    while let Some(c) = body.next().await {
        let c = c.unwrap();
        n += c.len();
        h.update(&c);
    }
    assert_eq!(n, total);
    assert_eq!(hex::encode(h.finalize()), d.sha256);
    blobs.delete("big/blob").await.unwrap();
}

pub(crate) async fn blob_get_range_head_delete(blobs: Arc<dyn BlobStore>) {
    let data = b"0123456789abcdef".to_vec();
    let d = blobs.put("a/b/c.txt", depot_core::store::stream_from_bytes(data.clone())).await.unwrap();
    assert_eq!(d.size, 16);
    assert_eq!(d.sha256, hex::encode(Sha256::digest(&data)));
    assert_eq!(blobs.head("a/b/c.txt").await.unwrap(), Some(16));
    assert_eq!(blobs.get("a/b/c.txt", None).await.unwrap().bytes().await.unwrap(), data);

    let r = blobs.get("a/b/c.txt", Some(ByteRange { start: 3, end: Some(7) })).await.unwrap();
    assert_eq!(r.size, 16, "size is the blob's, not the range's");
    assert_eq!(r.bytes().await.unwrap(), b"34567");
    let tail = blobs.get("a/b/c.txt", Some(ByteRange { start: 10, end: None })).await.unwrap();
    assert_eq!(tail.bytes().await.unwrap(), b"abcdef");
    let clipped = blobs.get("a/b/c.txt", Some(ByteRange { start: 14, end: Some(100) })).await.unwrap();
    assert_eq!(clipped.bytes().await.unwrap(), b"ef");
    for bad in [ByteRange { start: 16, end: None }, ByteRange { start: 5, end: Some(4) }] {
        let refused = blobs.get("a/b/c.txt", Some(bad)).await;
        assert!(matches!(refused, Err(Error::RangeNotSatisfiable { size: 16, .. })), "{bad:?}");
    }

    assert!(matches!(blobs.get("a/b/missing", None).await, Err(Error::NotFound { .. })));
    assert_eq!(blobs.head("a/b/missing").await.unwrap(), None);
    for bad in ["../x", "/abs", "a\\b", "a/../../b", "nul\0"] {
        assert!(matches!(blobs.head(bad).await, Err(Error::Invalid(_))), "{bad:?}");
    }

    blobs.rename("a/b/c.txt", "d/e.txt").await.unwrap();
    assert_eq!(blobs.head("a/b/c.txt").await.unwrap(), None);
    assert_eq!(blobs.get("d/e.txt", None).await.unwrap().bytes().await.unwrap(), data);
    assert!(matches!(blobs.rename("a/b/c.txt", "x").await, Err(Error::NotFound { .. })));

    // A copy keeps the source, replaces the target, and outlives a later write or
    // delete of the source.
    blobs.put("f/old.txt", depot_core::store::stream_from_bytes(Bytes::from_static(b"old"))).await.unwrap();
    blobs.copy("d/e.txt", "f/old.txt").await.unwrap();
    assert_eq!(blobs.get("f/old.txt", None).await.unwrap().bytes().await.unwrap(), data);
    assert_eq!(blobs.get("d/e.txt", None).await.unwrap().bytes().await.unwrap(), data);
    blobs.copy("d/e.txt", "f/g.txt").await.unwrap();
    blobs.put("d/e.txt", depot_core::store::stream_from_bytes(Bytes::from_static(b"rewritten"))).await.unwrap();
    assert_eq!(blobs.get("f/g.txt", None).await.unwrap().bytes().await.unwrap(), data);
    blobs.delete("f/old.txt").await.unwrap();
    assert_eq!(blobs.get("f/g.txt", None).await.unwrap().bytes().await.unwrap(), data);
    assert!(matches!(blobs.copy("a/b/c.txt", "x").await, Err(Error::NotFound { .. })));
    assert_eq!(blobs.head("x").await.unwrap(), None);
    blobs.delete("f/g.txt").await.unwrap();
    blobs.put("d/e.txt", depot_core::store::stream_from_bytes(data.clone())).await.unwrap();

    blobs.delete("d/e.txt").await.unwrap();
    assert_eq!(blobs.head("d/e.txt").await.unwrap(), None);
    blobs.delete("d/e.txt").await.unwrap();
}

/// A key written small, then large, then small again (on the filesystem store: a row of
/// its small-blob file, then a file, then a row) always reads as its last write, in get,
/// head, ranges and listings, through renames, copies and deletes.
pub(crate) async fn blob_small_and_large_replace_each_other(blobs: Arc<dyn BlobStore>) {
    let small = |s: &'static [u8]| depot_core::store::stream_from_bytes(Bytes::from_static(s));
    let large: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
    let read = |key: &'static str| {
        let blobs = blobs.clone();
        async move { blobs.get(key, None).await.unwrap().bytes().await.unwrap() }
    };
    blobs.put("s/k", small(b"first")).await.unwrap();
    blobs.put("s/k", depot_core::store::stream_from_bytes(large.clone())).await.unwrap();
    assert_eq!(read("s/k").await, large);
    assert_eq!(blobs.head("s/k").await.unwrap(), Some(large.len() as u64));
    blobs.put("s/k", small(b"third")).await.unwrap();
    assert_eq!(read("s/k").await, b"third");
    assert_eq!(blobs.head("s/k").await.unwrap(), Some(5));
    let r = blobs.get("s/k", Some(ByteRange { start: 1, end: Some(3) })).await.unwrap();
    assert_eq!((r.size, r.bytes().await.unwrap()), (5, b"hir".to_vec()));
    assert!(matches!(
        blobs.get("s/k", Some(ByteRange { start: 5, end: None })).await,
        Err(Error::RangeNotSatisfiable { size: 5, .. })
    ));

    // A large blob renamed or copied over a small one replaces it, and the other way round.
    blobs.put("s/big", depot_core::store::stream_from_bytes(large.clone())).await.unwrap();
    blobs.copy("s/big", "s/k").await.unwrap();
    assert_eq!(read("s/k").await, large);
    blobs.put("s/little", small(b"little")).await.unwrap();
    blobs.rename("s/little", "s/k").await.unwrap();
    assert_eq!(read("s/k").await, b"little");
    assert_eq!(blobs.head("s/little").await.unwrap(), None);
    blobs.rename("s/big", "s/k").await.unwrap();
    assert_eq!(read("s/k").await, large);
    assert_eq!(blobs.head("s/big").await.unwrap(), None);
    // A blob moved onto itself stays.
    blobs.rename("s/k", "s/k").await.unwrap();
    assert_eq!(read("s/k").await, large);
    blobs.put("s/other", small(b"other")).await.unwrap();
    blobs.rename("s/other", "s/other").await.unwrap();
    assert_eq!(read("s/other").await, b"other");
    blobs.copy("s/other", "s/copy").await.unwrap();
    blobs.put("s/other", small(b"changed")).await.unwrap();
    assert_eq!(read("s/copy").await, b"other");

    // One listing entry a key, with the size of what it reads as.
    let listed: Vec<(String, u64)> = blobs.list("s/").await.unwrap().into_iter().map(|b| (b.key, b.size)).collect();
    assert_eq!(
        listed,
        vec![("s/copy".into(), 5), ("s/k".into(), large.len() as u64), ("s/other".into(), 7)],
        "{listed:?}"
    );
    for key in ["s/k", "s/copy", "s/other"] {
        blobs.delete(key).await.unwrap();
        assert_eq!(blobs.head(key).await.unwrap(), None, "{key}");
        assert!(matches!(blobs.get(key, None).await, Err(Error::NotFound { .. })), "{key}");
    }
    assert_eq!(blobs.list("s/").await.unwrap(), vec![]);

    // Concurrent small puts (on the filesystem store, committed in groups) each land.
    let puts = (0..40).map(|i| {
        let blobs = blobs.clone();
        async move {
            let body = format!("blob number {i}").into_bytes();
            let d = blobs.put(&format!("c/{i:02}"), depot_core::store::stream_from_bytes(body.clone())).await.unwrap();
            assert_eq!(d.sha256, hex::encode(Sha256::digest(&body)));
        }
    });
    futures::future::join_all(puts).await;
    let listed = blobs.list("c/").await.unwrap();
    assert_eq!(listed.len(), 40);
    for (i, b) in listed.iter().enumerate() {
        assert_eq!(b.key, format!("c/{i:02}"));
        assert_eq!(
            blobs.get(&b.key, None).await.unwrap().bytes().await.unwrap(),
            format!("blob number {i}").into_bytes()
        );
    }
}

pub(crate) async fn blob_failed_put_leaves_nothing(blobs: Arc<dyn BlobStore>) {
    // 9 MiB then an error: past the first multipart part on S3.
    let failing = generated(9 * MIB, 7)
        .chain(futures::stream::once(async { Err(std::io::Error::other("client went away")) }))
        .boxed();
    assert!(blobs.put("half/stored", failing).await.is_err());
    assert_eq!(blobs.head("half/stored").await.unwrap(), None);
    // The empty blob is a blob.
    let d = blobs.put("empty", futures::stream::empty().boxed()).await.unwrap();
    assert_eq!((d.size, d.sha256.as_str()), (0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    assert_eq!(blobs.head("empty").await.unwrap(), Some(0));
}

// ---------------------------------------------------------------- table suite

pub(crate) fn item(pk: &str, sk: &str, extra: Value) -> Item {
    let mut i = Key::new(pk, sk).item();
    if let Value::Object(m) = extra {
        i.extend(m);
    }
    i
}

pub(crate) async fn table_conditional_put(t: Arc<dyn Table>) {
    let it = item(
        "P",
        "a",
        json!({"s": "x", "n": 42, "neg": -7, "b": true, "z": null, "l": [1, "two", {"three": 3}], "m": {"k": ["v"]}}),
    );
    t.put(it.clone(), Cond::NotExists).await.unwrap();
    assert_eq!(t.get(&Key::new("P", "a")).await.unwrap(), Some(it.clone()), "every value type round-trips");
    let again = t.put(item("P", "a", json!({"s": "y"})), Cond::NotExists).await;
    assert!(matches!(again, Err(Error::Conflict { .. })), "{again:?}");
    assert_eq!(t.get(&Key::new("P", "a")).await.unwrap().unwrap()["s"], "x", "a refused put changes nothing");

    assert!(t
        .put(item("P", "a", json!({"s": "y"})), Cond::Eq("s".into(), json!("nope")))
        .await
        .unwrap_err()
        .is_conflict());
    t.put(item("P", "a", json!({"s": "y", "n": 1})), Cond::Eq("s".into(), json!("x"))).await.unwrap();
    assert!(t.put(item("P", "missing", json!({})), Cond::Exists).await.unwrap_err().is_conflict());
    assert!(t.put(item("P", "a", json!({})), Cond::Ge("n".into(), 2)).await.unwrap_err().is_conflict());
    t.put(item("P", "a", json!({"n": 5})), Cond::Ge("n".into(), 1)).await.unwrap();
    // Lacks: the item exists without the attribute (a flag that writers refuse to pass).
    assert!(t.put(item("P", "missing", json!({})), Cond::Lacks("f".into())).await.unwrap_err().is_conflict());
    let a = Key::new("P", "a");
    let flag = || Item::from_iter([("f".to_string(), json!(true))]);
    t.update(&a, flag(), &[], Cond::Lacks("f".into())).await.unwrap();
    assert!(t.update(&a, flag(), &[], Cond::Lacks("f".into())).await.unwrap_err().is_conflict(), "the flag is set");
    t.put(item("P", "a", json!({"n": 5})), Cond::Exists).await.unwrap();
    // All: every condition holds, atomically.
    let both = |n: i64| Cond::All(vec![Cond::Eq("n".into(), json!(n)), Cond::Lacks("f".into())]);
    assert!(t.put(item("P", "a", json!({"n": 5})), both(4)).await.unwrap_err().is_conflict());
    assert!(t.put(item("P", "missing", json!({})), both(5)).await.unwrap_err().is_conflict());
    let g = || Item::from_iter([("g".to_string(), json!(1))]);
    t.update(&a, g(), &[], both(5)).await.unwrap();
    t.update(&a, flag(), &[], Cond::All(vec![])).await.unwrap();
    assert!(t.update(&a, g(), &[], both(5)).await.unwrap_err().is_conflict(), "the flag is set");
    t.put(item("P", "a", json!({"n": 5})), Cond::Exists).await.unwrap();
    assert!(t
        .transact(vec![TxOp::Check { key: Key::new("P", "a"), cond: Cond::Lacks("n".into()) }])
        .await
        .unwrap_err()
        .failed_op(0));

    assert!(t.delete(&Key::new("P", "a"), Cond::Eq("n".into(), json!(4))).await.unwrap_err().is_conflict());
    t.delete(&Key::new("P", "a"), Cond::Eq("n".into(), json!(5))).await.unwrap();
    assert_eq!(t.get(&Key::new("P", "a")).await.unwrap(), None);
    t.delete(&Key::new("P", "a"), Cond::None).await.unwrap();
    assert!(t.delete(&Key::new("P", "a"), Cond::Exists).await.unwrap_err().is_conflict());
    assert!(matches!(t.get(&Key::new("P\0", "a")).await, Err(Error::Invalid(_))));
    // A bad key refuses its own write, and only that one: writes racing it (which the
    // embedded table may commit in one group with it) land.
    let bad = Key::new("P\0", "a");
    let writes = (0..16).map(|i| {
        let (t, bad) = (t.clone(), bad.clone());
        async move {
            let refused = match i % 5 {
                0 => t.delete(&bad, Cond::None).await,
                1 => t.update(&bad, Item::new(), &[("n".into(), 1)], Cond::None).await.map(drop),
                2 => t.transact(vec![TxOp::Check { key: bad, cond: Cond::Exists }]).await,
                3 => t.update_relaxed(&bad, &[("n".into(), 1)], Cond::None).await.map(drop),
                _ => return t.put(item("P", &format!("ok{i}"), json!({})), Cond::NotExists).await.unwrap(),
            };
            assert!(matches!(refused, Err(Error::Invalid(_))), "{refused:?}");
        }
    });
    futures::future::join_all(writes).await;
    for i in (4..16).step_by(5) {
        assert!(t.get(&Key::new("P", format!("ok{i}"))).await.unwrap().is_some(), "ok{i}");
    }
}

pub(crate) async fn table_transaction_all_or_nothing(t: Arc<dyn Table>) {
    t.put(item("T", "a", json!({"v": 1})), Cond::None).await.unwrap();
    t.put(item("T", "counter", json!({"n": 10})), Cond::None).await.unwrap();
    let failing = vec![
        TxOp::Put { item: item("T", "b", json!({"v": 2})), cond: Cond::NotExists },
        TxOp::Delete { key: Key::new("T", "a"), cond: Cond::Exists },
        TxOp::Update {
            key: Key::new("T", "counter"),
            set: Item::new(),
            add: vec![("n".into(), 1)],
            cond: Cond::Exists,
        },
        TxOp::Check { key: Key::new("T", "missing"), cond: Cond::Exists },
    ];
    let err = t.transact(failing.clone()).await.unwrap_err();
    assert!(matches!(&err, Error::Conflict { failed, .. } if failed == &[3]), "{err:?}");
    assert_eq!(t.get(&Key::new("T", "b")).await.unwrap(), None, "no put");
    assert!(t.get(&Key::new("T", "a")).await.unwrap().is_some(), "no delete");
    assert_eq!(t.get(&Key::new("T", "counter")).await.unwrap().unwrap()["n"], 10, "no add");

    t.put(item("T", "missing", json!({})), Cond::None).await.unwrap();
    t.transact(failing).await.unwrap();
    assert_eq!(t.get(&Key::new("T", "b")).await.unwrap().unwrap()["v"], 2);
    assert_eq!(t.get(&Key::new("T", "a")).await.unwrap(), None);
    assert_eq!(t.get(&Key::new("T", "counter")).await.unwrap().unwrap()["n"], 11);

    // Update with set and add creates a missing item.
    let set: Item = json!({"name": "x"}).as_object().unwrap().clone();
    let out = t.update(&Key::new("T", "new"), set, &[("n".into(), 3)], Cond::None).await.unwrap();
    assert_eq!((out["name"].clone(), out["n"].clone(), out["PK"].clone()), (json!("x"), json!(3), json!("T")));
    assert!(t
        .update(&Key::new("T", "new2"), Item::new(), &[("n".into(), 1)], Cond::Exists)
        .await
        .unwrap_err()
        .is_conflict());

    // null removes an attribute: alone, with an add, and in a transaction under a
    // condition on the attribute's value.
    let set: Item = json!({"gone": null, "kept": 1}).as_object().unwrap().clone();
    let out = t.update(&Key::new("T", "new"), set, &[], Cond::None).await.unwrap();
    assert!(!out.contains_key("gone") && out["name"] == "x", "{out:?}");
    let set: Item = json!({"name": null}).as_object().unwrap().clone();
    let out = t.update(&Key::new("T", "new"), set, &[("n".into(), 1)], Cond::None).await.unwrap();
    assert!(!out.contains_key("name") && !out.contains_key("gone"), "{out:?}");
    assert_eq!((out["n"].clone(), out["kept"].clone()), (json!(4), json!(1)));
    let remove = |cond: Cond| TxOp::Update {
        key: Key::new("T", "new"),
        set: json!({"kept": null}).as_object().unwrap().clone(),
        add: vec![],
        cond,
    };
    assert!(t.transact(vec![remove(Cond::Eq("kept".into(), json!(2)))]).await.unwrap_err().is_conflict());
    t.transact(vec![remove(Cond::Eq("kept".into(), json!(1)))]).await.unwrap();
    let got = t.get(&Key::new("T", "new")).await.unwrap().unwrap();
    assert!(!got.contains_key("kept") && got["n"] == 4, "{got:?}");
}

pub(crate) async fn table_atomic_add_concurrent(t: Arc<dyn Table>) {
    let key = Key::new("C", "counter");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let t = t.clone();
            let key = key.clone();
            tokio::spawn(async move {
                for _ in 0..3 {
                    atomic_add(&*t, &key, "hits", 1).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(t.get(&key).await.unwrap().unwrap()["hits"], 60, "20 tasks x 3 adds, none lost");
    assert_eq!(atomic_add(&*t, &key, "hits", -60).await.unwrap(), 0);
}

pub(crate) async fn collect_pages(t: &dyn Table, mut q: Query) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut pages = 0;
    loop {
        let page = t.query(&q).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= q.limit.unwrap_or(u32::MAX) as usize);
        out.extend(page.items.iter().map(|i| i["SK"].as_str().unwrap().to_string()));
        match page.next {
            Some(tok) => q.start = Some(tok),
            None => return (out, pages),
        }
        assert!(pages < 100, "paging does not end");
    }
}

pub(crate) async fn table_query_paged(t: Arc<dyn Table>) {
    for i in 0..25 {
        // GSI1 orders the same items by a second key, in reverse.
        let extra = json!({"n": i, "GSI1PK": "G", "GSI1SK": format!("rank#{:02}", 24 - i)});
        t.put(item("Q", &format!("item#{i:02}"), extra), Cond::None).await.unwrap();
    }
    t.put(item("Q", "other#1", json!({})), Cond::None).await.unwrap();
    t.put(item("Q", "item", json!({})), Cond::None).await.unwrap();
    t.put(item("Q2", "item#00", json!({})), Cond::None).await.unwrap();
    let all: Vec<String> = (0..25).map(|i| format!("item#{i:02}")).collect();

    let (fwd, pages) = collect_pages(&*t, Query::prefix("Q", "item#").limit(10)).await;
    assert_eq!(fwd, all);
    // An empty prefix matches the whole partition, on the table and on an index.
    assert_eq!(collect_pages(&*t, Query::prefix("Q", "")).await.0.len(), 27);
    assert_eq!(collect_pages(&*t, Query::prefix("G", "").index("GSI1")).await.0.len(), 25);
    assert!(pages >= 3, "{pages} pages");
    let (back, pages) = collect_pages(&*t, Query::prefix("Q", "item#").backward().limit(10)).await;
    assert_eq!(back, all.iter().rev().cloned().collect::<Vec<_>>());
    assert!(pages >= 3);

    let between = Query { sk: SkCond::Between("item#05".into(), "item#14".into()), ..Query::partition("Q").limit(4) };
    assert_eq!(collect_pages(&*t, between.clone()).await.0, all[5..15].to_vec());
    assert_eq!(collect_pages(&*t, between.backward()).await.0, all[5..15].iter().rev().cloned().collect::<Vec<_>>());
    let q = |sk| Query { sk, ..Query::partition("Q") };
    assert_eq!(collect_pages(&*t, q(SkCond::Gt("item#23".into()))).await.0, vec!["item#24", "other#1"]);
    assert_eq!(collect_pages(&*t, q(SkCond::Ge("item#24".into()))).await.0, vec!["item#24", "other#1"]);
    assert_eq!(collect_pages(&*t, q(SkCond::Lt("item#00".into()))).await.0, vec!["item"]);
    assert_eq!(collect_pages(&*t, q(SkCond::Le("item#00".into()))).await.0, vec!["item", "item#00"]);
    assert_eq!(collect_pages(&*t, Query::partition("Q")).await.0.len(), 27);
    assert_eq!(collect_pages(&*t, Query::partition("nothing-here")).await.0.len(), 0);

    let (by_rank, pages) = collect_pages(&*t, Query::prefix("G", "rank#").index("GSI1").limit(10)).await;
    assert_eq!(by_rank, all.iter().rev().cloned().collect::<Vec<_>>());
    assert!(pages >= 3);
    let (by_rank_back, _) = collect_pages(&*t, Query::partition("G").index("GSI1").backward().limit(7)).await;
    assert_eq!(by_rank_back, all);

    // An update that changes an index key moves the item in the index.
    let set: Item = json!({"GSI1SK": "rank#99"}).as_object().unwrap().clone();
    t.update(&Key::new("Q", "item#24"), set, &[], Cond::Exists).await.unwrap();
    let (moved, _) = collect_pages(&*t, Query::partition("G").index("GSI1")).await;
    assert_eq!(moved.last().unwrap(), "item#24");
    assert_eq!(moved.len(), 25);
    t.delete(&Key::new("Q", "item#24"), Cond::None).await.unwrap();
    assert_eq!(collect_pages(&*t, Query::partition("G").index("GSI1")).await.0.len(), 24);

    // Tokens are checked.
    let first = t.query(&Query::prefix("Q", "item#").limit(10)).await.unwrap();
    let token = first.next.unwrap();
    let other = Query::prefix("Q2", "item#").start(Some(token));
    assert!(matches!(t.query(&other).await, Err(Error::Invalid(_))));
    let garbage = Query::prefix("Q", "item#").start(Some("not a token!".into()));
    assert!(matches!(t.query(&garbage).await, Err(Error::Invalid(_))));
    assert!(matches!(t.query(&Query::partition("Q").limit(0)).await, Err(Error::Invalid(_))));
}

/// Sends bytes to a presigned URL as a client would: over HTTP for an absolute URL (S3),
/// or, for the embedded backend's relative `/blobs/local/<key>` URL, what its route does
/// after checking the signature (the end-to-end tests drive the real route).
/// Returns the ETag the store answered.
pub(crate) async fn send_to(blobs: &dyn BlobStore, url: &str, bytes: Vec<u8>) -> String {
    if let Some(rest) = url.strip_prefix(depot_core::store::LOCAL_BLOB_PREFIX) {
        let key = rest.split('?').next().unwrap();
        return blobs.put(key, depot_core::store::stream_from_bytes(bytes)).await.unwrap().md5;
    }
    let res = reqwest::Client::new()
        .put(url)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let etag = res.headers().get("etag").map(|e| e.to_str().unwrap().to_string());
    assert_eq!(res.status().as_u16(), 200, "{}", res.text().await.unwrap());
    etag.expect("an ETag")
}

pub(crate) async fn blob_presigned_put_and_multipart(blobs: Arc<dyn BlobStore>) {
    use std::time::Duration;
    let ttl = Duration::from_secs(300);
    // One presigned PUT.
    let url = blobs.presign_put("t/single", 12, ttl).await.unwrap();
    // On S3 the length is signed, so that S3 itself refuses a body of another length.
    if let Some(signed) = url.split(['?', '&']).find_map(|p| p.strip_prefix("X-Amz-SignedHeaders=")) {
        assert!(signed.split("%3B").any(|h| h == "content-length"), "{url}");
    }
    send_to(&*blobs, &url, b"single bytes".to_vec()).await;
    assert_eq!(blobs.get("t/single", None).await.unwrap().bytes().await.unwrap(), b"single bytes");

    // Multipart: parts sent out of order are joined in part order.
    let part1: Vec<u8> = (0..5 * MIB + 100).map(|i| (i % 251) as u8).collect();
    let part2 = b"the tail".to_vec();
    let id = blobs.start_multipart("t/multi").await.unwrap();
    let u2 = blobs.presign_part("t/multi", &id, 2, part2.len() as u64, ttl).await.unwrap();
    let u1 = blobs.presign_part("t/multi", &id, 1, part1.len() as u64, ttl).await.unwrap();
    if let Some(signed) = u1.split(['?', '&']).find_map(|p| p.strip_prefix("X-Amz-SignedHeaders=")) {
        assert!(signed.split("%3B").any(|h| h == "content-length"), "{u1}");
    }
    assert_ne!(u1, u2);
    let e2 = send_to(&*blobs, &u2, part2.clone()).await;
    let e1 = send_to(&*blobs, &u1, part1.clone()).await;
    // A wrong ETag is refused (S3 checks them), and the upload stays completable.
    let wrong = [(1, e1.clone()), (2, format!("\"{}\"", "0".repeat(32)))];
    assert!(matches!(blobs.complete_multipart("t/multi", &id, Some(&wrong)).await, Err(Error::Invalid(_))));
    let joined = blobs.complete_multipart("t/multi", &id, Some(&[(2, e2), (1, e1)])).await.unwrap();
    let got = blobs.get("t/multi", None).await.unwrap().bytes().await.unwrap();
    if let Some(d) = joined {
        assert_eq!((d.size, d.sha256), (got.len() as u64, hex::encode(Sha256::digest(&got))));
    }
    assert_eq!(got.len(), part1.len() + part2.len());
    assert!(got[..part1.len()] == part1[..] && got[part1.len()..] == part2[..]);

    // No parts is Invalid; aborting twice is fine.
    let empty = blobs.start_multipart("t/empty").await.unwrap();
    assert!(matches!(
        blobs.complete_multipart("t/empty", &empty, Some(&[(1, "\"x\"".into())])).await,
        Err(Error::Invalid(_))
    ));
    blobs.abort_multipart("t/empty", &empty).await.unwrap();
    blobs.abort_multipart("t/empty", &empty).await.unwrap();
    // (Completing an aborted upload is NoSuchUpload on AWS; moto answers 500, so the
    // suite does not ask.)
    assert_eq!(blobs.head("t/empty").await.unwrap(), None);

    // Listing a folder: every blob under it with its size, in key order.
    blobs.put("t/list/b", depot_core::store::stream_from_bytes(b"bb".to_vec())).await.unwrap();
    blobs.put("t/list/a/x", depot_core::store::stream_from_bytes(b"a".to_vec())).await.unwrap();
    blobs.put("t/listed-not", depot_core::store::stream_from_bytes(b"n".to_vec())).await.unwrap();
    let listed = blobs.list("t/list").await.unwrap();
    let keys: Vec<_> = listed.iter().map(|b| (b.key.as_str(), b.size)).collect();
    assert_eq!(keys, [("t/list/a/x", 1), ("t/list/b", 2)]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(listed.iter().all(|b| (now - b.modified).abs() < 300), "{listed:?}");
    assert!(blobs.list("t/nothing-here").await.unwrap().is_empty());

    // A presigned GET carries the filename and reads the bytes.
    let get = blobs.presign_get("t/single", ttl, Some("my file.txt")).await.unwrap();
    if get.starts_with('/') {
        assert!(
            get.starts_with(depot_core::store::LOCAL_BLOB_PREFIX) && get.contains("filename=my%20file.txt"),
            "{get}"
        );
    } else {
        let res = reqwest::get(&get).await.unwrap();
        assert_eq!(res.status().as_u16(), 200);
        assert!(res.headers()["content-disposition"].to_str().unwrap().contains("my%20file.txt"));
        assert_eq!(res.bytes().await.unwrap().as_ref(), b"single bytes");
    }
}

/// `get_many` reads items of any partitions at once, in the keys' order, a missing one
/// as `None` and a key asked twice twice; more than the limit is refused.
pub(crate) async fn table_get_many(t: Arc<dyn Table>) {
    for (pk, sk, n) in [("GM#a", "1", 1), ("GM#b", "2", 2), ("GM#c", "3", 3)] {
        t.put(item(pk, sk, json!({ "n": n })), Cond::None).await.unwrap();
    }
    let keys = [Key::new("GM#c", "3"), Key::new("GM#a", "missing"), Key::new("GM#a", "1"), Key::new("GM#c", "3")];
    let got = t.get_many(&keys).await.unwrap();
    let n: Vec<Option<i64>> = got.iter().map(|i| i.as_ref().map(|i| i["n"].as_i64().unwrap())).collect();
    assert_eq!(n, vec![Some(3), None, Some(1), Some(3)]);
    assert_eq!(got[2], t.get(&keys[2]).await.unwrap(), "whole items, as get reads them");
    assert!(t.get_many(&[]).await.unwrap().is_empty());
    let many: Vec<Key> = (0..100).map(|i| Key::new("GM#many", format!("{i:03}"))).collect();
    assert_eq!(t.get_many(&many).await.unwrap().len(), 100);
    let too_many: Vec<Key> = (0..101).map(|i| Key::new("GM#many", format!("{i:03}"))).collect();
    assert!(t.get_many(&too_many).await.is_err());
}

/// `delete_many` deletes every key it is given, missing ones and ones named twice too,
/// past one request's 25, and leaves the others.
pub(crate) async fn table_delete_many(t: Arc<dyn Table>) {
    for i in 0..40 {
        t.put(item("DM#a", &format!("{i:02}"), json!({})), Cond::None).await.unwrap();
    }
    let mut keys: Vec<Key> = (0..30).map(|i| Key::new("DM#a", format!("{i:02}"))).collect();
    keys.push(Key::new("DM#a", "03"));
    keys.push(Key::new("DM#a", "missing"));
    t.delete_many(&keys).await.unwrap();
    let (left, _) = collect_pages(&*t, Query::partition("DM#a")).await;
    assert_eq!(left, (30..40).map(|i| format!("{i:02}")).collect::<Vec<_>>());
    t.delete_many(&[]).await.unwrap();
}
