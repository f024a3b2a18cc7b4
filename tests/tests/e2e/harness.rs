use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Client, RequestBuilder};
use serde_json::Value;

pub const ADMIN_PASSWORD: &str = "correct-horse-battery";

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A binary built by `cargo build --workspace --bins` (the test command does that first).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: build the binaries first (infra/test.sh does)", path.display());
    path
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Requires the moto endpoint that `infra/test.sh` starts; fails, never skips, without it.
pub fn aws_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .expect("AWS_ENDPOINT_URL is not set: the AWS end-to-end tests need moto; run infra/test.sh")
}

/// A configuration for the AWS backend on moto, with a fresh table and bucket.
pub fn aws_config(prefix: &str) -> depot_core::config::Config {
    aws_endpoint();
    depot_core::config::Config {
        backend: depot_core::config::Backend::Aws,
        table: unique(prefix),
        bucket: unique(prefix),
        ..Default::default()
    }
}

/// A running `depot serve`, killed on drop.
pub struct Server {
    child: Child,
    pub base: String,
    /// Lines the server printed on stderr before it listened.
    pub banner: Vec<String>,
    pub startup: Duration,
    /// Lines the server printed on stderr after it listened.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let started = Instant::now();
        let mut cmd = Command::new(binary("depot"));
        cmd.arg("serve").arg("--listen").arg(&listen).args(args);
        cmd.env_remove("DEPOT_ADMIN_PASSWORD").env_remove("DEPOT_BACKEND").env_remove("DEPOT_DATA_DIR");
        cmd.envs(env.iter().copied()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start depot");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut banner = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    let done = line.contains("listening on");
                    banner.push(line);
                    if done {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("depot exited: {banner:#?}"),
            }
            assert!(Instant::now() < deadline, "depot did not start: {banner:#?}");
        }
        // Keep draining stderr so the server never blocks on a full pipe, and keep it.
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            while let Ok(line) = rx.recv() {
                sink.lock().unwrap().push(line);
            }
        });
        Server { child, base: format!("http://{listen}"), banner, startup: started.elapsed(), log }
    }
}

impl Server {
    /// What the server has logged since it listened.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `KILL`) and waits for the process to end.
    pub fn stop_with(mut self, signal: &str) {
        let _ = Command::new("kill").args([&format!("-{signal}"), &self.pid().to_string()]).status();
        let _ = self.child.wait();
    }

    /// The server's peak resident set so far, in bytes (Linux `VmHWM`).
    pub fn peak_rss(&self) -> u64 {
        self.status_bytes("VmHWM:")
    }

    /// The server's resident set now, in bytes (Linux `VmRSS`): what a test subtracts from
    /// a peak to see how much a request made it grow (the allocator keeps some tens of
    /// MiB resident from the start).
    pub fn rss(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    fn status_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb * 1024
    }

