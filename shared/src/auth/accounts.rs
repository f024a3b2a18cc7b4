//! Administration: users, API tokens and permission grants. Who may administer what is
//! decided here, from the caller's identity (a user may edit itself; grants need MANAGE
//! on their project).

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use std::sync::Arc;

use super::{hash_password_with, Authenticator, Authorizer, UserRecord};
use crate::error::Kind;
use crate::model::{
    format_iso, now_iso, parse_iso, printable, validate_name, Action, Identity, PermUser, Permission, ResourceType,
};
use crate::store::schema::{
    forget_user_grants, from_item, permission_key, permission_name_key, permission_pointer_key, permissions_partition, project_key,
    repo_key, revision_cond, revision_of, set_next_revision, to_item, token_key, user_key, user_token_key,
    user_tokens_partition, DELETING_ATTR, REVISION_ATTR, RMW_ATTEMPTS, USERS_PK, USER_SK_PREFIX,
};
use crate::store::{query_all, Cond, Item, Query, Table, TxOp};
use crate::{Error, Result};

/// Every token secret starts with this, so that a Basic password is only looked up as a
/// token when it can be one.
pub const TOKEN_PREFIX: &str = "dpt_";

/// Shortest password accepted for a new or changed password.
pub const MIN_PASSWORD_LEN: usize = 8;

/// What a caller sends to create a user.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub user_id: String,
    pub name: Option<String>,
    pub pwd: String,
    pub admin: bool,
}

/// What a caller sends to change a user; absent fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub name: Option<String>,
    pub pwd: Option<String>,
    pub admin: Option<bool>,
}

/// A user as the API shows it: never the password hash.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub user_id: String,
    pub name: String,
    pub admin: bool,
    pub created_date: String,
    pub last_modified_date: String,
}

impl From<UserRecord> for UserView {
    fn from(u: UserRecord) -> Self {
        UserView {
            user_id: u.user_id,
            name: u.name,
            admin: u.admin,
            created_date: u.created_date,
            last_modified_date: u.last_modified_date,
        }
    }
}

/// A stored API token. `hash` is the sha256 of the secret; the secret itself is shown
/// once, when the token is created, and never stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    pub user_id: String,
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub hash: String,
    pub created_at: String,
    pub expired_at: Option<String>,
    /// The incarnation of the user it was created for (`UserRecord::uid`).
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub user_uid: String,
}

impl Token {
    pub(super) fn expired(&self, now: OffsetDateTime) -> bool {
        self.expired_at.as_deref().and_then(parse_iso).is_some_and(|t| t <= now)
    }
}

pub(super) fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn check_password(pwd: &str) -> Result<()> {
    if pwd.chars().count() < MIN_PASSWORD_LEN || pwd.len() > 1024 || pwd.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "a password needs {MIN_PASSWORD_LEN} to 1024 characters and no control characters"
        )));
    }
    Ok(())
}

fn check_display_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "invalid user name '{}': 1-128 characters without control characters",
            printable(name)
        )));
    }
    Ok(())
}

/// Reads `expiredAt`: an ISO date-time (UTC with `Z`, an offset, or bkrepo's local form)
/// or milliseconds since the epoch. It must lie in the future.
fn parse_expiry(s: &str) -> Result<String> {
    let t = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<i128>().ok().and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok())
    } else {
        parse_iso(s)
    };
    let t = t.ok_or_else(|| {
        Error::Invalid(format!(
            "invalid expiredAt '{}': use an ISO date-time such as 2030-01-31T00:00:00Z, or epoch milliseconds",
            printable(s)
        ))
    })?;
    if t <= OffsetDateTime::now_utc() {
        return Err(Error::Invalid(format!("expiredAt '{}' is in the past", printable(s))));
    }
    Ok(format_iso(t))
}

