//! Staging a file through an upload session, as every push does: hash it (streaming),
//! open a session that declares its size and sha256, PUT the bytes (one URL, or several
//! parts at once), complete it, and poll while the server verifies a large one. The
//! answer is the staged blob's digest, which the surface's upload route then names in
//! `X-Depot-Blob`.
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG, RETRY_AFTER};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::api::{failure_of, Api, Failure};
use super::progress::Progress;

/// How many times a part (or the single PUT) is sent before the push gives up.
const PUT_ATTEMPTS: u32 = 5;

/// The first wait before a part is sent again; each further one doubles it.
const BACKOFF_MS: u64 = if cfg!(test) { 10 } else { 500 };

/// Options of a push that staging uses.
#[derive(Clone, Copy)]
pub struct StageOptions {
    /// Parts sent at once.
    pub parallel: usize,
    pub quiet: bool,
}

/// The sha256 (hex) and size of a file, read once in 1 MiB blocks.
pub async fn hash_file(path: &Path, quiet: bool) -> anyhow::Result<(String, u64)> {
    let size = tokio::fs::metadata(path).await.with_context(|| format!("reading {}", path.display()))?.len();
    let progress = Progress::new(&format!("hashing {}", display_name(path)), size, quiet || size < (64 << 20));
    let (state, _) = sha256_state(path, &progress).await?;
    progress.finish();
    Ok((hex::encode(state.finalize()), size))
}

/// The sha256 state after the whole of `path`, and how many bytes that was, read in
/// 1 MiB blocks off the async workers (`progress` counts them).
pub async fn sha256_state(path: &Path, progress: &Progress) -> anyhow::Result<(sha2::Sha256, u64)> {
    let (owned, p) = (path.to_path_buf(), progress.clone());
    tokio::task::spawn_blocking(move || -> std::io::Result<(sha2::Sha256, u64)> {
        use std::io::Read;
        let mut f = std::fs::File::open(&owned)?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok((h, total));
            }
            h.update(&buf[..n]);
            total += n as u64;
            p.add(n as u64);
        }
    })
    .await?
    .with_context(|| format!("reading {}", path.display()))
}

pub fn display_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

/// Stages `path` in `project/repo` and returns its digest (`sha256:<hex>`).
pub async fn stage(api: &Api, project: &str, repo: &str, path: &Path, opts: StageOptions) -> anyhow::Result<String> {
    let (sha256, size) = hash_file(path, opts.quiet).await?;
    let opened = api
        .data(
            api.request(Method::POST, "/blobs/uploads")
                .json(&json!({"projectId": project, "repoName": repo, "size": size, "sha256": sha256})),
            "opening an upload session",
        )
        .await?;
    let session_url = opened["sessionUrl"].as_str().context("the session has no sessionUrl")?.to_string();
    match send_and_complete(api, &opened, path, size, opts).await {
        Ok(digest) => {
            if digest != format!("sha256:{sha256}") {
                anyhow::bail!("the server staged {digest}, not the file's sha256:{sha256}");
            }
            Ok(digest)
        }
        Err(e) => {
            // Nothing half-stored stays behind: the session goes, with its bytes.
            let _ = api.send(api.request(Method::DELETE, &session_url), "aborting the upload session").await;
            Err(e)
        }
    }
}

