//! Object storage for Orrery: artifacts, caches, workspaces, test results.
//!
//! [`Blobs`] is one interface over the `object_store` crate, opened from a
//! location ([`Blobs::open`]):
//!
//! - a directory: `/var/lib/orrery/blobs` or `file:///var/lib/orrery/blobs`;
//! - S3 and S3-compatible servers: `s3://bucket/prefix`, configured by the
//!   usual `AWS_*` variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//!   `AWS_REGION`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`) or options;
//! - Google Cloud Storage (`gs://bucket/prefix`, `GOOGLE_*`) and Azure Blob
//!   (`az://container/prefix`, `AZURE_*`).
//!
//! What it guarantees, whatever the store:
//! - **Streamed**: [`Blobs::put`] reads its input in parts (multipart uploads
//!   of [`PART_SIZE`] on object stores) and [`Blobs::get`] returns a reader;
//!   memory use is bounded by a few parts, not by the object's size.
//! - **Checked**: `put` computes the SHA-256 and the size of what it stored
//!   and, given the expected digest or a size limit, refuses a mismatch.
//! - **Atomic**: an object appears whole or not at all. A refused or failed
//!   upload is aborted (multipart parts discarded, temporary files removed).
//! - **Confined**: keys are relative, `/`-separated, without `.` or `..`
//!   segments ([`check_key`]); everything lives under the location's prefix.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// The size of the parts of a multipart upload (and of the read buffer).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// A stream of an object's bytes.
pub type BlobReader = std::pin::Pin<Box<dyn AsyncRead + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("the data does not match its checksum: expected sha256 {expected}, got {actual}")]
    Checksum { expected: String, actual: String },
    #[error("the data is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("`{0}` is not a valid object key")]
    BadKey(String),
    #[error("cannot use the storage location `{location}`: {reason}")]
    Config { location: String, reason: String },
    #[error("reading the data failed: {0}")]
    Input(std::io::Error),
    #[error("object storage: {0}")]
    Store(String),
}

fn store_err(e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { path, .. } => BlobError::NotFound(path),
        other => BlobError::Store(other.to_string()),
    }
}

/// On a write, "not found" means the bucket or container is missing.
fn write_err(location: &str) -> impl Fn(object_store::Error) -> BlobError + '_ {
    move |e| match e {
        object_store::Error::NotFound { source, .. } => BlobError::Store(format!(
            "cannot write to {location}: the bucket or container does not exist ({source})"
        )),
        other => BlobError::Store(other.to_string()),
    }
}

pub type Result<T> = std::result::Result<T, BlobError>;

/// What [`Blobs::put`] stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

/// An object in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The key, relative to the location.
    pub key: String,
    pub size: u64,
    /// Unix milliseconds.
    pub modified: i64,
}

/// Limits and checks for one upload.
#[derive(Clone, Debug, Default)]
pub struct PutOptions {
    /// The SHA-256 (hex) the data must have.
    pub sha256: Option<String>,
    /// The size the data must have.
    pub size: Option<u64>,
    /// The most bytes accepted.
    pub max_size: Option<u64>,
    /// The data ends with a [`FOOTER_LEN`]-byte footer, not stored: the
    /// SHA-256 (32 bytes) and the size (8 bytes, big-endian) of what comes
    /// before it, which are then what the data must have. A sender that
    /// computes both while it streams announces them at the end.
    pub footer: bool,
}

/// The length of a [`PutOptions::footer`].
pub const FOOTER_LEN: usize = 40;

/// The footer for data of `size` bytes with digest `sha256`.
pub fn footer(sha256: &[u8; 32], size: u64) -> [u8; FOOTER_LEN] {
    let mut f = [0u8; FOOTER_LEN];
    f[..32].copy_from_slice(sha256);
    f[32..].copy_from_slice(&size.to_be_bytes());
    f
}

#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    signer: Option<Arc<dyn Signer>>,
    prefix: Path,
    location: String,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blobs({})", self.location)
    }
}

/// Checks that a key is relative and stays inside the location.
pub fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 1024
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && !key.chars().any(|c| c.is_control());
    if ok {
        Ok(())
    } else {
        Err(BlobError::BadKey(key.to_string()))
    }
}

