//! Upload sessions and downloads through `depot serve`: signed local routes on the
//! embedded backend, real presigned S3 URLs on moto, the proxy mode, and a 100 MB upload
//! with the server's peak memory measured.
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::harness::{data, embedded, failure, Api, ADMIN_PASSWORD};

const UP: &str = "/blobs/uploads";

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Deterministic bytes that do not compress to nothing.
pub fn payload(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A client that does not follow redirects, to look at them.
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

pub async fn setup_repo(api: &Api, project: &str, repo: &str) {
    let (s, b) = api.post("/repository/api/project/create", json!({"name": project})).await;
    data(s, &b);
    let (s, b) =
        api.post("/repository/api/repo/create", json!({"projectId": project, "name": repo, "type": "GENERIC"})).await;
    data(s, &b);
}

pub async fn open(api: &Api, project: &str, repo: &str, size: usize, sha: Option<&str>) -> Value {
    let (s, b) = api.post(UP, json!({"projectId": project, "repoName": repo, "size": size, "sha256": sha})).await;
    data(s, &b)
}

async fn put_etag(http: &reqwest::Client, url: &str, bytes: Vec<u8>) -> (u16, Option<String>) {
    let res = http.put(url).header("content-type", "application/octet-stream").body(bytes).send().await.unwrap();
    let status = res.status().as_u16();
    let etag = res.headers().get("etag").map(|e| e.to_str().unwrap().to_string());
    assert!(status == 200 || status == 403, "PUT {url}: {status} {}", res.text().await.unwrap());
    (status, etag)
}

/// A PUT of other bytes to a session's URL: its status and JSON answer.
async fn stale_put(url: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .put(url)
        .header("content-type", "application/octet-stream")
        .body(b"forged bytes".to_vec())
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn put(http: &reqwest::Client, url: &str, bytes: Vec<u8>) -> u16 {
    put_etag(http, url, bytes).await.0
}

/// Sends the bytes where the session says: one PUT, or one PUT per part. Returns the
/// parts' `{partNumber, etag}` for the completion, as S3 clients do.
pub async fn send_bytes(session: &Value, bytes: &[u8]) -> Value {
    let http = reqwest::Client::new();
    if let Some(url) = session["url"].as_str() {
        assert_eq!(put(&http, url, bytes.to_vec()).await, 200);
        return Value::Null;
    }
    let part = session["partSize"].as_u64().unwrap() as usize;
    let parts = session["parts"].as_array().unwrap();
    assert_eq!(parts.len(), bytes.len().div_ceil(part), "{session}");
    let mut etags = Vec::new();
    for p in parts {
        let n = p["partNumber"].as_u64().unwrap() as usize;
        let chunk = bytes[(n - 1) * part..(n * part).min(bytes.len())].to_vec();
        assert_eq!(p["size"].as_u64(), Some(chunk.len() as u64), "each URL names the bytes it takes");
        let (status, etag) = put_etag(&http, p["url"].as_str().unwrap(), chunk).await;
        assert_eq!(status, 200);
        etags.push(json!({"partNumber": n, "etag": etag.expect("an ETag")}));
    }
    Value::Array(etags)
}

pub async fn complete(api: &Api, id: &str, sha: Option<&str>) -> (u16, Value) {
    complete_parts(api, id, sha, Value::Null).await
}

pub async fn complete_parts(api: &Api, id: &str, sha: Option<&str>, parts: Value) -> (u16, Value) {
    api.post(&format!("{UP}/{id}/complete"), json!({ "sha256": sha, "parts": parts })).await
}

/// Opens, sends and completes a session; returns the completion's data.
pub async fn upload(api: &Api, project: &str, repo: &str, bytes: &[u8]) -> Value {
    let sha = sha256_hex(bytes);
    let session = open(api, project, repo, bytes.len(), Some(&sha)).await;
    let parts = send_bytes(&session, bytes).await;
    let (s, b) = complete_parts(api, session["id"].as_str().unwrap(), None, parts).await;
    let done = data(s, &b);
    assert_eq!(done["digest"], format!("sha256:{sha}"));
    assert_eq!(done["size"], bytes.len());
    json!({ "session": session, "done": done })
}

/// GETs `url` as admin, expects a 302 and returns its `Location`.
pub async fn redirect_location(url: &str) -> String {
    let res = no_redirects().get(url).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 302, "{url}");
    res.headers()["location"].to_str().unwrap().to_string()
}

/// Asks for a completed session's bytes as admin and returns the 302's `Location`.
pub async fn content_redirect(base: &str, id: &str, filename: &str) -> String {
    redirect_location(&format!("{base}{UP}/{id}/content?filename={filename}")).await
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    q.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
}

/// Every blob a file of its own, for the tests that look at the data directory while the
/// server runs (the store's rows are checked through the port, in the conformance suite).
pub const FILES_ONLY: (&str, &str) = ("DEPOT_INLINE_BLOB_BYTES", "0");

#[tokio::test]
async fn sessions_verify_size_and_sha256_on_the_server() {
    let (dir, server, api) = embedded(&[FILES_ONLY]);
    setup_repo(&api, "up", "files").await;
    let bytes = b"hello depot".to_vec();
    let sha = sha256_hex(&bytes);

    let session = open(&api, "up", "files", bytes.len(), None).await;
    let id = session["id"].as_str().unwrap().to_string();
    let url = session["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/blobs/local/uploads/", server.base)), "{session}");
    assert_eq!((session["state"].as_str(), session["parts"].as_array().map(Vec::len)), (Some("OPEN"), Some(0)));
    // Completing before the bytes arrive is a 400 that keeps the session.
    let (s, b) = complete(&api, &id, Some(&sha)).await;
    assert!(failure(s, &b, 400, 250105).contains("no bytes"));
    // Without a declared sha256 there is nothing to verify against.
    send_bytes(&session, &bytes).await;
    let (s, b) = complete(&api, &id, None).await;
    assert!(failure(s, &b, 400, 250105).contains("[sha256]"));
    // Malformed completion bodies are 400s that keep the session.
    let (s, b) = api.raw("POST", &format!("{UP}/{id}/complete"), "application/json", "{not json").await;
    failure(s, &b, 400, 250105);
    let (s, b) = complete_parts(&api, &id, Some(&sha), json!("parts")).await;
    failure(s, &b, 400, 250105);
    let (s, b) = complete(&api, &id, Some("sha256:zz")).await;
    failure(s, &b, 400, 250105);
    let (s, b) = complete(&api, &id, Some(&format!("sha256:{sha}"))).await;
    let done = data(s, &b);
    assert_eq!(done["digest"], format!("sha256:{sha}"));
    assert_eq!(done["md5"].as_str().unwrap().len(), 32);
    assert_eq!(done["sha1"].as_str().unwrap().len(), 40);
    // Completing again answers the same blob.
    let (s, b) = complete(&api, &id, None).await;
    assert_eq!(data(s, &b)["digest"], done["digest"]);
    let (s, b) = api.get(&format!("{UP}/{id}")).await;
    let info = data(s, &b);
    assert_eq!((info["state"].as_str(), info["digest"].as_str()), (Some("COMPLETE"), done["digest"].as_str()));
    let stored = dir.path().join(format!("blobs/blobs/sha256/{}/{}/{sha}", &sha[..2], &sha[2..4]));
    assert_eq!(std::fs::read(&stored).unwrap(), bytes, "the blob sits at its content address");
    assert!(!dir.path().join(format!("blobs/uploads/{id}")).exists(), "the staging copy is gone");
    // The session's URL takes nothing once the session is complete.
    let (s, refusal) = stale_put(url).await;
    assert_eq!(s, 409, "{refusal}");
    assert!(refusal["error"].as_str().unwrap().contains("not open"), "{refusal}");
    assert!(!dir.path().join(format!("blobs/uploads/{id}")).exists(), "a stale URL stores nothing");
    assert_eq!(std::fs::read(&stored).unwrap(), bytes, "the blob is untouched");

    // A sha256 mismatch is a 400 and keeps nothing.
    let liar = open(&api, "up", "files", 5, Some(&"0".repeat(64))).await;
    let liar_id = liar["id"].as_str().unwrap();
    send_bytes(&liar, b"12345").await;
    let (s, b) = complete(&api, liar_id, None).await;
    assert!(failure(s, &b, 400, 250105).contains("sha256 mismatch"));
    let (s, b) = api.get(&format!("{UP}/{liar_id}")).await;
    failure(s, &b, 404, 250108);
    let real = sha256_hex(b"12345");
    assert!(!dir.path().join(format!("blobs/uploads/{liar_id}")).exists());
    assert!(!dir.path().join(format!("blobs/blobs/sha256/{}/{}/{real}", &real[..2], &real[2..4])).exists());
    // More bytes than declared: the URL itself refuses them, and keeps nothing.
    let short = open(&api, "up", "files", 5, Some(&real)).await;
    let res = reqwest::Client::new().put(short["url"].as_str().unwrap()).body(b"123456".to_vec()).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 413);
    let (s, b) = complete(&api, short["id"].as_str().unwrap(), None).await;
    assert!(failure(s, &b, 400, 250105).contains("no bytes"));
    // A sha256 at completion that contradicts the one declared at opening.
    let twice = open(&api, "up", "files", 5, Some(&real)).await;
    let (s, b) = complete(&api, twice["id"].as_str().unwrap(), Some(&"1".repeat(64))).await;
    assert!(failure(s, &b, 400, 250105).contains("differs"));
    // Aborting drops the session, and its URL takes nothing from then on.
    let (s, b) = api.delete(&format!("{UP}/{}", twice["id"].as_str().unwrap())).await;
    data(s, &b);
    assert_eq!(stale_put(twice["url"].as_str().unwrap()).await.0, 409);
    assert!(!dir.path().join(format!("blobs/uploads/{}", twice["id"].as_str().unwrap())).exists());
    let (s, b) = api.get(&format!("{UP}/{}", twice["id"].as_str().unwrap())).await;
    failure(s, &b, 404, 250108);

    // Bad requests to open a session.
    for (body, status, code) in [
        (json!({"projectId": "up", "repoName": "files"}), 400, 250103),
        (json!({"projectId": "up", "repoName": "files", "size": -1}), 400, 250105),
        (json!({"projectId": "up", "repoName": "files", "size": 1, "sha256": "xyz"}), 400, 250105),
        // A missing repository is bkrepo's 251006 on every route (one error model).
        (json!({"projectId": "up", "repoName": "nope", "size": 1}), 404, 251006),
        (json!({"projectId": "up", "repoName": "../x", "size": 1}), 400, 250105),
        (json!({"projectId": "up", "repoName": "files", "size": 6u64 << 30}), 413, 250105),
    ] {
        let (s, b) = api.post(UP, body.clone()).await;
        assert_eq!((s, b["code"].as_i64()), (status, Some(code)), "{body}: {b}");
    }
    for bad in ["nope", "0123456789abcdef0123456789abcdef", "..%2F..%2Fetc"] {
        let (s, b) = api.get(&format!("{UP}/{bad}")).await;
        failure(s, &b, 404, 250108);
    }

    // Downloads answer 302 to a signed local URL that expires within 15 minutes.
    let http = no_redirects();
    let location = content_redirect(&server.base, &id, "hello.txt").await;
    assert!(location.starts_with(&format!("{}/blobs/local/blobs/sha256/", server.base)), "{location}");
    let expires: u64 = query_param(&location, "expires").unwrap().parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(expires > now && expires <= now + 900, "expires in {}s", expires - now);
    let res = http.get(&location).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let cd = res.headers()["content-disposition"].to_str().unwrap().to_string();
    assert!(cd.contains("hello.txt"), "{cd}");
    assert_eq!(res.bytes().await.unwrap().to_vec(), bytes);
    let res = http.get(&location).header("range", "bytes=6-").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 206);
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"depot");
    // An end past the size reads to the end; a Range of a form not served (a suffix,
    // several ranges, not a range) is ignored: the whole file (found by an attack).
    let res = http.get(&location).header("range", "bytes=6-99999999999999999999999").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 206);
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"depot");
    for range in ["bytes=-5", "bytes=0-1,3-4", "items=0-1", "bytes=x-"] {
        let res = http.get(&location).header("range", range).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200, "{range}");
        assert_eq!(res.bytes().await.unwrap().to_vec(), bytes, "{range}");
    }
    // Past the end: 416 with the size, as S3 answers it.
    for range in [format!("bytes={}-", bytes.len()), "bytes=5-2".to_string()] {
        let res = http.get(&location).header("range", &range).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 416, "{range}");
        assert_eq!(res.headers()["content-range"], format!("bytes */{}", bytes.len()).as_str());
    }
    let (s, b) = api.get(&format!("{UP}/{id}/content?filename=..%2Fx")).await;
    failure(s, &b, 400, 250105);

    // A tampered URL is refused: signature, expiry, key, filename or method changed.
    let sig = query_param(&location, "signature").unwrap();
    let flipped = format!("{}{}", if sig.starts_with('0') { "1" } else { "0" }, &sig[1..]);
    let tampered = [
        location.replace(&sig, &flipped),
        location.replace(&format!("expires={expires}"), &format!("expires={}", expires + 3600)),
        location.replace("filename=hello.txt", "filename=other.txt"),
        location.replace(&sha[..8], &"f".repeat(8)),
        location.split('?').next().unwrap().to_string(),
    ];
    for url in &tampered {
        let res = http.get(url).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 403, "{url}");
    }
    assert_eq!(put(&http, &location, b"overwrite".to_vec()).await, 403, "a GET URL does not allow PUT");
    // Hostile keys on the local route: refused before anything is read or written.
    for path in [
        "/blobs/local/..%2F..%2Fetc%2Fpasswd?expires=1&signature=00",
        "/blobs/local/a/../../x?expires=1&signature=zz",
        "/blobs/local/.signing-key",
    ] {
        let res = http.get(format!("{}{path}", server.base)).send().await.unwrap();
        let status = res.status().as_u16();
        assert!(status == 403 || status == 400 || status == 404, "{path}: {status}");
    }
    // An expired URL is refused: sign one that expires now, with the server's own key.
    let signer = depot_core::store::UrlSigner::load_or_create(&dir.path().join("blobs/.signing-key")).unwrap();
    let key = format!("blobs/sha256/{}/{}/{sha}", &sha[..2], &sha[2..4]);
    let fresh = format!("{}{}", server.base, signer.url("GET", &key, Duration::ZERO, None));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let res = http.get(&fresh).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 403);
    assert!(res.text().await.unwrap().contains("expired"));
    let valid = format!("{}{}", server.base, signer.url("GET", &key, Duration::from_secs(60), None));
    assert_eq!(http.get(&valid).send().await.unwrap().status().as_u16(), 200, "the same key signs valid URLs");
}

