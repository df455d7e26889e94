//! Signing in and out, the session cookie, and the CSRF check every form
//! post goes through ([`WebForm`]).
//!
//! The cookie holds a random token; the store keeps its SHA-256 only. The
//! CSRF token is the SHA-256 of the session token with a fixed prefix: pages
//! put it in every form, and it cannot be read or made by another site (the
//! cookie is `HttpOnly`). Posts that come with an `Origin` of another host
//! are refused as well.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use orrery_store::{User, now_ms};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::{Html, WebError, page_response, redirect, view};
use crate::AppState;
use crate::error::ApiError;
use crate::secrets::{hash_token, new_token};

pub const COOKIE: &str = "orrery_session";
/// How long a session lasts.
const SESSION_DAYS: i64 = 14;
/// The largest form body.
const MAX_FORM: usize = 1024 * 1024;

/// Failed sign-ins allowed per login within [`FAILURE_WINDOW`]; then
/// sign-ins of that login are refused until the window has passed.
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Recent failed sign-ins: login → (failures, when the first of them was).
/// In memory: a restart forgets them, which costs an attacker a restart
/// they cannot cause.
#[derive(Default)]
pub struct Failures(std::sync::Mutex<std::collections::HashMap<String, (u32, std::time::Instant)>>);

impl Failures {
    /// How long `login` must wait before trying again, if it must.
    fn locked(&self, login: &str) -> Option<std::time::Duration> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        map.retain(|_, (_, first)| now.duration_since(*first) < FAILURE_WINDOW);
        map.get(login)
            .filter(|(n, _)| *n >= MAX_FAILURES)
            .map(|(_, first)| FAILURE_WINDOW.saturating_sub(now.duration_since(*first)))
    }

    fn failed(&self, login: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map
            .entry(login.to_string())
            .or_insert((0, std::time::Instant::now()));
        entry.0 += 1;
    }

    fn succeeded(&self, login: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(login);
    }
}

/// A signed-in user of the web app.
#[derive(Clone, Debug)]
pub struct WebUser {
    pub user: User,
    /// What forms carry in `_csrf`.
    pub csrf: String,
    token_hash: String,
}

impl WebUser {
    pub fn can_write(&self) -> bool {
        self.user.role.can_write()
    }

    pub fn is_admin(&self) -> bool {
        self.user.role == orrery_store::Role::Admin
    }

    pub fn require_write(&self) -> Result<(), WebError> {
        crate::auth::Auth(self.user.clone())
            .require_write()
            .map_err(WebError)
    }

    pub fn require_admin(&self) -> Result<(), WebError> {
        crate::auth::Auth(self.user.clone())
            .require_admin()
            .map_err(WebError)
    }
}

fn csrf_of(token: &str) -> String {
    hex::encode(Sha256::digest(format!("orrery-csrf:{token}").as_bytes()))
}

/// The session token in a request's cookies.
fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == COOKIE && !v.is_empty()).then(|| v.to_string())
        })
}

impl FromRequestParts<Arc<AppState>> for WebUser {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let token = session_token(&parts.headers).ok_or(WebError(ApiError::Unauthorized))?;
        let token_hash = hash_token(&token);
        let user = state
            .store
            .session_user(&token_hash, now_ms())
            .await?
            .ok_or(WebError(ApiError::Unauthorized))?;
        Ok(WebUser {
            user,
            csrf: csrf_of(&token),
            token_hash,
        })
    }
}

/// Refuses a post whose `Origin` names another host than the one it was
/// sent to.
fn check_origin(headers: &HeaderMap) -> Result<(), WebError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
    if origin == "null" || origin_host != host {
        return Err(WebError(ApiError::Forbidden(
            "This form was sent from another site; nothing was done.".into(),
        )));
    }
    Ok(())
}

