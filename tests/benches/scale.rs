//! What the hot operations cost at scale on the AWS backend: a repository seeded through
//! the ports (not through HTTP uploads) with VERSIONS versions over PACKAGES packages,
//! then each operation driven through the surfaces in process, with a token named with
//! its user (`Basic admin:<token>`, as helm sends one). Prints, per operation, the
//! requests (counted at the ports: DynamoDB requests + S3 requests) and the latency:
//! cold (a fresh process state over the same stores, the token checked by that very
//! request), hot, and right after one write; then the `index.yaml` size, plain and
//! gzipped.
//!
//! Seeding runs the registry's own uploads (`Registry::create_version`) on an embedded
//! table through a port that records the keys written, then copies those items to
//! DynamoDB with plain puts (and the blob store's objects to S3): moto copies a whole
//! table for every transaction, which would take hours at 10,000 versions.
//!
//! Usage (moto or LocalStack at AWS_ENDPOINT_URL, as `infra/test.sh` starts it):
//!   cargo bench -p depot-e2e --bench scale -- [PACKAGES] [VERSIONS]
//! Defaults: 2000 packages, 10000 versions. The latencies of writes on moto are moto's
//! (a transaction there copies the table); the request counts are what AWS would serve.
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use depot_core::config::{Backend, Config};
use depot_core::http::{open_stores, AppState, Stores};
use depot_core::model::{Actor, RepoType, Rights};
use depot_core::registry::{NewProject, NewVersion};
use depot_core::store::Table;
use depot_core::store::{CountingBlobs, CountingTable};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use tower::ServiceExt;

const PASSWORD: &str = "scale-bench-password";

struct Bench {
    counting: Arc<CountingTable>,
    blobs: Arc<CountingBlobs>,
    stores: Stores,
    config: Config,
    token: String,
}

impl Bench {
    /// A process's state over the seeded stores: a fresh one is a cold process.
    fn app(&self) -> axum::Router {
        let stores = counted(&self.stores, &self.counting, &self.blobs);
        depot_core::http::app(depot_cli::SURFACES, AppState::from_stores(self.config.clone(), stores))
    }

    /// Requests so far: table and blob store.
    fn requests(&self) -> (usize, usize) {
        (self.counting.calls.load(Ordering::SeqCst), self.blobs.calls.load(Ordering::SeqCst))
    }

    /// One request: (status, body bytes, (table, blob) requests, milliseconds).
    async fn call(
        &self,
        app: &axum::Router,
        method: &str,
        path: &str,
        body: Option<Value>,
        gzip: bool,
    ) -> (u16, usize, (usize, usize), f64) {
        let mut req = Request::builder().method(method).uri(path).header("authorization", self.auth());
        if gzip {
            req = req.header("accept-encoding", "gzip");
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(body.map_or(Body::empty(), |b| Body::from(b.to_string()))).unwrap();
        let before = self.requests();
        let started = Instant::now();
        let res = app.clone().oneshot(req).await.unwrap();
        let status = res.status().as_u16();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let after = self.requests();
        (status, bytes.len(), (after.0 - before.0, after.1 - before.1), ms)
    }

    fn auth(&self) -> String {
        use base64::Engine;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("admin:{}", self.token)))
    }
}

/// Requests as `table+blob / ms`.
fn cell((table, blobs): (usize, usize), ms: f64) -> String {
    format!("{table}+{blobs} / {ms:.0}")
}

/// A table that records the key of every write, for copying what was written.
struct Recording {
    inner: Arc<dyn depot_core::store::Table>,
    keys: std::sync::Mutex<std::collections::BTreeSet<depot_core::store::Key>>,
}

impl Recording {
    fn record(&self, keys: impl IntoIterator<Item = depot_core::store::Key>) {
        self.keys.lock().unwrap().extend(keys);
    }
}

#[async_trait::async_trait]
impl depot_core::store::Table for Recording {
    async fn get(&self, key: &depot_core::store::Key) -> depot_core::Result<Option<depot_core::store::Item>> {
        self.inner.get(key).await
    }
    async fn put(&self, item: depot_core::store::Item, cond: depot_core::store::Cond) -> depot_core::Result<()> {
        self.record(depot_core::store::Key::of(&item).ok());
        self.inner.put(item, cond).await
    }
    async fn delete(&self, key: &depot_core::store::Key, cond: depot_core::store::Cond) -> depot_core::Result<()> {
        self.inner.delete(key, cond).await
    }
    async fn update(
        &self,
        key: &depot_core::store::Key,
        set: depot_core::store::Item,
        add: &[(String, i64)],
        cond: depot_core::store::Cond,
    ) -> depot_core::Result<depot_core::store::Item> {
        self.record([key.clone()]);
        self.inner.update(key, set, add, cond).await
    }
    async fn transact(&self, ops: Vec<depot_core::store::TxOp>) -> depot_core::Result<()> {
        use depot_core::store::TxOp;
        self.record(ops.iter().filter_map(|op| match op {
            TxOp::Put { item, .. } => depot_core::store::Key::of(item).ok(),
            TxOp::Update { key, .. } => Some(key.clone()),
            TxOp::Delete { .. } | TxOp::Check { .. } => None,
        }));
        self.inner.transact(ops).await
    }
    async fn query(&self, q: &depot_core::store::Query) -> depot_core::Result<depot_core::store::Page> {
        self.inner.query(q).await
    }
}

