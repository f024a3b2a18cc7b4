//! The use cases over every pair of adapters: projects and repositories, packages and
//! versions, page starts, upload sessions and the garbage-collection guard.
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
#[allow(unused_imports)]
use crate::ports::*;

/// A registry over `t` and `blobs` holding project `project` with the RDS repositories
/// `repos`.
/// A writer without MANAGE.
pub(crate) fn writer() -> depot_core::model::Actor {
    use depot_core::model::{Action, Actor, Rights};
    Actor::user("u", Rights::of(&[Action::Read, Action::Write, Action::Delete]))
}

/// A writer with MANAGE.
pub(crate) fn manager() -> depot_core::model::Actor {
    depot_core::model::Actor::user("u", depot_core::model::Rights::ALL)
}

/// A private RDS repository `project/name`, as `create_repository` takes it.
pub(crate) fn rds_repo(project: &str, name: &str) -> depot_core::registry::NewRepository {
    depot_core::registry::NewRepository {
        project_id: project.into(),
        name: name.into(),
        repo_type: depot_core::model::RepoType::Rds,
        public: false,
        description: None,
        allow_overwrite: None,
        configuration: None,
    }
}

pub(crate) async fn rds_registry(
    t: Arc<dyn Table>,
    blobs: Arc<dyn BlobStore>,
    project: &str,
    repos: &[&str],
) -> depot_core::registry::Registry {
    use depot_core::registry::{NewProject, Registry};
    let reg = Registry::new(t, blobs);
    reg.create_project(NewProject { name: project.into(), ..Default::default() }, "admin").await.unwrap();
    for r in repos {
        reg.create_repository(rds_repo(project, r), "admin").await.unwrap();
    }
    reg
}

/// Remembered page starts follow the repository's state: a write makes the old ones
/// useless and the sweep removes exactly those; deleting the repository removes the rest.
pub(crate) async fn registry_page_starts_expire(t: Arc<dyn Table>) {
    use depot_core::model::RepoType;
    use depot_core::registry::{NewVersion, PageRequest};
    let (blobs, _g) = common::fs_blobs().await;
    let reg = rds_registry(t.clone(), blobs, "ps", &["r"]).await;
    let put = |code: &'static str| {
        let reg = reg.clone();
        async move {
            let blob = reg.store_content(depot_core::store::stream_from_bytes(code.as_bytes().to_vec())).await.unwrap();
            let key = format!("rds://{code}");
            reg.create_version(NewVersion::new("ps", "r", &key, code, RepoType::Rds, "1.0.0", blob), &writer())
                .await
                .unwrap();
        }
    };
    let starts = || async { t.query(&Query::partition("PAGES#ps/r")).await.unwrap().items.len() };
    for code in ["a", "b", "c"] {
        put(code).await;
    }
    let first = PageRequest { number: 1, size: 1 };
    let page = reg.package_page(&reg.get_repository("ps", "r").await.unwrap(), None, first).await.unwrap();
    assert_eq!(page.items[0].key, "rds://a");
    assert_eq!(starts().await, 1, "the start of page 2 is remembered");
    assert_eq!(reg.expire_page_starts().await.unwrap(), 0, "it is current");

    put("d").await;
    assert_eq!(
        reg.package_page(&reg.get_repository("ps", "r").await.unwrap(), None, first).await.unwrap().items[0].key,
        "rds://a"
    );
    assert_eq!(starts().await, 2);
    assert_eq!(reg.expire_page_starts().await.unwrap(), 1, "only the earlier state's start goes");
    assert_eq!(starts().await, 1);
    let third = reg
        .package_page(&reg.get_repository("ps", "r").await.unwrap(), None, PageRequest { number: 3, size: 1 })
        .await
        .unwrap();
    assert_eq!(third.items[0].key, "rds://c");

    reg.delete_repository("ps", "r", true).await.unwrap();
    assert_eq!(starts().await, 0, "a deleted repository leaves no page starts");
}

// ---------------------------------------------------------------- upload sessions, both backends

