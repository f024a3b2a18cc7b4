//! The strux routes. Messages and `status`/`success` follow the strux server's handlers
//! (NOTES §5's table); HTTP statuses are depot's own.
use std::collections::{HashMap, HashSet};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use depot_core::http::{AppState, Client};
use depot_core::model::{validate_version, Action, Actor, Identity, RepoType, Repository, Rights};
use depot_core::registry::{BlobRef, NewVersion};
use depot_core::store::stream_from_bytes;
use depot_core::{Error, Result};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::form::{Content, Form, MAX_TEXT_FORM};
use crate::tree::{self, Dir};

/// Every strux form: gated until its credentials are checked (`GatedForm`).
type Multi = depot_core::http::spool::GatedForm;

/// strux's `BaseResponse`: `{"message","success","status"}` as `text/plain`, which is
/// how the client tells it from a multipart answer.
pub fn base(http: StatusCode, status: u8, success: bool, message: impl Into<String>) -> Response {
    let mut body = json!({ "message": message.into(), "success": success, "status": status });
    if !success {
        // An error names the trace id of the server's log line about it, which gives its
        // reason.
        body["traceId"] = depot_core::http::trace_id().into();
        depot_core::http::note_reason(body["message"].as_str().unwrap_or_default());
    }
    (http, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body.to_string()).into_response()
}

/// The strux repository, created on first use: public, so that reads need no password.
async fn repository(st: &AppState) -> Result<Repository> {
    let (p, r) = &st.config.strux_repo;
    st.registry.ensure_repository(p, r, RepoType::Strux, true).await
}

fn key_of(user: &str, package: &str) -> String {
    format!("strux://{user}/{package}")
}

/// Checks the form's credentials: the user as a depot user, through the authenticator
/// (its cache, password slots and throttle). A missing user and a wrong password are
/// strux's answers (`Err(response)`); a throttled or busy one is depot's error.
async fn signed_in(
    st: &AppState,
    client: Client,
    user: &str,
    password: &str,
    mismatch: &str,
) -> Result<std::result::Result<Identity, Response>> {
    if !st.accounts.user_exists(user).await? {
        return Ok(Err(base(StatusCode::NOT_FOUND, 1, false, format!("User {user} not exist."))));
    }
    use base64::Engine;
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
    match st.authenticator.authenticate_from(Some(&basic), client.0).await {
        Ok(id @ Identity::User { .. }) => {
            depot_core::http::note_caller(id.name());
            Ok(Ok(id))
        }
        Ok(Identity::Anonymous) | Err(Error::Unauthenticated(_)) => {
            Ok(Err(base(StatusCode::UNAUTHORIZED, 1, false, mismatch)))
        }
        Err(e) => Err(e),
    }
}

/// Answers the early return of [`signed_in`].
macro_rules! signed_in {
    ($st:expr, $client:expr, $user:expr, $password:expr, $mismatch:expr) => {
        match signed_in($st, $client, $user, $password, $mismatch).await? {
            Ok(id) => id,
            Err(answer) => return Ok(answer),
        }
    };
}

pub async fn create_user(State(st): State<AppState>, client: Client, multipart: Multi) -> Result<Response> {
    let form = Form::read(multipart.multipart).await?;
    let [user, password] = form.texts(["username", "password"])?;
    match st.accounts.sign_up(user, password, client.0).await {
        Ok(_) => Ok(base(StatusCode::CREATED, 1, true, format!("User {user} created successfully."))),
        Err(Error::Exists { .. }) => Ok(base(StatusCode::CONFLICT, 1, false, format!("User {user} already exist."))),
        Err(e) => Err(e),
    }
}

pub async fn user_exist(State(st): State<AppState>, multipart: Multi) -> Result<Response> {
    let form = Form::read(multipart.multipart).await?;
    let [user] = form.texts(["username"])?;
    Ok(match st.accounts.user_exists(user).await? {
        true => base(StatusCode::OK, 1, true, "Exist"),
        false => base(StatusCode::OK, 1, false, "Not exist"),
    })
}

pub async fn user_log_in(State(st): State<AppState>, client: Client, multipart: Multi) -> Result<Response> {
    let form = Form::read(multipart.multipart).await?;
    let [user, password] = form.texts(["username", "password"])?;
    signed_in!(&st, client, user, password, "Password mismatch.");
    Ok(base(StatusCode::OK, 1, true, "OK"))
}