/// DEPOT_MAX_SESSION_BYTES caps sessions with a clear 413 at opening, before any byte
/// is sent; a value over S3's 5 GiB single-copy limit keeps depot from starting.
#[tokio::test]
async fn a_deployment_caps_session_size() {
    let (_dir, _server, api) = embedded(&[("DEPOT_MAX_SESSION_BYTES", "300000")]);
    setup_repo(&api, "cap", "files").await;
    let (s, b) = api.post(UP, json!({"projectId": "cap", "repoName": "files", "size": 300_001})).await;
    assert!(failure(s, &b, 413, 250105).contains("at most 300000 bytes"), "{b}");
    upload(&api, "cap", "files", &payload(300_000, 3)).await;

    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::harness::binary("depot"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.path().to_str().unwrap()])
        .env("DEPOT_MAX_SESSION_BYTES", "6000000000")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DEPOT_MAX_SESSION_BYTES must be a number from 1 to 5368709120"), "{err}");
}

/// DEPOT_INLINE_BLOB_BYTES takes 0 to 1 MiB (what a put holds before it streams); any
/// other value keeps depot from starting, saying so.
#[test]
fn a_bad_inline_blob_limit_is_refused_at_start() {
    for bad in ["1048577", "-1", "abc", "1e3", "99999999999999999999999"] {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(crate::harness::binary("depot"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.path().to_str().unwrap()])
            .env("DEPOT_INLINE_BLOB_BYTES", bad)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("DEPOT_INLINE_BLOB_BYTES must be a number from 0 to 1048576, not '{bad}'")), "{err}");
    }
}

