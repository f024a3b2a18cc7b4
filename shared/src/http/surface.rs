//! The surface kit: a surface is declared once, as a name, a route table whose every
//! route carries the access it needs, and a way to render errors.
//!
//! ```text
//! Routes::new()
//!     .get("/rds/{projectId}/{repoName}/index.yaml", Access::Repo(Action::Read), index_yaml)
//!     .delete("/repository/api/project/delete/{projectId}", Access::Admin, delete_project)
//! ```
//!
//! Before a handler runs, the kit authenticates the caller and checks the route's
//! [`Access`]. For `Project` and `Repo` access it reads the names from the path
//! (`{projectId}`, `{repoName}`), reads the repository once, and hands the handler a
//! [`Scope`]: the caller with what it holds there ([`Actor`]), and the repository as
//! read. Rules that depend on the data (a `@release` version needs MANAGE; a user may
//! edit itself) stay in the use cases, which take the actor.
//!
//! Handlers answer `depot_core::Result<Response>`. An error, from a handler, an
//! extractor or the kit itself, is rendered once, in the surface's own shape, by its
//! `render` function, with the status [`status_of`] gives and the headers
//! [`error_headers`] adds.
use axum::extract::{FromRequestParts, Request, State};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;

use super::{error_headers, status_of, too_large, trace_id, AppState};
use crate::error::Kind;
use crate::model::{unauthenticated, validate_name, Action, Actor, Identity, Repository, Rights};
use crate::{Error, Result};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the kit checks no credentials (the handler may, as strux's forms do).
    Anyone,
    /// Any authenticated user; the use case decides the rest from the data.
    User,
    /// A system administrator.
    Admin,
    /// The action on the project named by the path's `{projectId}`.
    Project(Action),
    /// The action on the repository named by the path's `{projectId}` and `{repoName}`.
    Repo(Action),
    /// The action on the surface's home repository ([`Surface::home`]): for the surfaces
    /// whose paths name no repository. It is created on first use.
    Home(Action),
}

/// The one repository a surface serves when its paths name none (OCP's, APS's):
/// configuration names it, and it is created with its type on first use.
#[derive(Clone, Copy)]
pub struct Home {
    pub repo: fn(&crate::config::Config) -> &(String, String),
    pub repo_type: crate::model::RepoType,
    /// Whether it is created public (READ for anyone).
    pub public: bool,
}

/// One route: method, path (axum's syntax), access, handler.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    handler: MethodRouter<AppState>,
}

/// A surface's route table.
#[derive(Default)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn route<H: Handler<T, AppState>, T: 'static>(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Self {
        let filter = MethodFilter::try_from(method.clone()).expect("a standard method");
        self.routes.push(Route { method, path, access, handler: on(filter, handler) });
        self
    }

    pub fn get<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, access: Access, h: H) -> Self {
        self.route(Method::GET, path, access, h)
    }

    pub fn head<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, access: Access, h: H) -> Self {
        self.route(Method::HEAD, path, access, h)
    }

    pub fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, access: Access, h: H) -> Self {
        self.route(Method::POST, path, access, h)
    }

    pub fn put<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, access: Access, h: H) -> Self {
        self.route(Method::PUT, path, access, h)
    }

    pub fn delete<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, access: Access, h: H) -> Self {
        self.route(Method::DELETE, path, access, h)
    }

    /// Every (method, path, access), in the order they were added.
    pub fn list(&self) -> Vec<(Method, &'static str, Access)> {
        self.routes.iter().map(|r| (r.method.clone(), r.path, r.access)).collect()
    }
}

/// An API surface: everything that differs between them.
pub struct Surface {
    /// The surface's name, which is also its Lambda binary's (`template.yaml`'s
    /// `BuildProperties.Binary`).
    pub name: &'static str,
    /// The path prefixes it answers unknown paths under, in its own error shape.
    pub prefixes: &'static [&'static str],
    pub routes: fn() -> Routes,
    /// Renders an error in the surface's shape, with the status the kit chose.
    pub render: fn(&Error, StatusCode) -> Response,
    /// The repository its `Access::Home` routes act on.
    pub home: Option<Home>,
}

