//! Projects and repositories on bkrepo's routes.
use axum::extract::State;
use axum::response::Response;
use depot_core::http::bkrepo::ok;
use depot_core::http::extract::{Json, Path, Query};
use depot_core::http::{AppState, Scope};
use depot_core::model::{Action, Identity, RepoType, Repository};
use depot_core::registry::{NewProject, NewRepository};
use depot_core::{Error, Result};
use serde::Deserialize;

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

/// A required parameter: absent or empty is `Parameter [name] is missing`.
pub(crate) fn required(v: Option<String>, name: &str) -> Result<String> {
    v.filter(|s| !s.is_empty()).ok_or_else(|| Error::missing(name))
}

pub async fn create_project(
    State(st): State<AppState>,
    scope: Scope,
    Json(body): Json<CreateProject>,
) -> Result<Response> {
    let req = NewProject {
        name: required(body.name, "name")?,
        display_name: body.display_name,
        description: body.description,
    };
    // bkrepo answers the project's name.
    Ok(ok(st.registry.create_project(req, scope.who().name()).await?.name))
}

pub async fn list_projects(State(st): State<AppState>) -> Result<Response> {
    Ok(ok(st.registry.list_projects().await?))
}

pub async fn project_info(State(st): State<AppState>, scope: Scope) -> Result<Response> {
    Ok(ok(st.registry.get_project(&scope.project).await?))
}

pub async fn project_exist(State(st): State<AppState>, scope: Scope) -> Result<Response> {
    Ok(ok(st.registry.project_exists(&scope.project).await?))
}

pub async fn delete_project(
    State(st): State<AppState>,
    Path(project): Path<String>,
    Query(q): Query<Forced>,
) -> Result<Response> {
    st.registry.delete_project(&project, q.forced).await?;
    Ok(ok(()))
}

pub async fn create_repo(State(st): State<AppState>, scope: Scope, Json(body): Json<CreateRepo>) -> Result<Response> {
    let project_id = required(body.project_id, "projectId")?;
    st.authorizer.authorize(scope.who(), &project_id, None, Action::Manage).await?;
    let name = required(body.name, "name")?;
    let repo_type = RepoType::parse(&required(body.repo_type, "type")?)?;
    if let Some(c) = body.category.filter(|c| !c.eq_ignore_ascii_case("LOCAL")) {
        return Err(Error::Invalid(format!(
            "unsupported repository category '{}': depot serves LOCAL repositories only",
            depot_core::model::printable(&c)
        )));
    }
    let req = NewRepository {
        project_id,
        name,
        repo_type,
        public: body.public.unwrap_or(false),
        description: body.description,
        allow_overwrite: body.allow_overwrite,
    };
    Ok(ok(st.registry.create_repository(req, scope.who().name()).await?))
}

/// The project's repositories that the caller may read: `[]` when there are none. A
/// caller who is not an administrator gets `[]` for a project that does not exist too, so
/// that the answer does not tell which projects exist.
pub async fn list_repos(State(st): State<AppState>, scope: Scope, Path(project): Path<String>) -> Result<Response> {
    Ok(ok(readable_repositories(&st, scope.who(), &project).await?))
}

/// The repositories of `project` that `who` may read (its grants read once). For a
/// caller who is not an administrator, a project that does not exist has none, like one
/// it may read nothing of.
pub(crate) async fn readable_repositories(st: &AppState, who: &Identity, project: &str) -> Result<Vec<Repository>> {
    let grants = st.authorizer.grants(who, project).await?;
    let repos = match st.registry.list_repositories(project).await {
        Err(e) if e.is_not_found() && !who.is_admin() => vec![],
        r => r?,
    };
    Ok(repos.into_iter().filter(|r| grants.rights(Some((&r.name, Some(r)))).allows(Action::Read)).collect())
}

pub async fn repo_info(scope: Scope) -> Result<Response> {
    Ok(ok(scope.repo()?))
}

pub async fn repo_exist(scope: Scope) -> Result<Response> {
    Ok(ok(scope.repo.is_some()))
}

pub async fn delete_repo(State(st): State<AppState>, scope: Scope, Query(q): Query<Forced>) -> Result<Response> {
    let repo = scope.repo()?;
    st.registry.delete_repository(&repo.project_id, &repo.name, q.forced).await?;
    Ok(ok(()))
}
