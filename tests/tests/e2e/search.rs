//! The package search DSL: random rules over random package sets, compared with a
//! brute-force filter written here independently, on both backends; and the errors.
use axum::body::Body;
use axum::http::Request;
use serde_json::{json, Map, Value};
use tower::ServiceExt;

use crate::harness::ADMIN_PASSWORD;

/// A small deterministic generator (xorshift), so a failure can be replayed by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

const TEXT: &[&str] = &["repoName", "repoType", "name", "key", "type", "latest", "createdBy"];
const NUM: &[&str] = &["downloads", "versions"];
const DATE: &[&str] = &["createdDate", "lastModifiedDate"];

/// A random leaf whose values come from the records, so that rules match something.
fn leaf(rng: &mut Rng, recs: &[Map<String, Value>]) -> Value {
    let rec = rng.pick(recs);
    let kind = rng.below(3);
    if kind == 0 {
        let field = *rng.pick(TEXT);
        let v = rec[field].as_str().unwrap().to_string();
        let op = if field == "repoName" {
            *rng.pick(&["EQ", "IN", "NIN"])
        } else {
            *rng.pick(&[
                "EQ", "NE", "IN", "NIN", "PREFIX", "SUFFIX", "CONTAINS", "MATCH", "MATCH_I", "NULL", "NOT_NULL",
            ])
        };
        let cut = v.len().min(1 + rng.below(4));
        let value = match op {
            "IN" | "NIN" => json!([v, rng.pick(recs)[field].as_str().unwrap()]),
            "PREFIX" => json!(v[..cut]),
            "SUFFIX" => json!(v[v.len() - cut..]),
            "CONTAINS" => json!(v[v.len() / 3..v.len() / 3 + cut.min(v.len() - v.len() / 3)]),
            "MATCH" => json!(format!("{}*", &v[..cut])),
            "MATCH_I" => json!(format!("*{}", v[v.len() - cut..].to_uppercase())),
            _ => json!(v),
        };
        json!({"field": field, "operation": op, "value": value})
    } else if kind == 1 {
        let field = *rng.pick(NUM);
        let op = *rng.pick(&["EQ", "NE", "LT", "LTE", "GT", "GTE", "IN", "NIN"]);
        let n = rec[field].as_i64().unwrap();
        let value = if matches!(op, "IN" | "NIN") { json!([n, n + 1]) } else { json!(n) };
        json!({"field": field, "operation": op, "value": value})
    } else {
        let field = *rng.pick(DATE);
        let op = *rng.pick(&["BEFORE", "AFTER", "LT", "GTE", "EQ"]);
        json!({"field": field, "operation": op, "value": rec[field]})
    }
}

fn rule(rng: &mut Rng, recs: &[Map<String, Value>], depth: usize) -> Value {
    if depth == 0 || rng.below(3) == 0 {
        return leaf(rng, recs);
    }
    let n = 1 + rng.below(3);
    let rules: Vec<Value> = (0..n).map(|_| rule(rng, recs, depth - 1)).collect();
    json!({"relation": rng.pick(&["AND", "OR", "NOR"]), "rules": rules})
}

