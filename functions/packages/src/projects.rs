//! Projects and repositories on bkrepo's routes.
use axum::extract::State;
use axum::response::Response;
use depot_core::http::bkrepo::ok;
use depot_core::http::extract::{Json, Path, Query};
use depot_core::http::{AppState, Scope};
use depot_core::model::{
    check_description, check_display_name, check_new_project_name, check_new_repo_name, Action, Identity, RepoType, Repository,
};
use depot_core::registry::{NewProject, NewRepository};
use depot_core::{Error, Result};
use serde::Deserialize;
use serde_json::Value;

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
    configuration: Option<Value>,
}

/// bkrepo's `RepoUpdateRequest`: what `repo/update` changes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRepo {
    public: Option<bool>,
    description: Option<String>,
    configuration: Option<Value>,
}

/// bkrepo's `ProjectUpdateRequest`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateProject {
    display_name: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectExistQuery {
    name: Option<String>,
    display_name: Option<String>,
}

#[derive(Deserialize)]
pub struct RepoListQuery {
    name: Option<String>,
    #[serde(rename = "type")]
    repo_type: Option<String>,
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
    // bkrepo's rules for what is new; what is stored under depot's earlier rule reads.
    let name = required(body.name, "name")?;
    check_new_project_name(&name)?;
    // The projects of the surfaces that serve one configured repository are created by
    // depot (or an administrator): a user who created one first would manage it.
    let c = &st.config;
    for (surface, (project, _)) in [("APS", &c.aps_repo), ("OCP", &c.ocp_repo), ("strux", &c.strux_repo)] {
        if *project == name && !scope.who().is_admin() {
            return Err(Error::Forbidden(format!(
                "project [{name}] is reserved for depot's {surface} surface: it is created on first use, or by an administrator"
            )));
        }
    }
    if let Some(d) = body.display_name.as_deref().filter(|d| !d.is_empty()) {
        check_display_name(d)?;
    }
    let req = NewProject {
        name,
        display_name: body.display_name,
        description: body.description,
    };
    let who = scope.who();
    let project = st.registry.create_project(req, who.name()).await?;
    // Any signed-in user may create a project, and manages the projects it creates.
    if !who.is_admin() {
        st.accounts.grant_project_creator(&project.name, who.name()).await?;
    }
    // bkrepo answers the project's name.
    Ok(ok(project.name))
}