impl Surface {
    /// The surface's routes behind the kit: each route's access checked before its
    /// handler, the body limit, and every error rendered in the surface's shape. No
    /// fallback: see [`app`].
    pub fn router(&self, state: AppState) -> Router {
        let mut by_path: Vec<(&'static str, MethodRouter<AppState>, Vec<String>)> = Vec::new();
        for route in (self.routes)().routes {
            let guard = Guard { state: state.clone(), access: route.access, home: self.home };
            let handler = route.handler.layer(axum::middleware::from_fn_with_state(guard, admit));
            let mut methods = vec![route.method.to_string()];
            if route.method == Method::GET {
                // axum answers HEAD with the GET handler.
                methods.push(Method::HEAD.to_string());
            }
            match by_path.iter_mut().find(|(p, _, _)| *p == route.path) {
                Some((_, existing, allowed)) => {
                    *existing = std::mem::take(existing).merge(handler);
                    allowed.extend(methods);
                }
                None => by_path.push((route.path, handler, methods)),
            }
        }
        // Another method on a known path: 405 in the surface's shape, naming the methods.
        let by_path = by_path.into_iter().map(|(path, mr, mut allowed)| {
            allowed.sort();
            allowed.dedup();
            (path, mr.fallback(move || async move { Error::NotAllowed { allowed }.into_response() }))
        });
        let limit = state.config.max_body_bytes;
        let check = move |req: Request, next: Next| async move {
            let declared = req
                .headers()
                .get(axum::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if let Some(n) = declared.filter(|n| *n > limit as u64) {
                // Read a small body before refusing it: closing with it unread makes the
                // kernel reset the connection, and the client may lose the 413 (seen under
                // load). A larger one ends the connection, which says so.
                let mut res = too_large(Some(limit)).into_response();
                if n <= DRAIN_ON_REFUSAL as u64 {
                    let drain = axum::body::to_bytes(req.into_body(), DRAIN_ON_REFUSAL);
                    let _ = tokio::time::timeout(BODY_IDLE, drain).await;
                } else {
                    res.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
                }
                return res;
            }
            next.run(req).await
        };
        let render = self.render;
        by_path
            .fold(Router::new(), |r, (path, mr)| r.route(path, mr))
            .layer(axum::extract::DefaultBodyLimit::max(limit))
            .layer(axum::middleware::from_fn(check))
            .layer(axum::middleware::map_response(move |res: Response| async move { rendered(render, res) }))
            .with_state(state)
    }

    /// The answer for a path no route serves, in this surface's shape.
    pub fn not_found(&self, path: &str) -> Response {
        rendered(self.render, Error::not_found_as(Kind::Route, path, "no such route").into_response())
    }

    /// How long a prefix of `path` this surface claims (0: none).
    fn claims(&self, path: &str) -> usize {
        self.prefixes.iter().filter(|p| path.starts_with(*p)).map(|p| p.len()).max().unwrap_or(0)
    }
}

/// Several surfaces on one router, as `depot serve` runs them (and a Lambda function
/// runs its one). A path no route serves answers in the shape of the surface whose
/// prefix claims it, else of the first surface.
///
/// A trailing slash is optional on every route: a request that no route serves, whose
/// path's twin with (or without) one final `/` is a route's for its method, is served as
/// that twin (before routing, so that another method's route on the path does not
/// answer 405 first).
pub fn app(surfaces: &[&'static Surface], state: AppState) -> Router {
    let router = surfaces.iter().fold(Router::new(), |r, s| r.merge(s.router(state.clone())));
    let routes = std::sync::Arc::new(RouteTable::new(surfaces));
    let surfaces: std::sync::Arc<[&'static Surface]> = surfaces.into();
    let inner = router.fallback(move |req: Request| async move {
        let path = req.uri().path();
        let owner = surfaces.iter().max_by_key(|s| s.claims(path)).filter(|s| s.claims(path) > 0).or(surfaces.first());
        match owner {
            Some(s) => s.not_found(path),
            None => StatusCode::NOT_FOUND.into_response(),
        }
    });
    let served = move |mut req: Request| {
        let (inner, routes) = (inner.clone(), routes.clone());
        async move {
            if let Some(twin) = routes.slash_twin(req.method(), req.uri().path()) {
                let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
                if let Ok(uri) = format!("{twin}{query}").parse() {
                    *req.uri_mut() = uri;
                }
            }
            tower::ServiceExt::oneshot(inner, req).await
        }
    };
    Router::new().fallback_service(tower::service_fn(served))
}

/// Every path pattern of some surfaces with its methods, matched as axum matches them
/// (matchit, axum's own router).
pub struct RouteTable(matchit::Router<(&'static str, Vec<Method>)>);

impl RouteTable {
    pub fn new(surfaces: &[&'static Surface]) -> Self {
        let mut table: Vec<(&'static str, Vec<Method>)> = Vec::new();
        for (m, p, _) in surfaces.iter().flat_map(|s| (s.routes)().list()) {
            match table.iter_mut().find(|(q, _)| *q == p) {
                Some((_, ms)) => ms.push(m),
                None => table.push((p, vec![m])),
            }
        }
        let mut matcher = matchit::Router::new();
        for (p, ms) in table {
            matcher.insert(p, (p, ms)).expect("the routers accepted these patterns");
        }
        RouteTable(matcher)
    }

    /// The pattern that serves `path`, and its methods.
    pub fn at(&self, path: &str) -> Option<(&'static str, &[Method])> {
        self.0.at(path).ok().map(|m| (m.value.0, m.value.1.as_slice()))
    }

    /// Whether the route that serves `path` takes `method` (a GET route takes HEAD).
    pub fn serves(&self, method: &Method, path: &str) -> bool {
        self.at(path).is_some_and(|(_, ms)| has(ms, method))
    }

    /// The trailing-slash twin of `path` when a route serves it for `method` and none
    /// serves `path` itself: a path that is a route of its own as written (no parameter
    /// in it) keeps its answer, a 405 when the method is another.
    pub fn slash_twin(&self, method: &Method, path: &str) -> Option<String> {
        let own = self.at(path);
        match own {
            Some((_, ms)) if has(ms, method) => return None,
            Some((pattern, _)) if !pattern.contains('{') => return None,
            _ => {}
        }
        let twin = match path.strip_suffix('/') {
            Some("") => return None,
            Some(p) => p.to_string(),
            None => format!("{path}/"),
        };
        // The twin's route for this method; else, when no route at all has this path,
        // the twin's other methods (its 405 names them).
        match self.at(&twin) {
            Some((_, ms)) if has(ms, method) || own.is_none() => Some(twin),
            _ => None,
        }
    }
}

fn has(methods: &[Method], method: &Method) -> bool {
    methods.iter().any(|r| r == method || (*r == Method::GET && method == Method::HEAD))
}

/// Marks a response as an error still to be rendered in a surface's shape.
#[derive(Clone)]
struct Failure(Error);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut res = status_of(&self).into_response();
        res.extensions_mut().insert(Failure(self));
        res
    }
}

/// Renders a marked error response; leaves any other response as it is.
fn rendered(render: fn(&Error, StatusCode) -> Response, res: Response) -> Response {
    let Some(Failure(e)) = res.extensions().get::<Failure>().cloned() else { return res };
    let status = status_of(&e);
    if let Error::Internal(m) = &e {
        tracing::error!(trace_id = %trace_id(), error = %m, "internal error");
    }
    let mut out = render(&e, status);
    *out.status_mut() = status;
    error_headers(&mut out, &e);
    // A body refused for its size may be partly unread (a chunked one always is): the
    // connection ends, and says so, so that no client sends its next request on it.
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        out.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    }
    if let Error::NotAllowed { allowed } = &e {
        if let Ok(v) = axum::http::HeaderValue::from_str(&allowed.join(", ")) {
            out.headers_mut().insert(axum::http::header::ALLOW, v);
        }
    }
    out
}

/// What a handler knows about its caller once the kit has admitted it.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The caller, with what it holds on the route's project or repository (nothing for
    /// routes without one, everything for an administrator).
    pub actor: Actor,
    /// The repository the path names, as read before the handler (`Repo` access), or
    /// `None` when it does not exist.
    pub repo: Option<Repository>,
    /// The project and repository names of the path, when the route has them.
    pub project: String,
    pub repo_name: String,
}

impl Scope {
    pub fn who(&self) -> &Identity {
        &self.actor.who
    }

    /// The repository the path names; `NotFound` when it does not exist.
    pub fn repo(&self) -> Result<&Repository> {
        self.repo
            .as_ref()
            .ok_or_else(|| Error::not_found(Kind::Repository, format!("{}/{}", self.project, self.repo_name)))
    }

    fn of(who: Identity) -> Scope {
        let rights = if who.is_admin() { Rights::ALL } else { Rights::NONE };
        Scope { actor: Actor { who, rights }, repo: None, project: String::new(), repo_name: String::new() }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Scope {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        parts.extensions.remove::<Scope>().ok_or_else(|| Error::Internal("a route without the kit's guard".into()))
    }
}

#[derive(Clone)]
struct Guard {
    state: AppState,
    access: Access,
    home: Option<Home>,
}

/// How long a request body may go without a byte, before and after the kit's check: a
/// client that stops sending does not hold its connection (and what it sent) for ever.
const BODY_IDLE: std::time::Duration = std::time::Duration::from_secs(20);

/// Bytes a second, on average, that a body sends once its grace is over
/// (`DEPOT_SLOW_BODY_SECS`, 30 s): a client that trickles a byte at a time does not hold
/// its connection (and one of `depot serve`'s connection slots) for ever.
pub const BODY_MIN_RATE: u64 = 4096;

/// A body whose every chunk arrives within [`BODY_IDLE`] of the one before, and that
/// averages [`BODY_MIN_RATE`] after `grace`; past that it fails, as a broken body does.
fn idle_limited(body: axum::body::Body, grace: std::time::Duration) -> axum::body::Body {
    use futures::StreamExt;
    let started = tokio::time::Instant::now();
    let stream = futures::stream::unfold(Some((body.into_data_stream(), 0u64)), move |state| async move {
        let (mut stream, received) = state?;
        match tokio::time::timeout(BODY_IDLE, stream.next()).await {
            Ok(Some(Ok(chunk))) => {
                let received = received + chunk.len() as u64;
                let elapsed = started.elapsed();
                if elapsed > grace && (received as f64) < BODY_MIN_RATE as f64 * elapsed.as_secs_f64() {
                    let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "the request body arrives too slowly");
                    return Some((Err(e), None));
                }
                Some((Ok(chunk), Some((stream, received))))
            }
            Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), None)),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the request body stopped arriving")),
                None,
            )),
        }
    });
    axum::body::Body::from_stream(stream)
}

