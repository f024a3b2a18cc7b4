//! `POST /repository/api/package/search`: bkrepo's rule DSL over the packages of one
//! project.
//!
//! A rule is nested (`{rules, relation: AND|OR|NOR}`) or a leaf (`{field, value,
//! operation}`). The top rule must be an AND holding a `projectId` EQ leaf. Unknown
//! fields and operations, and values of the wrong type, are 400s that name the problem
//! (bkrepo turns unknown operations into EQ; depot does not).
use std::cmp::Ordering;

use axum::extract::State;
use axum::response::Response;
use depot_core::http::bkrepo::ok;
use depot_core::http::extract::Json;
use depot_core::http::{AppState, Scope};
use depot_core::model::{parse_iso, printable};
use depot_core::registry::{PageParam, PageRequest};
use depot_core::{Error, Result};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::packages::package_view;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Text,
    Number,
    Date,
}

/// The fields a rule, a select or a sort may name, with their kinds.
const FIELDS: &[(&str, Kind)] = &[
    ("projectId", Kind::Text),
    ("repoName", Kind::Text),
    ("repoType", Kind::Text),
    ("name", Kind::Text),
    ("key", Kind::Text),
    ("type", Kind::Text),
    ("latest", Kind::Text),
    ("description", Kind::Text),
    ("createdBy", Kind::Text),
    ("lastModifiedBy", Kind::Text),
    ("downloads", Kind::Number),
    ("versions", Kind::Number),
    ("createdDate", Kind::Date),
    ("lastModifiedDate", Kind::Date),
];

/// Fields a select may name beyond the rule fields.
const SELECT_ONLY: &[&str] = &["extension", "historyVersion"];

