//! Users, API tokens, permission grants and the credential cache, through `depot serve`.
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{data, failure, Api, Server, ADMIN_PASSWORD};

const U: &str = "/auth/api/user";

/// A server for the access matrix: it sends wrong passwords on purpose, many times over,
/// so the login throttle (tested on its own below) is set out of its reach.
fn embedded() -> (tempfile::TempDir, Server, Api) {
    crate::harness::embedded(&[
        ("RUST_LOG", "debug"),
        ("DEPOT_LOGIN_USER_FAILURES", "100000"),
        ("DEPOT_LOGIN_ADDRESS_FAILURES", "100000"),
    ])
}

/// Creates a user (bkrepo answers `true`) and answers it as `user/detail` shows it.
async fn create_user(api: &Api, id: &str, pwd: &str, admin: bool) -> Value {
    let (s, b) = api
        .post(&format!("{U}/create"), json!({"userId": id, "name": format!("User {id}"), "pwd": pwd, "admin": admin}))
        .await;
    assert_eq!(data(s, &b), json!(true));
    let (s, b) = api.get(&format!("{U}/detail/{id}")).await;
    data(s, &b)
}

/// The id of the grant named `perm_name` in `project`, as `api` lists it.
async fn grant_id(api: &Api, project: &str, perm_name: &str) -> String {
    let (s, b) = api.get(&format!("/auth/api/permission/list?projectId={project}")).await;
    let perms = data(s, &b);
    let found = perms.as_array().unwrap().iter().find(|p| p["permName"] == perm_name).cloned();
    found.unwrap_or_else(|| panic!("no grant {perm_name}: {perms}"))["id"].as_str().unwrap().to_string()
}

/// Nothing the user routes answer may carry a password or its hash.
fn assert_no_secrets(v: &Value, pwd: &str) {
    let text = v.to_string();
    assert!(!text.contains(pwd), "{text}");
    assert!(!text.contains("argon2"), "{text}");
    assert!(!text.contains("pwd"), "{text}");
}

