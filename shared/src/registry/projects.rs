//! Projects and repositories.
use serde_json::Value;

use super::Registry;
use crate::error::Kind;
use crate::model::{now_iso, validate_name, Project, RepoType, Repository};
use crate::store::schema::{
    changes_partition, forget_grants, from_item, package_partition, pages_partition, paths_partition, project_key, project_partition,
    repo_key, repo_partition, staged_partition, to_item, DELETING_ATTR, PKG_SK_PREFIX, PROJECTS_PK, PROJECT_SK_PREFIX,
    REPO_SK_PREFIX,
};
use crate::store::{delete_all, query_all, Cond, Item, Key, Query, TxOp};
use crate::{Error, Result};

/// What a caller asks for when creating a project.
#[derive(Debug, Clone, Default)]
pub struct NewProject {
    pub name: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
}

/// What a caller asks for when creating a repository.
#[derive(Debug, Clone)]
pub struct NewRepository {
    pub project_id: String,
    pub name: String,
    pub repo_type: RepoType,
    pub public: bool,
    pub description: Option<String>,
    /// `None` keeps the default (overwrites allowed).
    pub allow_overwrite: Option<bool>,
    /// bkrepo's `configuration`, stored as sent.
    pub configuration: Option<Value>,
}

/// What a caller changes in a repository (bkrepo's `repo/update`); absent fields stay.
#[derive(Debug, Clone, Default)]
pub struct RepositoryUpdate {
    pub public: Option<bool>,
    pub description: Option<String>,
    pub configuration: Option<Value>,
}

/// The longest configuration stored with a repository.
const MAX_CONFIGURATION_BYTES: usize = 64 * 1024;

fn check_configuration(c: &Value) -> Result<()> {
    if !c.is_object() {
        return Err(Error::Invalid("configuration must be an object, such as {\"type\": \"local\", \"settings\": {}}".into()));
    }
    if c.to_string().len() > MAX_CONFIGURATION_BYTES {
        return Err(Error::Invalid(format!("configuration is over {MAX_CONFIGURATION_BYTES} bytes")));
    }
    Ok(())
}

fn repo_count_attr() -> String {
    "repoCount".to_string()
}

impl Registry {
    pub async fn create_project(&self, req: NewProject, by: &str) -> Result<Project> {
        validate_name("project name", &req.name)?;
        let now = now_iso();
        let project = Project {
            display_name: req.display_name.filter(|d| !d.is_empty()).unwrap_or_else(|| req.name.clone()),
            description: req.description.unwrap_or_default(),
            name: req.name,
            created_by: by.to_string(),
            created_date: now.clone(),
            last_modified_by: by.to_string(),
            last_modified_date: now,
            repo_count: 0,
        };
        let key = project_key(&project.name);
        if self.table.get(&key).await?.is_none() {
            // Grants a failed deletion of an earlier project of this name left behind.
            forget_grants(&*self.table, &project.name, None).await?;
        }
        let item = to_item(&key, &project)?;
        self.table
            .put(item, Cond::NotExists)
            .await
            .map_err(|e| e.on_conflict(|| Error::exists(Kind::Project, &project.name)))?;
        Ok(project)
    }

    pub async fn get_project(&self, name: &str) -> Result<Project> {
        validate_name("project name", name)?;
        match self.table.get(&project_key(name)).await? {
            Some(item) => from_item(item),
            None => Err(Error::not_found(Kind::Project, name)),
        }
    }

    pub async fn project_exists(&self, name: &str) -> Result<bool> {
        validate_name("project name", name)?;
        Ok(self.table.get(&project_key(name)).await?.is_some())
    }

    pub async fn list_projects(&self) -> Result<Vec<Project>> {
        let items = query_all(&*self.table, Query::prefix(PROJECTS_PK, PROJECT_SK_PREFIX)).await?;
        items.into_iter().map(from_item).collect()
    }

    /// Deletes a project. One that still holds repositories is refused unless `forced`,
    /// which deletes its repositories (and their packages) first.
    pub async fn delete_project(&self, name: &str, forced: bool) -> Result<()> {
        let project = self.get_project(name).await?;
        if forced {
            for repo in self.list_repositories(name).await? {
                self.delete_repository(name, &repo.name, true).await?;
            }
        }
        self.table.delete(&project_key(name), Cond::Eq(repo_count_attr(), Value::from(0))).await.map_err(|e| {
            e.on_conflict(|| {
                Error::conflict(format!(
                    "project [{name}] still holds {}; delete them first or pass forced=true",
                    crate::model::count_of(project.repo_count.max(1), "repository", "repositories")
                ))
            })
        })?;
        forget_grants(&*self.table, name, None).await
    }

