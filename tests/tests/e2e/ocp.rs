//! The OCP software-package surface as OceanBase's deployer and OCP's agents use it: the
//! deployer's multipart form (Python `requests`, `files={'file': f}`, HTTP Basic), typed
//! and paged queries, deletes by id, downloads, over real RPM fixtures (built by
//! `tests/fixtures/rpm/build.sh` with rpmbuild).
use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::Request;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};

use crate::harness::{basic, data, embedded, oneshot, Api, Server, ADMIN_PASSWORD};

const LIST: &str = "/api/v2/software-packages";

pub fn fixture(name: &str) -> Vec<u8> {
    let path = crate::harness::workspace().join("tests/fixtures/rpm").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (file, name, type, version, buildNumber, operatingSystem, architecture) of each fixture.
pub const FIXTURES: [(&str, &str, &str, &str, &str, &str, &str); 8] = [
    ("t-oceanbase-ocp-agent-3.1.2-20210812221645.alios7.x86_64.rpm", "t-oceanbase-ocp-agent", "OCP_AGENT_INSTALL_PACKAGE", "3.1.2", "20210812221645", "alios7", "x86_64"),
    ("oceanbase-ce-4.2.1.0-100000102023092807.el7.x86_64.rpm", "oceanbase-ce", "OB_SERVER_INSTALL_PACKAGE", "4.2.1.0", "100000102023092807", "el7", "x86_64"),
    ("obproxy-ce-4.2.0.0-7.el7.aarch64.rpm", "obproxy-ce", "OBPROXY_INSTALL_PACKAGE", "4.2.0.0", "7", "el7", "aarch64"),
    ("obagent-4.2.0-100000062023080210.el8.x86_64.rpm", "obagent", "OB_AGENT_INSTALL_PACKAGE", "4.2.0", "100000062023080210", "el8", "x86_64"),
    ("ob-backup-agent-1.1.0-3.el7.x86_64.rpm", "ob-backup-agent", "OB_BACKUP_AGENT_INSTALL_PACKAGE", "1.1.0", "3", "el7", "x86_64"),
    ("ob-deploy-docs-1.0.0-1.el7.noarch.rpm", "ob-deploy-docs", "OTHERS_RPM", "1.0.0", "1", "el7", "noarch"),
    // The release has no OS part: the file name gives it.
    ("obclient-2.2.2-1.el9.x86_64.rpm", "obclient", "OTHERS_RPM", "2.2.2", "1", "el9", "x86_64"),
    // The file name and the header disagree: the header wins.
    ("renamed-9.9.9-1.el9.noarch.rpm", "obproxy-ce", "OBPROXY_INSTALL_PACKAGE", "4.2.1.0", "11", "el8", "x86_64"),
];

/// An RPM that differs from `base` only where `from` is replaced by `to` (same length,
/// everywhere: the lead, the header's release, the payload): another release of the same
/// package, for tests that need many.
pub fn variant(base: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = base.to_vec();
    let mut found = 0;
    let mut at = 0;
    while let Some(i) = out[at..].windows(from.len()).position(|w| w == from.as_bytes()) {
        out[at + i..at + i + to.len()].copy_from_slice(to.as_bytes());
        at += i + to.len();
        found += 1;
    }
    assert!(found >= 2, "the string is in the lead and the header");
    out
}

/// An OCP answer: HTTP status and envelope, checked to be one.
pub async fn envelope(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    for field in ["successful", "timestamp", "duration", "status", "traceId", "server"] {
        assert!(body.get(field).is_some(), "no {field}: {body}");
    }
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["successful"], status == 200, "{body}");
    if status != 200 {
        assert!(body.get("data").is_none() && body["error"]["code"].is_i64() && body["error"]["message"].is_string(), "{body}");
    }
    (status, body)
}

/// The deployer's upload: a multipart form with the one field `file`.
pub async fn upload_as(api: &Api, file_name: &str, bytes: Vec<u8>) -> (u16, Value) {
    let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_string()));
    let (user, pw) = api.auth.clone().unwrap();
    envelope(api.http.post(format!("{}{LIST}", api.base)).basic_auth(user, Some(pw)).multipart(form).send().await.unwrap()).await
}

