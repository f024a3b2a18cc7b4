//! Users, API tokens and permission grants on bkrepo's `/auth/api/...` routes.
//! The rules (who may do what) live in `depot_core::auth`; this file translates.
use axum::extract::State;
use depot_core::auth::{Action, NewPermission, NewUser, PermUser, ResourceType, UserUpdate};
use depot_core::http::{AppState, Caller};
use serde::Deserialize;
use serde_json::json;

use crate::envelope::{ok, ApiError, ApiResult};
use crate::extract::{Admin, BkJson, BkPath, BkQuery, User};
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

pub async fn create_user(
    State(st): State<AppState>,
    Admin(who): Admin,
    body: Result<BkJson<CreateUser>, ApiError>,
) -> ApiResult {
    let BkJson(b) = body?;
    let req =
        NewUser { user_id: required(b.user_id, "userId")?, name: b.name, pwd: required(b.pwd, "pwd")?, admin: b.admin };
    Ok(ok(st.auth.create_user(&who, req).await?))
}

pub async fn list_users(State(st): State<AppState>, caller: Caller) -> ApiResult {
    let who = caller.identity()?;
    Ok(ok(st.auth.list_users(&who).await?))
}

pub async fn user_detail(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<BkPath<String>, ApiError>,
) -> ApiResult {
    let who = caller.identity()?;
    let BkPath(uid) = path?;
    Ok(ok(st.auth.get_user(&who, &uid).await?))
}

pub async fn update_user(
    State(st): State<AppState>,
    User(who): User,
    path: Result<BkPath<String>, ApiError>,
    body: Result<BkJson<UpdateUser>, ApiError>,
) -> ApiResult {
    let (BkPath(uid), BkJson(b)) = (path?, body?);
    let req = UserUpdate { name: b.name, pwd: b.pwd, admin: b.admin };
    Ok(ok(st.auth.update_user(&who, &uid, req).await?))
}

pub async fn delete_user(
    State(st): State<AppState>,
    Admin(who): Admin,
    path: Result<BkPath<String>, ApiError>,
) -> ApiResult {
    let BkPath(uid) = path?;
    st.auth.delete_user(&who, &uid).await?;
    Ok(ok(true))
}

pub async fn create_token(
    State(st): State<AppState>,
    User(who): User,
    path: Result<BkPath<(String, String)>, ApiError>,
    query: Result<BkQuery<TokenQuery>, ApiError>,
) -> ApiResult {
    let (BkPath((uid, name)), BkQuery(q)) = (path?, query?);
    let (token, secret) = st.auth.create_token(&who, &uid, &name, q.expired_at.as_deref()).await?;
    Ok(ok(json!({
        "id": secret,
        "name": token.name,
        "userId": token.user_id,
        "createdAt": token.created_at,
        "expiredAt": token.expired_at,
    })))
}

pub async fn list_tokens(
    State(st): State<AppState>,
    User(who): User,
    path: Result<BkPath<String>, ApiError>,
) -> ApiResult {
    let BkPath(uid) = path?;
    Ok(ok(st.auth.list_tokens(&who, &uid).await?))
}

pub async fn delete_token(
    State(st): State<AppState>,
    User(who): User,
    path: Result<BkPath<(String, String)>, ApiError>,
) -> ApiResult {
    let BkPath((uid, name)) = path?;
    st.auth.delete_token(&who, &uid, &name).await?;
    Ok(ok(true))
}

pub async fn create_permission(
    State(st): State<AppState>,
    User(who): User,
    body: Result<BkJson<CreatePermission>, ApiError>,
) -> ApiResult {
    let BkJson(b) = body?;
    let mut users = Vec::new();
    for u in b.users {
        let action = u.action.iter().map(|a| Action::parse(a)).collect::<Result<Vec<_>, _>>()?;
        users.push(PermUser { id: required(u.id, "users[].id")?, action });
    }
    let req = NewPermission {
        perm_name: required(b.perm_name, "permName")?,
        project_id: required(b.project_id, "projectId")?,
        resource_type: ResourceType::parse(&required(b.resource_type, "resourceType")?)?,
        repos: b.repos,
        users,
    };
    Ok(ok(st.auth.create_permission(&who, req).await?.id))
}

pub async fn list_permissions(
    State(st): State<AppState>,
    User(who): User,
    query: Result<BkQuery<ProjectQuery>, ApiError>,
) -> ApiResult {
    let BkQuery(q) = query?;
    let project = required(q.project_id, "projectId")?;
    Ok(ok(st.auth.list_permissions(&who, &project).await?))
}

pub async fn delete_permission(
    State(st): State<AppState>,
    User(who): User,
    path: Result<BkPath<String>, ApiError>,
) -> ApiResult {
    let BkPath(id) = path?;
    st.auth.delete_permission(&who, &id).await?;
    Ok(ok(true))
}
