//! The single-table key scheme. Every item's `PK`/`SK` is built here and nowhere else.
//!
//! | item | PK | SK |
//! |---|---|---|
//! | project | `PROJECTS` | `PROJECT#{p}` |
//! | repository | `PROJECT#{p}` | `REPO#{r}` |
//! | package summary | `REPO#{p}/{r}` | `PKG#{key}` |
//! | version | `PKG#{p}/{r}/{key}` | `VER#{version}` |
//! | user | `USERS` | `USER#{id}` |
//! | API token, by secret | `TOKEN#{sha256 of the secret}` | `TOKEN` |
//! | API token, by owner | `TOKENS#{user}` | `TOKEN#{name}` |
//! | permission | `PERMS#{p}` | `PERM#{id}` |
//! | permission id → project | `PERM#{id}` | `PERM` |
//! | upload session | `UPLOADS` | `UPLOAD#{id}` |
//! | staged blob of a repository | `STAGED#{p}/{r}` | `sha256:{hex}` |
//! | downloads of a version on a day | `DL#{p}/{r}/{key}` | `DAY#{yyyy-mm-dd}#{version}` |
use crate::store::Key;

pub const PROJECTS_PK: &str = "PROJECTS";
pub const USERS_PK: &str = "USERS";
pub const PROJECT_SK_PREFIX: &str = "PROJECT#";
pub const REPO_SK_PREFIX: &str = "REPO#";
pub const PKG_SK_PREFIX: &str = "PKG#";
pub const VER_SK_PREFIX: &str = "VER#";
pub const USER_SK_PREFIX: &str = "USER#";

pub fn project_key(project: &str) -> Key {
    Key::new(PROJECTS_PK, format!("{PROJECT_SK_PREFIX}{project}"))
}

pub fn project_partition(project: &str) -> String {
    format!("PROJECT#{project}")
}

pub fn repo_key(project: &str, repo: &str) -> Key {
    Key::new(project_partition(project), format!("{REPO_SK_PREFIX}{repo}"))
}

/// The partition that holds a repository's package summaries.
pub fn repo_partition(project: &str, repo: &str) -> String {
    format!("REPO#{project}/{repo}")
}

pub fn package_key(project: &str, repo: &str, package_key: &str) -> Key {
    Key::new(repo_partition(project, repo), format!("{PKG_SK_PREFIX}{package_key}"))
}

/// The partition that holds one package's versions.
pub fn package_partition(project: &str, repo: &str, package_key: &str) -> String {
    format!("PKG#{project}/{repo}/{package_key}")
}

pub fn user_key(user_id: &str) -> Key {
    Key::new(USERS_PK, format!("{USER_SK_PREFIX}{user_id}"))
}

pub fn token_key(secret_sha256: &str) -> Key {
    Key::new(format!("TOKEN#{secret_sha256}"), "TOKEN")
}

/// The partition that lists a user's tokens.
pub fn user_tokens_partition(user_id: &str) -> String {
    format!("TOKENS#{user_id}")
}

pub fn user_token_key(user_id: &str, name: &str) -> Key {
    Key::new(user_tokens_partition(user_id), format!("TOKEN#{name}"))
}

/// The partition that holds a project's permissions.
pub fn permissions_partition(project: &str) -> String {
    format!("PERMS#{project}")
}

pub fn permission_key(project: &str, id: &str) -> Key {
    Key::new(permissions_partition(project), format!("PERM#{id}"))
}

/// Points from a permission id to its project, for deletes by id.
pub fn permission_pointer_key(id: &str) -> Key {
    Key::new(format!("PERM#{id}"), "PERM")
}

pub const UPLOADS_PK: &str = "UPLOADS";
pub const UPLOAD_SK_PREFIX: &str = "UPLOAD#";

pub fn upload_key(id: &str) -> Key {
    Key::new(UPLOADS_PK, format!("{UPLOAD_SK_PREFIX}{id}"))
}

/// A garbage collection's claim on a blob it is about to remove: writers that would
/// name the blob wait for it to go (`registry::gc` says why).
pub fn gc_mark_key(blob_key: &str) -> Key {
    Key::new("GCMARK", blob_key.to_string())
}

/// A blob that a completed upload session staged for a repository, by digest.
pub fn staged_key(project: &str, repo: &str, digest: &str) -> Key {
    Key::new(staged_partition(project, repo), digest.to_string())
}

pub fn staged_partition(project: &str, repo: &str) -> String {
    format!("STAGED#{project}/{repo}")
}

pub fn version_key(project: &str, repo: &str, package_key: &str, version: &str) -> Key {
    Key::new(package_partition(project, repo, package_key), format!("{VER_SK_PREFIX}{version}"))
}

/// The per-day download counter of a version.
pub fn download_day_key(project: &str, repo: &str, package_key: &str, day: &str, version: &str) -> Key {
    Key::new(format!("DL#{project}/{repo}/{package_key}"), format!("DAY#{day}#{version}"))
}
