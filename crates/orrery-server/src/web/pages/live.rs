//! `/app/events`: Server-Sent Events telling a page that what it shows
//! changed (`event: change`), so its script re-renders the live region.
//! Changes are coalesced: at most one event every quarter second.
//!
//! Scopes: `pipelines` (any pipeline or workflow), `pipeline&id=` (its
//! workflows, reruns included, and their jobs).

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::Query;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::Stream;
use orrery_engine::EngineEvent;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::St;
use crate::error::ApiError;
use crate::web::{Html, WebUser};

#[derive(Deserialize)]
pub struct Scope {
    scope: String,
    id: Option<String>,
}

enum Watch {
    All,
    Pipeline {
        id: String,
        workflows: HashSet<String>,
    },
}

impl Watch {
    fn wants(&mut self, e: &EngineEvent) -> bool {
        match (self, e) {
            (Watch::All, EngineEvent::Pipeline { .. } | EngineEvent::Workflow { .. }) => true,
            (Watch::All, _) => false,
            (Watch::Pipeline { id, .. }, EngineEvent::Pipeline { pipeline_id, .. }) => {
                pipeline_id == id
            }
            (
                Watch::Pipeline { id, workflows },
                EngineEvent::Workflow {
                    workflow_id,
                    pipeline_id,
                    ..
                },
            ) => {
                if pipeline_id == id {
                    workflows.insert(workflow_id.clone());
                    true
                } else {
                    false
                }
            }
            (Watch::Pipeline { workflows, .. }, EngineEvent::Job { workflow_id, .. }) => {
                workflows.contains(workflow_id)
            }
            (Watch::Pipeline { .. }, _) => false,
        }
    }
}

pub async fn events(state: St, _user: WebUser, Query(scope): Query<Scope>) -> Html {
    let watch = match (scope.scope.as_str(), scope.id) {
        ("pipelines", _) => Watch::All,
        ("pipeline", Some(id)) => {
            let id = crate::api::path_id("Pipeline", &id)?;
            let workflows = state
                .store
                .workflow_summaries(std::slice::from_ref(&id))
                .await?
                .into_iter()
                .map(|w| w.id)
                .collect();
            Watch::Pipeline { id, workflows }
        }
        (other, _) => {
            return Err(ApiError::BadRequest(format!(
                "`{other}` is not a scope of live events (pipelines, pipeline&id=)"
            ))
            .into());
        }
    };
    let rx = state.engine.subscribe();
    let shutdown = state.shutdown.clone();
    Ok(Sse::new(changes(rx, watch, shutdown))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn changes(
    rx: tokio::sync::broadcast::Receiver<EngineEvent>,
    watch: Watch,
    shutdown: tokio_util::sync::CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(
        (rx, watch, shutdown),
        |(mut rx, mut watch, shutdown)| async move {
            let next = async {
                loop {
                    match rx.recv().await {
                        Ok(e) if watch.wants(&e) => break,
                        Ok(_) => {}
                        // Missed some: something may have changed.
                        Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => return false,
                    }
                }
                // Coalesce what follows closely.
                tokio::time::sleep(Duration::from_millis(250)).await;
                while let Ok(e) = rx.try_recv() {
                    watch.wants(&e);
                }
                true
            };
            let go = tokio::select! {
                go = next => go,
                () = shutdown.cancelled() => false,
            };
            go.then(|| {
                (
                    // Some data: a browser's EventSource drops events
                    // whose data is empty, without dispatching them.
                    Ok(Event::default().event("change").data("changed")),
                    (rx, watch, shutdown),
                )
            })
        },
    )
}
