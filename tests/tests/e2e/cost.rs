//! What one authorized request costs at the `Table` port, for a user that is not the
//! administrator: the kit authenticates and authorizes once, and hands the handler the
//! repository it read.
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::Request;
use serde_json::{json, Value};

use crate::harness::{basic, oneshot, ADMIN_PASSWORD};
use crate::rds::chart_form;

#[tokio::test]
async fn table_calls_per_authorized_non_admin_request() {
    let (_dir, app, counting) = crate::harness::counted_embedded().await;
    let admin = format!("Basic {}", basic("admin", ADMIN_PASSWORD));
    let reader = format!("Basic {}", basic("reader", "reader-password"));
    let call = |method: &str, path: &str, auth: &str, body: Option<Value>| {
        let mut req = Request::builder().method(method).uri(path).header("authorization", auth);
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let req = req.body(body).unwrap();
        let app = app.clone();
        async move { oneshot(&app, req).await }
    };
    assert_eq!(call("POST", "/repository/api/project/create", &admin, Some(json!({"name": "cp"}))).await.0, 200);
    let repo = json!({"projectId": "cp", "name": "cr", "type": "RDS"});
    assert_eq!(call("POST", "/repository/api/repo/create", &admin, Some(repo)).await.0, 200);
    let user = json!({"userId": "reader", "pwd": "reader-password"});
    assert_eq!(call("POST", "/auth/api/user/create", &admin, Some(user)).await.0, 200);
    let grant = json!({"permName": "rw", "projectId": "cp", "resourceType": "REPO", "repos": ["cr"],
        "users": [{"id": "reader", "action": ["READ", "WRITE", "DELETE"]}]});
    assert_eq!(call("POST", "/auth/api/permission/create", &admin, Some(grant)).await.0, 200);
    let (content_type, form) = chart_form("cost", "1.0.0");
    let upload = Request::post("/rds/api/cp/cr/charts")
        .header("authorization", &admin)
        .header("content-type", content_type)
        .body(Body::from(form))
        .unwrap();
    assert_eq!(oneshot(&app, upload).await.0, 201);
    // Warm the reader's credential cache and the index rendering.
    assert_eq!(call("GET", "/rds/cp/cr/index.yaml", &reader, None).await.0, 200);

    // Each: the repository read and the grants query, once, then what the route itself
    // needs (the package, a page of versions, the version, the delete's transaction).
    // Before the kit every one of them cost one call more (a second repository read, or
    // a second grants query to learn whether the caller held MANAGE).
    let mut report = vec![];
    for (method, path, most) in [
        ("GET", "/repository/api/package/info/cp/cr?packageKey=rds://cost", 3),
        ("GET", "/repository/api/version/page/cp/cr?packageKey=rds://cost", 4),
        ("GET", "/repository/api/repo/info/cp/cr", 2),
        ("GET", "/rds/cp/cr/index.yaml", 2),
        ("GET", "/rds/cp/cr/api/charts/cost/1.0.0", 3),
        ("DELETE", "/repository/api/version/delete/cp/cr?packageKey=rds://cost&version=1.0.0", 5),
    ] {
        let before = counting.calls.load(Ordering::SeqCst);
        let (s, b) = call(method, path, &reader, None).await;
        assert_eq!(s, 200, "{method} {path}: {}", String::from_utf8_lossy(&b));
        let n = counting.calls.load(Ordering::SeqCst) - before;
        report.push((method, path, n, most));
    }
    for (m, p, n, _) in &report {
        eprintln!("table calls: {n:2}  {m} {p}");
    }
    for (m, p, n, most) in report {
        assert!(n <= most, "{m} {p}: {n} table calls, at most {most}");
    }
}