/// The kit's check before every handler.
async fn admit(State(g): State<Guard>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let body = idle_limited(body, g.state.config.slow_body_grace);
    match scope_of(&g.state, g.access, g.home, &mut parts).await {
        Ok(scope) => {
            parts.extensions.insert(scope);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) => {
            // A client that sends its body after the headers (most do) would find the
            // connection closed under its next request if the refusal left the body
            // unread: read a small one first, so the connection stays usable.
            let small = parts
                .headers
                .get(axum::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
                .is_some_and(|n| n <= DRAIN_ON_REFUSAL);
            let mut res = e.into_response();
            if small {
                let _ = axum::body::to_bytes(body, DRAIN_ON_REFUSAL).await;
            } else if parts.headers.contains_key(axum::http::header::CONTENT_LENGTH)
                || parts.headers.contains_key(axum::http::header::TRANSFER_ENCODING)
            {
                // A body left unread ends the connection: say so.
                res.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
            }
            res
        }
    }
}

/// The largest body a refused request still has read, to keep its connection.
const DRAIN_ON_REFUSAL: usize = 64 * 1024;

/// The client's address, which failed password checks count against: the entry point
/// puts it in the request's extensions (API Gateway's `sourceIp` on Lambda); under
/// `depot serve` it is the peer address of the connection.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::IpAddr);

/// The client's address as a handler's extractor, for handlers that authenticate
/// credentials of their own (strux's forms): `None` where the entry point gives none.
#[derive(Debug, Clone, Copy)]
pub struct Client(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> std::result::Result<Self, Self::Rejection> {
        Ok(Client(client_addr(parts)))
    }
}

fn client_addr(parts: &Parts) -> Option<std::net::IpAddr> {
    parts.extensions.get::<ClientAddr>().map(|c| c.0).or_else(|| {
        parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())
    })
}