async fn get(api: &Api, path: &str) -> (u16, Value) {
    let (user, pw) = api.auth.clone().unwrap();
    envelope(api.http.get(format!("{}{path}", api.base)).basic_auth(user, Some(pw)).send().await.unwrap()).await
}

async fn delete(api: &Api, path: &str) -> (u16, Value) {
    let (user, pw) = api.auth.clone().unwrap();
    envelope(api.http.delete(format!("{}{path}", api.base)).basic_auth(user, Some(pw)).send().await.unwrap()).await
}

fn names(list: &Value) -> Vec<String> {
    list["data"]["contents"].as_array().unwrap().iter().map(|p| p["fileName"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn ocp_deployer_and_operators_round_trip() {
    let (_dir, server, api) = embedded(&[]);
    let b = server.base.clone();
    // The deployer's retry after a transport error: no file, no auth.
    let res = reqwest::Client::new().post(format!("{b}{LIST}")).send().await.unwrap();
    assert_eq!(envelope(res).await.0, 401);

    let mut ids = BTreeMap::new();
    for (file, name, ty, version, build, os, arch) in FIXTURES {
        let bytes = fixture(file);
        let (s, body) = upload_as(&api, file, bytes.clone()).await;
        assert_eq!(s, 200, "{file}: {body}");
        let d = &body["data"];
        assert_eq!(
            (d["name"].as_str(), d["type"].as_str(), d["version"].as_str(), d["buildNumber"].as_str()),
            (Some(name), Some(ty), Some(version), Some(build)),
            "{file}: {d}"
        );
        assert_eq!((d["operatingSystem"].as_str(), d["architecture"].as_str()), (Some(os), Some(arch)), "{file}: {d}");
        assert_eq!((d["fileName"].as_str(), d["extension"].as_str()), (Some(file), Some("rpm")));
        assert_eq!((d["size"].as_u64(), d["sha1"].as_str()), (Some(bytes.len() as u64), Some(hex::encode(Sha1::digest(&bytes)).as_str())));
        assert_eq!(d["downloadUrl"].as_str(), Some(format!("{b}/api/v2/files/sys-package/{file}").as_str()));
        assert_eq!(d["deletable"], true);
        assert!(d["createTime"].is_string() && d["id"].is_u64(), "{d}");
        ids.insert(file, d["id"].as_u64().unwrap());
    }
    let distinct: std::collections::BTreeSet<u64> = ids.values().copied().collect();
    assert_eq!(distinct.len(), FIXTURES.len(), "every upload has its own id: {ids:?}");

    // The deployer uploads again on every start: the same file is the stored package.
    let agent = FIXTURES[0].0;
    let (s, again) = upload_as(&api, agent, fixture(agent)).await;
    assert_eq!((s, again["data"]["id"].as_u64()), (200, Some(ids[agent])));
    // A different file under a stored name is a 409, and the stored one stays.
    let (s, body) = upload_as(&api, agent, fixture(FIXTURES[1].0)).await;
    assert_eq!(s, 409, "{body}");
    // Not an RPM, or not named .rpm: 400s that say why.
    let (s, body) = upload_as(&api, "fake-1.0-1.el7.x86_64.rpm", b"#!/bin/sh\necho not an rpm, but long enough to hold a lead of 96 bytes ............................".to_vec()).await;
    assert!(s == 400 && body["error"]["message"].as_str().unwrap().contains("not an RPM"), "{body}");
    let (s, body) = upload_as(&api, "agent.tar.gz", fixture(agent)).await;
    assert!(s == 400 && body["error"]["message"].as_str().unwrap().contains(".rpm"), "{body}");
    let (s, body) = upload_as(&api, "cut-1.0-1.el7.x86_64.rpm", fixture(agent)[..300].to_vec()).await;
    assert_eq!(s, 400, "{body}");

    // Queries: newest first by default, paged, filtered, sorted.
    let (s, all) = get(&api, LIST).await;
    assert_eq!(s, 200);
    assert_eq!(all["data"]["page"], json!({"totalElements": 8, "totalPages": 1, "number": 1, "size": 10}));
    assert_eq!(names(&all)[0], FIXTURES[7].0, "newest first");
    let (_, p2) = get(&api, &format!("{LIST}?page=2&size=3")).await;
    assert_eq!(p2["data"]["page"], json!({"totalElements": 8, "totalPages": 3, "number": 2, "size": 3}));
    assert_eq!(names(&p2), names(&all)[3..6].to_vec());
    let count = |q: &str| {
        let api = api.clone();
        let q = q.to_string();
        async move {
            let (s, body) = get(&api, &format!("{LIST}?{q}")).await;
            assert_eq!(s, 200, "{q}: {body}");
            (body["data"]["page"]["totalElements"].as_u64().unwrap(), names(&body))
        }
    };
    assert_eq!(count("type=OBPROXY_INSTALL_PACKAGE").await.0, 2);
    assert_eq!(count("type=OBPROXY_INSTALL_PACKAGE&type=OTHERS_RPM").await.0, 4);
    assert_eq!(count("type=OBPROXY_INSTALL_PACKAGE,OTHERS_RPM").await.0, 4);
    assert_eq!(count("architecture=noarch").await.1, vec![FIXTURES[5].0.to_string()]);
    assert_eq!(count("operatingSystem=el7,el9&architecture=x86_64").await.0, 3);
    assert_eq!(count("version=4.2.1.0").await.0, 2);
    assert_eq!(count("keyword=AGENT").await.0, 3, "ocp-agent, obagent, ob-backup-agent");
    let (_, by_name) = count("sort=name,asc&size=2000").await;
    assert_eq!(by_name.first().map(String::as_str), Some(FIXTURES[4].0), "ob-backup-agent sorts first: {by_name:?}");
    let (_, by_id) = count("sort=id,desc").await;
    assert_eq!(by_id[0], FIXTURES[7].0);
    let (_, oldest) = count("sort=createTime,asc&size=1").await;
    assert_eq!(oldest, vec![agent.to_string()]);
    for bad in ["size=2001", "size=0", "page=0", "page=x", "sort=color,asc", "sort=name,up", "type=NOPE"] {
        let (s, body) = get(&api, &format!("{LIST}?{bad}")).await;
        assert_eq!(s, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], 10001);
    }

    // Downloads follow the download mode (a redirect to a signed URL here), and count.
    let res = reqwest::Client::new()
        .get(format!("{b}/api/v2/files/sys-package/{agent}"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.bytes().await.unwrap().to_vec(), fixture(agent), "byte for byte");
    let (s, body) = api.get("/repository/api/package/info/ocp/software-packages?packageKey=rpm://t-oceanbase-ocp-agent").await;
    assert_eq!((data(s, &body)["downloads"].as_i64(), body["data"]["type"].as_str()), (Some(1), Some("RPM")));
    let (s, _) = get(&api, "/api/v2/files/sys-package/nothing-1.0-1.el7.x86_64.rpm").await;
    assert_eq!(s, 404);

    // Deletes by integer id: no data; gone from the list; a missing id is a 404, a
    // non-numeric one a 400; an id is never handed out again.
    let (s, body) = delete(&api, &format!("{LIST}/{}", ids[agent])).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.get("data").is_none(), "{body}");
    assert!(!names(&get(&api, &format!("{LIST}?size=100")).await.1).contains(&agent.to_string()));
    assert_eq!(delete(&api, &format!("{LIST}/{}", ids[agent])).await.0, 404);
    assert_eq!(delete(&api, &format!("{LIST}/99999")).await.0, 404);
    assert_eq!(delete(&api, &format!("{LIST}/abc")).await.0, 400);
    let (s, back) = upload_as(&api, agent, fixture(agent)).await;
    assert_eq!(s, 200);
    assert!(back["data"]["id"].as_u64().unwrap() > *ids.values().max().unwrap(), "ids are not reused: {back}");

    // One domain: the bkrepo API sees the packages, and a version deleted there is gone
    // from OCP's list and ids.
    let (s, body) = api.get("/repository/api/package/page/ocp/software-packages?pageSize=100").await;
    assert_eq!(data(s, &body)["totalRecords"], 7, "7 packages (two obproxy-ce versions): {body}");
    let (s, body) = api
        .delete("/repository/api/version/delete/ocp/software-packages?packageKey=rpm://obagent&version=4.2.0-100000062023080210.el8.x86_64")
        .await;
    data(s, &body);
    assert!(!names(&get(&api, &format!("{LIST}?size=100")).await.1).contains(&FIXTURES[3].0.to_string()));
    assert_eq!(delete(&api, &format!("{LIST}/{}", ids[FIXTURES[3].0])).await.0, 404);

    // Roles: a viewer (READ) queries and downloads; only a manager (WRITE, DELETE) uploads
    // and deletes.
    let (s, body) = api.post("/auth/api/user/create", json!({"userId": "viewer", "pwd": "viewer-password"})).await;
    data(s, &body);
    let grant = json!({"permName": "view", "projectId": "ocp", "resourceType": "REPO", "repos": ["software-packages"],
        "users": [{"id": "viewer", "action": ["READ"]}]});
    let (s, body) = api.post("/auth/api/permission/create", grant).await;
    data(s, &body);
    let viewer = api.as_user("viewer", "viewer-password");
    assert_eq!(get(&viewer, LIST).await.0, 200);
    assert_eq!(upload_as(&viewer, FIXTURES[3].0, fixture(FIXTURES[3].0)).await.0, 403);
    assert_eq!(delete(&viewer, &format!("{LIST}/{}", ids[FIXTURES[1].0])).await.0, 403);
}

/// Concurrent uploads: distinct files never share an id; the same file uploaded at once
/// is one package, and every upload of it answers 200 with its id.
#[tokio::test]
async fn ocp_concurrent_uploads() {
    let (_dir, _server, api) = embedded(&[]);
    let base = fixture(FIXTURES[0].0);
    let uploads: Vec<_> = (0..8)
        .map(|i| {
            let api = api.clone();
            let bytes = variant(&base, "20210812221645", &format!("2021081222164{i}"));
            tokio::spawn(async move { upload_as(&api, &format!("agent-3.1.2-2021081222164{i}.alios7.x86_64.rpm"), bytes).await })
        })
        .collect();
    let mut ids = vec![];
    for u in uploads {
        let (s, body) = u.await.unwrap();
        assert_eq!(s, 200, "{body}");
        ids.push(body["data"]["id"].as_u64().unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8, "{ids:?}");
    let same: Vec<_> = (0..6)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { upload_as(&api, FIXTURES[1].0, fixture(FIXTURES[1].0)).await })
        })
        .collect();
    let mut answers = vec![];
    for u in same {
        let (s, body) = u.await.unwrap();
        answers.push((s, body["data"]["id"].as_u64()));
    }
    assert!(answers.iter().all(|(s, id)| *s == 200 && *id == answers[0].1), "{answers:?}");
}

