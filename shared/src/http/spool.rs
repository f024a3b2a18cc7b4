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

/// Opens a [`gated_body`]: from then on its bytes flow without a cap (the kit's body
/// limit still holds).
#[derive(Clone, Default)]
pub struct Gate(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Gate {
    pub fn open(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A request body of which at most `limit` bytes are read until its [`Gate`] opens: for
/// forms that carry their own credentials (the APS packager's), so that a caller depot
/// does not know yet cannot make it buffer a whole body (a multipart reader holds what
/// comes before a boundary).
pub fn gated_body(body: axum::body::Body, limit: usize) -> (axum::body::Body, Gate) {
    let gate = Gate::default();
    let open = gate.clone();
    let mut read = 0usize;
    let stream = body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        if !open.0.load(std::sync::atomic::Ordering::SeqCst) {
            read += chunk.len();
            if read > limit {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("the form holds over {limit} bytes before its credentials"),
                ));
            }
        }
        Ok::<_, std::io::Error>(chunk)
    });
    (axum::body::Body::from_stream(stream), gate)
}

/// What a form that carries its own credentials may hold before they are checked: its
/// text fields (64 KiB) and their part headers.
pub const PRE_AUTH_BYTES: usize = 128 * 1024;

/// A multipart form whose body is gated at [`PRE_AUTH_BYTES`] until the handler opens
/// `gate` (once the form's credentials are checked): the extractor for routes that
/// authenticate the form itself (strux's, the APS packager's).
pub struct GatedForm {
    pub multipart: std::result::Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
    pub gate: Gate,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for GatedForm {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: axum::extract::Request, _: &S) -> std::result::Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let (body, gate) = gated_body(body, PRE_AUTH_BYTES);
        let req = axum::extract::Request::from_parts(parts, body);
        let multipart = <axum::extract::Multipart as axum::extract::FromRequest<()>>::from_request(req, &()).await;
        Ok(GatedForm { multipart, gate })
    }
}
