//! Users, API tokens and permission grants on bkrepo's `/auth/api/...` routes.
//! The rules (who may do what) live in `depot_core::auth`; this file translates.
use axum::extract::State;
use axum::response::Response;
use depot_core::auth::{generate_password, NewPermission, NewUser, PermissionChange, UserUpdate};
use depot_core::http::bkrepo::ok;
use depot_core::http::extract::{Json, Path, Query};
use depot_core::http::{AppState, Scope};
use depot_core::model::{Action, PermUser, Permission, ResourceType};
use depot_core::{Error, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::projects::required;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateUser {
    user_id: Option<String>,
    name: Option<String>,
    pwd: Option<String>,
    #[serde(default)]
    admin: bool,
}

#[derive(Deserialize)]
pub struct UpdateUser {
    name: Option<String>,
    pwd: Option<String>,
    admin: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenQuery {
    expired_at: Option<String>,
}

/// A grant's user: bkrepo's user id (with the grant's `actions`), or depot's older
/// `{id, action}`.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum GrantUser {
    Id(String),
    WithActions {
        id: Option<String>,
        #[serde(default)]
        action: Vec<String>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatePermission {
    perm_name: Option<String>,
    project_id: Option<String>,
    resource_type: Option<String>,
    #[serde(default)]
    repos: Vec<String>,
    #[serde(default)]
    users: Vec<GrantUser>,
    #[serde(default)]
    actions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionQuery {
    project_id: Option<String>,
    resource_type: Option<String>,
    repo_name: Option<String>,
}

/// bkrepo's `UpdatePermissionUserRequest`, `UpdatePermissionActionRequest` and
/// `UpdatePermissionRepoRequest`, in one.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdatePermission {
    permission_id: Option<String>,
    user_id: Option<Vec<String>>,
    actions: Option<Vec<String>>,
    repos: Option<Vec<String>>,
}

/// Creates a user: `data: true`, also when it exists already (as bkrepo answers); a
/// missing `pwd` gets a generated one (the user then signs in with a token).
pub async fn create_user(State(st): State<AppState>, scope: Scope, Json(b): Json<CreateUser>) -> Result<Response> {
    let pwd = b.pwd.filter(|p| !p.is_empty()).unwrap_or_else(generate_password);
    let user_id = required(b.user_id, "userId")?;
    depot_core::model::check_new_user_id(&user_id)?;
    let req = NewUser { user_id, name: b.name, pwd, admin: b.admin };
    match st.accounts.create_user(scope.who(), req).await {
        Ok(_) | Err(Error::Exists { .. }) => Ok(ok(true)),
        Err(e) => Err(e),
    }
}

pub async fn list_users(State(st): State<AppState>, scope: Scope) -> Result<Response> {
    Ok(ok(st.accounts.list_users(scope.who()).await?))
}

/// The caller.
pub async fn user_info(State(st): State<AppState>, scope: Scope) -> Result<Response> {
    let me = scope.who().require_user()?.to_string();
    Ok(ok(st.accounts.get_user(scope.who(), &me).await?))
}

/// A page of the users, by id.
pub async fn user_page(State(st): State<AppState>, scope: Scope, Path((number, size)): Path<(depot_core::registry::PageParam, depot_core::registry::PageParam)>) -> Result<Response> {
    let users = st.accounts.list_users(scope.who()).await?;
    Ok(ok(crate::packages::page_of_list(users, number, size)?))
}

pub async fn user_detail(State(st): State<AppState>, scope: Scope, Path(uid): Path<String>) -> Result<Response> {
    Ok(ok(st.accounts.get_user(scope.who(), &uid).await?))
}

pub async fn update_user(
    State(st): State<AppState>,
    scope: Scope,
    Path(uid): Path<String>,
    Json(b): Json<UpdateUser>,
) -> Result<Response> {
    let req = UserUpdate { name: b.name, pwd: b.pwd, admin: b.admin };
    st.accounts.update_user(scope.who(), &uid, req).await?;
    Ok(ok(true))
}

pub async fn delete_user(State(st): State<AppState>, scope: Scope, Path(uid): Path<String>) -> Result<Response> {
    st.accounts.delete_user(scope.who(), &uid).await?;
    Ok(ok(true))
}

pub async fn create_token(
    State(st): State<AppState>,
    scope: Scope,
    Path((uid, name)): Path<(String, String)>,
    Query(q): Query<TokenQuery>,
) -> Result<Response> {
    let expiry = q.expired_at.as_deref().filter(|e| !e.is_empty());
    let (token, secret) = match st.accounts.create_token(scope.who(), &uid, &name, expiry).await {
        Ok((t, s)) => (t, Some(s)),
        // POSTed again with an expiry: renewed, its secret unchanged (and not shown again).
        Err(Error::Exists { .. }) if expiry.is_some() => {
            (st.accounts.renew_token(scope.who(), &uid, &name, expiry.unwrap_or_default()).await?, None)
        }
        Err(e) => return Err(e),
    };
    use base64::Engine;
    let basic = secret.as_ref().map(|s| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{uid}:{s}"))));
    Ok(ok(json!({
        "id": secret,
        "name": token.name,
        "userId": token.user_id,
        "createdAt": token.created_at,
        "expiredAt": token.expired_at,
        "authorization": basic.map(|b| json!({ "basic": b })),
    })))
}

pub async fn list_tokens(State(st): State<AppState>, scope: Scope, Path(uid): Path<String>) -> Result<Response> {
    Ok(ok(st.accounts.list_tokens(scope.who(), &uid).await?))
}

pub async fn delete_token(
    State(st): State<AppState>,
    scope: Scope,
    Path((uid, name)): Path<(String, String)>,
) -> Result<Response> {
    // Deleting a token that does not exist succeeds, as in bkrepo.
    st.accounts.delete_token(scope.who(), &uid, &name).await?;
    Ok(ok(true))
}

fn actions_of(names: &[String]) -> Result<Vec<Action>> {
    names.iter().map(|a| Action::parse(a)).collect()
}

/// Creates a grant: bkrepo's `users` (ids) with `actions` for all of them, or depot's
/// older `users: [{id, action}]`. Answers `true`.
pub async fn create_permission(
    State(st): State<AppState>,
    scope: Scope,
    Json(b): Json<CreatePermission>,
) -> Result<Response> {
    let shared = actions_of(&b.actions)?;
    let mut users = Vec::new();
    for u in b.users {
        users.push(match u {
            GrantUser::Id(id) => PermUser { id, action: shared.clone() },
            GrantUser::WithActions { id, action } => {
                let action = if action.is_empty() { shared.clone() } else { actions_of(&action)? };
                PermUser { id: required(id, "users[].id")?, action }
            }
        });
    }
    let resource_type = match b.resource_type.filter(|t| !t.is_empty()) {
        Some(t) => ResourceType::parse(&t)?,
        None => ResourceType::Repo,
    };
    let req = NewPermission {
        perm_name: required(b.perm_name, "permName")?,
        project_id: required(b.project_id, "projectId")?,
        resource_type,
        repos: b.repos,
        users,
    };
    st.accounts.create_permission(scope.who(), req).await?;
    Ok(ok(true))
}

/// A grant as bkrepo's `Permission.kt` has it: its users' ids and the actions they hold.
fn permission_view(p: &Permission) -> Value {
    let mut actions: Vec<&str> = p.users.iter().flat_map(|u| u.action.iter().map(|a| a.as_str())).collect();
    actions.sort();
    actions.dedup();
    let updated_by = if p.updated_by.is_empty() { &p.created_by } else { &p.updated_by };
    let updated_at = if p.updated_date.is_empty() { &p.created_date } else { &p.updated_date };
    json!({
        "id": p.id,
        "resourceType": p.resource_type.as_str(),
        "projectId": p.project_id,
        "permName": p.perm_name,
        "repos": p.repos,
        "includePattern": [],
        "excludePattern": [],
        "users": p.users.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        "roles": [],
        "actions": actions,
        "createBy": p.created_by,
        "createAt": p.created_date,
        "updateBy": updated_by,
        "updateAt": updated_at,
    })
}

pub async fn list_permissions(
    State(st): State<AppState>,
    scope: Scope,
    Query(q): Query<PermissionQuery>,
) -> Result<Response> {
    let project = required(q.project_id, "projectId")?;
    let resource_type = q.resource_type.filter(|t| !t.is_empty()).map(|t| ResourceType::parse(&t)).transpose()?;
    let repo = q.repo_name.filter(|r| !r.is_empty());
    let perms = st.accounts.list_permissions(scope.who(), &project, resource_type, repo.as_deref()).await?;
    Ok(ok(perms.iter().map(permission_view).collect::<Vec<_>>()))
}

/// Revokes a grant: `true`, or `false` when there was none (bkrepo's answers).
pub async fn delete_permission(State(st): State<AppState>, scope: Scope, Path(id): Path<String>) -> Result<Response> {
    Ok(ok(st.accounts.delete_permission(scope.who(), &id).await?))
}

/// bkrepo's grant updates: `PUT /auth/api/permission/user` (`userId`), `/action`
/// (`actions`) and `/repo` (`repos`), each with `permissionId`. Answers `true`.
pub async fn update_permission_users(st: State<AppState>, scope: Scope, b: Json<UpdatePermission>) -> Result<Response> {
    update_permission(st, scope, b, "userId").await
}

pub async fn update_permission_actions(st: State<AppState>, scope: Scope, b: Json<UpdatePermission>) -> Result<Response> {
    update_permission(st, scope, b, "actions").await
}

pub async fn update_permission_repos(st: State<AppState>, scope: Scope, b: Json<UpdatePermission>) -> Result<Response> {
    update_permission(st, scope, b, "repos").await
}

async fn update_permission(State(st): State<AppState>, scope: Scope, Json(b): Json<UpdatePermission>, field: &str) -> Result<Response> {
    let id = required(b.permission_id, "permissionId")?;
    let change = match field {
        "userId" => PermissionChange::Users(b.user_id.ok_or_else(|| Error::missing("userId"))?),
        "actions" => PermissionChange::Actions(actions_of(&b.actions.ok_or_else(|| Error::missing("actions"))?)?),
        _ => PermissionChange::Repos(b.repos.ok_or_else(|| Error::missing("repos"))?),
    };
    st.accounts.update_permission(scope.who(), &id, change).await?;
    Ok(ok(true))
}
