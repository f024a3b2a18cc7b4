//! Extractors whose rejections are core errors, so that a malformed path, query or body
//! is answered in the surface's own shape like every other error.
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::too_large;
use crate::{Error, Result};

/// A JSON body.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large(None)),
            Err(r) => Err(Error::Invalid(format!("invalid JSON body: {}", user_terms(&r.body_text())))),
        }
    }
}

/// A decoding error (serde's, through axum) in the terms of the one who sent the input:
/// no Rust type names, no integer widths, no extractor prefixes.
pub fn user_terms(message: &str) -> String {
    let mut m = message.to_string();
    for prefix in [
        "Failed to deserialize the JSON body into the target type: ",
        "Failed to parse the request body as JSON: ",
        "Failed to deserialize query string: ",
        "Invalid URL: ",
    ] {
        if let Some(rest) = m.strip_prefix(prefix) {
            m = rest.to_string();
        }
    }
    // `expected struct GrantUser`, `expected enum Action`: the kinds, not the names.
    for (kind, plain) in
        [("struct ", "an object"), ("enum ", "one of the allowed values"), ("tuple struct ", "a value")]
    {
        let pattern = format!("expected {kind}");
        while let Some(at) = m.find(&pattern) {
            let start = at + pattern.len();
            let end = m[start..].find(|c: char| !(c.is_alphanumeric() || c == '_')).map_or(m.len(), |e| start + e);
            m.replace_range(at..end, &format!("expected {plain}"));
        }
    }
    // `data did not match any variant of untagged enum GrantUser`.
    let untagged = "data did not match any variant of untagged enum ";
    while let Some(at) = m.find(untagged) {
        let start = at + untagged.len();
        let end = m[start..].find(|c: char| !(c.is_alphanumeric() || c == '_')).map_or(m.len(), |e| start + e);
        m.replace_range(at..end, "is in none of the accepted forms");
    }
    // `invalid length 0, expected an object with 3 elements`: a list where an object goes.
    if let (Some(at), Some(end)) = (m.find("invalid length "), m.find(" elements")) {
        if at < end && m[at..end].contains("expected an object with ") {
            m.replace_range(at..end + " elements".len(), "expected a JSON object, not a list");
        }
    }
    // `duplicate field `pageNumber``.
    if let Some(at) = m.find("duplicate field `") {
        let start = at + "duplicate field `".len();
        if let Some(len) = m[start..].find('`') {
            let name = m[start..start + len].to_string();
            m.replace_range(at..start + len + 1, &format!("{name} is given more than once"));
        }
    }
    for (from, to) in [
        ("to a `i64`", "as a whole number"),
        ("to a `i32`", "as a whole number"),
        ("to a `u64`", "as a whole number of 0 or more"),
        ("to a `u32`", "as a whole number of 0 or more"),
        ("to a `u16`", "as a whole number of 0 or more"),
        ("to a `usize`", "as a whole number of 0 or more"),
        ("to a `bool`", "as true or false"),
        ("Cannot parse value at index", "cannot read the path's part"),
        ("expected u64", "expected a whole number from 0 to 18446744073709551615"),
        ("expected usize", "expected a whole number from 0 to 18446744073709551615"),
        ("expected u32", "expected a whole number from 0 to 4294967295"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected i64", "expected a whole number from -9223372036854775808 to 9223372036854775807"),
        ("expected i32", "expected a whole number from -2147483648 to 2147483647"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected an object"),
        ("number too large to fit in target type", "a number out of range"),
        ("number too small to fit in target type", "a number out of range"),
        ("invalid digit found in string", "not a whole number"),
        ("cannot parse integer from empty string", "empty, not a number"),
    ] {
        m = m.replace(from, to);
    }
    m
}

/// The query string.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|r| Error::Invalid(format!("invalid query string: {}", user_terms(&r.body_text()))))
    }
}

/// The path parameters.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|r| Error::Invalid(format!("invalid path: {}", user_terms(&r.body_text()))))
    }
}

/// The whole body, within the body limit.
pub struct Body(pub bytes::Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        match bytes::Bytes::from_request(req, state).await {
            Ok(b) => Ok(Body(b)),
            Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large(None)),
            Err(r) => Err(Error::Invalid(format!("unreadable body: {}", r.body_text()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::user_terms;

    #[test]
    fn messages_in_user_terms() {
        assert_eq!(
            user_terms("Failed to deserialize the JSON body into the target type: users[0]: invalid type: string \"x\", expected struct GrantUser at line 1 column 20"),
            "users[0]: invalid type: string \"x\", expected an object at line 1 column 20"
        );
        assert_eq!(
            user_terms("Failed to deserialize query string: pageSize: number too large to fit in target type"),
            "pageSize: a number out of range"
        );
        assert_eq!(
            user_terms("invalid type: string \"a\", expected u64"),
            "invalid type: string \"a\", expected a whole number from 0 to 18446744073709551615"
        );
        assert_eq!(
            user_terms("expected enum Action or expected struct A_b1"),
            "expected one of the allowed values or expected an object"
        );
        assert_eq!(user_terms("pageNumber: invalid digit found in string"), "pageNumber: not a whole number");
    }
}