/// The caller an `Authorization` header proves: anonymous without one.
async fn authenticate(parts: &Parts, state: &AppState) -> Result<Identity> {
    let header = match parts.headers.get(axum::http::header::AUTHORIZATION).map(|h| h.to_str()) {
        None => None,
        Some(Ok(h)) => Some(h),
        Some(Err(_)) => return Err(Error::Unauthenticated("invalid credentials".into())),
    };
    let who = state.authenticator.authenticate_from(header, client_addr(parts)).await?;
    if who != Identity::Anonymous {
        super::trace::note_caller(who.name());
    }
    Ok(who)
}

async fn scope_of(state: &AppState, access: Access, home: Option<Home>, parts: &mut Parts) -> Result<Scope> {
    if access == Access::Anyone {
        return Ok(Scope::of(Identity::Anonymous));
    }
    let who = authenticate(parts, state).await?;
    let action = match access {
        Access::Anyone => unreachable!("answered above"),
        Access::User => {
            who.require_user()?;
            return Ok(Scope::of(who));
        }
        Access::Admin => {
            who.require_admin()?;
            return Ok(Scope::of(who));
        }
        Access::Project(a) | Access::Repo(a) | Access::Home(a) => a,
    };
    // Only a READ of a repository can be open to anonymous callers.
    let repo_read = matches!(access, Access::Repo(Action::Read) | Access::Home(Action::Read));
    if who == Identity::Anonymous && !repo_read {
        return Err(unauthenticated());
    }
    if let Access::Home(_) = access {
        let home = home.ok_or_else(|| Error::Internal("an Access::Home route on a surface without a home".into()))?;
        let (project, repo_name) = (home.repo)(&state.config).clone();
        // Only a signed-in caller's request creates it. A public one not created yet
        // reads as empty: the handler gets no repository.
        let repo = match &who {
            Identity::Anonymous => match state.registry.find_repository(&project, &repo_name).await? {
                Some(repo) => repo,
                None if home.public => {
                    let actor = Actor { who, rights: Rights::NONE.with(Action::Read) };
                    return Ok(Scope { actor, repo: None, project, repo_name });
                }
                None => return Err(unauthenticated()),
            },
            _ => state.registry.ensure_repository(&project, &repo_name, home.repo_type, home.public).await?,
        };
        let actor = state.authorizer.authorize(&who, &project, Some((&repo_name, Some(&repo))), action).await?;
        return Ok(Scope { actor, repo: Some(repo), project, repo_name });
    }
    let params = axum::extract::RawPathParams::from_request_parts(parts, &())
        .await
        .map_err(|r| Error::Invalid(format!("invalid path: {}", r.body_text())))?;
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
            .ok_or_else(|| Error::Internal(format!("no {{{name}}} in the route")))
    };
    let project = param("projectId")?;
    validate_name("project name", &project)?;
    if let Access::Project(_) = access {
        let actor = state.authorizer.authorize(&who, &project, None, action).await?;
        return Ok(Scope { actor, repo: None, project, repo_name: String::new() });
    }
    let repo_name = param("repoName")?;
    validate_name("repository name", &repo_name)?;
    let repo = state.registry.find_repository(&project, &repo_name).await?;
    let actor = state.authorizer.authorize(&who, &project, Some((&repo_name, repo.as_ref())), action).await?;
    Ok(Scope { actor, repo, project, repo_name })
}

