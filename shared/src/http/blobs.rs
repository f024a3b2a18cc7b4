//! Download answers, blob references and the embedded backend's signed local blob routes.
//!
//! The use cases decide how a download is answered (`registry::Download`: a redirect to a
//! presigned URL that expires within 15 minutes, or the bytes streamed through when
//! `DEPOT_DOWNLOAD_MODE=proxy`); [`respond`] turns that into HTTP. On the embedded
//! backend the presigned URLs point at `/blobs/local/...`, which [`local_blob_router`]
//! serves after checking the HMAC signature and expiry; `depot serve` mounts it, Lambda
//! never needs it.
use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::{StreamExt, TryStreamExt};

use super::AppState;
use crate::registry::Download;
use crate::store::{BlobObject, ByteRange, LOCAL_BLOB_PREFIX};
use crate::{Error, Result};

/// The header that names a staged blob instead of sending the file.
pub const BLOB_HEADER: &str = "x-depot-blob";

/// depot's own base URL as the client sees it: `DEPOT_PUBLIC_URL`, or the scheme and
/// `Host` of the request.
pub struct BaseUrl(pub String);

impl FromRequestParts<AppState> for BaseUrl {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(u) = &state.config.public_url {
            return Ok(BaseUrl(u.clone()));
        }
        let h = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        // Only what a host and port can be: a header that carries a path, credentials
        // or a script never reaches a link or a Location.
        let host = h("x-forwarded-host")
            .and_then(|v| v.split(',').next().map(|v| v.trim().to_string()))
            .filter(|v| is_authority(v))
            .or_else(|| h("host").filter(|v| is_authority(v)))
            .unwrap_or_else(|| "localhost".into());
        let proto = match h("x-forwarded-proto").map(|p| p.split(',').next().unwrap_or_default().trim().to_ascii_lowercase()) {
            Some(p) if p == "https" => "https",
            _ => "http",
        };
        Ok(BaseUrl(format!("{proto}://{host}")))
    }
}

/// Whether a header value is a host with an optional port: a DNS name, an IPv4 address,
/// or a bracketed IPv6 address.
pub fn is_authority(v: &str) -> bool {
    let (host, port) = match v.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, "")) if ip.parse::<std::net::Ipv6Addr>().is_ok() => (ip, None),
            Some((ip, after)) if ip.parse::<std::net::Ipv6Addr>().is_ok() && after.starts_with(':') => (ip, Some(&after[1..])),
            _ => return false,
        },
        None => match v.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (v, None),
        },
    };
    let host_ok = v.starts_with('[')
        || (!host.is_empty()
            && host.len() <= 253
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && host.split('.').all(|label| !label.is_empty() && !label.starts_with('-')));
    let port_ok =
        port.is_none_or(|p| p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0));
    host_ok && port_ok
}

impl BaseUrl {
    /// Makes a URL absolute when it is relative to depot.
    pub fn resolve(&self, url: String) -> String {
        if url.starts_with('/') {
            format!("{}{url}", self.0)
        } else {
            url
        }
    }
}

/// The `X-Depot-Blob` reference of a request, if it carries one.
pub fn blob_reference(headers: &HeaderMap) -> Option<Result<String>> {
    headers.get(BLOB_HEADER).map(|v| {
        v.to_str()
            .map(|s| s.trim().to_string())
            .map_err(|_| Error::Invalid("X-Depot-Blob must be 'sha256:<64 hex digits>'".into()))
    })
}

/// Parses a `Range: bytes=a-b` header (one range; `a-` is open-ended, and an end past
/// any size reads to the end). A Range of another form (a suffix `-n`, several ranges,
/// another unit, or not a range at all) is ignored, as RFC 9110 allows: the whole
/// blob is the answer.
pub fn parse_range(headers: &HeaderMap) -> Option<ByteRange> {
    let v = headers.get(header::RANGE)?;
    let spec = v.to_str().ok()?.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-').filter(|_| !spec.contains(','))?;
    let number = |t: &str| {
        let t = t.trim();
        // Digits only; a number too large for u64 is past every blob's end.
        (!t.is_empty() && t.bytes().all(|c| c.is_ascii_digit())).then(|| t.parse().unwrap_or(u64::MAX))
    };
    let start = number(a)?;
    let end = match b.trim() {
        "" => None,
        e => Some(number(e)?),
    };
    Some(ByteRange { start, end })
}