fn install_crypto() {
    // rustls needs a process-wide provider for HTTPS to object stores; the
    // first installed stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Blobs {
    /// Opens a storage location (see the crate docs). `options` are passed
    /// to the store's builder (e.g. `("aws_endpoint", "http://127.0.0.1:9000")`)
    /// after the environment, so they win.
    pub fn open(location: &str, options: &[(String, String)]) -> Result<Blobs> {
        install_crypto();
        let config = |reason: String| BlobError::Config {
            location: location.to_string(),
            reason,
        };
        if !location.contains("://") {
            let dir = std::path::Path::new(location);
            if !dir.is_absolute() {
                return Err(config("a directory must be an absolute path".into()));
            }
            return Blobs::directory(dir);
        }
        let url = url::Url::parse(location).map_err(|e| config(e.to_string()))?;
        match url.scheme() {
            "file" => {
                let dir = url
                    .to_file_path()
                    .map_err(|_| config("not a local path".into()))?;
                Blobs::directory(&dir)
            }
            "s3" | "s3a" => {
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(location)
                    // Orrery checks content itself; S3-compatible servers vary
                    // in what they support of conditional writes.
                    ;
                for (k, v) in options {
                    let key = k
                        .parse()
                        .map_err(|e: object_store::Error| config(e.to_string()))?;
                    b = b.with_config(key, v);
                }
                let s3 = Arc::new(b.build().map_err(|e| config(e.to_string()))?);
                Ok(Blobs {
                    store: s3.clone(),
                    signer: Some(s3),
                    prefix: Path::from(url.path().trim_matches('/')),
                    location: location.to_string(),
                })
            }
            "gs" => {
                let mut b =
                    object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(location);
                for (k, v) in options {
                    let key = k
                        .parse()
                        .map_err(|e: object_store::Error| config(e.to_string()))?;
                    b = b.with_config(key, v);
                }
                let gcs = Arc::new(b.build().map_err(|e| config(e.to_string()))?);
                Ok(Blobs {
                    store: gcs.clone(),
                    signer: Some(gcs),
                    prefix: Path::from(url.path().trim_matches('/')),
                    location: location.to_string(),
                })
            }
            "az" | "azure" | "abfs" => {
                let mut b =
                    object_store::azure::MicrosoftAzureBuilder::from_env().with_url(location);
                for (k, v) in options {
                    let key = k
                        .parse()
                        .map_err(|e: object_store::Error| config(e.to_string()))?;
                    b = b.with_config(key, v);
                }
                let az = Arc::new(b.build().map_err(|e| config(e.to_string()))?);
                Ok(Blobs {
                    store: az.clone(),
                    signer: Some(az),
                    prefix: Path::from(url.path().trim_matches('/')),
                    location: location.to_string(),
                })
            }
            other => Err(config(format!(
                "unknown scheme `{other}`: use a directory, file://, s3://, gs:// or az://"
            ))),
        }
    }

    fn directory(dir: &std::path::Path) -> Result<Blobs> {
        let config = |reason: String| BlobError::Config {
            location: dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| config(e.to_string()))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| config(e.to_string()))?
            .with_automatic_cleanup(true);
        Ok(Blobs {
            store: Arc::new(fs),
            signer: None,
            prefix: Path::default(),
            location: dir.display().to_string(),
        })
    }

    /// Where the objects are, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Whether [`Blobs::signed_get`] gives URLs (object stores, not directories).
    pub fn can_sign(&self) -> bool {
        self.signer.is_some()
    }

    fn path(&self, key: &str) -> Result<Path> {
        check_key(key)?;
        let mut parts: Vec<String> = self
            .prefix
            .parts()
            .map(|p| p.as_ref().to_string())
            .collect();
        parts.extend(key.split('/').map(str::to_string));
        Ok(Path::from_iter(parts))
    }

    /// Stores `data` under `key`, streaming, and checks it against `options`.
    /// A mismatch or a read error aborts the upload: nothing is visible.
    pub async fn put(
        &self,
        key: &str,
        mut data: impl AsyncRead + Unpin + Send,
        options: &PutOptions,
    ) -> Result<Stored> {
        let path = self.path(key)?;
        let mut writer = BufWriter::with_capacity(Arc::clone(&self.store), path, PART_SIZE)
            .with_max_concurrency(2);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        let limit = options.max_size.or(options.size);
        // With a footer, the last bytes read are held back until more come.
        let mut held: Vec<u8> = Vec::new();
        let outcome: Result<()> = async {
            loop {
                let n = data.read(&mut buf).await.map_err(BlobError::Input)?;
                if n == 0 {
                    break;
                }
                // What is stored now: with a footer, all but the last
                // FOOTER_LEN bytes seen, partly from those held back before.
                let (from_held, from_buf) = if options.footer {
                    let total = held.len() + n;
                    if total <= FOOTER_LEN {
                        held.extend_from_slice(&buf[..n]);
                        continue;
                    }
                    let emit = total - FOOTER_LEN;
                    let h = emit.min(held.len());
                    (h, emit - h)
                } else {
                    (0, n)
                };
                for part in [&held[..from_held], &buf[..from_buf]] {
                    if part.is_empty() {
                        continue;
                    }
                    size += part.len() as u64;
                    if let Some(limit) = limit
                        && size > limit
                    {
                        return Err(BlobError::TooLarge { limit });
                    }
                    hasher.update(part);
                    writer.write_all(part).await.map_err(|e| {
                        BlobError::Store(format!("writing to {}: {e}", self.location))
                    })?;
                }
                if options.footer {
                    held.drain(..from_held);
                    held.extend_from_slice(&buf[from_buf..n]);
                }
            }
            Ok(())
        }
        .await;
        let sha256 = hex::encode(hasher.finalize());
        let (expected_sha, expected_size) = if options.footer {
            if outcome.is_ok() && held.len() != FOOTER_LEN {
                let _ = writer.abort().await;
                return Err(BlobError::Input(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the upload ends before its footer (digest and size)",
                )));
            }
            let mut len = [0u8; 8];
            len.copy_from_slice(held.get(32..FOOTER_LEN).unwrap_or(&[0; 8]));
            (
                Some(hex::encode(held.get(..32).unwrap_or_default())),
                Some(u64::from_be_bytes(len)),
            )
        } else {
            (options.sha256.clone(), options.size)
        };
        let checked = outcome.and_then(|()| {
            if let Some(expected) = &expected_sha
                && !expected.eq_ignore_ascii_case(&sha256)
            {
                return Err(BlobError::Checksum {
                    expected: expected.to_ascii_lowercase(),
                    actual: sha256.clone(),
                });
            }
            if let Some(expected) = &expected_size
                && *expected != size
            {
                return Err(BlobError::Input(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("expected {expected} bytes, got {size}"),
                )));
            }
            Ok(())
        });
        match checked {
            Ok(()) => {
                writer
                    .shutdown()
                    .await
                    .map_err(|e| BlobError::Store(format!("writing to {}: {e}", self.location)))?;
                Ok(Stored { size, sha256 })
            }
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, "aborting an upload failed");
                }
                Err(e)
            }
        }
    }

    /// Stores bytes held in memory (small objects).
    pub async fn put_bytes(&self, key: &str, data: Vec<u8>) -> Result<Stored> {
        let path = self.path(key)?;
        let sha256 = hex::encode(Sha256::digest(&data));
        let size = data.len() as u64;
        self.store
            .put(&path, data.into())
            .await
            .map_err(write_err(&self.location))?;
        Ok(Stored { size, sha256 })
    }

    /// An object's bytes, streamed, and its size.
    pub async fn get(&self, key: &str) -> Result<(BlobReader, u64)> {
        let path = self.path(key)?;
        let got = self.store.get(&path).await.map_err(store_err)?;
        let size = got.meta.size;
        // A file of a directory store is read as a file: its stream comes in
        // 8 KiB chunks, each a trip to the blocking pool, which makes
        // gigabyte downloads slow.
        if let object_store::GetResultPayload::File(file, _) = got.payload {
            return Ok((
                Box::pin(tokio::fs::File::from_std(file)) as BlobReader,
                size,
            ));
        }
        let stream = got
            .into_stream()
            .map_err(|e| std::io::Error::other(e.to_string()));
        Ok((
            Box::pin(tokio_util::io::StreamReader::new(stream)) as BlobReader,
            size,
        ))
    }

    /// An object's size, or `None` when it does not exist.
    pub async fn size(&self, key: &str) -> Result<Option<u64>> {
        let path = self.path(key)?;
        match self.store.head(&path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err(e)),
        }
    }

    /// Deletes an object; deleting what is not there is not an error.
    pub async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err(e)),
        }
    }

    /// The objects under a key prefix (a `/`-separated directory).
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let path = self.path(prefix)?;
        let base = self.prefix.parts().count();
        let mut out = Vec::new();
        let mut stream = self.store.list(Some(&path));
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(store_err)?;
            let key: Vec<String> = meta
                .location
                .parts()
                .skip(base)
                .map(|p| p.as_ref().to_string())
                .collect();
            out.push(Listed {
                key: key.join("/"),
                size: meta.size,
                modified: meta.last_modified.timestamp_millis(),
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// A URL that reads the object without credentials for `expires`, when
    /// the store can sign (object stores; not directories).
    pub async fn signed_get(&self, key: &str, expires: Duration) -> Result<Option<String>> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let path = self.path(key)?;
        let url = signer
            .signed_url(http_get(), &path, expires)
            .await
            .map_err(store_err)?;
        Ok(Some(url.to_string()))
    }
}

