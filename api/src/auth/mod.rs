//! Authentication: password hashing, access tokens, and the extractors that state each
//! handler's role requirement in its signature.

pub mod feed;
pub mod password;
pub mod sessions;
pub mod tokens;

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::state::AppState;

pub use password::PasswordHasher;
pub use sessions::Revocations;
pub use tokens::{Claims, TokenKeys};

/// A caller with a valid, unrevoked access token.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: i64,
    pub roles: Vec<String>,
    /// The token's id and expiry (unix seconds), for logout.
    pub jti: String,
    pub exp: i64,
    /// The token's session (refresh family).
    pub family: Option<String>,
}

impl AuthUser {
    /// Whether the caller has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|held| held == role)
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(&parts.headers, &state.tokens, &state.revocations)
    }
}

/// The caller of a request with `headers`: a valid, unrevoked bearer token, or 401.
pub fn authenticate(
    headers: &axum::http::HeaderMap,
    tokens: &TokenKeys,
    revocations: &Revocations,
) -> Result<AuthUser, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("malformed authorization header"))?;
    let claims = tokens
        .verify(token)
        .map_err(|_| ApiError::unauthorized("invalid or expired token"))?;
    let id = claims
        .sub
        .parse()
        .map_err(|_| ApiError::unauthorized("invalid token subject"))?;
    if revocations.refuses(id, &claims) {
        return Err(ApiError::unauthorized("token was revoked"));
    }
    Ok(AuthUser {
        id,
        roles: claims.roles.clone(),
        jti: claims.jti.clone(),
        exp: claims.exp,
        family: claims.fam.clone(),
    })
}

/// The server's admins, for the mounted sandbox gateway's admin calls.
pub struct TokenAdmins {
    pub tokens: std::sync::Arc<TokenKeys>,
    pub revocations: std::sync::Arc<Revocations>,
}

#[async_trait::async_trait]
impl crate::pg_sandbox::AdminCheck for TokenAdmins {
    async fn is_admin(&self, headers: &axum::http::HeaderMap) -> bool {
        authenticate(headers, &self.tokens, &self.revocations)
            .is_ok_and(|user| user.has_role("admin"))
    }
}

/// A role a handler can require.
pub trait RoleName {
    const NAME: &'static str;
}

/// The `seller` role.
#[derive(Debug)]
pub struct SellerRole;
impl RoleName for SellerRole {
    const NAME: &'static str = "seller";
}

/// The `admin` role.
#[derive(Debug)]
pub struct AdminRole;
impl RoleName for AdminRole {
    const NAME: &'static str = "admin";
}

/// A caller holding role `R`: 401 without a valid token, 403 without the role.
#[derive(Debug)]
pub struct Require<R: RoleName> {
    pub user: AuthUser,
    role: PhantomData<R>,
}

/// A caller with the `seller` role.
pub type Seller = Require<SellerRole>;
/// A caller with the `admin` role.
pub type Admin = Require<AdminRole>;

impl<R: RoleName> FromRequestParts<AppState> for Require<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        if !user.has_role(R::NAME) {
            return Err(ApiError::forbidden(format!(
                "requires the {} role",
                R::NAME
            )));
        }
        Ok(Require {
            user,
            role: PhantomData,
        })
    }
}
