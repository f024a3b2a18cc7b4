//! Read-modify-writes and deletes that race, forced through the table port: a [`Hooked`]
//! table runs another writer at the exact moment between a read and the write that
//! follows it. Users, tokens and grants never lose a concurrent change, and a deleted
//! user or repository leaves nothing that a later one under its name inherits.
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use depot_core::auth::{Accounts, Authenticator, Authorizer, NewPermission, NewUser, UserUpdate};
use depot_core::model::{Action, Identity, PermUser, ResourceType};
use depot_core::registry::{NewProject, NewRepository, Registry};
use depot_core::store::schema::{permissions_partition, repo_partition, user_key, user_tokens_partition};
use depot_core::store::{Cond, Item, Key, Page, Query, Table, TxOp};
use depot_core::{Error, Result};

/// When a [`Hooked`] table runs its hook: once, right after this read answered.
#[derive(Clone)]
pub(crate) enum After {
    Get(Key),
    Query(String),
}

/// A table that runs a hook once, right after a chosen read has answered and before the
/// caller goes on: another writer landing between a read and its write.
pub(crate) struct Hooked {
    pub inner: Arc<dyn Table>,
    hook: Mutex<Option<(After, futures::future::BoxFuture<'static, ()>)>>,
    ran: Mutex<bool>,
}

impl Hooked {
    pub fn new(inner: Arc<dyn Table>) -> Arc<Self> {
        Arc::new(Hooked { inner, hook: Mutex::new(None), ran: Mutex::new(false) })
    }

    pub fn arm(&self, after: After, hook: impl std::future::Future<Output = ()> + Send + 'static) {
        *self.hook.lock().unwrap() = Some((after, Box::pin(hook)));
        *self.ran.lock().unwrap() = false;
    }

    pub fn ran(&self) -> bool {
        *self.ran.lock().unwrap()
    }

    async fn fire(&self, hit: impl Fn(&After) -> bool) {
        let hook = {
            let mut armed = self.hook.lock().unwrap();
            match armed.as_ref() {
                Some((after, _)) if hit(after) => armed.take().map(|(_, h)| h),
                _ => None,
            }
        };
        if let Some(hook) = hook {
            hook.await;
            *self.ran.lock().unwrap() = true;
        }
    }
}

#[async_trait]
impl Table for Hooked {
    async fn get(&self, key: &Key) -> Result<Option<Item>> {
        let got = self.inner.get(key).await?;
        self.fire(|a| matches!(a, After::Get(k) if k == key)).await;
        Ok(got)
    }
    async fn put(&self, item: Item, cond: Cond) -> Result<()> {
        self.inner.put(item, cond).await
    }
    async fn delete(&self, key: &Key, cond: Cond) -> Result<()> {
        self.inner.delete(key, cond).await
    }
    async fn update(&self, key: &Key, set: Item, add: &[(String, i64)], cond: Cond) -> Result<Item> {
        self.inner.update(key, set, add, cond).await
    }
    async fn transact(&self, ops: Vec<TxOp>) -> Result<()> {
        self.inner.transact(ops).await
    }
    async fn query(&self, q: &Query) -> Result<Page> {
        let page = self.inner.query(q).await?;
        self.fire(|a| matches!(a, After::Query(pk) if *pk == q.pk)).await;
        Ok(page)
    }
}

fn admin() -> Identity {
    Identity::User { id: "root".into(), admin: true, epoch: 0 }
}

/// Accounts over `table`, with a system administrator `root` (password `root-password`).
async fn accounts_over(table: Arc<dyn Table>) -> (Arc<Accounts>, Arc<Authenticator>) {
    let authn = Arc::new(Authenticator::with_cache_ttl(table.clone(), None, std::time::Duration::ZERO));
    let accounts = Arc::new(Accounts::new(table.clone(), authn.clone(), Arc::new(Authorizer::new(table))));
    (accounts, authn)
}

async fn new_user(accounts: &Accounts, id: &str, admin_flag: bool) {
    let req = NewUser { user_id: id.into(), name: None, pwd: format!("{id}-password"), admin: admin_flag };
    accounts.create_user(&admin(), req).await.unwrap();
}

fn basic(user: &str, secret: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}")))
}