/// The stores, counted.
fn counted(s: &Stores, counting: &Arc<CountingTable>, blobs: &Arc<CountingBlobs>) -> Stores {
    Stores {
        table: counting.clone(),
        blobs: blobs.clone(),
        signer: s.signer.clone(),
        admin_secret: s.admin_secret.clone(),
    }
}

fn chart_version(code: &str, version: &str, blob: depot_core::registry::BlobRef) -> NewVersion {
    let mut metadata = Map::new();
    metadata.insert("name".into(), format!("Chart {code}").into());
    metadata.insert("code".into(), code.into());
    metadata.insert("description".into(), format!("about {code}").into());
    metadata.insert("rdsVersion".into(), "v1".into());
    metadata.insert("extension".into(), "tgz".into());
    NewVersion {
        content_path: format!("/{code}-{version}.tgz"),
        description: format!("about {code}"),
        metadata,
        ..NewVersion::new("scale", "charts", &format!("rds://{code}"), code, RepoType::Rds, version, blob)
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let packages: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let versions: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000).max(packages);
    std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL: moto (infra/test.sh starts it) or LocalStack");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let config = Config {
        backend: Backend::Aws,
        table: format!("scale-{id}"),
        bucket: format!("scale-{id}"),
        admin_password: Some(PASSWORD.into()),
        ..Default::default()
    };
    let stores = open_stores(&config, true).await.unwrap();
    let counting = CountingTable::new(stores.table.clone());
    let blobs = CountingBlobs::new(stores.blobs.clone());

    // Seeding: the registry's uploads on an embedded table, each key written recorded.
    let started = Instant::now();
    let seed_dir = tempfile::tempdir().unwrap();
    let embedded =
        Arc::new(depot_core::store::embedded::EmbeddedTable::open(&seed_dir.path().join("seed.redb")).unwrap());
    let seed_blobs: Arc<dyn depot_core::store::BlobStore> =
        Arc::new(depot_core::store::fs::FsBlobStore::open(&seed_dir.path().join("blobs")).unwrap());
    let recording = Arc::new(Recording { inner: embedded.clone(), keys: Default::default() });
    let reg = depot_core::registry::Registry::new(recording.clone(), seed_blobs.clone());
    reg.create_project(NewProject { name: "scale".into(), ..Default::default() }, "admin").await.unwrap();
    let repo = depot_core::registry::NewRepository {
        project_id: "scale".into(),
        name: "charts".into(),
        repo_type: RepoType::Rds,
        public: false,
        description: None,
        allow_overwrite: None,
        configuration: None,
    };
    reg.create_repository(repo, "admin").await.unwrap();
    let blob = reg.store_content(depot_core::store::stream_from_bytes(b"chart bytes".to_vec())).await.unwrap();
    let admin = Actor::user("admin", Rights::ALL);
    let seeds: Vec<(String, String)> =
        (0..versions).map(|i| (format!("pkg{:05}", i % packages), format!("1.{}.0", i / packages))).collect();
    let reg2 = reg.clone();
    futures::StreamExt::for_each_concurrent(futures::stream::iter(seeds), 16, |(code, version)| {
        let (reg, blob, admin) = (reg2.clone(), blob.clone(), admin.clone());
        async move {
            reg.create_version(chart_version(&code, &version, blob), &admin).await.unwrap();
        }
    })
    .await;
    let seeded = started.elapsed().as_secs_f64();
    // Copied: every item still there, and every stored object.
    let keys: Vec<depot_core::store::Key> = recording.keys.lock().unwrap().iter().cloned().collect();
    let target = stores.table.clone();
    let copied = futures::StreamExt::buffer_unordered(
        futures::stream::iter(keys).map(|k| {
            let (from, to) = (embedded.clone(), target.clone());
            async move {
                match from.get(&k).await.unwrap() {
                    Some(item) => to.put(item, depot_core::store::Cond::None).await.map(|_| 1).unwrap(),
                    None => 0,
                }
            }
        }),
        16,
    );
    let items: usize = futures::StreamExt::collect::<Vec<usize>>(copied).await.iter().sum();
    for prefix in ["blobs", "derived"] {
        for obj in seed_blobs.list(prefix).await.unwrap() {
            let body = seed_blobs.get(&obj.key, None).await.unwrap().body;
            stores.blobs.put(&obj.key, body).await.unwrap();
        }
    }
    eprintln!(
        "seeded {versions} versions over {packages} packages in {seeded:.1} s (embedded), copied {items} items to DynamoDB in {:.1} s",
        started.elapsed().as_secs_f64() - seeded
    );
    let state = AppState::from_stores(config.clone(), counted(&stores, &counting, &blobs));
    state.authenticator.bootstrap_admin(false).await.unwrap();

    let mut bench = Bench { counting, blobs, stores, config, token: String::new() };
    let app = bench.app();
    let basic = {
        use base64::Engine;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("admin:{PASSWORD}")))
    };
    let req =
        Request::post("/auth/api/user/token/admin/bench").header("authorization", basic).body(Body::empty()).unwrap();
    let res = app.oneshot(req).await.unwrap();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
    bench.token = serde_json::from_slice::<Value>(&body).unwrap()["data"]["id"].as_str().unwrap().to_string();

    let mut next = 0;
    let mut upload = |app: axum::Router| {
        next += 1;
        let version = format!("9.{next}.0");
        let (ctype, form) = chart_form("pkg00001", &version);
        let (auth, counting, blobs) = (bench.auth(), bench.counting.clone(), bench.blobs.clone());
        async move {
            let req = Request::post("/rds/api/scale/charts/charts")
                .header("authorization", auth)
                .header("content-type", ctype)
                .body(Body::from(form))
                .unwrap();
            let before = (counting.calls.load(Ordering::SeqCst), blobs.calls.load(Ordering::SeqCst));
            let started = Instant::now();
            let res = app.oneshot(req).await.unwrap();
            assert_eq!(res.status().as_u16(), 201);
            let after = (counting.calls.load(Ordering::SeqCst), blobs.calls.load(Ordering::SeqCst));
            ((after.0 - before.0, after.1 - before.1), started.elapsed().as_secs_f64() * 1000.0)
        }
    };
    let search = |rule: Value| json!({"rule": {"relation": "AND", "rules": [{"field": "projectId", "operation": "EQ", "value": "scale"}, rule]}, "page": {"pageSize": 20}});
    let ops: Vec<(&str, &str, String, Option<Value>)> = vec![
        ("index.yaml", "GET", "/rds/scale/charts/index.yaml".into(), None),
        ("download (302)", "GET", "/rds/scale/charts/charts/pkg00000-1.0.0.tgz".into(), None),
        ("package page", "GET", "/repository/api/package/page/scale/charts?pageSize=20".into(), None),
        ("version page", "GET", "/repository/api/version/page/scale/charts?packageKey=rds://pkg00000".into(), None),
        ("package info", "GET", "/repository/api/package/info/scale/charts?packageKey=rds://pkg00000".into(), None),
        (
            "search, name EQ",
            "POST",
            "/repository/api/package/search".into(),
            Some(search(json!({"field": "name", "operation": "EQ", "value": "pkg00007"}))),
        ),
        (
            "search, unindexed",
            "POST",
            "/repository/api/package/search".into(),
            Some(search(json!({"field": "downloads", "operation": "GTE", "value": 0}))),
        ),
    ];
    println!("{packages} packages, {versions} versions; requests (DynamoDB+S3) / milliseconds");
    println!("{:<20} {:>16} {:>14} {:>18}", "operation", "cold", "hot", "after one write");
    let warm = bench.app();
    upload(warm.clone()).await;
    let (calls, ms) = upload(warm).await;
    println!("{:<20} {:>16} {:>14} {:>18}", "RDS upload (new)", "", cell(calls, ms), "");
    // The first rendering ever reads every package; every later one starts from it.
    let (s0, _, c0, m0) = bench.call(&bench.app(), "GET", "/rds/scale/charts/index.yaml", None, false).await;
    assert_eq!(s0, 200);
    println!("{:<20} {:>16}", "index.yaml, first", cell(c0, m0));
    for (name, method, path, body) in ops {
        // Cold: a fresh process state (its caches empty): this request checks the token.
        let app = bench.app();
        let (s1, _, c1, m1) = bench.call(&app, method, &path, body.clone(), false).await;
        let (s2, _, c2, m2) = bench.call(&app, method, &path, body.clone(), false).await;
        upload(app.clone()).await;
        let (s3, _, c3, m3) = bench.call(&app, method, &path, body.clone(), false).await;
        assert!([s1, s2, s3].iter().all(|s| *s == 200 || *s == 302), "{name}: {s1} {s2} {s3}");
        println!("{:<20} {:>16} {:>14} {:>18}", name, cell(c1, m1), cell(c2, m2), cell(c3, m3));
    }
    let app = bench.app();
    let (_, plain, _, _) = bench.call(&app, "GET", "/rds/scale/charts/index.yaml", None, false).await;
    let (_, gz, _, _) = bench.call(&app, "GET", "/rds/scale/charts/index.yaml", None, true).await;
    println!("index.yaml: {plain} bytes, {gz} gzipped");
}

/// A chart archive (.tgz) in the multipart field `chart`: (content type, body).
fn chart_form(code: &str, version: &str) -> (String, Vec<u8>) {
    use std::io::Write;
    let yaml =
        format!("rdsVersion: v1\nname: Chart {code}\ncode: {code}\nversion: {version}\ndescription: about {code}\n");
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path(format!("{code}/RDS.yaml")).unwrap();
    h.set_size(yaml.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append(&h, yaml.as_bytes()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar.into_inner().unwrap()).unwrap();
    let bytes = gz.finish().unwrap();
    let boundary = "scalebenchboundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"chart\"; filename=\"{code}-{version}.tgz\"\r\nContent-Type: application/gzip\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