/// A caller may act on a user's own things when it is that user or an administrator.
fn require_self_or_admin<'a>(who: &'a Identity, user_id: &str) -> Result<&'a str> {
    let me = who.require_user()?;
    if me == user_id || who.is_admin() {
        Ok(me)
    } else {
        Err(Error::Forbidden(format!("user [{me}] may not act for user [{}]", printable(user_id))))
    }
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

/// The most users and repositories one grant names: each is checked in the grant's
/// transaction, and a DynamoDB transaction holds at most 100 operations.
pub const MAX_GRANT_NAMES: usize = 90;

/// A user acting on itself must have been verified at the user's current credential
/// epoch: a request authenticated before an administrator reset its password (or changed
/// its admin flag) does not land after it.
fn check_epoch(who: &Identity, user: &UserRecord) -> Result<()> {
    if who.name() == user.user_id && who.epoch() != user.epoch {
        return Err(Error::Unauthenticated(format!(
            "the credentials of user [{}] changed while this request ran; sign in again",
            user.user_id
        )));
    }
    Ok(())
}

/// The condition that a user is the one read (the same incarnation) and not being deleted.
fn live_user(user: &UserRecord) -> Cond {
    let same = match user.uid.as_str() {
        "" => Cond::Exists,
        uid => Cond::Eq("uid".into(), uid.into()),
    };
    Cond::All(vec![same, Cond::Lacks("deleting".into())])
}

/// Administration of users, tokens and grants.
pub struct Accounts {
    table: Arc<dyn Table>,
    /// Whose cached credentials to drop when a user changes.
    authenticator: Arc<Authenticator>,
    authorizer: Arc<Authorizer>,
}

impl Accounts {
    pub fn new(table: Arc<dyn Table>, authenticator: Arc<Authenticator>, authorizer: Arc<Authorizer>) -> Self {
        Accounts { table, authenticator, authorizer }
    }

    async fn load_user(&self, user_id: &str) -> Result<UserRecord> {
        validate_name("user id", user_id)?;
        match self.table.get(&user_key(user_id)).await? {
            Some(item) => from_item(item),
            None => Err(Error::not_found(Kind::User, user_id)),
        }
    }

    /// Creates a user. Administrators only.
    pub async fn create_user(&self, who: &Identity, req: NewUser) -> Result<UserView> {
        who.require_admin()?;
        self.add_user(req).await
    }

    /// Creates an ordinary user (never an administrator) without a caller: the strux
    /// surface's open sign-up, as the strux service has it.
    /// Sign-ups are counted per client address (`DEPOT_SIGN_UPS_PER_ADDRESS` a minute).
    pub async fn sign_up(&self, user_id: &str, pwd: &str, client: Option<std::net::IpAddr>) -> Result<UserView> {
        self.authenticator.count_sign_up(client)?;
        self.add_user(NewUser { user_id: user_id.into(), name: None, pwd: pwd.into(), admin: false }).await
    }

    async fn add_user(&self, req: NewUser) -> Result<UserView> {
        validate_name("user id", &req.user_id)?;
        let name = req.name.filter(|n| !n.is_empty()).unwrap_or_else(|| req.user_id.clone());
        check_display_name(&name)?;
        check_password(&req.pwd)?;
        let pwd = req.pwd;
        let pwd_hash = self.authenticator.slow(move |b| hash_password_with(&pwd, b)).await??;
        let user = UserRecord::new(req.user_id, name, pwd_hash, req.admin);
        self.table
            .put(user.new_item()?, Cond::NotExists)
            .await
            .map_err(|e| e.on_conflict(|| Error::exists(Kind::User, &user.user_id)))?;
        Ok(user.into())
    }

