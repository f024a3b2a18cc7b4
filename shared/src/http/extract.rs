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
            Err(r) => Err(Error::Invalid(format!("invalid JSON body: {}", r.body_text()))),
        }
    }
}

/// The query string.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|r| Error::Invalid(format!("invalid query string: {}", r.body_text())))
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
            .map_err(|r| Error::Invalid(format!("invalid path: {}", r.body_text())))
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
