//! template.yaml, the README and the routers cannot drift: every route declared for a
//! function is served by its surface, every route of a surface is declared and
//! documented with the access it declares, and every route answers hostile input with a
//! clear 4xx. All of it is driven by the one list of surfaces, `depot_cli::SURFACES`.
use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::Request;
use depot_cli::SURFACES;
use depot_core::config::Config;
use depot_core::http::{Access, AppState};
use serde_yaml::Value;
use tower::ServiceExt;

type Routes = BTreeSet<(String, String)>;

/// (binary name → its HttpApi routes) from template.yaml.
fn template_routes() -> BTreeMap<String, Routes> {
    let text = std::fs::read_to_string(crate::harness::workspace().join("template.yaml")).unwrap();
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    let mut out = BTreeMap::new();
    for (name, res) in doc["Resources"].as_mapping().unwrap() {
        if res["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let binary = res["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{name:?} has no Metadata.BuildProperties.Binary"))
            .to_string();
        assert_eq!(res["Metadata"]["BuildMethod"].as_str(), Some("rust-cargolambda"), "{name:?}");
        let mut routes = Routes::new();
        let events = res["Properties"]["Events"].as_mapping().into_iter().flatten();
        // The worker serves no route: its events are the bucket's and the schedule's.
        if binary == "worker" {
            assert!(events.into_iter().all(|(_, ev)| ev["Type"].as_str() != Some("HttpApi")), "the worker serves no route");
            continue;
        }
        for (ev_name, ev) in events {
            assert_eq!(ev["Type"].as_str(), Some("HttpApi"), "{ev_name:?}");
            let p = &ev["Properties"];
            let route = (p["Method"].as_str().unwrap().to_uppercase(), p["Path"].as_str().unwrap().to_string());
            assert!(routes.insert(route.clone()), "{route:?} declared twice");
        }
        assert!(out.insert(binary.clone(), routes).is_none(), "binary {binary} has two functions");
    }
    out
}

/// API Gateway's form of a route's path: axum writes a greedy parameter `{*name}`, API
/// Gateway `{name+}`.
fn gateway_path(p: &str) -> String {
    p.split('/')
        .map(|seg| match seg.strip_prefix("{*") {
            Some(rest) => format!("{{{}+}}", rest.trim_end_matches('}')),
            None => seg.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// (binary name → its router's routes) from the list of surfaces.
fn code_routes() -> BTreeMap<String, Routes> {
    SURFACES
        .iter()
        .map(|s| {
            let routes = (s.routes)().list().into_iter().map(|(m, p, _)| (m.to_string(), gateway_path(p))).collect();
            (s.name.to_string(), routes)
        })
        .collect()
}

/// The access each (method, API Gateway path) declares.
fn declared_access() -> BTreeMap<(String, String), Access> {
    SURFACES.iter().flat_map(|s| (s.routes)().list()).map(|(m, p, a)| ((m.to_string(), gateway_path(p)), a)).collect()
}

/// Every route declares an access that fits its path: `Project` access needs a
/// `{projectId}` to name the project, `Repo` access a `{projectId}` and a `{repoName}`,
/// and no route but `/health`, strux's and the APS packager upload (whose handlers
/// authenticate the form's credentials) is open to anyone. (A route cannot be added without an access: `Routes`
/// takes one with every route.)
#[test]
fn every_route_declares_an_access_that_its_path_can_name() {
    let mut seen = 0;
    for ((method, path), access) in declared_access() {
        let has = |param: &str| path.split('/').any(|seg| seg == format!("{{{param}}}"));
        match access {
            Access::Project(_) => assert!(has("projectId"), "{method} {path}: {access:?} without {{projectId}}"),
            Access::Repo(_) => {
                assert!(has("projectId") && has("repoName"), "{method} {path}: {access:?} without the repository")
            }
            Access::Anyone => {
                let form_credentials = strux_paths().contains(&path) || path == "/aps/packager/upload/";
                // `/aps` only redirects to the catalog's index, `/aps/`.
                assert!(path == "/health" || path == "/aps" || form_credentials, "{method} {path} is open to anyone")
            }
            // The surface names the repository.
            Access::Home(_) => {
                let home = SURFACES.iter().any(|s| s.home.is_some() && (s.routes)().list().iter().any(|(_, p, _)| gateway_path(p) == path));
                assert!(home, "{method} {path}: {access:?} on a surface without a home repository")
            }
            Access::User | Access::Admin => {}
        }
        seen += 1;
    }
    assert!(seen > 40, "{seen} routes");
}

/// The strux surface's paths.
fn strux_paths() -> Vec<String> {
    depot_strux::routes().list().into_iter().map(|(_, p, _)| gateway_path(p)).collect()
}

#[test]
fn template_and_routers_declare_the_same_routes() {
    let template = template_routes();
    let code = code_routes();
    assert_eq!(
        template.keys().collect::<Vec<_>>(),
        code.keys().collect::<Vec<_>>(),
        "functions in template.yaml vs surface crates"
    );
    for (binary, declared) in &template {
        let served = &code[binary];
        let undeclared: Vec<_> = served.difference(declared).collect();
        let unserved: Vec<_> = declared.difference(served).collect();
        assert!(undeclared.is_empty(), "{binary}: served but not in template.yaml: {undeclared:?}");
        assert!(unserved.is_empty(), "{binary}: in template.yaml but not served: {unserved:?}");
        assert!(!declared.is_empty());
    }
}

/// Sends every declared route to its surface's real router: each one is matched (no 404
/// or 405 from routing) and, unless its access is `Anyone`, refuses an anonymous caller
/// with 401 before touching storage.
#[tokio::test]
async fn every_declared_route_reaches_a_handler_that_authenticates() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
    let state = AppState::open(config, false).await.unwrap();
    let routers: BTreeMap<String, axum::Router> =
        SURFACES.iter().map(|s| (s.name.to_string(), s.router(state.clone()))).collect();
    let access = declared_access();
    for (binary, routes) in template_routes() {
        for (method, path) in routes {
            let concrete: String =
                path.split('/').map(|seg| if seg.starts_with('{') { "x" } else { seg }).collect::<Vec<_>>().join("/");
            let req = Request::builder().method(method.as_str()).uri(&concrete).body(Body::empty()).unwrap();
            let res = routers[&binary].clone().oneshot(req).await.unwrap();
            // An open route answers; strux's and the APS packager's, given no form, say
            // what they lack. The APS catalog is public for READ: it reads as empty.
            let want = match access[&(method.clone(), path.clone())] {
                Access::Anyone if path == "/aps" => 308,
                Access::Anyone if binary == "strux" || binary == "aps" => 400,
                Access::Anyone => 200,
                Access::Home(depot_core::model::Action::Read) if binary == "aps" => {
                    let status = res.status().as_u16();
                    assert!(status == 200 || status == 404, "{binary}: {method} {concrete}: {status}");
                    continue;
                }
                _ => 401,
            };
            assert_eq!(res.status().as_u16(), want, "{binary}: {method} {concrete}");
        }
    }
}

/// Every declared route, as the administrator, with hostile path parameters, query
/// strings and bodies: nothing answers 5xx, and every refusal says why in JSON.
#[tokio::test]
async fn hostile_input_on_every_route_is_a_clear_4xx_embedded() {
    let dir = tempfile::tempdir().unwrap();
    hostile_input_on(Config { data_dir: dir.path().to_path_buf(), ..Config::default() }).await;
}

#[tokio::test]
async fn hostile_input_on_every_route_is_a_clear_4xx_aws() {
    hostile_input_on(crate::harness::aws_config("hostile")).await;
}

async fn hostile_input_on(config: Config) {
    use serde_json::json;
    let config = Config { admin_password: Some(crate::harness::ADMIN_PASSWORD.into()), ..config };
    let state = AppState::open(config, true).await.unwrap();
    state.authenticator.bootstrap_admin(false).await.unwrap();
    let app = crate::harness::surfaces(state);
    let auth = format!("Basic {}", crate::harness::basic("admin", crate::harness::ADMIN_PASSWORD));
    let send = |method: &str, uri: &str, content_type: Option<&str>, body: Vec<u8>| {
        let mut req = Request::builder().method(method).uri(uri).header("authorization", &auth);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let req = req.body(Body::from(body)).unwrap();
        let app = app.clone();
        async move { crate::harness::oneshot(&app, req).await }
    };
    // Something real to aim at: a project, an RDS repository with a chart, a generic one.
    let post_json =
        |uri: &str, v: serde_json::Value| send("POST", uri, Some("application/json"), v.to_string().into_bytes());
    assert_eq!(post_json("/repository/api/project/create", json!({"name": "hp"})).await.0, 200);
    for (name, ty) in [("hr", "RDS"), ("gr", "GENERIC")] {
        let body = json!({"projectId": "hp", "name": name, "type": ty});
        assert_eq!(post_json("/repository/api/repo/create", body).await.0, 200);
    }
    let (multipart, chart_form) = crate::rds::chart_form("demo", "1.0.0");
    let (s, b) = send("POST", "/rds/api/hp/hr/charts", Some(&multipart), chart_form).await;
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));

    let values =
        ["x", "..", "%2e%2e", "%00", "a%2Fb", "%C3%A9", "-", "rds%3A%2F%2Fdemo", "%ff", "1.0.0", "@release", "%20"];
    let long = "a".repeat(400);
    let queries = [
        "",
        "?pageNumber=abc&pageSize=-5",
        "?pageNumber=99999999999999999999&pageSize=100000",
        "?packageKey=%00&version=..&stageTag=%ff&sortProperty=nope&direction=sideways",
        "?projectId=..&expiredAt=yesterday&forced=maybe&force=%00&packageName=%ff",
    ];
    let bodies: [(Option<&str>, Vec<u8>); 6] = [
        (None, vec![]),
        (Some("application/json"), b"{\"broken".to_vec()),
        (Some("application/json"), b"[1,2]".to_vec()),
        (
            Some("application/json"),
            json!({"name": 1, "projectId": [], "users": "x", "repos": {}, "rule": 7, "page": "p", "sha256": 5, "size": -1})
                .to_string()
                .into_bytes(),
        ),
        (Some("multipart/form-data; boundary=zz"), b"--zz\r\nnot a part\r\n--zz--".to_vec()),
        (Some("application/octet-stream"), vec![0xff; 64]),
    ];
    let mut routes: Vec<(String, String)> = template_routes().into_values().flatten().collect();
    // Reads first, deletes last, so that the fixtures serve as many routes as they can.
    let order = |m: &str| ["GET", "HEAD", "POST", "PUT", "DELETE"].iter().position(|x| *x == m).unwrap_or(9);
    routes.sort_by_key(|(m, p)| (order(m), p.clone()));
    let mut seen = BTreeMap::<u16, usize>::new();
    for (method, path) in &routes {
        for value in values.iter().copied().chain([long.as_str()]) {
            // Every parameter hostile, or the project and repository real and the rest hostile.
            for keep_real in [false, true] {
                let concrete: String = path
                    .split('/')
                    .map(|seg| match seg {
                        "{projectId}" | "{project}" if keep_real => "hp",
                        "{repoName}" | "{repo}" if keep_real => "hr",
                        s if s.starts_with('{') => value,
                        s => s,
                    })
                    .collect::<Vec<_>>()
                    .join("/");
                for q in queries {
                    let uri = format!("{concrete}{q}");
                    let with_body = method != "GET" && method != "HEAD";
                    let list: &[(Option<&str>, Vec<u8>)] = if with_body { &bodies } else { &bodies[..1] };
                    for (ct, body) in list {
                        let (status, answer) = send(method, &uri, *ct, body.clone()).await;
                        *seen.entry(status).or_default() += 1;
                        assert!(status < 500, "{method} {uri} ({ct:?}): {status} {}", String::from_utf8_lossy(&answer));
                        if status >= 400 && method != "HEAD" && path.starts_with("/aps/") {
                            // The APS catalog's errors are plain text: the reason, then the trace id.
                            let text = String::from_utf8_lossy(&answer);
                            assert!(text.len() > 20 && text.contains("trace id"), "{method} {uri}: {status} {text}");
                        } else if status >= 400 && method != "HEAD" {
                            let v: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_else(|e| {
                                panic!(
                                    "{method} {uri}: {status} without JSON ({e}): {}",
                                    String::from_utf8_lossy(&answer)
                                )
                            });
                            let why = v["message"].as_str().or(v["error"].as_str()).or(v["error"]["message"].as_str()).unwrap_or_default();
                            assert!(!why.is_empty(), "{method} {uri}: {status} {v}");
                        }
                    }
                }
            }
        }
    }
    eprintln!("hostile requests over {} routes, by status: {seen:?}", routes.len());
    // They reached the handlers: the real fixtures answered, and the checks refused.
    for want in [200, 400, 404] {
        assert!(seen.contains_key(&want), "no {want} among {seen:?}");
    }
}

/// The README's route tables list exactly what the routers serve: every route of every
/// function is documented, and every documented route is served (the embedded backend's
/// `/blobs/local/...` targets aside: `depot serve` alone mounts them). Parameters compare
/// by position; a greedy parameter stands for one or more documented segments.
#[test]
fn readme_route_tables_match_the_routers() {
    let readme = std::fs::read_to_string(crate::harness::workspace().join("README.md")).unwrap();
    let norm = |p: &str| -> Vec<String> {
        p.split('/').map(|s| if s.contains('{') { "{}".to_string() } else { s.to_string() }).collect()
    };
    let mut documented: Vec<(String, Vec<String>, String, String)> = vec![];
    for line in readme.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[2].starts_with("`/") {
            continue;
        }
        let methods: Vec<&str> = cells[1].split(',').map(str::trim).collect();
        if !methods.iter().all(|m| ["GET", "HEAD", "POST", "PUT", "DELETE"].contains(m)) {
            continue;
        }
        for path in cells[2].split('`').skip(1).step_by(2) {
            let path = path.split('?').next().unwrap();
            let variants = if path.contains("[/]") {
                vec![path.replace("[/]", ""), path.replace("[/]", "/")]
            } else {
                vec![path.to_string()]
            };
            for v in variants {
                for m in &methods {
                    documented.push((m.to_string(), norm(&v), v.clone(), cells[3].to_string()));
                }
            }
        }
    }
    assert!(documented.len() > 40, "the README's route tables were not found: {documented:?}");
    // A served path matches a documented one segment by segment; `{*x}` takes the rest.
    let matches = |served: &str, doc: &[String]| {
        let segs: Vec<&str> = served.split('/').collect();
        let mut i = 0;
        for (k, s) in segs.iter().enumerate() {
            if s.starts_with("{*") {
                return k == segs.len() - 1 && doc.len() > i;
            }
            let Some(d) = doc.get(i) else { return false };
            if (s.starts_with('{') && d != "{}") || (!s.starts_with('{') && d != s) {
                return false;
            }
            i += 1;
        }
        i == doc.len()
    };
    let served: Vec<(String, String, Access)> =
        SURFACES.iter().flat_map(|s| (s.routes)().list()).map(|(m, p, a)| (m.to_string(), p.to_string(), a)).collect();
    let undocumented: Vec<_> =
        served.iter().filter(|(m, p, _)| !documented.iter().any(|(dm, d, _, _)| dm == m && matches(p, d))).collect();
    let unserved: Vec<_> = documented
        .iter()
        .filter(|(_, _, raw, _)| !raw.starts_with("/blobs/local/"))
        .filter(|(dm, d, _, _)| !served.iter().any(|(m, p, _)| m == dm && matches(p, d)))
        .map(|(m, _, raw, _)| (m, raw))
        .collect();
    assert!(undocumented.is_empty(), "served but not in the README's tables: {undocumented:?}");
    assert!(unserved.is_empty(), "in the README's tables but not served: {unserved:?}");
    // The "who may" column says what the route declares.
    for (m, p, access) in &served {
        let word = match access {
            Access::Anyone => "anyone".to_string(),
            Access::Admin => "admin".to_string(),
            Access::Project(a) | Access::Repo(a) | Access::Home(a) => a.as_str().to_string(),
            Access::User => continue,
        };
        for (_, _, raw, who) in documented.iter().filter(|(dm, d, _, _)| dm == m && matches(p, d)) {
            assert!(who.contains(&word), "README: {m} {raw} says '{who}', the route declares {access:?}");
        }
    }
}