    /// Sets a user's password as an operator with access to the storage (`depot admin
    /// set-password`), creating the user as a system administrator when it does not
    /// exist. Answers whether it created the user. The way back from a lost or deleted
    /// administrator: the bootstrap creates one only once.
    pub async fn operator_set_password(&self, user_id: &str, pwd: String) -> Result<bool> {
        validate_name("user id", user_id)?;
        check_password(&pwd)?;
        let hash = self.authenticator.slow(move |b| hash_password_with(&pwd, b)).await??;
        for _ in 0..RMW_ATTEMPTS {
            let written = match self.table.get(&user_key(user_id)).await? {
                None => {
                    let user = UserRecord::new(user_id.to_string(), user_id.to_string(), hash.clone(), true);
                    self.table.put(user.new_item()?, Cond::NotExists).await.map(|()| true)
                }
                Some(item) => {
                    let rev = revision_of(&item);
                    let mut user: UserRecord = from_item(item)?;
                    user.pwd_hash = hash.clone();
                    user.epoch += 1;
                    user.last_modified_date = now_iso();
                    let mut item = to_item(&user_key(user_id), &user)?;
                    set_next_revision(&mut item, rev);
                    self.table.put(item, revision_cond(rev)).await.map(|()| false)
                }
            };
            match written {
                Ok(created) => {
                    self.authenticator.invalidate(user_id);
                    return Ok(created);
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(format!("user [{user_id}] keeps changing; retry")))
    }

    /// Whether a user exists (strux's `user-exist` asks anyone). An invalid id names no
    /// user.
    pub async fn user_exists(&self, user_id: &str) -> Result<bool> {
        if validate_name("user id", user_id).is_err() {
            return Ok(false);
        }
        Ok(self.table.get(&user_key(user_id)).await?.is_some())
    }

    /// Lists every user, by id. Administrators only.
    pub async fn list_users(&self, who: &Identity) -> Result<Vec<UserView>> {
        who.require_admin()?;
        let items = query_all(&*self.table, Query::prefix(USERS_PK, USER_SK_PREFIX)).await?;
        items.into_iter().map(|i| from_item::<UserRecord>(i).map(UserView::from)).collect()
    }

    /// One user. The user itself or an administrator.
    pub async fn get_user(&self, who: &Identity, user_id: &str) -> Result<UserView> {
        require_self_or_admin(who, user_id)?;
        Ok(self.load_user(user_id).await?.into())
    }

    /// Changes a user's name, password or admin flag. A user may change its own name and
    /// password; only an administrator may change the admin flag or another user. Drops
    /// the user's cached credentials.
    pub async fn update_user(&self, who: &Identity, user_id: &str, req: UserUpdate) -> Result<UserView> {
        require_self_or_admin(who, user_id)?;
        if req.admin.is_some() && !who.is_admin() {
            return Err(Error::Forbidden("only a system administrator may change the admin flag".into()));
        }
        validate_name("user id", user_id)?;
        if let Some(name) = &req.name {
            check_display_name(name)?;
        }
        let pwd_hash = match req.pwd {
            Some(pwd) => {
                check_password(&pwd)?;
                Some(self.authenticator.slow(move |b| hash_password_with(&pwd, b)).await??)
            }
            None => None,
        };
        // Read, change, and write back only if nobody wrote in between; else again, on
        // what the other write left (an administrator's demotion is never undone).
        for _ in 0..RMW_ATTEMPTS {
            let item = self.table.get(&user_key(user_id)).await?.ok_or_else(|| Error::not_found(Kind::User, user_id))?;
            let rev = revision_of(&item);
            let mut user: UserRecord = from_item(item)?;
            if user.deleting {
                return Err(Error::not_found_as(Kind::User, user_id, format!("user [{user_id}] is being deleted")));
            }
            check_epoch(who, &user)?;
            if let Some(name) = &req.name {
                user.name = name.clone();
            }
            if pwd_hash.is_some() || req.admin.is_some_and(|a| a != user.admin) {
                user.epoch += 1;
            }
            if let Some(h) = &pwd_hash {
                user.pwd_hash = h.clone();
            }
            if let Some(admin) = req.admin {
                user.admin = admin;
            }
            user.last_modified_date = now_iso();
            let mut item = to_item(&user_key(user_id), &user)?;
            set_next_revision(&mut item, rev);
            match self.table.put(item, revision_cond(rev)).await {
                Ok(()) => {
                    self.authenticator.invalidate(user_id);
                    return Ok(user.into());
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(format!("user [{user_id}] keeps changing; retry")))
    }

    /// Deletes a user and its tokens. Administrators only; nobody deletes itself.
    pub async fn delete_user(&self, who: &Identity, user_id: &str) -> Result<()> {
        let me = who.require_admin()?;
        validate_name("user id", user_id)?;
        if me == user_id {
            return Err(Error::Invalid("a user cannot delete itself".into()));
        }
        self.remove_user(user_id).await
    }

    /// Deletes the caller's own account, as the strux client does with the user's own
    /// password. An administrator's account is not deleted this way.
    pub async fn delete_own_account(&self, who: &Identity, user_id: &str) -> Result<()> {
        self.delete_own_account_with(who, user_id, || async { Ok(()) }).await
    }

    /// [`Accounts::delete_own_account`], running `first` once the user is marked as
    /// being deleted (so that no commit that requires it live, [`Accounts::still_signed_in`],
    /// can land after `first` has looked), before its tokens, grants and record go.
    pub async fn delete_own_account_with<F, Fut>(&self, who: &Identity, user_id: &str, first: F) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let me = who.require_user()?;
        if me != user_id {
            return Err(Error::Forbidden(format!("user [{me}] may not delete user [{}]", printable(user_id))));
        }
        if who.is_admin() {
            return Err(Error::Forbidden("a system administrator's account is deleted by another administrator".into()));
        }
        self.mark_deleting(user_id).await?;
        first().await?;
        self.remove_user(user_id).await
    }

    /// The condition a write made on a user's behalf carries, so that it lands only while
    /// the user is the one that signed in: the same incarnation, not being deleted, its
    /// credentials unchanged since (`Identity::epoch`). `Unauthenticated` when that is
    /// already false.
    pub async fn still_signed_in(&self, who: &Identity) -> Result<TxOp> {
        let id = who.require_user()?;
        let gone = || Error::Unauthenticated(format!("user [{id}] changed or went while this request ran; sign in again"));
        let key = user_key(id);
        let item = self.table.get(&key).await?.ok_or_else(gone)?;
        let epoch = match item.get("epoch") {
            Some(_) => Cond::Eq("epoch".into(), who.epoch().into()),
            None if who.epoch() == 0 => Cond::Lacks("epoch".into()),
            None => return Err(gone()),
        };
        let user: UserRecord = from_item(item)?;
        check_epoch(who, &user)?;
        if user.deleting {
            return Err(gone());
        }
        Ok(TxOp::Check { key, cond: Cond::All(vec![live_user(&user), epoch]) })
    }

    async fn mark_deleting(&self, user_id: &str) -> Result<()> {
        // Marked first: from here on no token or grant can be created for the user (they
        // require the mark absent), so the sweeps below see every one there will be.
        let mut set = Item::new();
        set.insert("deleting".into(), true.into());
        self.table
            .update(&user_key(user_id), set, &[(REVISION_ATTR.to_string(), 1)], Cond::Exists)
            .await
            .map_err(|e| e.on_conflict(|| Error::not_found(Kind::User, user_id)))?;
        self.authenticator.invalidate(user_id);
        Ok(())
    }

    async fn remove_user(&self, user_id: &str) -> Result<()> {
        self.mark_deleting(user_id).await?;
        // What the user holds goes first, the user last: a deletion that fails half-way
        // leaves a user that can be deleted again, never tokens or grants that a user
        // created later under this id would inherit.
        self.remove_tokens_of(user_id).await?;
        forget_user_grants(&*self.table, user_id).await?;
        self.table
            .delete(&user_key(user_id), Cond::Exists)
            .await
            .map_err(|e| e.on_conflict(|| Error::not_found(Kind::User, user_id)))?;
        self.authenticator.invalidate(user_id);
        Ok(())
    }

    async fn remove_tokens_of(&self, user_id: &str) -> Result<()> {
        for item in query_all(&*self.table, Query::partition(user_tokens_partition(user_id))).await? {
            let token: Token = from_item(item)?;
            self.remove_token(&token).await?;
        }
        Ok(())
    }

    /// Creates an API token for `user_id`. Returns the token with its secret, which is
    /// shown this once.
    pub async fn create_token(
        &self,
        who: &Identity,
        user_id: &str,
        name: &str,
        expired_at: Option<&str>,
    ) -> Result<(Token, String)> {
        require_self_or_admin(who, user_id)?;
        validate_name("token name", name)?;
        let expired_at = expired_at.filter(|s| !s.is_empty()).map(parse_expiry).transpose()?;
        let user = self.load_user(user_id).await?;
        if user.deleting {
            return Err(Error::not_found_as(Kind::User, user_id, format!("user [{user_id}] is being deleted")));
        }
        check_epoch(who, &user)?;
        let secret = format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
        );
        let token = Token {
            user_id: user_id.to_string(),
            name: name.to_string(),
            hash: sha256_hex(&secret),
            created_at: now_iso(),
            expired_at,
            user_uid: user.uid.clone(),
        };
        let ops = vec![
            TxOp::Put { item: to_item(&user_token_key(user_id, name), &token)?, cond: Cond::NotExists },
            TxOp::Put { item: to_item(&token_key(&token.hash), &token)?, cond: Cond::NotExists },
            // The same user, and not being deleted.
            TxOp::Check { key: user_key(user_id), cond: live_user(&user) },
        ];
        self.table.transact(ops).await.map_err(|e| {
            if e.failed_op(2) {
                return Error::not_found_as(Kind::User, user_id, format!("user [{user_id}] was deleted meanwhile"));
            }
            e.on_conflict(|| {
                Error::exists_as(
                    Kind::Token,
                    name,
                    format!("user [{user_id}] already has a token named [{name}]; send expiredAt to renew it"),
                )
            })
        })?;
        Ok((token, secret))
    }

    /// Gives an existing token a new expiry (bkrepo renews a token POSTed again with
    /// `expiredAt`). Its secret stays what it was, and is not shown again.
    pub async fn renew_token(&self, who: &Identity, user_id: &str, name: &str, expired_at: &str) -> Result<Token> {
        require_self_or_admin(who, user_id)?;
        validate_name("token name", name)?;
        let expired_at = parse_expiry(expired_at)?;
        let item = self.table.get(&user_token_key(user_id, name)).await?.ok_or_else(|| {
            Error::not_found_as(Kind::Token, name, format!("token [{name}] of user [{user_id}] not found"))
        })?;
        let mut token: Token = from_item(item)?;
        token.expired_at = Some(expired_at);
        let ops = vec![
            TxOp::Put { item: to_item(&user_token_key(user_id, name), &token)?, cond: Cond::Exists },
            TxOp::Put { item: to_item(&token_key(&token.hash), &token)?, cond: Cond::Exists },
        ];
        self.table.transact(ops).await.map_err(|e| {
            e.on_conflict(|| Error::not_found_as(Kind::Token, name, format!("token [{name}] of user [{user_id}] was deleted meanwhile")))
        })?;
        self.authenticator.invalidate(user_id);
        Ok(Token { hash: String::new(), user_uid: String::new(), ..token })
    }

    /// Lists a user's tokens, without secrets or hashes.
    pub async fn list_tokens(&self, who: &Identity, user_id: &str) -> Result<Vec<Token>> {
        require_self_or_admin(who, user_id)?;
        self.load_user(user_id).await?;
        let items = query_all(&*self.table, Query::partition(user_tokens_partition(user_id))).await?;
        items
            .into_iter()
            .map(|i| from_item::<Token>(i).map(|t| Token { hash: String::new(), user_uid: String::new(), ..t }))
            .collect()
    }

    /// Deletes one token; requests that present it fail from now on. Answers whether
    /// there was one (deleting none succeeds, as in bkrepo).
    pub async fn delete_token(&self, who: &Identity, user_id: &str, name: &str) -> Result<bool> {
        require_self_or_admin(who, user_id)?;
        validate_name("token name", name)?;
        let Some(item) = self.table.get(&user_token_key(user_id, name)).await? else { return Ok(false) };
        self.remove_token(&from_item(item)?).await?;
        self.authenticator.invalidate(user_id);
        Ok(true)
    }

    async fn remove_token(&self, token: &Token) -> Result<()> {
        let ops = vec![
            TxOp::Delete { key: user_token_key(&token.user_id, &token.name), cond: Cond::None },
            TxOp::Delete { key: token_key(&token.hash), cond: Cond::None },
        ];
        self.table.transact(ops).await
    }

    /// Creates a grant and returns it with its new id. Needs MANAGE on the project.
    pub async fn create_permission(&self, who: &Identity, req: NewPermission) -> Result<Permission> {
        self.authorizer.authorize(who, &req.project_id, None, Action::Manage).await?;
        self.insert_permission(who.name(), req).await
    }

    /// Gives the user who created a project MANAGE on it (bkrepo makes a project's creator
    /// its manager): a PROJECT grant named `creator`.
    pub async fn grant_project_creator(&self, project: &str, user_id: &str) -> Result<Permission> {
        let req = NewPermission {
            perm_name: "creator".into(),
            project_id: project.to_string(),
            resource_type: ResourceType::Project,
            repos: vec![],
            users: vec![PermUser { id: user_id.to_string(), action: vec![Action::Manage] }],
        };
        self.insert_permission(user_id, req).await
    }

    async fn insert_permission(&self, by: &str, req: NewPermission) -> Result<Permission> {
        if req.perm_name.is_empty()
            || req.perm_name.chars().count() > 128
            || req.perm_name.chars().any(char::is_control)
        {
            return Err(Error::Invalid("permName needs 1-128 characters without control characters".into()));
        }
        for r in &req.repos {
            validate_name("repository name", r)?;
        }
        // A grant names what exists, users and repositories alike: one naming a repository
        // that a later one would take the name of is refused, not kept for it.
        for r in &req.repos {
            if self.table.get(&repo_key(&req.project_id, r)).await?.is_none() {
                return Err(Error::not_found(Kind::Repository, format!("{}/{r}", req.project_id)));
            }
        }
        if req.resource_type == ResourceType::Repo && req.repos.is_empty() {
            return Err(Error::Invalid("a REPO permission needs at least one repository in repos".into()));
        }
        if req.users.is_empty() {
            return Err(Error::Invalid("users must name at least one user".into()));
        }
        // One name per grant in a scope (a project and a resource type), as bkrepo has it:
        // the grants from before the name was claimed are read, the claim settles races.
        let taken = query_all(&*self.table, Query::partition(permissions_partition(&req.project_id))).await?;
        let (perm_name, project_id) = (req.perm_name.clone(), req.project_id.clone());
        let exists = move || {
            Error::exists_as(
                Kind::Permission,
                &perm_name,
                format!("permission [{perm_name}] already exists in project [{project_id}]"),
            )
        };
        for item in taken {
            let p: Permission = from_item(item)?;
            if p.perm_name == req.perm_name && p.resource_type == req.resource_type {
                return Err(exists());
            }
        }
        if req.users.len() + req.repos.len() > MAX_GRANT_NAMES {
            return Err(Error::Invalid(format!(
                "a grant names at most {MAX_GRANT_NAMES} users and repositories together"
            )));
        }
        let mut users = Vec::with_capacity(req.users.len());
        for u in &req.users {
            validate_name("user id", &u.id)?;
            if u.action.is_empty() {
                return Err(Error::Invalid(format!("user [{}] needs at least one action", u.id)));
            }
            match self.table.get(&user_key(&u.id)).await? {
                Some(item) => {
                    let user: UserRecord = from_item(item)?;
                    if user.deleting {
                        return Err(Error::not_found(Kind::User, &u.id));
                    }
                    users.push(user);
                }
                None => return Err(Error::not_found(Kind::User, &u.id)),
            }
        }
        let perm = Permission {
            id: uuid::Uuid::new_v4().simple().to_string(),
            perm_name: req.perm_name,
            project_id: req.project_id,
            resource_type: req.resource_type,
            repos: req.repos,
            users: req.users,
            created_by: by.to_string(),
            created_date: now_iso(),
            updated_by: by.to_string(),
            updated_date: now_iso(),
        };
        let mut pointer = permission_pointer_key(&perm.id).item();
        pointer.insert("projectId".into(), perm.project_id.clone().into());
        let mut item = to_item(&permission_key(&perm.project_id, &perm.id), &perm)?;
        set_next_revision(&mut item, 0);
        let mut ops = vec![
            TxOp::Put { item, cond: Cond::NotExists },
            TxOp::Put { item: pointer, cond: Cond::NotExists },
            TxOp::Check { key: project_key(&perm.project_id), cond: Cond::Exists },
        ];
        // What it names is still there, in the same transaction: a grant cannot land for
        // a user or a repository whose deletion has begun (both mark themselves first).
        let named: Vec<(Kind, String)> = users
            .iter()
            .map(|u| (Kind::User, u.user_id.clone()))
            .chain(perm.repos.iter().map(|r| (Kind::Repository, r.clone())))
            .collect();
        for (u, user) in perm.users.iter().zip(&users) {
            ops.push(TxOp::Check { key: user_key(&u.id), cond: live_user(user) });
        }
        for r in &perm.repos {
            ops.push(TxOp::Check { key: repo_key(&perm.project_id, r), cond: Cond::Lacks(DELETING_ATTR.into()) });
        }
        let claim = ops.len();
        let mut name = permission_name_key(&perm.project_id, perm.resource_type, &perm.perm_name).item();
        name.insert("id".into(), perm.id.clone().into());
        ops.push(TxOp::Put { item: name, cond: Cond::NotExists });
        self.table.transact(ops).await.map_err(|e| {
            if e.failed_op(2) {
                return Error::not_found(Kind::Project, &perm.project_id);
            }
            if e.failed_op(claim) {
                return exists();
            }
            for (i, (kind, name)) in named.iter().enumerate() {
                if e.failed_op(3 + i) {
                    return match kind {
                        Kind::Repository => Error::not_found(*kind, format!("{}/{name}", perm.project_id)),
                        _ => Error::not_found(*kind, name),
                    };
                }
            }
            e
        })?;
        Ok(perm)
    }

    /// A project's grants, of one resource type and naming one repository when asked.
    /// Needs MANAGE on the project.
    pub async fn list_permissions(
        &self,
        who: &Identity,
        project: &str,
        resource_type: Option<ResourceType>,
        repo: Option<&str>,
    ) -> Result<Vec<Permission>> {
        self.authorizer.authorize(who, project, None, Action::Manage).await?;
        let items = query_all(&*self.table, Query::partition(permissions_partition(project))).await?;
        let all: Vec<Permission> = items.into_iter().map(from_item).collect::<Result<_>>()?;
        Ok(all
            .into_iter()
            .filter(|p| resource_type.is_none_or(|t| p.resource_type == t))
            .filter(|p| repo.is_none_or(|r| p.repos.iter().any(|x| x == r)))
            .collect())
    }

    /// The grant `id` with its project, for a caller with MANAGE there; `None` when there
    /// is no such grant.
    async fn permission_for(&self, who: &Identity, id: &str) -> Result<Option<(Permission, u64)>> {
        who.require_user()?;
        validate_name("permission id", id)?;
        let Some(pointer) = self.table.get(&permission_pointer_key(id)).await? else { return Ok(None) };
        let Some(project) = pointer.get("projectId").and_then(|v| v.as_str()).map(str::to_string) else { return Ok(None) };
        self.authorizer.authorize(who, &project, None, Action::Manage).await?;
        match self.table.get(&permission_key(&project, id)).await? {
            Some(item) => {
                let rev = revision_of(&item);
                Ok(Some((from_item(item)?, rev)))
            }
            None => Ok(None),
        }
    }

    /// Revokes a grant. Needs MANAGE on its project. Answers whether there was one.
    pub async fn delete_permission(&self, who: &Identity, id: &str) -> Result<bool> {
        let Some((perm, _)) = self.permission_for(who, id).await? else { return Ok(false) };
        let ops = vec![
            TxOp::Delete { key: permission_key(&perm.project_id, id), cond: Cond::Exists },
            TxOp::Delete { key: permission_pointer_key(id), cond: Cond::Exists },
            TxOp::Delete { key: permission_name_key(&perm.project_id, perm.resource_type, &perm.perm_name), cond: Cond::None },
        ];
        match self.table.transact(ops).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Changes a grant's users, actions or repositories (bkrepo's update routes). Needs
    /// MANAGE on its project; what it names must exist, as at creation.
    pub async fn update_permission(&self, who: &Identity, id: &str, change: PermissionChange) -> Result<Permission> {
        for _ in 0..RMW_ATTEMPTS {
            let (mut perm, rev) =
                self.permission_for(who, id).await?.ok_or_else(|| Error::not_found(Kind::Permission, id))?;
            let actions: Vec<Action> = {
                let mut all: Vec<Action> = perm.users.iter().flat_map(|u| u.action.iter().copied()).collect();
                all.sort_by_key(|a| a.as_str());
                all.dedup();
                all
            };
            match &change {
                PermissionChange::Users(ids) => {
                    if ids.is_empty() {
                        return Err(Error::Invalid("userId must name at least one user".into()));
                    }
                    for u in ids {
                        validate_name("user id", u)?;
                        let live = self.table.get(&user_key(u)).await?.map(from_item::<UserRecord>).transpose()?;
                        if live.is_none_or(|u| u.deleting) {
                            return Err(Error::not_found(Kind::User, u));
                        }
                    }
                    perm.users = ids.iter().map(|u| PermUser { id: u.clone(), action: actions.clone() }).collect();
                }
                PermissionChange::Actions(new) => {
                    if new.is_empty() {
                        return Err(Error::Invalid("actions must name at least one action".into()));
                    }
                    for u in &mut perm.users {
                        u.action = new.clone();
                    }
                }
                PermissionChange::Repos(repos) => {
                    for r in repos {
                        validate_name("repository name", r)?;
                        if self.table.get(&repo_key(&perm.project_id, r)).await?.is_none() {
                            return Err(Error::not_found(Kind::Repository, format!("{}/{r}", perm.project_id)));
                        }
                    }
                    if perm.resource_type == ResourceType::Repo && repos.is_empty() {
                        return Err(Error::Invalid("a REPO permission needs at least one repository in repos".into()));
                    }
                    perm.repos = repos.clone();
                }
            }
            if perm.users.len() + perm.repos.len() > MAX_GRANT_NAMES {
                return Err(Error::Invalid(format!("a grant names at most {MAX_GRANT_NAMES} users and repositories together")));
            }
            perm.updated_by = who.name().to_string();
            perm.updated_date = now_iso();
            let mut item = to_item(&permission_key(&perm.project_id, id), &perm)?;
            set_next_revision(&mut item, rev);
            match self.table.put(item, revision_cond(rev)).await {
                Ok(()) => return Ok(perm),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(format!("permission [{id}] keeps changing; retry")))
    }
}

/// What a grant's update changes.
#[derive(Debug, Clone)]
pub enum PermissionChange {
    Users(Vec<String>),
    Actions(Vec<Action>),
    Repos(Vec<String>),
}