#[tokio::test]
async fn proxy_mode_streams_downloads() {
    let (_dir, server, api) = embedded(&[("DEPOT_DOWNLOAD_MODE", "proxy")]);
    setup_repo(&api, "px", "files").await;
    let bytes = payload(300_000, 7);
    let up = upload(&api, "px", "files", &bytes).await;
    let id = up["session"]["id"].as_str().unwrap();
    let res = no_redirects()
        .get(format!("{}{UP}/{id}/content?filename=big.bin", server.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers()["content-disposition"].to_str().unwrap().contains("big.bin"));
    assert_eq!(res.headers()["content-length"], "300000");
    assert_eq!(res.bytes().await.unwrap().to_vec(), bytes);
    let res = no_redirects()
        .get(format!("{}{UP}/{id}/content", server.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 206);
    assert_eq!(res.headers()["content-range"], "bytes 10-19/300000");
    assert_eq!(res.bytes().await.unwrap().to_vec(), bytes[10..20].to_vec());
}

#[tokio::test]
async fn a_hundred_megabytes_through_a_session() {
    let (dir, server, api) = embedded(&[FILES_ONLY]);
    setup_repo(&api, "big", "files").await;
    let bytes = payload(100_000_000, 42);
    let sha = sha256_hex(&bytes);
    let session = open(&api, "big", "files", bytes.len(), Some(&sha)).await;
    assert_eq!(session["parts"].as_array().unwrap().len(), 6, "16 MiB parts");
    let before = server.peak_rss();
    let base = server.rss();
    server.reset_peak_rss();
    let started = Instant::now();
    // No part list: the server joins the parts it received.
    send_bytes(&session, &bytes).await;
    let sent = started.elapsed();
    let (s, b) = complete(&api, session["id"].as_str().unwrap(), None).await;
    let done = data(s, &b);
    let total = started.elapsed();
    let peak = server.peak_rss();
    assert_eq!(done["digest"], format!("sha256:{sha}"));
    let stored = dir.path().join(format!("blobs/blobs/sha256/{}/{}/{sha}", &sha[..2], &sha[2..4]));
    assert_eq!(std::fs::metadata(&stored).unwrap().len(), 100_000_000);
    eprintln!(
        "100 MB session upload (embedded): parts sent in {sent:?}, completed (verify + move) in {:?}; \
         server peak RSS {:.1} MiB during the upload (peak before it {:.1} MiB)",
        total - sent,
        peak as f64 / 1048576.0,
        before as f64 / 1048576.0
    );
    assert!(peak - base < 64 * 1024 * 1024, "the server streams: peak RSS {peak} bytes, {base} before");
}

#[tokio::test]
async fn aws_backend_uploads_through_presigned_s3_urls() {
    let endpoint = crate::harness::aws_endpoint();
    let (server, bucket) = crate::harness::aws_server("up", &[]);
    let api = Api::new(&server.base);
    setup_repo(&api, "s3", "files").await;

    // One presigned PUT, straight to S3.
    let small = payload(1000, 1);
    let up = upload(&api, "s3", "files", &small).await;
    let url = up["session"]["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{endpoint}/{bucket}/uploads/")), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");

    // Multipart: 40 MiB in 16 MiB parts, each to its presigned UploadPart URL.
    let big = payload(40 << 20, 2);
    let sha = sha256_hex(&big);
    let session = open(&api, "s3", "files", big.len(), Some(&sha)).await;
    assert_eq!(session["parts"].as_array().unwrap().len(), 3);
    assert!(session["parts"][0]["url"].as_str().unwrap().contains("uploadId="), "{session}");
    server.reset_peak_rss();
    let parts = send_bytes(&session, &big).await;
    let (s, b) = complete_parts(&api, session["id"].as_str().unwrap(), None, parts).await;
    assert_eq!(data(s, &b)["digest"], format!("sha256:{sha}"));
    eprintln!("40 MiB multipart session on moto: server peak RSS {:.1} MiB", server.peak_rss() as f64 / 1048576.0);

    // A mismatch on S3 keeps nothing either.
    let liar = open(&api, "s3", "files", 1000, Some(&"0".repeat(64))).await;
    send_bytes(&liar, &small).await;
    let (s, b) = complete(&api, liar["id"].as_str().unwrap(), None).await;
    assert!(failure(s, &b, 400, 250105).contains("sha256 mismatch"));
    let sdk = depot_core::http::sdk_config().await;
    let blobs = depot_core::store::s3::S3BlobStore::new(&sdk, &bucket);
    let staging = format!("uploads/{}", liar["id"].as_str().unwrap());
    assert_eq!(depot_core::store::BlobStore::head(&blobs, &staging).await.unwrap(), None);

    // The download is a 302 to a presigned S3 GET that expires within 15 minutes.
    let location = content_redirect(&server.base, session["id"].as_str().unwrap(), "big.bin").await;
    assert!(location.starts_with(&format!("{endpoint}/{bucket}/blobs/sha256/")), "{location}");
    let expires: u64 = query_param(&location, "X-Amz-Expires").unwrap().parse().unwrap();
    assert!(expires <= 900, "{location}");
    assert!(query_param(&location, "response-content-disposition").unwrap().contains("big.bin"), "{location}");
    let res = reqwest::get(&location).await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers()["content-disposition"].to_str().unwrap().contains("big.bin"));
    let got = res.bytes().await.unwrap();
    assert_eq!(sha256_hex(&got), sha);
}

