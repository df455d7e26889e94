//! Projects (the list, adding one), a project's settings, and the admin
//! area.

use std::sync::Arc;

use axum::Router;

use crate::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
}
