//! Renderings stored under the repository's state, on both backends: a cold instance
//! answers `index.yaml` in at most 3 storage requests; after a write, the next one reads
//! only the packages that changed; two instances rendering at once store the same bytes;
//! a rendering is never stale and never lost (its stored copies removed, it is made
//! again); one too large to answer with is a redirect to its stored copy.
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use depot_core::config::Config;
use depot_core::http::{AppState, Stores};
use depot_core::store::{CountingBlobs, CountingTable};
use serde_json::{json, Value};

use crate::harness::{aws_config, basic, oneshot, surfaces, ADMIN_PASSWORD};
use crate::rds::chart_form;

/// Ports shared by any number of instances, each with caches of its own (as Lambda
/// instances have), counted.
pub(crate) struct Fleet {
    config: Config,
    pub(crate) table: Arc<CountingTable>,
    pub(crate) blobs: Arc<CountingBlobs>,
    signer: Option<Arc<depot_core::store::UrlSigner>>,
    auth: String,
    _dir: Option<tempfile::TempDir>,
}

impl Fleet {
    pub(crate) async fn open(config: Config, dir: Option<tempfile::TempDir>) -> Fleet {
        let config = Config { admin_password: Some(ADMIN_PASSWORD.into()), ..config };
        let stores = depot_core::http::open_stores(&config, dir.is_none()).await.unwrap();
        let fleet = Fleet {
            table: CountingTable::new(stores.table),
            blobs: CountingBlobs::new(stores.blobs),
            signer: stores.signer,
            auth: format!("Basic {}", basic("admin", ADMIN_PASSWORD)),
            config,
            _dir: dir,
        };
        fleet.state().authenticator.bootstrap_admin(false).await.unwrap();
        // Requests sign in with an API token, named with its user, as helm sends one.
        let (s, b) = fleet.call(&fleet.instance(), "POST", "/auth/api/user/token/admin/fleet", None).await;
        let token = serde_json::from_slice::<Value>(&b).unwrap()["data"]["id"].as_str().map(str::to_string);
        let token = token.unwrap_or_else(|| panic!("{s} {}", String::from_utf8_lossy(&b)));
        Fleet { auth: format!("Basic {}", basic("admin", &token)), ..fleet }
    }

    pub(crate) async fn embedded() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        Fleet::open(Config { data_dir: dir.path().to_path_buf(), ..Default::default() }, Some(dir)).await
    }

    pub(crate) fn state(&self) -> AppState {
        let stores = Stores {
            table: self.table.clone(),
            blobs: self.blobs.clone(),
            signer: self.signer.clone(),
            admin_secret: None,
        };
        AppState::from_stores(self.config.clone(), stores)
    }

    /// A new instance: empty caches.
    pub(crate) fn instance(&self) -> axum::Router {
        surfaces(self.state())
    }

    /// Storage requests so far: table calls and blob store requests.
    pub(crate) fn requests(&self) -> (usize, usize) {
        (self.table.calls.load(Ordering::SeqCst), self.blobs.calls.load(Ordering::SeqCst))
    }

    pub(crate) async fn call(
        &self,
        app: &axum::Router,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, axum::body::Bytes) {
        let mut req = Request::builder().method(method).uri(path).header("authorization", &self.auth);
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        oneshot(app, req.body(body).unwrap()).await
    }

    pub(crate) async fn upload(&self, app: &axum::Router, code: &str, version: &str) {
        let (content_type, form) = chart_form(code, version);
        let req = Request::post("/rds/api/dv/ix/charts")
            .header("authorization", &self.auth)
            .header("content-type", content_type)
            .body(Body::from(form))
            .unwrap();
        let (s, b) = oneshot(app, req).await;
        assert_eq!(s, 201, "upload {code} {version}: {}", String::from_utf8_lossy(&b));
    }

    /// `index.yaml` through `app`: its bytes, and the storage requests it cost.
    pub(crate) async fn index(&self, app: &axum::Router) -> (axum::body::Bytes, usize, usize) {
        let before = self.requests();
        let (s, b) = self.call(app, "GET", "/rds/dv/ix/index.yaml", None).await;
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
        let after = self.requests();
        (b, after.0 - before.0, after.1 - before.1)
    }
}

