//! Uploads spooled to an anonymous temporary file, never held in memory: the surfaces
//! that read inside what they store (an RPM's header, an archive's files) read it there.
use std::io::Seek;

use axum::extract::multipart::Field;
use axum::http::StatusCode;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};

use crate::store::{ByteStream, Digests, MultiHasher};
use crate::{Error, Result};

/// Spooled bytes: the file (rewound), their digests, and their first [`HEAD`] bytes, to
/// tell a format by.
pub struct Spooled {
    pub file: std::fs::File,
    pub digests: Digests,
    pub head: Vec<u8>,
}

/// How many first bytes a spool keeps aside.
pub const HEAD: usize = 512;

/// Spools a stream. Its errors of kind `FileTooLarge` are a 413 and of kind
/// `InvalidData` a broken form (see [`field_stream`]); others are what `Error::from`
/// makes of them.
pub async fn spool(mut body: impl Stream<Item = std::io::Result<Bytes>> + Unpin) -> Result<Spooled> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::File::from_std(tempfile::tempfile().map_err(Error::from)?);
    let mut hasher = MultiHasher::new();
    let mut head = Vec::with_capacity(HEAD);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| match e.kind() {
            std::io::ErrorKind::FileTooLarge => super::too_large(None),
            std::io::ErrorKind::InvalidData => Error::Invalid(format!("unreadable multipart form: {e}")),
            _ => Error::from(e),
        })?;
        if head.len() < HEAD {
            head.extend_from_slice(&chunk[..chunk.len().min(HEAD - head.len())]);
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(Error::from)?;
    }
    file.flush().await.map_err(Error::from)?;
    let mut file = file.into_std().await;
    file.rewind().map_err(Error::from)?;
    Ok(Spooled { file, digests: hasher.finish(), head })
}

/// A multipart field as a stream for [`spool`]: a body over the limit is a 413, a broken
/// form a 400.
pub fn field_stream<'a>(field: Field<'a>) -> impl Stream<Item = std::io::Result<Bytes>> + Unpin + 'a {
    field.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => std::io::Error::new(std::io::ErrorKind::FileTooLarge, e.body_text()),
        _ => std::io::Error::new(std::io::ErrorKind::InvalidData, e.body_text()),
    })
}

/// The spooled bytes from their start, to store them (a read moved the shared offset).
pub fn file_stream(mut file: std::fs::File) -> Result<ByteStream> {
    file.rewind().map_err(Error::from)?;
    Ok(tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file)).boxed())
}
