//! Opens each adapter for the suites. The AWS adapters need `AWS_ENDPOINT_URL` (moto, which
//! `infra/test.sh` starts); without it these tests fail, they never skip.
use std::sync::Arc;

use depot_core::store::dynamo::DynamoTable;
use depot_core::store::embedded::EmbeddedTable;
use depot_core::store::fs::FsBlobStore;
use depot_core::store::s3::S3BlobStore;
use depot_core::store::{BlobStore, Table};

/// Keeps a temporary directory alive for as long as the adapter is used.
pub struct Guard(#[allow(dead_code)] Option<tempfile::TempDir>);

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

pub async fn sdk_config() -> aws_config::SdkConfig {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.is_empty()),
        "AWS_ENDPOINT_URL is not set: the AWS adapter tests need moto; run them with infra/test.sh"
    );
    depot_core::http::sdk_config().await
}

pub async fn embedded_table() -> (Arc<dyn Table>, Guard) {
    let dir = tempfile::tempdir().unwrap();
    let t = EmbeddedTable::open(&dir.path().join("t.redb")).unwrap();
    (Arc::new(t), Guard(Some(dir)))
}

pub async fn dynamo_table() -> (Arc<dyn Table>, Guard) {
    let t = DynamoTable::new(&sdk_config().await, unique("conformance"));
    t.ensure_table().await.unwrap();
    (Arc::new(t), Guard(None))
}

pub async fn fs_blobs() -> (Arc<dyn BlobStore>, Guard) {
    let dir = tempfile::tempdir().unwrap();
    let b = FsBlobStore::open(dir.path()).unwrap();
    (Arc::new(b), Guard(Some(dir)))
}

/// The embedded table and a blob store whose rows are in its file, as `depot serve`
/// opens them.
pub async fn embedded_pair() -> (Arc<dyn Table>, Arc<dyn BlobStore>, Guard) {
    let dir = tempfile::tempdir().unwrap();
    let t = EmbeddedTable::open(&dir.path().join("t.redb")).unwrap();
    let b = FsBlobStore::open_beside(&dir.path().join("blobs"), depot_core::store::fs::INLINE_BYTES, &t).unwrap();
    (Arc::new(t), Arc::new(b), Guard(Some(dir)))
}

pub async fn aws_pair() -> (Arc<dyn Table>, Arc<dyn BlobStore>, Guard) {
    let (t, _) = dynamo_table().await;
    let (b, _) = s3_blobs().await;
    (t, b, Guard(None))
}

pub async fn s3_blobs() -> (Arc<dyn BlobStore>, Guard) {
    let b = S3BlobStore::new(&sdk_config().await, unique("conformance"));
    b.ensure_bucket().await.unwrap();
    (Arc::new(b), Guard(None))
}
