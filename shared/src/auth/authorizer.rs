//! Authorization: what a caller may do on a project or repository, from the grants.
//!
//! A grant gives users actions on a whole project (`PROJECT`) or on some of its
//! repositories (`REPO`). MANAGE implies the other actions. A system administrator has
//! every action everywhere, and a public repository allows anyone to READ. The surface
//! kit asks once per request, before the handler runs (`http::surface`).
use std::sync::Arc;

use crate::model::{unauthenticated, validate_name, Action, Actor, Identity, Permission, Repository, Rights};
use crate::store::schema::{from_item, permissions_partition};
use crate::store::{query_all, Query, Table};
use crate::{Error, Result};

/// A caller's grants in one project, read once: what it holds on the project and on
/// each repository follows without reading again.
pub struct ProjectGrants {
    who: Identity,
    grants: Vec<Permission>,
}

impl ProjectGrants {
    /// What the caller holds on `repo` (given as read; `None` when it does not exist), or
    /// on the project when `repo` is `None`.
    pub fn rights(&self, repo: Option<(&str, Option<&Repository>)>) -> Rights {
        let public = repo.and_then(|(_, r)| r).is_some_and(|r| r.public);
        let mut rights = if public { Rights::NONE.with(Action::Read) } else { Rights::NONE };
        match &self.who {
            Identity::User { admin: true, .. } => return Rights::ALL,
            Identity::User { id, .. } => {
                let name = repo.map(|(n, _)| n);
                for g in &self.grants {
                    rights = rights.union(g.rights_of(id, name));
                }
            }
            Identity::Anonymous => {}
        }
        rights
    }
}

pub struct Authorizer {
    table: Arc<dyn Table>,
}

impl Authorizer {
    pub fn new(table: Arc<dyn Table>) -> Self {
        Authorizer { table }
    }

    /// The caller's grants in `project`: one query, none for an administrator or an
    /// anonymous caller.
    pub async fn grants(&self, who: &Identity, project: &str) -> Result<ProjectGrants> {
        validate_name("project name", project)?;
        let grants = match who {
            Identity::User { admin: false, .. } => {
                let items = query_all(&*self.table, Query::partition(permissions_partition(project))).await?;
                items.into_iter().map(from_item).collect::<Result<_>>()?
            }
            _ => vec![],
        };
        Ok(ProjectGrants { who: who.clone(), grants })
    }

    /// The caller acting on `repo` (as read, `None` when missing) of `project`, or on the
    /// project itself, with what it holds there; refused unless it holds `action`.
    /// Anonymous callers get `Unauthenticated` (except READ on a public repository), and
    /// users without the grant `Forbidden`. Reads nothing for an administrator, and never
    /// for an anonymous caller that asks for more than READ on a repository.
    pub async fn authorize(
        &self,
        who: &Identity,
        project: &str,
        repo: Option<(&str, Option<&Repository>)>,
        action: Action,
    ) -> Result<Actor> {
        if who.is_admin() {
            return Ok(Actor { who: who.clone(), rights: Rights::ALL });
        }
        // Only a READ of a repository can be open to anonymous callers.
        if *who == Identity::Anonymous && (action != Action::Read || repo.is_none()) {
            return Err(unauthenticated());
        }
        let rights = self.grants(who, project).await?.rights(repo);
        require(who, project, repo.map(|(n, _)| n), rights, action)
    }
}

/// The caller with `rights`, if they include `action`.
pub fn require(who: &Identity, project: &str, repo: Option<&str>, rights: Rights, action: Action) -> Result<Actor> {
    if rights.allows(action) {
        return Ok(Actor { who: who.clone(), rights });
    }
    let Identity::User { id, .. } = who else { return Err(unauthenticated()) };
    let target = match repo {
        Some(r) => format!("repository [{project}/{r}]"),
        None => format!("project [{project}]"),
    };
    Err(Error::Forbidden(format!("user [{id}] has no {} permission on {target}", action.as_str())))
}
