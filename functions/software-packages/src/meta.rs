//! What OCP says of a package: its type from the name, and the file-name pattern
//! `{name}-{version}-{buildNumber}.{os}.{arch}.rpm` that fills in what a header lacks.

/// The types OCP knows, by the first rule of NOTES §3 that the name matches. SCRIPT is
/// documented too, but only RPMs are accepted, so no upload gets it.
pub fn type_of(name: &str) -> &'static str {
    let n = name.to_ascii_lowercase();
    if n.contains("ocp-agent") {
        "OCP_AGENT_INSTALL_PACKAGE"
    } else if n.contains("obproxy") {
        "OBPROXY_INSTALL_PACKAGE"
    } else if n.contains("ob-backup-agent") || n.contains("obbackup") {
        "OB_BACKUP_AGENT_INSTALL_PACKAGE"
    } else if n.contains("obagent") {
        "OB_AGENT_INSTALL_PACKAGE"
    } else if n.contains("oceanbase") || n.contains("observer") {
        "OB_SERVER_INSTALL_PACKAGE"
    } else {
        "OTHERS_RPM"
    }
}

/// Every type a query may name.
pub const TYPES: [&str; 7] = [
    "OB_SERVER_INSTALL_PACKAGE",
    "OCP_AGENT_INSTALL_PACKAGE",
    "OBPROXY_INSTALL_PACKAGE",
    "OB_BACKUP_AGENT_INSTALL_PACKAGE",
    "OB_AGENT_INSTALL_PACKAGE",
    "SCRIPT",
    "OTHERS_RPM",
];

/// The parts of a file name that follows the pattern; missing parts are `None`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NameParts {
    pub name: Option<String>,
    pub version: Option<String>,
    pub build: Option<String>,
    pub os: Option<String>,
    pub arch: Option<String>,
}

/// Reads `{name}-{version}-{buildNumber}.{os}.{arch}.rpm`, right to left, as far as the
/// name follows it.
pub fn parse_file_name(file: &str) -> NameParts {
    let mut p = NameParts::default();
    let Some(stem) = file.len().checked_sub(4).filter(|&n| file[n..].eq_ignore_ascii_case(".rpm")).map(|n| &file[..n]) else {
        return p;
    };
    let Some((rest, arch)) = stem.rsplit_once('.') else { return p };
    p.arch = Some(arch.to_string()).filter(|a| !a.is_empty());
    // `{name}-{version}-{build}.{os}`: the build and OS follow the last '-'.
    let Some((nv, release)) = rest.rsplit_once('-') else { return p };
    match release.split_once('.') {
        Some((build, os)) => {
            p.build = Some(build.to_string()).filter(|b| !b.is_empty());
            p.os = Some(os.to_string()).filter(|o| !o.is_empty());
        }
        None => p.build = Some(release.to_string()).filter(|b| !b.is_empty()),
    }
    if let Some((name, version)) = nv.rsplit_once('-') {
        p.name = Some(name.to_string()).filter(|n| !n.is_empty());
        p.version = Some(version.to_string()).filter(|v| !v.is_empty());
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_follow_the_name() {
        for (name, ty) in [
            ("t-oceanbase-ocp-agent", "OCP_AGENT_INSTALL_PACKAGE"),
            ("oceanbase-ce", "OB_SERVER_INSTALL_PACKAGE"),
            ("observer", "OB_SERVER_INSTALL_PACKAGE"),
            ("obproxy-ce", "OBPROXY_INSTALL_PACKAGE"),
            ("oceanbase-obproxy", "OBPROXY_INSTALL_PACKAGE"),
            ("ob-backup-agent", "OB_BACKUP_AGENT_INSTALL_PACKAGE"),
            ("obbackup", "OB_BACKUP_AGENT_INSTALL_PACKAGE"),
            ("obagent", "OB_AGENT_INSTALL_PACKAGE"),
            ("obclient", "OTHERS_RPM"),
        ] {
            assert_eq!(type_of(name), ty, "{name}");
        }
    }

    #[test]
    fn file_names_follow_the_pattern() {
        let p = parse_file_name("t-oceanbase-ocp-agent-3.1.2-20210812221645.alios7.x86_64.rpm");
        assert_eq!(
            p,
            NameParts {
                name: Some("t-oceanbase-ocp-agent".into()),
                version: Some("3.1.2".into()),
                build: Some("20210812221645".into()),
                os: Some("alios7".into()),
                arch: Some("x86_64".into()),
            }
        );
        assert_eq!(parse_file_name("obclient-2.2.2-1.el9.x86_64.rpm").os.as_deref(), Some("el9"));
        assert_eq!(parse_file_name("x.RPM").arch.as_deref(), None);
        assert_eq!(parse_file_name("a.tar.gz"), NameParts::default());
        assert_eq!(parse_file_name(".rpm"), NameParts::default());
        assert_eq!(parse_file_name("-.x.rpm").build, None);
    }
}
