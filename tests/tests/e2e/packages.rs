//! bkrepo's package and version routes over packages that the RDS surface uploaded:
//! info, version lists and filters, stages, downloads and their counters, deletes, and
//! concurrent uploads, downloads and deletes.
use serde_json::{json, Value};

use crate::harness::{data, embedded, failure, Api, ADMIN_PASSWORD};
use crate::rds::{chart, upload};

const PKG: &str = "/repository/api/package";
const VER: &str = "/repository/api/version";

async fn rds_repo(api: &Api, p: &str, r: &str) {
    let (s, b) = api.post("/repository/api/project/create", json!({"name": p})).await;
    data(s, &b);
    let (s, b) = api.post("/repository/api/repo/create", json!({"projectId": p, "name": r, "type": "RDS"})).await;
    data(s, &b);
}

async fn put_chart(api: &Api, p: &str, r: &str, code: &str, version: &str) {
    let (f, b) = chart(code, version, "tgz");
    let (s, body) = upload(api, &format!("/rds/api/{p}/{r}/charts"), &f, b).await;
    assert_eq!(s, 201, "{body}");
}

#[tokio::test]
async fn info_lists_stages_downloads_and_deletes() {
    let (_dir, server, api) = embedded(&[]);
    rds_repo(&api, "pp", "charts").await;
    for v in ["1.0.0", "1.2.0", "1.10.0", "2.0.0-rc.1"] {
        put_chart(&api, "pp", "charts", "app", v).await;
    }
    let (s, b) = api.get(&format!("{PKG}/info/pp/charts?packageKey=rds://app")).await;
    let info = data(s, &b);
    assert_eq!((info["key"].as_str(), info["type"].as_str(), info["name"].as_str()), (Some("rds://app"), Some("RDS"), Some("Chart app")));
    assert_eq!((info["versions"].as_i64(), info["latest"].as_str(), info["downloads"].as_i64()), (Some(4), Some("2.0.0-rc.1"), Some(0)));
    assert_eq!(info["historyVersion"], json!(["1.0.0", "1.2.0", "1.10.0", "2.0.0-rc.1"]));
    assert!(info.get("revision").is_none(), "{info}");
    let (s, b) = api.get(&format!("{PKG}/info/pp/charts?packageKey=rds://nope")).await;
    failure(s, &b, 404, 251017);
    let (s, b) = api.get(&format!("{PKG}/info/pp/nope?packageKey=rds://app")).await;
    failure(s, &b, 404, 251006);
    let (s, b) = api.get(&format!("{PKG}/info/pp/charts")).await;
    assert!(failure(s, &b, 400, 250103).contains("[packageKey]"));
    let (s, b) = api.get(&format!("{PKG}/info/pp/charts?packageKey=app")).await;
    failure(s, &b, 400, 250105);

    // The plain version list: semver order by default, filters, sorting.
    let list = |body: Value| {
        let api = api.clone();
        async move { api.post(&format!("{VER}/list/pp/charts?packageKey=rds://app"), body).await }
    };
    let names = |v: &Value| v.as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let (s, b) = list(json!({})).await;
    let all = data(s, &b);
    assert_eq!(names(&all), ["2.0.0-rc.1", "1.10.0", "1.2.0", "1.0.0"], "semver order, newest first");
    let (s, b) = list(json!({"sortProperty": "name", "direction": "ASC"})).await;
    assert_eq!(names(&data(s, &b)), ["1.0.0", "1.10.0", "1.2.0", "2.0.0-rc.1"]);
    let (s, b) = list(json!({"version": "1.1"})).await;
    assert_eq!(names(&data(s, &b)), ["1.10.0"]);
    let (s, b) = list(json!({"metadata": [{"key": "code", "value": "app"}]})).await;
    assert_eq!(data(s, &b).as_array().unwrap().len(), 4);
    let (s, b) = list(json!({"metadata": [{"key": "code", "value": "other"}]})).await;
    assert_eq!(data(s, &b), json!([]));
    let (s, b) = list(json!({"sortProperty": "colour"})).await;
    assert!(failure(s, &b, 400, 250105).contains("sortProperty"));
    let (s, b) = list(json!({"direction": "UP"})).await;
    failure(s, &b, 400, 250105);
    let (s, b) = list(json!({"stageTag": "@golden"})).await;
    failure(s, &b, 400, 250105);
    let v = &all[0];
    assert_eq!(v["nodeMetadata"], v["packageMetadata"]);
    assert_eq!(v["metadata"]["code"], "app");
    assert!(v["contentPath"].as_str().unwrap().ends_with(".tgz"));

    // Stages move forward only; the key may come raw (rds://app, with '//') or encoded.
    let up = |rest: &str| {
        let api = api.clone();
        let path = format!("/repository/api/stage/upgrade/pp/charts/{rest}");
        async move { api.post(&path, json!({})).await }
    };
    let (s, b) = up("rds://app/1.0.0").await;
    assert_eq!(data(s, &b)["stageTag"], json!(["@prerelease"]));
    let (s, b) = up("rds%3A%2F%2Fapp/1.0.0?tag=release").await;
    assert_eq!(data(s, &b)["stageTag"], json!(["@prerelease", "@release"]));
    let (s, b) = up("rds://app/1.0.0").await;
    assert!(failure(s, &b, 400, 250105).contains("already @release"));
    let (s, b) = up("rds://app/1.2.0?tag=@release").await;
    assert_eq!(data(s, &b)["stageTag"], json!(["@prerelease", "@release"]));
    let (s, b) = up("rds://app/1.2.0?tag=prerelease").await;
    assert!(failure(s, &b, 400, 250105).contains("forward"));
    let (s, b) = up("rds://app/9.9.9").await;
    failure(s, &b, 404, 251019);
    let (s, b) = up("rds://app").await;
    failure(s, &b, 400, 250105);
    let (s, b) = list(json!({"stageTag": "release"})).await;
    assert_eq!(names(&data(s, &b)), ["1.2.0", "1.0.0"]);
    let (s, b) = list(json!({"stageTag": "@release,@prerelease"})).await;
    assert_eq!(data(s, &b).as_array().unwrap().len(), 2);

    // A @release version resists a user with WRITE and DELETE but not MANAGE.
    let (s, b) = api.post("/auth/api/user/create", json!({"userId": "dev", "pwd": "dev-password-1"})).await;
    data(s, &b);
    let grant = json!({"permName": "d", "projectId": "pp", "resourceType": "REPO", "repos": ["charts"], "users": [{"id": "dev", "action": ["READ", "WRITE", "DELETE"]}]});
    let (s, b) = api.post("/auth/api/permission/create", grant).await;
    data(s, &b);
    let dev = api.as_user("dev", "dev-password-1");
    let (f, bytes) = chart("app", "1.0.0", "tgz");
    let (s, b) = upload(&dev, "/rds/api/pp/charts/charts?force=true", &f, bytes).await;
    assert_eq!(s, 403, "{b}");
    let (s, b) = dev.delete(&format!("{VER}/delete/pp/charts?packageKey=rds://app&version=1.0.0")).await;
    failure(s, &b, 403, 250113);
    let (s, b) = dev.delete(&format!("{PKG}/delete/pp/charts?packageKey=rds://app")).await;
    failure(s, &b, 403, 250113);
    let (s, b) = dev.delete(&format!("{VER}/delete/pp/charts?packageKey=rds://app&version=1.10.0")).await;
    data(s, &b);

    // download_version: a 302 to the bytes, counted on the version and the package.
    let res = crate::uploads::no_redirects()
        .get(format!("{}{VER}/download/pp/charts?packageKey=rds://app&version=1.2.0", server.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 302);
    let got = reqwest::get(res.headers()["location"].to_str().unwrap()).await.unwrap();
    assert!(got.headers()["content-disposition"].to_str().unwrap().contains("app-1.2.0.tgz"));
    let (s, b) = api.get(&format!("{VER}/download/pp/charts?packageKey=rds://app&version=7.7.7")).await;
    failure(s, &b, 404, 251019);

    // 20 concurrent downloads add exactly 20.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let url = format!("{}{VER}/download/pp/charts?packageKey=rds://app&version=1.2.0", server.base);
            tokio::spawn(async move {
                let res = crate::uploads::no_redirects().get(url).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
                res.status().as_u16()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 302);
    }
    let (s, b) = list(json!({"version": "1.2.0"})).await;
    assert_eq!(data(s, &b)[0]["downloads"], 21);
    let (s, b) = api.get(&format!("{PKG}/info/pp/charts?packageKey=rds://app")).await;
    let info = data(s, &b);
    assert_eq!((info["downloads"].as_i64(), info["versions"].as_i64()), (Some(21), Some(3)));
    assert_eq!(info["latest"], "2.0.0-rc.1");
    assert_eq!(info["historyVersion"].as_array().unwrap().len(), 4, "history is never pruned");

    // Deletes: missing versions are 404; the package goes with its last version.
    let (s, b) = api.delete(&format!("{VER}/delete/pp/charts?packageKey=rds://app&version=1.10.0")).await;
    failure(s, &b, 404, 251019);
    let (s, b) = api.delete(&format!("{PKG}/delete/pp/charts?packageKey=rds://app")).await;
    data(s, &b);
    let (s, b) = api.get(&format!("{PKG}/info/pp/charts?packageKey=rds://app")).await;
    failure(s, &b, 404, 251017);
    let (s, b) = api.delete(&format!("{PKG}/delete/pp/charts?packageKey=rds://app")).await;
    failure(s, &b, 404, 251017);
    let (s, b) = api.get("/repository/api/repo/info/pp/charts").await;
    assert_eq!(data(s, &b)["packageCount"], 0);
}

#[tokio::test]
async fn twenty_concurrent_uploads_then_twenty_concurrent_deletes() {
    let (_dir, _server, api) = embedded(&[]);
    rds_repo(&api, "cc", "charts").await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move { put_chart(&api, "cc", "charts", "multi", &format!("1.{i}.0")).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (s, b) = api.get(&format!("{PKG}/info/cc/charts?packageKey=rds://multi")).await;
    let info = data(s, &b);
    assert_eq!((info["versions"].as_i64(), info["latest"].as_str()), (Some(20), Some("1.19.0")));
    assert_eq!(info["historyVersion"].as_array().unwrap().len(), 20);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move { api.delete(&format!("{VER}/delete/cc/charts?packageKey=rds://multi&version=1.{i}.0")).await })
        })
        .collect();
    for t in tasks {
        let (s, b) = t.await.unwrap();
        data(s, &b);
    }
    let (s, b) = api.get(&format!("{PKG}/info/cc/charts?packageKey=rds://multi")).await;
    failure(s, &b, 404, 251017);
    let (s, b) = api.get("/repository/api/repo/info/cc/charts").await;
    assert_eq!(data(s, &b)["packageCount"], 0, "no negative or stale counter");
}
