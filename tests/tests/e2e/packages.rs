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
    // An RDS package's name is its code, as bkrepo's ObjectBuilderUtil sets it.
    assert_eq!(
        (info["key"].as_str(), info["type"].as_str(), info["name"].as_str()),
        (Some("rds://app"), Some("RDS"), Some("app"))
    );
    assert_eq!(
        (info["versions"].as_i64(), info["latest"].as_str(), info["downloads"].as_i64()),
        (Some(4), Some("2.0.0-rc.1"), Some(0))
    );
    assert_eq!(info["historyVersion"], json!(["1.0.0", "1.2.0", "1.10.0", "2.0.0-rc.1"]));
    assert!(info.get("revision").is_none(), "{info}");
    // A package that does not exist is `data: null`, as bkrepo answers; a missing
    // repository is still an error.
    let (s, b) = api.get(&format!("{PKG}/info/pp/charts?packageKey=rds://nope")).await;
    assert_eq!((s, b["code"].as_i64(), &b["data"]), (200, Some(0), &json!(null)), "{b}");
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
    let names =
        |v: &Value| v.as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let (s, b) = list(json!({})).await;
    let all = data(s, &b);
    assert_eq!(names(&all), ["2.0.0-rc.1", "1.10.0", "1.2.0", "1.0.0"], "semver order, newest first");
    // `name` sorts by semantic version too, as bkrepo's PackageQueryHelper does.
    let (s, b) = list(json!({"sortProperty": "name", "direction": "ASC"})).await;
    assert_eq!(names(&data(s, &b)), ["1.0.0", "1.2.0", "1.10.0", "2.0.0-rc.1"]);
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

    // Stages move forward only, answering `data: null` (bkrepo's Response<Void>); the
    // key may come raw (rds://app, with '//') or encoded in the old path form, or in the
    // query as bkrepo's UserStageController (and its web UI) has it. Stage errors carry
    // bkrepo's stage code 251015.
    let up = |rest: &str| {
        let api = api.clone();
        let path = format!("/repository/api/stage/upgrade/pp/charts/{rest}");
        async move { api.post(&path, json!({})).await }
    };
    let tags = |v: &str| stage_tags(api.clone(), "pp", v.to_string());
    let (s, b) = up("rds://app/1.0.0").await;
    assert_eq!(data(s, &b), json!(null));
    assert_eq!(tags("1.0.0").await, json!(["@prerelease"]));
    let (s, b) = up("rds%3A%2F%2Fapp/1.0.0?tag=release").await;
    data(s, &b);
    assert_eq!(tags("1.0.0").await, json!(["@prerelease", "@release"]));
    let (s, b) = up("rds://app/1.0.0").await;
    assert!(failure(s, &b, 400, 251015).contains("already @release"));
    let (s, b) = api.post("/repository/api/stage/upgrade/pp/charts?packageKey=rds://app&version=1.2.0&tag=@release", json!({})).await;
    assert_eq!(data(s, &b), json!(null));
    assert_eq!(tags("1.2.0").await, json!(["@release"]), "straight to @release appends only that tag");
    let (s, b) = up("rds://app/1.2.0?tag=prerelease").await;
    assert!(failure(s, &b, 400, 251015).contains("forward"));
    let (s, b) = up("rds://app/9.9.9").await;
    failure(s, &b, 404, 251019);
    let (s, b) = api.get("/repository/api/stage/pp/charts?packageKey=rds://app&version=9.9.9").await;
    failure(s, &b, 404, 251019);
    let (s, b) = up("rds://app").await;
    failure(s, &b, 400, 250105);
    let (s, b) = up("rds://app/1.10.0?tag=gold").await;
    assert!(failure(s, &b, 400, 251015).contains("stage tag"));
    let (s, b) = api.post("/repository/api/stage/upgrade/pp/charts?packageKey=rds://app", json!({})).await;
    failure(s, &b, 400, 250103);
    let (s, b) = up("not-a-key/1.10.0").await;
    failure(s, &b, 400, 250105);
    let (s, b) = api.post("/repository/api/stage/upgrade/pp/charts?packageKey=rds://app&version=%00", json!({})).await;
    failure(s, &b, 400, 250105);
    // Unknown properties are ignored, as bkrepo's request mapper does (its own
    // MetadataModel sends system, description, link and color); known ones are checked.
    let (s, b) = list(json!({"colour": "red", "projectId": "pp"})).await;
    assert_eq!(data(s, &b).as_array().unwrap().len(), 4);
    let model = json!({"metadata": [{"key": "code", "value": "app", "system": false, "description": "d", "link": "", "color": "red"}]});
    let (s, b) = list(model).await;
    assert_eq!(data(s, &b).as_array().unwrap().len(), 4);
    let (s, b) = list(json!({"metadata": [{"key": 1}]})).await;
    failure(s, &b, 400, 250105);
    let (s, b) =
        api.raw("POST", &format!("{VER}/list/pp/charts?packageKey=rds://app"), "application/json", "{not json").await;
    failure(s, &b, 400, 250105);
    let (s, b) = list(json!({"stageTag": "release"})).await;
    assert_eq!(names(&data(s, &b)), ["1.2.0", "1.0.0"]);
    // Every listed tag: 1.2.0 went straight to @release, so only 1.0.0 carries both.
    let (s, b) = list(json!({"stageTag": "@release,@prerelease"})).await;
    assert_eq!(names(&data(s, &b)), ["1.0.0"]);

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
                let res = crate::uploads::no_redirects()
                    .get(url)
                    .basic_auth("admin", Some(ADMIN_PASSWORD))
                    .send()
                    .await
                    .unwrap();
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

    // Deletes: what is not there is a success (bkrepo's clean-up scripts rely on it); the
    // package goes with its last version; a missing repository is still an error.
    let (s, b) = api.delete(&format!("{VER}/delete/pp/charts?packageKey=rds://app&version=1.10.0")).await;
    data(s, &b);
    let (s, b) = api.delete(&format!("{PKG}/delete/pp/charts?packageKey=rds://app")).await;
    data(s, &b);
    let (s, b) = api.get(&format!("{PKG}/info/pp/charts?packageKey=rds://app")).await;
    assert_eq!(data(s, &b), json!(null));
    let (s, b) = api.delete(&format!("{PKG}/delete/pp/charts?packageKey=rds://app")).await;
    data(s, &b);
    let (s, b) = api.delete(&format!("{VER}/delete/pp/charts?packageKey=rds://app&version=1.0.0")).await;
    data(s, &b);
    let (s, b) = api.delete(&format!("{PKG}/delete/pp/nope?packageKey=rds://app")).await;
    failure(s, &b, 404, 251006);
    let (s, b) = api.get("/repository/api/repo/info/pp/charts").await;
    assert_eq!(data(s, &b)["packageCount"], 0);
}

