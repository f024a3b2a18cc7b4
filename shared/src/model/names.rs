use crate::{Error, Result};

/// The rule every project and repository name follows.
pub const NAME_RULE: &str = "1-64 characters from letters, digits, '-', '_' and '.', starting with a letter or digit";

/// Validates a project or repository name. `what` names the field in the message.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
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
        for good in ["a", "A1", "my-proj_1.0", &"x".repeat(64)] {
            assert!(validate_name("project", good).is_ok(), "{good}");
        }
        for bad in ["", "-a", ".a", "_a", "a/b", "a b", "a..b/", "ü", "a\0", &"x".repeat(65), ".."] {
            let e = validate_name("project", bad).unwrap_err();
            assert!(matches!(e, Error::Invalid(ref m) if m.contains("1-64 characters")), "{bad}: {e}");
        }
        for good in ["a.tgz", "x-1.0.0.tar.gz", "ü.zip"] {
            assert!(validate_filename(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a\\b", "a\0b", "a\nb", "../x"] {
            assert!(validate_filename(bad).is_err(), "{bad:?}");
        }
    }
}
