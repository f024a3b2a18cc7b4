//! Projects and repositories on bkrepo's routes.
use axum::extract::State;
use depot_core::auth::Action;
use depot_core::http::{AppState, Caller};
use depot_core::model::RepoType;
use depot_core::registry::{NewProject, NewRepository};
use serde::Deserialize;

use crate::envelope::{ok, ApiError, ApiResult, REPOSITORY_NOT_FOUND};
use crate::extract::{Admin, BkJson, BkPath, BkQuery, User};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateProject {
    name: Option<String>,
    display_name: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRepo {
    project_id: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    repo_type: Option<String>,
    category: Option<String>,
    public: Option<bool>,
    description: Option<String>,
    allow_overwrite: Option<bool>,
}

#[derive(Deserialize)]
pub struct Forced {
    #[serde(default)]
    forced: bool,
}

pub(crate) fn required(v: Option<String>, name: &str) -> Result<String, ApiError> {
    v.filter(|s| !s.is_empty()).ok_or_else(|| ApiError::missing(name))
}

pub async fn create_project(
    State(st): State<AppState>,
    Admin(who): Admin,
    body: Result<BkJson<CreateProject>, ApiError>,
) -> ApiResult {
    let BkJson(body) = body?;
    let req = NewProject {
        name: required(body.name, "name")?,
        display_name: body.display_name,
        description: body.description,
    };
    Ok(ok(st.registry.create_project(req, who.name()).await?))
}

pub async fn list_projects(State(st): State<AppState>, _: Admin) -> ApiResult {
    Ok(ok(st.registry.list_projects().await?))
}

pub async fn project_info(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<BkPath<String>, ApiError>,
) -> ApiResult {
    let who = caller.identity()?;
    let BkPath(project) = path?;
    st.auth.authorize(&who, &project, None, Action::Read).await?;
    Ok(ok(st.registry.get_project(&project).await?))
}

pub async fn project_exist(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<BkPath<String>, ApiError>,
) -> ApiResult {
    let who = caller.identity()?;
    let BkPath(project) = path?;
    st.auth.authorize(&who, &project, None, Action::Read).await?;
    Ok(ok(st.registry.project_exists(&project).await?))
}

pub async fn delete_project(
    State(st): State<AppState>,
    _: Admin,
    path: Result<BkPath<String>, ApiError>,
    query: Result<BkQuery<Forced>, ApiError>,
) -> ApiResult {
    let (BkPath(project), BkQuery(q)) = (path?, query?);
    st.registry.delete_project(&project, q.forced).await?;
    Ok(ok(()))
}

pub async fn create_repo(
    State(st): State<AppState>,
    User(who): User,
    body: Result<BkJson<CreateRepo>, ApiError>,
) -> ApiResult {
    let BkJson(body) = body?;
    let project_id = required(body.project_id, "projectId")?;
    st.auth.authorize(&who, &project_id, None, Action::Manage).await?;
    let by = who.name();
    let name = required(body.name, "name")?;
    let repo_type = RepoType::parse(&required(body.repo_type, "type")?)?;
    if let Some(c) = body.category.filter(|c| !c.eq_ignore_ascii_case("LOCAL")) {
        return Err(depot_core::Error::Invalid(format!(
            "unsupported repository category '{}': depot serves LOCAL repositories only",
            depot_core::model::printable(&c)
        ))
        .into());
    }
    let req = NewRepository {
        project_id,
        name,
        repo_type,
        public: body.public.unwrap_or(false),
        description: body.description,
        allow_overwrite: body.allow_overwrite,
    };
    Ok(ok(st.registry.create_repository(req, by).await?))
}

pub async fn list_repos(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<BkPath<String>, ApiError>,
) -> ApiResult {
    let who = caller.identity()?;
    let BkPath(project) = path?;
    st.auth.authorize(&who, &project, None, Action::Read).await?;
    Ok(ok(st.registry.list_repositories(&project).await?))
}

pub async fn repo_info(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<BkPath<(String, String)>, ApiError>,
) -> ApiResult {
    let who = caller.identity()?;
    let BkPath((project, repo)) = path?;
    st.auth.authorize(&who, &project, Some(&repo), Action::Read).await?;
    let r = st.registry.get_repository(&project, &repo).await;
    Ok(ok(r.map_err(|e| ApiError::from(e).not_found_code(REPOSITORY_NOT_FOUND))?))
}

pub async fn repo_exist(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<BkPath<(String, String)>, ApiError>,
) -> ApiResult {
    let who = caller.identity()?;
    let BkPath((project, repo)) = path?;
    st.auth.authorize(&who, &project, Some(&repo), Action::Read).await?;
    Ok(ok(st.registry.repository_exists(&project, &repo).await?))
}

pub async fn delete_repo(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<BkPath<(String, String)>, ApiError>,
    query: Result<BkQuery<Forced>, ApiError>,
) -> ApiResult {
    let who = caller.identity()?;
    let (BkPath((project, repo)), BkQuery(q)) = (path?, query?);
    st.auth.authorize(&who, &project, Some(&repo), Action::Manage).await?;
    let r = st.registry.delete_repository(&project, &repo, q.forced).await;
    r.map_err(|e| ApiError::from(e).not_found_code(REPOSITORY_NOT_FOUND))?;
    Ok(ok(()))
}