/// The brute force: the DSL's meaning, written again from NOTES §1.
fn brute(rule: &Value, rec: &Map<String, Value>) -> bool {
    if let Some(rel) = rule.get("relation").and_then(Value::as_str) {
        let rs: Vec<bool> = rule["rules"].as_array().unwrap().iter().map(|r| brute(r, rec)).collect();
        return match rel {
            "AND" => rs.iter().all(|b| *b),
            "OR" => rs.iter().any(|b| *b),
            _ => !rs.iter().any(|b| *b),
        };
    }
    let field = rule["field"].as_str().unwrap();
    let got = rec.get(field).cloned().unwrap_or(Value::Null);
    let want = &rule["value"];
    let date = |v: &Value| v.as_str().and_then(depot_core::model::parse_iso);
    let is_date = DATE.contains(&field);
    let eq = |a: &Value, b: &Value| if is_date { date(a) == date(b) } else { a == b };
    let cmp = |a: &Value, b: &Value| if is_date { date(a).cmp(&date(b)) } else { a.as_i64().cmp(&b.as_i64()) };
    let s = got.as_str().unwrap_or("");
    let w = want.as_str().unwrap_or("");
    let glob = |pat: &str, text: &str| {
        // `*` anywhere; anchored at both ends. Translated to a split-and-scan.
        let parts: Vec<&str> = pat.split('*').collect();
        if parts.len() == 1 {
            return pat == text;
        }
        let (first, last) = (parts[0], parts[parts.len() - 1]);
        if !text.starts_with(first) || !text[first.len()..].ends_with(last) || text.len() < first.len() + last.len() {
            return false;
        }
        let mut rest = &text[first.len()..text.len() - last.len()];
        for mid in &parts[1..parts.len() - 1] {
            match rest.find(mid) {
                Some(i) => rest = &rest[i + mid.len()..],
                None => return false,
            }
        }
        true
    };
    match rule["operation"].as_str().unwrap() {
        "EQ" => eq(&got, want),
        "NE" => !eq(&got, want),
        "LT" | "BEFORE" => cmp(&got, want).is_lt(),
        "LTE" => cmp(&got, want).is_le(),
        "GT" | "AFTER" => cmp(&got, want).is_gt(),
        "GTE" => cmp(&got, want).is_ge(),
        "IN" => want.as_array().unwrap().iter().any(|v| eq(&got, v)),
        "NIN" => !want.as_array().unwrap().iter().any(|v| eq(&got, v)),
        "PREFIX" => s.starts_with(w),
        "SUFFIX" => s.ends_with(w),
        "CONTAINS" => s.contains(w),
        "MATCH" => glob(w, s),
        "MATCH_I" => glob(&w.to_lowercase(), &s.to_lowercase()),
        "NULL" => got.is_null(),
        "NOT_NULL" => !got.is_null(),
        op => panic!("generator made {op}"),
    }
}