/// code → versions, newest first, as the index lists them.
fn listed(index: &[u8]) -> Vec<(String, Vec<String>)> {
    let doc: serde_yaml::Value = serde_yaml::from_slice(index).unwrap();
    let entries = doc["entries"].as_mapping().cloned().unwrap_or_default();
    entries
        .into_iter()
        .map(|(k, v)| {
            let versions =
                v.as_sequence().unwrap().iter().map(|e| e["version"].as_str().unwrap().to_string()).collect();
            (k.as_str().unwrap().to_string(), versions)
        })
        .collect()
}

fn code(i: usize) -> String {
    format!("chart-{i:02}")
}

/// How many charts the repository starts with: more than a write's rendering may read.
const CHARTS: usize = 24;

async fn materialized_on(fleet: Fleet) {
    let a = fleet.instance();
    assert_eq!(fleet.call(&a, "POST", "/repository/api/project/create", Some(json!({"name": "dv"}))).await.0, 200);
    let repo = json!({"projectId": "dv", "name": "ix", "type": "RDS"});
    assert_eq!(fleet.call(&a, "POST", "/repository/api/repo/create", Some(repo)).await.0, 200);
    for i in 0..CHARTS {
        fleet.upload(&a, &code(i), "1.0.0").await;
    }
    let mut expected: Vec<(String, Vec<String>)> = (0..CHARTS).map(|i| (code(i), vec!["1.0.0".to_string()])).collect();
    let (first, ..) = fleet.index(&a).await;
    assert_eq!(listed(&first), expected);

    // A cold instance: the token with its user (one read), the repository and the stored
    // rendering.
    let b = fleet.instance();
    let (cold, table, blobs) = fleet.index(&b).await;
    eprintln!("index.yaml, cold instance: {table} table calls, {blobs} blob requests");
    assert!(table + blobs <= 3, "a cold index.yaml costs at most 3 requests, not {table} + {blobs}");
    assert_eq!(cold, first, "the same state is the same bytes on every instance");
    let (hot, table, blobs) = fleet.index(&b).await;
    assert_eq!((table, blobs), (1, 0), "a hot index.yaml reads the repository only");
    assert_eq!(hot, first);

    // After a write, the next rendering reads the package that changed, not all of them.
    fleet.upload(&a, &code(3), "2.0.0").await;
    expected[3].1.insert(0, "2.0.0".into());
    let before = fleet.table.queries.load(Ordering::SeqCst);
    let (after_write, table, blobs) = fleet.index(&b).await;
    let queries = fleet.table.queries.load(Ordering::SeqCst) - before;
    eprintln!("index.yaml after one write: {table} table calls ({queries} queries), {blobs} blob requests");
    assert_eq!(listed(&after_write), expected, "never stale");
    assert!(queries <= 2, "the changes and the changed package's versions, not {queries} queries");
    assert!(table + blobs <= 12, "{table} + {blobs} requests after one write of {CHARTS} packages");
    // Another cold instance gets that rendering in 3 requests again.
    let (cold, table, blobs) = fleet.index(&fleet.instance()).await;
    assert!(table + blobs <= 3, "{table} + {blobs}");
    assert_eq!(cold, after_write);

    // Two instances rendering one state at once store the same bytes.
    fleet.upload(&a, &code(5), "2.0.0").await;
    expected[5].1.insert(0, "2.0.0".into());
    let (c, d) = (fleet.instance(), fleet.instance());
    let ((one, ..), (two, ..)) = futures::join!(fleet.index(&c), fleet.index(&d));
    assert_eq!(one, two);
    assert_eq!(listed(&one), expected);

    // Versions and packages deleted leave it; writes between two readings all show.
    let path = |v: &str| format!("/repository/api/version/delete/dv/ix?packageKey=rds://{}&version={v}", code(7));
    assert_eq!(fleet.call(&a, "DELETE", &path("1.0.0"), None).await.0, 200);
    expected.remove(7);
    let del = format!("/repository/api/version/delete/dv/ix?packageKey=rds://{}&version=1.0.0", code(3));
    assert_eq!(fleet.call(&a, "DELETE", &del, None).await.0, 200);
    expected[3].1.pop();
    fleet.upload(&a, "zz-new", "0.1.0").await;
    expected.push(("zz-new".into(), vec!["0.1.0".into()]));
    let (after, ..) = fleet.index(&b).await;
    assert_eq!(listed(&after), expected);

    // Never lost: every stored rendering and part removed, a cold instance makes it again.
    for obj in fleet.blobs.inner.list("derived").await.unwrap() {
        fleet.blobs.inner.delete(&obj.key).await.unwrap();
    }
    let (again, ..) = fleet.index(&fleet.instance()).await;
    assert_eq!(listed(&again), expected);
    // And from those, after a write, incrementally again.
    fleet.upload(&a, &code(9), "3.0.0").await;
    expected.iter_mut().find(|(c, _)| *c == code(9)).unwrap().1.insert(0, "3.0.0".into());
    let (last, ..) = fleet.index(&fleet.instance()).await;
    assert_eq!(listed(&last), expected);
    // Old renderings do not pile up: what is stored is this state's and its base's.
    let stored = fleet.blobs.inner.list("derived").await.unwrap();
    assert!(stored.len() <= 6, "stored renderings: {:?}", stored.iter().map(|o| &o.key).collect::<Vec<_>>());

    // The gzipped index is stored too; a collection removes the renderings of earlier
    // states (here with no grace), keeping the current one and the base.
    let gz = |app: &axum::Router| {
        let req = Request::get("/rds/dv/ix/index.yaml")
            .header("authorization", &fleet.auth)
            .header("accept-encoding", "gzip")
            .body(Body::empty())
            .unwrap();
        let app = app.clone();
        async move { oneshot(&app, req).await }
    };
    assert_eq!(gz(&b).await.0, 200);
    fleet.upload(&a, &code(11), "2.0.0").await;
    expected.iter_mut().find(|(c, _)| *c == code(11)).unwrap().1.insert(0, "2.0.0".into());
    let (now, ..) = fleet.index(&b).await;
    let report = fleet.state().registry.collect_garbage(false, 0).await.unwrap();
    let removed: Vec<&String> = report.old_renderings.iter().map(|o| &o.key).collect();
    assert!(!removed.is_empty(), "the earlier gzipped index goes");
    // An index superseded a moment ago stays (a presigned URL of it may still be
    // followed) until KEEP_SUPERSEDED_SECS have passed since: here, made to have passed.
    let left = fleet.blobs.inner.list("derived").await.unwrap();
    assert!(left.len() > 2, "the superseded index is kept for a while: {left:?}");
    let repo = depot_core::store::schema::repo_key("dv", "ix");
    let item = fleet.table.inner.get(&repo).await.unwrap().unwrap();
    let mut set = depot_core::store::Item::new();
    for (attr, list) in item.iter().filter(|(k, _)| k.starts_with("superseded:")) {
        let past = unix_now() - depot_core::registry::KEEP_SUPERSEDED_SECS;
        let aged: Vec<Value> = list.as_array().unwrap().iter().map(|e| serde_json::json!([e[0], past])).collect();
        set.insert(attr.clone(), Value::from(aged));
    }
    assert!(!set.is_empty(), "the repository lists its superseded renderings");
    fleet.table.inner.update(&repo, set, &[], depot_core::store::Cond::Exists).await.unwrap();
    fleet.state().registry.collect_garbage(false, 0).await.unwrap();
    let left = fleet.blobs.inner.list("derived").await.unwrap();
    assert_eq!(left.len(), 2, "the current index and its parts: {left:?}");
    let (cold, table, blobs) = fleet.index(&fleet.instance()).await;
    assert!(table + blobs <= 3, "{table} + {blobs}");
    assert_eq!((listed(&cold), cold), (expected, now));
}