fn kind_of(field: &str) -> Result<Kind> {
    FIELDS.iter().find(|(f, _)| *f == field).map(|(_, k)| *k).ok_or_else(|| {
        let names: Vec<_> = FIELDS.iter().map(|(f, _)| *f).collect();
        Error::Invalid(format!("unknown field '{}': use one of {}", printable(field), names.join(", ")))
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
    Before,
    After,
    In,
    Nin,
    Prefix,
    Suffix,
    Contains,
    Match,
    MatchI,
    Null,
    NotNull,
}

const OPS: &[(&str, Op)] = &[
    ("EQ", Op::Eq),
    ("NE", Op::Ne),
    ("LT", Op::Lt),
    ("LTE", Op::Lte),
    ("GT", Op::Gt),
    ("GTE", Op::Gte),
    ("BEFORE", Op::Before),
    ("AFTER", Op::After),
    ("IN", Op::In),
    ("NIN", Op::Nin),
    ("PREFIX", Op::Prefix),
    ("SUFFIX", Op::Suffix),
    ("CONTAINS", Op::Contains),
    ("MATCH", Op::Match),
    ("MATCH_I", Op::MatchI),
    ("NULL", Op::Null),
    ("NOT_NULL", Op::NotNull),
];

/// A checked rule.
#[derive(Debug)]
pub enum Rule {
    And(Vec<Rule>),
    Or(Vec<Rule>),
    Nor(Vec<Rule>),
    Leaf { field: String, op: Op, value: Value },
}

fn invalid(m: String) -> Error {
    Error::Invalid(m)
}

/// The most rules (nested and leaves) one search may hold.
pub const MAX_RULES: usize = 64;
/// How deep rules may nest.
pub const MAX_DEPTH: usize = 8;
/// The longest string value of a rule, in characters (each item of a list too).
pub const MAX_VALUE_CHARS: usize = 1024;
/// The most items of an IN or NIN list.
pub const MAX_LIST: usize = 100;

/// Parses and checks a search's rule, within the caps above: evaluating it costs at most
/// linear time in the records' text for each rule.
pub fn parse_rule(v: &Value) -> Result<Rule> {
    let mut count = 0;
    parse_capped(v, 1, &mut count)
}

fn parse_capped(v: &Value, depth: usize, count: &mut usize) -> Result<Rule> {
    *count += 1;
    if *count > MAX_RULES {
        return Err(invalid(format!("a search holds at most {MAX_RULES} rules, nested ones included")));
    }
    if depth > MAX_DEPTH {
        return Err(invalid(format!("rules nest at most {MAX_DEPTH} levels deep")));
    }
    let obj = v.as_object().ok_or_else(|| invalid(format!("a rule must be an object, not {}", brief(v))))?;
    if let Some(relation) = obj.get("relation") {
        let relation = relation.as_str().ok_or_else(|| invalid("relation must be AND, OR or NOR".into()))?;
        let rules = obj
            .get("rules")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid(format!("a nested rule ({relation}) needs a 'rules' list")))?;
        let rules = rules.iter().map(|r| parse_capped(r, depth + 1, count)).collect::<Result<Vec<_>>>()?;
        return match relation.to_ascii_uppercase().as_str() {
            "AND" => Ok(Rule::And(rules)),
            "OR" => Ok(Rule::Or(rules)),
            "NOR" => Ok(Rule::Nor(rules)),
            other => Err(invalid(format!("unknown relation '{}': use AND, OR or NOR", printable(other)))),
        };
    }
    let field = obj
        .get("field")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("a rule needs 'field' (or 'relation' and 'rules'): {}", brief(v))))?;
    let op_name = obj.get("operation").and_then(Value::as_str).unwrap_or("EQ");
    let op = OPS.iter().find(|(n, _)| n.eq_ignore_ascii_case(op_name)).map(|(_, o)| *o).ok_or_else(|| {
        let names: Vec<_> = OPS.iter().map(|(n, _)| *n).collect();
        invalid(format!("unknown operation '{}': use one of {}", printable(op_name), names.join(", ")))
    })?;
    let kind = kind_of(field)?;
    let value = obj.get("value").cloned().unwrap_or(Value::Null);
    let too_long = |s: &Value| s.as_str().is_some_and(|s| s.chars().count() > MAX_VALUE_CHARS);
    if too_long(&value) || value.as_array().is_some_and(|l| l.iter().any(too_long)) {
        return Err(invalid(format!("a rule's value is at most {MAX_VALUE_CHARS} characters ('{field}')")));
    }
    if value.as_array().is_some_and(|l| l.len() > MAX_LIST) {
        return Err(invalid(format!("an IN or NIN list holds at most {MAX_LIST} values ('{field}')")));
    }
    let wrong = |want: &str| invalid(format!("operation {op_name} on '{field}' needs {want}, not {}", brief(&value)));
    if field == "repoName" && !matches!(op, Op::Eq | Op::In | Op::Nin) {
        return Err(invalid(format!("repoName takes EQ, IN or NIN, not {op_name}")));
    }
    let scalar_ok = |v: &Value| match kind {
        Kind::Text => v.is_string(),
        Kind::Number => v.is_i64() || v.is_u64() || v.is_f64(),
        Kind::Date => v.as_str().is_some_and(|s| parse_iso(s).is_some()),
    };
    let kind_name = match kind {
        Kind::Text => "a string",
        Kind::Number => "a number",
        Kind::Date => "an ISO date-time string",
    };
    match op {
        Op::Eq | Op::Ne => {
            if !scalar_ok(&value) {
                return Err(wrong(kind_name));
            }
        }
        Op::Lt | Op::Lte | Op::Gt | Op::Gte => {
            if kind == Kind::Text {
                return Err(invalid(format!("operation {op_name} compares numbers and dates; '{field}' is text")));
            }
            if !scalar_ok(&value) {
                return Err(wrong(kind_name));
            }
        }
        Op::Before | Op::After => {
            if kind != Kind::Date {
                return Err(invalid(format!("operation {op_name} compares dates; '{field}' is not a date")));
            }
            if !scalar_ok(&value) {
                return Err(wrong(kind_name));
            }
        }
        Op::In | Op::Nin => {
            let list = value.as_array().ok_or_else(|| wrong("a list"))?;
            if !list.iter().all(scalar_ok) {
                return Err(wrong(&format!(
                    "a list of {}s",
                    kind_name.trim_start_matches("a ").trim_start_matches("an ")
                )));
            }
        }
        Op::Prefix | Op::Suffix | Op::Contains | Op::Match | Op::MatchI => {
            if kind != Kind::Text {
                return Err(invalid(format!("operation {op_name} works on text; '{field}' is not text")));
            }
            if !value.is_string() {
                return Err(wrong("a string"));
            }
        }
        Op::Null | Op::NotNull => {}
    }
    Ok(Rule::Leaf { field: field.to_string(), op, value })
}

fn as_date(v: &Value) -> Option<OffsetDateTime> {
    v.as_str().and_then(parse_iso)
}

fn as_f64(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// A value as an error message quotes it: at most 100 characters.
fn brief(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(100) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s,
    }
}

