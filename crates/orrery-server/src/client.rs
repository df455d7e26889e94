//! The client side: the runner protocol over HTTP (for `orrery runner`) and
//! the few API calls the command line makes.

use std::time::Duration;

use orrery_agent::worker::{ApiError, RunnerApi};
use orrery_core::protocol::{Assignment, Completion, HeartbeatReply, RunnerEvent};
use serde::de::DeserializeOwned;

pub use reqwest::Method;

use crate::api::runner::RUNNER_NAME_HEADER;

/// An HTTP client with TLS through rustls (ring).
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    // Installing twice is harmless: the first provider stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .build()
}

/// The runner protocol against a server.
pub struct HttpRunner {
    client: reqwest::Client,
    base: String,
    token: String,
    name: String,
}

/// The server's error message from a failed response.
async fn failure(r: reqwest::Response) -> ApiError {
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_string))
        .unwrap_or(text);
    ApiError(format!("the server answered {status}: {message}"))
}

fn transport(e: reqwest::Error) -> ApiError {
    ApiError(format!("cannot reach the server: {}", e.without_url()))
}

impl HttpRunner {
    pub fn new(base: &str, token: &str, name: &str) -> Result<HttpRunner, ApiError> {
        // Long polls wait up to a minute; leave room for them.
        let client = http_client(Duration::from_secs(120)).map_err(transport)?;
        Ok(HttpRunner {
            client,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            name: name.to_string(),
        })
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header(RUNNER_NAME_HEADER, &self.name)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<Option<T>, ApiError> {
        let r = self.post(path).json(body).send().await.map_err(transport)?;
        if r.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        if !r.status().is_success() {
            return Err(failure(r).await);
        }
        r.json::<T>().await.map(Some).map_err(transport)
    }

    /// Tells the server this runner (re)started; returns its runner id.
    pub async fn register(&self, hostname: &str) -> Result<String, ApiError> {
        let body = serde_json::json!({"hostname": hostname, "version": env!("CARGO_PKG_VERSION")});
        let v: Option<serde_json::Value> = self.call("/runner/v1/register", &body).await?;
        Ok(
            v.and_then(|v| v.get("runner_id")?.as_str().map(str::to_string))
                .unwrap_or_default(),
        )
    }
}

impl RunnerApi for HttpRunner {
    async fn claim(&self, wait: Duration) -> Result<Option<Assignment>, ApiError> {
        self.call(
            "/runner/v1/claim",
            &serde_json::json!({"wait_secs": wait.as_secs()}),
        )
        .await
    }

    async fn heartbeat(&self, task_id: &str) -> Result<HeartbeatReply, ApiError> {
        self.call(
            &format!("/runner/v1/tasks/{task_id}/heartbeat"),
            &serde_json::json!({}),
        )
        .await?
        .ok_or_else(|| ApiError("the server sent no heartbeat reply".into()))
    }

    async fn events(&self, task_id: &str, events: Vec<RunnerEvent>) -> Result<(), ApiError> {
        self.call::<serde_json::Value>(&format!("/runner/v1/tasks/{task_id}/events"), &events)
            .await
            .map(|_| ())
    }

    async fn complete(&self, task_id: &str, completion: Completion) -> Result<(), ApiError> {
        self.call::<serde_json::Value>(&format!("/runner/v1/tasks/{task_id}/complete"), &completion)
            .await
            .map(|_| ())
    }
}

/// One API call with a personal token; the JSON answer or the server's
/// message.
pub async fn api_call(
    base: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value, ApiError> {
    let client = http_client(Duration::from_secs(60)).map_err(transport)?;
    let mut req = client
        .request(method, format!("{}{path}", base.trim_end_matches('/')))
        .header("circle-token", token);
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await.map_err(transport)?;
    if !r.status().is_success() {
        return Err(failure(r).await);
    }
    r.json().await.map_err(transport)
}
