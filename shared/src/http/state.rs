//! The application state, and the one place where the configured backend's adapters are
//! chosen and opened.
use std::sync::Arc;

use crate::auth::{Accounts, AdminSecret, Authenticator, Authorizer};
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
    /// The secret holding the bootstrap password (`DEPOT_ADMIN_SECRET`), on AWS.
    pub admin_secret: Option<Arc<dyn AdminSecret>>,
}

/// One HTTPS client, rustls on ring, shared by every SDK client of the process.
fn https_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// Loads the AWS SDK configuration with the SDK's default chains (region, credentials
/// from the environment, profiles, SSO, web identity, ECS or IMDS; `AWS_ENDPOINT_URL`):
/// for `depot`, which runs wherever an operator does.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https_client()).load().await
}

/// The AWS SDK configuration of a Lambda function, from its environment only: the
/// runtime sets the region and the role's credentials (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`); `AWS_ENDPOINT_URL` points at LocalStack
/// or moto. Leaving out the default chains (profiles, SSO, STS, IMDS) keeps them out of
/// the binary and off the cold start.
pub fn lambda_sdk_config() -> aws_config::SdkConfig {
    use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
    use aws_sdk_dynamodb::config::SharedCredentialsProvider;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let region = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")).map(aws_config::Region::new);
    let mut builder = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(region)
        .credentials_provider(SharedCredentialsProvider::new(EnvironmentVariableCredentialsProvider::new()))
        .retry_config(aws_config::retry::RetryConfig::standard())
        .http_client(https_client());
    if let Some(url) = env("AWS_ENDPOINT_URL") {
        builder = builder.endpoint_url(url);
    }
    builder.build()
}

/// The AWS backend's ports over an SDK configuration.
pub fn aws_stores(config: &Config, sdk: &aws_config::SdkConfig) -> Stores {
    Stores {
        table: Arc::new(DynamoTable::new(sdk, &config.table)),
        blobs: Arc::new(S3BlobStore::new(sdk, &config.bucket)),
        signer: None,
        admin_secret: admin_secret(config, sdk),
    }
}

/// The bootstrap password's secret, for the binaries that bootstrap (feature
/// `admin-secret`); the others leave the administrator to them.
fn admin_secret(config: &Config, sdk: &aws_config::SdkConfig) -> Option<Arc<dyn AdminSecret>> {
    #[cfg(feature = "admin-secret")]
    return config.admin_secret.as_deref().map(|id| {
        Arc::new(crate::store::secret::SecretsManagerSecret::new(sdk, id)) as Arc<dyn AdminSecret>
    });
    #[cfg(not(feature = "admin-secret"))]
    {
        let _ = (config, sdk);
        None
    }
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
            let blobs =
                crate::store::fs::FsBlobStore::open_beside(&config.data_dir.join("blobs"), config.inline_blob_bytes, &table)?;
            Ok(Stores { table: Arc::new(table), signer: Some(blobs.signer()), blobs: Arc::new(blobs), admin_secret: None })
        }
        Backend::Aws => {
            let sdk = sdk_config().await;
            if create_resources {
                DynamoTable::new(&sdk, &config.table).ensure_table().await?;
                S3BlobStore::new(&sdk, &config.bucket).ensure_bucket().await?;
            }
            Ok(aws_stores(config, &sdk))
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
        let authenticator = Arc::new(
            Authenticator::new(stores.table.clone(), config.admin_password.clone())
                .with_admin_secret(stores.admin_secret)
                .with_login_limits(config.login),
        );
        let authorizer = Arc::new(Authorizer::new(stores.table.clone()));
        let accounts = Arc::new(Accounts::new(stores.table.clone(), authenticator.clone(), authorizer.clone()));
        AppState {
            registry: Registry::new(stores.table, stores.blobs)
                .with_download_mode(config.download_mode)
                .with_max_proxy_bytes(config.max_response_bytes),
            authenticator,
            authorizer,
            accounts,
            config: Arc::new(config),
            signer: stores.signer,
        }
    }
}