/// Streamed downloads count only what can be answered, and a file fetched in ranges
/// once (found by an attack: a 416 counted, and so did every range).
#[tokio::test]
async fn a_download_counts_once_answered_and_ranges_count_once() {
    let (_dir, server, api) = embedded(&[("DEPOT_DOWNLOAD_MODE", "proxy")]);
    rds_repo(&api, "rg", "charts").await;
    put_chart(&api, "rg", "charts", "app", "1.0.0").await;
    let url = format!("{}/rds/rg/charts/charts/app-1.0.0.tgz", server.base);
    let get = |range: Option<&'static str>| {
        let url = url.clone();
        async move {
            let mut req = reqwest::Client::new().get(url).basic_auth("admin", Some(ADMIN_PASSWORD));
            if let Some(r) = range {
                req = req.header("range", r);
            }
            req.send().await.unwrap().status().as_u16()
        }
    };
    let downloads = || async {
        let (s, b) = api.get(&format!("{PKG}/info/rg/charts?packageKey=rds://app")).await;
        data(s, &b)["downloads"].as_i64().unwrap()
    };
    assert_eq!(get(Some("bytes=99999-")).await, 416);
    assert_eq!(downloads().await, 0, "a 416 is no download");
    assert_eq!(get(Some("bytes=5-")).await, 206);
    assert_eq!(downloads().await, 0, "a range after the first byte is part of a download counted already");
    assert_eq!(get(Some("bytes=0-9")).await, 206);
    assert_eq!(downloads().await, 1);
    assert_eq!(get(None).await, 200);
    assert_eq!(downloads().await, 2);
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
            tokio::spawn(async move {
                api.delete(&format!("{VER}/delete/cc/charts?packageKey=rds://multi&version=1.{i}.0")).await
            })
        })
        .collect();
    for t in tasks {
        let (s, b) = t.await.unwrap();
        data(s, &b);
    }
    let (s, b) = api.get(&format!("{PKG}/info/cc/charts?packageKey=rds://multi")).await;
    assert_eq!(data(s, &b), json!(null));
    let (s, b) = api.get("/repository/api/repo/info/cc/charts").await;
    assert_eq!(data(s, &b)["packageCount"], 0, "no negative or stale counter");
}