/// A 38 MB RPM (the size of the spec's sample): a real RPM's headers and payload, then
/// incompressible bytes, which depot stores without reading.
fn big_rpm() -> Vec<u8> {
    let mut bytes = fixture(FIXTURES[0].0);
    bytes.extend(crate::uploads::payload(38 * 1024 * 1024 - bytes.len(), 38));
    bytes
}

async fn big_upload_on(server: &Server) {
    let api = Api::new(&server.base);
    let bytes = big_rpm();
    server.reset_peak_rss();
    let (s, body) = upload_as(&api, FIXTURES[0].0, bytes.clone()).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["data"]["sha1"].as_str(), Some(hex::encode(Sha1::digest(&bytes)).as_str()));
    let peak = server.peak_rss();
    let res = reqwest::Client::new()
        .get(body["data"]["downloadUrl"].as_str().unwrap())
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.bytes().await.unwrap() == bytes, "byte for byte");
    eprintln!("38 MiB RPM through the deployer's form: server peak RSS {:.1} MiB", peak as f64 / 1048576.0);
}

#[tokio::test]
async fn ocp_38_mb_rpm_through_the_deployers_form_embedded() {
    let (_dir, server, _api) = embedded(&[("DEPOT_MAX_BODY_BYTES", "67108864")]);
    big_upload_on(&server).await;
}

