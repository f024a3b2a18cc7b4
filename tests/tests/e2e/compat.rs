//! bkrepo's current controllers for projects, repositories, users, tokens and grants
//! (`UserController.kt`, `PermissionController.kt`, `CreatePermissionRequest.kt`,
//! `Permission.kt`), in their exact request shapes, through `depot serve`.
use serde_json::{json, Value};

use crate::harness::{data, embedded, failure, Api};

async fn setup() -> (tempfile::TempDir, crate::harness::Server, Api) {
    let (dir, server, api) = embedded(&[]);
    let (s, b) = api.post("/repository/api/project/create", json!({"name": "team", "displayName": "Team"})).await;
    assert_eq!(data(s, &b), json!("team"), "project/create answers the project's name");
    for r in ["charts", "docs"] {
        let (s, b) = api.post("/repository/api/repo/create", json!({"projectId": "team", "name": r, "type": "RDS"})).await;
        data(s, &b);
    }
    for u in ["ann", "bob", "cid"] {
        let (s, b) = api.post("/auth/api/user/create", json!({"userId": u, "name": u, "pwd": format!("{u}-password-1")})).await;
        assert_eq!(data(s, &b), json!(true));
    }
    (dir, server, api)
}

fn grants(b: &Value) -> Vec<Value> {
    b["data"].as_array().cloned().unwrap_or_default()
}

/// Point 1: grants as `CreatePermissionRequest.kt` has them.
#[tokio::test]
async fn grants_take_bkrepos_request_and_answer_its_fields() {
    let (_dir, _server, api) = setup().await;
    // users: ids, actions: for all of them; `data: true`.
    let body = json!({"resourceType": "REPO", "projectId": "team", "permName": "readers", "repos": ["charts"],
        "includePattern": [], "excludePattern": [], "users": ["ann", "bob"], "roles": [], "actions": ["READ", "WRITE"],
        "createBy": "admin", "updatedBy": "admin"});
    let (s, b) = api.post("/auth/api/permission/create", body.clone()).await;
    assert_eq!(data(s, &b), json!(true));
    // The same name in the same scope: 250207.
    let (s, b) = api.post("/auth/api/permission/create", body).await;
    assert!(failure(s, &b, 409, 250207).contains("readers"), "{b}");
    // depot's older body still works.
    let old = json!({"permName": "managers", "projectId": "team", "resourceType": "PROJECT", "users": [{"id": "cid", "action": ["MANAGE"]}]});
    let (s, b) = api.post("/auth/api/permission/create", old).await;
    assert_eq!(data(s, &b), json!(true));
    let ann = api.as_user("ann", "ann-password-1");
    assert_eq!(ann.get("/repository/api/repo/info/team/charts").await.0, 200);
    assert_eq!(ann.get("/repository/api/repo/info/team/docs").await.0, 403);

    // Listed with Permission.kt's fields; filtered by resourceType and repoName.
    let (s, b) = api.get("/auth/api/permission/list?projectId=team&resourceType=REPO").await;
    data(s, &b);
    let listed = grants(&b);
    assert_eq!(listed.len(), 1, "{b}");
    let g = &listed[0];
    for field in
        ["id", "resourceType", "projectId", "permName", "repos", "includePattern", "excludePattern", "users", "roles", "actions", "createBy", "createAt", "updateBy", "updateAt"]
    {
        assert!(g.get(field).is_some(), "{field}: {g}");
    }
    assert_eq!((&g["users"], &g["actions"], &g["repos"]), (&json!(["ann", "bob"]), &json!(["READ", "WRITE"]), &json!(["charts"])));
    let (s, b) = api.get("/auth/api/permission/list?projectId=team&resourceType=PROJECT").await;
    data(s, &b);
    assert_eq!(grants(&b).iter().map(|g| g["permName"].clone()).collect::<Vec<_>>(), [json!("managers")]);
    let (s, b) = api.get("/auth/api/permission/list?projectId=team&repoName=docs").await;
    assert_eq!(data(s, &b), json!([]));
    let id = g["id"].as_str().unwrap().to_string();

    // bkrepo's update routes: users, actions, repos.
    let (s, b, _) = api.send("PUT", "/auth/api/permission/user", Some(json!({"permissionId": id, "userId": ["cid"]}))).await;
    assert_eq!(data(s, &b), json!(true));
    assert_eq!(ann.get("/repository/api/repo/info/team/charts").await.0, 403, "ann left the grant");
    let (s, b, _) = api.send("PUT", "/auth/api/permission/repo", Some(json!({"permissionId": id, "repos": ["docs"]}))).await;
    assert_eq!(data(s, &b), json!(true));
    let (s, b, _) = api.send("PUT", "/auth/api/permission/update/action", Some(json!({"permissionId": id, "actions": ["READ"]}))).await;
    assert_eq!(data(s, &b), json!(true));
    let (s, b) = api.get("/auth/api/permission/list?projectId=team&repoName=docs").await;
    data(s, &b);
    let g = &grants(&b)[0];
    assert_eq!((&g["users"], &g["actions"], &g["repos"], &g["updateBy"]), (&json!(["cid"]), &json!(["READ"]), &json!(["docs"]), &json!("admin")));
    let (s, b, _) = api.send("PUT", "/auth/api/permission/user", Some(json!({"permissionId": id, "userId": ["ghost"]}))).await;
    failure(s, &b, 404, 250202);
    let (s, b, _) = api.send("PUT", "/auth/api/permission/user", Some(json!({"permissionId": "nope", "userId": ["ann"]}))).await;
    failure(s, &b, 404, 250108);
    // Deleting: true, then false when it is gone.
    let (s, b) = api.delete(&format!("/auth/api/permission/delete/{id}")).await;
    assert_eq!(data(s, &b), json!(true));
    let (s, b) = api.delete(&format!("/auth/api/permission/delete/{id}")).await;
    assert_eq!(data(s, &b), json!(false));
    // The name is free again.
    let again = json!({"projectId": "team", "permName": "readers", "repos": ["charts"], "users": ["ann"], "actions": ["READ"]});
    let (s, b) = api.post("/auth/api/permission/create", again).await;
    assert_eq!(data(s, &b), json!(true));
}