/// Walks every page of packages and versions, checking that each record comes once, the
/// totals, the order, and the cost: items read per page follow the page size.
async fn pages_on(config: depot_core::config::Config) {
    let (state, counting) = crate::harness::counted(config, true).await;
    let reg = state.registry.clone();
    use depot_core::model::RepoType;
    use depot_core::registry::{NewProject, NewVersion};
    reg.create_project(NewProject { name: "pg".into(), ..Default::default() }, "admin").await.unwrap();
    reg.create_repository(crate::harness::new_repository("pg", "r", RepoType::Rds), "admin").await.unwrap();
    let blob = reg.store_content(depot_core::store::stream_from_bytes(b"x".to_vec())).await.unwrap();
    let writer = depot_core::model::Actor::user("u", depot_core::model::Rights::ALL);
    let nv = |code: String, name: String, v: String| {
        NewVersion::new("pg", "r", &format!("rds://{code}"), &name, RepoType::Rds, &v, blob.clone())
    };
    // 25 packages with mixed-case names, and one package with 60 versions.
    for i in 0..25 {
        let name = if i % 2 == 0 { format!("Alpha{i:02}") } else { format!("beta{i:02}") };
        reg.create_version(nv(format!("p{i:02}"), name, "1.0.0".into()), &writer).await.unwrap();
    }
    for i in 0..60 {
        reg.create_version(nv("many".into(), "zz-many".into(), format!("1.{}.{}", i / 10, i % 10)), &writer)
            .await
            .unwrap();
    }
    let req = |n: u32, size: u32| depot_core::registry::PageRequest { number: n, size };
    // The repository and the package as a handler has them: read once, before the pages.
    let repo = reg.get_repository("pg", "r").await.unwrap();
    let many = reg.get_package("pg", "r", "rds://many").await.unwrap();

    // Packages: 26 in pages of 10, each once, by lower-case name.
    let mut seen = vec![];
    for n in 1..=3 {
        let before = counting.snapshot();
        let page = reg.package_page(&repo, None, req(n, 10)).await.unwrap();
        let read = counting.snapshot().2 - before.2;
        assert!(read <= 10, "items read for package page {n}: {read}");
        assert_eq!(page.total, 26);
        seen.extend(page.items.into_iter().map(|p| p.name));
    }
    assert_eq!(seen.len(), 26);
    let mut sorted = seen.clone();
    sorted.sort_by_key(|n| n.to_lowercase());
    assert_eq!(seen, sorted);
    assert!(reg.package_page(&repo, None, req(4, 10)).await.unwrap().items.is_empty());
    let alpha = reg.package_page(&repo, Some("ALPHA"), req(1, 100)).await.unwrap();
    assert_eq!((alpha.total, alpha.items.len()), (13, 13), "case-insensitive prefix");

    // Versions: newest first across 6 pages, each once; cost per page follows its size.
    let mut versions = vec![];
    let mut per_page = vec![];
    for n in 1..=6 {
        let before = counting.snapshot();
        let page = reg.version_page(&repo, &many, false, req(n, 10)).await.unwrap();
        let after = counting.snapshot();
        per_page.push(after.2 - before.2);
        assert_eq!(page.total, 60);
        versions.extend(page.items.into_iter().map(|v| v.name));
    }
    assert_eq!(versions.len(), 60);
    assert_eq!(versions[0], "1.5.9");
    assert_eq!(versions[59], "1.0.0");
    let mut dedup = versions.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), 60, "each record once");
    assert!(per_page.iter().all(|n| *n <= 11), "items read per page of 10: {per_page:?}");
    // A jump to a page not reached at this generation walks there once, then it is cheap.
    let before = counting.snapshot();
    reg.version_page(&repo, &many, true, req(5, 10)).await.unwrap();
    let jump = counting.snapshot().2 - before.2;
    let before = counting.snapshot();
    let p6 = reg.version_page(&repo, &many, true, req(6, 10)).await.unwrap();
    let next = counting.snapshot().2 - before.2;
    assert_eq!(p6.items.last().unwrap().name, "1.5.9", "ascending");
    assert!(jump <= 51 && next <= 11, "jump {jump}, next {next}");
    // A far jump reads its way there in a few large reads, not one per page; a later
    // jump further on starts from the nearest page start remembered below it.
    let before = counting.snapshot();
    let p50 = reg.version_page(&repo, &many, true, req(50, 1)).await.unwrap();
    let (queries, items) = (counting.snapshot().1 - before.1, counting.snapshot().2 - before.2);
    assert_eq!(p50.items.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["1.4.9"]);
    assert!(queries <= 4 && items <= 51, "a jump to page 50 of 1: {queries} queries, {items} items");
    let before = counting.snapshot();
    let p55 = reg.version_page(&repo, &many, true, req(55, 1)).await.unwrap();
    let further = counting.snapshot().2 - before.2;
    assert_eq!(p55.items.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["1.5.4"]);
    assert!(further <= 8, "then page 55 of 1: {further} items");
    assert!(reg.version_page(&repo, &many, true, req(61, 1)).await.unwrap().items.is_empty());
    assert!(reg.version_page(&repo, &many, true, req(5000, 1)).await.unwrap().items.is_empty());
    eprintln!(
        "items read per version page of 10: {per_page:?}; a jump to page 5: {jump}; then page 6: {next}; \
         page 50 of size 1: {queries} queries, {items} items; then page 55: {further} items"
    );
}