/// A search request with these credentials and this body.
fn search_request(auth: &str, body: &Value) -> Request<Body> {
    Request::post("/repository/api/package/search")
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn search_on(config: depot_core::config::Config, seed: u64) {
    use depot_core::model::RepoType;
    use depot_core::registry::{NewProject, NewVersion};
    let config = depot_core::config::Config { admin_password: Some(ADMIN_PASSWORD.into()), ..config };
    let stores = depot_core::http::open_stores(&config, true).await.unwrap();
    let state = depot_core::http::AppState::from_stores(config, stores);
    state.authenticator.bootstrap_admin(false).await.unwrap();
    let reg = state.registry.clone();
    let mut rng = Rng(seed);
    let project = format!("s{seed}");
    reg.create_project(NewProject { name: project.clone(), ..Default::default() }, "admin").await.unwrap();
    let repos = [("charts", RepoType::Rds), ("files", RepoType::Generic), ("rpms", RepoType::Rpm)];
    for (name, ty) in repos {
        reg.create_repository(crate::harness::new_repository(&project, name, ty), "admin").await.unwrap();
    }
    let blob = reg.store_content(depot_core::store::stream_from_bytes(b"x".to_vec())).await.unwrap();
    let words = ["alpha", "Beta", "gamma", "delta-x", "Omega", "mysql", "redis"];
    for i in 0..30 {
        let (repo, ty) = repos[rng.below(3)];
        let name = format!("{}{}", rng.pick(&words), rng.below(5));
        let key = format!("{}://{name}-{i}", ty.as_str().to_lowercase());
        for v in 0..1 + rng.below(3) {
            let nv = NewVersion {
                overwrite: true,
                ..NewVersion::new(&project, repo, &key, &name, ty, &format!("1.{v}.{}", rng.below(3)), blob.clone())
            };
            let by = if rng.below(2) == 0 { "alice" } else { "bob" };
            reg.create_version(nv, &depot_core::model::Actor::user(by, depot_core::model::Rights::ALL)).await.unwrap();
        }
        let latest = reg.get_package(&project, repo, &key).await.unwrap().latest;
        for _ in 0..rng.below(4) {
            reg.record_download(&project, repo, &key, &latest).await.unwrap();
        }
    }
    let app = depot_packages::SURFACE.router(state);
    let auth = {
        use base64::Engine;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}")))
    };
    let search = |body: Value| {
        let (app, auth) = (app.clone(), auth.clone());
        async move {
            let req = search_request(&auth, &body);
            let res = app.oneshot(req).await.unwrap();
            let status = res.status().as_u16();
            let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    let top = |r: Value| json!({"relation": "AND", "rules": [{"field": "projectId", "operation": "EQ", "value": project}, r]});
    let (s, b) = search(json!({"rule": {"relation": "AND", "rules": [{"field": "projectId", "operation": "EQ", "value": project}]}, "page": {"pageSize": 1000}})).await;
    assert_eq!(s, 200, "{b}");
    let all: Vec<Map<String, Value>> =
        b["data"]["records"].as_array().unwrap().iter().map(|r| r.as_object().unwrap().clone()).collect();
    assert_eq!(all.len(), 30);
    // Unknown top-level properties are ignored, as bkrepo's request mapper does.
    let extra = json!({"rule": {"relation": "AND", "rules": [{"field": "projectId", "operation": "EQ", "value": project}]},
        "page": {"pageSize": 1000}, "projectId": project, "repoType": "RDS", "extra": {"any": true}});
    let (s, b) = search(extra).await;
    assert_eq!((s, b["data"]["records"].as_array().map(Vec::len)), (200, Some(30)), "{b}");
    let id = |r: &Map<String, Value>| format!("{}/{}", r["repoName"].as_str().unwrap(), r["key"].as_str().unwrap());
    let mut nonempty = 0;
    for round in 0..150 {
        let r = rule(&mut rng, &all, 3);
        let (s, b) = search(json!({"rule": top(r.clone()), "page": {"pageSize": 1000}})).await;
        assert_eq!(s, 200, "seed {seed} round {round}: {r} → {b}");
        let mut got: Vec<String> =
            b["data"]["records"].as_array().unwrap().iter().map(|x| id(x.as_object().unwrap())).collect();
        let mut want: Vec<String> = all.iter().filter(|rec| brute(&r, rec)).map(id).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "seed {seed} round {round}: {r}");
        assert_eq!(b["data"]["totalRecords"].as_u64().unwrap() as usize, want.len());
        nonempty += usize::from(!want.is_empty() && want.len() < all.len());
    }
    assert!(nonempty > 30, "the rules discriminate: {nonempty} of 150 selected some but not all");

    // select, sort and page.
    let (s, b) = search(json!({
        "rule": top(json!({"field": "repoType", "operation": "IN", "value": ["RDS", "GENERIC", "RPM"]})),
        "select": ["key", "downloads"],
        "sort": {"properties": ["downloads", "key"], "direction": "DESC"},
        "page": {"pageNumber": 2, "pageSize": 7},
    }))
    .await;
    assert_eq!(s, 200, "{b}");
    let page = &b["data"];
    assert_eq!(
        (
            page["pageNumber"].as_i64(),
            page["pageSize"].as_i64(),
            page["totalRecords"].as_i64(),
            page["totalPages"].as_i64()
        ),
        (Some(2), Some(7), Some(30), Some(5))
    );
    let recs = page["records"].as_array().unwrap();
    assert_eq!(recs.len(), 7);
    assert!(recs.iter().all(|r| r.as_object().unwrap().keys().collect::<Vec<_>>() == ["downloads", "key"]), "{recs:?}");
    let mut sorted: Vec<_> = all.clone();
    sorted.sort_by(|a, b| {
        (b["downloads"].as_i64(), b["key"].as_str()).cmp(&(a["downloads"].as_i64(), a["key"].as_str()))
    });
    let want: Vec<_> = sorted[7..14].iter().map(|r| r["key"].clone()).collect();
    assert_eq!(recs.iter().map(|r| r["key"].clone()).collect::<Vec<_>>(), want);

    // Malformed requests name the problem.
    for (body, status, code, needle) in [
        (json!({"rule": {"field": "name", "operation": "EQ", "value": "x"}}), 400, 250105, "top rule"),
        (
            json!({"rule": {"relation": "AND", "rules": [{"field": "name", "operation": "EQ", "value": "x"}]}}),
            400,
            250103,
            "projectId",
        ),
        (json!({}), 400, 250103, "[rule]"),
        (
            json!({"rule": top(json!({"field": "colour", "operation": "EQ", "value": "x"}))}),
            400,
            250105,
            "unknown field",
        ),
        (
            json!({"rule": top(json!({"field": "name", "operation": "LIKE", "value": "x"}))}),
            400,
            250105,
            "unknown operation",
        ),
        (
            json!({"rule": top(json!({"field": "downloads", "operation": "GT", "value": "many"}))}),
            400,
            250105,
            "a number",
        ),
        (json!({"rule": top(json!({"relation": "XOR", "rules": []}))}), 400, 250105, "relation"),
        (
            json!({"rule": top(json!({"field": "repoName", "operation": "PREFIX", "value": "c"}))}),
            400,
            250105,
            "repoName",
        ),
        (
            json!({"rule": top(json!({"field": "name", "operation": "EQ", "value": "x"})), "select": ["colour"]}),
            400,
            250105,
            "unknown field",
        ),
        (
            json!({"rule": top(json!({"field": "name", "operation": "EQ", "value": "x"})), "sort": {"properties": ["name"], "direction": "SIDEWAYS"}}),
            400,
            250105,
            "direction",
        ),
        (
            json!({"rule": top(json!({"field": "name", "operation": "EQ", "value": "x"})), "page": {"pageSize": 5000}}),
            400,
            250105,
            "1000",
        ),
    ] {
        let (s, b) = search(body.clone()).await;
        assert_eq!((s, b["code"].as_i64()), (status, Some(code)), "{body}: {b}");
        assert!(b["message"].as_str().unwrap().contains(needle), "{body}: {b}");
    }
}

#[tokio::test]
async fn search_matches_brute_force_embedded() {
    let dir = tempfile::tempdir().unwrap();
    for seed in [7, 1234567] {
        let sub = dir.path().join(seed.to_string());
        search_on(depot_core::config::Config { data_dir: sub, ..Default::default() }, seed).await;
    }
}

#[tokio::test]
async fn search_matches_brute_force_dynamodb() {
    let config = crate::harness::aws_config("search");
    search_on(config, 99).await;
}

/// The worst search the caps allow (62 MATCH rules of 1,024 characters, the pattern a
/// backtracking matcher takes quadratic time on) against a package whose description is
/// the longest RDS takes (64 KiB), twice at once, on the real binary: each answers, and `/health` answers
/// promptly meanwhile. Before the matcher was linear, each took 30 s and so did /health.
#[tokio::test]
async fn the_worst_search_does_not_hold_up_the_server() {
    let (_dir, _server, api) = crate::harness::embedded(&[]);
    crate::rds::rds_repo(&api, "worst", "charts").await;
    let mut yaml = crate::rds::rds_yaml("c", "1.0.0");
    yaml.push_str(&format!("description: {}\n", "a".repeat(64 * 1024)));
    let yaml = yaml.replacen("description: about c\n", "", 1);
    let tgz = crate::rds::gzip(&crate::rds::tar_of(&[("c/RDS.yaml", yaml.into_bytes())]));
    let (s, b) = crate::rds::upload(&api, "/rds/api/worst/charts/charts", "c-1.0.0.tgz", tgz).await;
    assert_eq!(s, 201, "{b}");
    // A byte more is refused, without naming internal keys.
    let mut yaml = crate::rds::rds_yaml("d", "1.0.0").replacen("description: about d\n", "", 1);
    yaml.push_str(&format!("description: {}\n", "a".repeat(64 * 1024 + 1)));
    let tgz = crate::rds::gzip(&crate::rds::tar_of(&[("d/RDS.yaml", yaml.into_bytes())]));
    let (s, b) = crate::rds::upload(&api, "/rds/api/worst/charts/charts", "d-1.0.0.tgz", tgz).await;
    // Over a cap is 413, as the README says (found by an attack: it was 400).
    assert_eq!(s, 413, "{b}");
    assert!(b["error"].as_str().unwrap().contains("description is over 65536 bytes"), "{b}");
    let pattern = format!("*{}b", "a".repeat(1022));
    let mut rules = vec![json!({"field": "projectId", "operation": "EQ", "value": "worst"})];
    // The top AND, the projectId rule and 62 more: 64.
    rules.extend((0..62).map(|_| json!({"field": "description", "operation": "MATCH", "value": pattern})));
    let body = json!({"rule": {"relation": "AND", "rules": rules}});
    // One rule more, or a longer value, is refused and names the cap.
    let mut more = body.clone();
    more["rule"]["rules"].as_array_mut().unwrap().push(json!({"field": "name", "operation": "EQ", "value": "x"}));
    let (s, b) = api.post("/repository/api/package/search", more).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["message"].as_str().unwrap().contains("at most 64 rules"), "{b}");
    let long = json!({"rule": {"relation": "AND", "rules": [rules[0], {"field": "name", "operation": "MATCH", "value": "a".repeat(1025)}]}});
    let (s, b) = api.post("/repository/api/package/search", long).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["message"].as_str().unwrap().contains("at most 1024 characters"), "{b}");
    let started = std::time::Instant::now();
    let searches = futures::future::join_all((0..2).map(|_| api.post("/repository/api/package/search", body.clone())));
    let health = async {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let t = std::time::Instant::now();
        assert_eq!(api.anonymous().get("/health").await.0, 200);
        t.elapsed()
    };
    let (answers, health) = tokio::join!(searches, health);
    eprintln!("two worst searches: {:?}; /health meanwhile: {health:?}", started.elapsed());
    for (s, b) in answers {
        assert_eq!((s, b["data"]["totalRecords"].as_i64()), (200, Some(0)), "{b}");
    }
    assert!(health < std::time::Duration::from_secs(2), "/health took {health:?}");

    // A user who may read nothing there cannot tell a project that exists from one that
    // does not: both are an empty page.
    let (s, b) = api.post("/auth/api/user/create", json!({"userId": "nosy", "pwd": "nosy-password"})).await;
    crate::harness::data(s, &b);
    let nosy = api.as_user("nosy", "nosy-password");
    let top = |p: &str| json!({"rule": {"relation": "AND", "rules": [{"field": "projectId", "operation": "EQ", "value": p}]}});
    let (s1, b1) = nosy.post("/repository/api/package/search", top("worst")).await;
    let (s2, b2) = nosy.post("/repository/api/package/search", top("no-such-project")).await;
    assert_eq!((s1, s2), (200, 200), "{b1} {b2}");
    assert_eq!((b1["data"]["totalRecords"].as_i64(), b2["data"]["totalRecords"].as_i64()), (Some(0), Some(0)));
}

