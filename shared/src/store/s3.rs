//! `BlobStore` on S3. Puts stream through S3 multipart upload in 8 MiB parts (a single
//! `PutObject` when the body is smaller), hashing as the parts go by, so at most one part
//! is held in memory. Works against AWS, LocalStack and moto: only the endpoint changes.
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::BytesMut;
use futures::StreamExt;

use super::blob::{resolve_range, validate_blob_key};
use super::{pct_encode, BlobInfo, BlobObject, BlobStore, ByteRange, ByteStream, Digests, MultiHasher};
use crate::{Error, Result};

/// The size of each multipart part (S3's minimum is 5 MiB for all but the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

#[derive(Clone)]
pub struct S3BlobStore {
    client: Client,
    bucket: String,
}

fn s3_err<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(what: &str, e: SdkError<E, R>) -> Error {
    let code = e.code().unwrap_or("unknown").to_string();
    let msg = e.message().map(str::to_string).unwrap_or_else(|| format!("{e:?}"));
    Error::Internal(format!("s3 {what}: {code}: {msg}"))
}

/// Percent-encodes a key for `x-amz-copy-source`, keeping `/`.
fn encode_copy_source(bucket: &str, key: &str) -> String {
    format!("{bucket}/{}", pct_encode(key, true))
}

fn presigning(expires_in: Duration) -> Result<PresigningConfig> {
    PresigningConfig::expires_in(expires_in).map_err(|e| Error::Internal(format!("presigning: {e}")))
}

impl S3BlobStore {
    /// Builds the store from a loaded SDK configuration. Uses path-style addressing when
    /// an endpoint URL is configured (LocalStack, moto), virtual-hosted style on AWS.
    pub fn new(config: &aws_config::SdkConfig, bucket: impl Into<String>) -> Self {
        let conf = aws_sdk_s3::config::Builder::from(config).force_path_style(config.endpoint_url().is_some()).build();
        S3BlobStore { client: Client::from_conf(conf), bucket: bucket.into() }
    }

