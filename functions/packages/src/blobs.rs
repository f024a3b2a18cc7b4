//! Upload sessions on `/blobs/uploads`: the way around the request-body limit for every
//! surface. The rules live in `depot_core::registry`; this file translates.
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use depot_core::http::bkrepo::ok;
use depot_core::http::blobs::{parse_range, respond, BaseUrl};
use depot_core::http::extract::{Body, Json, Path, Query};
use depot_core::http::{AppState, Scope};
use depot_core::model::{Action, Identity};
use depot_core::registry::{Completion, NewUpload, OpenedUpload, UploadSession};
use depot_core::{Error, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::projects::required;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenUpload {
    project_id: Option<String>,
    repo_name: Option<String>,
    size: Option<u64>,
    sha256: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletedPart {
    part_number: u32,
    etag: String,
}

#[derive(Deserialize)]
pub struct Complete {
    sha256: Option<String>,
    parts: Option<Vec<CompletedPart>>,
}

#[derive(Deserialize)]
pub struct ContentQuery {
    filename: Option<String>,
}

fn session_view(s: &UploadSession, base: &BaseUrl) -> Value {
    json!({
        "id": s.id,
        "projectId": s.project_id,
        "repoName": s.repo_name,
        "size": s.size,
        "state": s.state,
        "createdBy": s.created_by,
        "createdDate": s.created_date,
        "expiresAt": s.expires_at,
        "digest": s.digest,
        "failure": s.failure,
        "completeUrl": base.resolve(format!("/blobs/uploads/{}/complete", s.id)),
        "sessionUrl": base.resolve(format!("/blobs/uploads/{}", s.id)),
    })
}

fn opened_view(o: OpenedUpload, base: &BaseUrl) -> Value {
    let mut v = session_view(&o.session, base);
    let targets: Vec<Value> =
        o.targets.into_iter().map(|t| json!({ "partNumber": t.part_number, "size": t.size, "url": base.resolve(t.url) })).collect();
    v["method"] = json!("PUT");
    if o.session.multipart_id.is_some() {
        v["partSize"] = json!(o.session.part_size);
        v["parts"] = Value::Array(targets);
        v["url"] = Value::Null;
    } else {
        v["url"] = targets[0]["url"].clone();
        v["parts"] = Value::Array(vec![]);
    }
    v
}

/// Loads a session for a (signed-in) caller: one who may stage blobs in its repository
/// (`Write`: to inspect, complete or abort it), or read them (`Read`).
async fn session_for(st: &AppState, who: &Identity, id: &str, action: Action) -> Result<UploadSession> {
    let session = st.registry.get_upload(id).await?;
    let (p, r) = (&session.project_id, &session.repo_name);
    // In the strux repository, which is public for READ, a session's unpublished bytes
    // are still only its creator's to read.
    let strux = st.is_strux_repo(p, r);
    match action {
        Action::Write => st.authorize_staging(who, p, r, Some(&session.created_by)).await?,
        _ if strux => st.authorize_staging(who, p, r, Some(&session.created_by)).await?,
        _ => st.authorize_repo(who, p, r, action).await?,
    };
    Ok(session)
}

pub async fn open_upload(
    State(st): State<AppState>,
    scope: Scope,
    base: BaseUrl,
    Json(b): Json<OpenUpload>,
) -> Result<Response> {
    let req = NewUpload {
        project_id: required(b.project_id, "projectId")?,
        repo_name: required(b.repo_name, "repoName")?,
        size: b.size.ok_or_else(|| Error::missing("size"))?,
        sha256: b.sha256,
    };
    let actor = st.authorize_staging(scope.who(), &req.project_id, &req.repo_name, None).await?;
    let opened = st.registry.open_upload(req, actor.name(), st.config.max_session_bytes).await?;
    Ok(ok(opened_view(opened, &base)))
}

pub async fn upload_info(
    State(st): State<AppState>,
    scope: Scope,
    base: BaseUrl,
    Path(id): Path<String>,
) -> Result<Response> {
    let session = session_for(&st, scope.who(), &id, Action::Write).await?;
    Ok(ok(session_view(&session, &base)))
}

/// Completes a session: 200 with the staged blob's digests, or, for a session over
/// `DEPOT_VERIFY_INLINE_BYTES`, 202 with the session `VERIFYING` and `Retry-After`: the
/// client polls `sessionUrl` until it is `COMPLETE` (or `FAILED`, with `failure`).
pub async fn complete_upload(
    State(st): State<AppState>,
    scope: Scope,
    base: BaseUrl,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response> {
    let complete: Complete = if body.iter().all(u8::is_ascii_whitespace) {
        Complete { sha256: None, parts: None }
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            Error::Invalid(format!("invalid JSON body: {}", depot_core::http::extract::user_terms(&e.to_string())))
        })?
    };
    let session = session_for(&st, scope.who(), &id, Action::Write).await?;
    let parts: Option<Vec<(u32, String)>> =
        complete.parts.map(|ps| ps.into_iter().map(|p| (p.part_number, p.etag)).collect());
    let inline = st.config.verify_inline_bytes;
    match st.registry.complete_upload_within(session, complete.sha256.as_deref(), parts.as_deref(), inline).await? {
        Completion::Staged(staged) => Ok(ok(json!({
            "digest": staged.digest,
            "size": staged.size,
            "sha256": staged.sha256,
            "sha1": staged.sha1,
            "md5": staged.md5,
        }))),
        Completion::Verifying(session) => {
            if st.config.verify_in_process {
                let (registry, id) = (st.registry.clone(), session.id.clone());
                tokio::spawn(async move {
                    if let Err(e) = registry.verify_upload(&id).await {
                        tracing::warn!(session = %id, error = %e, "a verification failed; the next sweep retries it");
                    }
                });
            }
            let mut res = ok(session_view(&session, &base));
            *res.status_mut() = StatusCode::ACCEPTED;
            let poll = HeaderValue::from_str(&base.resolve(format!("/blobs/uploads/{}", session.id)))
                .map_err(|_| Error::Internal("session URL is not a header value".into()))?;
            res.headers_mut().insert(header::LOCATION, poll);
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_secs(session.size)));
            Ok(res)
        }
    }
}

/// When to look again at a session being verified: about the time its bytes take to
/// hash on one vCPU (some 300 MB/s), at least a second.
fn retry_secs(size: u64) -> u64 {
    (size / 300_000_000).clamp(1, 30)
}

pub async fn abort_upload(State(st): State<AppState>, scope: Scope, Path(id): Path<String>) -> Result<Response> {
    let session = session_for(&st, scope.who(), &id, Action::Write).await?;
    st.registry.abort_upload(session).await?;
    Ok(ok(true))
}

/// The verified bytes of a completed session, as any download: 302 or streamed.
pub async fn upload_content(
    State(st): State<AppState>,
    scope: Scope,
    base: BaseUrl,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ContentQuery>,
) -> Result<Response> {
    let session = session_for(&st, scope.who(), &id, Action::Read).await?;
    let digest = session.digest.as_deref().ok_or_else(|| match &session.failure {
        Some(f) => Error::Invalid(format!("upload session [{id}] failed verification: {f}")),
        None => Error::Invalid(format!("upload session [{id}] is not complete yet")),
    })?;
    let staged = st.registry.resolve_staged(&session.project_id, &session.repo_name, digest).await?;
    let filename = match q.filename {
        Some(f) => {
            depot_core::model::validate_filename(&f)?;
            f
        }
        None => staged.sha256.clone(),
    };
    respond(st.registry.fetch(&staged.key, &filename, parse_range(&headers)).await?, &base)
}
