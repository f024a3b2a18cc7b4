use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A project: the top-level namespace that holds repositories.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub created_by: String,
    pub created_date: String,
    pub last_modified_by: String,
    pub last_modified_date: String,
    /// How many repositories the project holds; kept in the same transactions as the writes.
    #[serde(default)]
    pub repo_count: i64,
}

/// The repository types depot serves. Each surface writes into repositories of its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RepoType {
    Generic,
    Rds,
    Rpm,
    Aps,
    Strux,
}

impl RepoType {
    pub const ALL: [RepoType; 5] = [Self::Generic, Self::Rds, Self::Rpm, Self::Aps, Self::Strux];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generic => "GENERIC",
            Self::Rds => "RDS",
            Self::Rpm => "RPM",
            Self::Aps => "APS",
            Self::Strux => "STRUX",
        }
    }

    /// Parses a type name, case-insensitively. The error lists the supported types.
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|t| t.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| {
            let all: Vec<_> = Self::ALL.iter().map(|t| t.as_str()).collect();
            Error::Invalid(format!(
                "unsupported repository type '{}': supported types are {}",
                crate::model::printable(s),
                all.join(", ")
            ))
        })
    }
}

impl std::fmt::Display for RepoType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A repository inside a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Repository {
    pub project_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub repo_type: RepoType,
    pub category: String,
    pub public: bool,
    pub description: String,
    /// Whether an upload may replace an existing version when the client asks to
    /// (`?force`). On by default.
    #[serde(default = "yes")]
    pub allow_overwrite: bool,
    pub created_by: String,
    pub created_date: String,
    pub last_modified_by: String,
    pub last_modified_date: String,
    /// How many packages the repository holds; kept in the same transactions as the writes.
    #[serde(default)]
    pub package_count: i64,
    /// How many versions it holds, kept the same way (counted from the release that
    /// added it: a repository older than that counts only what came and went since).
    #[serde(default)]
    pub version_count: i64,
    /// Bumped by every write to the repository; derived renderings are cached under it.
    #[serde(default)]
    pub generation: i64,
    /// Random, set when the repository is created: tells it apart from an earlier
    /// repository of the same name (empty on repositories older than the field).
    #[serde(default)]
    pub uid: String,
    /// bkrepo's repository configuration, stored as the client sent it (`{type: "local",
    /// settings: {}}` when it sent none).
    #[serde(default = "local_configuration")]
    pub configuration: serde_json::Value,
}

/// The configuration of a local repository, as bkrepo writes it.
pub fn local_configuration() -> serde_json::Value {
    serde_json::json!({ "type": "local", "settings": {} })
}

impl Repository {
    /// The repository, checked to be of `ty`: another type is `Invalid`.
    pub fn of_type(&self, ty: RepoType) -> Result<&Self> {
        if self.repo_type != ty {
            return Err(Error::Invalid(format!(
                "repository [{}/{}] is a {} repository, not {}",
                self.project_id,
                self.name,
                self.repo_type.as_str(),
                ty.as_str()
            )));
        }
        Ok(self)
    }

    /// Names the repository's contents at this moment: it changes with every write, and
    /// differs from anything an earlier repository of the same name had. ETags, cached
    /// renderings and remembered page starts are keyed by it.
    pub fn state_tag(&self) -> String {
        match self.uid.get(..12) {
            Some(uid) => format!("{uid}-g{}", self.generation),
            None => format!("g{}", self.generation),
        }
    }
}

fn yes() -> bool {
    true
}