/// A download, on both backends: at most 3 table calls (the repository, the version,
/// the count), of which one single-item write and no transaction, however many come
/// (its count's roll-up into the version and the day is batched).
#[tokio::test]
async fn a_download_is_three_calls_and_one_single_item_write() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = depot_core::config::Config { data_dir: dir.path().to_path_buf(), ..Default::default() };
    for config in [embedded, crate::harness::aws_config("dlcost")] {
        let config = depot_core::config::Config { admin_password: Some(ADMIN_PASSWORD.into()), ..config };
        let create = config.backend == depot_core::config::Backend::Aws;
        let (state, counting) = crate::harness::counted(config, create).await;
        state.authenticator.bootstrap_admin(false).await.unwrap();
        let app = crate::harness::surfaces(state);
        let admin = format!("Basic {}", basic("admin", ADMIN_PASSWORD));
        let send = |method: &str, path: &str, auth: &str, body: Option<Value>| {
            let mut req = Request::builder().method(method).uri(path).header("authorization", auth);
            if body.is_some() {
                req = req.header("content-type", "application/json");
            }
            let req = req.body(body.map_or(Body::empty(), |b| Body::from(b.to_string()))).unwrap();
            let app = app.clone();
            async move { oneshot(&app, req).await }
        };
        assert_eq!(send("POST", "/repository/api/project/create", &admin, Some(json!({"name": "dc"}))).await.0, 200);
        let repo = json!({"projectId": "dc", "name": "charts", "type": "RDS"});
        assert_eq!(send("POST", "/repository/api/repo/create", &admin, Some(repo)).await.0, 200);
        let (s, b) = send("POST", "/auth/api/user/token/admin/dl", &admin, None).await;
        assert_eq!(s, 200);
        let token = serde_json::from_slice::<Value>(&b).unwrap()["data"]["id"].as_str().unwrap().to_string();
        let bearer = format!("Bearer {token}");
        let (content_type, form) = chart_form("dl", "1.0.0");
        let upload = Request::post("/rds/api/dc/charts/charts")
            .header("authorization", &admin)
            .header("content-type", content_type)
            .body(Body::from(form))
            .unwrap();
        assert_eq!(oneshot(&app, upload).await.0, 201);
        // Warm the token's cache entry.
        assert_eq!(send("GET", "/repository/api/repo/info/dc/charts", &bearer, None).await.0, 200);
        for path in [
            "/rds/dc/charts/charts/dl-1.0.0.tgz",
            "/repository/api/version/download/dc/charts?packageKey=rds://dl&version=1.0.0",
        ] {
            for _ in 0..5 {
                let (calls, writes, txs) = (
                    counting.calls.load(Ordering::SeqCst),
                    counting.writes.load(Ordering::SeqCst),
                    counting.transactions.load(Ordering::SeqCst),
                );
                let (s, _) = send("GET", path, &bearer, None).await;
                assert_eq!(s, 302, "{path}");
                let calls = counting.calls.load(Ordering::SeqCst) - calls;
                let writes = counting.writes.load(Ordering::SeqCst) - writes;
                let txs = counting.transactions.load(Ordering::SeqCst) - txs;
                assert!(
                    calls <= 3 && writes == 1 && txs == 0,
                    "{path}: {calls} calls, {writes} writes, {txs} transactions"
                );
            }
        }
        let (s, b) = send("GET", "/repository/api/version/page/dc/charts?packageKey=rds://dl", &bearer, None).await;
        assert_eq!(s, 200);
        let page: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(page["data"]["records"][0]["downloads"], 10, "every download counted on the version");
        let (s, b) = send("GET", "/repository/api/package/info/dc/charts?packageKey=rds://dl", &bearer, None).await;
        assert_eq!(s, 200);
        assert_eq!(serde_json::from_slice::<Value>(&b).unwrap()["data"]["downloads"], 10);
    }
}

/// An RDS upload of a new version, on both backends, in a warm process: the repository,
/// the bytes written once under their content key, the version and its package read at
/// once, and the commit's transaction. 4 storage requests.
async fn rds_upload_costs_on(fleet: crate::derived::Fleet) {
    let app = fleet.instance();
    assert_eq!(fleet.call(&app, "POST", "/repository/api/project/create", Some(json!({"name": "dv"}))).await.0, 200);
    let repo = json!({"projectId": "dv", "name": "ix", "type": "RDS"});
    assert_eq!(fleet.call(&app, "POST", "/repository/api/repo/create", Some(repo)).await.0, 200);
    fleet.upload(&app, "warm", "1.0.0").await;
    for (code, version) in [("cost", "1.0.0"), ("cost", "1.1.0")] {
        let before = fleet.requests();
        fleet.upload(&app, code, version).await;
        let after = fleet.requests();
        let (table, blobs) = (after.0 - before.0, after.1 - before.1);
        eprintln!("RDS upload of {code} {version}: {table} table calls, {blobs} blob requests");
        assert!(table + blobs <= 4, "{code} {version}: {table} + {blobs} requests");
        assert_eq!(fleet.blobs.inner.list("tmp").await.unwrap().len(), 0, "no spare left");
    }
}

#[tokio::test]
async fn an_rds_upload_is_four_requests_embedded() {
    rds_upload_costs_on(crate::derived::Fleet::embedded().await).await;
}

#[tokio::test]
async fn an_rds_upload_is_four_requests_aws() {
    rds_upload_costs_on(crate::derived::Fleet::open(crate::harness::aws_config("up"), None).await).await;
}
