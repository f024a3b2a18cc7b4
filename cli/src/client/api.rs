//! The HTTP side of the client: one `reqwest` client, credentials on every request to
//! depot (never on a presigned URL), and depot's error bodies turned into messages that
//! name the server's reason and trace id.
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use super::config::Credentials;

/// The header that carries a request's trace id; depot takes the client's when it sends one.
const TRACE_HEADER: &str = "x-request-id";

/// A failed call: the HTTP status when there was an answer, the server's message, and
/// the trace id to quote to the operator.
#[derive(Debug)]
pub struct Failure {
    pub status: Option<StatusCode>,
    pub message: String,
    pub trace_id: Option<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        match (self.status, &self.trace_id) {
            (Some(s), Some(t)) => write!(f, " (HTTP {}, trace id {t})", s.as_u16()),
            (Some(s), None) => write!(f, " (HTTP {})", s.as_u16()),
            (None, Some(t)) => write!(f, " (trace id {t})"),
            (None, None) => Ok(()),
        }
    }
}

impl std::error::Error for Failure {}

impl Failure {
    /// Whether trying again may help: no answer at all, a 5xx, or a 429. A 4xx never does.
    pub fn retryable(&self) -> bool {
        match self.status {
            None => true,
            Some(s) => s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// A request that got no usable answer: `what` failed, with reqwest's whole cause.
    pub fn transport(e: reqwest::Error, what: &str) -> Self {
        // reqwest's Display leaves out the cause ("error sending request"); the chain has it.
        let mut message = format!("{what}: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(&format!(": {s}"));
            source = s.source();
        }
        Failure { status: None, message, trace_id: None }
    }
}

/// A client of one depot: its base URL and the credentials it sends there.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub creds: Credentials,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str, creds: Credentials) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            anyhow::bail!("the depot URL must start with http:// or https://, not '{base}'");
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("depot-cli/", env!("CARGO_PKG_VERSION")))
            // Redirects are followed by hand: a presigned URL must not get depot's credentials.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(20))
            .build()?;
        Ok(Api { base, creds, http })
    }

    /// An absolute URL for `path`, or `path` itself when it is absolute already.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// Whether `url` is depot's own (credentials go there) rather than, say, S3's.
    pub fn is_own(&self, url: &str) -> bool {
        url.strip_prefix(&self.base).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// A request to depot, with the credentials and a fresh trace id.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut headers = HeaderMap::new();
        if let Some(v) = self.creds.header() {
            if let Ok(mut v) = HeaderValue::from_str(&v) {
                v.set_sensitive(true);
                headers.insert(AUTHORIZATION, v);
            }
        }
        let trace = uuid::Uuid::new_v4().simple().to_string();
        headers.insert(TRACE_HEADER, HeaderValue::from_str(&trace).expect("hex is a header value"));
        self.http.request(method, self.url(path)).headers(headers)
    }

    /// Sends a request to depot and returns the answer when its status is a success.
    pub async fn send(&self, rb: RequestBuilder, what: &str) -> Result<Response, Failure> {
        let trace = rb
            .try_clone()
            .and_then(|r| r.build().ok())
            .and_then(|r| r.headers().get(TRACE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string));
        let res = rb.send().await.map_err(|e| Failure::transport(e, what))?;
        if res.status().is_success() || res.status().is_redirection() {
            return Ok(res);
        }
        Err(failure_of(res, what, trace).await)
    }

    /// Sends a request to one of bkrepo's routes and returns its envelope's `data`.
    pub async fn data(&self, rb: RequestBuilder, what: &str) -> Result<Value, Failure> {
        let res = self.send(rb, what).await?;
        let status = res.status();
        let body: Value = res.json().await.map_err(|e| Failure::transport(e, what))?;
        match body.get("code").and_then(Value::as_i64) {
            Some(0) | None => Ok(body.get("data").cloned().unwrap_or(Value::Null)),
            Some(code) => Err(Failure {
                status: Some(status),
                message: format!("{what}: {} (code {code})", body["message"].as_str().unwrap_or("failed")),
                trace_id: body["traceId"].as_str().map(str::to_string),
            }),
        }
    }

    pub async fn get_data(&self, path: &str, what: &str) -> Result<Value, Failure> {
        self.data(self.request(Method::GET, path), what).await
    }
}

/// The failure an error answer describes. Each surface has its own error body: bkrepo's
/// envelope `{code, message, traceId}`, RDS `{error, traceId}`, OCP `{error: {code,
/// message}, traceId}`, strux `{message, success, status}`, and plain text (APS: the
/// reason, then the trace id).
pub async fn failure_of(res: Response, what: &str, sent_trace: Option<String>) -> Failure {
    let status = res.status();
    let header_trace = res.headers().get(TRACE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
    let text = res.text().await.unwrap_or_default();
    let (message, trace) = match serde_json::from_str::<Value>(&text) {
        Ok(v) if v.is_object() => {
            let message = v["message"]
                .as_str()
                .or_else(|| v["error"].as_str())
                .or_else(|| v["error"]["message"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| text.trim().to_string());
            (message, v["traceId"].as_str().map(str::to_string))
        }
        _ => {
            let mut lines = text.trim().lines();
            let first = lines.next().unwrap_or("").trim().to_string();
            let trace = lines
                .filter_map(|l| l.trim().strip_prefix("trace id").map(|t| t.trim_matches([':', ' ']).to_string()))
                .next();
            (first, trace)
        }
    };
    let message = if message.is_empty() { status.canonical_reason().unwrap_or("failed").to_string() } else { message };
    let hint = match status {
        StatusCode::UNAUTHORIZED if what.starts_with("creating an API token") => "; check the user and password",
        StatusCode::UNAUTHORIZED => "; check the token (depot login, or DEPOT_TOKEN)",
        _ => "",
    };
    Failure {
        status: Some(status),
        message: format!("{what}: {message}{hint}"),
        trace_id: trace.or(header_trace).or(sent_trace),
    }
}