fn content_disposition(filename: &str) -> HeaderValue {
    HeaderValue::from_str(&crate::store::attachment(filename)).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// Streams a blob (or a range of it) as a response.
pub fn stream_response(obj: BlobObject, range: Option<ByteRange>, filename: Option<&str>) -> Response {
    let mut res = Response::new(Body::from_stream(obj.body.map_err(axum::Error::new)));
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(f) = filename {
        headers.insert(header::CONTENT_DISPOSITION, content_disposition(f));
    }
    let len = match range {
        Some(r) => {
            let end = r.end.unwrap_or(obj.size - 1).min(obj.size - 1);
            let v = format!("bytes {}-{end}/{}", r.start, obj.size);
            headers.insert(header::CONTENT_RANGE, HeaderValue::from_str(&v).expect("ascii"));
            *res.status_mut() = StatusCode::PARTIAL_CONTENT;
            end - r.start + 1
        }
        None => obj.size,
    };
    res.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    res
}

/// Answers a download as the use case decided it: 302 to the presigned URL (made
/// absolute), or the bytes.
pub fn respond(download: Download, base: &BaseUrl) -> Result<Response> {
    match download {
        Download::Redirect(url) => {
            let url = base.resolve(url);
            let mut res = StatusCode::FOUND.into_response();
            let location = HeaderValue::from_str(&url)
                .map_err(|_| Error::Internal("presigned URL is not a header value".into()))?;
            res.headers_mut().insert(header::LOCATION, location);
            // A signed, short-lived URL (relative ones name the request's host): no cache
            // keeps it.
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(res)
        }
        Download::Stream { object, range, filename } => Ok(stream_response(object, range, Some(&filename))),
    }
}

/// An error of the local routes: its status and a one-line JSON message.
fn local_error(e: Error) -> Response {
    let status = super::status_of(&e);
    if let Error::Internal(m) = &e {
        tracing::error!(trace_id = %super::trace_id(), error = %m, "internal error");
    }
    let body = serde_json::json!({ "error": super::public_message(&e), "traceId": super::trace_id() });
    let mut res = (status, axum::Json(body)).into_response();
    super::error_headers(&mut res, &e);
    res
}

async fn local_blob(
    State(state): State<AppState>,
    method: Method,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result: Result<Response> = async {
        let signer = state.signer.as_ref().ok_or_else(|| {
            Error::not_found_as(
                crate::error::Kind::Route,
                LOCAL_BLOB_PREFIX,
                "local blob routes serve the embedded backend only",
            )
        })?;
        let m = if method == Method::HEAD { "GET" } else { method.as_str() };
        let filename = q.get("filename").map(String::as_str);
        signer.verify(
            m,
            &key,
            q.get("expires").map(String::as_str),
            q.get("signature").map(String::as_str),
            filename,
        )?;
        if method == Method::PUT {
            // A session's URL takes bytes only while the session is open: checked before
            // the bytes are read, and again once they are stored, for a PUT that was
            // still streaming when the session was completed or aborted (what the
            // completion took is not affected either way).
            let expected = state.registry.accepts_upload_bytes(&key).await?;
            // A session's URL takes exactly the bytes it was opened for, as S3 does for
            // its presigned URLs: past them the PUT fails while streaming (413), and a
            // short body fails at its end (400); either way the write is not committed,
            // and what an earlier PUT stored stays.
            use std::sync::atomic::Ordering::Relaxed;
            let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let (counter, at_end) = (received.clone(), received.clone());
            let stream = body.into_data_stream().map_err(std::io::Error::other).and_then(move |chunk| {
                let n = counter.fetch_add(chunk.len() as u64, Relaxed) + chunk.len() as u64;
                let over = expected.is_some_and(|max| n > max);
                futures::future::ready(if over { Err(std::io::Error::other("over the declared size")) } else { Ok(chunk) })
            });
            let short = futures::stream::once(async move { at_end.load(Relaxed) }).filter_map(move |n| {
                let short = expected.is_some_and(|max| n < max);
                futures::future::ready(short.then(|| Err(std::io::Error::other("short of the declared size"))))
            });
            let stream = stream.chain(short);
            let put = state.registry.blobs.put(&key, Box::pin(stream)).await;
            let received = received.load(std::sync::atomic::Ordering::Relaxed);
            let wrong_size = |max: u64| {
                if received > max {
                    Error::TooLarge(format!("this URL takes {max} bytes, the size its session was opened for; the body is longer"))
                } else {
                    Error::Invalid(format!("this URL takes exactly {max} bytes, the size its session was opened for; the body had {received}"))
                }
            };
            let digests = match (put, expected) {
                (Err(_), Some(max)) if received != max => return Err(wrong_size(max)),
                (Err(e), _) => return Err(e),
                (Ok(d), _) => d,
            };
            if let Err(e) = state.registry.accepts_upload_bytes(&key).await {
                state.registry.blobs.delete(&key).await?;
                return Err(e);
            }
            let mut res = StatusCode::OK.into_response();
            let etag = HeaderValue::from_str(&format!("\"{}\"", digests.md5)).expect("hex");
            res.headers_mut().insert(header::ETAG, etag);
            return Ok(res);
        }
        let range = parse_range(&headers);
        let obj = state.registry.blobs.get(&key, range).await?;
        Ok(stream_response(obj, range, filename))
    }
    .await;
    result.unwrap_or_else(|e| {
        let mut res = local_error(e);
        // The body may be unread: say that the connection ends, so that the client does
        // not send its next request on it.
        res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        res
    })
}

/// `GET`/`HEAD`/`PUT /blobs/local/{key}`: the embedded backend's presigned URLs. No body
/// limit applies: these routes are where large uploads go.
pub fn local_blob_router(state: AppState) -> Router {
    let path = format!("{LOCAL_BLOB_PREFIX}{{*key}}");
    Router::new().route(&path, get(local_blob).put(local_blob)).with_state(state)
}

#[cfg(test)]
mod tests {
    #[test]
    fn authorities() {
        for good in ["localhost", "localhost:8080", "depot.example.com", "10.0.0.1:80", "[::1]:8080", "[2001:db8::1]"] {
            assert!(super::is_authority(good), "{good}");
        }
        for bad in ["", "evil.com/path?x=", "a@evil.com", "x y", "javascript://x", "[::1", "host:port", "-x", "a\"b", ":80", "[::1]]", "a..b", "x:99999", "x:0", "x:"] {
            assert!(!super::is_authority(bad), "{bad}");
        }
    }
}
