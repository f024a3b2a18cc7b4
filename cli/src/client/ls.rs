//! `depot ls`: a repository's packages, or one package's versions, as a table or JSON.
use reqwest::Method;
use serde_json::{json, Value};

use super::api::Api;
use super::{package_key, repo_type, RepoRef};

const PAGE: u32 = 500;

/// Every record of a bkrepo page route, page by page.
async fn all_records(api: &Api, path: &str, query: &[(&str, &str)], what: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for number in 1.. {
        let (n, size) = (number.to_string(), PAGE.to_string());
        let mut q: Vec<(&str, &str)> = query.to_vec();
        q.extend([("pageNumber", n.as_str()), ("pageSize", size.as_str())]);
        let page = api.data(api.request(Method::GET, path).query(&q), what).await?;
        let records = page["records"].as_array().cloned().unwrap_or_default();
        let got = records.len();
        out.extend(records);
        let total = page["totalRecords"].as_u64().unwrap_or(0) as usize;
        if got < PAGE as usize || out.len() >= total {
            break;
        }
    }
    Ok(out)
}

pub async fn ls(api: &Api, repo: &RepoRef, package: Option<&str>, as_json: bool) -> anyhow::Result<()> {
    let RepoRef { project, repo } = repo;
    let ty = repo_type(api, project, repo).await?;
    let (header, rows): (Vec<&str>, Vec<Value>) = match package {
        None => {
            let path = format!("/repository/api/package/page/{project}/{repo}");
            let records = all_records(api, &path, &[], "listing the packages").await?;
            let rows = records
                .iter()
                .map(|p| json!({"name": p["name"], "key": p["key"], "latest": p["latest"], "versions": p["versions"], "downloads": p["downloads"]}))
                .collect();
            (vec!["name", "key", "latest", "versions", "downloads"], rows)
        }
        Some(pkg) => {
            let key = package_key(&ty, pkg);
            let path = format!("/repository/api/version/page/{project}/{repo}");
            let records = all_records(api, &path, &[("packageKey", &key)], "listing the versions").await?;
            if records.is_empty() {
                // A package without versions does not exist: say so rather than print nothing.
                let rb = api.request(Method::GET, &format!("/repository/api/package/info/{project}/{repo}"));
                if api.data(rb.query(&[("packageKey", &key)]), "reading the package").await?.is_null() {
                    anyhow::bail!("package {key} not found in {project}/{repo}");
                }
            }
            let rows = records
                .iter()
                .map(|v| json!({"version": v["name"], "stage": v["stageTag"], "size": v["size"], "created": v["createdDate"], "downloads": v["downloads"], "sha256": v["sha256"]}))
                .collect();
            (vec!["version", "stage", "size", "created", "downloads"], rows)
        }
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    print!("{}", table(&header, &rows));
    Ok(())
}

/// The rows as aligned columns, under an upper-case header.
fn table(header: &[&str], rows: &[Value]) -> String {
    let cell = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string()))
            .collect::<Vec<_>>()
            .join(","),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let cells: Vec<Vec<String>> = rows.iter().map(|r| header.iter().map(|h| cell(&r[*h])).collect()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |row: Vec<String>| {
        let mut s = String::new();
        for (i, (c, w)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_ascii_uppercase()).collect());
    for row in cells {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_table_aligns_its_columns() {
        let rows = vec![
            serde_json::json!({"name": "mysql", "versions": 12, "stage": ["@prerelease", "@release"]}),
            serde_json::json!({"name": "a", "versions": 3, "stage": []}),
        ];
        let t = super::table(&["name", "versions", "stage"], &rows);
        assert_eq!(t, "NAME   VERSIONS  STAGE\nmysql  12        @prerelease,@release\na      3\n");
    }
}