/// The projects the caller may see: every one for an administrator, else those it holds
/// a grant in.
pub async fn list_projects(State(st): State<AppState>, scope: Scope) -> Result<Response> {
    let who = scope.who();
    let mut out = Vec::new();
    for p in st.registry.list_projects().await? {
        if who.is_admin() || st.authorizer.grants(who, &p.name).await?.rights(None).allows(Action::Read) {
            out.push(p);
        }
    }
    Ok(ok(out))
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
    check_new_repo_name(&name)?;
    if let Some(d) = &body.description {
        check_description(d)?;
    }
    let repo_type = RepoType::parse(&required(body.repo_type, "type")?)?;
    // bkrepo's UI sends COMPOSITE for every type but generic: stored as a local one.
    if let Some(c) = body.category.filter(|c| !c.eq_ignore_ascii_case("LOCAL") && !c.eq_ignore_ascii_case("COMPOSITE")) {
        return Err(Error::Invalid(format!(
            "unsupported repository category '{}': depot serves LOCAL repositories (COMPOSITE is stored as LOCAL); REMOTE and VIRTUAL are not supported",
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
        configuration: body.configuration,
    };
    Ok(ok(repo_view(&st.registry.create_repository(req, scope.who().name()).await?)))
}

/// A repository as bkrepo's `RepositoryInfo.kt` has it: its own fields, with `id` (its
/// uid) and the storage fields depot does not use (`storageCredentialsKey`, `quota`
/// null, `used` 0, `display` true).
pub(crate) fn repo_view(r: &Repository) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        // depot's own bookkeeping (the repository's state counter and creation id, which
        // `id` already carries) is not bkrepo's to show.
        for internal in ["generation", "uid", "deleting"] {
            m.remove(internal);
        }
        m.insert("id".into(), r.uid.clone().into());
        m.insert("storageCredentialsKey".into(), Value::Null);
        m.insert("quota".into(), Value::Null);
        m.insert("used".into(), 0.into());
        m.insert("display".into(), true.into());
    }
    v
}

/// `POST /repository/api/repo/update/{projectId}/{repoName}`: `public`, `description`,
/// `configuration`; answers `data: null`, as bkrepo's.
pub async fn update_repo(State(st): State<AppState>, scope: Scope, Json(b): Json<UpdateRepo>) -> Result<Response> {
    let repo = scope.repo()?;
    let req = depot_core::registry::RepositoryUpdate { public: b.public, description: b.description, configuration: b.configuration };
    st.registry.update_repository(&repo.project_id, &repo.name, req, scope.who().name()).await?;
    Ok(ok(()))
}

/// `PUT /repository/api/project/{name}`: `displayName`, `description`; answers `true`.
pub async fn update_project(State(st): State<AppState>, scope: Scope, Json(b): Json<UpdateProject>) -> Result<Response> {
    st.registry.update_project(&scope.project, b.display_name, b.description, scope.who().name()).await?;
    Ok(ok(true))
}

/// `GET /repository/api/project/exist?name=&displayName=`: whether a project has that
/// name, or that display name.
pub async fn project_exist_by(State(st): State<AppState>, Query(q): Query<ProjectExistQuery>) -> Result<Response> {
    let name = q.name.filter(|n| !n.is_empty());
    let display = q.display_name.filter(|n| !n.is_empty());
    if name.is_none() && display.is_none() {
        return Err(Error::missing("name"));
    }
    if let Some(n) = &name {
        if depot_core::model::validate_name("project name", n).is_ok() && st.registry.project_exists(n).await? {
            return Ok(ok(true));
        }
    }
    if let Some(d) = &display {
        return Ok(ok(st.registry.list_projects().await?.iter().any(|p| &p.display_name == d)));
    }
    Ok(ok(false))
}

/// The project's repositories that the caller may read: `[]` when there are none. A
/// caller who is not an administrator gets `[]` for a project that does not exist too, so
/// that the answer does not tell which projects exist.
pub async fn list_repos(
    State(st): State<AppState>,
    scope: Scope,
    Path(project): Path<String>,
    Query(q): Query<RepoListQuery>,
) -> Result<Response> {
    let repos = filtered(readable_repositories(&st, scope.who(), &project).await?, &q)?;
    Ok(ok(repos.iter().map(repo_view).collect::<Vec<_>>()))
}

/// bkrepo's `repo/list` filters: a name prefix and a type.
fn filtered(repos: Vec<Repository>, q: &RepoListQuery) -> Result<Vec<Repository>> {
    let ty = q.repo_type.as_deref().filter(|t| !t.is_empty()).map(RepoType::parse).transpose()?;
    let name = q.name.as_deref().filter(|n| !n.is_empty());
    Ok(repos.into_iter().filter(|r| ty.is_none_or(|t| r.repo_type == t) && name.is_none_or(|n| r.name.starts_with(n))).collect())
}

/// `GET /repository/api/repo/page/{projectId}/{pageNumber}/{pageSize}`: a page of the
/// repositories the caller may read, by name.
pub async fn repo_page(
    State(st): State<AppState>,
    scope: Scope,
    Path((project, number, size)): Path<(String, depot_core::registry::PageParam, depot_core::registry::PageParam)>,
    Query(q): Query<RepoListQuery>,
) -> Result<Response> {
    let repos = filtered(readable_repositories(&st, scope.who(), &project).await?, &q)?;
    let views: Vec<Value> = repos.iter().map(repo_view).collect();
    Ok(ok(crate::packages::page_of_list(views, number, size)?))
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
    Ok(ok(repo_view(scope.repo()?)))
}

/// `GET /repository/api/repo/info/{projectId}/{repoName}/{type}`: the repository when it
/// is of that type; 404 (251006) otherwise, as bkrepo.
pub async fn repo_info_of_type(scope: Scope, Path((_, _, ty)): Path<(String, String, String)>) -> Result<Response> {
    let repo = scope.repo()?;
    if !repo.repo_type.as_str().eq_ignore_ascii_case(&ty) {
        return Err(Error::not_found(depot_core::error::Kind::Repository, format!("{}/{} of type {}", repo.project_id, repo.name, depot_core::model::printable(&ty))));
    }
    Ok(ok(repo_view(repo)))
}

pub async fn repo_exist(scope: Scope) -> Result<Response> {
    Ok(ok(scope.repo.is_some()))
}

pub async fn delete_repo(State(st): State<AppState>, scope: Scope, Query(q): Query<Forced>) -> Result<Response> {
    // WRITE implies DELETE for packages and versions (bkrepo's deletes need WRITE); a
    // whole repository needs DELETE granted as such, or MANAGE.
    if !scope.actor.rights.granted_delete() {
        return Err(Error::Forbidden(format!(
            "deleting repository [{}/{}] needs DELETE or MANAGE on it; WRITE deletes packages and versions only",
            scope.project, scope.repo_name
        )));
    }
    let repo = scope.repo()?;
    st.registry.delete_repository(&repo.project_id, &repo.name, q.forced).await?;
    Ok(ok(()))
}