#[tokio::test]
async fn ocp_38_mb_rpm_through_the_deployers_form_aws() {
    let (server, _) = crate::harness::aws_server("ocp", &[("DEPOT_MAX_BODY_BYTES", "67108864")]);
    big_upload_on(&server).await;
}

/// With the Lambda's request limit (6 MB, the default), the 38 MB body is a 413 that
/// names the session route; through a session, the upload names the staged blob by
/// header or by form field, with the file name.
#[tokio::test]
async fn ocp_rpm_over_the_request_limit_goes_through_a_session() {
    let (_dir, server, api) = embedded(&[]);
    let bytes = big_rpm();
    // The deployer's form, declared whole: the 413 comes before the body is read (read
    // here from a raw connection, since a client still writing may see the close first).
    let (ct, form) = file_form(FIXTURES[0].0, &bytes);
    let auth = basic("admin", ADMIN_PASSWORD);
    let head = format!("POST {LIST} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n");
    let mut s = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://")).await.unwrap();
    let request = format!("{head}Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n", form.len());
    tokio::io::AsyncWriteExt::write_all(&mut s, request.as_bytes()).await.unwrap();
    // The refusal says Connection: close: the answer is what comes before the close.
    let mut raw = vec![];
    let read = tokio::io::AsyncReadExt::read_to_end(&mut s, &mut raw);
    tokio::time::timeout(std::time::Duration::from_secs(10), read).await.expect("answered and closed").unwrap();
    let answer = String::from_utf8_lossy(&raw).to_string();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let body: Value = serde_json::from_str(&answer[answer.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!((body["status"].as_u64(), body["error"]["code"].as_i64()), (Some(413), Some(10001)), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("/blobs/uploads") && message.contains("X-Depot-Blob"), "{message}");
    // Staging needs the repository: any OCP route creates it.
    assert_eq!(get(&api, LIST).await.0, 200);
    let done = crate::uploads::upload(&api, "ocp", "software-packages", &bytes).await;
    let digest = done["done"]["digest"].as_str().unwrap().to_string();
    let res = api
        .http
        .post(format!("{}{LIST}?fileName={}", server.base, FIXTURES[0].0))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("x-depot-blob", &digest)
        .send()
        .await
        .unwrap();
    let (s, body) = envelope(res).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!((body["data"]["size"].as_u64(), body["data"]["type"].as_str()), (Some(bytes.len() as u64), Some("OCP_AGENT_INSTALL_PACKAGE")));
    // The form fields `blob` and `fileName`, for another file.
    let other = variant(&bytes, "20210812221645", "20210812221646");
    let done = crate::uploads::upload(&api, "ocp", "software-packages", &other).await;
    let form = reqwest::multipart::Form::new()
        .text("blob", done["done"]["digest"].as_str().unwrap().to_string())
        .text("fileName", "t-oceanbase-ocp-agent-3.1.2-20210812221646.alios7.x86_64.rpm");
    let res = api.http.post(format!("{}{LIST}", server.base)).basic_auth("admin", Some(ADMIN_PASSWORD)).multipart(form).send().await.unwrap();
    let (s, body) = envelope(res).await;
    assert_eq!((s, body["data"]["buildNumber"].as_str()), (200, Some("20210812221646")), "{body}");
    // A reference without a file name says what it lacks.
    let res = api.http.post(format!("{}{LIST}", server.base)).basic_auth("admin", Some(ADMIN_PASSWORD)).header("x-depot-blob", &digest).send().await.unwrap();
    let (s, body) = envelope(res).await;
    assert!(s == 400 && body["error"]["message"].as_str().unwrap().contains("fileName"), "{body}");
}

/// What a query costs at the `Table` port: the unfiltered, newest-first page reads about
/// a page of items whatever the repository's size; a filter reads every version.
#[tokio::test]
async fn ocp_query_cost_follows_the_page() {
    let (_dir, app, counting) = crate::harness::counted_embedded().await;
    let admin = format!("Basic {}", basic("admin", ADMIN_PASSWORD));
    let base = fixture(FIXTURES[0].0);
    const N: usize = 40;
    for i in 0..N {
        let build = format!("202108122216{i:02}");
        let bytes = variant(&base, "20210812221645", &build);
        let (ct, body) = file_form(&format!("agent-3.1.2-{build}.alios7.x86_64.rpm"), &bytes);
        let req = Request::post(LIST).header("authorization", &admin).header("content-type", ct).body(Body::from(body)).unwrap();
        assert_eq!(oneshot(&app, req).await.0, 200);
    }
    let mut report = vec![];
    for (query, most_items) in [
        ("size=10", 10 + 1),
        ("page=2&size=10", 10 + 1),
        ("sort=createTime,asc&size=10", 10 + 1),
        ("type=OCP_AGENT_INSTALL_PACKAGE&size=10", N),
        ("sort=name,asc&size=10", N),
    ] {
        let before = counting.snapshot();
        let req = Request::get(format!("{LIST}?{query}")).header("authorization", &admin).body(Body::empty()).unwrap();
        let (s, body) = oneshot(&app, req).await;
        assert_eq!(s, 200);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["data"]["page"]["totalElements"], N);
        let after = counting.snapshot();
        let (calls, items) = (after.0 - before.0, after.2 - before.2);
        report.push(format!("{query}: {calls} calls, {items} items"));
        assert!(items <= most_items, "{query}: {items} items read");
    }
    eprintln!("OCP query cost ({N} packages): {}", report.join("; "));
}

/// The deployer's form by hand: the one field `file`, as Python `requests` writes it.
fn file_form(file_name: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "ocpdeployerboundary";
    let mut body =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\r\n").into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// What the attack on the OCP surface reproduced, each now answered as it should be.
#[tokio::test]
async fn ocp_refuses_what_the_attack_found() {
    let (_dir, server, api) = embedded(&[]);
    let b = server.base.clone();
    // An anonymous request does not create the repository (it is a 401 either way).
    let res = reqwest::Client::new().get(format!("{b}{LIST}")).send().await.unwrap();
    assert_eq!(envelope(res).await.0, 401);
    let (s, _) = api.get("/repository/api/repo/info/ocp/software-packages").await;
    assert_ne!(s, 200, "the anonymous request created nothing");

    // Right passwords checked together, on a cold credential cache, are never refused.
    let (s, body) = api.post("/auth/api/user/create", json!({"userId": "agent", "pwd": "agent-password"})).await;
    data(s, &body);
    let grant = json!({"permName": "agents", "projectId": "ocp", "resourceType": "REPO", "repos": ["software-packages"],
        "users": [{"id": "agent", "action": ["READ"]}]});
    assert_eq!(get(&api, LIST).await.0, 200, "the repository, created by a signed-in request");
    let (s, body) = api.post("/auth/api/permission/create", grant).await;
    data(s, &body);
    let agent = api.as_user("agent", "agent-password");
    let together: Vec<_> = (0..36)
        .map(|_| {
            let agent = agent.clone();
            tokio::spawn(async move { get(&agent, LIST).await.0 })
        })
        .collect();
    let mut statuses = vec![];
    for t in together {
        statuses.push(t.await.unwrap());
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    // Header fields rpm would refuse are refused: a name with '/' or a space.
    let base = fixture(FIXTURES[6].0);
    for (to, file) in [("ob/lient", "slash-2.2.2-1.el9.x86_64.rpm"), ("ob lient", "space-2.2.2-1.el9.x86_64.rpm")] {
        let (s, body) = upload_as(&api, file, variant(&base, "obclient", to)).await;
        assert!(s == 400 && body["error"]["message"].as_str().unwrap().contains("name"), "{to}: {body}");
    }
    // The blob and fileName fields are short texts.
    let form = reqwest::multipart::Form::new().text("blob", "sha256:".to_string() + &"a".repeat(64)).text("fileName", "x".repeat(5000));
    let res = api.http.post(format!("{b}{LIST}")).basic_auth("admin", Some(ADMIN_PASSWORD)).multipart(form).send().await.unwrap();
    let (s, body) = envelope(res).await;
    assert!(s == 400 && body["error"]["message"].as_str().unwrap().contains("4096"), "{body}");

    // The configured repository replaced by one of another type is a 409 that says so.
    let (s, body) = api.delete("/repository/api/repo/delete/ocp/software-packages?forced=true").await;
    data(s, &body);
    let (s, body) = api.post("/repository/api/repo/create", json!({"projectId": "ocp", "name": "software-packages", "type": "GENERIC"})).await;
    data(s, &body);
    let (s, body) = get(&api, LIST).await;
    assert!(s == 409 && body["error"]["message"].as_str().unwrap().contains("GENERIC"), "{body}");
}
