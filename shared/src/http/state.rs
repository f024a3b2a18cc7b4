//! The application state, and the one place where the configured backend's adapters are
//! chosen and opened.
use std::sync::Arc;

use crate::auth::{Accounts, Authenticator, Authorizer};
use crate::config::{Backend, Config};
use crate::registry::Registry;
use crate::store::{dynamo::DynamoTable, s3::S3BlobStore, BlobStore, Table, UrlSigner};
#[cfg(not(feature = "embedded"))]
use crate::Error;
use crate::Result;

/// Everything a handler needs. Built once per process and cloned into every request.
#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
    pub authenticator: Arc<Authenticator>,
    pub authorizer: Arc<Authorizer>,
    pub accounts: Arc<Accounts>,
    pub config: Arc<Config>,
    /// Signs and checks the local blob URLs of the embedded backend; `None` on AWS.
    pub signer: Option<Arc<UrlSigner>>,
}

/// The opened ports, and the signer of local blob URLs when the backend has one.
pub struct Stores {
    pub table: Arc<dyn Table>,
    pub blobs: Arc<dyn BlobStore>,
    pub signer: Option<Arc<UrlSigner>>,
}

/// Loads the AWS SDK configuration (region, credentials, `AWS_ENDPOINT_URL`) with one
/// HTTPS client, rustls on ring, shared by every SDK client of the process.
pub async fn sdk_config() -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    let http = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http).load().await
}

/// Opens the two ports on the configured backend. With `create_resources`, creates the
/// DynamoDB table and the S3 bucket when missing (for LocalStack and moto).
pub async fn open_stores(config: &Config, create_resources: bool) -> Result<Stores> {
    match config.backend {
        #[cfg(not(feature = "embedded"))]
        Backend::Embedded => Err(Error::Invalid(
            "this binary was built without the embedded backend (a Lambda function); set DEPOT_BACKEND=aws".into(),
        )),
        #[cfg(feature = "embedded")]
        Backend::Embedded => {
            let table = crate::store::embedded::EmbeddedTable::open(&config.data_dir.join("depot.redb"))?;
            let blobs = crate::store::fs::FsBlobStore::open(&config.data_dir.join("blobs"))?;
            Ok(Stores { table: Arc::new(table), signer: Some(blobs.signer()), blobs: Arc::new(blobs) })
        }
        Backend::Aws => {
            let sdk = sdk_config().await;
            let table = DynamoTable::new(&sdk, &config.table);
            let blobs = S3BlobStore::new(&sdk, &config.bucket);
            if create_resources {
                table.ensure_table().await?;
                blobs.ensure_bucket().await?;
            }
            Ok(Stores { table: Arc::new(table), blobs: Arc::new(blobs), signer: None })
        }
    }
}

impl AppState {
    /// Opens the configured backend. No network I/O happens here beyond what the AWS SDK
    /// needs to load its configuration, unless `create_resources` is set.
    pub async fn open(config: Config, create_resources: bool) -> Result<Self> {
        let stores = open_stores(&config, create_resources).await?;
        Ok(Self::from_stores(config, stores))
    }

    /// The state over ports opened elsewhere (tests wrap a port to count its calls).
    pub fn from_stores(config: Config, stores: Stores) -> Self {
        let authenticator = Arc::new(Authenticator::new(stores.table.clone(), config.admin_password.clone()));
        let authorizer = Arc::new(Authorizer::new(stores.table.clone()));
        let accounts = Arc::new(Accounts::new(stores.table.clone(), authenticator.clone(), authorizer.clone()));
        AppState {
            registry: Registry::new(stores.table, stores.blobs).with_download_mode(config.download_mode),
            authenticator,
            authorizer,
            accounts,
            config: Arc::new(config),
            signer: stores.signer,
        }
    }
}