    pub async fn create_repository(&self, req: NewRepository, by: &str) -> Result<Repository> {
        validate_name("project name", &req.project_id)?;
        validate_name("repository name", &req.name)?;
        let now = now_iso();
        let repo = Repository {
            project_id: req.project_id,
            name: req.name,
            repo_type: req.repo_type,
            category: "LOCAL".into(),
            public: req.public,
            description: req.description.unwrap_or_default(),
            allow_overwrite: req.allow_overwrite.unwrap_or(true),
            created_by: by.to_string(),
            created_date: now.clone(),
            last_modified_by: by.to_string(),
            last_modified_date: now,
            package_count: 0,
            version_count: 0,
            generation: 0,
            uid: uuid::Uuid::new_v4().simple().to_string(),
            configuration: match req.configuration {
                Some(c) => {
                    check_configuration(&c)?;
                    c
                }
                None => crate::model::local_configuration(),
            },
        };
        let item = to_item(&repo_key(&repo.project_id, &repo.name), &repo)?;
        let ops = vec![
            TxOp::Put { item, cond: Cond::NotExists },
            TxOp::Update {
                key: project_key(&repo.project_id),
                set: Item::new(),
                add: vec![(repo_count_attr(), 1)],
                cond: Cond::Exists,
            },
        ];
        match self.table.transact(ops).await {
            Ok(()) => Ok(repo),
            Err(e) if e.failed_op(1) => Err(Error::not_found(Kind::Project, &repo.project_id)),
            Err(e) => {
                Err(e.on_conflict(|| Error::exists(Kind::Repository, format!("{}/{}", repo.project_id, repo.name))))
            }
        }
    }

    /// The repository a surface serves (one named by configuration), created with its
    /// project on first use. One of another type is refused: the configuration names
    /// the wrong repository.
    pub async fn ensure_repository(&self, project: &str, name: &str, ty: RepoType, public: bool) -> Result<Repository> {
        if let Some(repo) = self.find_repository(project, name).await? {
            if repo.repo_type != ty {
                // Someone with MANAGE replaced it: a clear refusal, not a server error.
                return Err(Error::conflict(format!(
                    "the configured repository {project}/{name} is of type {}, not {}: an administrator deletes it, \
                     or points the surface's setting at another repository",
                    repo.repo_type.as_str(),
                    ty.as_str()
                )));
            }
            return Ok(repo);
        }
        let by = "system";
        match self.create_project(NewProject { name: project.into(), ..Default::default() }, by).await {
            Err(e) if !matches!(e, Error::Exists { .. }) => return Err(e),
            _ => {}
        }
        let nr = NewRepository {
            project_id: project.into(),
            name: name.into(),
            repo_type: ty,
            public,
            description: Some(format!("created by depot for its {} surface", ty.as_str())),
            allow_overwrite: Some(false),
            configuration: None,
        };
        match self.create_repository(nr, by).await {
            Ok(repo) => Ok(repo),
            // Another request created it first.
            Err(Error::Exists { .. }) => self.get_repository(project, name).await,
            Err(e) => Err(e),
        }
    }

    /// Changes a repository's public flag, description or configuration. One write, on
    /// the condition that it exists and no forced delete is emptying it.
    pub async fn update_repository(&self, project: &str, name: &str, req: RepositoryUpdate, by: &str) -> Result<Repository> {
        let mut set = Item::new();
        if let Some(p) = req.public {
            set.insert("public".into(), p.into());
        }
        if let Some(d) = req.description {
            crate::model::check_description(&d)?;
            set.insert("description".into(), d.into());
        }
        if let Some(c) = req.configuration {
            check_configuration(&c)?;
            set.insert("configuration".into(), c);
        }
        set.insert("lastModifiedBy".into(), by.into());
        set.insert("lastModifiedDate".into(), now_iso().into());
        let cond = Cond::All(vec![Cond::Exists, Cond::Lacks(DELETING_ATTR.into())]);
        let item = self
            .table
            .update(&repo_key(project, name), set, &[("generation".to_string(), 1)], cond)
            .await
            .map_err(|e| e.on_conflict(|| Error::not_found(Kind::Repository, format!("{project}/{name}"))))?;
        from_item(item)
    }

    /// Changes a project's display name or description.
    pub async fn update_project(&self, name: &str, display_name: Option<String>, description: Option<String>, by: &str) -> Result<Project> {
        let mut set = Item::new();
        if let Some(d) = display_name {
            crate::model::check_display_name(&d)?;
            set.insert("displayName".into(), d.into());
        }
        if let Some(d) = description {
            set.insert("description".into(), d.into());
        }
        set.insert("lastModifiedBy".into(), by.into());
        set.insert("lastModifiedDate".into(), now_iso().into());
        let item = self
            .table
            .update(&project_key(name), set, &[], Cond::Exists)
            .await
            .map_err(|e| e.on_conflict(|| Error::not_found(Kind::Project, name)))?;
        from_item(item)
    }

    pub async fn get_repository(&self, project: &str, name: &str) -> Result<Repository> {
        validate_name("project name", project)?;
        validate_name("repository name", name)?;
        self.find_repository(project, name)
            .await?
            .ok_or_else(|| Error::not_found(Kind::Repository, format!("{project}/{name}")))
    }

