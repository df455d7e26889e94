//! Who is calling: API tokens (`Circle-Token` header, `circle-token` query,
//! HTTP Basic with the token as user name, or a Bearer token), and what their
//! role allows. Runner tokens authenticate runners separately.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use orrery_store::{Role, User};

use crate::AppState;
use crate::error::ApiError;
use crate::secrets::hash_token;

/// A signed-in user.
#[derive(Clone, Debug)]
pub struct Auth(pub User);

impl Auth {
    /// Refuses viewers: changes need the member or admin role.
    pub fn require_write(&self) -> Result<(), ApiError> {
        if self.0.role.can_write() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "Your role (viewer) can only read; ask an admin for the member role.".into(),
            ))
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.0.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden("Only an admin can do this.".into()))
        }
    }
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    orrery_core::protocol::b64::decode(text)
}

/// The token a request carries, wherever it is.
pub fn token_of(parts: &Parts) -> Option<String> {
    if let Some(t) = parts
        .headers
        .get("circle-token")
        .and_then(|v| v.to_str().ok())
    {
        return Some(t.trim().to_string());
    }
    if let Some(auth) = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    {
        if let Some(basic) = auth.strip_prefix("Basic ") {
            let decoded = decode_base64(basic.trim())?;
            let text = String::from_utf8(decoded).ok()?;
            let user = text.split(':').next().unwrap_or_default();
            return (!user.is_empty()).then(|| user.to_string());
        }
        if let Some(bearer) = auth.strip_prefix("Bearer ") {
            return Some(bearer.trim().to_string());
        }
    }
    let query = parts.uri.query()?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "circle-token").then(|| query_value(v))
    })
}

/// A query string value as a client encodes it: `%XX` escapes, `+` for a
/// space. Bytes that do not decode are kept as they are.
fn query_value(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl FromRequestParts<Arc<AppState>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let token = token_of(parts).ok_or(ApiError::Unauthorized)?;
        let user = state
            .store
            .user_by_token_hash(&hash_token(&token))
            .await?
            .ok_or(ApiError::Unauthorized)?;
        Ok(Auth(user))
    }
}

/// A runner, authenticated by a resource class token.
#[derive(Clone, Debug)]
pub struct RunnerAuth {
    pub resource_class: String,
}

impl FromRequestParts<Arc<AppState>> for RunnerAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        let class = state
            .store
            .runner_token_class(&hash_token(token.trim()))
            .await?
            .ok_or(ApiError::Unauthorized)?;
        Ok(RunnerAuth {
            resource_class: class,
        })
    }
}
