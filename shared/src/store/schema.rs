//! The single-table schema: every item's `PK`/`SK`, the index attributes, and the
//! conversion between domain values and items are here and nowhere else. The model
//! knows nothing of it; the use cases (registry, auth) build keys and items through it.
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
//! | a permission's name in its scope | `PERMNAME#{p}` | `{resourceType}#{permName}` |
//! | upload session | `UPLOADS` | `UPLOAD#{id}` |
//! | staged blob of a repository | `STAGED#{p}/{r}` | `sha256:{hex}` |
//! | downloads of a version on a day | `DL#{p}/{r}/{key}` | `DAY#{yyyy-mm-dd}#{version}` |
//! | remembered page start of a listing | `PAGES#{p}/{r}` | `{kind}#{state}#{size}#{page}` |
//! | the version that holds a content path | `PATH#{p}/{r}` | the path, such as `/chart-1.0.0.tgz` |
//! | garbage collection's mark on a blob | `GCMARK` | the blob key |
//! | a released version in a listing (a copy) | `LISTED#{repo uid}#{listing}` | `{time}#{key}#{version}` |
//! | a member of a listing of names, counted | `MEMBERS#{repo uid}#{listing}` | the name |
//! | how many versions a listing holds | `LISTCOUNT#{repo uid}` | the listing |
//!
//! | index | PK | SK | items |
//! |---|---|---|---|
//! | `GSI1` | `NAMES#{p}/{r}` | `{lower-case name}#{key}` | package summaries, by name |
//! | `GSI2` | `VERS#{p}/{r}/{key}` | [`version_sort_key`] | versions, in version order |
//! | `GSI3` | `UPLOADED#{p}/{r}` | `{createdDate}#{key}#{version}` | versions, in upload order |
use serde::{de::DeserializeOwned, Serialize};

use super::{Cond, Item, Key};
use crate::model::version_sort_key;
use crate::{Error, Result};

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

