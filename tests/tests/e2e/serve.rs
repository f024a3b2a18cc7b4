//! `depot serve` on a fresh machine: embedded storage, the bkrepo project and repository
//! routes, authentication, restarts, and the AWS backend on moto.
use std::time::Duration;

use serde_json::json;

use crate::harness::{data, failure, unique, Api, Server, ADMIN_PASSWORD};

const P: &str = "/repository/api/project";
const R: &str = "/repository/api/repo";

#[tokio::test]
async fn health_answers_without_setup() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server =
        Server::start(&["--data-dir", data_dir.to_str().unwrap()], &[("DEPOT_ADMIN_PASSWORD", ADMIN_PASSWORD)]);
    let (status, body) = Api::new(&server.base).anonymous().get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(data_dir.join("depot.redb").exists(), "the embedded database was created");
    eprintln!("depot serve: exec to listening in {:?}", server.startup);
}

#[tokio::test]
async fn default_data_dir_is_created_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(crate::harness::binary("depot"));
    let port = crate::harness::free_port();
    cmd.current_dir(dir.path()).args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
    cmd.env_remove("DEPOT_DATA_DIR").env_remove("DEPOT_BACKEND").env("DEPOT_ADMIN_PASSWORD", ADMIN_PASSWORD);
    cmd.stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let api = Api::new(&format!("http://127.0.0.1:{port}"));
    let mut up = false;
    for _ in 0..200 {
        if let Ok(r) = api.http.get(format!("{}/health", api.base)).send().await {
            up = r.status() == 200;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "depot serve with no flags answered /health");
    assert!(dir.path().join("depot-data/depot.redb").exists());
}

#[tokio::test]
async fn routes_authenticate_before_anything_else() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start(&["--data-dir", dir.path().to_str().unwrap()], &[("DEPOT_ADMIN_PASSWORD", ADMIN_PASSWORD)]);
    let api = Api::new(&server.base);
    for who in [api.anonymous(), api.as_user("admin", "wrong"), api.as_user("nobody", "x"), api.as_user("../etc", "x")]
    {
        let (status, body, headers) = who.send("POST", &format!("{P}/create"), Some(json!({"name": "p"}))).await;
        failure(status, &body, 401, 250114);
        assert_eq!(headers["www-authenticate"], "Basic realm=\"depot\"");
        // A bad body from an unauthenticated caller is still a 401, not a 400.
        let (status, body) = who.raw("POST", &format!("{R}/create"), "application/json", "{not json").await;
        failure(status, &body, 401, 250114);
        let (status, body) = who.get(&format!("{P}/list")).await;
        failure(status, &body, 401, 250114);
    }
    // Malformed Authorization headers are 401s too, never 400 or 500.
    for header in ["Basic", "Basic !!!notbase64", "Basic bm9jb2xvbg==", "Bearer abc", "Digest x=y", "Basic YWRtaW46"] {
        let res = api.http.get(format!("{}{P}/list", api.base)).header("authorization", header).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 401, "{header}");
        assert_eq!(res.json::<serde_json::Value>().await.unwrap()["code"], 250114, "{header}");
    }
    let (status, body) = api.get(&format!("{P}/list")).await;
    assert_eq!(data(status, &body), json!([]));
    let (status, body, _) = api.send("GET", "/no/such/route", None).await;
    failure(status, &body, 404, 250108);
}

#[tokio::test]
async fn generated_admin_password_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--data-dir", dir.path().to_str().unwrap()];
    let server = Server::start(&args, &[]);
    let line = server.banner.iter().find(|l| l.contains("generated password")).expect("a generated password").clone();
    let password = line.rsplit(' ').next().unwrap().to_string();
    assert!(password.len() >= 20, "{line}");
    let api = Api::new(&server.base).as_user("admin", &password);
    let (status, body) = api.get(&format!("{P}/list")).await;
    data(status, &body);
    drop(server);
    // The second start keeps the admin and prints no password.
    let again = Server::start(&args, &[]);
    assert!(!again.banner.iter().any(|l| l.contains("password")), "{:?}", again.banner);
    let (status, body) = Api::new(&again.base).as_user("admin", &password).get(&format!("{P}/list")).await;
    data(status, &body);
}

