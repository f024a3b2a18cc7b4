//! `files_info`: the directory tree of a strux package, as the client sends it and as
//! the download gives it back.
//!
//! The Go client writes capitalised keys (`Name`, `FileNames`, `InnerDir`) and omits
//! empty ones; the docs write `name`, `fileNames`, `innerDir`. Both are read; the stored
//! tree is written with capitalised keys. A directory's `Name` is its path from the
//! package root, and an inner directory's extends its parent's. A `\` in a directory
//! `Name` is read as `/` (the client joins Windows paths so).
use std::collections::HashSet;

use depot_core::model::{printable, validate_filename, validate_name};
use depot_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// How deep directories may nest below the package root.
pub const MAX_DEPTH: usize = 32;

/// One directory as sent and as stored.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Dir {
    #[serde(rename = "Name", alias = "name")]
    pub name: String,
    #[serde(rename = "FileNames", alias = "fileNames", default, skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "null_is_empty")]
    pub file_names: Vec<String>,
    #[serde(rename = "InnerDir", alias = "innerDir", default, skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "null_is_empty")]
    pub inner_dir: Vec<Dir>,
}

fn null_is_empty<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> std::result::Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

fn bad(m: String) -> Error {
    Error::Invalid(format!("files_info: {m}"))
}

/// A directory path as stored: `\` read as `/`, no empty, `.` or `..` segment, no
/// absolute path; each segment a valid file name.
pub fn normalize_dir(name: &str) -> Result<String> {
    let unified = name.replace('\\', "/");
    if unified.starts_with('/') {
        return Err(bad(format!("directory '{}' is an absolute path", printable(name))));
    }
    let mut segments = vec![];
    for seg in unified.split('/').filter(|s| !s.is_empty()) {
        validate_filename(seg).map_err(|_| bad(format!("directory '{}' has an invalid segment", printable(name))))?;
        segments.push(seg);
    }
    if segments.is_empty() {
        return Err(bad(format!("directory '{}' is empty", printable(name))));
    }
    Ok(segments.join("/"))
}

/// The checked tree: the package name and every (directory, file) it lists.
#[derive(Debug)]
pub struct Tree {
    pub package: String,
    /// The tree as stored: normalized names, capitalised keys.
    pub root: Dir,
    pub files: Vec<(String, String)>,
}

/// Parses and checks `files_info`: at most `max_files` files and [`MAX_DEPTH`] levels, no
/// duplicate directory or file, names that cannot leave the package directory.
pub fn parse(text: &str, max_files: usize) -> Result<Tree> {
    let root: Dir = serde_json::from_str(text).map_err(|e| bad(format!("not the JSON of a directory tree: {e}")))?;
    let package = normalize_dir(&root.name)?;
    if package.contains('/') {
        return Err(bad(format!("the package's root Name '{}' must be one name", printable(&root.name))));
    }
    validate_name("package name", &package)?;
    let (mut dirs, mut seen, mut files) = (HashSet::new(), HashSet::new(), vec![]);
    let root = check(&root, None, 0, max_files, &mut dirs, &mut seen, &mut files)?;
    Ok(Tree { package, root, files })
}