pub async fn user_password_update(State(st): State<AppState>, client: Client, multipart: Multi) -> Result<Response> {
    let form = Form::read(multipart.multipart).await?;
    let [user, password, new_password] = form.texts(["username", "password", "newPassword"])?;
    let who = signed_in!(&st, client, user, password, "Old password mismatch.");
    if password == new_password {
        return Ok(base(StatusCode::BAD_REQUEST, 1, false, "The old and new passwords are the same."));
    }
    let update = depot_core::auth::UserUpdate { pwd: Some(new_password.to_string()), ..Default::default() };
    st.accounts.update_user(&who, user, update).await?;
    Ok(base(StatusCode::OK, 1, true, "Password updated."))
}

/// Deletes the user's own account with its own password, as the strux client does,
/// and its strux packages with it (their blobs go to garbage collection). Its tokens
/// and grants go too, as for any deleted depot user.
pub async fn user_delete(State(st): State<AppState>, client: Client, multipart: Multi) -> Result<Response> {
    let form = Form::read(multipart.multipart).await?;
    let [user, password] = form.texts(["username", "password"])?;
    let who = signed_in!(&st, client, user, password, "Password mismatch.");
    if who.is_admin() {
        return Err(Error::Forbidden("a system administrator's account is deleted by another administrator".into()));
    }
    let repo = repository(&st).await?;
    let owner = Actor::user(user, Rights::ALL);
    let prefix = key_of(user, "");
    // The packages go once the user is marked as being deleted: an upload still in flight
    // requires the user live to commit, so none lands after this sweep has looked.
    let sweep = || async {
        for pkg in st.registry.list_packages(&repo.project_id, &repo.name).await? {
            if pkg.key.starts_with(&prefix) {
                match st.registry.delete_package(&owner, &repo.project_id, &repo.name, &pkg.key).await {
                    Err(e) if !e.is_not_found() => return Err(e),
                    _ => {}
                }
            }
        }
        Ok(())
    };
    st.accounts.delete_own_account_with(&who, user, sweep).await?;
    Ok(base(StatusCode::OK, 1, true, format!("User {user} deleted.")))
}

/// One stored file of a version, as its manifest records it.
#[derive(Debug, Serialize, Deserialize)]
struct StoredFile {
    dir: String,
    name: String,
    key: String,
    size: u64,
    sha256: String,
}

/// A version's manifest: the tree as stored, and its files' blobs.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    tree: Dir,
    files: Vec<StoredFile>,
}

/// Takes the form's files that the tree lists, one part each; refuses what cannot be
/// stored (a part sent twice, a listed file that was not sent).
fn files_of(tree: &tree::Tree, form: Form) -> Result<Vec<(String, String, Content)>> {
    let listed: HashSet<&(String, String)> = tree.files.iter().collect();
    let mut sent: HashMap<(String, String), Content> = HashMap::new();
    for part in form.files {
        let Some(dir) = part.field.strip_prefix("DIR$") else { continue };
        let dir = tree::normalize_dir(dir)?;
        let id = (dir, part.filename);
        if !listed.contains(&id) {
            continue; // Only listed files are stored.
        }
        if sent.insert(id.clone(), part.content).is_some() {
            return Err(Error::Invalid(format!("file '{}/{}' was sent twice", id.0, id.1)));
        }
    }
    tree.files
        .iter()
        .map(|(dir, name)| match sent.remove(&(dir.clone(), name.clone())) {
            Some(content) => Ok((dir.clone(), name.clone(), content)),
            None => Err(Error::Invalid(format!(
                "file '{dir}/{name}' is listed in files_info but was not sent (field DIR${dir})"
            ))),
        })
        .collect()
}

/// The blob a file part names (`X-Depot-Blob`): one that an upload session of this user
/// staged in the strux repository. Another user's staged bytes are not found: knowing a
/// digest does not publish what someone else has not.
async fn staged_file(st: AppState, p: String, r: String, user: String, reference: String) -> Result<(String, BlobRef)> {
    let (p, r) = (p.as_str(), r.as_str());
    let staged = st.registry.resolve_own_staged(p, r, &reference, &user).await?;
    Ok((reference, staged.into_blob_ref(p, r)))
}