async fn send_and_complete(
    api: &Api,
    opened: &Value,
    path: &Path,
    size: u64,
    opts: StageOptions,
) -> anyhow::Result<String> {
    let progress = Progress::new(&format!("uploading {}", display_name(path)), size, opts.quiet);
    let parts: Vec<Value> = if let Some(url) = opened["url"].as_str() {
        put_with_retries(api, url, path, 0, size, &progress).await?;
        vec![]
    } else {
        let list = opened["parts"].as_array().context("the session lists no URL and no parts")?;
        let part_size = opened["partSize"].as_u64().context("the session has no partSize")?;
        let mut targets = Vec::with_capacity(list.len());
        for p in list {
            let n = p["partNumber"].as_u64().context("a part without partNumber")?;
            let len = p["size"].as_u64().context("a part without size")?;
            let url = p["url"].as_str().context("a part without url")?.to_string();
            targets.push((n, (n - 1) * part_size, len, url));
        }
        let sent: Vec<(u64, String)> = futures::stream::iter(targets)
            .map(|(n, offset, len, url)| {
                let progress = progress.clone();
                async move {
                    let etag = put_with_retries(api, &url, path, offset, len, &progress).await?;
                    anyhow::Ok((n, etag))
                }
            })
            .buffer_unordered(opts.parallel.max(1))
            .try_collect()
            .await?;
        let mut sent = sent;
        sent.sort();
        sent.into_iter().map(|(n, etag)| json!({"partNumber": n, "etag": etag})).collect()
    };
    progress.finish();

    let complete_url = opened["completeUrl"].as_str().context("the session has no completeUrl")?;
    let body = if parts.is_empty() { json!({}) } else { json!({ "parts": parts }) };
    let res = api.send(api.request(Method::POST, complete_url).json(&body), "completing the upload session").await?;
    let accepted = res.status() == reqwest::StatusCode::ACCEPTED;
    let mut wait = retry_after(&res);
    let data = envelope_data(res, "completing the upload session").await?;
    if !accepted {
        return data["digest"].as_str().map(str::to_string).context("the completion named no digest");
    }
    // Verified off the request path: poll the session until it is settled.
    let session_url = opened["sessionUrl"].as_str().context("the session has no sessionUrl")?;
    let started = std::time::Instant::now();
    if !opts.quiet {
        eprintln!("verifying {} on the server (session {})...", display_name(path), data["id"].as_str().unwrap_or("?"));
    }
    loop {
        tokio::time::sleep(wait).await;
        let s = api.get_data(session_url, "polling the upload session").await?;
        match s["state"].as_str() {
            Some("COMPLETE") => {
                return s["digest"].as_str().map(str::to_string).context("a complete session without digest")
            }
            Some("FAILED") => {
                anyhow::bail!(
                    "the server refused the upload: {}",
                    s["failure"].as_str().unwrap_or("verification failed")
                )
            }
            Some("VERIFYING") if started.elapsed() < Duration::from_secs(3600) => {}
            Some("VERIFYING") => anyhow::bail!("the server has been verifying the upload for an hour; giving up"),
            other => anyhow::bail!("unexpected session state {other:?}"),
        }
        // After the server's estimate, look often: the push waits on this.
        wait = if started.elapsed() < Duration::from_secs(60) {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        };
    }
}

fn retry_after(res: &reqwest::Response) -> Duration {
    let secs = res.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    Duration::from_secs(secs.unwrap_or(1).clamp(1, 30))
}

async fn envelope_data(res: reqwest::Response, what: &str) -> Result<Value, Failure> {
    let body: Value = res.json().await.map_err(|e| Failure::transport(e, what))?;
    Ok(body.get("data").cloned().unwrap_or(Value::Null))
}