/// A grant's name in its scope (a project and a resource type), held by one grant.
pub fn permission_name_key(project: &str, resource_type: crate::model::ResourceType, name: &str) -> Key {
    Key::new(format!("PERMNAME#{project}"), format!("{}#{name}", resource_type.as_str()))
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

/// Left by a collector before it deletes a blob, until the mark's expiry: a commit whose
/// bytes it stored itself, without a spare ([`Hold::Bytes`]), checks that none is on
/// the blob, so that bytes a collection removed after they were written are never named.
///
/// [`Hold::Bytes`]: crate::registry::Hold::Bytes
pub fn gc_gone_key(blob_key: &str) -> Key {
    Key::new("GCGONE", blob_key.to_string())
}

/// A blob that a completed upload session staged for a repository, by digest.
pub fn staged_key(project: &str, repo: &str, digest: &str) -> Key {
    Key::new(staged_partition(project, repo), digest.to_string())
}

pub fn staged_partition(project: &str, repo: &str) -> String {
    format!("STAGED#{project}/{repo}")
}

/// The history items of one incarnation of a package, in its partition: `HIST#{id}#`.
pub fn history_prefix(history_id: &str) -> String {
    format!("HIST#{history_id}#")
}

/// A version's history item (`version`, `seq`): written once, when the version is first
/// uploaded, and kept when it is deleted, as `historyVersion` keeps it.
pub fn history_key(project: &str, repo: &str, package_key: &str, history_id: &str, version: &str) -> Key {
    Key::new(package_partition(project, repo, package_key), format!("{}{version}", history_prefix(history_id)))
}

pub fn version_key(project: &str, repo: &str, package_key: &str, version: &str) -> Key {
    Key::new(package_partition(project, repo, package_key), format!("{VER_SK_PREFIX}{version}"))
}

/// The per-day download counter of a version (with a TTL: `registry::DOWNLOAD_DAYS_KEPT`).
pub fn download_day_key(project: &str, repo: &str, package_key: &str, day: &str, version: &str) -> Key {
    Key::new(download_days_partition(project, repo, package_key), format!("DAY#{day}#{version}"))
}

/// The partition of a package's per-day download counters.
pub fn download_days_partition(project: &str, repo: &str, package_key: &str) -> String {
    format!("DL#{project}/{repo}/{package_key}")
}

/// The partition of a repository's content paths: one item per path, naming the
/// version that holds it, so that two versions never share a file name.
pub fn paths_partition(project: &str, repo: &str) -> String {
    format!("PATH#{project}/{repo}")
}

pub fn path_key(project: &str, repo: &str, content_path: &str) -> Key {
    Key::new(paths_partition(project, repo), content_path.to_string())
}

/// Set on a repository while a forced delete removes its contents: every commit into the
/// repository requires it absent (`Cond::Lacks`), so that nothing lands after the delete
/// has listed what to remove.
pub const DELETING_ATTR: &str = "deleting";

/// The attribute that counts an item's writes, for read-modify-writes: a write of what
/// was read at revision `n` requires revision `n` still (`revision_cond`) and stores
/// `n + 1`, so that a concurrent write makes it fail and retry instead of being undone.
/// Items written before revisions existed have none and count as revision 0.
pub const REVISION_ATTR: &str = "revision";

pub fn revision_of(item: &Item) -> u64 {
    item.get(REVISION_ATTR).and_then(serde_json::Value::as_u64).unwrap_or(0)
}

/// The condition that the item is still at revision `rev`.
pub fn revision_cond(rev: u64) -> Cond {
    match rev {
        0 => Cond::Lacks(REVISION_ATTR.into()),
        n => Cond::Eq(REVISION_ATTR.into(), n.into()),
    }
}

/// Stores the revision after `rev` in `item`.
pub fn set_next_revision(item: &mut Item, rev: u64) {
    item.insert(REVISION_ATTR.into(), (rev + 1).into());
}

/// How many times a read-modify-write retries after losing to a concurrent write.
pub const RMW_ATTEMPTS: usize = 16;

/// Written once, when the first system administrator is created (or found): from then
/// on no administrator is ever created from `DEPOT_ADMIN_PASSWORD` again.
pub fn bootstrap_key() -> Key {
    Key::new("SYSTEM", "BOOTSTRAP")
}

/// Where a repository's remembered page starts live.
pub fn pages_partition(project: &str, repo: &str) -> String {
    format!("PAGES#{project}/{repo}")
}

/// Where a repository's writes leave the keys of the packages they changed, one item
/// each (`registry::derived`): a rendering built from parts reads these to know which
/// parts to read again, and removes them once its rendering is the repository's.
pub fn changes_partition(project: &str, repo: &str) -> String {
    format!("CHANGES#{project}/{repo}")
}

/// One write's change to `package_key`: unique per write, so that removing the ones a
/// rendering has read never removes a later write's. The sort key starts with the time of
/// the write (nanoseconds, 20 digits), so that the writes of one moment land next to each
/// other (on embedded storage, in one page of the table, whatever their packages), then a
/// random id, then the package: `{time}{id}\n{package}`. Items from before the time came
/// first are `{package}\n{id}`; [`changed_package`] reads both.
pub fn change_key(project: &str, repo: &str, package_key: &str) -> Key {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    Key::new(changes_partition(project, repo), format!("{nanos:020}{}\n{package_key}", uuid::Uuid::new_v4().simple()))
}

/// The package a change item's sort key names ([`change_key`]), in either form: the
/// package is the side of the newline with a `://` in it, which a package key always has
/// and the time and the id never do.
pub fn changed_package(sk: &str) -> Option<&str> {
    let (a, b) = sk.split_once('\n')?;
    if b.contains("://") {
        Some(b)
    } else if a.contains("://") {
        Some(a)
    } else {
        None
    }
}

/// The index that lists a repository's packages by name.
pub const NAMES_INDEX: &str = "GSI1";
/// The index that lists a package's versions in version order.
pub const VERSIONS_INDEX: &str = "GSI2";

/// The counter of a repository's version numbers. Its own partition, which deleting the
/// repository leaves: a number is never handed out twice.
pub fn numbers_key(project: &str, repo: &str) -> Key {
    Key::new("NUMBERS", format!("{project}/{repo}"))
}

/// Which version holds number `n` (in the repository's partition: it goes with it).
pub fn number_key(project: &str, repo: &str, n: u64) -> Key {
    Key::new(repo_partition(project, repo), format!("NUM#{n:020}"))
}

/// A listing's partition (`registry::listings`): under the repository's uid, so that a
/// repository created again under an old name starts empty.
pub fn listed_partition(uid: &str, listing: &str) -> String {
    format!("LISTED#{uid}#{listing}")
}

pub fn listed_key(uid: &str, listing: &str, time: &str, key: &str, version: &str) -> Key {
    Key::new(listed_partition(uid, listing), format!("{time}#{key}#{version}"))
}

pub fn members_partition(uid: &str, listing: &str) -> String {
    format!("MEMBERS#{uid}#{listing}")
}

pub fn member_key(uid: &str, listing: &str, member: &str) -> Key {
    Key::new(members_partition(uid, listing), member.to_string())
}

pub fn listing_count_key(uid: &str, listing: &str) -> Key {
    Key::new(format!("LISTCOUNT#{uid}"), listing.to_string())
}

/// The index that lists a repository's versions in upload order.
pub const UPLOADS_INDEX: &str = "GSI3";

/// The `GSI3` partition of a repository's versions.
pub fn uploads_index_pk(project: &str, repo: &str) -> String {
    format!("UPLOADED#{project}/{repo}")
}

/// Puts a version into its repository's upload-order index: by creation time (an
/// overwrite keeps it), then package key and version, which make it unique.
pub fn index_upload(item: &mut Item, project: &str, repo: &str, key: &str, version: &str, created: &str) {
    item.insert("GSI3PK".into(), uploads_index_pk(project, repo).into());
    item.insert("GSI3SK".into(), format!("{created}#{key}#{version}").into());
}

/// The `GSI1` partition of a repository's packages.
pub fn names_index_pk(project: &str, repo: &str) -> String {
    format!("NAMES#{project}/{repo}")
}

/// A package's `GSI1` sort key: its lower-case name, then its key.
pub fn names_index_sk(name: &str, key: &str) -> String {
    format!("{}#{key}", name.to_lowercase())
}

/// The `GSI2` partition of a package's versions.
pub fn versions_index_pk(project: &str, repo: &str, key: &str) -> String {
    format!("VERS#{project}/{repo}/{key}")
}

/// Puts a package summary into the names index.
pub fn index_package(item: &mut Item, project: &str, repo: &str, name: &str, key: &str) {
    item.insert("GSI1PK".into(), names_index_pk(project, repo).into());
    item.insert(NAMES_INDEX_SK_ATTR.into(), names_index_sk(name, key).into());
}

/// The attribute of a package's names-index sort key (which a rename rewrites).
pub const NAMES_INDEX_SK_ATTR: &str = "GSI1SK";

/// Puts a version into its package's version-order index.
pub fn index_version(item: &mut Item, project: &str, repo: &str, key: &str, version: &str) {
    item.insert("GSI2PK".into(), versions_index_pk(project, repo, key).into());
    item.insert("GSI2SK".into(), version_sort_key(version).into());
}

/// Serialises a domain value into an item under `key`.
pub fn to_item<T: Serialize>(key: &Key, value: &T) -> Result<Item> {
    let mut item = key.item();
    match serde_json::to_value(value).map_err(Error::internal)? {
        serde_json::Value::Object(m) => item.extend(m),
        _ => return Err(Error::Internal("a domain value must serialise to an object".into())),
    }
    Ok(item)
}

/// Reads a domain value back from an item, ignoring the key attributes.
pub fn from_item<T: DeserializeOwned>(item: Item) -> Result<T> {
    serde_json::from_value(serde_json::Value::Object(item)).map_err(|e| Error::Internal(format!("corrupt item: {e}")))
}

/// Grants die with what they name. The registry calls this when a project or repository
/// is deleted, and before a project is created (so that a project created under an old
/// name never inherits grants a failed deletion left behind); with `repo` None every
/// grant of the project goes, with a repository REPO grants lose it, and a grant left
/// naming no repository goes.
pub async fn forget_grants(table: &dyn super::Table, project: &str, repo: Option<&str>) -> Result<()> {
    use crate::model::ResourceType;
    edit_grants(table, project, |perm| match repo {
        None => {
            perm.users.clear();
            true
        }
        Some(r) if perm.resource_type == ResourceType::Repo && perm.repos.iter().any(|x| x == r) => {
            perm.repos.retain(|x| x != r);
            true
        }
        Some(_) => false,
    })
    .await
}

/// Takes a deleted user out of every project's grants, so that a user created later
/// under the same id starts with none.
pub async fn forget_user_grants(table: &dyn super::Table, user_id: &str) -> Result<()> {
    for project in super::query_all(table, super::Query::prefix(PROJECTS_PK, PROJECT_SK_PREFIX)).await? {
        let Some(name) = project.get("name").and_then(|v| v.as_str()) else { continue };
        edit_grants(table, name, |perm| {
            let before = perm.users.len();
            perm.users.retain(|u| u.id != user_id);
            perm.users.len() != before
        })
        .await?;
    }
    Ok(())
}

/// Applies `edit` to each of a project's grants; it answers whether it changed the grant.
/// A changed grant that covers nobody, or (REPO) no repository, is deleted. Each write
/// requires the revision it read: an edit that loses to a concurrent one reads the grant
/// again and applies itself to what the other left, so that neither is undone.
async fn edit_grants(
    table: &dyn super::Table,
    project: &str,
    edit: impl Fn(&mut crate::model::Permission) -> bool,
) -> Result<()> {
    use super::{Query, TxOp};
    use crate::model::{Permission, ResourceType};
    for item in super::query_all(table, Query::partition(permissions_partition(project))).await? {
        let key = Key::of(&item)?;
        let mut current = Some(item);
        let mut attempts = 0;
        // A grant deleted meanwhile stays deleted.
        while let Some(item) = current.take() {
            attempts += 1;
            let rev = revision_of(&item);
            let mut perm: Permission = from_item(item)?;
            if !edit(&mut perm) {
                break;
            }
            let written = if perm.users.is_empty() || (perm.resource_type == ResourceType::Repo && perm.repos.is_empty())
            {
                let ops = vec![
                    TxOp::Delete { key: key.clone(), cond: revision_cond(rev) },
                    TxOp::Delete { key: permission_pointer_key(&perm.id), cond: Cond::None },
                    TxOp::Delete { key: permission_name_key(project, perm.resource_type, &perm.perm_name), cond: Cond::None },
                ];
                table.transact(ops).await
            } else {
                let mut item = to_item(&key, &perm)?;
                set_next_revision(&mut item, rev);
                table.put(item, revision_cond(rev)).await
            };
            match written {
                Ok(()) => {}
                Err(e) if e.is_conflict() && attempts < RMW_ATTEMPTS => current = table.get(&key).await?,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_names_its_package_in_either_key_form() {
        let key = change_key("p", "r", "rds://my/chart-1.0");
        assert_eq!(key.pk, changes_partition("p", "r"));
        assert_eq!(changed_package(&key.sk), Some("rds://my/chart-1.0"));
        // The sort key starts with the time, so that one moment's writes sort together.
        assert!(key.sk[..20].bytes().all(|b| b.is_ascii_digit()), "{}", key.sk);
        assert!(change_key("p", "r", "rds://a").sk[..20] >= key.sk[..20]);
        // Items written before the time came first.
        assert_eq!(changed_package("rds://old\n0123456789abcdef0123456789abcdef"), Some("rds://old"));
        assert_eq!(changed_package("no package here"), None);
        assert_eq!(changed_package("123\n456"), None);
    }
}