/// Uploads a version: the whole tree, or nothing. Each file is a content-addressed blob
/// (identical files across versions are stored once); the version's own blob is the
/// manifest.
pub async fn upload_pkg(State(st): State<AppState>, client: Client, multipart: Multi) -> Result<Response> {
    // The credentials are checked as soon as they are in (the client sends them first),
    // before any other field is read: until then the form holds at most MAX_TEXT_FORM, so
    // an anonymous client cannot make the server hold one. The user is the one that signed
    // in, whatever the form says after (a field sent twice is refused).
    let mut form = Form::default();
    let mut who: Option<Identity> = None;
    let gate = multipart.gate;
    if let Ok(mut multipart) = multipart.multipart {
        while let Some(field) = multipart.next_field().await.map_err(|e| Error::Invalid(e.body_text()))? {
            if who.is_none() && (field.file_name().is_some() || (form.has("username") && form.has("password"))) {
                let [user, password] = form.texts(["username", "password"])?;
                who = Some(signed_in!(&st, client, user, password, "Password mismatch."));
                gate.open();
            }
            let budget = if who.is_some() { st.config.max_body_bytes } else { MAX_TEXT_FORM };
            form.add(field, budget).await?;
        }
    }
    let [user, password, version, files_info] = form.texts(["username", "password", "version", "files_info"])?;
    let who = match who {
        Some(who) => who,
        None => signed_in!(&st, client, user, password, "Password mismatch."),
    };
    let (user, version) = (who.name().to_string(), version.to_string());
    validate_version(&version)?;
    let tree = tree::parse(files_info, st.config.strux_max_files)?;
    let repo = repository(&st).await?;
    let (p, r) = (repo.project_id.as_str(), repo.name.as_str());
    let key = key_of(&user, &tree.package);
    let exists = || {
        let message = format!("Version {version} of the {} package already exists.", tree.package);
        base(StatusCode::CONFLICT, 2, false, message)
    };
    if st.registry.get_version(p, r, &key, &version).await.is_ok() {
        return Ok(exists());
    }
    let files = files_of(&tree, form)?;
    // Staged files first: a reference that does not resolve leaves nothing stored.
    let references: Vec<String> = files
        .iter()
        .filter_map(|(_, _, c)| match c {
            Content::Staged(reference) => Some(reference.clone()),
            Content::Bytes(_) => None,
        })
        .collect();
    let staged: HashMap<String, BlobRef> = {
        let (st, p, r, user) = (st.clone(), p.to_string(), r.to_string(), user.clone());
        futures::stream::iter(references)
            .map(move |reference| {
                staged_file(st.clone(), p.clone(), r.clone(), user.clone(), reference)
            })
            .buffer_unordered(16)
            .try_collect()
            .await?
    };
    let mut refs: Vec<BlobRef> = Vec::with_capacity(files.len());
    let mut stored = Vec::with_capacity(files.len());
    let mut total = 0u64;
    for (dir, name, content) in files {
        let blob = match content {
            Content::Bytes(bytes) => st.registry.store_content(stream_from_bytes(bytes.to_vec())).await?,
            Content::Staged(reference) => staged[&reference].clone(),
        };
        total += blob.digests.size;
        stored.push(StoredFile {
            dir,
            name,
            key: blob.key.clone(),
            size: blob.digests.size,
            sha256: blob.digests.sha256.clone(),
        });
        refs.push(blob);
    }
    let manifest = Manifest { tree: tree.root.clone(), files: stored };
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(Error::internal)?;
    let manifest = st.registry.store_bytes(manifest_bytes.into()).await?;
    let mut metadata = serde_json::Map::new();
    metadata.insert("files".into(), refs.len().into());
    metadata.insert("treeBytes".into(), total.into());
    // The commit lands only while the user is the one that signed in: not deleted (with
    // its packages) or re-keyed while the body arrived.
    let requires = vec![st.accounts.still_signed_in(&who).await?];
    let req = NewVersion {
        metadata,
        description: format!("strux package {} of {user}", tree.package),
        files: refs,
        requires,
        ..NewVersion::new(p, r, &key, &tree.package, RepoType::Strux, &version, manifest)
    };
    // The user writes its own namespace, and nothing else.
    let owner = Actor::user(&user, Rights::NONE.with(Action::Write));
    match st.registry.create_version(req, &owner).await {
        Ok(_) => Ok(base(StatusCode::CREATED, 1, true, format!("Package {} successfully created.", tree.package))),
        // The version, or its path, taken by a concurrent upload of the same version.
        Err(Error::Exists { .. }) => Ok(exists()),
        Err(e) => Err(e),
    }
}

pub async fn exists_package(State(st): State<AppState>, multipart: Multi) -> Result<Response> {
    let form = Form::read(multipart.multipart).await?;
    let [user, package, version] = form.texts(["username", "pkgName", "version"])?;
    let repo = repository(&st).await?;
    let missing = |m: String| base(StatusCode::NOT_FOUND, 2, false, m);
    let key = key_of(user, package);
    if depot_core::model::validate_package_key(&key).is_err()
        || st.registry.find_package(&repo.project_id, &repo.name, &key).await?.is_none()
    {
        return Ok(missing(format!("Package {package} not exist.")));
    }
    if validate_version(version).is_err()
        || st.registry.get_version(&repo.project_id, &repo.name, &key, version).await.is_err()
    {
        return Ok(missing(format!("Package version {version} not exist.")));
    }
    Ok(base(StatusCode::OK, 1, true, format!("Package {package}/{version} successfully found")))
}