/// A method a known path does not serve is a 405 in the surface's shape, naming the
/// methods it has (also in `Allow`).
#[tokio::test]
async fn other_methods_answer_405_in_their_surfaces_shape() {
    let (_dir, app, _) = crate::harness::counted_embedded().await;
    for (method, path, allow, rds) in [
        ("PUT", "/repository/api/project/create", "POST", false),
        ("DELETE", "/repository/api/package/info/p/r", "GET, HEAD", false),
        ("POST", "/rds/p/r/index.yaml", "GET, HEAD", true),
        ("PATCH", "/rds/p/r/api/charts/a/1.0.0", "DELETE, GET, HEAD", true),
    ] {
        let req = Request::builder().method(method).uri(path).body(Body::empty()).unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status().as_u16(), 405, "{method} {path}");
        assert_eq!(res.headers()["allow"], allow, "{method} {path}");
        let body = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let message = if rds { v["error"].as_str() } else { v["message"].as_str() }.unwrap_or_default();
        assert!(message.contains(allow), "{method} {path}: {v}");
        if !rds {
            assert_eq!(v["code"], 250105, "{v}");
        }
    }
}

/// A path no route serves answers in the shape of the surface whose prefix it falls
/// under: RDS's `{"error"}` under `/rds/` and `/api/`, bkrepo's envelope elsewhere.
#[tokio::test]
async fn unknown_paths_answer_in_their_surfaces_shape() {
    let (_dir, app, _) = crate::harness::counted_embedded().await;
    for (path, rds) in [
        ("/rds/nothing/here", true),
        ("/rds/p/r/api/charts/a/b/c", true),
        ("/api/nothing", true),
        ("/repository/api/nothing-here", false),
        ("/auth/api/nothing", false),
        ("/elsewhere", false),
    ] {
        let req = Request::builder().uri(path).body(Body::empty()).unwrap();
        let (status, body) = crate::harness::oneshot(&app, req).await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, 404, "{path}: {v}");
        if rds {
            assert_eq!(v["error"], "no such route", "{path}");
            assert!(v["traceId"].is_string(), "{path}: {v}");
        } else {
            assert_eq!(
                (v["code"].as_i64(), v["message"].as_str()),
                (Some(250108), Some("no such route")),
                "{path}: {v}"
            );
            assert!(v["traceId"].is_string(), "{path}: {v}");
        }
    }
}