/// Point 2: users as `UserController.kt` has them.
#[tokio::test]
async fn users_answer_as_bkrepos_user_controller() {
    let (_dir, _server, api) = setup().await;
    // Created again: true. Without pwd: a generated password, still true.
    let (s, b) = api.post("/auth/api/user/create", json!({"userId": "ann", "name": "Ann", "pwd": "other-password"})).await;
    assert_eq!(data(s, &b), json!(true));
    let (s, b) = api.post("/auth/api/user/create", json!({"userId": "nopwd", "name": "No password"})).await;
    assert_eq!(data(s, &b), json!(true));
    let (s, b) = api.get("/auth/api/user/detail/nopwd").await;
    assert_eq!(data(s, &b)["name"], "No password");
    // bkrepo's update and delete paths.
    let (s, b, _) = api.send("PUT", "/auth/api/user/update/info/bob", Some(json!({"name": "Bobby"}))).await;
    assert_eq!(data(s, &b), json!(true));
    let (s, b) = api.get("/auth/api/user/detail/bob").await;
    assert_eq!(data(s, &b)["name"], "Bobby");
    let (s, b) = api.delete("/auth/api/user/delete/cid").await;
    assert_eq!(data(s, &b), json!(true));
    let (s, b) = api.get("/auth/api/user/detail/cid").await;
    failure(s, &b, 404, 250202);
    // The caller, and pages of users.
    let (s, b) = api.as_user("ann", "ann-password-1").get("/auth/api/user/info").await;
    assert_eq!(data(s, &b)["userId"], "ann");
    let (s, b) = api.get("/auth/api/user/page/1/2").await;
    let page = data(s, &b);
    assert_eq!((page["pageNumber"].as_i64(), page["pageSize"].as_i64(), page["records"].as_array().map(Vec::len)), (Some(1), Some(2), Some(2)));
    let total = page["totalRecords"].as_i64().unwrap();
    assert_eq!(page["totalPages"].as_i64(), Some((total + 1) / 2), "{page}");
    let (s, b) = api.get(&format!("/auth/api/user/page/{}/2", (total + 1) / 2 + 1)).await;
    assert_eq!(data(s, &b)["records"], json!([]));
    let (s, b) = api.as_user("ann", "ann-password-1").get("/auth/api/user/page/1/2").await;
    failure(s, &b, 403, 250113);
}