fn http_get() -> object_store::signer::Method {
    object_store::signer::Method::GET
}

/// A real S3-compatible server on loopback for tests: moto's server from
/// PyPI (`pip install 'moto[server]'`, which `scripts/test.sh` does).
#[doc(hidden)]
pub mod testing {
    use std::net::TcpListener;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    pub struct S3Server {
        child: Child,
        pub endpoint: String,
    }

    impl S3Server {
        /// Starts the server and waits (up to 30 s) until it answers.
        pub fn start() -> S3Server {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let child = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("moto_server must be installed: pip install 'moto[server]' (scripts/test.sh does)");
            let endpoint = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(30);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "moto_server did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
            S3Server { child, endpoint }
        }

        /// Creates a bucket (moto takes unsigned requests).
        pub fn create_bucket(&self, bucket: &str) {
            let status = Command::new("curl")
                .args(["-fsS", "-X", "PUT", &format!("{}/{bucket}", self.endpoint)])
                .stdout(Stdio::null())
                .status()
                .expect("curl");
            assert!(status.success(), "creating bucket {bucket}");
        }

        /// Options for [`crate::Blobs::open`] on this server.
        pub fn options(&self) -> Vec<(String, String)> {
            [
                ("aws_endpoint", self.endpoint.as_str()),
                ("aws_allow_http", "true"),
                ("aws_region", "us-east-1"),
                ("aws_access_key_id", "orrery-test"),
                ("aws_secret_access_key", "orrery-test-secret"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        }
    }

    impl Drop for S3Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
