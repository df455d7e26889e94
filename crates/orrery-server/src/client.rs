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

/// Task storage through the server's runner API, for remote runners:
/// uploads are spooled to a file under `spool` first (hashed on the way), so
/// the server can check them and a failed upload is resent whole.
pub struct HttpBackend {
    client: reqwest::Client,
    base: String,
    token: String,
    name: String,
    task_id: String,
    spool: std::path::PathBuf,
}

/// Makes an [`HttpBackend`] per task.
pub struct HttpBackends {
    pub base: String,
    pub token: String,
    pub name: String,
    pub spool: std::path::PathBuf,
    client: reqwest::Client,
}

impl HttpBackends {
    pub fn new(
        base: &str,
        token: &str,
        name: &str,
        spool: std::path::PathBuf,
    ) -> Result<HttpBackends, ApiError> {
        // Transfers of large archives take long: no overall timeout, but
        // connecting and stalls are bounded by the runner's retries.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(transport)?;
        Ok(HttpBackends {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            name: name.to_string(),
            spool,
            client,
        })
    }
}

impl orrery_agent::BackendFactory for HttpBackends {
    type Backend = HttpBackend;

    fn backend(&self, a: &Assignment) -> HttpBackend {
        HttpBackend {
            client: self.client.clone(),
            base: self.base.clone(),
            token: self.token.clone(),
            name: self.name.clone(),
            task_id: a.task_id.clone(),
            spool: self.spool.clone(),
        }
    }
}

use orrery_agent::{BackendError, ByteStream, CacheHit};

fn refused(e: ApiError) -> BackendError {
    BackendError::Refused(e.0)
}

/// Percent-encodes a query value or path segment.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A spooled upload: its file, digest and size. The file is removed on drop.
struct Spooled {
    path: std::path::PathBuf,
    sha256: String,
    size: u64,
}

impl Drop for Spooled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn spool(
    dir: &std::path::Path,
    mut data: impl tokio::io::AsyncRead + Unpin,
) -> Result<Spooled, BackendError> {
    use sha2::Digest;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::fs::create_dir_all(dir).await?;
    let path = dir.join(format!("upload-{}", orrery_store::new_id()));
    let mut spooled = Spooled {
        path,
        sha256: String::new(),
        size: 0,
    };
    let mut file = tokio::fs::File::create(&spooled.path).await?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = data.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).await?;
        spooled.size += n as u64;
    }
    file.flush().await?;
    spooled.sha256 = hex::encode(hasher.finalize());
    Ok(spooled)
}

impl HttpBackend {
    fn url(&self, path: &str) -> String {
        format!("{}/runner/v1/tasks/{}{path}", self.base, self.task_id)
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.token)
            .header(RUNNER_NAME_HEADER, &self.name)
    }

    async fn json<T: DeserializeOwned>(&self, path: &str) -> Result<T, BackendError> {
        let r = self
            .request(Method::GET, path)
            .send()
            .await
            .map_err(|e| refused(transport(e)))?;
        if !r.status().is_success() {
            return Err(refused(failure(r).await));
        }
        r.json().await.map_err(|e| refused(transport(e)))
    }

    async fn download(&self, path: &str) -> Result<ByteStream, BackendError> {
        use futures_util::TryStreamExt;
        let r = self
            .request(Method::GET, path)
            .send()
            .await
            .map_err(|e| refused(transport(e)))?;
        if !r.status().is_success() {
            return Err(refused(failure(r).await));
        }
        let stream = r
            .bytes_stream()
            .map_err(|e| std::io::Error::other(format!("the download broke: {}", e.without_url())));
        Ok(Box::pin(tokio_util::io::StreamReader::new(stream)))
    }

    /// Streams `data` to the server as it is read, its digest and size in a
    /// footer ([`orrery_blob::footer`]), so making an archive and sending it
    /// overlap and nothing is written to the runner's disk. A failure of the
    /// transfer or of the server's storage is [`BackendError::Unavailable`]:
    /// the agent makes the archive again and resends it.
    async fn stream_upload(
        &self,
        method: Method,
        path: &str,
        mut data: ByteStream,
    ) -> Result<reqwest::Response, BackendError> {
        use sha2::Digest;
        use tokio::io::AsyncReadExt;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(16);
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let sending = tokio::spawn(
            self.request(method, path)
                .header(crate::api::storage::DIGEST_HEADER, "footer")
                .body(reqwest::Body::wrap_stream(body))
                .send(),
        );
        let mut hasher = sha2::Sha256::new();
        let mut size = 0u64;
        let mut streaming = true;
        loop {
            let mut buf = vec![0u8; 256 * 1024];
            let n = match data.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    // The server must not keep a part of it.
                    let _ = tx
                        .send(Err(std::io::Error::other("the data could not be read")))
                        .await;
                    return Err(e.into());
                }
            };
            if n == 0 {
                break;
            }
            if !streaming {
                // The server answered early: read the rest, so that what
                // makes it ends normally.
                continue;
            }
            buf.truncate(n);
            hasher.update(&buf);
            size += n as u64;
            if tx.send(Ok(bytes::Bytes::from(buf))).await.is_err() {
                streaming = false;
            }
        }
        if streaming {
            let digest: [u8; 32] = hasher.finalize().into();
            let footer = orrery_blob::footer(&digest, size);
            let _ = tx.send(Ok(bytes::Bytes::copy_from_slice(&footer))).await;
        }
        drop(tx);
        let unavailable = |e: ApiError| BackendError::Unavailable(e.0);
        match sending.await {
            Ok(Ok(r)) if r.status().is_success() => Ok(r),
            Ok(Ok(r)) if r.status().is_server_error() => Err(unavailable(failure(r).await)),
            Ok(Ok(r)) => Err(refused(failure(r).await)),
            Ok(Err(e)) => Err(unavailable(transport(e))),
            Err(e) => Err(BackendError::Unavailable(format!(
                "the upload stopped: {e}"
            ))),
        }
    }

    /// Uploads a spooled file, retrying transport failures and server
    /// errors (the file is resent whole).
    async fn upload(
        &self,
        method: Method,
        path: &str,
        file: &Spooled,
    ) -> Result<reqwest::Response, BackendError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let body = tokio::fs::File::open(&file.path).await?;
            let sent = self
                .request(method.clone(), path)
                .header(crate::api::storage::SHA256_HEADER, &file.sha256)
                .header(crate::api::storage::SIZE_HEADER, file.size.to_string())
                .header("content-length", file.size.to_string())
                .body(reqwest::Body::wrap_stream(
                    // Large reads: each is a trip to tokio's blocking pool.
                    tokio_util::io::ReaderStream::with_capacity(body, 256 * 1024),
                ))
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return Ok(r),
                Ok(r) if r.status().is_server_error() && attempt < 3 => {
                    tracing::warn!(status = %r.status(), "an upload failed; sending it again");
                }
                Ok(r) => return Err(refused(failure(r).await)),
                Err(e) if attempt < 3 => {
                    tracing::warn!(error = %e.without_url(), "an upload failed; sending it again");
                }
                Err(e) => return Err(refused(transport(e))),
            }
            tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
        }
    }
}