    /// Creates the bucket when it is missing (for LocalStack and moto).
    pub async fn ensure_bucket(&self) -> Result<()> {
        if self.client.head_bucket().bucket(&self.bucket).send().await.is_ok() {
            return Ok(());
        }
        let mut req = self.client.create_bucket().bucket(&self.bucket);
        let region = self.client.config().region().map(|r| r.to_string());
        if let Some(r) = region.filter(|r| r != "us-east-1") {
            use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(r.as_str()))
                    .build(),
            );
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.code(), Some("BucketAlreadyOwnedByYou")) => Ok(()),
            Err(e) => Err(s3_err("create bucket", e)),
        }
    }

    /// The parts S3 has received for an upload, with their ETags.
    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<CompletedPart>> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = match self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await
            {
                Ok(o) => o,
                Err(e) if matches!(e.code(), Some("NoSuchUpload")) => {
                    return Err(Error::not_found_as(
                        crate::error::Kind::Upload,
                        upload_id,
                        format!("multipart upload {upload_id} not found"),
                    ))
                }
                Err(e) => return Err(s3_err("list parts", e)),
            };
            for p in out.parts() {
                parts.push(
                    CompletedPart::builder()
                        .set_part_number(p.part_number())
                        .set_e_tag(p.e_tag().map(str::to_string))
                        .build(),
                );
            }
            match (out.is_truncated(), out.next_part_number_marker()) {
                (Some(true), Some(m)) => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(parts)
    }

    async fn multipart(
        &self,
        key: &str,
        first: BytesMut,
        rest: &mut ByteStream,
        hasher: &mut MultiHasher,
    ) -> Result<()> {
        let upload_id = self.start_multipart(key).await?;
        let result: Result<()> = async {
            let mut parts = Vec::new();
            let mut buf = first;
            let mut ended = false;
            loop {
                while !ended && buf.len() < PART_SIZE {
                    match rest.next().await {
                        Some(c) => {
                            let c = c.map_err(|e| Error::Invalid(format!("upload interrupted: {e}")))?;
                            hasher.update(&c);
                            buf.extend_from_slice(&c);
                        }
                        None => ended = true,
                    }
                }
                if buf.is_empty() {
                    break;
                }
                let part = buf.split_to(buf.len().min(PART_SIZE)).freeze();
                let n = parts.len() as i32 + 1;
                let out = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(n)
                    .body(S3Body::from(part))
                    .send()
                    .await
                    .map_err(|e| s3_err("upload part", e))?;
                parts.push(CompletedPart::builder().part_number(n).set_e_tag(out.e_tag().map(str::to_string)).build());
            }
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(|e| s3_err("complete multipart upload", e))?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = self.abort_multipart(key, &upload_id).await;
        }
        result
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &str, mut body: ByteStream) -> Result<Digests> {
        validate_blob_key(key)?;
        let mut hasher = MultiHasher::new();
        let mut buf = BytesMut::new();
        // Read up to one part: a smaller body goes up in a single PutObject.
        while buf.len() < PART_SIZE {
            match body.next().await {
                Some(c) => {
                    let c = c.map_err(|e| Error::Invalid(format!("upload interrupted: {e}")))?;
                    hasher.update(&c);
                    buf.extend_from_slice(&c);
                }
                None => {
                    self.client
                        .put_object()
                        .bucket(&self.bucket)
                        .key(key)
                        .content_type("application/octet-stream")
                        .body(S3Body::from(buf.freeze()))
                        .send()
                        .await
                        .map_err(|e| s3_err("put object", e))?;
                    return Ok(hasher.finish());
                }
            }
        }
        self.multipart(key, buf, &mut body, &mut hasher).await?;
        Ok(hasher.finish())
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<BlobObject> {
        validate_blob_key(key)?;
        let mut req = self.client.get_object().bucket(&self.bucket).key(key);
        let mut known_size = None;
        if range.is_some() {
            let size = self
                .head(key)
                .await?
                .ok_or_else(|| Error::not_found_as(crate::error::Kind::Blob, key, format!("blob {key} not found")))?;
            if let Some((start, end)) = resolve_range(range, size)? {
                req = req.range(format!("bytes={start}-{end}"));
            }
            known_size = Some(size);
        }
        let out = match req.send().await {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Err(Error::not_found_as(crate::error::Kind::Blob, key, format!("blob {key} not found")))
            }
            Err(e) => return Err(s3_err("get object", e)),
        };
        let size = known_size.unwrap_or(out.content_length().unwrap_or(0).max(0) as u64);
        let stream = futures::stream::unfold(Some(out.body), |body| async move {
            let mut body = body?;
            match body.try_next().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(body))),
                Ok(None) => None,
                Err(e) => Some((Err(std::io::Error::other(e)), None)),
            }
        });
        Ok(BlobObject { size, body: stream.boxed() })
    }

    async fn head(&self, key: &str) -> Result<Option<u64>> {
        validate_blob_key(key)?;
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(o) => Ok(Some(o.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(s3_err("head object", e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_blob_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_err("delete object", e))?;
        Ok(())
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.copy(from, to).await?;
        if from == to {
            return Ok(());
        }
        self.delete(from).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        validate_blob_key(from)?;
        validate_blob_key(to)?;
        // S3 refuses a copy onto itself; it changes nothing, once the blob exists.
        if from == to {
            return match self.head(from).await? {
                Some(_) => Ok(()),
                None => Err(Error::not_found_as(crate::error::Kind::Blob, from, format!("blob {from} not found"))),
            };
        }
        match self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(to)
            .copy_source(encode_copy_source(&self.bucket, from))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.code(), Some("NoSuchKey")) => {
                Err(Error::not_found_as(crate::error::Kind::Blob, from, format!("blob {from} not found")))
            }
            Err(e) => Err(s3_err("copy object", e)),
        }
    }

    async fn presign_get(&self, key: &str, expires_in: Duration, filename: Option<&str>) -> Result<String> {
        validate_blob_key(key)?;
        let mut req = self.client.get_object().bucket(&self.bucket).key(key);
        if let Some(f) = filename {
            req = req.response_content_disposition(super::attachment(f));
        }
        let signed = req.presigned(presigning(expires_in)?).await.map_err(|e| s3_err("presign get", e))?;
        Ok(signed.uri().to_string())
    }

    async fn presign_put(&self, key: &str, size: u64, expires_in: Duration) -> Result<String> {
        validate_blob_key(key)?;
        // The length is a signed header: S3 refuses a body of any other length.
        let req = self.client.put_object().bucket(&self.bucket).key(key).content_length(size as i64);
        let signed = req.presigned(presigning(expires_in)?).await.map_err(|e| s3_err("presign put", e))?;
        Ok(signed.uri().to_string())
    }

    async fn start_multipart(&self, key: &str) -> Result<String> {
        validate_blob_key(key)?;
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/octet-stream")
            .send()
            .await
            .map_err(|e| s3_err("create multipart upload", e))?;
        out.upload_id().map(str::to_string).ok_or_else(|| Error::Internal("s3 gave no upload id".into()))
    }

    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part: u32,
        size: u64,
        expires_in: Duration,
    ) -> Result<String> {
        validate_blob_key(key)?;
        let req = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part as i32)
            .content_length(size as i64);
        let signed = req.presigned(presigning(expires_in)?).await.map_err(|e| s3_err("presign upload part", e))?;
        Ok(signed.uri().to_string())
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        listed: Option<&[(u32, String)]>,
    ) -> Result<Option<Digests>> {
        validate_blob_key(key)?;
        let parts = match listed {
            Some(l) => {
                let mut l = l.to_vec();
                l.sort();
                l.into_iter()
                    .map(|(n, etag)| CompletedPart::builder().part_number(n as i32).e_tag(etag).build())
                    .collect()
            }
            None => self.list_parts(key, upload_id).await?,
        };
        if parts.is_empty() {
            return Err(Error::Invalid("no part of this upload has been sent".into()));
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| match e.code() {
                // A part below the 5 MiB minimum (other than the last) is the client's doing.
                Some("EntityTooSmall") | Some("InvalidPart") | Some("InvalidPartOrder") | Some("NoSuchUpload") => {
                    Error::Invalid(format!("s3 refused the parts: {}", e.message().unwrap_or("invalid parts")))
                }
                _ => s3_err("complete multipart upload", e),
            })?;
        Ok(None)
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        validate_blob_key(key)?;
        match self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(upload_id).send().await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.code(), Some("NoSuchUpload")) => Ok(()),
            Err(e) => Err(s3_err("abort multipart upload", e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>> {
        validate_blob_key(prefix.trim_end_matches('/'))?;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(format!("{}/", prefix.trim_end_matches('/')))
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| s3_err("list objects", e))?;
            for o in page.contents() {
                if let Some(key) = o.key() {
                    let modified = o.last_modified().map_or(0, |t| t.secs());
                    out.push(BlobInfo { key: key.to_string(), size: o.size().unwrap_or(0).max(0) as u64, modified });
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }
}