/// `*` matches any run of characters; the pattern covers the whole text. Linear time:
/// the pieces between stars are found left to right, each at its first place after the
/// one before (`str::find` is linear), which is where a match can best continue.
fn wildcard(pattern: &str, text: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let mut pieces: Vec<&str> = pieces.collect();
    let Some(last) = pieces.pop() else { return rest.is_empty() };
    for piece in pieces {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

fn compare(kind: Kind, a: &Value, b: &Value) -> Option<Ordering> {
    match kind {
        Kind::Number => as_f64(a)?.partial_cmp(&as_f64(b)?),
        Kind::Date => Some(as_date(a)?.cmp(&as_date(b)?)),
        Kind::Text => Some(a.as_str()?.cmp(b.as_str()?)),
    }
}

fn equal(kind: Kind, a: &Value, b: &Value) -> bool {
    match kind {
        Kind::Date => matches!((as_date(a), as_date(b)), (Some(x), Some(y)) if x == y),
        Kind::Number => matches!((as_f64(a), as_f64(b)), (Some(x), Some(y)) if x == y),
        Kind::Text => a == b,
    }
}

/// Whether a record (the package view plus `repoType`) matches.
pub fn matches(rule: &Rule, rec: &Map<String, Value>) -> bool {
    match rule {
        Rule::And(rs) => rs.iter().all(|r| matches(r, rec)),
        Rule::Or(rs) => rs.iter().any(|r| matches(r, rec)),
        Rule::Nor(rs) => !rs.iter().any(|r| matches(r, rec)),
        Rule::Leaf { field, op, value } => {
            let kind = kind_of(field).expect("checked when parsed");
            let got = rec.get(field).unwrap_or(&Value::Null);
            let text = got.as_str().unwrap_or_default();
            let pat = value.as_str().unwrap_or_default();
            match op {
                Op::Eq => equal(kind, got, value),
                Op::Ne => !equal(kind, got, value),
                Op::Lt => compare(kind, got, value) == Some(Ordering::Less),
                Op::Lte => matches!(compare(kind, got, value), Some(Ordering::Less | Ordering::Equal)),
                Op::Gt => compare(kind, got, value) == Some(Ordering::Greater),
                Op::Gte => matches!(compare(kind, got, value), Some(Ordering::Greater | Ordering::Equal)),
                Op::Before => compare(kind, got, value) == Some(Ordering::Less),
                Op::After => compare(kind, got, value) == Some(Ordering::Greater),
                Op::In => value.as_array().is_some_and(|l| l.iter().any(|v| equal(kind, got, v))),
                Op::Nin => !value.as_array().is_some_and(|l| l.iter().any(|v| equal(kind, got, v))),
                Op::Prefix => got.is_string() && text.starts_with(pat),
                Op::Suffix => got.is_string() && text.ends_with(pat),
                Op::Contains => got.is_string() && text.contains(pat),
                Op::Match => got.is_string() && wildcard(pat, text),
                Op::MatchI => got.is_string() && wildcard(&pat.to_lowercase(), &text.to_lowercase()),
                Op::Null => got.is_null(),
                Op::NotNull => !got.is_null(),
            }
        }
    }
}

/// The project the top rule names: it must be an AND with a `projectId` EQ leaf.
fn project_of(rule: &Rule) -> Result<String> {
    let Rule::And(rules) = rule else {
        return Err(Error::Invalid("the top rule must be an AND rule holding a projectId EQ rule".into()));
    };
    for r in rules {
        if let Rule::Leaf { field, op: Op::Eq, value } = r {
            if field == "projectId" {
                return value
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Error::Invalid("projectId must be a string".into()));
            }
        }
    }
    Err(Error::Missing {
        param: "projectId".into(),
        message: "Parameter [projectId] is missing: the top AND rule needs a projectId EQ rule".into(),
    })
}

/// What a search reads in each repository: what an index gives for a conjunct of the
/// rule (every match holds it, so every match is among what is read), else everything.
#[derive(Debug, PartialEq)]
enum Reads {
    Key(String),
    KeyPrefix(String),
    /// The lower-case prefix of the names read from the name index.
    NamePrefix(String),
    All,
}

/// The conjuncts of a rule: the rule itself, or, for an AND, those of its rules.
fn conjuncts<'a>(rule: &'a Rule, out: &mut Vec<&'a Rule>) {
    match rule {
        Rule::And(rules) => rules.iter().for_each(|r| conjuncts(r, out)),
        r => out.push(r),
    }
}

