//! The real Lambda binary under `cargo lambda watch`, against DynamoDB and S3 on moto.
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use depot_core::store::{dynamo::DynamoTable, s3::S3BlobStore};
use serde_json::json;

use crate::harness::{aws_endpoint, data, failure, free_port, unique, workspace, Api, ADMIN_PASSWORD};

/// `cargo lambda watch`, in its own process group, killed with its children on drop.
struct Watch(Child);

impl Drop for Watch {
    fn drop(&mut self) {
        let pgid = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-TERM", "--", &pgid]).status();
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill").args(["-KILL", "--", &pgid]).status();
        let _ = self.0.wait();
    }
}

// Multi-threaded: the depot client runs as a process that the test waits on while its
// gateway serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_function_under_cargo_lambda_watch() {
    use std::os::unix::process::CommandExt;
    aws_endpoint();
    let sdk = depot_core::http::sdk_config().await;
    let (table, bucket) = (unique("lambda"), unique("lambda"));
    DynamoTable::new(&sdk, &table).ensure_table().await.unwrap();
    S3BlobStore::new(&sdk, &bucket).ensure_bucket().await.unwrap();

    // The bootstrap password as the template provides it: in a generated secret, which
    // the packages function reads once, not in an environment variable.
    let secret = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(unique("admin"))
        .secret_string(ADMIN_PASSWORD)
        .send()
        .await
        .unwrap();
    let secret_arn = secret.arn().unwrap().to_string();

    let port = free_port();
    let log = std::fs::File::create(workspace().join("target/cargo-lambda-watch.log")).unwrap();
    let child = Command::new("cargo")
        .args(["lambda", "watch", "-A", "127.0.0.1", "-P", &port.to_string()])
        .current_dir(workspace())
        // No DEPOT_BACKEND: a Lambda binary runs on the AWS backend by default.
        .env_remove("DEPOT_BACKEND")
        .env("DEPOT_TABLE", &table)
        .env("DEPOT_BUCKET", &bucket)
        .env_remove("DEPOT_ADMIN_PASSWORD")
        .env("DEPOT_ADMIN_SECRET", &secret_arn)
        // Sessions over 3 MiB are verified by the worker function.
        .env("DEPOT_VERIFY_INLINE_BYTES", "3145728")
        .env("DEPOT_GC_DRY_RUN", "true")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("cargo lambda (cargo-lambda must be on PATH; infra/test.sh installs it)");
    let _watch = Watch(child);

    let api = Api::new(&format!("http://127.0.0.1:{port}/lambda-url/packages"));
    // The first request compiles (or finds) and starts the binary.
    let started = Instant::now();
    let health = loop {
        match api.http.get(format!("{}/health", api.base)).send().await {
            Ok(r) if r.status() == 200 => break r.json::<serde_json::Value>().await.unwrap(),
            _ if started.elapsed() > Duration::from_secs(600) => {
                panic!("the function did not answer; see target/cargo-lambda-watch.log")
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    assert_eq!(health["status"], "ok");
    eprintln!("cargo lambda watch: first 200 after {:?}", started.elapsed());

    let (s, b) = api.anonymous().post("/repository/api/project/create", json!({"name": "lam"})).await;
    failure(s, &b, 401, 250114);
    let (s, b) = api.post("/repository/api/project/create", json!({"name": "lam", "description": "from lambda"})).await;
    assert_eq!(data(s, &b), json!("lam"));
    let (s, b) =
        api.post("/repository/api/repo/create", json!({"projectId": "lam", "name": "charts", "type": "RDS"})).await;
    assert_eq!(data(s, &b)["type"], "RDS");
    let (s, b) =
        api.post("/repository/api/repo/create", json!({"projectId": "lam", "name": "charts", "type": "RDS"})).await;
    failure(s, &b, 409, 251007);
    let (s, b) = api.get("/repository/api/repo/list/lam").await;
    let repos = data(s, &b);
    assert_eq!(repos.as_array().unwrap().len(), 1);
    assert_eq!(repos[0]["name"], "charts");
    let (s, b) = api.get("/repository/api/project/list").await;
    assert_eq!(data(s, &b).as_array().unwrap().len(), 1);
    let (s, b) = api.get("/repository/api/nothing-here").await;
    failure(s, &b, 404, 250108);
    // Just over what a Lambda event carries once base64-encoded: depot's 413, naming the
    // way around it, not a gateway error.
    let over = depot_core::http::lambda::LAMBDA_BODY_BYTES as usize + 1000;
    let res = api
        .http
        .post(format!("{}/blobs/uploads", api.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("content-type", "application/octet-stream")
        .body(vec![b'x'; over])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 413);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("/blobs/uploads"), "{body}");

    // An upload session through real presigned S3 URLs, completed by the function.
    let bytes = crate::uploads::payload(2 << 20, 9);
    let done = crate::uploads::upload(&api, "lam", "charts", &bytes).await;
    let url = done["session"]["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/{bucket}/uploads/", aws_endpoint())), "{url}");
    let id = done["session"]["id"].as_str().unwrap();
    let location = crate::uploads::content_redirect(&api.base, id, "c.tgz").await;
    let got = reqwest::get(&location).await.unwrap().bytes().await.unwrap();
    assert_eq!(crate::uploads::sha256_hex(&got), crate::uploads::sha256_hex(&bytes));
    // A session over DEPOT_VERIFY_INLINE_BYTES: the function only takes it (202), and the
    // worker function, started by the object-created event that the copy raised on AWS
    // (here sent by hand, in EventBridge's shape), verifies it.
    let bytes = crate::uploads::payload(4 << 20, 10);
    let sha = crate::uploads::sha256_hex(&bytes);
    let session = crate::uploads::open(&api, "lam", "charts", bytes.len(), Some(&sha)).await;
    let id = session["id"].as_str().unwrap().to_string();
    crate::uploads::send_bytes(&session, &bytes).await;
    let (s, b) = crate::uploads::complete(&api, &id, None).await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["data"]["state"], "VERIFYING");
    let (s, b) = api.get(&format!("/blobs/uploads/{id}")).await;
    assert_eq!(data(s, &b)["state"], "VERIFYING", "nothing verifies it in the function's frozen process");
    let event = json!({
        "version": "0", "source": "aws.s3", "detail-type": "Object Created",
        "detail": {"bucket": {"name": bucket}, "object": {"key": format!("uploads/{id}.verify")}, "reason": "CopyObject"},
    });
    let invoke = format!("http://127.0.0.1:{port}/2015-03-31/functions/worker/invocations");
    let started = Instant::now();
    let report: serde_json::Value = loop {
        match api.http.post(&invoke).json(&event).send().await {
            Ok(r) if r.status() == 200 => break r.json().await.unwrap(),
            _ if started.elapsed() > Duration::from_secs(600) => {
                panic!("the worker function did not answer; see target/cargo-lambda-watch.log")
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    assert_eq!(report["sessions"][&id], "COMPLETE", "{report}");
    let done = crate::uploads::poll_session(&api, &id).await;
    assert_eq!(done["digest"], format!("sha256:{sha}"));
    // The schedule's sweep, dry: it reports and removes nothing.
    let sweep: serde_json::Value =
        api.http.post(&invoke).json(&json!({"task": "gc"})).send().await.unwrap().json().await.unwrap();
    assert_eq!(sweep["gc"]["dryRun"], true, "{sweep}");
    assert_eq!(sweep["gc"]["removed"], 0, "{sweep}");
    assert!(sweep["gc"]["referenced"].as_u64().unwrap() >= 2, "{sweep}");

    // Users and a token, on the function.
    let (s, b) = api.post("/auth/api/user/create", json!({"userId": "ci", "pwd": "ci-password-1"})).await;
    data(s, &b);
    let (s, b) = api.as_user("ci", "ci-password-1").post("/auth/api/user/token/ci/t", json!({})).await;
    let token = data(s, &b)["id"].as_str().unwrap().to_string();
    let (s, b) = api
        .as_user("ci", &token)
        .post("/blobs/uploads", json!({"projectId": "lam", "repoName": "charts", "size": 1}))
        .await;
    failure(s, &b, 403, 250113);

    // The RDS function: upload → index → download (byte for byte, digest) → delete → index.
    let rds = Api::new(&format!("http://127.0.0.1:{port}/lambda-url/rds"));
    let started = Instant::now();
    loop {
        match rds
            .http
            .get(format!("{}/rds/lam/charts/index.yaml", rds.base))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .await
        {
            Ok(r) if r.status() == 200 => break,
            _ if started.elapsed() > Duration::from_secs(600) => {
                panic!("the rds function did not answer; see target/cargo-lambda-watch.log")
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    crate::rds::chart_flow(&rds, "lam", "charts").await;

    // The depot client pushes a 40 MB chart, far over the 6 MB a request may carry, as it
    // would behind API Gateway (emulated by `gateway`: /rds to the rds function, the rest
    // to the packages function): an upload session in parts straight to S3, completion
    // taken by the packages function (202 VERIFYING, over 3 MiB here), verified by the
    // worker function from the object-created event while the client polls, then
    // published through the rds function with X-Depot-Blob. Pulled back, byte for byte.
    let gw = gateway(port).await;
    let user = crate::cli::User::new();
    tokio::task::block_in_place(|| user.login(&gw, "admin", ADMIN_PASSWORD));
    let (file, chart) = crate::cli::big_chart("huge", "1.0.0", 40_000_000);
    user.write(&file, &chart);
    let mut push = user.command(&["push", "lam/charts", &file]).stderr(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = push.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut said = Vec::new();
    let session = loop {
        let line = tokio::task::block_in_place(|| rx.recv_timeout(Duration::from_secs(300)))
            .unwrap_or_else(|_| panic!("the push ended before verifying: {said:#?}"));
        said.push(line.clone());
        if let Some(rest) = line.split("(session ").nth(1) {
            break rest.trim_end_matches(")...").to_string();
        }
    };
    let event = json!({
        "version": "0", "source": "aws.s3", "detail-type": "Object Created",
        "detail": {"bucket": {"name": bucket}, "object": {"key": format!("uploads/{session}")}, "reason": "CompleteMultipartUpload"},
    });
    let report: serde_json::Value = api.http.post(&invoke).json(&event).send().await.unwrap().json().await.unwrap();
    assert_eq!(report["sessions"][&session], "COMPLETE", "{report}");
    let out = tokio::task::block_in_place(|| push.wait_with_output()).unwrap();
    said.extend(rx.try_iter());
    assert!(out.status.success(), "{said:#?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("pushed huge-1.0.0.tar to lam/charts"));
    let ran = tokio::task::block_in_place(|| user.ok(&["pull", "lam/charts", "huge", "-o", "back.tar"]));
    assert!(ran.out.contains("pulled rds://huge 1.0.0"), "{}", ran.out);
    assert!(user.read("back.tar") == chart, "the same bytes came back");
    let index = crate::rds::index(&rds, "lam", "charts").await;
    assert!(index["entries"]["huge"].is_sequence(), "{index:?}");
    // The packages function sees what the rds function uploaded.
    let (s, b) = api.get("/repository/api/package/info/lam/charts?packageKey=rds://redis").await;
    assert_eq!(data(s, &b)["latest"], "0.1.0");
    let (s, b) =
        api.post("/repository/api/stage/upgrade/lam/charts/rds%3A%2F%2Fredis/0.1.0?tag=release", json!({})).await;
    assert_eq!(data(s, &b), json!(null));
    let (s, b) = api.get("/repository/api/stage/lam/charts?packageKey=rds://redis&version=0.1.0").await;
    assert_eq!(data(s, &b), json!(["@release"]));
    let (s, b) = api
        .post("/repository/api/version/list/lam/charts?packageKey=rds://redis", json!({"stageTag": "@release"}))
        .await;
    assert_eq!(data(s, &b).as_array().unwrap().len(), 1);
    let (s, b) = api.get("/repository/api/package/page/lam/charts?pageSize=10").await;
    assert!(data(s, &b)["records"].as_array().unwrap().iter().any(|p| p["key"] == "rds://redis"));
    let (s, b) = api.get("/repository/api/version/page/lam/charts?packageKey=rds://redis").await;
    assert_eq!(data(s, &b)["totalRecords"], 1);
    let rule = json!({"relation": "AND", "rules": [
        {"field": "projectId", "operation": "EQ", "value": "lam"},
        {"field": "name", "operation": "MATCH_I", "value": "*REDIS"},
    ]});
    let (s, b) = api.post("/repository/api/package/search", json!({"rule": rule, "select": ["key"]})).await;
    assert_eq!(data(s, &b)["records"], json!([{"key": "rds://redis"}]));
    let location = crate::uploads::redirect_location(&format!(
        "{}/repository/api/version/download/lam/charts?packageKey=rds://redis&version=0.1.0",
        api.base
    ))
    .await;
    assert_eq!(reqwest::get(&location).await.unwrap().status().as_u16(), 200);
    // Deletes through the packages function: a @release version needs MANAGE (admin has it).
    let (s, b) = api.delete("/repository/api/version/delete/lam/charts?packageKey=rds://redis&version=0.1.0").await;
    data(s, &b);
    let (s, b) = api.get("/repository/api/package/info/lam/charts?packageKey=rds://redis").await;
    assert_eq!(data(s, &b), json!(null), "the package went with its last version");

    // The strux function: a user, an upload in the Go client's form, versions, download
    // (GET requests with a multipart body, through the Lambda event), and the packages
    // function sees the package.
    use crate::strux::{creds, send, tee_tree, upload_form, GoForm, TEE_FILES};
    let strux = format!("http://127.0.0.1:{port}/lambda-url/strux");
    let started = Instant::now();
    loop {
        let a = send(&strux, "POST", "/create-user/", creds("sam", "sam-password-1")).await;
        if a.status == 201 {
            a.says(201, 1, true, "User sam created successfully.");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "the strux function did not answer: {}", a.text());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    send(&strux, "POST", "/upload-pkg/", upload_form("sam", "sam-password-1", "1.0.0", &tee_tree(), &TEE_FILES))
        .await
        .says(201, 1, true, "Package tee successfully created.");
    let (parts, _) = send(&strux, "GET", "/package-versions/", GoForm::new().text("username", "sam").text("pkgName", "tee"))
        .await
        .parts();
    assert_eq!(parts[0].2, b"[\"1.0.0\"]");
    let d = send(
        &strux,
        "GET",
        "/download-package/",
        GoForm::new().text("username", "sam").text("pkgName", "tee").text("version", "1.0.0"),
    )
    .await;
    let (parts, _) = d.parts();
    let got: Vec<_> = parts.iter().filter(|p| p.1.is_some()).map(|p| (p.0.clone(), p.1.clone().unwrap(), p.2.clone())).collect();
    assert_eq!(got.len(), 3, "{}", d.text());
    assert!(got.contains(&("DIR$tee/dir1".into(), "file1.txt".into(), b"one\n".to_vec())), "{got:?}");
    let (s, b) = api.get("/repository/api/package/info/strux/packages?packageKey=strux://sam/tee").await;
    assert_eq!(data(s, &b)["downloads"], 1);

    // The OCP function: the deployer's upload, a filtered list, the download (a redirect
    // to S3) byte for byte, the delete by id.
    use crate::ocp::{fixture, upload_as, FIXTURES};
    let ocp = Api::new(&format!("http://127.0.0.1:{port}/lambda-url/software-packages"));
    let (file, bytes) = (FIXTURES[2].0, fixture(FIXTURES[2].0));
    let started = Instant::now();
    let uploaded = loop {
        let (s, body) = upload_as(&ocp, file, bytes.clone()).await;
        if s == 200 {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "the OCP function did not answer: {s} {body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(uploaded["data"]["type"], "OBPROXY_INSTALL_PACKAGE");
    let list = ocp
        .http
        .get(format!("{}/api/v2/software-packages?architecture=aarch64&type=OBPROXY_INSTALL_PACKAGE", ocp.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    let list: serde_json::Value = list.json().await.unwrap();
    assert_eq!(list["data"]["page"]["totalElements"], 1, "{list}");
    // downloadUrl names the domain's root, which cargo lambda watch serves under a prefix.
    let url = format!("{}/api/v2/files/sys-package/{file}", ocp.base);
    assert!(uploaded["data"]["downloadUrl"].as_str().unwrap().ends_with(&url[ocp.base.len()..]), "{uploaded}");
    let got = ocp.http.get(url).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
    assert_eq!(got.status().as_u16(), 200);
    assert!(got.bytes().await.unwrap().to_vec() == bytes, "byte for byte");
    let id = uploaded["data"]["id"].as_u64().unwrap();
    let del = ocp
        .http
        .delete(format!("{}/api/v2/software-packages/{id}", ocp.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status().as_u16(), 200);
    let (s, body) = api.get("/repository/api/package/info/ocp/software-packages?packageKey=rpm://obproxy-ce").await;
    assert_eq!(data(s, &body), json!(null), "the delete went through the one domain");

    // The APS function: the packager tool's upload, a lookup (303 to the fully specified
    // URL, then 302 to S3) and the download, byte for byte.
    use crate::aps::{Catalog, Pkg};
    let cat = Catalog::new(&format!("http://127.0.0.1:{port}/lambda-url/aps"));
    let pkg = Pkg::v2("LambdaApp", "1.0", "pack.example.com");
    let started = Instant::now();
    loop {
        let a = cat.packager_upload("", "admin", ADMIN_PASSWORD, &[("approve", "true"), ("publish", "true")], pkg.zip()).await;
        if a.status == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "the APS function did not answer: {} {}", a.status, a.text());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let a = cat.get("/aps/2.0/Example/LambdaApp/1.0-1.aps?packager=pack.example.com").await;
    assert_eq!(a.status, 303, "{}", a.text());
    let a = cat.follow(&a.location()).await;
    assert_eq!(a.status, 302, "{}", a.text());
    let bits = reqwest::get(a.location()).await.unwrap();
    assert_eq!(bits.status().as_u16(), 200);
    assert!(bits.bytes().await.unwrap().to_vec() == pkg.zip(), "byte for byte");
    let (s, body) = api.get("/repository/api/package/info/aps/catalog?packageKey=aps://Example/LambdaApp").await;
    assert_eq!(data(s, &body)["downloads"], 1);

    // The function wrote to DynamoDB: the table holds what the API said.
    let t = DynamoTable::new(&sdk, &table);
    let item = depot_core::store::Table::get(&t, &depot_core::store::schema::repo_key("lam", "charts")).await.unwrap();
    assert_eq!(item.unwrap()["type"], "RDS");
}

/// In proxy mode, a download larger than a Lambda response can carry is a redirect to a
/// presigned URL; a smaller one streams.
#[tokio::test]
async fn proxied_downloads_over_the_response_limit_redirect() {
    use axum::body::Body;
    use axum::http::Request;
    let dir = tempfile::tempdir().unwrap();
    let config = depot_core::config::Config {
        data_dir: dir.path().to_path_buf(),
        admin_password: Some(ADMIN_PASSWORD.into()),
        download_mode: depot_core::config::DownloadMode::Proxy,
        max_response_bytes: Some(32 << 10),
        ..Default::default()
    };
    let state = depot_core::http::AppState::open(config, false).await.unwrap();
    state.authenticator.bootstrap_admin(false).await.unwrap();
    let app = crate::harness::surfaces(state);
    let auth = format!("Basic {}", crate::harness::basic("admin", ADMIN_PASSWORD));
    let send = |req: Request<Body>| {
        let app = app.clone();
        async move { crate::harness::oneshot(&app, req).await }
    };
    let json_req = |path: &str, body: serde_json::Value| {
        Request::post(path).header("authorization", &auth).header("content-type", "application/json").body(Body::from(body.to_string())).unwrap()
    };
    assert_eq!(send(json_req("/repository/api/project/create", json!({"name": "px"}))).await.0, 200);
    assert_eq!(send(json_req("/repository/api/repo/create", json!({"projectId": "px", "name": "charts", "type": "RDS"}))).await.0, 200);
    let mut answers = vec![];
    for (name, pad) in [("small", 0usize), ("large", 64 << 10)] {
        let (content_type, form) = crate::rds::chart_form_padded(name, "1.0.0", pad);
        let up = Request::post("/rds/api/px/charts/charts").header("authorization", &auth).header("content-type", content_type).body(Body::from(form)).unwrap();
        assert_eq!(send(up).await.0, 201);
        let get = Request::get(format!("/repository/api/version/download/px/charts?packageKey=rds://{name}&version=1.0.0")).header("authorization", &auth).body(Body::empty()).unwrap();
        answers.push(send(get).await.0);
    }
    assert_eq!(answers, [200, 302], "the small chart streams, the large one redirects");
}

/// API Gateway's routing, for clients that take one base URL: `/rds/...` to the rds
/// function, everything else the client uses to the packages function, each under
/// `cargo lambda watch` on `port`. The functions see the gateway's host as
/// `X-Forwarded-Host`, so the URLs they return lead back through it.
async fn gateway(port: u16) -> String {
    use axum::body::Body;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let http = crate::uploads::no_redirects();
    let forwarded = host.clone();
    let app = axum::Router::new().fallback(move |req: axum::http::Request<Body>| {
        let (http, forwarded) = (http.clone(), forwarded.clone());
        async move {
            let function = if req.uri().path().starts_with("/rds/") { "rds" } else { "packages" };
            let path = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
            let mut rb = http.request(req.method().clone(), format!("http://127.0.0.1:{port}/lambda-url/{function}{path}"));
            for (k, v) in req.headers() {
                if k != axum::http::header::HOST {
                    rb = rb.header(k, v);
                }
            }
            rb = rb.header("x-forwarded-host", forwarded);
            let body = axum::body::to_bytes(req.into_body(), 8 << 20).await.unwrap();
            let res = rb.body(body).send().await.unwrap();
            let mut out = axum::http::Response::builder().status(res.status().as_u16());
            for (k, v) in res.headers() {
                out = out.header(k, v);
            }
            out.body(Body::from(res.bytes().await.unwrap())).unwrap()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{host}")
}