/// Two administrators change one user at once (one its admin flag, the other its
/// name): the edit that loses the race reads again and applies itself to what the other
/// wrote, so that neither is undone. And a user's own edit that was authenticated before
/// an administrator demoted it and reset its password is refused, not applied after it.
pub(crate) async fn accounts_edits_never_undo_each_other(t: Arc<dyn Table>) {
    let hooked = Hooked::new(t.clone());
    let (plain, authn) = accounts_over(t.clone()).await;
    let (racing, _) = accounts_over(hooked.clone()).await;
    new_user(&plain, "eve", true).await;
    let demote = |pwd: Option<&str>| {
        let (plain, pwd) = (plain.clone(), pwd.map(str::to_string));
        async move {
            let req = UserUpdate { admin: Some(false), pwd, name: None };
            assert!(!plain.update_user(&admin(), "eve", req).await.unwrap().admin);
        }
    };
    hooked.arm(After::Get(user_key("eve")), demote(None));
    let rename = UserUpdate { name: Some("Eve".into()), ..Default::default() };
    let v = racing.update_user(&admin(), "eve", rename).await.unwrap();
    assert!(hooked.ran(), "the demotion ran between the rename's read and its write");
    assert_eq!((v.name.as_str(), v.admin), ("Eve", false), "the rename applied itself to the demoted user");
    let now = plain.get_user(&admin(), "eve").await.unwrap();
    assert_eq!((now.name.as_str(), now.admin), ("Eve", false));

    // eve's own edit, authenticated before the reset, lands after it: refused.
    plain.update_user(&admin(), "eve", UserUpdate { admin: Some(true), ..Default::default() }).await.unwrap();
    let me = authn.authenticate(Some(&basic("eve", "eve-password"))).await.unwrap();
    hooked.arm(After::Get(user_key("eve")), demote(Some("reset-password-1")));
    let edit = UserUpdate { pwd: Some("leaked-password".into()), ..Default::default() };
    let refused = racing.update_user(&me, "eve", edit).await;
    assert!(hooked.ran());
    assert!(matches!(&refused, Err(Error::Unauthenticated(m)) if m.contains("changed")), "{refused:?}");
    assert!(authn.authenticate(Some(&basic("eve", "leaked-password"))).await.is_err(), "the edit did not land");
    assert!(authn.authenticate(Some(&basic("eve", "eve-password"))).await.is_err(), "the old password is gone");
    let who = authn.authenticate(Some(&basic("eve", "reset-password-1"))).await.unwrap();
    assert_eq!((who.name(), who.is_admin()), ("eve", false));
    // So is a token it would mint with those credentials.
    assert!(plain.create_token(&me, "eve", "late", None).await.is_err());

    // A password check that read the user before a reset finishes after it: its answer
    // stands for that request, but is not cached for the next ones.
    let cached = Arc::new(Authenticator::with_cache_ttl(hooked.clone(), None, std::time::Duration::from_secs(60)));
    let resetting = Arc::new(Accounts::new(t.clone(), cached.clone(), Arc::new(Authorizer::new(t.clone()))));
    let reset = {
        let resetting = resetting.clone();
        async move {
            let req = UserUpdate { pwd: Some("reset-password-2".into()), ..Default::default() };
            resetting.update_user(&admin(), "eve", req).await.unwrap();
        }
    };
    hooked.arm(After::Get(user_key("eve")), reset);
    assert!(cached.authenticate(Some(&basic("eve", "reset-password-1"))).await.is_ok(), "checked before the reset");
    assert!(hooked.ran());
    assert!(cached.authenticate(Some(&basic("eve", "reset-password-1"))).await.is_err(), "and not cached");
}

