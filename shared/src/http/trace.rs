use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

tokio::task_local! {
    static TRACE_ID: String;
    static STARTED: std::time::Instant;
    static NOTES: std::sync::Mutex<Notes>;
}

/// What the request's log line says beyond its method, path and status.
#[derive(Default)]
struct Notes {
    caller: Option<String>,
    reason: Option<String>,
}

fn note(f: impl FnOnce(&mut Notes)) {
    let _ = NOTES.try_with(|n| {
        if let Ok(mut n) = n.lock() {
            f(&mut n)
        }
    });
}

/// Names the authenticated caller in the request's log line.
pub fn note_caller(name: &str) {
    note(|n| n.caller = Some(name.to_string()));
}

/// Gives the reason of an error answer in the request's log line (the whole message,
/// internal details included: the log is the operator's).
pub fn note_reason(reason: &str) {
    note(|n| n.reason = Some(reason.to_string()));
}

/// The header a trace id arrives in (set by the Lambda entry point from the request id).
pub const TRACE_HEADER: &str = "x-request-id";

/// The current request's trace id, or an empty string outside a request.
pub fn trace_id() -> String {
    TRACE_ID.try_with(|t| t.clone()).unwrap_or_default()
}

/// How long the current request has run, in milliseconds (0 outside a request): the
/// `duration` some envelopes carry.
pub fn elapsed_ms() -> u64 {
    STARTED.try_with(|t| t.elapsed().as_millis() as u64).unwrap_or(0)
}

/// Middleware: one span per request, carrying the trace id that envelopes return.
pub async fn trace_layer(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(TRACE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    // The path as the client sent it may hold line separators and C1 controls (U+2028,
    // U+0085): escaped, so that no request can forge a log line.
    let path = req.uri().path().escape_debug().to_string();
    let span = tracing::info_span!("request", trace_id = %id, method = %req.method(), path = %path);
    let started = std::time::Instant::now();
    let header_id = id.clone();
    let notes = NOTES.scope(std::sync::Mutex::default(), async move {
        let mut res = next.run(req).await;
        // One line per request: method, path (the span's), status, duration, caller,
        // and for an error its reason.
        let status = res.status().as_u16();
        let duration_ms = started.elapsed().as_millis() as u64;
        let (caller, reason) = NOTES
            .try_with(|n| n.lock().map(|n| (n.caller.clone(), n.reason.clone())).unwrap_or_default())
            .unwrap_or_default();
        let caller = caller.as_deref().unwrap_or("-");
        match reason.filter(|_| status >= 400) {
            Some(reason) => tracing::info!(status, duration_ms, caller, reason, "done"),
            None => tracing::info!(status, duration_ms, caller, "done"),
        }
        // Every answer names its trace id, so that a client's failure can be matched
        // to the server's log line.
        if let Ok(v) = axum::http::HeaderValue::from_str(&header_id) {
            res.headers_mut().insert(TRACE_HEADER, v);
        }
        res
    });
    TRACE_ID.scope(id.clone(), STARTED.scope(started, notes)).instrument(span).await
}

/// Logs as JSON (on Lambda, or locally with `DEPOT_LOG_FORMAT=json`) or as human-readable
/// lines (locally), without colour codes unless stderr is a terminal. `RUST_LOG` filters, as
/// a level (`debug`) or a list of `target=level` pairs; `info` when unset or unreadable.
/// (A `Targets` filter rather than `EnvFilter`: no regex engine in the Lambda binaries.)
pub fn init_tracing(json: bool) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter: Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let registry = tracing_subscriber::registry().with(filter);
    // Colours only on a terminal (and only where the `ansi` feature is on: `depot`).
    use std::io::IsTerminal;
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    let json = json || std::env::var("DEPOT_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let _ = if json { registry.with(fmt.json().without_time()).try_init() } else { registry.with(fmt).try_init() };
}