#[tokio::test]
async fn pages_are_stable_and_cost_follows_page_size_embedded() {
    let dir = tempfile::tempdir().unwrap();
    pages_on(depot_core::config::Config { data_dir: dir.path().to_path_buf(), ..Default::default() }).await;
}

#[tokio::test]
async fn pages_are_stable_and_cost_follows_page_size_dynamodb() {
    let config = crate::harness::aws_config("pages");
    pages_on(config).await;
}

#[tokio::test]
async fn page_routes_answer_bkrepo_pages() {
    let (_dir, _server, api) = embedded(&[]);
    rds_repo(&api, "pr", "charts").await;
    for i in 0..12 {
        put_chart(&api, "pr", "charts", "web", &format!("0.{i}.0")).await;
    }
    put_chart(&api, "pr", "charts", "Webby", "1.0.0").await;
    let (s, b) = api.get(&format!("{PKG}/page/pr/charts?pageNumber=1&pageSize=1")).await;
    let page = data(s, &b);
    assert_eq!(
        (
            page["pageNumber"].as_i64(),
            page["pageSize"].as_i64(),
            page["totalRecords"].as_i64(),
            page["totalPages"].as_i64()
        ),
        (Some(1), Some(1), Some(2), Some(2))
    );
    // packageName is a case-insensitive prefix of the name, which for RDS is the code.
    let (s, b) = api.get(&format!("{PKG}/page/pr/charts?packageName=W")).await;
    let page = data(s, &b);
    assert_eq!(
        (page["pageNumber"].as_i64(), page["pageSize"].as_i64(), page["totalRecords"].as_i64()),
        (Some(1), Some(20), Some(2))
    );
    // One paging rule: absent is the default, out of range a 400 that states the range,
    // in the user's terms.
    for (q, says) in [
        ("pageSize=1001", "pageSize must be from 1 to 1000, not 1001"),
        ("pageSize=0", "pageSize must be from 1 to 1000, not 0"),
        ("pageSize=-1", "pageSize must be from 1 to 1000, not -1"),
        ("pageNumber=0", "pageNumber must be from 1 to 1000000, not 0"),
        ("pageSize=abc", "pageSize: 'abc' is not a whole number"),
        ("pageSize=99999999999999999999", "pageSize must be from 1 to 1000, not 99999999999999999999"),
        ("pageNumber=1&pageNumber=2", "pageNumber is given more than once"),
    ] {
        let (s, b) = api.get(&format!("{PKG}/page/pr/charts?{q}")).await;
        let message = failure(s, &b, 400, 250105);
        assert!(message.contains(says), "{q}: {message}");
        assert!(!message.contains("target type") && !message.contains("i64"), "{q}: {message}");
    }
    // The same rule and the same terms in paths and bodies.
    for (path, says) in [
        ("/repository/api/repo/page/pr/abc/10", "'abc' is not a whole number"),
        ("/repository/api/repo/page/pr/1/99999999999999999999", "pageSize must be from 1 to 1000, not 99999999999999999999"),
        ("/auth/api/user/page/0/10", "pageNumber must be from 1 to 1000000, not 0"),
    ] {
        let (s, b) = api.get(path).await;
        let message = failure(s, &b, 400, 250105);
        assert!(message.contains(says), "{path}: {message}");
    }
    let (s, b) = api.post("/auth/api/permission/create", json!({"permName": "x", "projectId": "pr", "users": [5]})).await;
    let message = failure(s, &b, 400, 250105);
    assert!(!message.contains("enum") && !message.contains("GrantUser"), "{message}");
    let (s, b) = api.post("/repository/api/package/search", json!({"rule": {"relation": "AND", "rules": [{"field": "projectId", "operation": "EQ", "value": "pr"}]},
            "page": {"pageNumber": 18446744073709551615u64}})).await;
    let message = failure(s, &b, 400, 250105);
    assert!(message.contains("pageNumber must be from 1 to 1000000, not 18446744073709551615"), "{message}");
    let (s, b) = api.get(&format!("{PKG}/page/pr/nope")).await;
    failure(s, &b, 404, 251006);

    let (s, b) = api.get(&format!("{VER}/page/pr/charts?packageKey=rds://web&pageSize=5&pageNumber=1")).await;
    let page = data(s, &b);
    assert_eq!((page["totalRecords"].as_i64(), page["totalPages"].as_i64()), (Some(12), Some(3)));
    assert_eq!(page["records"][0]["name"], "0.11.0");
    assert_eq!(page["records"][0]["nodeMetadata"], page["records"][0]["packageMetadata"]);
    let (s, b) =
        api.get(&format!("{VER}/page/pr/charts?packageKey=rds://web&pageSize=5&pageNumber=3&direction=ASC")).await;
    let names: Vec<_> =
        data(s, &b)["records"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["0.10.0", "0.11.0"]);
    let (s, b) = api
        .get(&format!("{VER}/page/pr/charts?packageKey=rds://web&version=0.1&sortProperty=name&direction=ASC"))
        .await;
    let page = data(s, &b);
    assert_eq!(page["totalRecords"], 3, "0.1.0, 0.10.0, 0.11.0");
    let (s, b) = api.post("/repository/api/stage/upgrade/pr/charts/rds://web/0.3.0", json!({})).await;
    data(s, &b);
    let (s, b) = api.get(&format!("{VER}/page/pr/charts?packageKey=rds://web&stageTag=@prerelease")).await;
    assert_eq!(data(s, &b)["records"][0]["name"], "0.3.0");
    let (s, b) = api.get(&format!("{VER}/page/pr/charts?packageKey=rds://web&sortProperty=colour")).await;
    failure(s, &b, 400, 250105);
    // A package that does not exist has an empty page of versions, as in bkrepo.
    let (s, b) = api.get(&format!("{VER}/page/pr/charts?packageKey=rds://nope")).await;
    let empty = data(s, &b);
    assert_eq!((empty["totalRecords"].as_i64(), empty["records"].as_array().map(Vec::len)), (Some(0), Some(0)), "{empty}");
}

