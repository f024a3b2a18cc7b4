//! The single-table key scheme. Every item's `PK`/`SK` is built here and nowhere else.
//!
//! | item | PK | SK |
//! |---|---|---|
//! | project | `PROJECTS` | `PROJECT#{p}` |
//! | repository | `PROJECT#{p}` | `REPO#{r}` |
//! | package summary | `REPO#{p}/{r}` | `PKG#{key}` |
//! | version | `PKG#{p}/{r}/{key}` | `VER#{version}` |
//! | user | `USERS` | `USER#{id}` |
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