pub(crate) async fn upload_sessions(t: Arc<dyn Table>, blobs: Arc<dyn BlobStore>) {
    use depot_core::registry::{NewUpload, MAX_UPLOAD_SIZE as MAX_SESSION};
    use depot_core::store::schema::upload_key;
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
    assert_eq!((found.key.clone(), found.size), (staged.key.clone(), staged.size));
    assert!(matches!(reg.resolve_staged("p", "other", &sha).await, Err(Error::NotFound { .. })));
    assert!(matches!(reg.resolve_staged("p", "r", &"a".repeat(64)).await, Err(Error::NotFound { .. })));
    assert!(matches!(reg.resolve_staged("p", "r", "sha256:xyz").await, Err(Error::Invalid(_))));
    assert_eq!(found.staged_by, "admin", "the record names who staged it");

    // A version's further files may be staged blobs: held by their lease, not by a
    // condition in the commit. One whose record expires within the lease is refused,
    // and the refusal stores nothing.
    {
        use depot_core::model::{Actor, RepoType};
        use depot_core::registry::{BlobRef, Hold, NewVersion, STAGED_LEASE};
        use depot_core::store::schema::staged_key;
        use depot_core::store::{stream_from_bytes, Digests, TTL_ATTR};
        let file = |s: &depot_core::registry::StagedBlob| BlobRef {
            key: s.key.clone(),
            digests: Digests { sha256: s.sha256.clone(), sha1: s.sha1.clone(), md5: s.md5.clone(), size: s.size },
            hold: Hold::Staged(staged_key("p", "r", &s.digest)),
        };
        let version = |v: &str, files: Vec<BlobRef>, manifest: BlobRef| NewVersion {
            files,
            ..NewVersion::new("p", "r", "rds://tree", "tree", RepoType::Rds, v, manifest)
        };
        let admin = Actor::user("admin", depot_core::model::Rights::ALL);
        let manifest = reg.store_content(stream_from_bytes(b"manifest 1".to_vec())).await.unwrap();
        let (v, _) = reg.create_version(version("1.0.0", vec![file(&found)], manifest), &admin).await.unwrap();
        assert_eq!(v.blobs, vec![found.key.clone()], "{v:?}");
        let soon = time::OffsetDateTime::now_utc().unix_timestamp() + STAGED_LEASE.as_secs() as i64 - 60;
        let short = Item::from_iter([(TTL_ATTR.to_string(), json!(soon))]);
        t.update(&staged_key("p", "r", &found.digest), short, &[], Cond::Exists).await.unwrap();
        let expiring = reg.resolve_staged("p", "r", &found.digest).await.unwrap();
        let manifest = reg.store_content(stream_from_bytes(b"manifest 2".to_vec())).await.unwrap();
        let refused = reg.create_version(version("2.0.0", vec![file(&expiring)], manifest), &admin).await;
        assert!(
            matches!(&refused, Err(Error::NotFound { message, .. }) if message.contains("stage it again")),
            "{refused:?}"
        );
        assert!(reg.get_version("p", "r", "rds://tree", "2.0.0").await.unwrap_err().is_not_found());
    }

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
    assert!(
        matches!(reg.get_upload(&abandoned.session.id).await, Err(Error::NotFound { message: m, .. }) if m.contains("expired"))
    );
    assert_eq!(reg.expire_uploads().await.unwrap(), 2);
    assert_eq!(blobs.head(&staging).await.unwrap(), None);
    assert_eq!(t.get(&upload_key(&abandoned.session.id)).await.unwrap(), None);
    assert_eq!(reg.expire_uploads().await.unwrap(), 0, "the completed session is still live");

    // What was staged for a repository is not for one created again under its name.
    reg.delete_repository("p", "r", true).await.unwrap();
    reg.create_repository(rds_repo("p", "r"), "admin").await.unwrap();
    assert!(matches!(reg.resolve_staged("p", "r", &sha).await, Err(Error::NotFound { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
pub(crate) async fn upload_sessions_embedded() {
    let ((t, _g1), (b, _g2)) = (common::embedded_table().await, common::fs_blobs().await);
    upload_sessions(t, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
pub(crate) async fn upload_sessions_aws() {
    let ((t, _g1), (b, _g2)) = (common::dynamo_table().await, common::s3_blobs().await);
    upload_sessions(t, b).await;
}

// ---------------------------------------------------------------- registry on both tables

pub(crate) async fn registry_projects_and_repositories(t: Arc<dyn Table>) {
    use depot_core::model::RepoType;
    use depot_core::registry::{NewProject, NewRepository, Registry};
    use depot_core::store::schema::repo_key;
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
        configuration: None,
    };

    let p = reg.create_project(np("proj"), "admin").await.unwrap();
    assert_eq!((p.display_name.as_str(), p.created_by.as_str()), ("proj", "admin"));
    assert!(matches!(reg.create_project(np("proj"), "admin").await, Err(Error::Exists { .. })));
    assert!(matches!(reg.create_project(np("-bad"), "admin").await, Err(Error::Invalid(_))));
    assert!(matches!(reg.create_repository(nr("nope", "r"), "admin").await, Err(Error::NotFound { .. })));

    reg.create_repository(nr("proj", "r1"), "admin").await.unwrap();
    reg.create_repository(nr("proj", "r2"), "admin").await.unwrap();
    assert!(matches!(reg.create_repository(nr("proj", "r1"), "admin").await, Err(Error::Exists { .. })));
    let names: Vec<_> = reg.list_repositories("proj").await.unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["r1", "r2"]);
    assert_eq!(reg.get_project("proj").await.unwrap().repo_count, 2);

    // A repository holding a package is kept unless forced.
    let pkg = depot_core::store::schema::package_key("proj", "r1", "rds://x");
    t.put(pkg.item(), Cond::None).await.unwrap();
    let ver = Key::new(depot_core::store::schema::package_partition("proj", "r1", "rds://x"), "VER#1.0.0");
    t.put(ver.item(), Cond::None).await.unwrap();
    atomic_add(&*t, &repo_key("proj", "r1"), "packageCount", 1).await.unwrap();
    let refused = reg.delete_repository("proj", "r1", false).await.unwrap_err();
    // Packages exist in it: bkrepo's REPOSITORY_NOT_EMPTY (251008).
    assert!(
        matches!(&refused, Error::Exists { what: depot_core::error::Kind::Package, message, .. } if message.contains("forced=true")),
        "{refused:?}"
    );
    assert!(reg.find_repository("proj", "r1").await.unwrap().is_some());
    let refused = reg.delete_project("proj", false).await.unwrap_err();
    assert!(matches!(&refused, Error::Conflict { message, .. } if message.contains("forced=true")), "{refused:?}");

    reg.delete_repository("proj", "r2", false).await.unwrap();
    assert_eq!(reg.get_project("proj").await.unwrap().repo_count, 1);
    reg.delete_repository("proj", "r1", true).await.unwrap();
    assert_eq!(t.get(&pkg).await.unwrap(), None, "forced delete removes packages");
    assert_eq!(t.get(&ver).await.unwrap(), None, "and versions");
    assert!(matches!(reg.delete_repository("proj", "r1", false).await, Err(Error::NotFound { .. })));
    reg.delete_project("proj", false).await.unwrap();
    assert!(!reg.project_exists("proj").await.unwrap());
}

pub(crate) async fn registry_packages_and_versions(t: Arc<dyn Table>) {
    use depot_core::model::{RepoType, STAGE_RELEASE};
    use depot_core::registry::NewVersion;
    use depot_core::store::schema::version_key;
    let (blobs, _g) = common::fs_blobs().await;
    let reg = rds_registry(t.clone(), blobs, "pk", &["r"]).await;
    let blob = reg.store_content(depot_core::store::stream_from_bytes(b"bytes".to_vec())).await.unwrap();
    let nv = |v: &str| NewVersion::new("pk", "r", "rds://x", "x", RepoType::Rds, v, blob.clone());
    let generation = || async { reg.get_repository("pk", "r").await.unwrap().generation };
    let g0 = generation().await;
    for v in ["1.0.0", "1.10.0", "1.2.0"] {
        let (_, new) = reg.create_version(nv(v), &writer()).await.unwrap();
        assert!(new);
    }
    let p = reg.get_package("pk", "r", "rds://x").await.unwrap();
    assert_eq!((p.versions, p.latest.as_str()), (3, "1.10.0"), "latest by semver");
    assert_eq!(p.history_version, ["1.0.0", "1.10.0", "1.2.0"]);
    assert_eq!(reg.get_repository("pk", "r").await.unwrap().package_count, 1);
    assert_eq!(generation().await, g0 + 3, "every write bumps the generation");
    assert!(matches!(reg.create_version(nv("1.2.0"), &writer()).await, Err(Error::Exists { .. })));

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
    assert!(matches!(reg.create_version(over.clone(), &writer()).await, Err(Error::Forbidden(_))));
    assert!(matches!(reg.delete_version(&writer(), "pk", "r", "rds://x", "1.2.0").await, Err(Error::Forbidden(_))));
    let (v, new) = reg.create_version(over, &manager()).await.unwrap();
    assert!(!new);
    assert_eq!(v.stage_tag, [STAGE_RELEASE], "an overwrite keeps the stage");
    assert_eq!(reg.get_package("pk", "r", "rds://x").await.unwrap().versions, 3, "an overwrite adds no version");

    // Downloads: one write each, on the package's item, which counts the package and
    // holds the version's count pending until a roll-up moves it into the version's and
    // the day's counters. What a version shows is both.
    reg.record_download("pk", "r", "rds://x", "1.0.0").await.unwrap();
    reg.record_download("pk", "r", "rds://x", "1.0.0").await.unwrap();
    let shown = |v: &'static str| {
        let reg = reg.clone();
        async move {
            let mut got = vec![reg.get_version("pk", "r", "rds://x", v).await.unwrap()];
            reg.pending_downloads("pk", "r", "rds://x").await.unwrap().apply(&mut got);
            got[0].downloads
        }
    };
    assert_eq!(shown("1.0.0").await, 2);
    assert_eq!(reg.get_version("pk", "r", "rds://x", "1.0.0").await.unwrap().downloads, 0, "pending still");
    assert_eq!(reg.get_package("pk", "r", "rds://x").await.unwrap().downloads, 2);
    reg.roll_up_downloads("pk", "r", "rds://x").await.unwrap();
    assert_eq!(reg.get_version("pk", "r", "rds://x", "1.0.0").await.unwrap().downloads, 2, "rolled up");
    assert_eq!(shown("1.0.0").await, 2, "and counted once");
    let today = depot_core::model::now_iso()[..10].to_string();
    let day_key = |day: &str, v: &str| depot_core::store::schema::download_day_key("pk", "r", "rds://x", day, v);
    let day = t.get(&day_key(&today, "1.0.0")).await.unwrap().unwrap();
    assert_eq!(day["downloads"], 2, "the day's counter has them");
    let ttl = day["ttl"].as_i64().unwrap();
    let expected = time::OffsetDateTime::now_utc().unix_timestamp() + depot_core::registry::DOWNLOAD_DAYS_KEPT * 86_400;
    assert!((expected - 60..=expected + 60).contains(&ttl), "a day's counter expires after {} days", depot_core::registry::DOWNLOAD_DAYS_KEPT);
    // A count pending from an earlier day starts a roll-up with the next download.
    let package = depot_core::store::schema::package_key("pk", "r", "rds://x");
    t.update(&package, Item::new(), &[("dl#2020-01-01#1.2.0".into(), 3)], Cond::Exists).await.unwrap();
    reg.record_download("pk", "r", "rds://x", "1.2.0").await.unwrap();
    assert_eq!(reg.get_version("pk", "r", "rds://x", "1.2.0").await.unwrap().downloads, 4);
    assert_eq!(t.get(&day_key("2020-01-01", "1.2.0")).await.unwrap().unwrap()["downloads"], 3);
    let item = t.get(&package).await.unwrap().unwrap();
    assert!(!item.keys().any(|k| k.starts_with(depot_core::registry::PENDING_DOWNLOADS_PREFIX)), "{item:?}");
    // A count of a version deleted since is dropped; the others move.
    t.update(&package, Item::new(), &[("dl#2020-01-02#0.0.9".into(), 5), ("dl#2020-01-02#1.0.0".into(), 1)], Cond::Exists)
        .await
        .unwrap();
    reg.roll_up_downloads("pk", "r", "rds://x").await.unwrap();
    assert_eq!(reg.get_version("pk", "r", "rds://x", "1.0.0").await.unwrap().downloads, 3);
    assert!(t.get(&depot_core::store::schema::version_key("pk", "r", "rds://x", "0.0.9")).await.unwrap().is_none());
    assert!(!t.get(&package).await.unwrap().unwrap().keys().any(|k| k.starts_with("dl#")));
    assert_eq!(reg.get_package("pk", "r", "rds://x").await.unwrap().downloads, 3);
    assert!(matches!(reg.record_download("pk", "r", "rds://nope", "1.0.0").await, Err(Error::NotFound { .. })));

    // Deleting the latest recomputes it; the last delete removes the package.
    reg.delete_version(&writer(), "pk", "r", "rds://x", "1.10.0").await.unwrap();
    let p = reg.get_package("pk", "r", "rds://x").await.unwrap();
    assert_eq!((p.versions, p.latest.as_str()), (2, "1.2.0"));
    assert_eq!(p.history_version.len(), 3, "history is never pruned");
    assert!(matches!(reg.delete_version(&writer(), "pk", "r", "rds://x", "1.10.0").await, Err(Error::NotFound { .. })));
    assert!(t.get(&day_key(&today, "1.0.0")).await.unwrap().is_some());
    assert_eq!(reg.delete_package(&manager(), "pk", "r", "rds://x").await.unwrap(), 2);
    for (day, v) in [(today.as_str(), "1.0.0"), ("2020-01-01", "1.2.0")] {
        assert!(t.get(&day_key(day, v)).await.unwrap().is_none(), "day counters go with their versions");
    }
    assert!(matches!(reg.get_package("pk", "r", "rds://x").await, Err(Error::NotFound { .. })));
    let repo = reg.get_repository("pk", "r").await.unwrap();
    assert_eq!(repo.package_count, 0, "no negative or stale counter");
    assert!(reg.list_versions("pk", "r", "rds://x").await.unwrap().is_empty());
}

// ---------------------------------------------------------------- garbage collection

/// Garbage collection against uploads of the same bytes, with each interleaving forced
/// step by step: a collector's mark makes a commit wait, a collector that runs after a
/// commit keeps the blob, and one that removes the blob between an upload's store and
/// its commit is undone from the upload's spare.
/// Overwrites racing plain uploads and deletes of the same version: an overwrite never
/// answers that the version (or its file) exists, since the one holding it is what it
/// replaces; a plain upload answers Ok or Exists; each round ends with one version.
pub(crate) async fn overwrites_race_creates_and_deletes(t: Arc<dyn Table>) {
    use depot_core::model::RepoType;
    use depot_core::registry::NewVersion;
    let (blobs, _g) = common::fs_blobs().await;
    let reg = Arc::new(rds_registry(t.clone(), blobs, "ow", &["r"]).await);
    let blob = reg.store_content(depot_core::store::stream_from_bytes(b"bytes".to_vec())).await.unwrap();
    for round in 0..6 {
        let v = format!("2.0.{round}");
        let tasks = (0..10).map(|i| {
            let (reg, blob, v) = (reg.clone(), blob.clone(), v.clone());
            tokio::spawn(async move {
                if i == 9 && round % 2 == 1 {
                    // A delete in the odd rounds (the version may not be there yet).
                    let _ = reg.delete_version(&writer(), "ow", "r", "rds://x", &v).await;
                    return (None, Ok(()));
                }
                let req = NewVersion {
                    overwrite: i % 2 == 0,
                    ..NewVersion::new("ow", "r", "rds://x", "x", RepoType::Rds, &v, blob)
                };
                (Some(i % 2 == 0), reg.create_version(req, &writer()).await.map(drop))
            })
        });
        for done in futures::future::join_all(tasks).await {
            match done.unwrap() {
                (Some(true), Err(e @ Error::Exists { .. })) => panic!("an overwrite of {v} answered {e:?}"),
                (Some(false), Err(Error::Exists { .. })) | (_, Ok(())) => {}
                // Many writers on one package may exhaust the retries: 503, retry.
                (_, Err(Error::Unavailable { .. })) => {}
                (_, Err(e)) => panic!("{v}: {e:?}"),
            }
        }
        if round % 2 == 0 {
            reg.get_version("ow", "r", "rds://x", &v).await.unwrap();
        }
    }
}

pub(crate) async fn registry_gc_guard(t: Arc<dyn Table>, blobs: Arc<dyn BlobStore>) {
    use depot_core::model::RepoType;
    use depot_core::registry::{BlobRef, Hold, NewVersion};
    use depot_core::store::schema::{gc_mark_key, staged_key};
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
    reg.create_version(nv("1.0.0", first), &writer()).await.unwrap();
    assert_eq!(bytes_of(content.clone()).await, payload);
    assert_eq!(spares().await, 0, "the spare is dropped once the version is committed");
    reg.delete_version(&writer(), "gc", "r", "rds://x", "1.0.0").await.unwrap();

    // 1. A collector that planned before an upload and removes after its commit reads
    //    the new reference after marking, and keeps the blob.
    let mut plan = reg.plan_garbage(0).await.unwrap();
    assert!(plan.unreferenced.iter().any(|b| b.key == content), "{plan:?}");
    reg.create_version(nv("2.0.0", store().await), &writer()).await.unwrap();
    reg.remove_garbage(&mut plan).await.unwrap();
    assert_eq!(plan.removed, 0, "{plan:?}");
    assert_eq!(bytes_of(content.clone()).await, payload);
    assert!(t.get(&gc_mark_key(&content)).await.unwrap().is_none(), "the collector removes its marks");
    reg.delete_version(&writer(), "gc", "r", "rds://x", "2.0.0").await.unwrap();

    // 2. A whole collection between an upload's store (which found the bytes present and
    //    wrote nothing but its spare) and its commit removes the blob; the commit's
    //    settling puts it back from the spare.
    let pending = store().await;
    assert!(matches!(pending.hold, Hold::Spare(_)));
    let report = reg.collect_garbage(false, 0).await.unwrap();
    assert_eq!(report.removed, 1, "{report:?}");
    assert_eq!(blobs.head(&content).await.unwrap(), None);
    reg.create_version(nv("3.0.0", pending), &writer()).await.unwrap();
    assert_eq!(bytes_of(content.clone()).await, payload, "restored from the upload's spare");
    assert_eq!(spares().await, 0);
    let report = reg.collect_garbage(false, 0).await.unwrap();
    assert_eq!(report.removed, 0, "a referenced blob stays: {report:?}");
    reg.delete_version(&writer(), "gc", "r", "rds://x", "3.0.0").await.unwrap();

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
        tokio::spawn(async move { reg.create_version(nv("4.0.0", pending), &writer()).await })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!upload.is_finished(), "the commit waits for the collector's mark");
    assert!(matches!(reg.get_version("gc", "r", "rds://x", "4.0.0").await, Err(Error::NotFound { .. })));
    // Another collector meanwhile skips what this one holds.
    let report = reg.collect_garbage(false, 0).await.unwrap();
    assert_eq!((report.removed, report.skipped), (0, 1), "{report:?}");
    blobs.delete(&content).await.unwrap();
    t.delete(&gc_mark_key(&content), Cond::Eq("run".into(), "other-collector".into())).await.unwrap();
    upload.await.unwrap().unwrap();
    assert_eq!(reg.get_version("gc", "r", "rds://x", "4.0.0").await.unwrap().blob_key, content);
    assert_eq!(bytes_of(content.clone()).await, payload, "restored from the upload's spare");
    assert_eq!(spares().await, 0);
    reg.delete_version(&writer(), "gc", "r", "rds://x", "4.0.0").await.unwrap();

    // 4. A mark left behind past its expiry (a collector that died) is removed by the
    //    writer, which goes on at once.
    mark.insert("ttl".into(), (time::OffsetDateTime::now_utc().unix_timestamp() - 1).into());
    t.put(mark, Cond::None).await.unwrap();
    let started = Instant::now();
    reg.create_version(nv("5.0.0", store().await), &writer()).await.unwrap();
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
    let refused = reg.create_version(nv("6.0.0", gone), &writer()).await;
    assert!(matches!(&refused, Err(Error::NotFound { message: m, .. }) if m.contains("expired")), "{refused:?}");
    assert!(matches!(reg.get_version("gc", "r", "rds://x", "6.0.0").await, Err(Error::NotFound { .. })));

    // A failed commit drops its spare too.
    let refused = reg.create_version(nv("5.0.0", store().await), &writer()).await;
    assert!(matches!(refused, Err(Error::Exists { .. })), "{refused:?}");
    assert_eq!(spares().await, 0);

    // A collector takes over a mark another one left behind when it died.
    reg.delete_version(&writer(), "gc", "r", "rds://x", "5.0.0").await.unwrap();
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
pub(crate) async fn gc_guard_embedded_fs() {
    let (t, _g1) = common::embedded_table().await;
    let (b, _g2) = common::fs_blobs().await;
    registry_gc_guard(t, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
pub(crate) async fn gc_guard_dynamo_s3() {
    let (t, _g1) = common::dynamo_table().await;
    let (b, _g2) = common::s3_blobs().await;
    registry_gc_guard(t, b).await;
}

/// `n` versions of one package, each with a version string as long as depot takes (128
/// characters): the package item stays small (before, it listed every version and passed
/// the 400 KB item limit near 3,140 of them, after which every upload was refused), and
/// `historyVersion` is what it always was: every version ever uploaded, in upload order,
/// kept through deletes and re-uploads.
pub(crate) async fn many_versions(t: Arc<dyn Table>, n: usize, inline: usize) {
    use depot_core::model::RepoType;
    use depot_core::registry::NewVersion;
    let (blobs, _g) = common::fs_blobs().await;
    let reg = rds_registry(t.clone(), blobs, "mv", &["r"]).await.with_inline_history(inline);
    let blob = reg.store_content(depot_core::store::stream_from_bytes(b"x".to_vec())).await.unwrap();
    let v = |i: usize| format!("{i:06}.{}", "a".repeat(121));
    assert_eq!(v(0).len(), 128);
    let nv = |version: &str| NewVersion::new("mv", "r", "rds://big", "big", RepoType::Rds, version, blob.clone());
    let started = std::time::Instant::now();
    for i in 0..n {
        reg.create_version(nv(&v(i)), &writer()).await.unwrap();
    }
    let elapsed = started.elapsed();
    let item = t.get(&depot_core::store::schema::package_key("mv", "r", "rds://big")).await.unwrap().unwrap();
    let item_bytes = serde_json::to_vec(&item).unwrap().len();
    eprintln!("{n} versions in {elapsed:?}; the package item is {item_bytes} bytes");
    assert!(item_bytes < 64 * 1024, "{item_bytes} bytes");
    let want: Vec<String> = (0..n).map(v).collect();
    let p = reg.get_package("mv", "r", "rds://big").await.unwrap();
    assert_eq!(p.versions as usize, n);
    assert_eq!(reg.package_history(&p).await.unwrap(), want);
    // Only the versions past the inline list have history items of their own.
    let prefix = depot_core::store::schema::history_prefix(&p.history_id);
    let q = Query::prefix(depot_core::store::schema::package_partition("mv", "r", "rds://big"), prefix);
    let items = depot_core::store::query_all(&*t, q).await.unwrap();
    assert_eq!(items.len(), n.saturating_sub(inline));
    // A package from before that gave its inline versions history items too: read once.
    let mut old = depot_core::store::schema::history_key("mv", "r", "rds://big", &p.history_id, &v(1)).item();
    old.insert("version".into(), v(1).into());
    old.insert("seq".into(), 1.into());
    t.put(old, Cond::None).await.unwrap();
    assert_eq!(reg.package_history(&p).await.unwrap(), want);
    // A version deleted and uploaded again keeps its place, inline or not.
    for i in [3, n - 2] {
        reg.delete_version(&manager(), "mv", "r", "rds://big", &v(i)).await.unwrap();
        reg.create_version(nv(&v(i)), &writer()).await.unwrap();
    }
    let p = reg.get_package("mv", "r", "rds://big").await.unwrap();
    assert_eq!(reg.with_history(p).await.unwrap().history_version, want);
    // A package deleted and uploaded again starts a new history.
    reg.delete_package(&manager(), "mv", "r", "rds://big").await.unwrap();
    reg.create_version(nv("9.9.9"), &writer()).await.unwrap();
    let p = reg.get_package("mv", "r", "rds://big").await.unwrap();
    assert_eq!(reg.package_history(&p).await.unwrap(), ["9.9.9"]);
}

/// Past the inline history on both backends, with the inline part lowered to 16 (moto
/// takes a quarter of a second a version).
pub(crate) async fn registry_history_spills_past_the_item(t: Arc<dyn Table>) {
    many_versions(t, 40, 16).await;
}

/// Ten thousand versions, on the embedded table.
#[tokio::test]
async fn ten_thousand_versions_of_one_package() {
    let (t, _g) = common::embedded_table().await;
    many_versions(t, 10_000, depot_core::model::INLINE_HISTORY).await;
}

// ---------------------------------------------------------------- numbers and upload order

/// Version numbers (OCP's ids) and the upload-order listing, on one backend: numbers are
/// unique under concurrency and never reused after a delete, even by a repository created
/// again; a number names its version until the version goes, whichever API deletes it;
/// the upload order pages newest first, and the repository counts its versions.
pub(crate) async fn numbers_and_upload_order(t: Arc<dyn Table>, blobs: Arc<dyn BlobStore>) {
    use depot_core::model::{Actor, RepoType, Rights};
    use depot_core::registry::{PageOf, PageRequest};
    use depot_core::registry::NewVersion;
    use depot_core::store::stream_from_bytes;
    let reg = Arc::new(rds_registry(t, blobs, "np", &["r"]).await);
    let numbers: Vec<u64> = futures::future::join_all((0..20).map(|_| {
        let reg = reg.clone();
        async move { reg.next_number("np", "r").await.unwrap() }
    }))
    .await;
    let mut sorted = numbers.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, (1..=20).collect::<Vec<u64>>(), "20 concurrent allocations, 20 numbers");
    let admin = Actor::user("admin", Rights::ALL);
    for (i, (pkg, v)) in [("a", "1.0.0"), ("b", "1.0.0"), ("a", "2.0.0"), ("c", "0.1.0"), ("b", "3.0.0")].iter().enumerate() {
        let blob = reg.store_content(stream_from_bytes(format!("{pkg}{v}").into_bytes())).await.unwrap();
        let n = reg.next_number("np", "r").await.unwrap();
        let req = NewVersion { number: Some(n), ..NewVersion::new("np", "r", &format!("rds://{pkg}"), pkg, RepoType::Rds, v, blob) };
        reg.create_version(req, &admin).await.unwrap();
        assert_eq!(reg.version_by_number("np", "r", n).await.unwrap().name, *v, "{i}");
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let repo = reg.get_repository("np", "r").await.unwrap();
    assert_eq!(repo.version_count, 5);
    let page = |n: u32, asc: bool| {
        let (reg, repo) = (reg.clone(), repo.clone());
        async move { reg.upload_page(&repo, asc, PageRequest { number: n, size: 2 }).await.unwrap() }
    };
    let names = |p: &PageOf<depot_core::model::PackageVersion>| {
        p.items.iter().map(|v| format!("{}@{}", v.package_key, v.name)).collect::<Vec<_>>()
    };
    let first = page(1, false).await;
    assert_eq!((first.total, names(&first)), (5, vec!["rds://b@3.0.0".to_string(), "rds://c@0.1.0".into()]));
    assert_eq!(names(&page(3, false).await), vec!["rds://a@1.0.0".to_string()]);
    assert_eq!(names(&page(1, true).await), vec!["rds://a@1.0.0".to_string(), "rds://b@1.0.0".into()]);
    assert!(page(4, false).await.items.is_empty());
    // A delete through any API takes the number with it; the number is not handed out again.
    let gone = reg.delete_version(&admin, "np", "r", "rds://a", "2.0.0").await.unwrap();
    let n = gone.number.unwrap();
    assert!(reg.version_by_number("np", "r", n).await.unwrap_err().is_not_found());
    assert_eq!(reg.get_repository("np", "r").await.unwrap().version_count, 4);
    assert_eq!(reg.all_uploads("np", "r").await.unwrap().len(), 4);
    reg.delete_repository("np", "r", true).await.unwrap();
    reg.create_repository(rds_repo("np", "r"), "admin").await.unwrap();
    assert_eq!(reg.next_number("np", "r").await.unwrap(), 26, "numbers outlive their repository");
    assert!(reg.version_by_number("np", "r", 1).await.unwrap_err().is_not_found());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
pub(crate) async fn numbers_and_upload_order_embedded() {
    let ((t, _g1), (b, _g2)) = (common::embedded_table().await, common::fs_blobs().await);
    numbers_and_upload_order(t, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
pub(crate) async fn numbers_and_upload_order_aws() {
    let ((t, _g1), (b, _g2)) = (common::dynamo_table().await, common::s3_blobs().await);
    numbers_and_upload_order(t, b).await;
}

/// Downloads and roll-ups at once, on one package: every download is counted once, on
/// its version, however they interleave.
pub(crate) async fn downloads_race_roll_ups(t: Arc<dyn Table>) {
    use depot_core::model::RepoType;
    use depot_core::registry::NewVersion;
    let (blobs, _g) = common::fs_blobs().await;
    let reg = rds_registry(t.clone(), blobs, "dl", &["r"]).await;
    let blob = reg.store_content(depot_core::store::stream_from_bytes(b"bytes".to_vec())).await.unwrap();
    let versions = ["1.0.0", "2.0.0", "3.0.0"];
    for v in versions {
        reg.create_version(NewVersion::new("dl", "r", "rds://y", "y", RepoType::Rds, v, blob.clone()), &writer()).await.unwrap();
    }
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let reg = reg.clone();
            tokio::spawn(async move {
                if i % 4 == 3 {
                    reg.roll_up_downloads("dl", "r", "rds://y").await.unwrap();
                } else {
                    reg.record_download("dl", "r", "rds://y", versions[i % 3]).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut expected: Vec<(String, i64)> = versions.iter().map(|v| (v.to_string(), 0)).collect();
    for i in (0..30).filter(|i| i % 4 != 3) {
        expected[i % 3].1 += 1;
    }
    let mut got = reg.list_versions("dl", "r", "rds://y").await.unwrap();
    reg.pending_downloads("dl", "r", "rds://y").await.unwrap().apply(&mut got);
    let mut counts: Vec<(String, i64)> = got.iter().map(|v| (v.name.clone(), v.downloads)).collect();
    counts.sort();
    assert_eq!(counts, expected);
    reg.roll_up_downloads("dl", "r", "rds://y").await.unwrap();
    let rolled: i64 = reg.list_versions("dl", "r", "rds://y").await.unwrap().iter().map(|v| v.downloads).sum();
    assert_eq!(rolled, 23, "all of them on the versions once rolled up");
    assert_eq!(reg.get_package("dl", "r", "rds://y").await.unwrap().downloads, 23);

    // A version deleted with downloads pending, then uploaded again: it starts from none
    // (the package keeps counting them).
    for _ in 0..3 {
        reg.record_download("dl", "r", "rds://y", "3.0.0").await.unwrap();
    }
    reg.delete_version(&writer(), "dl", "r", "rds://y", "3.0.0").await.unwrap();
    reg.create_version(NewVersion::new("dl", "r", "rds://y", "y", RepoType::Rds, "3.0.0", blob.clone()), &writer()).await.unwrap();
    let mut again = vec![reg.get_version("dl", "r", "rds://y", "3.0.0").await.unwrap()];
    reg.pending_downloads("dl", "r", "rds://y").await.unwrap().apply(&mut again);
    assert_eq!(again[0].downloads, 0, "a version uploaded again starts from no downloads");
    assert_eq!(reg.get_package("dl", "r", "rds://y").await.unwrap().downloads, 26);
}

/// A rendering made of parts, over many readers and writers at once, each reader with
/// caches of its own (as Lambda instances have): a reader never gets a rendering older
/// than the repository it read, and once the writes stop, a new reader's rendering holds
/// every one of them, deletes too, however the readers' removals of the changes they
/// read interleaved with the writes.
async fn render_parts(reg: depot_core::registry::Registry) -> String {
    use depot_core::registry::Parts;
    let repo = reg.get_repository("rr", "r").await.unwrap();
    let part = |key: String| {
        let reg = reg.clone();
        async move {
            let versions = reg.list_versions("rr", "r", &key).await?;
            let names: Vec<String> = versions.iter().map(|v| v.name.clone()).collect();
            Ok((!names.is_empty()).then(|| format!("{key}={}\n", names.join(","))))
        }
    };
    let assemble = |parts: &Parts, _: Option<&str>| Ok(Bytes::from(parts.values().cloned().collect::<String>()));
    let r = reg.assembled(&repo, "test-parts", part, assemble).await.unwrap();
    String::from_utf8(r.bytes.to_vec()).unwrap()
}

pub(crate) async fn renderings_race_writes(t: Arc<dyn Table>, blobs: Arc<dyn BlobStore>) {
    use depot_core::model::RepoType;
    use depot_core::registry::{NewVersion, Registry};
    let reg = rds_registry(t.clone(), blobs.clone(), "rr", &["r"]).await;
    let blob = reg.store_content(depot_core::store::stream_from_bytes(b"bytes".to_vec())).await.unwrap();
    let render = render_parts;
    let done = Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let writers = (0..4).map(|w| {
        let (reg, blob, done) = (reg.clone(), blob.clone(), done.clone());
        tokio::spawn(async move {
            for i in 0..6 {
                let key = format!("rds://p{}", (w + i) % 3);
                let version = format!("{w}.{i}.0");
                let req = NewVersion::new("rr", "r", &key, "p", RepoType::Rds, &version, blob.clone());
                reg.create_version(req, &writer()).await.unwrap();
                done.lock().unwrap().push((key, version));
            }
        })
    });
    let readers = (0..4).map(|_| {
        let (t, blobs, done) = (t.clone(), blobs.clone(), done.clone());
        tokio::spawn(async move {
            for _ in 0..8 {
                let seen = done.lock().unwrap().clone();
                let text = render(Registry::new(t.clone(), blobs.clone())).await;
                for (key, version) in seen {
                    let line = text.lines().find(|l| l.starts_with(&format!("{key}="))).unwrap_or_default();
                    assert!(line.split([',', '=']).any(|v| v == version), "{key} {version} written before, missing: {text}");
                }
            }
        })
    });
    let tasks: Vec<_> = writers.chain(readers).collect();
    for task in tasks {
        task.await.unwrap();
    }
    // Every version, as the versions say, from a new reader and an old one.
    let truth = |reg: Registry| async move {
        let mut out = String::new();
        for p in 0..3 {
            let key = format!("rds://p{p}");
            let names: Vec<String> = reg.list_versions("rr", "r", &key).await.unwrap().iter().map(|v| v.name.clone()).collect();
            if !names.is_empty() {
                out.push_str(&format!("{key}={}\n", names.join(",")));
            }
        }
        out
    };
    let expected = truth(reg.clone()).await;
    assert_eq!(expected.matches(',').count() + 3, 24, "{expected}");
    assert_eq!(render(Registry::new(t.clone(), blobs.clone())).await, expected);
    assert_eq!(render(reg.clone()).await, expected);
    // A package's last version deleted takes its part; another's delete shows.
    for v in reg.list_versions("rr", "r", "rds://p0").await.unwrap() {
        reg.delete_version(&writer(), "rr", "r", "rds://p0", &v.name).await.unwrap();
    }
    reg.delete_version(&writer(), "rr", "r", "rds://p1", "0.1.0").await.unwrap();
    let expected = truth(reg.clone()).await;
    assert!(!expected.contains("rds://p0") && !expected.contains("0.1.0,") && !expected.ends_with("0.1.0\n"), "{expected}");
    assert_eq!(render(reg.clone()).await, expected);
    assert_eq!(render(Registry::new(t, blobs)).await, expected);
}

/// A table that holds the first query of a repository's changes until released.
struct ChangesGate {
    inner: Arc<dyn Table>,
    armed: std::sync::atomic::AtomicBool,
    reached: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl Table for ChangesGate {
    async fn get(&self, key: &Key) -> depot_core::Result<Option<Item>> {
        self.inner.get(key).await
    }
    async fn put(&self, item: Item, cond: Cond) -> depot_core::Result<()> {
        self.inner.put(item, cond).await
    }
    async fn delete(&self, key: &Key, cond: Cond) -> depot_core::Result<()> {
        self.inner.delete(key, cond).await
    }
    async fn update(&self, key: &Key, set: Item, add: &[(String, i64)], cond: Cond) -> depot_core::Result<Item> {
        self.inner.update(key, set, add, cond).await
    }
    async fn transact(&self, ops: Vec<TxOp>) -> depot_core::Result<()> {
        self.inner.transact(ops).await
    }
    async fn query(&self, q: &Query) -> depot_core::Result<depot_core::store::Page> {
        if q.pk.starts_with("CHANGES#") && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.reached.notify_one();
            self.release.notified().await;
        }
        self.inner.query(q).await
    }
}

/// A reader that read the parts' pointer, then lost the changes it needed to another
/// reader's rendering (which moved the pointer and removed them), starts over: its
/// rendering still holds the write.
pub(crate) async fn a_rendering_that_lost_its_base_starts_over(t: Arc<dyn Table>, blobs: Arc<dyn BlobStore>) {
    use depot_core::model::RepoType;
    use depot_core::registry::{NewVersion, Registry};
    let reg = rds_registry(t.clone(), blobs.clone(), "rr", &["r"]).await;
    let blob = reg.store_content(depot_core::store::stream_from_bytes(b"bytes".to_vec())).await.unwrap();
    let create = |key: &str| NewVersion::new("rr", "r", key, "p", RepoType::Rds, "1.0.0", blob.clone());
    reg.create_version(create("rds://p0"), &writer()).await.unwrap();
    assert_eq!(render_parts(Registry::new(t.clone(), blobs.clone())).await, "rds://p0=1.0.0\n");
    reg.create_version(create("rds://p1"), &writer()).await.unwrap();
    let gate = Arc::new(ChangesGate {
        inner: t.clone(),
        armed: true.into(),
        reached: tokio::sync::Notify::new(),
        release: tokio::sync::Notify::new(),
    });
    let slow = tokio::spawn(render_parts(Registry::new(gate.clone(), blobs.clone())));
    gate.reached.notified().await;
    let expected = "rds://p0=1.0.0\nrds://p1=1.0.0\n";
    assert_eq!(render_parts(Registry::new(t.clone(), blobs.clone())).await, expected);
    gate.release.notify_one();
    assert_eq!(slow.await.unwrap(), expected);
}

/// Bytes stored straight under their content key, without a spare (`Hold::Bytes`): a
/// collection that removes them before the commit leaves a record that the commit meets,
/// so the commit writes them again; one whose mark is on the blob holds the commit until
/// it is done. Either way the committed version's bytes are there.
pub(crate) async fn gc_guard_with_bytes_held(t: Arc<dyn Table>, blobs: Arc<dyn BlobStore>) {
    use depot_core::model::RepoType;
    use depot_core::registry::{BlobRef, Hold, NewVersion};
    use depot_core::store::schema::{gc_gone_key, gc_mark_key};
    use std::time::Duration;

    let reg = rds_registry(t.clone(), blobs.clone(), "gb", &["r"]).await;
    let payload = Bytes::from_static(b"bytes held in memory, written straight to their key");
    let nv = |v: &str, blob: BlobRef| NewVersion::new("gb", "r", "rds://x", "x", RepoType::Rds, v, blob);
    let bytes_of = |key: String| {
        let blobs = blobs.clone();
        async move { blobs.get(&key, None).await.map(|o| o.bytes()) }
    };

    // No collector: one write, no spare.
    let first = reg.store_bytes(payload.clone()).await.unwrap();
    assert!(matches!(first.hold, Hold::Bytes(_)));
    let content = first.key.clone();
    reg.create_version(nv("1.0.0", first), &writer()).await.unwrap();
    assert_eq!(bytes_of(content.clone()).await.unwrap().await.unwrap(), payload);
    assert!(blobs.list("tmp").await.unwrap().is_empty(), "no spare");
    reg.delete_version(&writer(), "gb", "r", "rds://x", "1.0.0").await.unwrap();

    // A whole collection between the write and the commit removes the bytes and leaves
    // its record; the commit writes them again and lifts it.
    let pending = reg.store_bytes(payload.clone()).await.unwrap();
    let report = reg.collect_garbage(false, 0).await.unwrap();
    assert_eq!(report.removed, 1, "{report:?}");
    assert!(t.get(&gc_gone_key(&content)).await.unwrap().is_some(), "the collector's record");
    assert!(bytes_of(content.clone()).await.is_err());
    reg.create_version(nv("2.0.0", pending), &writer()).await.unwrap();
    assert_eq!(bytes_of(content.clone()).await.unwrap().await.unwrap(), payload, "written again");
    assert!(t.get(&gc_gone_key(&content)).await.unwrap().is_none());
    assert_eq!(reg.collect_garbage(false, 0).await.unwrap().removed, 0, "named now");
    reg.delete_version(&writer(), "gb", "r", "rds://x", "2.0.0").await.unwrap();

    // A collector holding its mark: the commit waits, the collector records the removal,
    // deletes and lifts its mark; the commit then writes the bytes again.
    let mut mark = gc_mark_key(&content).item();
    mark.insert("run".into(), "other-collector".into());
    mark.insert("ttl".into(), (time::OffsetDateTime::now_utc().unix_timestamp() + 600).into());
    t.put(mark, Cond::NotExists).await.unwrap();
    let pending = reg.store_bytes(payload.clone()).await.unwrap();
    let upload = {
        let reg = reg.clone();
        tokio::spawn(async move { reg.create_version(nv("3.0.0", pending), &writer()).await })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!upload.is_finished(), "the commit waits for the collector's mark");
    let mut gone = gc_gone_key(&content).item();
    gone.insert("run".into(), "other-collector".into());
    t.put(gone, Cond::None).await.unwrap();
    blobs.delete(&content).await.unwrap();
    t.delete(&gc_mark_key(&content), Cond::Eq("run".into(), "other-collector".into())).await.unwrap();
    upload.await.unwrap().unwrap();
    assert_eq!(reg.get_version("gb", "r", "rds://x", "3.0.0").await.unwrap().blob_key, content);
    assert_eq!(bytes_of(content.clone()).await.unwrap().await.unwrap(), payload);
}
