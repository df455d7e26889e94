//! The web app: server-rendered HTML (maud) from the same store and engine
//! the API uses, a stylesheet and a little plain JavaScript embedded in the
//! binary, live updates by Server-Sent Events.
//!
//! - Sign-in ([`session`]): login and password (or an API token as the
//!   password, the way in for a fresh server's `admin`), a session cookie
//!   (`HttpOnly`, `SameSite=Lax`, `Secure` behind https) whose SHA-256 is
//!   what the store keeps, and a CSRF token derived from it that every form
//!   carries and every POST checks.
//! - Pages ([`pages`]): the pipelines dashboard, a pipeline's workflow
//!   graphs with their actions, a job's steps and output, project settings,
//!   the admin area, status badges.
//! - Roles are the API's: a viewer sees pages but no action buttons, and the
//!   handlers refuse the actions anyway ([`WebUser::require_write`]).
//!
//! Errors are [`ApiError`]s, rendered as an HTML page ([`Html`] results)
//! with the same status the API would answer, and internals only in the log.

pub mod badge;
pub mod pages;
pub mod session;
pub mod view;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};

use crate::AppState;
use crate::error::ApiError;
pub use session::WebUser;

/// A page or an error page.
pub type Html = Result<Response, WebError>;

/// An [`ApiError`] shown as a page.
#[derive(Debug)]
pub struct WebError(pub ApiError);

impl<E: Into<ApiError>> From<E> for WebError {
    fn from(e: E) -> Self {
        WebError(e.into())
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        if matches!(self.0, ApiError::Unauthorized) {
            return redirect("/signin");
        }
        let message = match &self.0 {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "Something went wrong on the server; its log has the details.".to_string()
            }
            other => other.to_string(),
        };
        let title = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::BAD_REQUEST => "Bad request",
            StatusCode::CONFLICT => "Conflict",
            _ if status.is_server_error() => "Server error",
            _ => "Error",
        };
        let body = view::bare_page(
            title,
            html! {
                main.error-page {
                    h1 { (status.as_u16()) " · " (title) }
                    p.error-message data-testid="error-message" { (message) }
                    p { a href="/" { "Back to the pipelines" } }
                }
            },
        );
        (status, page_response(body)).into_response()
    }
}

/// An HTML response that is never cached.
pub fn page_response(body: Markup) -> Response {
    let mut r = body.into_string().into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    r
}

/// A 303 to `to` (after a form post, or to the sign-in page).
pub fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(pages::home))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
        .route("/signin", get(session::signin_page).post(session::signin))
        .route("/signout", post(session::signout))
        .merge(pages::routes())
        .merge(badge::routes())
}