/// A search reads in proportion to its matches when a conjunct names a key or a name (EQ
/// or PREFIX), counted at the table; any other search reads whole repositories, at most
/// `DEPOT_SEARCH_MAX_SCAN` packages, and past that is a 400 that says how to narrow it.
#[tokio::test]
async fn searches_read_through_indexes_and_refuse_a_scan_too_wide() {
    use depot_core::model::RepoType;
    use depot_core::registry::{NewProject, NewVersion};
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let config = depot_core::config::Config {
        data_dir: dir.path().to_path_buf(),
        admin_password: Some(ADMIN_PASSWORD.into()),
        search_max_scan: 100,
        ..Default::default()
    };
    let (state, counting) = crate::harness::counted(config, false).await;
    state.authenticator.bootstrap_admin(false).await.unwrap();
    let reg = state.registry.clone();
    reg.create_project(NewProject { name: "big".into(), ..Default::default() }, "admin").await.unwrap();
    for repo in ["many", "few"] {
        reg.create_repository(crate::harness::new_repository("big", repo, RepoType::Rds), "admin").await.unwrap();
    }
    let blob = reg.store_content(depot_core::store::stream_from_bytes(b"x".to_vec())).await.unwrap();
    let admin = depot_core::model::Actor::user("admin", depot_core::model::Rights::ALL);
    let names: Vec<(&str, String)> = (0..120)
        .map(|i| ("many", format!("pkg-{i}")))
        .chain(["Mixed-Case", "other"].map(|n| ("few", n.to_string())))
        .collect();
    for (repo, name) in &names {
        let key = format!("rds://{name}");
        reg.create_version(NewVersion::new("big", repo, &key, name, RepoType::Rds, "1.0.0", blob.clone()), &admin)
            .await
            .unwrap();
    }
    let app = depot_packages::SURFACE.router(state);
    let auth = format!("Basic {}", crate::harness::basic("admin", ADMIN_PASSWORD));
    let search = |leaves: Vec<Value>| {
        let (app, auth) = (app.clone(), auth.clone());
        let mut rules = vec![json!({"field": "projectId", "operation": "EQ", "value": "big"})];
        rules.extend(leaves);
        let body = json!({"rule": {"relation": "AND", "rules": rules}, "page": {"pageSize": 1000}, "select": ["key"]});
        let counting = counting.clone();
        async move {
            let req = search_request(&auth, &body);
            let before = counting.items_read.load(Ordering::SeqCst);
            let res = app.oneshot(req).await.unwrap();
            let status = res.status().as_u16();
            let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
            let read = counting.items_read.load(Ordering::SeqCst) - before;
            (status, serde_json::from_slice::<Value>(&bytes).unwrap(), read)
        }
    };
    let leaf = |field: &str, op: &str, value: &str| json!({"field": field, "operation": op, "value": value});
    let keys = |b: &Value| -> Vec<String> {
        let mut k: Vec<String> =
            b["data"]["records"].as_array().unwrap().iter().map(|r| r["key"].as_str().unwrap().into()).collect();
        k.sort();
        k
    };
    // (rule, matches, at most this many items read: the matches, the grants, the
    // repositories and the caller).
    let cases = [
        (vec![leaf("name", "EQ", "pkg-7")], 1),
        (vec![leaf("name", "EQ", "Mixed-Case")], 1),
        (vec![leaf("name", "EQ", "mixed-case")], 0),
        (vec![leaf("name", "PREFIX", "pkg-1")], 31),
        (vec![leaf("key", "EQ", "rds://pkg-7")], 1),
        (vec![leaf("key", "EQ", "no key at all")], 0),
        (vec![leaf("key", "PREFIX", "rds://pkg-11")], 11),
        // A nested AND is a conjunct too.
        (
            vec![
                json!({"relation": "AND", "rules": [leaf("name", "PREFIX", "pkg-11"), leaf("latest", "EQ", "1.0.0")]}),
            ],
            11,
        ),
        (vec![leaf("repoName", "EQ", "few")], 2),
    ];
    for (rule, matches) in cases {
        let (s, b, read) = search(rule.clone()).await;
        assert_eq!(s, 200, "{rule:?}: {b}");
        assert_eq!(keys(&b).len(), matches, "{rule:?}: {b}");
        assert!(read <= matches + 8, "{rule:?} read {read} items for {matches} matches");
    }
    // Nothing narrows these: 122 packages to read, over the 100 allowed.
    for rule in [vec![], vec![leaf("name", "PREFIX", "")], vec![leaf("name", "SUFFIX", "-7")]] {
        let (s, b, read) = search(rule.clone()).await;
        assert_eq!(s, 400, "{rule:?}: {b}");
        let message = b["message"].as_str().unwrap();
        assert!(
            message.contains("all 122 packages") && message.contains("narrow it with a key or name rule"),
            "{message}"
        );
        assert!(read < 8, "refused before reading the packages: {read}");
    }
}