#[tokio::test]
async fn index_yaml_is_materialized_on_the_embedded_backend() {
    materialized_on(Fleet::embedded().await).await;
}

#[tokio::test]
async fn index_yaml_is_materialized_on_the_aws_backend() {
    materialized_on(Fleet::open(aws_config("dv"), None).await).await;
}

/// Now, in unix seconds.
fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// With `DEPOT_MAX_RESPONSE_BYTES` below the index's size, `depot serve` answers a
/// redirect to a presigned URL of the stored index, which curl and helm follow; a
/// gzipped index that fits is answered as it is.
async fn too_large_on(api: &crate::harness::Api) {
    use crate::rds::{chart, rds_repo, upload};
    rds_repo(api, "big", "ix").await;
    for i in 0..12 {
        let (file, bytes) = chart(&code(i), "1.0.0", "tgz");
        assert_eq!(upload(api, "/rds/api/big/ix/charts", &file, bytes).await.0, 201);
    }
    let url = format!("{}/rds/big/ix/index.yaml", api.base);
    let manual = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = manual.get(&url).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 302, "an index over the limit is a redirect");
    let location = res.headers()["location"].to_str().unwrap().to_string();
    assert!(!location.contains(ADMIN_PASSWORD));
    // Followed without depot's credentials, as helm follows it to another host.
    let target = if location.starts_with('/') { format!("{}{location}", api.base) } else { location };
    let res = reqwest::get(&target).await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body = res.bytes().await.unwrap();
    assert!(body.len() > 2048, "{} bytes", body.len());
    assert_eq!(listed(&body).len(), 12);
    assert_eq!(listed(&body), listed(&crate::rds::get_text(api, "/rds/big/ix/index.yaml").await.1.into_bytes()));
    // The URL still serves that index after writes and the renderings they bring (found
    // by an attack: each new rendering removed the one before the last at once).
    for i in 12..14 {
        let (file, bytes) = chart(&code(i), "1.0.0", "tgz");
        assert_eq!(upload(api, "/rds/api/big/ix/charts", &file, bytes).await.0, 201);
        let res = manual.get(&url).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 302);
    }
    let res = reqwest::get(&target).await.unwrap();
    assert_eq!(res.status().as_u16(), 200, "a URL handed out before two writes still serves");
    assert_eq!(res.bytes().await.unwrap(), body);
    // Gzipped, it fits: answered directly.
    let res = manual
        .get(&url)
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["content-encoding"], "gzip");
    let gz = res.bytes().await.unwrap();
    assert!(gz.len() <= 2048);
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain).unwrap();
    assert_eq!(listed(&plain).len(), 14, "the same index as the plain one");
    assert_eq!(plain, crate::rds::get_text(api, "/rds/big/ix/index.yaml").await.1.into_bytes());
}

#[tokio::test]
async fn an_index_too_large_to_answer_is_a_redirect_embedded() {
    let (_dir, _server, api) = crate::harness::embedded(&[("DEPOT_MAX_RESPONSE_BYTES", "2048")]);
    too_large_on(&api).await;
}

#[tokio::test]
async fn an_index_too_large_to_answer_is_a_redirect_aws() {
    let (server, _bucket) = crate::harness::aws_server("big", &[("DEPOT_MAX_RESPONSE_BYTES", "2048")]);
    too_large_on(&crate::harness::Api::new(&server.base)).await;
}