    /// Resets the peak so that the next reading covers only what follows.
    pub fn reset_peak_rss(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `depot serve` on a fresh embedded data directory, with the test admin password and
/// `env`; returns the directory (kept alive), the server and an admin client.
pub fn embedded(env: &[(&str, &str)]) -> (tempfile::TempDir, Server, Api) {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec![("DEPOT_ADMIN_PASSWORD", ADMIN_PASSWORD)];
    all.extend_from_slice(env);
    let server = Server::start(&["--data-dir", dir.path().to_str().unwrap()], &all);
    let api = Api::new(&server.base);
    (dir, server, api)
}

/// `depot serve` on the AWS backend (moto) with a table and a bucket of its own, the test
/// administrator, and `env` on top: (the server, its bucket).
pub fn aws_server(prefix: &str, env: &[(&str, &str)]) -> (Server, String) {
    let (server, _table, bucket) = aws_server_with_table(prefix, env);
    (server, bucket)
}

/// [`aws_server`], answering its table's name too: (the server, its table, its bucket).
pub fn aws_server_with_table(prefix: &str, env: &[(&str, &str)]) -> (Server, String, String) {
    let (table, bucket) = (unique(prefix), unique(prefix));
    let mut all = vec![("DEPOT_ADMIN_PASSWORD", ADMIN_PASSWORD), ("DEPOT_TABLE", table.as_str()), ("DEPOT_BUCKET", bucket.as_str())];
    all.extend_from_slice(env);
    let server = Server::start(&["--backend", "aws", "--create-resources"], &all);
    (server, table, bucket)
}

/// A thin client for envelope-speaking APIs.
#[derive(Clone)]
pub struct Api {
    pub http: Client,
    pub base: String,
    pub auth: Option<(String, String)>,
}

impl Api {
    pub fn new(base: &str) -> Api {
        let http = Client::builder().timeout(Duration::from_secs(300)).build().unwrap();
        Api { http, base: base.to_string(), auth: Some(("admin".into(), ADMIN_PASSWORD.into())) }
    }

    pub fn as_user(&self, user: &str, password: &str) -> Api {
        Api { auth: Some((user.into(), password.into())), ..self.clone() }
    }

    pub fn anonymous(&self) -> Api {
        Api { auth: None, ..self.clone() }
    }

    fn req(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{}", self.base, path));
        match &self.auth {
            Some((u, p)) => r.basic_auth(u, Some(p)),
            None => r,
        }
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value, HeaderMap) {
        let mut r = self.req(method.parse().unwrap(), path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let json =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: not JSON ({status}): {text}"));
        (status, json, headers)
    }

    /// Sends a raw body with a content type.
    pub async fn raw(&self, method: &str, path: &str, content_type: &str, body: &'static str) -> (u16, Value) {
        let res = self
            .req(method.parse().unwrap(), path)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let (s, v, _) = self.send("GET", path, None).await;
        (s, v)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (s, v, _) = self.send("POST", path, Some(body)).await;
        (s, v)
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let (s, v, _) = self.send("DELETE", path, None).await;
        (s, v)
    }
}

/// Asserts a successful bkrepo envelope and returns its data.
pub fn data(status: u16, body: &Value) -> Value {
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], 0, "{body}");
    assert!(body["message"].is_null(), "{body}");
    assert!(body["traceId"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    body["data"].clone()
}

/// Asserts a failed bkrepo envelope with this status and code; returns the message.
pub fn failure(status: u16, body: &Value, want_status: u16, want_code: i64) -> String {
    assert_eq!((status, body["code"].as_i64()), (want_status, Some(want_code)), "{body}");
    let msg = body["message"].as_str().unwrap_or_default().to_string();
    assert!(!msg.is_empty(), "{body}");
    msg
}

/// The base64 of `user:password`, as Basic credentials carry it.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// Sends one request to an in-process router; answers its status and whole body.
pub async fn oneshot(app: &axum::Router, req: axum::http::Request<axum::body::Body>) -> (u16, axum::body::Bytes) {
    use tower::ServiceExt;
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    (status, axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap())
}

/// Every surface on one in-process router, as `depot serve` has them (without its local
/// blob routes).
pub fn surfaces(state: depot_core::http::AppState) -> axum::Router {
    depot_core::http::app(depot_cli::SURFACES, state)
}

/// The state over the configured backend with its table wrapped in a call counter, and
/// the counter: what the cost tests measure through.
pub async fn counted(
    config: depot_core::config::Config,
    create_resources: bool,
) -> (depot_core::http::AppState, std::sync::Arc<depot_core::store::CountingTable>) {
    let stores = depot_core::http::open_stores(&config, create_resources).await.unwrap();
    let counting = depot_core::store::CountingTable::new(stores.table);
    let stores = depot_core::http::Stores { table: counting.clone(), ..stores };
    (depot_core::http::AppState::from_stores(config, stores), counting)
}

/// Every surface in process on a fresh embedded backend with the test administrator,
/// its table counted: (the directory, kept alive; the router; the counter).
pub async fn counted_embedded() -> (tempfile::TempDir, axum::Router, std::sync::Arc<depot_core::store::CountingTable>) {
    let dir = tempfile::tempdir().unwrap();
    let config = depot_core::config::Config {
        data_dir: dir.path().to_path_buf(),
        admin_password: Some(ADMIN_PASSWORD.into()),
        ..Default::default()
    };
    let (state, counting) = counted(config, false).await;
    state.authenticator.bootstrap_admin(false).await.unwrap();
    (dir, surfaces(state), counting)
}

/// A private repository of type `ty`, with every other setting at its default.
pub fn new_repository(project: &str, name: &str, ty: depot_core::model::RepoType) -> depot_core::registry::NewRepository {
    depot_core::registry::NewRepository {
        project_id: project.into(),
        name: name.into(),
        repo_type: ty,
        public: false,
        description: None,
        allow_overwrite: None,
        configuration: None,
    }
}