/// Point 7: what `data` holds for tokens.
#[tokio::test]
async fn tokens_answer_as_bkrepo() {
    use base64::Engine;
    let (_dir, server, api) = setup().await;
    let ann = api.as_user("ann", "ann-password-1");
    let (s, b) = ann.post("/auth/api/user/token/ann/ci", json!({})).await;
    let tok = data(s, &b);
    let secret = tok["id"].as_str().unwrap().to_string();
    let basic = tok["authorization"]["basic"].as_str().unwrap().to_string();
    let want = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("ann:{secret}")));
    assert_eq!(basic, want);
    let res = api.http.get(format!("{}/auth/api/user/info", server.base)).header("authorization", &basic).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    // Again without expiredAt: 250219; with it: renewed, the secret unchanged.
    let (s, b) = ann.post("/auth/api/user/token/ann/ci", json!({})).await;
    failure(s, &b, 409, 250219);
    let later = (time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(86_400))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (s, b) = ann.post(&format!("/auth/api/user/token/ann/ci?expiredAt={}", later.replace('+', "%2B")), json!({})).await;
    let renewed = data(s, &b);
    assert!(renewed["expiredAt"].is_string() && renewed["id"].is_null(), "{renewed}");
    let res = api.http.get(format!("{}/auth/api/user/info", server.base)).header("authorization", &basic).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200, "the secret still works");
    let (s, b) = ann.get("/auth/api/user/list/token/ann").await;
    assert!(data(s, &b)[0]["expiredAt"].is_string());
    // Deleting a token: true, also when there is none.
    for _ in 0..2 {
        let (s, b) = ann.delete("/auth/api/user/token/ann/ci").await;
        assert_eq!(data(s, &b), json!(true));
    }
}

/// Point 9: bkrepo's specific codes, with honest statuses.
#[tokio::test]
async fn errors_carry_bkrepos_codes() {
    let (_dir, _server, api) = setup().await;
    let (s, b) = api.get("/repository/api/project/info/nope").await;
    failure(s, &b, 404, 251004);
    let (s, b) = api.post("/repository/api/project/create", json!({"name": "team"})).await;
    failure(s, &b, 409, 251005);
    let (s, b) = api.post("/repository/api/repo/create", json!({"projectId": "team", "name": "charts", "type": "RDS"})).await;
    failure(s, &b, 409, 251007);
    let (code, form) = crate::rds::chart_form("keep", "1.0.0");
    let res = api.http.post(format!("{}/rds/api/team/charts/charts", api.base)).basic_auth("admin", Some(crate::harness::ADMIN_PASSWORD)).header("content-type", code).body(form).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let (s, b) = api.delete("/repository/api/repo/delete/team/charts").await;
    failure(s, &b, 409, 251008);
    let (s, b) = api.post("/auth/api/user/token/ann/t", json!({})).await;
    data(s, &b);
    let (s, b) = api.post("/auth/api/user/token/ann/t", json!({})).await;
    failure(s, &b, 409, 250219);
    let (s, b) = api.get("/auth/api/user/detail/nobody").await;
    failure(s, &b, 404, 250202);
}