/// A form post from a signed-in user whose CSRF token is right.
pub struct WebForm<T> {
    pub user: WebUser,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for WebForm<T> {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        check_origin(&parts.headers)?;
        let user = WebUser::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
            WebError(ApiError::TooLarge(format!(
                "The form is larger than {MAX_FORM} bytes."
            )))
        })?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        let csrf = pairs
            .into_iter()
            .find(|(k, _)| k == "_csrf")
            .map(|(_, v)| v);
        if csrf.as_deref() != Some(user.csrf.as_str()) {
            return Err(WebError(ApiError::Forbidden(
                "The form's security token is missing or stale: reload the page and try again."
                    .into(),
            )));
        }
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| WebError(ApiError::BadRequest(format!("The form is not valid: {e}"))))?;
        Ok(WebForm { user, form })
    }
}

/// A form with nothing but its CSRF token.
#[derive(Deserialize)]
pub struct Empty {}

/// Hashes a password for the store.
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::encode_b64(&crate::secrets::random_bytes(16))
        .map_err(|e| ApiError::Internal(format!("a password salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("hashing a password: {e}")))
}

fn password_matches(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

#[derive(Deserialize, Default)]
pub struct SigninQuery {
    next: Option<String>,
}

/// Only paths of this site are followed after signing in.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

fn signin_form(next: &str, login: &str, problem: Option<&str>) -> maud::Markup {
    view::bare_page(
        "Sign in",
        html! {
            main.signin {
                h1 { "Orrery" }
                form method="post" action="/signin" data-testid="signin-form" {
                    @if let Some(p) = problem {
                        p.form-error role="alert" data-testid="signin-error" { (p) }
                    }
                    input type="hidden" name="next" value=(next);
                    label { "Login" input name="login" autocomplete="username" required value=(login) autofocus; }
                    label { "Password or API token" input name="password" type="password" autocomplete="current-password" required; }
                    button.primary type="submit" { "Sign in" }
                }
            }
        },
    )
}

pub async fn signin_page(axum::extract::Query(q): axum::extract::Query<SigninQuery>) -> Response {
    page_response(signin_form(&safe_next(q.next.as_deref()), "", None))
}

#[derive(Deserialize)]
pub struct SigninForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

pub async fn signin(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<SigninForm>,
) -> Html {
    check_origin(&headers)?;
    let next = safe_next(form.next.as_deref());
    let login = form.login.trim();
    let throttle_key = login.to_lowercase();
    if let Some(wait) = state.signin_failures.locked(&throttle_key) {
        let minutes = wait.as_secs().div_ceil(60).max(1);
        let mut r = page_response(signin_form(
            &next,
            login,
            Some(&format!(
                "Too many failed sign-ins for this login; try again in {minutes} minute(s)."
            )),
        ));
        *r.status_mut() = axum::http::StatusCode::TOO_MANY_REQUESTS;
        return Ok(r);
    }
    let user = match state.store.user_with_password(login).await? {
        Some((user, Some(hash))) if password_matches(&form.password, &hash) => Some(user),
        // A user's API token works as a password: how `admin` signs in
        // first, with the token the server printed.
        Some((user, _)) => state
            .store
            .user_by_token_hash(&hash_token(form.password.trim()))
            .await?
            .filter(|u| u.id == user.id),
        None => None,
    };
    let Some(user) = user else {
        state.signin_failures.failed(&throttle_key);
        let mut r = page_response(signin_form(&next, login, Some("Wrong login or password.")));
        *r.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
        return Ok(r);
    };
    state.signin_failures.succeeded(&throttle_key);
    let token = new_token();
    state
        .store
        .create_session(
            &hash_token(&token),
            &user.id,
            now_ms() + SESSION_DAYS * 24 * 3600 * 1000,
        )
        .await?;
    let secure = if state.base_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        SESSION_DAYS * 24 * 3600
    );
    let mut r = redirect(&next);
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    Ok(r)
}

pub async fn signout(
    State(state): State<Arc<AppState>>,
    WebForm { user, .. }: WebForm<Empty>,
) -> Html {
    state
        .store
        .delete_session(&user.token_hash, now_ms())
        .await?;
    let mut r = redirect("/signin");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("orrery_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    Ok(r.into_response())
}

impl axum::extract::OptionalFromRequestParts<Arc<AppState>> for WebUser {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Option<Self>, Self::Rejection> {
        match <WebUser as FromRequestParts<Arc<AppState>>>::from_request_parts(parts, state).await {
            Ok(u) => Ok(Some(u)),
            Err(WebError(ApiError::Unauthorized)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