/// A token created while its user is deleted: either refused, or removed by the
/// deletion; never one that authenticates a user created later under the same id.
pub(crate) async fn accounts_tokens_die_with_their_user(t: Arc<dyn Table>) {
    let hooked = Hooked::new(t.clone());
    let (plain, authn) = accounts_over(t.clone()).await;
    let (racing, _) = accounts_over(hooked.clone()).await;
    let me = Identity::User { id: "tim".into(), admin: false, epoch: 0 };

    // 1. The token's read of the user, then the whole deletion, then the token's write.
    new_user(&plain, "tim", false).await;
    let delete = {
        let plain = plain.clone();
        async move { plain.delete_user(&admin(), "tim").await.unwrap() }
    };
    hooked.arm(After::Get(user_key("tim")), delete);
    let refused = racing.create_token(&me, "tim", "ci", None).await;
    assert!(hooked.ran());
    assert!(matches!(&refused, Err(e) if e.is_not_found()), "{refused:?}");

    // 2. The deletion has marked the user and listed its tokens when one is created.
    new_user(&plain, "tim", false).await;
    let minted: Arc<Mutex<Option<Result<String>>>> = Arc::default();
    let create = {
        let (plain, minted, me) = (plain.clone(), minted.clone(), me.clone());
        async move {
            let r = plain.create_token(&me, "tim", "late", None).await.map(|(_, secret)| secret);
            *minted.lock().unwrap() = Some(r);
        }
    };
    hooked.arm(After::Query(user_tokens_partition("tim")), create);
    racing.delete_user(&admin(), "tim").await.unwrap();
    assert!(hooked.ran());
    let late = minted.lock().unwrap().take().unwrap();
    assert!(matches!(&late, Err(e) if e.is_not_found()), "a token for a user being deleted: {late:?}");

    // 3. A token of the first incarnation presented to the second: refused.
    new_user(&plain, "tim", false).await;
    let (_, old_secret) = plain.create_token(&me, "tim", "old", None).await.unwrap();
    let fresh = Authenticator::with_cache_ttl(t.clone(), None, std::time::Duration::ZERO);
    plain.delete_user(&admin(), "tim").await.unwrap();
    new_user(&plain, "tim", true).await;
    assert!(plain.list_tokens(&admin(), "tim").await.unwrap().is_empty(), "the new user starts with no token");
    let stale = depot_core::store::schema::token_key(&hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        old_secret.as_bytes(),
    )));
    assert!(t.get(&stale).await.unwrap().is_none(), "the deletion removed the old token");
    assert!(fresh.authenticate(Some(&format!("Bearer {old_secret}"))).await.is_err());
    let _ = authn;
}

fn grant(project: &str, users: &[&str], repos: &[&str]) -> NewPermission {
    NewPermission {
        perm_name: "g".into(),
        project_id: project.into(),
        resource_type: if repos.is_empty() { ResourceType::Project } else { ResourceType::Repo },
        repos: repos.iter().map(|r| r.to_string()).collect(),
        users: users.iter().map(|u| PermUser { id: u.to_string(), action: vec![Action::Read] }).collect(),
    }
}

async fn project_with_repo(t: Arc<dyn Table>, project: &str, repo: &str) -> (Arc<Registry>, crate::common::Guard) {
    let (blobs, guard) = crate::common::fs_blobs().await;
    let reg = Arc::new(Registry::new(t, blobs));
    reg.create_project(NewProject { name: project.into(), ..Default::default() }, "root").await.unwrap();
    let nr = NewRepository {
        project_id: project.into(),
        name: repo.into(),
        repo_type: depot_core::model::RepoType::Generic,
        public: false,
        description: None,
        allow_overwrite: None,
        configuration: None,
    };
    reg.create_repository(nr, "root").await.unwrap();
    (reg, guard)
}