/// The project and repository routes, as a bkrepo client uses them.
async fn projects_and_repositories(api: &Api) {
    let (s, b) =
        api.post(&format!("{P}/create"), json!({"name": "demo", "displayName": "Demo", "description": "d"})).await;
    // bkrepo answers the project's name.
    assert_eq!(data(s, &b), json!("demo"));
    let (s, b) = api.get(&format!("{P}/info/demo")).await;
    let p = data(s, &b);
    assert_eq!(
        (p["name"].as_str(), p["displayName"].as_str(), p["createdBy"].as_str()),
        (Some("demo"), Some("Demo"), Some("admin"))
    );
    assert!(p["createdDate"].as_str().unwrap().ends_with('Z'));

    let (s, b) = api.post(&format!("{P}/create"), json!({"name": "demo"})).await;
    assert!(failure(s, &b, 409, 251005).contains("already exists"));
    // bkrepo's rule for new projects.
    for bad in ["-x", "a/b", "a b", "", "x".repeat(101).as_str(), "../etc", "ü", "1st", "a.b", "x"] {
        let (s, b) = api.post(&format!("{P}/create"), json!({ "name": bad })).await;
        if bad.is_empty() {
            assert!(failure(s, &b, 400, 250103).contains("[name]"));
        } else {
            assert!(failure(s, &b, 400, 250105).contains("2-100 characters"), "{bad}");
        }
    }
    let (s, b) = api.post(&format!("{P}/create"), json!({})).await;
    failure(s, &b, 400, 250103);
    let (s, b) = api.post(&format!("{P}/create"), json!({"name": 5})).await;
    failure(s, &b, 400, 250105);
    let (s, b) = api.raw("POST", &format!("{P}/create"), "application/json", "{not json").await;
    failure(s, &b, 400, 250105);
    let (s, b) = api.raw("POST", &format!("{P}/create"), "text/plain", "{\"name\":\"x\"}").await;
    failure(s, &b, 400, 250105);

    let (s, b) = api.get(&format!("{P}/info/demo")).await;
    assert_eq!(data(s, &b)["displayName"], "Demo");
    let (s, b) = api.get(&format!("{P}/info/nope")).await;
    failure(s, &b, 404, 251004);
    let (s, b) = api.get(&format!("{P}/info/bad%2Fname")).await;
    failure(s, &b, 400, 250105);
    let (s, b) = api.get(&format!("{P}/exist/demo")).await;
    assert_eq!(data(s, &b), json!(true));
    let (s, b) = api.get(&format!("{P}/exist/nope")).await;
    assert_eq!(data(s, &b), json!(false));

    for t in ["GENERIC", "RDS", "rpm", "APS", "STRUX"] {
        let name = format!("r-{}", t.to_lowercase());
        let (s, b) = api
            .post(&format!("{R}/create"), json!({"projectId": "demo", "name": name, "type": t, "category": "LOCAL"}))
            .await;
        let r = data(s, &b);
        assert_eq!((r["type"].as_str(), r["public"].as_bool()), (Some(t.to_uppercase().as_str()), Some(false)));
    }
    let (s, b) = api.post(&format!("{R}/create"), json!({"projectId": "demo", "name": "r-rds", "type": "RDS"})).await;
    failure(s, &b, 409, 251007);
    let (s, b) = api.post(&format!("{R}/create"), json!({"projectId": "demo", "name": "xx", "type": "MAVEN"})).await;
    let msg = failure(s, &b, 400, 250105);
    assert!(msg.contains("GENERIC, RDS, RPM, APS, STRUX"), "{msg}");
    let (s, b) = api
        .post(&format!("{R}/create"), json!({"projectId": "demo", "name": "xx", "type": "RDS", "category": "REMOTE"}))
        .await;
    failure(s, &b, 400, 250105);
    let (s, b) = api.post(&format!("{R}/create"), json!({"projectId": "demo", "name": "xx"})).await;
    assert!(failure(s, &b, 400, 250103).contains("[type]"));
    let (s, b) = api.post(&format!("{R}/create"), json!({"projectId": "nope", "name": "xx", "type": "RDS"})).await;
    failure(s, &b, 404, 251004);
    let (s, b) = api.post(&format!("{R}/create"), json!({"projectId": "demo", "name": "a\u{0}b", "type": "RDS"})).await;
    failure(s, &b, 400, 250105);
    let (s, b) = api
        .post(&format!("{R}/create"), json!({"projectId": "demo", "name": "pub", "type": "GENERIC", "public": true}))
        .await;
    assert_eq!(data(s, &b)["public"], true);

    let (s, b) = api.get(&format!("{R}/list/demo")).await;
    let names: Vec<_> =
        data(s, &b).as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["pub", "r-aps", "r-generic", "r-rds", "r-rpm", "r-strux"]);
    let (s, b) = api.get(&format!("{R}/list/nope")).await;
    failure(s, &b, 404, 251004);
    let (s, b) = api.get(&format!("{R}/info/demo/r-rds")).await;
    assert_eq!(data(s, &b)["projectId"], "demo");
    let (s, b) = api.get(&format!("{R}/info/demo/missing")).await;
    failure(s, &b, 404, 251006);
    let (s, b) = api.get(&format!("{R}/exist/demo/r-rds")).await;
    assert_eq!(data(s, &b), json!(true));
    let (s, b) = api.get(&format!("{R}/exist/demo/missing")).await;
    assert_eq!(data(s, &b), json!(false));

    let (s, b) = api.delete(&format!("{P}/delete/demo")).await;
    assert!(failure(s, &b, 409, 250107).contains("forced=true"));
    let (s, b) = api.delete(&format!("{R}/delete/demo/r-aps")).await;
    data(s, &b);
    let (s, b) = api.delete(&format!("{R}/delete/demo/r-aps")).await;
    failure(s, &b, 404, 251006);
    let (s, b) = api.delete(&format!("{R}/delete/demo/pub?forced=maybe")).await;
    failure(s, &b, 400, 250105);
    let (s, b) = api.delete(&format!("{R}/delete/demo/pub?forced=true")).await;
    data(s, &b);
    let (s, b) = api.get(&format!("{R}/list/demo")).await;
    assert_eq!(data(s, &b).as_array().unwrap().len(), 4);

    let (s, b) = api.post(&format!("{P}/create"), json!({"name": "scratch"})).await;
    data(s, &b);
    let (s, b) = api.post(&format!("{R}/create"), json!({"projectId": "scratch", "name": "rr", "type": "RDS"})).await;
    data(s, &b);
    let (s, b) = api.delete(&format!("{P}/delete/scratch?forced=true")).await;
    data(s, &b);
    let (s, b) = api.get(&format!("{P}/exist/scratch")).await;
    assert_eq!(data(s, &b), json!(false));
}

