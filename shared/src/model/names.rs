use crate::{Error, Result};

/// The rule every name a request gives follows: what bkrepo's rules for new projects,
/// repositories and users allow, and what depot's earlier rule (1-64 characters from
/// letters, digits, '-', '_' and '.') allowed, so that what is stored stays readable.
pub const NAME_RULE: &str = "1-100 characters from letters, digits, '-', '_', '.' and '@', starting with a letter, digit or '_'";

/// Validates a name a request gives (a project, a repository, a user, a token). `what`
/// names the field in the message. New projects, repositories and users follow
/// bkrepo's stricter rules ([`check_new_project_name`] and the others).
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok = (1..=100).contains(&name.len())
        && (name.as_bytes()[0].is_ascii_alphanumeric() || name.as_bytes()[0] == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!("invalid {what} '{}': must be {NAME_RULE}", printable(name))))
    }
}

/// Validates a file name taken from a client: 1-255 bytes, not `.` or `..`, no `/`,
/// `\`, NUL or control characters.
pub fn validate_filename(name: &str) -> Result<()> {
    let ok = (1..=255).contains(&name.len())
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c == '/' || c == '\\' || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid file name '{}': 1-255 bytes without '/', '\\', NUL or control characters, and not '.' or '..'",
            printable(name)
        )))
    }
}

/// `first` then `rest` characters, `len` bytes long in all.
fn follows(name: &str, len: std::ops::RangeInclusive<usize>, first: impl Fn(u8) -> bool, rest: impl Fn(u8) -> bool) -> bool {
    len.contains(&name.len()) && first(name.as_bytes()[0]) && name.bytes().skip(1).all(rest)
}

/// bkrepo's rule for a new project (`ProjectServiceHelper`): `[a-zA-Z_][a-zA-Z0-9\-_]{1,99}`.
pub fn check_new_project_name(name: &str) -> Result<()> {
    if follows(name, 2..=100, |b| b.is_ascii_alphabetic() || b == b'_', |b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid project name '{}': 2-100 characters from letters, digits, '-' and '_', starting with a letter or '_'",
            printable(name)
        )))
    }
}

/// bkrepo's rule for a new repository (`RepositoryServiceHelper`):
/// `[a-zA-Z_][a-zA-Z0-9.\-_]{1,63}`, and never `..` in it.
pub fn check_new_repo_name(name: &str) -> Result<()> {
    let ok = follows(name, 2..=64, |b| b.is_ascii_alphabetic() || b == b'_', |b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid repository name '{}': 2-64 characters from letters, digits, '.', '-' and '_', starting with a letter or '_', without '..'",
            printable(name)
        )))
    }
}

/// bkrepo's rule for a new user id (`UserRequestUtil`): `[a-zA-Z0-9_][a-zA-Z0-9\-_@.]{1,99}`,
/// so that `bob@example.com` is one.
pub fn check_new_user_id(id: &str) -> Result<()> {
    let ok = follows(id, 2..=100, |b| b.is_ascii_alphanumeric() || b == b'_', |b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'@' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid user id '{}': 2-100 characters from letters, digits, '-', '_', '@' and '.', starting with a letter, digit or '_'",
            printable(id)
        )))
    }
}

/// A project's display name: 2-100 characters without control characters (bkrepo's
/// `ProjectServiceHelper`).
pub fn check_display_name(d: &str) -> Result<()> {
    let n = d.chars().count();
    if (2..=100).contains(&n) && !d.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(Error::Invalid(format!("invalid displayName '{}': 2-100 characters without control characters", printable(d))))
    }
}

/// A repository's description: at most 200 characters (bkrepo's `RepositoryServiceHelper`).
pub fn check_description(d: &str) -> Result<()> {
    if d.chars().count() <= 200 {
        Ok(())
    } else {
        Err(Error::Invalid("description is over 200 characters".into()))
    }
}

/// Whether `id` has the form of the ids depot generates: 32 hex digits (a simple UUID).
pub fn is_generated_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A name made safe to echo in a message: control characters escaped, length capped.
pub fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        // What was stored under the earlier rule, and what the new rules allow, reads.
        for good in ["a", "A1", "my-proj_1.0", &"x".repeat(64), "_a", "bob@example.com", &"x".repeat(100)] {
            assert!(validate_name("project", good).is_ok(), "{good}");
        }
        for bad in ["", "-a", ".a", "a/b", "a b", "a..b/", "ü", "a\0", &"x".repeat(101), ".."] {
            let e = validate_name("project", bad).unwrap_err();
            assert!(matches!(e, Error::Invalid(ref m) if m.contains("1-100 characters")), "{bad}: {e}");
        }
        for good in ["ab", "_x", "Team-1_a", &"p".repeat(100)] {
            assert!(check_new_project_name(good).is_ok(), "{good}");
        }
        for bad in ["a", "1ab", "a.b", "a@b", &"p".repeat(101), "-ab"] {
            assert!(check_new_project_name(bad).is_err(), "{bad}");
        }
        for good in ["ab", "charts.v2", "_r-1", &"r".repeat(64)] {
            assert!(check_new_repo_name(good).is_ok(), "{good}");
        }
        for bad in ["a", "1ab", "a..b", "..", "a@b", &"r".repeat(65), ".ab"] {
            assert!(check_new_repo_name(bad).is_err(), "{bad}");
        }
        for good in ["bob", "bob@example.com", "1user", "_svc.ci-1"] {
            assert!(check_new_user_id(good).is_ok(), "{good}");
        }
        for bad in ["b", "-bob", "bob smith", "bob/x", &"u".repeat(101)] {
            assert!(check_new_user_id(bad).is_err(), "{bad}");
        }
        for good in ["a.tgz", "x-1.0.0.tar.gz", "ü.zip"] {
            assert!(validate_filename(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a\\b", "a\0b", "a\nb", "../x"] {
            assert!(validate_filename(bad).is_err(), "{bad:?}");
        }
    }
}

/// `n` things, in the singular for one: "1 package", "3 packages".
pub fn count_of(n: i64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
