//! One conformance suite per port, run against every adapter: the local ones and the AWS
//! ones on moto. Plus the registry's project and repository rules on both backends.
mod common;

use std::sync::Arc;

use bytes::Bytes;
use depot_core::store::{atomic_add, BlobStore, ByteRange, ByteStream, Cond, Item, Key, Query, SkCond, Table, TxOp};
use depot_core::Error;
use futures::StreamExt;
use md5::Md5;
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------- blob suite

const MIB: usize = 1024 * 1024;

/// A lazily generated pseudo-random stream of `total` bytes in 64 KiB chunks.
fn generated(total: usize, seed: u64) -> ByteStream {
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

fn vm_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn blob_put_streams_50mb(blobs: Arc<dyn BlobStore>) {
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

async fn blob_get_range_head_delete(blobs: Arc<dyn BlobStore>) {
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
        assert!(matches!(blobs.get("a/b/c.txt", Some(bad)).await, Err(Error::Invalid(_))), "{bad:?}");
    }

    assert!(matches!(blobs.get("a/b/missing", None).await, Err(Error::NotFound(_))));
    assert_eq!(blobs.head("a/b/missing").await.unwrap(), None);
    for bad in ["../x", "/abs", "a\\b", "a/../../b", "nul\0"] {
        assert!(matches!(blobs.head(bad).await, Err(Error::Invalid(_))), "{bad:?}");
    }

    blobs.rename("a/b/c.txt", "d/e.txt").await.unwrap();
    assert_eq!(blobs.head("a/b/c.txt").await.unwrap(), None);
    assert_eq!(blobs.get("d/e.txt", None).await.unwrap().bytes().await.unwrap(), data);
    assert!(matches!(blobs.rename("a/b/c.txt", "x").await, Err(Error::NotFound(_))));

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
    assert!(matches!(blobs.copy("a/b/c.txt", "x").await, Err(Error::NotFound(_))));
    assert_eq!(blobs.head("x").await.unwrap(), None);
    blobs.delete("f/g.txt").await.unwrap();
    blobs.put("d/e.txt", depot_core::store::stream_from_bytes(data.clone())).await.unwrap();

    blobs.delete("d/e.txt").await.unwrap();
    assert_eq!(blobs.head("d/e.txt").await.unwrap(), None);
    blobs.delete("d/e.txt").await.unwrap();
}

async fn blob_failed_put_leaves_nothing(blobs: Arc<dyn BlobStore>) {
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

fn item(pk: &str, sk: &str, extra: Value) -> Item {
    let mut i = Key::new(pk, sk).item();
    if let Value::Object(m) = extra {
        i.extend(m);
    }
    i
}

async fn table_conditional_put(t: Arc<dyn Table>) {
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

    assert!(t.delete(&Key::new("P", "a"), Cond::Eq("n".into(), json!(4))).await.unwrap_err().is_conflict());
    t.delete(&Key::new("P", "a"), Cond::Eq("n".into(), json!(5))).await.unwrap();
    assert_eq!(t.get(&Key::new("P", "a")).await.unwrap(), None);
    t.delete(&Key::new("P", "a"), Cond::None).await.unwrap();
    assert!(t.delete(&Key::new("P", "a"), Cond::Exists).await.unwrap_err().is_conflict());
    assert!(matches!(t.get(&Key::new("P\0", "a")).await, Err(Error::Invalid(_))));
}

async fn table_transaction_all_or_nothing(t: Arc<dyn Table>) {
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
}

async fn table_atomic_add_concurrent(t: Arc<dyn Table>) {
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

async fn collect_pages(t: &dyn Table, mut q: Query) -> (Vec<String>, usize) {
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

async fn table_query_paged(t: Arc<dyn Table>) {
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

/// A registry over `t` and `blobs` holding project `project` with the RDS repositories
/// `repos`.
async fn rds_registry(
    t: Arc<dyn Table>,
    blobs: Arc<dyn BlobStore>,
    project: &str,
    repos: &[&str],
) -> depot_core::registry::Registry {
    use depot_core::registry::{NewProject, NewRepository, Registry};
    let reg = Registry::new(t, blobs);
    reg.create_project(NewProject { name: project.into(), ..Default::default() }, "admin").await.unwrap();
    for r in repos {
        let nr = NewRepository {
            project_id: project.into(),
            name: r.to_string(),
            repo_type: depot_core::model::RepoType::Rds,
            public: false,
            description: None,
            allow_overwrite: None,
        };
        reg.create_repository(nr, "admin").await.unwrap();
    }
    reg
}

/// Remembered page starts follow the repository's state: a write makes the old ones
/// useless and the sweep removes exactly those; deleting the repository removes the rest.
async fn registry_page_starts_expire(t: Arc<dyn Table>) {
    use depot_core::model::RepoType;
    use depot_core::registry::{NewVersion, PageRequest};
    let (blobs, _g) = common::fs_blobs().await;
    let reg = rds_registry(t.clone(), blobs, "ps", &["r"]).await;
    let put = |code: &'static str| {
        let reg = reg.clone();
        async move {
            let blob = reg.store_content(depot_core::store::stream_from_bytes(code.as_bytes().to_vec())).await.unwrap();
            let key = format!("rds://{code}");
            reg.create_version(NewVersion::new("ps", "r", &key, code, RepoType::Rds, "1.0.0", blob), "u")
                .await
                .unwrap();
        }
    };
    let starts = || async { t.query(&Query::partition("PAGES#ps/r")).await.unwrap().items.len() };
    for code in ["a", "b", "c"] {
        put(code).await;
    }
    let first = PageRequest { number: 1, size: 1 };
    let page = reg.package_page("ps", "r", None, first).await.unwrap();
    assert_eq!(page.items[0].key, "rds://a");
    assert_eq!(starts().await, 1, "the start of page 2 is remembered");
    assert_eq!(reg.expire_page_starts().await.unwrap(), 0, "it is current");

    put("d").await;
    assert_eq!(reg.package_page("ps", "r", None, first).await.unwrap().items[0].key, "rds://a");
    assert_eq!(starts().await, 2);
    assert_eq!(reg.expire_page_starts().await.unwrap(), 1, "only the earlier state's start goes");
    assert_eq!(starts().await, 1);
    let third = reg.package_page("ps", "r", None, PageRequest { number: 3, size: 1 }).await.unwrap();
    assert_eq!(third.items[0].key, "rds://c");

    reg.delete_repository("ps", "r", true).await.unwrap();
    assert_eq!(starts().await, 0, "a deleted repository leaves no page starts");
}

macro_rules! suite {
    ($adapter:ident, $open:path, [$($test:ident),* $(,)?]) => {
        mod $adapter {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let (port, _guard) = $open().await;
                    super::$test(port).await;
                }
            )*
        }
    };
}

suite!(
    fs_blobs,
    crate::common::fs_blobs,
    [
        blob_put_streams_50mb,
        blob_get_range_head_delete,
        blob_failed_put_leaves_nothing,
        blob_presigned_put_and_multipart,
    ]
);
suite!(
    s3_blobs,
    crate::common::s3_blobs,
    [
        blob_put_streams_50mb,
        blob_get_range_head_delete,
        blob_failed_put_leaves_nothing,
        blob_presigned_put_and_multipart,
    ]
);
suite!(
    embedded_table,
    crate::common::embedded_table,
    [
        table_conditional_put,
        table_transaction_all_or_nothing,
        table_atomic_add_concurrent,
        table_query_paged,
        registry_projects_and_repositories,
        registry_packages_and_versions,
        registry_page_starts_expire,
    ]
);
suite!(
    dynamo_table,
    crate::common::dynamo_table,
    [
        table_conditional_put,
        table_transaction_all_or_nothing,
        table_atomic_add_concurrent,
        table_query_paged,
        registry_projects_and_repositories,
        registry_packages_and_versions,
        registry_page_starts_expire,
    ]
);

/// Sends bytes to a presigned URL as a client would: over HTTP for an absolute URL (S3),
/// or, for the embedded backend's relative `/blobs/local/<key>` URL, what its route does
/// after checking the signature (the end-to-end tests drive the real route).
/// Returns the ETag the store answered.
async fn send_to(blobs: &dyn BlobStore, url: &str, bytes: Vec<u8>) -> String {
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

async fn blob_presigned_put_and_multipart(blobs: Arc<dyn BlobStore>) {
    use std::time::Duration;
    let ttl = Duration::from_secs(300);
    // One presigned PUT.
    let url = blobs.presign_put("t/single", ttl).await.unwrap();
    send_to(&*blobs, &url, b"single bytes".to_vec()).await;
    assert_eq!(blobs.get("t/single", None).await.unwrap().bytes().await.unwrap(), b"single bytes");

    // Multipart: parts sent out of order are joined in part order.
    let part1: Vec<u8> = (0..5 * MIB + 100).map(|i| (i % 251) as u8).collect();
    let part2 = b"the tail".to_vec();
    let id = blobs.start_multipart("t/multi").await.unwrap();
    let u2 = blobs.presign_part("t/multi", &id, 2, ttl).await.unwrap();
    let u1 = blobs.presign_part("t/multi", &id, 1, ttl).await.unwrap();
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

// ---------------------------------------------------------------- upload sessions, both backends

async fn upload_sessions(t: Arc<dyn Table>, blobs: Arc<dyn BlobStore>) {
    use depot_core::model::upload_key;
    use depot_core::registry::{NewUpload, MAX_UPLOAD_SIZE as MAX_SESSION};
    let reg = rds_registry(t.clone(), blobs.clone(), "p", &["r", "other"]).await;
    let bytes = b"staged bytes".to_vec();
    let sha = hex::encode(Sha256::digest(&bytes));
    let new =
        |size: u64, sha256: Option<String>| NewUpload { project_id: "p".into(), repo_name: "r".into(), size, sha256 };

    let opened = reg.open_upload(new(bytes.len() as u64, Some(sha.clone())), "admin", MAX_SESSION).await.unwrap();
    assert_eq!(opened.targets.len(), 1);
    send_to(&*blobs, &opened.targets[0].url, bytes.clone()).await;
    let staged = reg.complete_upload(opened.session.clone(), None, None).await.unwrap();
    assert_eq!((staged.digest.clone(), staged.size), (format!("sha256:{sha}"), bytes.len() as u64));
    assert_eq!(staged.md5, hex::encode(Md5::digest(&bytes)));
    assert_eq!(staged.sha1, hex::encode(Sha1::digest(&bytes)));
    assert_eq!(blobs.get(&staged.key, None).await.unwrap().bytes().await.unwrap(), bytes);

    // The X-Depot-Blob contract: the same repository resolves it, no other does.
    let found = reg.resolve_staged("p", "r", &format!("sha256:{sha}")).await.unwrap();
    assert_eq!((found.key, found.size), (staged.key.clone(), staged.size));
    assert!(matches!(reg.resolve_staged("p", "other", &sha).await, Err(Error::NotFound(_))));
    assert!(matches!(reg.resolve_staged("p", "r", &"a".repeat(64)).await, Err(Error::NotFound(_))));
    assert!(matches!(reg.resolve_staged("p", "r", "sha256:xyz").await, Err(Error::Invalid(_))));

    // Over the threshold a session is multipart.
    // Over the deployment's limit, or over 5 GiB whatever the limit, is refused.
    for (size, limit) in [(100, 99), (MAX_SESSION + 1, u64::MAX)] {
        let over = reg.open_upload(new(size, None), "admin", limit).await;
        assert!(matches!(&over, Err(Error::TooLarge(m)) if m.contains("at most")), "{over:?}");
    }
    let big = reg.open_upload(new(40 << 20, None), "admin", MAX_SESSION).await.unwrap();
    assert_eq!(big.targets.len(), 3);
    assert!(big.session.multipart_id.is_some());

    // An abandoned session expires with its bytes.
    let abandoned = reg.open_upload(new(5, None), "admin", MAX_SESSION).await.unwrap();
    send_to(&*blobs, &abandoned.targets[0].url, b"12345".to_vec()).await;
    let staging = format!("uploads/{}", abandoned.session.id);
    assert_eq!(blobs.head(&staging).await.unwrap(), Some(5));
    let past = Item::from_iter([("expiresAt".to_string(), json!("2001-01-01T00:00:00.000Z"))]);
    for id in [&abandoned.session.id, &big.session.id] {
        t.update(&upload_key(id), past.clone(), &[], Cond::Exists).await.unwrap();
    }
    assert!(matches!(reg.get_upload(&abandoned.session.id).await, Err(Error::NotFound(m)) if m.contains("expired")));
    assert_eq!(reg.expire_uploads().await.unwrap(), 2);
    assert_eq!(blobs.head(&staging).await.unwrap(), None);
    assert_eq!(t.get(&upload_key(&abandoned.session.id)).await.unwrap(), None);
    assert_eq!(reg.expire_uploads().await.unwrap(), 0, "the completed session is still live");

    // What was staged for a repository is not for one created again under its name.
    reg.delete_repository("p", "r", true).await.unwrap();
    let nr = depot_core::registry::NewRepository {
        project_id: "p".into(),
        name: "r".into(),
        repo_type: depot_core::model::RepoType::Rds,
        public: false,
        description: None,
        allow_overwrite: None,
    };
    reg.create_repository(nr, "admin").await.unwrap();
    assert!(matches!(reg.resolve_staged("p", "r", &sha).await, Err(Error::NotFound(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_sessions_embedded() {
    let ((t, _g1), (b, _g2)) = (common::embedded_table().await, common::fs_blobs().await);
    upload_sessions(t, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_sessions_aws() {
    let ((t, _g1), (b, _g2)) = (common::dynamo_table().await, common::s3_blobs().await);
    upload_sessions(t, b).await;
}

// ---------------------------------------------------------------- registry on both tables

async fn registry_projects_and_repositories(t: Arc<dyn Table>) {
    use depot_core::model::{repo_key, RepoType};
    use depot_core::registry::{NewProject, NewRepository, Registry};
    let (blobs, _g) = common::fs_blobs().await;
    let reg = Registry::new(t.clone(), blobs);
    let np = |name: &str| NewProject { name: name.into(), ..Default::default() };
    let nr = |p: &str, r: &str| NewRepository {
        project_id: p.into(),
        name: r.into(),
        repo_type: RepoType::Rds,
        public: false,
        description: None,
        allow_overwrite: None,
    };

    let p = reg.create_project(np("proj"), "admin").await.unwrap();
    assert_eq!((p.display_name.as_str(), p.created_by.as_str()), ("proj", "admin"));
    assert!(matches!(reg.create_project(np("proj"), "admin").await, Err(Error::Exists(_))));
    assert!(matches!(reg.create_project(np("-bad"), "admin").await, Err(Error::Invalid(_))));
    assert!(matches!(reg.create_repository(nr("nope", "r"), "admin").await, Err(Error::NotFound(_))));

    reg.create_repository(nr("proj", "r1"), "admin").await.unwrap();
    reg.create_repository(nr("proj", "r2"), "admin").await.unwrap();
    assert!(matches!(reg.create_repository(nr("proj", "r1"), "admin").await, Err(Error::Exists(_))));
    let names: Vec<_> = reg.list_repositories("proj").await.unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["r1", "r2"]);
    assert_eq!(reg.get_project("proj").await.unwrap().repo_count, 2);

    // A repository holding a package is kept unless forced.
    let pkg = depot_core::model::package_key("proj", "r1", "rds://x");
    t.put(pkg.item(), Cond::None).await.unwrap();
    let ver = Key::new(depot_core::model::package_partition("proj", "r1", "rds://x"), "VER#1.0.0");
    t.put(ver.item(), Cond::None).await.unwrap();
    atomic_add(&*t, &repo_key("proj", "r1"), "packageCount", 1).await.unwrap();
    let refused = reg.delete_repository("proj", "r1", false).await.unwrap_err();
    assert!(matches!(&refused, Error::Conflict { message, .. } if message.contains("forced=true")), "{refused:?}");
    assert!(reg.repository_exists("proj", "r1").await.unwrap());
    let refused = reg.delete_project("proj", false).await.unwrap_err();
    assert!(matches!(&refused, Error::Conflict { message, .. } if message.contains("forced=true")), "{refused:?}");

    reg.delete_repository("proj", "r2", false).await.unwrap();
    assert_eq!(reg.get_project("proj").await.unwrap().repo_count, 1);
    reg.delete_repository("proj", "r1", true).await.unwrap();
    assert_eq!(t.get(&pkg).await.unwrap(), None, "forced delete removes packages");
    assert_eq!(t.get(&ver).await.unwrap(), None, "and versions");
    assert!(matches!(reg.delete_repository("proj", "r1", false).await, Err(Error::NotFound(_))));
    reg.delete_project("proj", false).await.unwrap();
    assert!(!reg.project_exists("proj").await.unwrap());
}

async fn registry_packages_and_versions(t: Arc<dyn Table>) {
    use depot_core::model::{version_key, RepoType, STAGE_RELEASE};
    use depot_core::registry::NewVersion;
    let (blobs, _g) = common::fs_blobs().await;
    let reg = rds_registry(t.clone(), blobs, "pk", &["r"]).await;
    let blob = reg.store_content(depot_core::store::stream_from_bytes(b"bytes".to_vec())).await.unwrap();
    let nv = |v: &str| NewVersion::new("pk", "r", "rds://x", "x", RepoType::Rds, v, blob.clone());
    let generation = || async { reg.get_repository("pk", "r").await.unwrap().generation };
    let g0 = generation().await;
    for v in ["1.0.0", "1.10.0", "1.2.0"] {
        let (_, new) = reg.create_version(nv(v), "u").await.unwrap();
        assert!(new);
    }
    let p = reg.get_package("pk", "r", "rds://x").await.unwrap();
    assert_eq!((p.versions, p.latest.as_str()), (3, "1.10.0"), "latest by semver");
    assert_eq!(p.history_version, ["1.0.0", "1.10.0", "1.2.0"]);
    assert_eq!(reg.get_repository("pk", "r").await.unwrap().package_count, 1);
    assert_eq!(generation().await, g0 + 3, "every write bumps the generation");
    assert!(matches!(reg.create_version(nv("1.2.0"), "u").await, Err(Error::Exists(_))));

    // A @release version is kept from overwrites and deletes without MANAGE.
    t.update(
        &version_key("pk", "r", "rds://x", "1.2.0"),
        Item::from_iter([("stageTag".to_string(), json!([STAGE_RELEASE]))]),
        &[],
        Cond::Exists,
    )
    .await
    .unwrap();
    let over = NewVersion { overwrite: true, ..nv("1.2.0") };
    assert!(matches!(reg.create_version(over.clone(), "u").await, Err(Error::Forbidden(_))));
    assert!(matches!(reg.delete_version("pk", "r", "rds://x", "1.2.0", false).await, Err(Error::Forbidden(_))));
    let (v, new) = reg.create_version(NewVersion { may_change_released: true, ..over }, "u").await.unwrap();
    assert!(!new);
    assert_eq!(v.stage_tag, [STAGE_RELEASE], "an overwrite keeps the stage");
    assert_eq!(reg.get_package("pk", "r", "rds://x").await.unwrap().versions, 3, "an overwrite adds no version");

    // Downloads count on the version and the package together.
    reg.record_download("pk", "r", "rds://x", "1.0.0").await.unwrap();
    reg.record_download("pk", "r", "rds://x", "1.0.0").await.unwrap();
    assert_eq!(reg.get_version("pk", "r", "rds://x", "1.0.0").await.unwrap().downloads, 2);
    assert_eq!(reg.get_package("pk", "r", "rds://x").await.unwrap().downloads, 2);
    let today = depot_core::model::now_iso()[..10].to_string();
    let day =
        t.get(&depot_core::model::download_day_key("pk", "r", "rds://x", &today, "1.0.0")).await.unwrap().unwrap();
    assert_eq!(day["downloads"], 2, "the day's counter moves with them");
    assert!(matches!(reg.record_download("pk", "r", "rds://x", "9.9.9").await, Err(Error::NotFound(_))));

    // Deleting the latest recomputes it; the last delete removes the package.
    reg.delete_version("pk", "r", "rds://x", "1.10.0", false).await.unwrap();
    let p = reg.get_package("pk", "r", "rds://x").await.unwrap();
    assert_eq!((p.versions, p.latest.as_str()), (2, "1.2.0"));
    assert_eq!(p.history_version.len(), 3, "history is never pruned");
    assert!(matches!(reg.delete_version("pk", "r", "rds://x", "1.10.0", false).await, Err(Error::NotFound(_))));
    assert_eq!(reg.delete_package("pk", "r", "rds://x", true).await.unwrap(), 2);
    assert!(matches!(reg.get_package("pk", "r", "rds://x").await, Err(Error::NotFound(_))));
    let repo = reg.get_repository("pk", "r").await.unwrap();
    assert_eq!(repo.package_count, 0, "no negative or stale counter");
    assert!(reg.list_versions("pk", "r", "rds://x").await.unwrap().is_empty());
}

// ---------------------------------------------------------------- garbage collection

/// Garbage collection against uploads of the same bytes, with each interleaving forced
/// step by step: a collector's mark makes a commit wait, a collector that runs after a
/// commit keeps the blob, and one that removes the blob between an upload's store and
/// its commit is undone from the upload's spare.
async fn registry_gc_guard(t: Arc<dyn Table>, blobs: Arc<dyn BlobStore>) {
    use depot_core::model::{gc_mark_key, staged_key, RepoType};
    use depot_core::registry::{BlobRef, Hold, NewVersion};
    use std::time::{Duration, Instant};

    let reg = rds_registry(t.clone(), blobs.clone(), "gc", &["r"]).await;
    let payload = b"the same bytes, uploaded again and again".to_vec();
    let store = || async { reg.store_content(depot_core::store::stream_from_bytes(payload.clone())).await.unwrap() };
    let nv = |v: &str, blob: BlobRef| NewVersion::new("gc", "r", "rds://x", "x", RepoType::Rds, v, blob);
    let bytes_of = |key: String| {
        let blobs = blobs.clone();
        async move { blobs.get(&key, None).await.unwrap().bytes().await.unwrap() }
    };
    let spares = || async { blobs.list("tmp").await.unwrap().len() };

    // An upload stores the bytes once and drops its spare after the commit.
    let first = store().await;
    let content = first.key.clone();
    reg.create_version(nv("1.0.0", first), "u").await.unwrap();
    assert_eq!(bytes_of(content.clone()).await, payload);
    assert_eq!(spares().await, 0, "the spare is dropped once the version is committed");
    reg.delete_version("gc", "r", "rds://x", "1.0.0", false).await.unwrap();

    // 1. A collector that planned before an upload and removes after its commit reads
    //    the new reference after marking, and keeps the blob.
    let mut plan = reg.plan_garbage(0).await.unwrap();
    assert!(plan.unreferenced.iter().any(|b| b.key == content), "{plan:?}");
    reg.create_version(nv("2.0.0", store().await), "u").await.unwrap();
    reg.remove_garbage(&mut plan).await.unwrap();
    assert_eq!(plan.removed, 0, "{plan:?}");
    assert_eq!(bytes_of(content.clone()).await, payload);
    assert!(t.get(&gc_mark_key(&content)).await.unwrap().is_none(), "the collector removes its marks");
    reg.delete_version("gc", "r", "rds://x", "2.0.0", false).await.unwrap();

    // 2. A whole collection between an upload's store (which found the bytes present and
    //    wrote nothing but its spare) and its commit removes the blob; the commit's
    //    settling puts it back from the spare.
    let pending = store().await;
    assert!(matches!(pending.hold, Hold::Spare(_)));
    let report = reg.collect_garbage(false, 0).await.unwrap();
    assert_eq!(report.removed, 1, "{report:?}");
    assert_eq!(blobs.head(&content).await.unwrap(), None);
    reg.create_version(nv("3.0.0", pending), "u").await.unwrap();
    assert_eq!(bytes_of(content.clone()).await, payload, "restored from the upload's spare");
    assert_eq!(spares().await, 0);
    let report = reg.collect_garbage(false, 0).await.unwrap();
    assert_eq!(report.removed, 0, "a referenced blob stays: {report:?}");
    reg.delete_version("gc", "r", "rds://x", "3.0.0", false).await.unwrap();

    // 3. While a collector holds its mark on the blob, a commit naming it waits; the
    //    collector deletes the blob and lifts the mark; the upload then commits and
    //    restores the bytes from its spare.
    let mut mark = gc_mark_key(&content).item();
    mark.insert("run".into(), "other-collector".into());
    mark.insert("ttl".into(), (time::OffsetDateTime::now_utc().unix_timestamp() + 600).into());
    t.put(mark.clone(), Cond::NotExists).await.unwrap();
    let pending = store().await;
    let upload = {
        let reg = reg.clone();
        tokio::spawn(async move { reg.create_version(nv("4.0.0", pending), "u").await })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!upload.is_finished(), "the commit waits for the collector's mark");
    assert!(matches!(reg.get_version("gc", "r", "rds://x", "4.0.0").await, Err(Error::NotFound(_))));
    // Another collector meanwhile skips what this one holds.
    let report = reg.collect_garbage(false, 0).await.unwrap();
    assert_eq!((report.removed, report.skipped), (0, 1), "{report:?}");
    blobs.delete(&content).await.unwrap();
    t.delete(&gc_mark_key(&content), Cond::Eq("run".into(), "other-collector".into())).await.unwrap();
    upload.await.unwrap().unwrap();
    assert_eq!(reg.get_version("gc", "r", "rds://x", "4.0.0").await.unwrap().blob_key, content);
    assert_eq!(bytes_of(content.clone()).await, payload, "restored from the upload's spare");
    assert_eq!(spares().await, 0);
    reg.delete_version("gc", "r", "rds://x", "4.0.0", false).await.unwrap();

    // 4. A mark left behind past its expiry (a collector that died) is removed by the
    //    writer, which goes on at once.
    mark.insert("ttl".into(), (time::OffsetDateTime::now_utc().unix_timestamp() - 1).into());
    t.put(mark, Cond::None).await.unwrap();
    let started = Instant::now();
    reg.create_version(nv("5.0.0", store().await), "u").await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(t.get(&gc_mark_key(&content)).await.unwrap().is_none());
    assert_eq!(bytes_of(content.clone()).await, payload);

    // 5. A blob named through a staged record needs that record at commit time: once it
    //    is gone (expired), the upload is refused rather than naming bytes a collector
    //    may remove.
    let digests = reg.get_version("gc", "r", "rds://x", "5.0.0").await.unwrap();
    let digests =
        depot_core::store::Digests { sha256: digests.sha256, sha1: digests.sha1, md5: digests.md5, size: digests.size };
    let gone = BlobRef { key: content.clone(), digests, hold: Hold::Staged(staged_key("gc", "r", "sha256:0000")) };
    let refused = reg.create_version(nv("6.0.0", gone), "u").await;
    assert!(matches!(&refused, Err(Error::NotFound(m)) if m.contains("expired")), "{refused:?}");
    assert!(matches!(reg.get_version("gc", "r", "rds://x", "6.0.0").await, Err(Error::NotFound(_))));

    // A failed commit drops its spare too.
    let refused = reg.create_version(nv("5.0.0", store().await), "u").await;
    assert!(matches!(refused, Err(Error::Exists(_))), "{refused:?}");
    assert_eq!(spares().await, 0);

    // A collector takes over a mark another one left behind when it died.
    reg.delete_version("gc", "r", "rds://x", "5.0.0", false).await.unwrap();
    let mut stale = gc_mark_key(&content).item();
    stale.insert("run".into(), "dead-collector".into());
    stale.insert("ttl".into(), (time::OffsetDateTime::now_utc().unix_timestamp() - 1).into());
    t.put(stale, Cond::None).await.unwrap();
    let report = reg.collect_garbage(false, 0).await.unwrap();
    assert_eq!((report.removed, report.skipped), (1, 0), "{report:?}");
    assert_eq!(blobs.head(&content).await.unwrap(), None);
    assert!(t.get(&gc_mark_key(&content)).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_guard_embedded_fs() {
    let (t, _g1) = common::embedded_table().await;
    let (b, _g2) = common::fs_blobs().await;
    registry_gc_guard(t, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_guard_dynamo_s3() {
    let (t, _g1) = common::dynamo_table().await;
    let (b, _g2) = common::s3_blobs().await;
    registry_gc_guard(t, b).await;
}