/// The narrowest read the rule allows: a `key` EQ, a `name` EQ, a `key` PREFIX, a `name`
/// PREFIX among its conjuncts, in that order; and the repository a `repoName` EQ names.
fn reads_of(rule: &Rule) -> (Reads, Option<String>) {
    let mut all = Vec::new();
    conjuncts(rule, &mut all);
    let text = |field: &str, want: Op| {
        all.iter().find_map(|r| match r {
            // An empty prefix narrows nothing.
            Rule::Leaf { field: f, op, value: Value::String(v) } if f == field && *op == want && !v.is_empty() => {
                Some(v.clone())
            }
            _ => None,
        })
    };
    let reads = if let Some(k) = text("key", Op::Eq) {
        Reads::Key(k)
    } else if let Some(n) = text("name", Op::Eq) {
        // The index's sort key is the lower-case name, then `#` and the key.
        Reads::NamePrefix(format!("{}#", n.to_lowercase()))
    } else if let Some(k) = text("key", Op::Prefix) {
        Reads::KeyPrefix(k)
    } else if let Some(n) = text("name", Op::Prefix) {
        // A name that starts with `n` has a lower-case form that starts with n's, but
        // for a final capital sigma, which lower-cases otherwise at the end of a word.
        let stem = n.strip_suffix('Σ').unwrap_or(&n);
        Reads::NamePrefix(stem.to_lowercase())
    } else {
        Reads::All
    };
    (reads, text("repoName", Op::Eq))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageBody {
    page_number: Option<PageParam>,
    page_size: Option<PageParam>,
}

#[derive(Deserialize)]
pub struct SortBody {
    #[serde(default)]
    properties: Vec<String>,
    direction: Option<String>,
}

/// A search body. Unknown top-level properties are ignored, as bkrepo's request mapper
/// does; fields and operations inside the rule are values, and are checked.
#[derive(Deserialize)]
pub struct SearchBody {
    #[serde(default)]
    select: Vec<String>,
    page: Option<PageBody>,
    sort: Option<SortBody>,
    rule: Option<Value>,
}

pub async fn search(State(st): State<AppState>, scope: Scope, Json(body): Json<SearchBody>) -> Result<Response> {
    let rule_value = body.rule.ok_or_else(|| Error::missing("rule"))?;
    let rule = parse_rule(&rule_value)?;
    let project = project_of(&rule)?;
    for f in &body.select {
        if !SELECT_ONLY.contains(&f.as_str()) {
            kind_of(f)?;
        }
    }
    let sort_kinds = match &body.sort {
        Some(s) => s.properties.iter().map(|p| kind_of(p).map(|k| (p.clone(), k))).collect::<Result<Vec<_>>>()?,
        None => vec![],
    };
    let descending = !crate::packages::is_ascending(body.sort.as_ref().and_then(|s| s.direction.as_deref()), true)?;
    let req = PageRequest::from_query(
        body.page.as_ref().and_then(|p| p.page_number.clone()),
        body.page.as_ref().and_then(|p| p.page_size.clone()),
    )?;

    // A search holds its project's packages in memory while it runs: a few at a time,
    // so that many at once cannot take the server's memory.
    let _slot = depot_core::registry::whole_read_slot().await?;
    // Every repository of the project that the caller may read. Matching and sorting
    // take time in the size of the records: off the async workers, repository by
    // repository; only matching records are kept. (The envelope is made here: its trace
    // id belongs to the request's task.)
    // What it reads follows the matches when a conjunct of the rule has an index (a key
    // or a name, EQ or PREFIX); any other search reads whole repositories, at most
    // `DEPOT_SEARCH_MAX_SCAN` packages in all, which is known from their counts before
    // anything is read.
    let (reads, only_repo) = reads_of(&rule);
    let mut repos = crate::projects::readable_repositories(&st, scope.who(), &project).await?;
    if let Some(name) = &only_repo {
        repos.retain(|r| &r.name == name);
    }
    if reads == Reads::All {
        let whole: i64 = repos.iter().map(|r| r.package_count.max(0)).sum();
        if whole > st.config.search_max_scan {
            return Err(Error::Invalid(format!(
                "this search would read all {whole} packages of the repositories it covers, more than the {} a search may \
                 read: narrow it with a key or name rule (EQ or PREFIX), which reads through an index, or a repoName EQ rule, \
                 in the top AND rule",
                st.config.search_max_scan
            )));
        }
    }
    let rule = std::sync::Arc::new(rule);
    let mut records = Vec::new();
    for repo in repos {
        let (p, r) = (project.as_str(), repo.name.as_str());
        let found = match &reads {
            Reads::Key(k) => match st.registry.find_package(p, r, k).await {
                Ok(found) => found.into_iter().collect(),
                // A key that no package can have matches nothing.
                Err(Error::Invalid(_) | Error::Missing { .. }) => vec![],
                Err(e) => return Err(e),
            },
            Reads::KeyPrefix(k) => st.registry.packages_with_key_prefix(p, r, k).await?,
            Reads::NamePrefix(n) => st.registry.packages_with_name_prefix(p, r, n).await?,
            Reads::All => st.registry.list_packages(p, r).await?,
        };
        let mut packages = Vec::with_capacity(found.len());
        for pkg in found {
            packages.push(st.registry.with_history(pkg).await?);
        }
        let (rule, repo_type) = (rule.clone(), repo.repo_type.as_str());
        let matched = tokio::task::spawn_blocking(move || {
            packages
                .iter()
                .filter_map(|pkg| {
                    let Value::Object(mut rec) = package_view(pkg) else { unreachable!("a package view is an object") };
                    rec.insert("repoType".into(), json!(repo_type));
                    matches(&rule, &rec).then_some(rec)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(Error::internal)?;
        records.extend(matched);
    }
    let select = body.select;
    let page = tokio::task::spawn_blocking(move || page_of(records, &sort_kinds, descending, req, &select))
        .await
        .map_err(Error::internal)?;
    Ok(ok(page))
}

fn page_of(
    mut records: Vec<Map<String, Value>>,
    sort_kinds: &[(String, Kind)],
    descending: bool,
    req: PageRequest,
    select: &[String],
) -> Value {
    if !sort_kinds.is_empty() {
        records.sort_by(|a, b| {
            let ord = sort_kinds
                .iter()
                .map(|(f, k)| {
                    compare(*k, a.get(f).unwrap_or(&Value::Null), b.get(f).unwrap_or(&Value::Null))
                        .unwrap_or(Ordering::Equal)
                })
                .find(|o| *o != Ordering::Equal)
                .unwrap_or(Ordering::Equal);
            if descending {
                ord.reverse()
            } else {
                ord
            }
        });
    }
    let total = records.len() as i64;
    let size = req.size as i64;
    let page: Vec<Value> = records
        .into_iter()
        .skip(((req.number - 1) * req.size) as usize)
        .take(req.size as usize)
        .map(|mut r| {
            if !select.is_empty() {
                r.retain(|k, _| select.iter().any(|s| s == k));
            }
            Value::Object(r)
        })
        .collect();
    json!({
        "pageNumber": req.number,
        "pageSize": size,
        "totalRecords": total,
        "totalPages": (total + size - 1) / size,
        "records": page,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("a*c", "abbbc"));
        assert!(wildcard("*", ""));
        assert!(wildcard("a*", "a"));
        assert!(!wildcard("a*c", "abcd"));
        assert!(wildcard("*b*", "abc"));
        assert!(!wildcard("b", "abc"), "anchored");
        assert!(wildcard("a*b*a", "aba") && !wildcard("ab*ba", "aba"), "prefix and suffix do not overlap");
        assert!(wildcard("*a*a*", "xaxa") && !wildcard("*a*a*", "xax"));
        assert!(wildcard("**", "") && wildcard("a**b", "ab") && wildcard("é*ü", "éxü"));
        // The worst pattern for a backtracking matcher, on a long text: linear here.
        let text = "a".repeat(1_000_000);
        let pattern = format!("*{}b", "a".repeat(MAX_VALUE_CHARS - 2));
        let started = std::time::Instant::now();
        assert!(!wildcard(&pattern, &text));
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
    }

    #[test]
    fn rule_errors_name_the_problem() {
        let bad = |v: Value, needle: &str| {
            let e = parse_rule(&v).unwrap_err().to_string();
            assert!(e.contains(needle), "{v}: {e}");
        };
        bad(json!({"field": "colour", "value": "x", "operation": "EQ"}), "unknown field");
        bad(json!({"field": "name", "value": "x", "operation": "LIKE"}), "unknown operation");
        bad(json!({"field": "downloads", "value": "x", "operation": "GT"}), "a number");
        bad(json!({"field": "name", "value": 3, "operation": "PREFIX"}), "a string");
        bad(json!({"field": "name", "value": "x", "operation": "IN"}), "a list");
        bad(json!({"field": "name", "value": "a", "operation": "GT"}), "numbers and dates");
        bad(json!({"field": "repoName", "value": "a", "operation": "PREFIX"}), "EQ, IN or NIN");
        bad(json!({"relation": "XOR", "rules": []}), "unknown relation");
        bad(json!({"relation": "AND"}), "'rules'");
        bad(json!({"field": "createdDate", "value": "yesterday", "operation": "BEFORE"}), "ISO");
    }
}