#[tokio::test]
async fn users_are_managed_and_passwords_never_leave() {
    let (dir, server, api) = embedded();
    let alice = create_user(&api, "alice", "alice-password-1", false).await;
    assert_eq!((alice["userId"].as_str(), alice["admin"].as_bool()), (Some("alice"), Some(false)));
    assert_no_secrets(&alice, "alice-password-1");
    // Created again: `true`, as bkrepo answers, and nothing changes.
    let (s, b) = api.post(&format!("{U}/create"), json!({"userId": "alice", "pwd": "another-password"})).await;
    assert_eq!(data(s, &b), json!(true));
    let (s, b) = api.as_user("alice", "another-password").get(&format!("{U}/detail/alice")).await;
    failure(s, &b, 401, 250114);
    let (s, b) = api.post(&format!("{U}/create"), json!({"userId": "bob", "pwd": "short"})).await;
    assert!(failure(s, &b, 400, 250105).contains("8 to 1024"));
    let (s, b) = api.post(&format!("{U}/create"), json!({"userId": "../x", "pwd": "long-enough-pw"})).await;
    failure(s, &b, 400, 250105);
    let (s, b) = api.post(&format!("{U}/create"), json!({"pwd": "long-enough-pw"})).await;
    assert!(failure(s, &b, 400, 250103).contains("[userId]"));

    let (s, b) = api.get(&format!("{U}/list")).await;
    let list = data(s, &b);
    assert_no_secrets(&list, "alice-password-1");
    let ids: Vec<_> = list.as_array().unwrap().iter().map(|u| u["userId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["admin", "alice"]);

    // Alice sees herself, not others; she may change her own name and password.
    let alice_api = api.as_user("alice", "alice-password-1");
    let (s, b) = alice_api.get(&format!("{U}/detail/alice")).await;
    assert_eq!(data(s, &b)["name"], "User alice");
    let (s, b) = alice_api.get(&format!("{U}/detail/admin")).await;
    failure(s, &b, 403, 250113);
    let (s, b) = alice_api.get(&format!("{U}/list")).await;
    failure(s, &b, 403, 250113);
    let (s, b, _) = alice_api.send("PUT", &format!("{U}/alice"), Some(json!({"admin": true}))).await;
    failure(s, &b, 403, 250113);
    let (s, b) = api.get(&format!("{U}/detail/nobody")).await;
    failure(s, &b, 404, 250202);

    // The stored file holds no clear password.
    let db = std::fs::read(dir.path().join("depot.redb")).unwrap();
    assert!(!db.windows(16).any(|w| w == b"alice-password-1"), "clear password in the database");

    // A password change takes effect at once, although the old one was cached.
    let (s, b, _) =
        alice_api.send("PUT", &format!("{U}/alice"), Some(json!({"pwd": "alice-password-2", "name": "Alice"}))).await;
    assert_eq!(data(s, &b), json!(true));
    let (s, b) = alice_api.get(&format!("{U}/detail/alice")).await;
    failure(s, &b, 401, 250114);
    let alice_api = api.as_user("alice", "alice-password-2");
    let (s, b) = alice_api.get(&format!("{U}/detail/alice")).await;
    assert_eq!(data(s, &b)["name"], "Alice");

    // Deleting a user logs it out at once, and nobody deletes itself.
    let (s, b) = api.delete(&format!("{U}/admin")).await;
    failure(s, &b, 400, 250105);
    let (s, b) = api.delete(&format!("{U}/alice")).await;
    assert_eq!(data(s, &b), json!(true));
    let (s, b) = alice_api.get(&format!("{U}/detail/alice")).await;
    failure(s, &b, 401, 250114);
    let (s, b) = api.delete(&format!("{U}/alice")).await;
    failure(s, &b, 404, 250202);

    // Nothing in the server's log (at debug level) carries a password.
    let log = server.log();
    assert!(log.len() > 10, "the server logged its requests: {log:?}");
    for pwd in ["alice-password-1", "alice-password-2", ADMIN_PASSWORD] {
        assert!(!log.iter().any(|l| l.contains(pwd)), "{pwd} in the log");
    }
}

#[tokio::test]
async fn api_tokens_work_as_bearer_and_basic_and_expire() {
    let (_dir, server, api) = embedded();
    create_user(&api, "ci", "ci-password-123", false).await;
    let ci = api.as_user("ci", "ci-password-123");
    let (s, b) = ci.post(&format!("{U}/token/ci/build"), json!({})).await;
    let tok = data(s, &b);
    let secret = tok["id"].as_str().unwrap().to_string();
    assert!(secret.starts_with("dpt_") && secret.len() > 40, "{tok}");
    assert_eq!((tok["name"].as_str(), tok["expiredAt"].as_str()), (Some("build"), None));
    let (s, b) = ci.post(&format!("{U}/token/ci/build"), json!({})).await;
    failure(s, &b, 409, 250219);
    let (s, b) = ci.post(&format!("{U}/token/admin/mine"), json!({})).await;
    failure(s, &b, 403, 250113);
    let (s, b) = ci.post(&format!("{U}/token/ci/old?expiredAt=2001-01-01T00:00:00"), json!({})).await;
    assert!(failure(s, &b, 400, 250105).contains("in the past"));
    let (s, b) = ci.post(&format!("{U}/token/ci/bad?expiredAt=tomorrow"), json!({})).await;
    failure(s, &b, 400, 250105);

    // The listing shows no secret and no hash.
    let (s, b) = ci.get(&format!("{U}/list/token/ci")).await;
    let list = data(s, &b);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(&secret[4..]), "{list}");
    assert!(list[0].get("hash").is_none(), "{list}");

    let bearer = |token: &str| {
        let (http, base, token) = (api.http.clone(), server.base.clone(), token.to_string());
        async move {
            let res = http.get(format!("{base}{U}/detail/ci")).bearer_auth(token).send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (s, b) = bearer(&secret).await;
    assert_eq!(data(s, &b)["userId"], "ci");
    let (s, b) = api.as_user("ci", &secret).get(&format!("{U}/detail/ci")).await;
    assert_eq!(data(s, &b)["userId"], "ci");
    // A token is only good for its own user.
    let (s, b) = api.as_user("admin", &secret).get(&format!("{U}/detail/ci")).await;
    failure(s, &b, 401, 250114);
    let (s, b) = bearer("dpt_notatoken").await;
    failure(s, &b, 401, 250114);

    // Deleting the token stops it at once.
    let (s, b) = ci.delete(&format!("{U}/token/ci/build")).await;
    data(s, &b);
    let (s, b) = bearer(&secret).await;
    failure(s, &b, 401, 250114);
    // Deleting it again succeeds, as in bkrepo.
    let (s, b) = ci.delete(&format!("{U}/token/ci/build")).await;
    assert_eq!(data(s, &b), json!(true));

    // An expiring token works until its expiry, even from the cache.
    let soon = time::OffsetDateTime::now_utc() + Duration::from_secs(2);
    let soon = soon.format(&time::format_description::well_known::Rfc3339).unwrap();
    let (s, b) = ci.post(&format!("{U}/token/ci/short?expiredAt={}", soon.replace('+', "%2B")), json!({})).await;
    let short = data(s, &b)["id"].as_str().unwrap().to_string();
    let (s, b) = bearer(&short).await;
    data(s, &b);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (s, b) = bearer(&short).await;
    failure(s, &b, 401, 250114);

    // Deleting a user drops its tokens.
    let (s, b) = ci.post(&format!("{U}/token/ci/again"), json!({})).await;
    let again = data(s, &b)["id"].as_str().unwrap().to_string();
    let (s, b) = api.delete(&format!("{U}/ci")).await;
    data(s, &b);
    let (s, b) = bearer(&again).await;
    failure(s, &b, 401, 250114);
}

/// One request of a route group, as each kind of caller.
struct Case {
    method: &'static str,
    path: String,
    body: Option<Value>,
}

impl Case {
    fn new(method: &'static str, path: &str, body: Option<Value>) -> Self {
        Case { method, path: path.to_string(), body }
    }
}

#[tokio::test]
async fn every_route_group_in_four_cases() {
    let (_dir, _server, admin) = embedded();
    let (s, b) = admin.post("/repository/api/project/create", json!({"name": "team"})).await;
    data(s, &b);
    for (name, public) in [("private", false), ("open", true)] {
        let (s, b) = admin
            .post(
                "/repository/api/repo/create",
                json!({"projectId": "team", "name": name, "type": "GENERIC", "public": public}),
            )
            .await;
        data(s, &b);
    }
    create_user(&admin, "dev", "dev-password-1", false).await;
    create_user(&admin, "lead", "lead-password-1", false).await;
    create_user(&admin, "outsider", "outsider-password", false).await;

    // lead manages the project; dev reads and writes the private repository.
    let (s, b) = admin
        .post(
            "/auth/api/permission/create",
            json!({"permName": "leads", "projectId": "team", "resourceType": "PROJECT", "users": [{"id": "lead", "action": ["MANAGE"]}]}),
        )
        .await;
    assert_eq!(data(s, &b), json!(true));
    let lead_perm = grant_id(&admin, "team", "leads").await;
    let lead = admin.as_user("lead", "lead-password-1");
    let (s, b) = lead
        .post(
            "/auth/api/permission/create",
            json!({"permName": "devs", "projectId": "team", "resourceType": "REPO", "repos": ["private"], "users": [{"id": "dev", "action": ["READ", "WRITE"]}]}),
        )
        .await;
    assert_eq!(data(s, &b), json!(true));
    let dev_perm = grant_id(&lead, "team", "devs").await;
    let (s, b) = lead.get("/auth/api/permission/list?projectId=team").await;
    let perms = data(s, &b);
    assert_eq!(perms.as_array().unwrap().len(), 2, "{perms}");
    assert!(
        perms.as_array().unwrap().iter().any(|p| p["id"] == dev_perm && p["repos"] == json!(["private"])),
        "{perms}"
    );

    let dev = admin.as_user("dev", "dev-password-1");
    let outsider = admin.as_user("outsider", "outsider-password");
    let wrong = admin.as_user("dev", "not-the-password");
    let anonymous = admin.anonymous();

    // (group, request, who is allowed)
    let groups: Vec<(&str, Case, &Api)> = vec![
        ("project info", Case::new("GET", "/repository/api/project/info/team", None), &dev),
        ("project exist", Case::new("GET", "/repository/api/project/exist/team", None), &lead),
        (
            "repo create",
            Case::new(
                "POST",
                "/repository/api/repo/create",
                Some(json!({"projectId": "team", "name": "new", "type": "RDS"})),
            ),
            &lead,
        ),
        ("repo info", Case::new("GET", "/repository/api/repo/info/team/private", None), &dev),
        ("repo exist", Case::new("GET", "/repository/api/repo/exist/team/private", None), &dev),
        ("repo delete", Case::new("DELETE", "/repository/api/repo/delete/team/new", None), &lead),
        (
            "user create",
            Case::new("POST", "/auth/api/user/create", Some(json!({"userId": "u2", "pwd": "u2-password"}))),
            &admin,
        ),
        ("user list", Case::new("GET", "/auth/api/user/list", None), &admin),
        ("user detail", Case::new("GET", "/auth/api/user/detail/dev", None), &dev),
        ("user update", Case::new("PUT", "/auth/api/user/u2", Some(json!({"name": "U2"}))), &admin),
        ("user delete", Case::new("DELETE", "/auth/api/user/u2", None), &admin),
        ("token create", Case::new("POST", "/auth/api/user/token/dev/t1", None), &dev),
        ("token list", Case::new("GET", "/auth/api/user/list/token/dev", None), &dev),
        ("token delete", Case::new("DELETE", "/auth/api/user/token/dev/t1", None), &dev),
        (
            "permission create",
            Case::new(
                "POST",
                "/auth/api/permission/create",
                Some(
                    json!({"permName": "x", "projectId": "team", "resourceType": "PROJECT", "users": [{"id": "admin", "action": ["READ"]}]}),
                ),
            ),
            &lead,
        ),
        ("permission list", Case::new("GET", "/auth/api/permission/list?projectId=team", None), &lead),
        (
            "upload open",
            Case::new("POST", "/blobs/uploads", Some(json!({"projectId": "team", "repoName": "private", "size": 3}))),
            &dev,
        ),
    ];
    for (group, case, allowed) in &groups {
        let send = |who: &Api| {
            let who = who.clone();
            let (m, p, b) = (case.method, case.path.clone(), case.body.clone());
            async move { who.send(m, &p, b).await }
        };
        let (s, b, h) = send(&anonymous).await;
        failure(s, &b, 401, 250114);
        assert_eq!(h["www-authenticate"], "Basic realm=\"depot\"", "{group}");
        let (s, b, h) = send(&wrong).await;
        failure(s, &b, 401, 250114);
        assert_eq!(h["www-authenticate"], "Basic realm=\"depot\"", "{group}");
        let (s, b, _) = send(&outsider).await;
        assert_eq!((s, b["code"].as_i64()), (403, Some(250113)), "{group}: {b}");
        let (s, b, _) = send(allowed).await;
        assert_eq!((s, b["code"].as_i64()), (200, Some(0)), "{group}: {b}");
    }

    // The repository list shows each caller what it may read, `[]` when nothing: the
    // outsider sees the public repository, dev also the private one it holds a grant on.
    let list = |who: &Api| {
        let who = who.clone();
        async move {
            let (s, b) = who.get("/repository/api/repo/list/team").await;
            data(s, &b).as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect::<Vec<_>>()
        }
    };
    for who in [&anonymous, &wrong] {
        let (s, b) = who.get("/repository/api/repo/list/team").await;
        failure(s, &b, 401, 250114);
    }
    assert_eq!(list(&outsider).await, ["open"]);
    assert_eq!(list(&dev).await, ["open", "private"]);
    assert_eq!(list(&lead).await, ["open", "private"]);
    let (s, b) = outsider.get("/repository/api/repo/list/no-such-project").await;
    assert_eq!(data(s, &b), json!([]), "a missing project looks like one without rights");
    let (s, b) = admin.get("/repository/api/repo/list/no-such-project").await;
    failure(s, &b, 404, 251004);

    // READ is not WRITE: dev cannot open an upload on the public repository, nor manage.
    let (s, b) = dev.post("/blobs/uploads", json!({"projectId": "team", "repoName": "open", "size": 3})).await;
    failure(s, &b, 403, 250113);
    let (s, b) =
        dev.post("/repository/api/repo/create", json!({"projectId": "team", "name": "mine", "type": "RDS"})).await;
    failure(s, &b, 403, 250113);
    // A public repository is readable by anyone, a private one is not.
    let (s, b) = anonymous.get("/repository/api/repo/info/team/open").await;
    assert_eq!(data(s, &b)["public"], true);
    let (s, b) = outsider.get("/repository/api/repo/info/team/open").await;
    data(s, &b);
    let (s, b) = anonymous.get("/repository/api/repo/info/team/private").await;
    failure(s, &b, 401, 250114);

    // Revoking a grant takes effect at once.
    let (s, b) = outsider.delete(&format!("/auth/api/permission/delete/{dev_perm}")).await;
    failure(s, &b, 403, 250113);
    let (s, b) = lead.delete(&format!("/auth/api/permission/delete/{dev_perm}")).await;
    data(s, &b);
    let (s, b) = dev.get("/repository/api/repo/info/team/private").await;
    failure(s, &b, 403, 250113);
    // Again: `false`, as bkrepo answers for a grant that is not there.
    let (s, b) = lead.delete(&format!("/auth/api/permission/delete/{dev_perm}")).await;
    assert_eq!(data(s, &b), json!(false));
    let (s, b) = admin.delete(&format!("/auth/api/permission/delete/{lead_perm}")).await;
    data(s, &b);
    let (s, b) = lead.get("/auth/api/permission/list?projectId=team").await;
    failure(s, &b, 403, 250113);

    // Bad grants are 400s naming the problem.
    for (body, needle) in [
        (
            json!({"permName": "x", "projectId": "team", "resourceType": "NODE", "users": [{"id": "dev", "action": ["READ"]}]}),
            "resourceType",
        ),
        (
            json!({"permName": "x", "projectId": "team", "resourceType": "PROJECT", "users": [{"id": "dev", "action": ["FLY"]}]}),
            "unknown action",
        ),
        (
            json!({"permName": "x", "projectId": "team", "resourceType": "REPO", "repos": [], "users": [{"id": "dev", "action": ["READ"]}]}),
            "repos",
        ),
        (json!({"permName": "x", "projectId": "team", "resourceType": "PROJECT", "users": []}), "users"),
        (json!({"projectId": "team", "resourceType": "PROJECT", "users": []}), "[permName]"),
    ] {
        let (s, b) = admin.post("/auth/api/permission/create", body).await;
        assert_eq!(s, 400, "{b}");
        assert!(b["message"].as_str().unwrap().contains(needle), "{needle}: {b}");
    }
    let (s, b) = admin
        .post("/auth/api/permission/create", json!({"permName": "x", "projectId": "nope", "resourceType": "PROJECT", "users": [{"id": "dev", "action": ["READ"]}]}))
        .await;
    failure(s, &b, 404, 251004);
    let (s, b) = admin
        .post("/auth/api/permission/create", json!({"permName": "y", "projectId": "team", "resourceType": "PROJECT", "users": [{"id": "ghost", "action": ["READ"]}]}))
        .await;
    failure(s, &b, 404, 250202);
    // A grant naming a repository that does not exist is refused like one naming an
    // unknown user: it would take effect on a repository created later under the name.
    let (s, b) = admin
        .post("/auth/api/permission/create", json!({"permName": "x", "projectId": "team", "resourceType": "REPO", "repos": ["private", "later"], "users": [{"id": "dev", "action": ["READ"]}]}))
        .await;
    assert!(failure(s, &b, 404, 251006).contains("team/later"), "{b}");
}

/// WRITE implies READ (and so does DELETE): a CI user that uploads can read what it
/// uploaded, in the four cases.
#[tokio::test]
async fn write_implies_read_in_four_cases() {
    let (_dir, _server, admin) = embedded();
    let (s, b) = admin.post("/repository/api/project/create", json!({"name": "ci"})).await;
    data(s, &b);
    let (s, b) =
        admin.post("/repository/api/repo/create", json!({"projectId": "ci", "name": "charts", "type": "RDS"})).await;
    data(s, &b);
    create_user(&admin, "builder", "builder-password", false).await;
    create_user(&admin, "cleaner", "cleaner-password", false).await;
    create_user(&admin, "outsider", "outsider-password", false).await;
    for (user, action) in [("builder", "WRITE"), ("cleaner", "DELETE")] {
        let grant = json!({"permName": user, "projectId": "ci", "resourceType": "REPO", "repos": ["charts"], "users": [{"id": user, "action": [action]}]});
        let (s, b) = admin.post("/auth/api/permission/create", grant).await;
        data(s, &b);
    }
    let builder = admin.as_user("builder", "builder-password");
    let (file, bytes) = crate::rds::chart("built", "1.0.0", "tgz");
    let (s, b) = crate::rds::upload(&builder, "/rds/api/ci/charts/charts", &file, bytes.clone()).await;
    assert_eq!(s, 201, "{b}");
    let session = crate::uploads::open(&builder, "ci", "charts", 3, Some(&crate::uploads::sha256_hex(b"abc"))).await;
    crate::uploads::send_bytes(&session, b"abc").await;
    let id = session["id"].as_str().unwrap();
    let (s, b) = builder.post(&format!("/blobs/uploads/{id}/complete"), json!({})).await;
    data(s, &b);
    let cases = [
        "/repository/api/repo/info/ci/charts".to_string(),
        "/repository/api/package/info/ci/charts?packageKey=rds://built".to_string(),
        "/rds/ci/charts/api/charts/built/1.0.0".to_string(),
        format!("/blobs/uploads/{id}/content?filename=abc.bin"),
    ];
    let http = crate::uploads::no_redirects();
    let get = |auth: Option<(&str, &str)>, path: &str| {
        let mut r = http.get(format!("{}{path}", admin.base));
        if let Some((u, p)) = auth {
            r = r.basic_auth(u, Some(p));
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    for path in &cases {
        assert_eq!(get(None, path).await, 401, "anonymous {path}");
        assert_eq!(get(Some(("builder", "wrong-password")), path).await, 401, "wrong password {path}");
        assert_eq!(get(Some(("outsider", "outsider-password")), path).await, 403, "no permission {path}");
        let ok = get(Some(("builder", "builder-password")), path).await;
        assert!(ok == 200 || ok == 302, "WRITE reads {path}: {ok}");
        if !path.starts_with("/blobs/") {
            let ok = get(Some(("cleaner", "cleaner-password")), path).await;
            assert!(ok == 200 || ok == 302, "DELETE reads {path}: {ok}");
        }
    }
    let index = get(Some(("builder", "builder-password")), "/rds/ci/charts/index.yaml").await;
    assert_eq!(index, 200, "the writer reads its index");
    // WRITE deletes what it may upload, as in bkrepo (whose deletes need WRITE), but is
    // not MANAGE: the repository stays.
    let (s, b) = builder.delete("/repository/api/version/delete/ci/charts?packageKey=rds://built&version=1.0.0").await;
    data(s, &b);
    let (s, b) = admin.get("/repository/api/package/info/ci/charts?packageKey=rds://built").await;
    assert_eq!(data(s, &b), serde_json::Value::Null, "the writer's delete went through");
    let (s, b) = builder.delete("/repository/api/repo/delete/ci/charts").await;
    failure(s, &b, 403, 250113);
}

/// Grants die with what they name. A project deleted and created again under its name,
/// by another team, grants nothing to the old project's users; a repository deleted and
/// created again is not covered by the old grants that named it; grants on the
/// project's other repositories stay.
#[tokio::test]
async fn grants_do_not_outlive_their_project_or_repository() {
    let (_dir, _server, admin) = embedded();
    create_user(&admin, "old", "old-password-1", false).await;
    let old = admin.as_user("old", "old-password-1");
    let setup = |repos: &'static [&'static str]| {
        let admin = admin.clone();
        async move {
            let (s, b) = admin.post("/repository/api/project/create", json!({"name": "reused"})).await;
            data(s, &b);
            for r in repos {
                let (s, b) = admin
                    .post("/repository/api/repo/create", json!({"projectId": "reused", "name": r, "type": "RDS"}))
                    .await;
                data(s, &b);
            }
        }
    };
    let grant = |body: Value| {
        let admin = admin.clone();
        async move {
            let name = body["permName"].as_str().unwrap().to_string();
            let (s, b) = admin.post("/auth/api/permission/create", body).await;
            assert_eq!(data(s, &b), json!(true));
            grant_id(&admin, "reused", &name).await
        }
    };
    let reads = |repo: &'static str| {
        let old = old.clone();
        async move { old.get(&format!("/repository/api/repo/info/reused/{repo}")).await.0 }
    };

    setup(&["charts"]).await;
    grant(json!({"permName": "all", "projectId": "reused", "resourceType": "PROJECT", "users": [{"id": "old", "action": ["MANAGE"]}]}))
        .await;
    assert_eq!(reads("charts").await, 200);
    let (s, b) = admin.delete("/repository/api/project/delete/reused?forced=true").await;
    data(s, &b);
    setup(&["charts"]).await;
    assert_eq!(reads("charts").await, 403, "the old project's grant is gone");
    let (s, b) = admin.get("/auth/api/permission/list?projectId=reused").await;
    assert_eq!(data(s, &b), json!([]));

    // A REPO grant loses the deleted repository; one left naming nothing goes.
    let (s, b) =
        admin.post("/repository/api/repo/create", json!({"projectId": "reused", "name": "kept", "type": "RDS"})).await;
    data(s, &b);
    let both = grant(json!({"permName": "both", "projectId": "reused", "resourceType": "REPO", "repos": ["charts", "kept"], "users": [{"id": "old", "action": ["READ"]}]})).await;
    let only = grant(json!({"permName": "only", "projectId": "reused", "resourceType": "REPO", "repos": ["charts"], "users": [{"id": "old", "action": ["READ"]}]})).await;
    assert_eq!((reads("charts").await, reads("kept").await), (200, 200));
    let (s, b) = admin.delete("/repository/api/repo/delete/reused/charts?forced=true").await;
    data(s, &b);
    let (s, b) = admin
        .post("/repository/api/repo/create", json!({"projectId": "reused", "name": "charts", "type": "RDS"}))
        .await;
    data(s, &b);
    assert_eq!(reads("charts").await, 403, "the new repository is not the old one");
    assert_eq!(reads("kept").await, 200, "the grant still covers the other repository");
    let (s, b) = admin.get("/auth/api/permission/list?projectId=reused").await;
    let perms = data(s, &b);
    let perms = perms.as_array().unwrap();
    assert_eq!(perms.len(), 1, "{perms:?}");
    assert_eq!((perms[0]["id"].as_str(), &perms[0]["repos"]), (Some(both.as_str()), &json!(["kept"])));
    let (s, b) = admin.delete(&format!("/auth/api/permission/delete/{only}")).await;
    assert_eq!(data(s, &b), json!(false), "it went with the repository");

    // A user deleted and created again under the same id holds none of the old grants
    // and none of the old tokens; grants shared with others keep the others.
    create_user(&admin, "gone", "gone-password-1", false).await;
    let (s, b) = admin.post("/auth/api/user/token/gone/ci", json!({})).await;
    let old_token = data(s, &b)["id"].as_str().unwrap().to_string();
    let shared = grant(json!({"permName": "shared", "projectId": "reused", "resourceType": "PROJECT", "users": [{"id": "gone", "action": ["READ"]}, {"id": "old", "action": ["READ"]}]})).await;
    let alone = grant(json!({"permName": "alone", "projectId": "reused", "resourceType": "PROJECT", "users": [{"id": "gone", "action": ["MANAGE"]}]})).await;
    let gone = admin.as_user("gone", "gone-password-1");
    assert_eq!(gone.get("/repository/api/repo/info/reused/charts").await.0, 200);
    let (s, b) = admin.delete(&format!("{U}/gone")).await;
    data(s, &b);
    create_user(&admin, "gone", "gone-password-2", false).await;
    let again = admin.as_user("gone", "gone-password-2");
    assert_eq!(again.get("/repository/api/repo/info/reused/charts").await.0, 403, "no grant carried over");
    let with_old_token = admin.as_user("gone", &old_token);
    assert_eq!(with_old_token.get("/repository/api/repo/info/reused/charts").await.0, 401, "no token carried over");
    let (s, b) = admin.get("/auth/api/permission/list?projectId=reused").await;
    let perms = data(s, &b);
    let shared_now = perms.as_array().unwrap().iter().find(|p| p["id"] == shared.as_str()).expect("shared stays");
    assert_eq!((&shared_now["users"], &shared_now["actions"]), (&json!(["old"]), &json!(["READ"])));
    assert!(!perms.as_array().unwrap().iter().any(|p| p["id"] == alone.as_str()), "{perms}");
}

/// A refused request whose body follows its headers (as most clients send it) leaves the
/// connection usable; and search does not tell a user without rights which projects
/// exist.
#[tokio::test]
async fn refusals_keep_the_connection_and_the_secret() {
    use std::io::{Read, Write};
    let (_dir, server, admin) = embedded();
    let (s, b) = admin.post("/repository/api/project/create", json!({"name": "hidden"})).await;
    data(s, &b);
    create_user(&admin, "nobody", "nobody-password", false).await;
    let nobody = admin.as_user("nobody", "nobody-password");
    for project in ["hidden", "no-such-project"] {
        let rule = json!({"relation": "AND", "rules": [{"field": "projectId", "operation": "EQ", "value": project}]});
        let (s, b) = nobody.post("/repository/api/package/search", json!({"rule": rule})).await;
        assert_eq!(data(s, &b)["totalRecords"], 0, "{project}: {b}");
    }
    let rule =
        json!({"relation": "AND", "rules": [{"field": "projectId", "operation": "EQ", "value": "no-such-project"}]});
    let (s, b) = admin.post("/repository/api/package/search", json!({"rule": rule})).await;
    failure(s, &b, 404, 251004);

    let addr = server.base.trim_start_matches("http://").to_string();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = "{}";
    let head = format!(
        "POST /repository/api/version/list/hidden/r?packageKey=rds://a HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    conn.write_all(body.as_bytes()).unwrap();
    let read_response = |conn: &mut std::net::TcpStream| {
        let mut buf = vec![0u8; 8192];
        let n = conn.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let first = read_response(&mut conn);
    assert!(first.starts_with("HTTP/1.1 401"), "{first}");
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let second = read_response(&mut conn);
    assert!(second.starts_with("HTTP/1.1 200"), "the connection still serves: {second:?}");
}

/// 64 clients at once with wrong passwords, against the real binary: password checks run
/// two at a time (about 19 MiB each), so memory stays bounded, and a token client is
/// answered meanwhile. Then the address is refused with 429 and Retry-After, while a
/// cached credential and a token still work.
#[tokio::test]
async fn wrong_passwords_cost_bounded_memory_and_are_throttled() {
    let (_dir, server, api) = crate::harness::embedded(&[("DEPOT_LOGIN_SLOTS", "2")]);
    let (s, b) = api.post(&format!("{U}/token/admin/probe"), json!({})).await;
    let token = api.as_user("admin", data(s, &b)["id"].as_str().unwrap());
    server.reset_peak_rss();
    let flood = futures::future::join_all((0..64).map(|i| {
        let a = api.as_user(&format!("nobody{i}"), "wrong-password-1");
        async move { a.get("/repository/api/project/list").await.0 }
    }));
    let probe = async {
        let mut slowest = Duration::ZERO;
        for _ in 0..20 {
            let started = std::time::Instant::now();
            assert_eq!(token.get("/repository/api/project/list").await.0, 200);
            slowest = slowest.max(started.elapsed());
        }
        slowest
    };
    let (statuses, slowest) = tokio::join!(flood, probe);
    let peak = server.peak_rss();
    eprintln!("64 wrong passwords at once: peak RSS {:.1} MiB, slowest token request {slowest:?}", peak as f64 / 1048576.0);
    assert!(statuses.iter().all(|s| *s == 401 || *s == 429), "{statuses:?}");
    assert!(statuses.iter().filter(|s| **s == 401).count() >= 30, "{statuses:?}");
    assert!(peak < 128 * 1024 * 1024, "peak RSS {peak} bytes");
    // The address is past its 30 failures: even a right password is refused for now...
    let (s, b, h) = api.as_user("nobody1", "wrong-password-1").send("GET", "/repository/api/project/list", None).await;
    assert_eq!(s, 429, "{b}");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(b["message"].as_str().unwrap().contains("too many failed logins"), "{b}");
    // ...but a credential verified before, and a token, are not.
    assert_eq!(api.get("/repository/api/project/list").await.0, 200);
    assert_eq!(token.get("/repository/api/project/list").await.0, 200);
}

/// Wrong passwords sent by clients that hang up before the answer, and guesses of one
/// user's password sent all at once: each check is counted when it starts and holds its
/// slot until the hash is done, so memory stays bounded and the throttle holds.
#[tokio::test]
async fn cancelled_and_concurrent_guesses_are_bounded_and_counted() {
    use tokio::io::AsyncWriteExt;
    let (_dir, server, api) = crate::harness::embedded(&[("DEPOT_LOGIN_SLOTS", "2")]);
    create_user(&api, "victim", "victim-password", false).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    server.reset_peak_rss();
    let started = std::time::Instant::now();
    let hang_ups = (0..8).map(|t| {
        let addr = addr.clone();
        async move {
            let mut sent = 0;
            while started.elapsed() < Duration::from_secs(3) {
                let auth = crate::harness::basic(&format!("gone{t}x{sent}"), "wrong-password-1");
                let req = format!("GET /repository/api/project/list HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\r\n");
                if let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await {
                    let _ = s.write_all(req.as_bytes()).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                sent += 1;
            }
            sent
        }
    });
    let sent: usize = futures::future::join_all(hang_ups).await.into_iter().sum();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak = server.peak_rss();
    eprintln!("{sent} hung-up logins in 3 s: peak RSS {:.1} MiB", peak as f64 / 1048576.0);
    assert!(peak < 128 * 1024 * 1024, "peak RSS {peak}");
    // They counted against the address: it is refused now.
    let (s, _, h) = api.as_user("victim", "wrong-password-1").send("GET", "/repository/api/project/list", None).await;
    assert_eq!(s, 429);
    assert!(h.get("retry-after").is_some());

    // Fifty guesses of one user's password at once, from a fresh server: ten are checked.
    let (_dir, _server, api) = crate::harness::embedded(&[("DEPOT_LOGIN_SLOTS", "2")]);
    create_user(&api, "victim", "victim-password", false).await;
    let guesses = futures::future::join_all((0..50).map(|i| {
        let a = api.as_user("victim", &format!("guess-{i}-password"));
        async move { a.get("/repository/api/project/list").await.0 }
    }))
    .await;
    let checked = guesses.iter().filter(|s| **s == 401).count();
    assert_eq!(checked, 10, "{guesses:?}");
    assert!(guesses.iter().all(|s| *s == 401 || *s == 429), "{guesses:?}");
}
