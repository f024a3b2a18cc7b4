//! template.yaml and the routers cannot drift: every route declared for a function is
//! served by that crate's router, and every route of the router is declared.
use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::Request;
use depot_core::config::Config;
use depot_core::http::AppState;
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
        for (ev_name, ev) in res["Properties"]["Events"].as_mapping().into_iter().flatten() {
            assert_eq!(ev["Type"].as_str(), Some("HttpApi"), "{ev_name:?}");
            let p = &ev["Properties"];
            let route = (p["Method"].as_str().unwrap().to_uppercase(), p["Path"].as_str().unwrap().to_string());
            assert!(routes.insert(route.clone()), "{route:?} declared twice");
        }
        assert!(out.insert(binary.clone(), routes).is_none(), "binary {binary} has two functions");
    }
    out
}

/// (binary name → its router's routes) from the surface crates.
fn code_routes() -> BTreeMap<String, Routes> {
    // axum writes a greedy parameter `{*name}`; API Gateway writes it `{name+}`.
    let greedy = |p: &str| {
        p.split('/')
            .map(|seg| match seg.strip_prefix("{*") {
                Some(rest) => format!("{{{}+}}", rest.trim_end_matches('}')),
                None => seg.to_string(),
            })
            .collect::<Vec<_>>()
            .join("/")
    };
    let list =
        |l: Vec<(axum::http::Method, &'static str)>| l.into_iter().map(|(m, p)| (m.to_string(), greedy(p))).collect();
    BTreeMap::from([
        ("packages".to_string(), list(depot_packages::routes().list())),
        ("rds".to_string(), list(depot_rds::routes().list())),
    ])
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

/// Sends every declared route to the real router: each one is matched (no 404 or 405 from
/// routing) and, /health aside, refuses an anonymous caller with 401 before touching storage.
#[tokio::test]
async fn every_declared_route_reaches_a_handler_that_authenticates() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
    let state = AppState::open(config, false).await.unwrap();
    let routers = BTreeMap::from([
        ("packages".to_string(), depot_packages::router(state.clone())),
        ("rds".to_string(), depot_rds::router(state)),
    ]);
    for (binary, routes) in template_routes() {
        for (method, path) in routes {
            let concrete: String =
                path.split('/').map(|seg| if seg.starts_with('{') { "x" } else { seg }).collect::<Vec<_>>().join("/");
            let req = Request::builder().method(method.as_str()).uri(&concrete).body(Body::empty()).unwrap();
            let res = routers[&binary].clone().oneshot(req).await.unwrap();
            let want = if path == "/health" { 200 } else { 401 };
            assert_eq!(res.status().as_u16(), want, "{binary}: {method} {concrete}");
        }
    }
}
