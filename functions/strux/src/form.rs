//! A strux request's form, read whole: its text fields and its file parts. The kit's
//! body limit (`DEPOT_MAX_BODY_BYTES`) bounds it, so the handler can authenticate and
//! check the whole tree before it stores a byte.
use std::collections::HashMap;

use axum::extract::multipart::{Multipart, MultipartRejection};
use bytes::Bytes;
use depot_core::model::printable;
use depot_core::{Error, Result};

/// The longest text field (`files_info` included).
const MAX_TEXT_BYTES: usize = 1024 * 1024;

/// One file part: `DIR$<dir>` with a bare file name, and its bytes or, with an
/// `X-Depot-Blob: sha256:<hex>` part header and no bytes, a staged blob's reference.
pub struct FilePart {
    pub field: String,
    pub filename: String,
    pub content: Content,
}

pub enum Content {
    Bytes(Bytes),
    Staged(String),
}

#[derive(Default)]
pub struct Form {
    texts: HashMap<String, String>,
    pub files: Vec<FilePart>,
    /// The bytes it holds.
    held: usize,
}

/// strux's answer to a missing field.
pub fn missing(key: &str) -> Error {
    Error::Missing { param: key.into(), message: format!("Form key '{key}' not exist") }
}

/// The most a form without files may hold: the routes that take no files read no more
/// before they answer.
pub const MAX_TEXT_FORM: usize = 64 * 1024;

fn unreadable(e: axum::extract::multipart::MultipartError) -> Error {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        Error::TooLarge(format!(
            "the form is over the request body limit; send large files through /blobs/uploads ({})",
            e.body_text()
        ))
    } else {
        Error::Invalid(format!("unreadable multipart form: {}", e.body_text()))
    }
}

impl Form {
    /// Reads a whole form of text fields, at most [`MAX_TEXT_FORM`] bytes. A body that is
    /// not a multipart form is an empty one, so that its answer names the first field it
    /// lacks, as strux's does.
    pub async fn read(multipart: std::result::Result<Multipart, MultipartRejection>) -> Result<Form> {
        let mut form = Form::default();
        let Ok(mut multipart) = multipart else { return Ok(form) };
        while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
            if field.file_name().is_some() {
                return Err(Error::Invalid("this route takes no files".into()));
            }
            form.add(field, MAX_TEXT_FORM).await?;
        }
        Ok(form)
    }

    /// Whether the form has a text field `key`.
    pub fn has(&self, key: &str) -> bool {
        self.texts.contains_key(key)
    }

    /// Reads one field into the form, chunk by chunk, refusing it as soon as it is over
    /// its cap: a text field (at most [`MAX_TEXT_BYTES`], and sent once), or a file part.
    /// `budget` bounds what the form holds in all.
    pub async fn add(&mut self, mut field: axum::extract::multipart::Field<'_>, budget: usize) -> Result<()> {
        let name = field.name().unwrap_or_default().to_string();
        let filename = field.file_name().map(str::to_string);
        let staged = match (&filename, depot_core::http::blobs::blob_reference(field.headers())) {
            (Some(_), Some(reference)) => Some(reference?),
            (None, Some(_)) => return Err(Error::Invalid("only a file part may name a staged blob".into())),
            _ => None,
        };
        if filename.is_none() && self.texts.contains_key(&name) {
            return Err(Error::Invalid(format!("form field '{}' is sent twice", printable(&name))));
        }
        let mut buf = bytes::BytesMut::new();
        while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
            self.held += chunk.len();
            if self.held > budget {
                return Err(Error::TooLarge(format!("the form is over {budget} bytes")));
            }
            if filename.is_none() && buf.len() + chunk.len() > MAX_TEXT_BYTES {
                return Err(Error::TooLarge(format!("form field '{}' is over {MAX_TEXT_BYTES} bytes", printable(&name))));
            }
            buf.extend_from_slice(&chunk);
        }
        let bytes = buf.freeze();
        match filename {
            Some(filename) => {
                let content = match staged {
                    Some(_) if !bytes.is_empty() => {
                        return Err(Error::Invalid(format!(
                            "file part '{}' names a staged blob (X-Depot-Blob) and carries bytes too: send one or the other",
                            printable(&filename)
                        )))
                    }
                    Some(reference) => Content::Staged(reference),
                    None => Content::Bytes(bytes),
                };
                self.files.push(FilePart { field: name, filename, content })
            }
            None => {
                let text = String::from_utf8(bytes.to_vec())
                    .map_err(|_| Error::Invalid(format!("form field '{}' is not UTF-8", printable(&name))))?;
                self.texts.insert(name, text);
            }
        }
        Ok(())
    }

    /// A text field, or strux's "Form key '...' not exist".
    pub fn text(&self, key: &str) -> Result<&str> {
        self.texts.get(key).map(String::as_str).ok_or_else(|| missing(key))
    }

    /// Several text fields, checked in order.
    pub fn texts<const N: usize>(&self, keys: [&str; N]) -> Result<[&str; N]> {
        let mut out = [""; N];
        for (i, k) in keys.iter().enumerate() {
            out[i] = self.text(k)?;
        }
        Ok(out)
    }
}