fn check(
    dir: &Dir,
    parent: Option<&str>,
    depth: usize,
    max_files: usize,
    dirs: &mut HashSet<String>,
    seen: &mut HashSet<(String, String)>,
    files: &mut Vec<(String, String)>,
) -> Result<Dir> {
    if depth > MAX_DEPTH {
        return Err(bad(format!("directories nest more than {MAX_DEPTH} levels deep")));
    }
    let path = normalize_dir(&dir.name)?;
    if let Some(parent) = parent {
        if !path.strip_prefix(parent).is_some_and(|rest| rest.starts_with('/')) {
            return Err(bad(format!(
                "directory '{}' does not extend its parent '{}'",
                printable(&dir.name),
                printable(parent)
            )));
        }
    }
    if !dirs.insert(path.clone()) {
        return Err(bad(format!("directory '{}' is listed twice", printable(&path))));
    }
    for f in &dir.file_names {
        if f.contains('\\') || validate_filename(f).is_err() {
            return Err(bad(format!("invalid file name '{}' in '{}'", printable(f), printable(&path))));
        }
        if !seen.insert((path.clone(), f.clone())) {
            return Err(bad(format!("file '{}/{}' is listed twice", printable(&path), printable(f))));
        }
        files.push((path.clone(), f.clone()));
        if files.len() > max_files {
            return Err(Error::TooLarge(format!("a package version holds at most {max_files} files")));
        }
    }
    let mut inner = Vec::with_capacity(dir.inner_dir.len());
    for d in &dir.inner_dir {
        inner.push(check(d, Some(&path), depth + 1, max_files, dirs, seen, files)?);
    }
    Ok(Dir { name: path, file_names: dir.file_names.clone(), inner_dir: inner })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_and_windows_directories() {
        let go = r#"{"Name":"tee","FileNames":["a.txt"],"InnerDir":[{"Name":"tee\\dir1","FileNames":["b.txt"]},{"Name":"tee/dir2","InnerDir":[{"Name":"tee/dir2/x","FileNames":["c"]}]}]}"#;
        let docs = r#"{"name":"tee","fileNames":["a.txt"],"innerDir":[{"name":"tee/dir1","fileNames":["b.txt"]},{"name":"tee/dir2","fileNames":[],"innerDir":[{"name":"tee/dir2/x","fileNames":["c"]}]}]}"#;
        let a = parse(go, 10).unwrap();
        let b = parse(docs, 10).unwrap();
        assert_eq!(a.root, b.root);
        assert_eq!(a.package, "tee");
        assert_eq!(
            a.files,
            [("tee".into(), "a.txt".into()), ("tee/dir1".into(), "b.txt".into()), ("tee/dir2/x".into(), "c".into())]
        );
        let stored = serde_json::to_string(&a.root).unwrap();
        assert!(stored.contains(r#""Name":"tee/dir1""#) && !stored.contains("fileNames"), "{stored}");
    }

    #[test]
    fn hostile_trees_are_refused() {
        let cases = [
            (r#"{"Name":"/tee"}"#, "absolute"),
            (r#"{"Name":"tee","InnerDir":[{"Name":"tee/../x"}]}"#, "invalid segment"),
            (r#"{"Name":"tee","InnerDir":[{"Name":"other/x"}]}"#, "does not extend"),
            (r#"{"Name":"tee","InnerDir":[{"Name":"tee"}]}"#, "does not extend"),
            (r#"{"Name":"tee","FileNames":["a\\b"]}"#, "invalid file name"),
            (r#"{"Name":"tee","FileNames":["../a"]}"#, "invalid file name"),
            (r#"{"Name":"tee","FileNames":["a\u0000"]}"#, "invalid file name"),
            (r#"{"Name":"tee","FileNames":["a","a"]}"#, "listed twice"),
            (r#"{"Name":"tee","InnerDir":[{"Name":"tee/d"},{"Name":"tee\\d"}]}"#, "listed twice"),
            (r#"{"Name":"a/b"}"#, "one name"),
            (r#"[1]"#, "not the JSON"),
        ];
        for (text, want) in cases {
            let e = parse(text, 10).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        let mut deep = String::from(r#"{"Name":"t""#);
        let mut path = "t".to_string();
        for i in 0..40 {
            path.push_str(&format!("/d{i}"));
            deep.push_str(&format!(r#","InnerDir":[{{"Name":"{path}""#));
        }
        deep.push_str(&"}]".repeat(40));
        deep.push('}');
        assert!(parse(&deep, 10).unwrap_err().to_string().contains("levels deep"));
        let many = format!(r#"{{"Name":"t","FileNames":[{}]}}"#, (0..11).map(|i| format!("\"f{i}\"")).collect::<Vec<_>>().join(","));
        assert!(matches!(parse(&many, 10), Err(Error::TooLarge(_))));
    }
}