impl AppState {
    /// Authorizes `action` on a repository that the request names elsewhere than in its
    /// path (a body, a stored session): what the kit does for `Access::Repo` routes. The
    /// repository is read only when its `public` flag can matter (a READ by someone who
    /// is not an administrator).
    pub async fn authorize_repo(&self, who: &Identity, project: &str, repo: &str, action: Action) -> Result<Actor> {
        validate_name("project name", project)?;
        validate_name("repository name", repo)?;
        let read = if action == Action::Read && !who.is_admin() {
            self.registry.find_repository(project, repo).await?
        } else {
            None
        };
        self.authorizer.authorize(who, project, Some((repo, read.as_ref())), action).await
    }

    /// Whether `project/repo` is the strux repository (`DEPOT_STRUX_REPO`), where every
    /// user writes its own namespace without a grant.
    pub fn is_strux_repo(&self, project: &str, repo: &str) -> bool {
        let (sp, sr) = &self.config.strux_repo;
        project == sp && repo == sr
    }

    /// Authorizes staging blobs in a repository: opening an upload session there, or
    /// (with `opened_by`, the session's creator) completing, inspecting or aborting one.
    /// That needs WRITE on the repository, except in the strux repository
    /// (`DEPOT_STRUX_REPO`), where every user writes its own namespace without a grant:
    /// there any signed-in user may stage, and only for its own sessions. Staging
    /// publishes nothing; the strux surface checks the namespace, and that a file's
    /// staged blob is the uploader's own, when it commits a version.
    pub async fn authorize_staging(
        &self,
        who: &Identity,
        project: &str,
        repo: &str,
        opened_by: Option<&str>,
    ) -> Result<Actor> {
        if !self.is_strux_repo(project, repo) || who.is_admin() {
            return self.authorize_repo(who, project, repo, Action::Write).await;
        }
        let (sp, sr) = &self.config.strux_repo;
        let id = who.require_user()?;
        // The repository is created on first use, by whichever route comes first.
        self.registry.ensure_repository(sp, sr, crate::model::RepoType::Strux, true).await?;
        if opened_by.is_some_and(|by| by != id) {
            return Err(Error::Forbidden(format!("upload session of another user: [{id}] may only use its own sessions")));
        }
        Ok(Actor { who: who.clone(), rights: crate::model::Rights::NONE.with(Action::Write) })
    }
}