/// PUTs `len` bytes of `path` from `offset` to `url`, again after a failure that a retry
/// may mend (no answer, 5xx, 429) with backoff; a 4xx is final. Returns the ETag.
async fn put_with_retries(
    api: &Api,
    url: &str,
    path: &Path,
    offset: u64,
    len: u64,
    progress: &Progress,
) -> anyhow::Result<String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let sent = Arc::new(AtomicU64::new(0));
        match put_once(api, url, path, offset, len, progress, &sent).await {
            Ok(etag) => return Ok(etag),
            Err(e) => {
                progress.sub(sent.load(Ordering::Relaxed));
                let retry = e.downcast_ref::<Failure>().is_some_and(Failure::retryable);
                if !retry || attempt >= PUT_ATTEMPTS {
                    return Err(e);
                }
                let backoff = Duration::from_millis(BACKOFF_MS * (1 << (attempt - 1)) + rand_jitter());
                progress.note(&format!("{e}; trying again in {:.1} s", backoff.as_secs_f64()));
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

fn rand_jitter() -> u64 {
    (uuid::Uuid::new_v4().as_u128() % (BACKOFF_MS as u128 / 2)) as u64
}

async fn put_once(
    api: &Api,
    url: &str,
    path: &Path,
    offset: u64,
    len: u64,
    progress: &Progress,
    sent: &Arc<AtomicU64>,
) -> anyhow::Result<String> {
    let mut f = tokio::fs::File::open(path).await.with_context(|| format!("reading {}", path.display()))?;
    f.seek(std::io::SeekFrom::Start(offset)).await?;
    let (p, s) = (progress.clone(), sent.clone());
    let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), 256 << 10).inspect_ok(move |b| {
        p.add(b.len() as u64);
        s.fetch_add(b.len() as u64, Ordering::Relaxed);
    });
    // A presigned S3 URL must not carry depot's credentials; depot's own signed routes
    // need none either.
    let rb = api
        .http
        .put(api.url(url))
        .header(CONTENT_LENGTH, len)
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(reqwest::Body::wrap_stream(stream));
    let res = rb.send().await.map_err(|e| Failure::transport(e, "sending the bytes"))?;
    if !res.status().is_success() {
        return Err(failure_of(res, "sending the bytes", None).await.into());
    }
    let etag = res.headers().get(ETAG).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    Ok(etag)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::http::StatusCode;

    use super::*;
    use crate::client::config::Credentials;

    /// A server whose `/flaky` answers 503 `fail` times, then 200 with an ETag, and whose
    /// `/refuses` answers 400; each counts the PUTs it got and the bytes of the last.
    async fn server(fail: usize) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let (flaky, refused, last_len) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (f, r, l) = (flaky.clone(), refused.clone(), last_len.clone());
        let app = axum::Router::new()
            .route(
                "/flaky",
                axum::routing::put(move |body: axum::body::Bytes| async move {
                    l.store(body.len(), Ordering::SeqCst);
                    if f.fetch_add(1, Ordering::SeqCst) < fail {
                        (StatusCode::SERVICE_UNAVAILABLE, [("etag", "")], "try later")
                    } else {
                        (StatusCode::OK, [("etag", "\"abc\"")], "")
                    }
                }),
            )
            .route(
                "/refuses",
                axum::routing::put(move || async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    (StatusCode::BAD_REQUEST, r#"{"error":"wrong length","traceId":"t-1"}"#)
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (base, flaky, refused, last_len)
    }

    #[tokio::test]
    async fn a_failed_part_is_sent_again_and_a_4xx_never() {
        let (base, flaky, refused, last_len) = server(2).await;
        let api = Api::new(&base, Credentials::None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 100_000]).unwrap();
        let progress = Progress::new("t", 40_000, true);
        // Bytes 10,000..50,000 of the file, sent three times: two 503s, then the 200.
        let etag = put_with_retries(&api, &format!("{base}/flaky"), &path, 10_000, 40_000, &progress).await.unwrap();
        assert_eq!((etag.as_str(), flaky.load(Ordering::SeqCst)), ("\"abc\"", 3));
        assert_eq!(last_len.load(Ordering::SeqCst), 40_000, "each attempt sends exactly the part");
        let err = put_with_retries(&api, &format!("{base}/refuses"), &path, 0, 10, &progress).await.unwrap_err();
        assert_eq!(refused.load(Ordering::SeqCst), 1, "a 4xx is final");
        assert_eq!(err.to_string(), "sending the bytes: wrong length (HTTP 400, trace id t-1)");
    }

    #[tokio::test]
    async fn a_part_that_keeps_failing_gives_up() {
        let (base, flaky, ..) = server(usize::MAX).await;
        let api = Api::new(&base, Credentials::None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let err = put_with_retries(&api, &format!("{base}/flaky"), &path, 0, 3, &Progress::new("t", 3, true))
            .await
            .unwrap_err();
        assert_eq!(flaky.load(Ordering::SeqCst), PUT_ATTEMPTS as usize);
        assert!(err.to_string().contains("HTTP 503"), "{err}");
    }
}