impl orrery_agent::TaskBackend for HttpBackend {
    async fn cache_find(&self, prefix: &str) -> Result<Option<CacheHit>, BackendError> {
        #[derive(serde::Deserialize)]
        struct Hit {
            key: String,
            size: u64,
        }
        #[derive(serde::Deserialize)]
        struct Found {
            hit: Option<Hit>,
        }
        let found: Found = self
            .json(&format!("/caches?prefix={}", enc(prefix)))
            .await?;
        Ok(found.hit.map(|h| CacheHit {
            key: h.key,
            size: h.size,
        }))
    }

    async fn cache_open(&self, key: &str) -> Result<ByteStream, BackendError> {
        self.download(&format!("/caches/object?key={}", enc(key)))
            .await
    }

    async fn cache_save(&self, key: &str, data: ByteStream) -> Result<bool, BackendError> {
        let r = self
            .stream_upload(
                Method::PUT,
                &format!("/caches/object?key={}", enc(key)),
                data,
            )
            .await?;
        Ok(r.status() == reqwest::StatusCode::CREATED)
    }

    async fn workspace_layers(&self, job: &str) -> Result<Vec<ByteStream>, BackendError> {
        #[derive(serde::Deserialize)]
        struct Layers {
            layers: Vec<serde_json::Value>,
        }
        let layers: Layers = self.json(&format!("/workspaces/{}", enc(job))).await?;
        let mut out = Vec::new();
        for i in 0..layers.layers.len() {
            out.push(
                self.download(&format!("/workspaces/{}/{i}", enc(job)))
                    .await?,
            );
        }
        Ok(out)
    }

    async fn workspace_save(&self, data: ByteStream) -> Result<(), BackendError> {
        self.stream_upload(Method::PUT, "/workspace", data).await?;
        Ok(())
    }

    async fn artifacts_save(
        &self,
        prefix: &str,
        tar: &std::path::Path,
    ) -> Result<Vec<String>, BackendError> {
        let file = spool(&self.spool, tokio::fs::File::open(tar).await?).await?;
        let r = self
            .upload(
                Method::PUT,
                &format!("/artifacts?prefix={}", enc(prefix)),
                &file,
            )
            .await?;
        #[derive(serde::Deserialize)]
        struct Paths {
            paths: Vec<String>,
        }
        let paths: Paths = r.json().await.map_err(|e| refused(transport(e)))?;
        Ok(paths.paths)
    }

    async fn test_results_save(
        &self,
        cases: Vec<orrery_testresults::TestCase>,
    ) -> Result<(), BackendError> {
        let r = self
            .request(Method::POST, "/test-results")
            .json(&cases)
            .send()
            .await
            .map_err(|e| refused(transport(e)))?;
        if !r.status().is_success() {
            return Err(refused(failure(r).await));
        }
        Ok(())
    }

    async fn timings(&self) -> Result<Vec<orrery_testresults::TestCase>, BackendError> {
        self.json("/timings").await
    }
}