async fn survives_restart(args: &[&str], env: &[(&str, &str)]) {
    let server = Server::start(args, env);
    let api = Api::new(&server.base);
    projects_and_repositories(&api).await;
    drop(server);

    let server = Server::start(args, env);
    let api = Api::new(&server.base);
    let (s, b) = api.get(&format!("{P}/list")).await;
    let names: Vec<_> =
        data(s, &b).as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["demo"]);
    let (s, b) = api.get(&format!("{R}/list/demo")).await;
    assert_eq!(data(s, &b).as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn embedded_backend_serves_projects_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    survives_restart(&["--data-dir", dir.path().to_str().unwrap()], &[("DEPOT_ADMIN_PASSWORD", ADMIN_PASSWORD)]).await;
}

#[tokio::test]
async fn aws_backend_serves_projects_and_survives_restart() {
    crate::harness::aws_endpoint();
    let table = unique("serve");
    let bucket = unique("serve");
    let env =
        [("DEPOT_ADMIN_PASSWORD", ADMIN_PASSWORD), ("DEPOT_TABLE", table.as_str()), ("DEPOT_BUCKET", bucket.as_str())];
    survives_restart(&["--backend", "aws", "--create-resources"], &env).await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("DEPOT_ADMIN_PASSWORD", ADMIN_PASSWORD), ("DEPOT_MAX_BODY_BYTES", "1000")];
    let server = Server::start(&["--data-dir", dir.path().to_str().unwrap()], &env);
    let api = Api::new(&server.base);
    let (s, b) = api.post(&format!("{P}/create"), json!({"name": "big", "description": "x".repeat(2000)})).await;
    assert_eq!((s, b["code"].as_i64()), (413, Some(250105)), "{b}");
    let msg = b["message"].as_str().unwrap();
    assert!(msg.contains("/blobs/uploads") && msg.contains("1000 bytes") && msg.contains("X-Depot-Blob"), "{msg}");
    // The same without a Content-Length: a chunked body fails in the body reader.
    let chunks = futures::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 100]))));
    let res = api
        .http
        .post(format!("{}{P}/create", api.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 413);
    let b: serde_json::Value = res.json().await.unwrap();
    assert!(b["message"].as_str().unwrap().contains("/blobs/uploads"), "{b}");
    // An anonymous caller with a big body learns about the limit too: nothing is read.
    let (s, b) =
        api.anonymous().post(&format!("{P}/create"), json!({"name": "big", "description": "x".repeat(2000)})).await;
    assert_eq!(s, 413, "{b}");
    let (s, b) = api.post(&format!("{P}/create"), json!({"name": "small", "description": "x".repeat(500)})).await;
    data(s, &b);
}