/// A repository deleted and created again under the same name starts afresh: neither its
/// `index.yaml` (cached per process, and its ETag) nor its remembered page starts carry
/// over from the old one, even when the new one reaches the same number of writes.
#[tokio::test]
async fn a_recreated_repository_shows_nothing_of_the_old_one() {
    let (_dir, _server, api) = embedded(&[]);
    rds_repo(&api, "rc", "charts").await;
    for code in ["alpha", "bravo", "charlie"] {
        put_chart(&api, "rc", "charts", code, "1.0.0").await;
    }
    let url = format!("{}/rds/rc/charts/index.yaml", api.base);
    let res = api.http.get(&url).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
    let old_etag = res.headers()["etag"].to_str().unwrap().to_string();
    assert!(res.text().await.unwrap().contains("alpha"));
    let page = |n: u32| {
        let api = api.clone();
        async move {
            let (s, b) = api.get(&format!("{PKG}/page/rc/charts?pageNumber={n}&pageSize=1")).await;
            let page = data(s, &b);
            page["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["key"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(2).await, ["rds://bravo"], "and the start of page 3 is remembered");

    let (s, b) = api.delete("/repository/api/repo/delete/rc/charts?forced=true").await;
    data(s, &b);
    let (s, b) =
        api.post("/repository/api/repo/create", json!({"projectId": "rc", "name": "charts", "type": "RDS"})).await;
    data(s, &b);
    for code in ["xray", "yankee", "zulu"] {
        put_chart(&api, "rc", "charts", code, "1.0.0").await;
    }

    let res = crate::rds::get_if_none_match(&api, &url, &old_etag).await;
    assert_eq!(res.status().as_u16(), 200, "the old repository's ETag does not match the new one");
    assert_ne!(res.headers()["etag"].to_str().unwrap(), old_etag);
    let text = res.text().await.unwrap();
    assert!(text.contains("xray") && !text.contains("alpha"), "{text}");
    assert_eq!(page(3).await, ["rds://zulu"]);
    assert_eq!(page(2).await, ["rds://yankee"]);
}

/// depot's answers read as bkrepo's classes (`PackageSummary.kt`, `PackageVersion.kt`,
/// `Page.kt`): every field those declare non-null is present with its JSON type; the
/// `metadata` map and the `packageMetadata`/`nodeMetadata` lists hold the same entries,
/// `version` included, so a `version/list` filter on it finds the version; `packageName`
/// finds an RDS package by its code.
#[tokio::test]
async fn answers_carry_bkrepos_fields() {
    let (_dir, _server, api) = embedded(&[]);
    rds_repo(&api, "bf", "charts").await;
    put_chart(&api, "bf", "charts", "fields", "1.0.0").await;
    #[derive(Clone, Copy, Debug)]
    enum T {
        Str,
        Num,
        Arr,
        Obj,
        StrOrNull,
    }
    let check = |what: &str, v: &Value, fields: &[(&str, T)]| {
        for (f, t) in fields {
            let x = &v[*f];
            let ok = match t {
                T::Str => x.is_string(),
                T::Num => x.is_number(),
                T::Arr => x.is_array(),
                T::Obj => x.is_object(),
                T::StrOrNull => x.is_string() || x.is_null(),
            };
            assert!(ok && (v.get(*f).is_some()), "{what}.{f} is not {t:?}: {v}");
        }
    };
    use T::*;
    let summary = [
        ("id", Str), ("projectId", Str), ("repoName", Str), ("name", Str), ("key", Str), ("type", Str),
        ("latest", Str), ("downloads", Num), ("versions", Num), ("versionTag", Obj), ("description", StrOrNull),
        ("createdBy", Str), ("createdDate", Str), ("lastModifiedBy", Str), ("lastModifiedDate", Str),
        ("extension", Obj), ("historyVersion", Arr),
    ];
    let version = [
        ("name", Str), ("size", Num), ("downloads", Num), ("stageTag", Arr), ("metadata", Obj),
        ("packageMetadata", Arr), ("nodeMetadata", Arr), ("tags", Arr), ("extension", Obj), ("contentPath", Str),
        ("contentPaths", Arr), ("manifestPath", StrOrNull), ("createdBy", Str), ("createdDate", Str),
        ("lastModifiedBy", Str), ("lastModifiedDate", Str),
    ];
    let page = [("pageNumber", Num), ("pageSize", Num), ("totalRecords", Num), ("totalPages", Num), ("records", Arr)];
    let (s, b) = api.get(&format!("{PKG}/info/bf/charts?packageKey=rds://fields")).await;
    check("PackageSummary", &data(s, &b), &summary);
    let (s, b) = api.get(&format!("{PKG}/page/bf/charts?packageName=FIELDS")).await;
    let p = data(s, &b);
    check("Page", &p, &page);
    assert_eq!(p["totalRecords"], 1, "packageName finds an RDS package by its code: {p}");
    check("PackageSummary", &p["records"][0], &summary);
    let (s, b) = api.get(&format!("{VER}/page/bf/charts?packageKey=rds://fields")).await;
    let p = data(s, &b);
    check("Page", &p, &page);
    let v = &p["records"][0];
    check("PackageVersion", v, &version);
    let listed: Vec<(String, Value)> = v["packageMetadata"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["key"].as_str().unwrap().to_string(), e["value"].clone()))
        .collect();
    let map: Vec<(String, Value)> = v["metadata"].as_object().unwrap().iter().map(|(k, x)| (k.clone(), x.clone())).collect();
    let (mut listed_sorted, mut map_sorted) = (listed.clone(), map.clone());
    listed_sorted.sort_by(|a, b| a.0.cmp(&b.0));
    map_sorted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(listed_sorted, map_sorted, "the map and the list hold the same entries");
    assert_eq!(v["nodeMetadata"], v["packageMetadata"]);
    assert_eq!(v["metadata"]["version"], "1.0.0");
    assert_eq!(v["metadata"]["name"], "Chart fields", "RDS.yaml's name stays in the metadata");
    let (s, b) = api
        .post(&format!("{VER}/list/bf/charts?packageKey=rds://fields"), json!({"metadata": [{"key": "version", "value": "1.0.0"}]}))
        .await;
    assert_eq!(data(s, &b).as_array().unwrap().len(), 1, "a filter on version finds it");
}

/// The stage routes as bkrepo's UserStageController has them, on DynamoDB and S3.
#[tokio::test]
async fn stage_routes_on_aws() {
    let (server, _) = crate::harness::aws_server("st", &[]);
    let api = crate::harness::Api::new(&server.base);
    rds_repo(&api, "sa", "charts").await;
    put_chart(&api, "sa", "charts", "app", "1.0.0").await;
    put_chart(&api, "sa", "charts", "app", "2.0.0").await;
    let stage = |q: &str| {
        let api = api.clone();
        let path = format!("/repository/api/stage/upgrade/sa/charts?packageKey=rds://app&{q}");
        async move { api.post(&path, json!({})).await }
    };
    let tags = |v: &str| stage_tags(api.clone(), "sa", v.to_string());
    let (s, b) = stage("version=1.0.0").await;
    assert_eq!(data(s, &b), json!(null));
    assert_eq!(tags("1.0.0").await, json!(["@prerelease"]));
    let (s, b) = stage("version=2.0.0&tag=release").await;
    data(s, &b);
    assert_eq!(tags("2.0.0").await, json!(["@release"]));
    let (s, b) = stage("version=2.0.0").await;
    assert!(failure(s, &b, 400, 251015).contains("already @release"));
}

/// The stage tags of version `v` of `rds://app` in `p/charts`.
async fn stage_tags(api: crate::harness::Api, p: &'static str, v: String) -> Value {
    let (s, b) = api.get(&format!("/repository/api/stage/{p}/charts?packageKey=rds://app&version={v}")).await;
    data(s, &b)
}

/// Download counts on embedded storage are acknowledged before they are flushed (the
/// only writes that are), then made durable within a second: a clean stop right after
/// the downloads keeps every one, and so does a crash (SIGKILL) a second later.
#[tokio::test]
async fn download_counts_survive_a_clean_stop_and_a_crash_after_their_window() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_string();
    let start = || crate::harness::Server::start(&["--data-dir", &data_dir], &[("DEPOT_ADMIN_PASSWORD", ADMIN_PASSWORD)]);
    let server = start();
    let api = Api::new(&server.base);
    crate::rds::rds_repo(&api, "dl", "charts").await;
    let (file, bytes) = crate::rds::chart("keep", "1.0.0", "tgz");
    let (s, b) = crate::rds::upload(&api, "/rds/api/dl/charts/charts", &file, bytes).await;
    assert_eq!(s, 201, "{b}");
    let download = |base: String| async move {
        let res = crate::uploads::no_redirects()
            .get(format!("{base}/rds/dl/charts/charts/keep-1.0.0.tgz"))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 302);
    };
    let count = |api: Api| async move {
        let (s, b) = api.get("/repository/api/package/info/dl/charts?packageKey=rds://keep").await;
        data(s, &b)["downloads"].as_i64().unwrap()
    };
    for _ in 0..20 {
        download(server.base.clone()).await;
    }
    server.stop_with("TERM");
    let server = start();
    let api = Api::new(&server.base);
    assert_eq!(count(api.clone()).await, 20, "a clean stop flushes them");
    for _ in 0..15 {
        download(server.base.clone()).await;
    }
    tokio::time::sleep(depot_core::store::RELAXED_WINDOW + std::time::Duration::from_millis(500)).await;
    server.stop_with("KILL");
    let server = start();
    assert_eq!(count(Api::new(&server.base)).await, 35, "flushed within the window");
}
