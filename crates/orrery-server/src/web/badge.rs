//! Status badges: `/{vcs}/{org}/{repo}.svg?branch=`, as CircleCI serves
//! them.

use std::sync::Arc;

use axum::Router;

use crate::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
}