    /// The repository, or `None` when it does not exist.
    pub async fn find_repository(&self, project: &str, name: &str) -> Result<Option<Repository>> {
        validate_name("project name", project)?;
        validate_name("repository name", name)?;
        self.table.get(&repo_key(project, name)).await?.map(from_item).transpose()
    }

    /// Lists a project's repositories, by name. An unknown project is `NotFound`.
    pub async fn list_repositories(&self, project: &str) -> Result<Vec<Repository>> {
        self.get_project(project).await?;
        let items = query_all(&*self.table, Query::prefix(project_partition(project), REPO_SK_PREFIX)).await?;
        items.into_iter().map(from_item).collect()
    }

    /// Deletes a repository. One that still holds packages is refused unless `forced`,
    /// which first marks it as being deleted (every commit into it then fails), then
    /// deletes its packages and versions. A forced delete that is interrupted leaves the
    /// repository refusing writes until it is deleted again. Blobs are left to garbage
    /// collection.
    pub async fn delete_repository(&self, project: &str, name: &str, forced: bool) -> Result<()> {
        let repo = self.get_repository(project, name).await?;
        let mut cond = Cond::Eq("packageCount".into(), Value::from(0));
        if forced {
            // Writers first: from here on no commit lands in the repository, so the
            // listing below sees every version there will ever be in it.
            let mut set = Item::new();
            set.insert(DELETING_ATTR.into(), true.into());
            self.table
                .update(&repo_key(project, name), set, &[], Cond::Exists)
                .await
                .map_err(|e| e.on_conflict(|| Error::not_found(Kind::Repository, format!("{project}/{name}"))))?;
            self.delete_packages_of(project, name, &repo.uid).await?;
            cond = Cond::Exists;
        }
        let ops = vec![
            TxOp::Delete { key: repo_key(project, name), cond },
            TxOp::Update {
                key: project_key(project),
                set: Item::new(),
                add: vec![(repo_count_attr(), -1)],
                cond: Cond::Ge(repo_count_attr(), 1),
            },
        ];
        self.table.transact(ops).await.map_err(|e| {
            // Packages exist in it: bkrepo's REPOSITORY_NOT_EMPTY.
            e.on_conflict(|| {
                Error::exists_as(
                    Kind::Package,
                    format!("{project}/{name}"),
                    format!(
                        "repository [{project}/{name}] still holds {}; delete them first or pass forced=true",
                        crate::model::count_of(repo.package_count.max(1), "package", "packages")
                    ),
                )
            })
        })?;
        forget_grants(&*self.table, project, Some(name)).await?;
        // Blobs staged for this repository are not for one created again under its name.
        delete_all(&*self.table, Query::partition(staged_partition(project, name))).await?;
        // The paths its versions held are free for a repository created again.
        delete_all(&*self.table, Query::partition(paths_partition(project, name))).await?;
        // Only tidying: a repository created again under this name has another uid, so
        // nothing would read these (its renderings are stored under the uid too, and go
        // with the next collection).
        delete_all(&*self.table, Query::partition(pages_partition(project, name))).await?;
        delete_all(&*self.table, Query::partition(changes_partition(project, name))).await
    }

    /// Deletes every package summary and version item of a repository, page by page,
    /// and the listings its released versions were in (`registry::listings`; nothing
    /// would read them, under the gone repository's uid, but they would stay).
    async fn delete_packages_of(&self, project: &str, repo: &str, uid: &str) -> Result<()> {
        use crate::store::schema::{listed_partition, listing_count_key, members_partition, VER_SK_PREFIX};
        let packages = query_all(&*self.table, Query::prefix(repo_partition(project, repo), PKG_SK_PREFIX)).await?;
        let mut listings = std::collections::BTreeSet::new();
        let mut names = std::collections::BTreeSet::new();
        for pkg in packages {
            let key = Key::of(&pkg)?;
            let package_key = key.sk.trim_start_matches(PKG_SK_PREFIX);
            let partition = package_partition(project, repo, package_key);
            for item in query_all(&*self.table, Query::prefix(partition.clone(), VER_SK_PREFIX)).await? {
                let listing = item.get("listing").cloned().and_then(|l| serde_json::from_value::<crate::model::Listing>(l).ok());
                if let Some(l) = listing {
                    listings.extend(l.by_upload.into_iter().chain(l.by_release));
                    names.extend(l.members.into_iter().map(|(n, _)| n));
                }
            }
            delete_all(&*self.table, Query::partition(partition)).await?;
            self.table.delete(&key, Cond::None).await?;
        }
        for l in &listings {
            delete_all(&*self.table, Query::partition(listed_partition(uid, l))).await?;
            self.table.delete(&listing_count_key(uid, l), Cond::None).await?;
        }
        for n in &names {
            delete_all(&*self.table, Query::partition(members_partition(uid, n))).await?;
        }
        Ok(())
    }
}