/// Point 3: callers who are not administrators, as `UserProjectController.kt` allows.
#[tokio::test]
async fn any_user_creates_and_sees_its_projects() {
    let (_dir, _server, api) = setup().await;
    let ann = api.as_user("ann", "ann-password-1");
    let (s, b) = ann.get("/repository/api/project/list").await;
    assert_eq!(data(s, &b), json!([]), "ann holds no grant yet");
    let (s, b) = ann.post("/repository/api/project/create", json!({"name": "anns", "displayName": "Ann's"})).await;
    assert_eq!(data(s, &b), json!("anns"));
    // Its creator manages it: a repository, a grant.
    let (s, b) = ann.post("/repository/api/repo/create", json!({"projectId": "anns", "name": "charts", "type": "RDS"})).await;
    data(s, &b);
    let (s, b) = ann.get("/repository/api/project/list").await;
    let names: Vec<Value> = data(s, &b).as_array().unwrap().iter().map(|p| p["name"].clone()).collect();
    assert_eq!(names, [json!("anns")]);
    let (s, b) = api.get("/repository/api/project/list").await;
    assert_eq!(data(s, &b).as_array().unwrap().len(), 2, "the admin sees every project");
    // Nothing to read: `[]`, not 403.
    let (s, b) = api.as_user("bob", "bob-password-1").get("/repository/api/repo/list/anns").await;
    assert_eq!(data(s, &b), json!([]));
    let (s, b) = api.anonymous().post("/repository/api/project/create", json!({"name": "anon"})).await;
    failure(s, &b, 401, 250114);
}

/// Points 4, 5 and 6: bkrepo's repository routes, RepositoryInfo, categories.
#[tokio::test]
async fn repositories_answer_as_repository_info() {
    let (_dir, _server, api) = setup().await;
    let config = json!({"type": "composite", "settings": {"k": "v"}, "proxy": {"channelList": []}});
    let body = json!({"projectId": "team", "name": "ui-made", "type": "RDS", "category": "COMPOSITE", "public": false,
        "description": "from the UI", "configuration": config});
    let (s, b) = api.post("/repository/api/repo/create", body).await;
    let r = data(s, &b);
    for field in ["id", "name", "type", "category", "public", "description", "configuration", "storageCredentialsKey", "quota", "used", "display", "createdBy", "createdDate", "lastModifiedBy", "lastModifiedDate"] {
        assert!(r.get(field).is_some(), "{field}: {r}");
    }
    assert_eq!((&r["configuration"], &r["category"]), (&config, &json!("LOCAL")), "stored as sent; COMPOSITE is stored as a local repository");
    for category in ["REMOTE", "VIRTUAL"] {
        let (s, b) = api.post("/repository/api/repo/create", json!({"projectId": "team", "name": "x1", "type": "RDS", "category": category})).await;
        assert!(failure(s, &b, 400, 250105).contains("LOCAL"), "{b}");
    }
    let (s, b) = api.get("/repository/api/repo/info/team/charts").await;
    assert_eq!(data(s, &b)["configuration"], json!({"type": "local", "settings": {}}));
    // Info by type; page; filters.
    let (s, b) = api.get("/repository/api/repo/info/team/charts/RDS").await;
    assert_eq!(data(s, &b)["name"], "charts");
    let (s, b) = api.get("/repository/api/repo/info/team/charts/GENERIC").await;
    failure(s, &b, 404, 251006);
    let (s, b) = api.get("/repository/api/repo/page/team/1/2").await;
    let page = data(s, &b);
    assert_eq!((page["totalRecords"].as_i64(), page["records"].as_array().map(Vec::len), page["totalPages"].as_i64()), (Some(3), Some(2), Some(2)));
    let (s, b) = api.get("/repository/api/repo/page/team/2/2").await;
    assert_eq!(data(s, &b)["records"].as_array().map(Vec::len), Some(1));
    let (s, b) = api.get("/repository/api/repo/list/team?name=ch").await;
    assert_eq!(data(s, &b).as_array().unwrap().iter().map(|r| r["name"].clone()).collect::<Vec<_>>(), [json!("charts")]);
    let (s, b) = api.get("/repository/api/repo/list/team?type=GENERIC").await;
    assert_eq!(data(s, &b), json!([]));
    // Update: public, description, configuration.
    let update = json!({"public": true, "description": "now public", "configuration": {"type": "local", "settings": {"a": 1}}});
    let (s, b) = api.post("/repository/api/repo/update/team/docs", update).await;
    assert_eq!(data(s, &b), json!(null));
    let (s, b) = api.anonymous().get("/repository/api/repo/info/team/docs").await;
    let r = data(s, &b);
    assert_eq!((&r["public"], &r["description"], &r["configuration"]["settings"]["a"]), (&json!(true), &json!("now public"), &json!(1)));
    let (s, b) = api.as_user("ann", "ann-password-1").post("/repository/api/repo/update/team/docs", json!({"public": false})).await;
    failure(s, &b, 403, 250113);
    let (s, b) = api.post("/repository/api/repo/update/team/docs", json!({"description": "d".repeat(201)})).await;
    failure(s, &b, 400, 250105);
    // Projects: update, exist by name or display name.
    let (s, b, _) = api.send("PUT", "/repository/api/project/team", Some(json!({"displayName": "The Team", "description": "d"}))).await;
    assert_eq!(data(s, &b), json!(true));
    let (s, b) = api.get("/repository/api/project/info/team").await;
    assert_eq!(data(s, &b)["displayName"], "The Team");
    for (q, want) in [("name=team", true), ("displayName=The%20Team", true), ("name=nope", false), ("name=nope&displayName=Nope", false)] {
        let (s, b) = api.get(&format!("/repository/api/project/exist?{q}")).await;
        assert_eq!(data(s, &b), json!(want), "{q}");
    }
}