/// Grants created while what they name is deleted are refused; two deletions that edit
/// one grant at once both take effect.
pub(crate) async fn accounts_grants_die_with_what_they_name(t: Arc<dyn Table>) {
    let hooked = Hooked::new(t.clone());
    let (plain, _) = accounts_over(t.clone()).await;
    let (racing, _) = accounts_over(hooked.clone()).await;
    let (reg, _guard) = project_with_repo(t.clone(), "gp", "r").await;
    for u in ["ann", "bob", "cid"] {
        new_user(&plain, u, false).await;
    }
    // A grant naming a user whose deletion has begun.
    let made: Arc<Mutex<Option<Result<()>>>> = Arc::default();
    let create = {
        let (plain, made) = (plain.clone(), made.clone());
        async move {
            let r = plain.create_permission(&admin(), grant("gp", &["ann"], &[])).await.map(drop);
            *made.lock().unwrap() = Some(r);
        }
    };
    hooked.arm(After::Query(user_tokens_partition("ann")), create);
    racing.delete_user(&admin(), "ann").await.unwrap();
    assert!(hooked.ran());
    let r = made.lock().unwrap().take().unwrap();
    assert!(matches!(&r, Err(Error::NotFound { .. })), "{r:?}");
    new_user(&plain, "ann", false).await;
    assert!(plain.list_permissions(&admin(), "gp", None, None).await.unwrap().is_empty(), "the new ann inherits nothing");

    // A grant naming a repository that a forced delete is emptying.
    let hooked_reg = Registry::new(hooked.clone(), reg.blobs.clone());
    let create = {
        let (plain, made) = (plain.clone(), made.clone());
        async move {
            let r = plain.create_permission(&admin(), grant("gp", &["bob"], &["r"])).await.map(drop);
            *made.lock().unwrap() = Some(r);
        }
    };
    hooked.arm(After::Query(repo_partition("gp", "r")), create);
    hooked_reg.delete_repository("gp", "r", true).await.unwrap();
    assert!(hooked.ran());
    let r = made.lock().unwrap().take().unwrap();
    assert!(matches!(&r, Err(Error::NotFound { .. })), "{r:?}");
    assert!(plain.list_permissions(&admin(), "gp", None, None).await.unwrap().is_empty());

    // Two users leave one grant at once: the second edit lost the race, read again, and
    // removed its user from what the first left.
    plain.create_permission(&admin(), grant("gp", &["bob", "cid", "ann"], &[])).await.unwrap();
    let other = {
        let plain = plain.clone();
        async move { plain.delete_user(&admin(), "cid").await.unwrap() }
    };
    hooked.arm(After::Query(permissions_partition("gp")), other);
    racing.delete_user(&admin(), "bob").await.unwrap();
    assert!(hooked.ran());
    let left = plain.list_permissions(&admin(), "gp", None, None).await.unwrap();
    let users: Vec<_> = left.iter().flat_map(|g| g.users.iter().map(|u| u.id.clone())).collect();
    assert_eq!(users, ["ann"], "{left:?}");
}

/// The administrator from `DEPOT_ADMIN_PASSWORD` is created once in a table's life: not
/// again after it is deleted, not when the table already holds an administrator.
pub(crate) async fn accounts_bootstrap_admin_once(t: Arc<dyn Table>) {
    let first = Authenticator::new(t.clone(), Some("first-password".into()));
    assert_eq!(first.bootstrap_admin(false).await.unwrap(), None);
    assert!(t.get(&user_key("admin")).await.unwrap().is_some(), "created on first start");
    let (accounts, _) = accounts_over(t.clone()).await;
    new_user(&accounts, "root", true).await;
    accounts.delete_user(&admin(), "admin").await.unwrap();
    let later = Authenticator::new(t.clone(), Some("second-password".into()));
    assert_eq!(later.bootstrap_admin(true).await.unwrap(), None);
    assert!(t.get(&user_key("admin")).await.unwrap().is_none(), "a deleted admin stays deleted");
    // The operator's way back.
    assert!(accounts.operator_set_password("admin", "recovered-password".into()).await.unwrap());
    let who = later.authenticate(Some(&basic("admin", "recovered-password"))).await.unwrap();
    assert_eq!((who.name(), who.is_admin()), ("admin", true));
    assert!(!accounts.operator_set_password("admin", "recovered-again".into()).await.unwrap());
}
