//! Extractors whose rejections use the bkrepo envelope. Handlers take them as
//! `Result<_, ApiError>` and check the caller first, so a bad request from an
//! unauthenticated caller still answers 401.
use axum::extract::FromRequest;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use depot_core::auth::Identity;
use depot_core::http::{AppState, Caller};

use crate::envelope::ApiError;

/// The caller of a route closed to anonymous callers. Taken before the path, query and
/// body, so an anonymous request answers 401 whatever else is wrong with it.
pub struct User(pub Identity);

/// The caller of a route only a system administrator may use: 401, then 403, otherwise.
pub struct Admin(pub Identity);

async fn caller(parts: &mut Parts, state: &AppState) -> Result<Identity, ApiError> {
    let Ok(Caller(who)) = Caller::from_request_parts(parts, state).await;
    Ok(who?)
}

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let who = caller(parts, state).await?;
        who.require_user()?;
        Ok(User(who))
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let who = caller(parts, state).await?;
        who.require_admin()?;
        Ok(Admin(who))
    }
}

#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct BkJson<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct BkQuery<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct BkPath<T>(pub T);