/// Point 8: bkrepo's name rules for what is new; what is stored reads.
#[tokio::test]
async fn new_names_follow_bkrepos_rules() {
    let (_dir, _server, api) = setup().await;
    let (s, b) = api.post("/auth/api/user/create", json!({"userId": "bob@example.com", "name": "Bob", "pwd": "bob-mail-password"})).await;
    assert_eq!(data(s, &b), json!(true));
    let (s, b) = api.as_user("bob@example.com", "bob-mail-password").get("/auth/api/user/info").await;
    assert_eq!(data(s, &b)["userId"], "bob@example.com");
    for bad in ["b", "-bob", "bob smith"] {
        let (s, b) = api.post("/auth/api/user/create", json!({"userId": bad, "pwd": "long-enough-pw"})).await;
        failure(s, &b, 400, 250105);
    }
    for (name, ok) in [("_private", true), ("1st", false), ("a.b", false), ("x", false)] {
        let (s, b) = api.post("/repository/api/project/create", json!({"name": name})).await;
        assert_eq!(s, if ok { 200 } else { 400 }, "{name}: {b}");
    }
    let (s, b) = api.post("/repository/api/project/create", json!({"name": "shown", "displayName": "x"})).await;
    failure(s, &b, 400, 250105);
    for (name, ok) in [("charts.v2", true), ("_r", true), ("a..b", false), ("1r", false), ("r", false)] {
        let (s, b) = api.post("/repository/api/repo/create", json!({"projectId": "team", "name": name, "type": "RDS"})).await;
        assert_eq!(s, if ok { 200 } else { 400 }, "{name}: {b}");
    }
    let (s, b) = api.post("/repository/api/repo/create", json!({"projectId": "team", "name": "long-desc", "type": "RDS", "description": "d".repeat(201)})).await;
    failure(s, &b, 400, 250105);
}

/// Point 10: deleting a repository needs DELETE on it, as in bkrepo (WRITE implies it).
#[tokio::test]
async fn deleting_a_repository_needs_delete() {
    let (_dir, _server, api) = setup().await;
    let grant = |user: &str, actions: &[&str]| json!({"projectId": "team", "permName": user, "repos": ["docs"], "users": [user], "actions": actions});
    for (user, actions) in [("ann", &["READ"][..]), ("bob", &["DELETE"][..])] {
        let (s, b) = api.post("/auth/api/permission/create", grant(user, actions)).await;
        data(s, &b);
    }
    let (s, b) = api.as_user("ann", "ann-password-1").delete("/repository/api/repo/delete/team/docs").await;
    failure(s, &b, 403, 250113);
    let (s, b) = api.as_user("bob", "bob-password-1").delete("/repository/api/repo/delete/team/docs").await;
    data(s, &b);
}