/// A multipart answer's boundary and content type.
fn boundary() -> (String, String) {
    let b = uuid::Uuid::new_v4().simple().to_string();
    let content_type = format!("multipart/form-data; boundary={b}");
    (b, content_type)
}

/// A header value in quotes, escaped as Go's `mime/multipart` writes it.
fn quoted(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn text_part(boundary: &str, name: &str, value: &str) -> Bytes {
    Bytes::from(format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{value}\r\n",
        quoted(name)
    ))
}

/// The versions of a package, in semver order: one multipart text field `versions`.
pub async fn package_versions(State(st): State<AppState>, multipart: Multi) -> Result<Response> {
    let form = Form::read(multipart.multipart).await?;
    let [user, package] = form.texts(["username", "pkgName"])?;
    if !st.accounts.user_exists(user).await? {
        return Ok(base(StatusCode::NOT_FOUND, 0, false, format!("User {user} not exist")));
    }
    let repo = repository(&st).await?;
    let key = key_of(user, package);
    let not_found = || base(StatusCode::NOT_FOUND, 0, false, format!("Package {user}/{package} not exist"));
    if depot_core::model::validate_package_key(&key).is_err()
        || st.registry.find_package(&repo.project_id, &repo.name, &key).await?.is_none()
    {
        return Ok(not_found());
    }
    let mut versions: Vec<String> =
        st.registry.list_versions(&repo.project_id, &repo.name, &key).await?.into_iter().map(|v| v.name).collect();
    versions.sort_by(|a, b| depot_core::model::compare_versions(a, b));
    let (b, content_type) = boundary();
    let mut body = text_part(&b, "versions", &serde_json::to_string(&versions).map_err(Error::internal)?).to_vec();
    body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// A version's files: one part per file (`DIR$<dir>`, the bare file name, its bytes),
/// then `files_info` with the stored tree. The bytes stream from the blob store. Counts
/// as a download.
pub async fn download_package(State(st): State<AppState>, method: axum::http::Method, multipart: Multi) -> Result<Response> {
    let form = Form::read(multipart.multipart).await?;
    let [user, package, version] = form.texts(["username", "pkgName", "version"])?;
    let repo = repository(&st).await?;
    let (p, r) = (repo.project_id.clone(), repo.name.clone());
    let key = key_of(user, package);
    let missing = || base(StatusCode::NOT_FOUND, 0, false, format!("Package {package}/{version} not exist."));
    if depot_core::model::validate_package_key(&key).is_err() || validate_version(version).is_err() {
        return Ok(missing());
    }
    let v = match st.registry.get_version(&p, &r, &key, version).await {
        Ok(v) => v,
        Err(e) if e.is_not_found() => return Ok(missing()),
        Err(e) => return Err(e),
    };
    let bytes = st.registry.blobs.get(&v.blob_key, None).await?.bytes().await?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| Error::Internal(format!("manifest of {key} {version}: {e}")))?;
    // A multipart answer cannot be a redirect: one larger than the entry point carries
    // (API Gateway's 6 MB) is refused before it starts, naming where it can be had.
    let total: u64 = manifest.files.iter().map(|f| f.size + 256 + f.dir.len() as u64 + f.name.len() as u64).sum();
    if let Some(limit) = st.config.max_response_bytes.filter(|l| total > *l) {
        return Err(Error::TooLarge(format!(
            "package {package}/{version} is {total} bytes, more than the {limit} bytes a response through API Gateway \
             carries: download it from a depot serve on the same storage (depot serve --backend aws)"
        )));
    }
    // A HEAD looks; only a GET downloads.
    if method == axum::http::Method::GET {
        st.registry.record_download(&p, &r, &key, version).await?;
    }
    let (b, content_type) = boundary();
    let tree = serde_json::to_string(&manifest.tree).map_err(Error::internal)?;
    let blobs = st.registry.blobs.clone();
    let boundary_ = b.clone();
    let parts = manifest.files.into_iter().map(move |f| {
        let b = &boundary_;
        let head = Bytes::from(format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
            quoted(&format!("DIR${}", f.dir)),
            quoted(&f.name)
        ));
        let blobs = blobs.clone();
        let body = futures::stream::once(async move {
            blobs.get(&f.key, None).await.map(|o| o.body).map_err(std::io::Error::other)
        })
        .try_flatten();
        futures::stream::once(async move { Ok::<_, std::io::Error>(head) })
            .chain(body)
            .chain(futures::stream::once(async { Ok(Bytes::from_static(b"\r\n")) }))
    });
    let mut tail = text_part(&b, "files_info", &tree).to_vec();
    tail.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    let tail = futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(tail)) });
    let stream = futures::stream::iter(parts).flatten().chain(tail);
    Ok(([(header::CONTENT_TYPE, content_type)], Body::from_stream(stream)).into_response())
}