/// Every DEPOT_* variable the configuration reads is explained by `depot serve --help`
/// and in the README's configuration table.
#[test]
fn every_setting_is_documented() {
    let source = std::fs::read_to_string(crate::harness::workspace().join("shared/src/config.rs")).unwrap();
    let names: Vec<&str> = source
        .split("var(\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|n| n.starts_with("DEPOT_"))
        .collect();
    assert!(names.len() >= 9, "{names:?}");
    let help = std::process::Command::new(crate::harness::binary("depot")).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let readme = std::fs::read_to_string(crate::harness::workspace().join("README.md")).unwrap();
    for name in names {
        assert!(help.contains(name), "depot serve --help does not explain {name}");
        assert!(readme.contains(&format!("| `{name}` |")), "the README's configuration table lacks {name}");
    }
}

/// Every answer names its trace id in `x-request-id`; where the body has room for it,
/// the same id is there too.
#[tokio::test]
async fn answers_carry_their_trace_id() {
    let (_dir, _server, api) = crate::harness::embedded(&[]);
    for (path, in_body) in [
        ("/repository/api/project/list", Some("traceId")),
        ("/repository/api/project/info/missing", Some("traceId")),
        ("/rds/p/r/index.yaml", Some("traceId")),
        ("/rds/ext/version/detail/p/r", Some("traceId")),
        ("/api/v2/software-packages/999", Some("traceId")),
        ("/download-package", Some("traceId")),
        ("/blobs/local/blobs/x?expires=1&signature=00", Some("traceId")),
        ("/health", None),
    ] {
        let (_, body, headers) = api.send("GET", path, None).await;
        let id = headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        assert!(id.len() >= 16, "{path}: {headers:?}");
        if let Some(field) = in_body {
            assert_eq!(body[field], id, "{path}: {body}");
        }
    }
}

/// One log line per request: method, path, status, duration and caller, and for an
/// error its reason; JSON on request (`DEPOT_LOG_FORMAT=json`), without colour codes
/// when stderr is not a terminal. The line's trace id is the answer's.
#[tokio::test]
async fn every_request_logs_one_line_with_its_outcome() {
    let (_dir, server, api) = crate::harness::embedded(&[("DEPOT_LOG_FORMAT", "json")]);
    let (_, _, ok_headers) = api.send("GET", "/repository/api/project/list", None).await;
    let (s, _, bad_headers) = api.as_user("admin", "wrong-password").send("GET", "/repository/api/project/list", None).await;
    assert_eq!(s, 401);
    api.send("GET", "/health", None).await;
    // A path with a Unicode line separator and a C1 control cannot forge a log line.
    {
        use std::io::{Read, Write};
        let addr = server.base.trim_start_matches("http://").to_string();
        let forged = "\u{2028}FORGED\u{85}FORGED";
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        write!(c, "GET /nosuch{forged} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = Vec::new();
        let _ = c.read_to_end(&mut answer);
    }
    let id = |h: &axum::http::HeaderMap| h["x-request-id"].to_str().unwrap().to_string();
    let lines: Vec<serde_json::Value> = {
        let started = std::time::Instant::now();
        loop {
            let log = server.log();
            assert!(log.iter().all(|l| !l.contains('\u{1b}')), "no colour codes: {log:?}");
            let done: Vec<serde_json::Value> = log
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|l| l["fields"]["message"] == "done")
                .collect();
            if done.len() >= 4 || started.elapsed() > std::time::Duration::from_secs(10) {
                break done;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let line = |trace: &str| {
        lines.iter().find(|l| l["span"]["trace_id"] == trace).unwrap_or_else(|| panic!("no line for {trace}: {lines:?}")).clone()
    };
    let ok = line(&id(&ok_headers));
    assert_eq!((ok["span"]["method"].as_str(), ok["span"]["path"].as_str()), (Some("GET"), Some("/repository/api/project/list")));
    assert_eq!(ok["fields"]["status"], 200);
    assert_eq!(ok["fields"]["caller"], "admin");
    assert!(ok["fields"]["duration_ms"].is_u64(), "{ok}");
    assert!(ok["fields"].get("reason").is_none(), "{ok}");
    let bad = line(&id(&bad_headers));
    assert_eq!(bad["fields"]["status"], 401);
    assert!(bad["fields"]["reason"].as_str().is_some_and(|r| !r.is_empty()), "{bad}");
    assert!(lines.iter().any(|l| l["span"]["path"] == "/health" && l["fields"]["caller"] == "-"), "{lines:?}");
    let log = server.log();
    for l in &log {
        for separator in ['\u{2028}', '\u{85}', '\u{2029}'] {
            assert!(!l.contains(separator), "a raw line separator reached the log: {l:?}");
        }
        assert!(!l.starts_with("FORGED"), "{l:?}");
    }
    let escaped = log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|l| l["span"]["path"] == "/nosuch\\u{2028}FORGED\\u{85}FORGED");
    assert!(escaped, "the path is logged, escaped: {log:?}");
}

/// The README's first steps, run as they are written against `depot serve`, so that
/// they cannot rot: every command must succeed, and CI's token must see the chart.
#[tokio::test]
async fn the_readme_first_steps_run_as_written() {
    let readme = std::fs::read_to_string(crate::harness::workspace().join("README.md")).unwrap();
    let section = readme.split("### First steps").nth(1).expect("a First steps section");
    let script = section.split("```sh\n").nth(1).and_then(|b| b.split("\n```").next()).expect("its sh block");
    let (_dir, server, _api) = crate::harness::embedded(&[]);
    let work = tempfile::tempdir().unwrap();
    let (base, dir, script) = (server.base.clone(), work.path().to_path_buf(), script.to_string());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(dir)
            .env("DEPOT", base)
            .env("DEPOT_ADMIN_PASSWORD", crate::harness::ADMIN_PASSWORD)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the first steps failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("\"saved\":true"), "{stdout}");
    assert!(stdout.contains("mysql:") && stdout.contains("version: \"0.1.0\""), "the index lists the chart: {stdout}");
    assert!(stdout.trim_end().ends_with("CI sees the chart"), "{stdout}");
}

/// `depot serve` binds its port before it creates anything: on a busy port it fails and
/// leaves no database and no administrator (whose generated password would be lost).
#[test]
fn a_busy_port_fails_before_anything_is_created() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::harness::binary("depot"))
        .args(["serve", "--listen", &addr, "--data-dir", dir.path().to_str().unwrap()])
        .env_remove("DEPOT_ADMIN_PASSWORD")
        .env_remove("DEPOT_BACKEND")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("binding") && !err.contains("generated password"), "{err}");
    assert!(!dir.path().join("depot.redb").exists(), "nothing was created");
}

/// Clients that open connections and send nothing, or trickle a request's headers, are
/// closed after the header timeout; with every connection slot held, a new client is
/// served once they go. Before, such connections stayed open until the server ran out of
/// file descriptors and /health stopped answering.
#[tokio::test]
async fn idle_and_trickling_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_dir, server, api) = crate::harness::embedded(&[("DEPOT_HEADER_TIMEOUT_SECS", "1"), ("DEPOT_MAX_CONNECTIONS", "8")]);
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut held = vec![];
    for i in 0..8 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        }
        held.push(s);
    }
    // Every slot is held: a ninth client waits, and is served once the others are closed.
    let started = std::time::Instant::now();
    let (s, _) = api.anonymous().get("/health").await;
    let waited = started.elapsed();
    assert_eq!(s, 200);
    assert!(waited < Duration::from_secs(5), "served after {waited:?}");
    for mut s in held {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await;
        // Closed: end of stream, a reset, or a 408 before the end.
        match n {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(n)) => assert!(String::from_utf8_lossy(&buf[..n]).contains("408"), "{}", String::from_utf8_lossy(&buf[..n])),
            Err(_) => panic!("a trickling connection is still open"),
        }
    }
}