/// The template's hardening, as a reviewer checks it, so that none of it regresses: a
/// TLS-only, versioned bucket whose old versions outlive the table's recovery window, with
/// CORS for presigned PUTs and optional access logs; a table with deletion protection;
/// indexes granted Query only; log groups with a retention; traces; API access logs.
#[test]
fn the_template_keeps_its_hardening() {
    let text = std::fs::read_to_string(crate::harness::workspace().join("template.yaml")).unwrap();
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    let res = &doc["Resources"];
    let yaml = |v: &Value| serde_yaml::to_string(v).unwrap();
    let bucket = &res["Bucket"]["Properties"];
    assert_eq!(bucket["VersioningConfiguration"]["Status"].as_str(), Some("Enabled"));
    let rules = bucket["LifecycleConfiguration"]["Rules"].as_sequence().unwrap();
    let noncurrent = rules.iter().find_map(|r| r["NoncurrentVersionExpiration"]["NoncurrentDays"].as_u64()).unwrap();
    assert!(noncurrent >= 35, "old versions go after {noncurrent} days, within point-in-time recovery's 35");
    let cors = yaml(&bucket["CorsConfiguration"]);
    assert!(cors.contains("PUT") && cors.contains("ETag"), "{cors}");
    assert!(yaml(&bucket["LoggingConfiguration"]).contains("WithBucketAccessLogs"));
    let policy = yaml(&res["BucketPolicy"]["Properties"]["PolicyDocument"]);
    assert!(policy.contains("aws:SecureTransport") && policy.contains("Deny"), "{policy}");
    assert_eq!(res["Table"]["Properties"]["DeletionProtectionEnabled"].as_bool(), Some(true));
    assert_eq!(res["Table"]["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(), Some(true));
    assert_eq!(doc["Globals"]["Function"]["Tracing"].as_str(), Some("Active"));
    let api = &res["HttpApi"]["Properties"];
    // The access log names the Lambda request id: depot's trace id.
    assert!(yaml(&api["AccessLogSettings"]["Format"]).contains("$context.integration.requestId"));
    let throttling = yaml(&api["DefaultRouteSettings"]);
    assert!(throttling.contains("ThrottlingBurstLimit") && throttling.contains("ThrottlingRateLimit"), "{throttling}");
    // The custom domain is conditional, as plain API Gateway resources (SAM's Domain
    // property takes no condition).
    for r in ["ApiDomain", "ApiDomainMapping"] {
        assert_eq!(res[r]["Condition"].as_str(), Some("WithDomain"), "{r}");
    }
    assert!(api.get("Domain").is_none(), "SAM's Domain property cannot be conditional");
    assert!(yaml(&doc["Globals"]["Function"]["ReservedConcurrentExecutions"]).contains("ReservedConcurrency"));
    assert!(yaml(&doc["Globals"]["Function"]["Environment"]["Variables"]["DEPOT_PUBLIC_URL"]).contains("PublicUrl"));
    let mut functions = 0;
    for (name, r) in res.as_mapping().unwrap() {
        if r["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        functions += 1;
        let name = name.as_str().unwrap();
        // Its logs go to a group of its own, with the retention parameter.
        let group = yaml(&r["Properties"]["LoggingConfig"]["LogGroup"]);
        assert!(group.contains(&format!("{name}LogGroup")), "{name}: {group}");
        assert!(yaml(&res[&format!("{name}LogGroup")]["Properties"]["RetentionInDays"]).contains("LogRetentionDays"), "{name}");
        // The indexes are granted Query and nothing else.
        for statement in r["Properties"]["Policies"][0]["Statement"].as_sequence().unwrap() {
            if yaml(&statement["Resource"]).contains("/index/") {
                assert_eq!(yaml(&statement["Action"]).trim(), "dynamodb:Query", "{name}: {}", yaml(statement));
            }
        }
    }
    assert_eq!(functions, 6);

    // No secret in an environment variable: the packages function alone reads the
    // generated secret, and only that secret's ARN.
    assert!(!text.contains("DEPOT_ADMIN_PASSWORD"), "no password in the template");
    let secret = &res["AdminSecret"];
    assert_eq!(secret["Type"].as_str(), Some("AWS::SecretsManager::Secret"));
    assert!(secret["Properties"]["GenerateSecretString"]["PasswordLength"].as_u64().unwrap() >= 20);
    for (name, r) in res.as_mapping().unwrap() {
        let reads = yaml(&r["Properties"]["Policies"]).contains("secretsmanager");
        let name = name.as_str().unwrap();
        assert_eq!(reads, name == "PackagesFunction", "{name} and the secret");
        assert_eq!(yaml(&r["Properties"]["Environment"]).contains("DEPOT_ADMIN_SECRET"), name == "PackagesFunction");
    }
    let packages = yaml(&res["PackagesFunction"]["Properties"]["Policies"]);
    assert!(packages.contains("secretsmanager:GetSecretValue") && packages.contains("AdminSecret"), "{packages}");

    // Large sessions are verified by the worker, started by the bucket's events through
    // EventBridge; the same function sweeps on a schedule, dry if asked.
    let bucket_events = &bucket["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"];
    assert_eq!(bucket_events.as_bool(), Some(true));
    let worker = &res["WorkerFunction"]["Properties"];
    assert_eq!(worker["Timeout"].as_u64(), Some(900));
    let taken = &worker["Events"]["UploadTaken"];
    assert_eq!(taken["Type"].as_str(), Some("EventBridgeRule"));
    let pattern = yaml(&taken["Properties"]["Pattern"]);
    for want in ["aws.s3", "Object Created", "uploads/", "CompleteMultipartUpload", "CopyObject"] {
        assert!(pattern.contains(want), "{want}: {pattern}");
    }
    let sweep = &worker["Events"]["Sweep"];
    assert_eq!(sweep["Type"].as_str(), Some("Schedule"));
    assert!(yaml(&sweep["Properties"]["Schedule"]).contains("GcSchedule"));
    assert_eq!(sweep["Properties"]["Input"].as_str().map(|i| serde_json::from_str::<serde_json::Value>(i).unwrap()), Some(serde_json::json!({"task": "gc"})));
    assert!(yaml(&worker["Environment"]["Variables"]["DEPOT_GC_DRY_RUN"]).contains("GcDryRun"));
    assert!(yaml(&doc["Globals"]["Function"]["Environment"]["Variables"]["DEPOT_VERIFY_INLINE_BYTES"]).contains("VerifyInlineBytes"));

    // Limits as the gateway counts them, and retention as operators expect it.
    let params = &doc["Parameters"];
    assert_eq!(params["MaxBodyBytes"]["Default"].as_u64(), Some(depot_core::http::lambda::LAMBDA_BODY_BYTES));
    assert_eq!(params["MaxSessionBytes"]["Default"].as_u64(), Some(depot_core::registry::MAX_UPLOAD_SIZE));
    assert_eq!(params["VerifyInlineBytes"]["Default"].as_u64(), Some(depot_core::registry::VERIFY_INLINE_BYTES));
    assert_eq!(params["LogRetentionDays"]["Default"].as_u64(), Some(30));
    assert_eq!(doc["Globals"]["Function"]["Timeout"].as_u64(), Some(29), "within the HTTP API's 30 s");
    // The access log is one JSON object a line.
    let format = api["AccessLogSettings"]["Format"].as_str().unwrap();
    let line: serde_json::Value = serde_json::from_str(format).expect("the access log format is JSON");
    assert_eq!(line["status"], "$context.status");
}

/// A trailing slash is optional on every route of every surface: the twin of a route's
/// path with (or without) one final `/` answers as the route does, never "no such route".
#[tokio::test]
async fn a_trailing_slash_is_optional_on_every_route() {
    let (_dir, app, _) = crate::harness::counted_embedded().await;
    let routes: Vec<(String, String)> =
        SURFACES.iter().flat_map(|s| (s.routes)().list()).map(|(m, p, _)| (m.to_string(), p.to_string())).collect();
    let concrete = |p: &str| {
        p.split('/')
            .map(|seg| match seg {
                s if s.starts_with("{*") => "a/b".to_string(),
                s if s.starts_with('{') => "x1".to_string(),
                s => s.to_string(),
            })
            .collect::<Vec<_>>()
            .join("/")
    };
    let declared: BTreeSet<String> = routes.iter().map(|(_, p)| concrete(p)).collect();
    let table = depot_core::http::surface::RouteTable::new(SURFACES);
    let mut tried = 0;
    for (method, pattern) in &routes {
        let path = concrete(pattern);
        let twin = match path.strip_suffix('/') {
            Some(p) => p.to_string(),
            None => format!("{path}/"),
        };
        // Both spellings are routes of their own, or another route's pattern takes the
        // twin (`/aps/feed.atom/` is an APS version's index, `/aps/{version}/`).
        let taken = table.serves(&method.parse().unwrap(), &twin);
        if twin.is_empty() || declared.contains(&twin) || taken {
            continue;
        }
        let send = |p: String| {
            let app = app.clone();
            let req = Request::builder().method(method.as_str()).uri(p).body(Body::empty()).unwrap();
            async move { crate::harness::oneshot(&app, req).await }
        };
        let (want, _) = send(path.clone()).await;
        let (got, body) = send(twin.clone()).await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(got, want, "{method} {twin} answers as {method} {path}: {text}");
        assert!(!text.contains("no such route"), "{method} {twin}: {text}");
        tried += 1;
    }
    assert!(tried > 50, "{tried} routes tried");
    // A path that is no route with any method, whose twin is: the twin's 405.
    let req = Request::builder().method("GET").uri("/repository/api/project/create/").body(Body::empty()).unwrap();
    let (status, body) = crate::harness::oneshot(&app, req).await;
    assert_eq!(status, 405, "{}", String::from_utf8_lossy(&body));
}
