//! Extractors whose rejections use the bkrepo envelope. Handlers take them as
//! `Result<_, ApiError>` and check the caller first, so a bad request from an
//! unauthenticated caller still answers 401.
use axum::extract::FromRequest;
use axum::extract::FromRequestParts;

use crate::envelope::ApiError;

#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct BkJson<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct BkQuery<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct BkPath<T>(pub T);
