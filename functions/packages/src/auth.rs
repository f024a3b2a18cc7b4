//! Users, API tokens and permission grants on bkrepo's `/auth/api/...` routes.
//! The rules (who may do what) live in `depot_core::auth`; this file translates.
use axum::extract::State;
use axum::response::Response;
use depot_core::auth::{NewPermission, NewUser, UserUpdate};
use depot_core::http::bkrepo::ok;
use depot_core::http::extract::{Json, Path, Query};
use depot_core::http::{AppState, Scope};
use depot_core::model::{Action, PermUser, ResourceType};
use depot_core::Result;
use serde::Deserialize;
use serde_json::json;

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

#[derive(Deserialize)]
pub struct GrantUser {
    id: Option<String>,
    #[serde(default)]
    action: Vec<String>,
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
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectQuery {
    project_id: Option<String>,
}

pub async fn create_user(State(st): State<AppState>, scope: Scope, Json(b): Json<CreateUser>) -> Result<Response> {
    let req =
        NewUser { user_id: required(b.user_id, "userId")?, name: b.name, pwd: required(b.pwd, "pwd")?, admin: b.admin };
    Ok(ok(st.accounts.create_user(scope.who(), req).await?))
}

pub async fn list_users(State(st): State<AppState>, scope: Scope) -> Result<Response> {
    Ok(ok(st.accounts.list_users(scope.who()).await?))
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
    Ok(ok(st.accounts.update_user(scope.who(), &uid, req).await?))
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
    let (token, secret) = st.accounts.create_token(scope.who(), &uid, &name, q.expired_at.as_deref()).await?;
    Ok(ok(json!({
        "id": secret,
        "name": token.name,
        "userId": token.user_id,
        "createdAt": token.created_at,
        "expiredAt": token.expired_at,
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
    st.accounts.delete_token(scope.who(), &uid, &name).await?;
    Ok(ok(true))
}

pub async fn create_permission(
    State(st): State<AppState>,
    scope: Scope,
    Json(b): Json<CreatePermission>,
) -> Result<Response> {
    let mut users = Vec::new();
    for u in b.users {
        let action = u.action.iter().map(|a| Action::parse(a)).collect::<Result<Vec<_>>>()?;
        users.push(PermUser { id: required(u.id, "users[].id")?, action });
    }
    let req = NewPermission {
        perm_name: required(b.perm_name, "permName")?,
        project_id: required(b.project_id, "projectId")?,
        resource_type: ResourceType::parse(&required(b.resource_type, "resourceType")?)?,
        repos: b.repos,
        users,
    };
    Ok(ok(st.accounts.create_permission(scope.who(), req).await?.id))
}

pub async fn list_permissions(
    State(st): State<AppState>,
    scope: Scope,
    Query(q): Query<ProjectQuery>,
) -> Result<Response> {
    let project = required(q.project_id, "projectId")?;
    Ok(ok(st.accounts.list_permissions(scope.who(), &project).await?))
}

pub async fn delete_permission(State(st): State<AppState>, scope: Scope, Path(id): Path<String>) -> Result<Response> {
    st.accounts.delete_permission(scope.who(), &id).await?;
    Ok(ok(true))
}