/// Polls a session that is being verified until it is not: its last view.
pub async fn poll_session(api: &Api, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let (s, b) = api.get(&format!("{UP}/{id}")).await;
        let session = data(s, &b);
        if session["state"] != "VERIFYING" {
            return session;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "still verifying: {session}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sessions over `DEPOT_VERIFY_INLINE_BYTES` complete off the request path: 202 with the
/// session `VERIFYING`, `Location` and `Retry-After`, then `COMPLETE` when polled (or
/// `FAILED`, with the reason, which a completion repeats as a 400). A multipart session
/// on S3 is joined and hashed where no URL writes.
#[tokio::test]
async fn large_sessions_verify_off_the_request_path() {
    let (server, _bucket) = crate::harness::aws_server("verify", &[("DEPOT_VERIFY_INLINE_BYTES", "1048576")]);
    let api = Api::new(&server.base);
    setup_repo(&api, "big", "files").await;

    let big = payload(40 << 20, 7);
    let sha = sha256_hex(&big);
    let session = open(&api, "big", "files", big.len(), Some(&sha)).await;
    let id = session["id"].as_str().unwrap().to_string();
    assert_eq!(session["sessionUrl"], format!("{}{UP}/{id}", server.base), "absolute URLs: {session}");
    assert_eq!(session["completeUrl"], format!("{}{UP}/{id}/complete", server.base));
    let parts = send_bytes(&session, &big).await;
    let res = api
        .http
        .post(format!("{}{UP}/{id}/complete", server.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&json!({ "parts": parts }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    assert_eq!(res.headers()["location"].to_str().unwrap(), format!("{}{UP}/{id}", server.base));
    assert!(res.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"]["state"], "VERIFYING", "{body}");
    let done = poll_session(&api, &id).await;
    assert_eq!(done["state"], "COMPLETE", "{done}");
    assert_eq!(done["digest"], format!("sha256:{sha}"));
    let (s, b) = complete(&api, &id, None).await;
    assert_eq!(data(s, &b)["sha256"], sha, "completing a verified session answers its blob");
    let location = content_redirect(&server.base, &id, "big.bin").await;
    let got = reqwest::get(&location).await.unwrap().bytes().await.unwrap();
    assert_eq!(sha256_hex(&got), sha, "the bytes downloaded are the bytes verified");

    // A single PUT over the limit, with bytes that are not what was declared.
    let small = payload(2 << 20, 8);
    let liar = open(&api, "big", "files", small.len(), Some(&"1".repeat(64))).await;
    let liar_id = liar["id"].as_str().unwrap();
    send_bytes(&liar, &small).await;
    let (s, b) = complete(&api, liar_id, None).await;
    assert_eq!(s, 202, "{b}");
    let failed = poll_session(&api, liar_id).await;
    assert_eq!(failed["state"], "FAILED", "{failed}");
    assert!(failed["failure"].as_str().unwrap().contains("sha256 mismatch"), "{failed}");
    let (s, b) = complete(&api, liar_id, None).await;
    assert!(failure(s, &b, 400, 250105).contains("sha256 mismatch"));
}

/// A PUT still streaming to a session's URL when the session is completed stores
/// nothing (409) and changes nothing that the completion stored.
#[tokio::test]
async fn a_put_streaming_while_its_session_completes_stores_nothing() {
    use futures::SinkExt;
    let (dir, _server, api) = embedded(&[FILES_ONLY]);
    setup_repo(&api, "late", "files").await;
    let bytes = b"0123456789".to_vec();
    let sha = sha256_hex(&bytes);
    let session = open(&api, "late", "files", bytes.len(), Some(&sha)).await;
    send_bytes(&session, &bytes).await;
    let id = session["id"].as_str().unwrap().to_string();
    let url = session["url"].as_str().unwrap().to_string();
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let slow = tokio::spawn(async move {
        let res = reqwest::Client::new()
            .put(&url)
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(rx))
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    });
    tx.send(Ok(bytes::Bytes::from_static(b"ABCDE"))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s, b) = complete(&api, &id, None).await;
    assert_eq!(data(s, &b)["digest"], format!("sha256:{sha}"));
    tx.send(Ok(bytes::Bytes::from_static(b"FGHIJ"))).await.unwrap();
    drop(tx);
    let (status, text) = slow.await.unwrap();
    assert_eq!(status, 409, "{text}");
    assert!(!dir.path().join(format!("blobs/uploads/{id}")).exists(), "the late bytes are not kept");
    let stored = dir.path().join(format!("blobs/blobs/sha256/{}/{}/{sha}", &sha[..2], &sha[2..4]));
    assert_eq!(std::fs::read(stored).unwrap(), bytes);
}

/// A session's URL takes exactly the bytes the session was opened for: a longer body is
/// refused while it streams (413) and nothing of it stays; a shorter one is a 400 and is
/// removed. A part URL takes exactly its part.
#[tokio::test]
async fn a_session_url_takes_exactly_its_declared_size() {
    let (dir, server, api) = embedded(&[FILES_ONLY]);
    setup_repo(&api, "exact", "files").await;
    let http = reqwest::Client::new();
    let session = open(&api, "exact", "files", 4, None).await;
    let url = session["url"].as_str().unwrap().to_string();
    server.reset_peak_rss();
    // 300 MiB, streamed: the server stops reading at the fifth byte.
    let chunk = bytes::Bytes::from(vec![7u8; 1024 * 1024]);
    let body = futures::stream::iter((0..300).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let res = http.put(&url).body(reqwest::Body::wrap_stream(body)).send().await;
    match res {
        Ok(res) => {
            assert_eq!(res.status().as_u16(), 413);
            let b: Value = res.json().await.unwrap();
            assert!(b["error"].as_str().unwrap().contains("takes 4 bytes"), "{b}");
        }
        // The server may close the connection before the client has sent everything.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    let stored = |dir: &std::path::Path| -> u64 {
        // The signing key and the (here empty) small-blob file aside.
        walk(&dir.join("blobs"))
            .into_iter()
            .filter(|p| !p.ends_with(".signing-key") && !p.ends_with(".small.redb"))
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum()
    };
    assert!(stored(dir.path()) < 1024, "nothing of the long body is kept: {} bytes", stored(dir.path()));
    assert!(server.peak_rss() < 128 * 1024 * 1024, "peak RSS {}", server.peak_rss());
    // Shorter: 400, removed.
    let res = http.put(&url).body(b"abc".to_vec()).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 400);
    assert!(res.text().await.unwrap().contains("exactly 4 bytes"));
    assert_eq!(stored(dir.path()), 0);
    // Exact: stored; a short PUT after it is refused and leaves it as it was; the session
    // completes with it.
    assert_eq!(put(&http, &url, b"abcd".to_vec()).await, 200);
    let res = http.put(&url).body(b"ab".to_vec()).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let (s, b) = complete(&api, session["id"].as_str().unwrap(), Some(&sha256_hex(b"abcd"))).await;
    data(s, &b);
    // A part URL takes its part: the last part of a 33 MiB session is 1 MiB.
    let session = open(&api, "exact", "files", 33 * 1024 * 1024, None).await;
    let last = &session["parts"][2];
    assert_eq!(last["size"].as_u64(), Some(1024 * 1024));
    let res = http.put(last["url"].as_str().unwrap()).body(vec![0u8; 1024 * 1024 + 1]).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 413);
    // A completion lists each part once, and only the session's parts: a part listed many
    // times would be joined as many times.
    let first = &session["parts"][0];
    let (status, etag) = put_etag(&http, first["url"].as_str().unwrap(), vec![1u8; 16 * 1024 * 1024]).await;
    assert_eq!(status, 200);
    let id = session["id"].as_str().unwrap();
    for (parts, want) in [
        (json!([{"partNumber": 1, "etag": etag}, {"partNumber": 1, "etag": etag}]), "more than once"),
        (json!([{"partNumber": 4, "etag": etag}]), "not a part of this session"),
    ] {
        let (s, b) = complete_parts(&api, id, Some(&"0".repeat(64)), parts).await;
        assert!(failure(s, &b, 400, 250105).contains(want), "{b}");
    }
}

/// Every file under `dir`.
pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
