//! Who calls, what they may do, and the grants that say so: plain data, used by the
//! authorization check that every route runs and by the use cases whose rules depend on
//! the data (a `@release` version needs MANAGE).
use serde::{Deserialize, Serialize};

use super::printable;
use crate::{Error, Result};

/// Who is calling. `epoch` is the user's credential epoch when its credentials were
/// verified (`UserRecord::epoch`): a user's edits of itself are refused once it moved on,
/// so that a request authenticated before an administrator's password reset or demotion
/// cannot undo it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    User { id: String, admin: bool, epoch: u64 },
}

impl Identity {
    /// The caller's id when it is a system administrator; `Unauthenticated` for anonymous
    /// callers and `Forbidden` for other users.
    pub fn require_admin(&self) -> Result<&str> {
        match self {
            Identity::Anonymous => Err(unauthenticated()),
            Identity::User { id, admin: true, .. } => Ok(id),
            Identity::User { id, .. } => Err(Error::Forbidden(format!("user [{id}] is not a system administrator"))),
        }
    }

    /// The caller's id; `Unauthenticated` for anonymous callers.
    pub fn require_user(&self) -> Result<&str> {
        match self {
            Identity::Anonymous => Err(unauthenticated()),
            Identity::User { id, .. } => Ok(id),
        }
    }

    /// The name written into `createdBy` fields: the user id, or `anonymous`.
    pub fn name(&self) -> &str {
        match self {
            Identity::Anonymous => "anonymous",
            Identity::User { id, .. } => id,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Identity::User { admin: true, .. })
    }

    /// The credential epoch the caller was verified at (0 for anonymous callers).
    pub fn epoch(&self) -> u64 {
        match self {
            Identity::Anonymous => 0,
            Identity::User { epoch, .. } => *epoch,
        }
    }
}

pub(crate) fn unauthenticated() -> Error {
    Error::Unauthenticated("authentication required".into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    Read,
    Write,
    Delete,
    Manage,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Read, Action::Write, Action::Delete, Action::Manage];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "READ",
            Action::Write => "WRITE",
            Action::Delete => "DELETE",
            Action::Manage => "MANAGE",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Action::ALL.into_iter().find(|a| a.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| {
            Error::Invalid(format!("unknown action '{}': use READ, WRITE, DELETE or MANAGE", printable(s)))
        })
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// The actions a caller holds on one project or repository. MANAGE implies the others;
/// WRITE implies DELETE, as in bkrepo, whose package, version and chart deletes need
/// WRITE (`UserPackageController`, `ChartManipulationServiceImpl`); WRITE and DELETE imply
/// READ (who may change or remove something may see it: a CI user that uploads reads its
/// index and its own session's bytes). A `@release` version still needs MANAGE to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rights(u8);

impl Rights {
    pub const NONE: Rights = Rights(0);
    pub const ALL: Rights = Rights(0b1_1111);
    /// DELETE granted as such (or through MANAGE), not only implied by WRITE.
    const GRANTED_DELETE: u8 = 0b1_0000;

    pub fn of(actions: &[Action]) -> Rights {
        actions.iter().fold(Rights::NONE, |r, a| r.with(*a))
    }

    pub fn with(self, a: Action) -> Rights {
        match a {
            Action::Manage => Rights::ALL,
            Action::Read => Rights(self.0 | a.bit()),
            Action::Write => Rights(self.0 | a.bit() | Action::Delete.bit() | Action::Read.bit()),
            Action::Delete => Rights(self.0 | a.bit() | Action::Read.bit() | Self::GRANTED_DELETE),
        }
    }

    /// Whether DELETE was granted as such (or through MANAGE): what deleting a whole
    /// repository needs, as in bkrepo, where WRITE deletes packages and versions only.
    pub fn granted_delete(self) -> bool {
        self.0 & Self::GRANTED_DELETE != 0
    }

    pub fn union(self, other: Rights) -> Rights {
        Rights(self.0 | other.0)
    }

    pub fn allows(self, a: Action) -> bool {
        self.0 & a.bit() != 0
    }
}

/// A caller acting on one repository (or project): who it is, and what it may do there.
/// Use cases whose rules depend on the data take it and decide for themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub who: Identity,
    pub rights: Rights,
}

impl Actor {
    /// A signed-in user with `rights`; for maintenance commands and tests.
    pub fn user(id: &str, rights: Rights) -> Actor {
        Actor { who: Identity::User { id: id.to_string(), admin: false, epoch: 0 }, rights }
    }

    /// The name written into `createdBy` fields.
    pub fn name(&self) -> &str {
        self.who.name()
    }

    pub fn may(&self, a: Action) -> bool {
        self.rights.allows(a)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ResourceType {
    Project,
    Repo,
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Project => "PROJECT",
            ResourceType::Repo => "REPO",
        }
    }

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

/// A stored grant: users' actions on a whole project (`PROJECT`) or on some of its
/// repositories (`REPO`).
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
    #[serde(default)]
    pub updated_by: String,
    #[serde(default)]
    pub updated_date: String,
}

impl Permission {
    /// What this grant gives `user` on the project (`repo` None) or on `repo`. On the
    /// project as a whole, a REPO grant that gives READ gives READ only (enough to see
    /// the project).
    pub fn rights_of(&self, user: &str, repo: Option<&str>) -> Rights {
        let held = self.users.iter().filter(|u| u.id == user).fold(Rights::NONE, |r, u| r.union(Rights::of(&u.action)));
        match (self.resource_type, repo) {
            (ResourceType::Project, _) => held,
            (ResourceType::Repo, Some(r)) if self.repos.iter().any(|x| x == r) => held,
            (ResourceType::Repo, Some(_)) => Rights::NONE,
            (ResourceType::Repo, None) if held.allows(Action::Read) => Rights::NONE.with(Action::Read),
            (ResourceType::Repo, None) => Rights::NONE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manage_implies_the_rest_and_repo_grants_stay_in_their_repos() {
        let manage = Rights::of(&[Action::Manage]);
        assert!(Action::ALL.iter().all(|a| manage.allows(*a)));
        let w = Rights::of(&[Action::Write]);
        assert!(w.allows(Action::Write) && w.allows(Action::Read), "WRITE implies READ");
        assert!(w.allows(Action::Delete), "WRITE implies DELETE, as bkrepo's deletes need WRITE");
        assert!(!w.allows(Action::Manage));
        let d = Rights::of(&[Action::Delete]);
        assert!(d.allows(Action::Read) && !d.allows(Action::Write));
        let grant = Permission {
            id: "g".into(),
            perm_name: "g".into(),
            project_id: "p".into(),
            resource_type: ResourceType::Repo,
            repos: vec!["a".into()],
            users: vec![PermUser { id: "u".into(), action: vec![Action::Write] }],
            created_by: "admin".into(),
            created_date: String::new(),
            updated_by: String::new(),
            updated_date: String::new(),
        };
        assert_eq!(grant.rights_of("u", Some("a")), w);
        assert_eq!(grant.rights_of("u", Some("b")), Rights::NONE);
        assert_eq!(grant.rights_of("v", Some("a")), Rights::NONE);
        assert_eq!(grant.rights_of("u", None), Rights::of(&[Action::Read]), "a repository's writer sees its project");
        let reader = Permission { users: vec![PermUser { id: "u".into(), action: vec![Action::Read] }], ..grant };
        assert_eq!(reader.rights_of("u", None), Rights::of(&[Action::Read]));
    }
}
