//! Permission grants and the one authorization check every route calls.
//!
//! A grant gives users actions on a whole project (`PROJECT`) or on some of its
//! repositories (`REPO`). MANAGE implies the other actions. A system administrator has
//! every action everywhere, and a public repository allows anyone to READ.
use serde::{Deserialize, Serialize};

use super::{unauthenticated, Authenticator, Identity};
use crate::model::{
    now_iso, permission_key, permission_pointer_key, permissions_partition, printable, project_key, repo_key, user_key,
    validate_name, Repository, PROJECTS_PK, PROJECT_SK_PREFIX,
};
use crate::registry::{from_item, to_item};
use crate::store::{query_all, Cond, Item, Query, Table, TxOp};
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    Read,
    Write,
    Delete,
    Manage,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "READ",
            Action::Write => "WRITE",
            Action::Delete => "DELETE",
            Action::Manage => "MANAGE",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_uppercase().as_str() {
            "READ" => Ok(Action::Read),
            "WRITE" => Ok(Action::Write),
            "DELETE" => Ok(Action::Delete),
            "MANAGE" => Ok(Action::Manage),
            _ => Err(Error::Invalid(format!("unknown action '{}': use READ, WRITE, DELETE or MANAGE", printable(s)))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ResourceType {
    Project,
    Repo,
}

impl ResourceType {
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_uppercase().as_str() {
            "PROJECT" => Ok(ResourceType::Project),
            "REPO" => Ok(ResourceType::Repo),
            _ => Err(Error::Invalid(format!("unknown resourceType '{}': use PROJECT or REPO", printable(s)))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermUser {
    pub id: String,
    pub action: Vec<Action>,
}

/// A stored grant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    pub id: String,
    pub perm_name: String,
    pub project_id: String,
    pub resource_type: ResourceType,
    pub repos: Vec<String>,
    pub users: Vec<PermUser>,
    pub created_by: String,
    pub created_date: String,
}

/// What a caller sends to create a grant.
#[derive(Debug, Clone)]
pub struct NewPermission {
    pub perm_name: String,
    pub project_id: String,
    pub resource_type: ResourceType,
    pub repos: Vec<String>,
    pub users: Vec<PermUser>,
}

impl Permission {
    /// Whether this grant gives `user` the `action` on the project (`repo` None) or on
    /// `repo`. For a project-wide READ, a grant on any of its repositories counts.
    fn grants(&self, user: &str, repo: Option<&str>, action: Action) -> bool {
        let covers = match (self.resource_type, repo) {
            (ResourceType::Project, _) => true,
            (ResourceType::Repo, Some(r)) => self.repos.iter().any(|x| x == r),
            (ResourceType::Repo, None) => action == Action::Read,
        };
        covers
            && self.users.iter().any(|u| u.id == user && u.action.iter().any(|a| *a == action || *a == Action::Manage))
    }
}

impl Authenticator {
    /// Succeeds when `who` may do `action` on the project, or on one of its repositories.
    /// Anonymous callers get `Unauthenticated` (except READ on a public repository), and
    /// users without the grant get `Forbidden`.
    pub async fn authorize(&self, who: &Identity, project: &str, repo: Option<&str>, action: Action) -> Result<()> {
        if who.is_admin() {
            return Ok(());
        }
        // Only a READ of a repository can be open to anonymous callers.
        if *who == Identity::Anonymous && (action != Action::Read || repo.is_none()) {
            return Err(unauthenticated());
        }
        validate_name("project name", project)?;
        if let Some(r) = repo {
            validate_name("repository name", r)?;
            if action == Action::Read {
                if let Some(item) = self.table.get(&repo_key(project, r)).await? {
                    if from_item::<Repository>(item)?.public {
                        return Ok(());
                    }
                }
            }
        }
        let Identity::User { id, .. } = who else { return Err(unauthenticated()) };
        for item in query_all(&*self.table, Query::partition(permissions_partition(project))).await? {
            if from_item::<Permission>(item)?.grants(id, repo, action) {
                return Ok(());
            }
        }
        let target = match repo {
            Some(r) => format!("repository [{project}/{r}]"),
            None => format!("project [{project}]"),
        };
        Err(Error::Forbidden(format!("user [{id}] has no {} permission on {target}", action.as_str())))
    }

    /// Creates a grant and returns it with its new id. Needs MANAGE on the project.
    pub async fn create_permission(&self, who: &Identity, req: NewPermission) -> Result<Permission> {
        self.authorize(who, &req.project_id, None, Action::Manage).await?;
        if req.perm_name.is_empty()
            || req.perm_name.chars().count() > 128
            || req.perm_name.chars().any(char::is_control)
        {
            return Err(Error::Invalid("permName needs 1-128 characters without control characters".into()));
        }
        for r in &req.repos {
            validate_name("repository name", r)?;
        }
        if req.resource_type == ResourceType::Repo && req.repos.is_empty() {
            return Err(Error::Invalid("a REPO permission needs at least one repository in repos".into()));
        }
        if req.users.is_empty() {
            return Err(Error::Invalid("users must name at least one user".into()));
        }
        for u in &req.users {
            validate_name("user id", &u.id)?;
            if u.action.is_empty() {
                return Err(Error::Invalid(format!("user [{}] needs at least one action", u.id)));
            }
            if self.table.get(&user_key(&u.id)).await?.is_none() {
                return Err(Error::NotFound(format!("user [{}] not found", u.id)));
            }
        }
        let perm = Permission {
            id: uuid::Uuid::new_v4().simple().to_string(),
            perm_name: req.perm_name,
            project_id: req.project_id,
            resource_type: req.resource_type,
            repos: req.repos,
            users: req.users,
            created_by: who.name().to_string(),
            created_date: now_iso(),
        };
        let mut pointer = permission_pointer_key(&perm.id).item();
        pointer.insert("projectId".into(), perm.project_id.clone().into());
        let ops = vec![
            TxOp::Put { item: to_item(&permission_key(&perm.project_id, &perm.id), &perm)?, cond: Cond::NotExists },
            TxOp::Put { item: pointer, cond: Cond::NotExists },
            TxOp::Check { key: project_key(&perm.project_id), cond: Cond::Exists },
        ];
        self.table.transact(ops).await.map_err(|e| {
            if e.failed_op(2) {
                Error::NotFound(format!("project [{}] not found", perm.project_id))
            } else {
                e
            }
        })?;
        Ok(perm)
    }

    /// A project's grants. Needs MANAGE on the project.
    pub async fn list_permissions(&self, who: &Identity, project: &str) -> Result<Vec<Permission>> {
        self.authorize(who, project, None, Action::Manage).await?;
        let items = query_all(&*self.table, Query::partition(permissions_partition(project))).await?;
        items.into_iter().map(from_item).collect()
    }

    /// Revokes a grant. Needs MANAGE on its project.
    pub async fn delete_permission(&self, who: &Identity, id: &str) -> Result<()> {
        who.require_user()?;
        validate_name("permission id", id)?;
        let not_found = || Error::NotFound(format!("permission [{id}] not found"));
        let pointer: Item = self.table.get(&permission_pointer_key(id)).await?.ok_or_else(not_found)?;
        let project = pointer.get("projectId").and_then(|v| v.as_str()).ok_or_else(not_found)?.to_string();
        self.authorize(who, &project, None, Action::Manage).await?;
        let ops = vec![
            TxOp::Delete { key: permission_key(&project, id), cond: Cond::Exists },
            TxOp::Delete { key: permission_pointer_key(id), cond: Cond::Exists },
        ];
        self.table.transact(ops).await.map_err(|e| e.on_conflict(not_found))
    }
}

/// Grants die with what they name: with `repo` None, every grant of the project goes;
/// with a repository, REPO grants lose that repository, and a grant left naming none
/// goes. The registry calls this when a project or repository is deleted, and before a
/// project is created, so that a project created under an old name never inherits
/// grants a failed deletion left behind. (A REPO grant may name a repository before it
/// exists, so creating a repository removes nothing.)
pub(crate) async fn forget_grants(table: &dyn Table, project: &str, repo: Option<&str>) -> Result<()> {
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
pub(super) async fn forget_user_grants(table: &dyn Table, user_id: &str) -> Result<()> {
    for project in query_all(table, Query::prefix(PROJECTS_PK, PROJECT_SK_PREFIX)).await? {
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
/// A changed grant that covers nobody, or (REPO) no repository, is deleted.
async fn edit_grants(table: &dyn Table, project: &str, edit: impl Fn(&mut Permission) -> bool) -> Result<()> {
    for item in query_all(table, Query::partition(permissions_partition(project))).await? {
        let mut perm: Permission = from_item(item)?;
        if !edit(&mut perm) {
            continue;
        }
        let key = permission_key(project, &perm.id);
        if perm.users.is_empty() || (perm.resource_type == ResourceType::Repo && perm.repos.is_empty()) {
            let ops = vec![
                TxOp::Delete { key, cond: Cond::None },
                TxOp::Delete { key: permission_pointer_key(&perm.id), cond: Cond::None },
            ];
            table.transact(ops).await?;
        } else {
            // A grant deleted meanwhile stays deleted.
            match table.put(to_item(&key, &perm)?, Cond::Exists).await {
                Err(e) if !e.is_conflict() => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}
