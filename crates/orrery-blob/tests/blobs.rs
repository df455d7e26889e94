//! The same checks on a directory and on a real S3-compatible server (moto):
//! streamed multipart uploads, checksums, limits, atomicity, listing,
//! deleting, signed URLs and key confinement.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use orrery_blob::testing::S3Server;
use orrery_blob::{BlobError, Blobs, PutOptions};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// Deterministic bytes, not compressible into nothing.
fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A reader that fails after `ok` bytes.
struct Failing {
    left: usize,
}

impl AsyncRead for Failing {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.left == 0 {
            return Poll::Ready(Err(io::Error::other("the connection broke")));
        }
        let n = self.left.min(buf.remaining()).min(64 * 1024);
        buf.put_slice(&vec![7u8; n]);
        self.left -= n;
        Poll::Ready(Ok(()))
    }
}

async fn read_all(b: &Blobs, key: &str) -> Vec<u8> {
    let (mut r, size) = b.get(key).await.unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.unwrap();
    assert_eq!(out.len() as u64, size);
    out
}

async fn suite(b: &Blobs) {
    // A 20 MB object: three multipart parts on object stores.
    let big = data(20 * 1024 * 1024 + 123, 3);
    let digest = hex::encode(Sha256::digest(&big));
    let stored = b
        .put(
            "caches/p/one",
            &big[..],
            &PutOptions {
                sha256: Some(digest.to_uppercase()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(stored.size, big.len() as u64);
    assert_eq!(stored.sha256, digest);
    assert_eq!(read_all(b, "caches/p/one").await, big);
    assert_eq!(
        b.size("caches/p/one").await.unwrap(),
        Some(big.len() as u64)
    );

    // A footer carries the digest and size at the end: stored without it.
    let with_footer = |data: &[u8], sha: [u8; 32], size: u64| {
        let mut v = data.to_vec();
        v.extend_from_slice(&orrery_blob::footer(&sha, size));
        v
    };
    let sha: [u8; 32] = Sha256::digest(&big).into();
    let footed = PutOptions {
        footer: true,
        ..Default::default()
    };
    let stored = b
        .put(
            "caches/p/footed",
            &with_footer(&big, sha, big.len() as u64)[..],
            &footed,
        )
        .await
        .unwrap();
    assert_eq!(
        (stored.size, stored.sha256.clone()),
        (big.len() as u64, digest.clone())
    );
    assert_eq!(read_all(b, "caches/p/footed").await, big);
    // Empty data, footer only.
    let empty: [u8; 32] = Sha256::digest(b"").into();
    let stored = b
        .put(
            "caches/p/footed-empty",
            &with_footer(b"", empty, 0)[..],
            &footed,
        )
        .await
        .unwrap();
    assert_eq!(stored.size, 0);
    // Data that does not match its footer, a wrong size, a body cut inside
    // the data or the footer: refused, nothing visible.
    let mut flipped = with_footer(&big, sha, big.len() as u64);
    flipped[1000] ^= 1;
    let err = b
        .put("caches/p/f1", &flipped[..], &footed)
        .await
        .unwrap_err();
    assert!(matches!(err, BlobError::Checksum { .. }), "{err}");
    let err = b
        .put("caches/p/f2", &with_footer(&big, sha, 7)[..], &footed)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("expected 7 bytes"), "{err}");
    let whole = with_footer(&big, sha, big.len() as u64);
    for cut in [whole.len() - 10, whole.len() - 40, 5_000_000, 20] {
        let err = b
            .put("caches/p/f3", &whole[..cut], &footed)
            .await
            .unwrap_err();
        assert!(
            matches!(err, BlobError::Checksum { .. } | BlobError::Input(_)),
            "cut at {cut}: {err}"
        );
    }
    for key in ["caches/p/f1", "caches/p/f2", "caches/p/f3"] {
        assert_eq!(b.size(key).await.unwrap(), None, "{key}");
    }
    b.delete("caches/p/footed").await.unwrap();
    b.delete("caches/p/footed-empty").await.unwrap();

    // A wrong checksum: refused, nothing visible.
    let err = b
        .put(
            "caches/p/bad",
            &big[..],
            &PutOptions {
                sha256: Some("00".repeat(32)),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BlobError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains(&digest), "{err}");
    assert_eq!(b.size("caches/p/bad").await.unwrap(), None);

    // Truncated (shorter than announced) and too large: refused.
    let err = b
        .put(
            "caches/p/short",
            &big[..1000],
            &PutOptions {
                size: Some(2000),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("expected 2000 bytes, got 1000"),
        "{err}"
    );
    assert_eq!(b.size("caches/p/short").await.unwrap(), None);
    let err = b
        .put(
            "caches/p/large",
            &big[..],
            &PutOptions {
                max_size: Some(10 * 1024 * 1024),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BlobError::TooLarge { .. }), "{err}");
    assert_eq!(b.size("caches/p/large").await.unwrap(), None);

    // The input breaks after 12 MB (one part already uploaded): aborted.
    let err = b
        .put(
            "caches/p/broken",
            Failing {
                left: 12 * 1024 * 1024,
            },
            &PutOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the connection broke"), "{err}");
    assert_eq!(b.size("caches/p/broken").await.unwrap(), None);

    // Small objects, listing, deleting.
    b.put_bytes("artifacts/j/0/a.txt", b"alpha".to_vec())
        .await
        .unwrap();
    b.put_bytes("artifacts/j/0/dir/b.txt", b"beta".to_vec())
        .await
        .unwrap();
    let listed: Vec<(String, u64)> = b
        .list("artifacts/j")
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.key, l.size))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("artifacts/j/0/a.txt".to_string(), 5),
            ("artifacts/j/0/dir/b.txt".to_string(), 4)
        ]
    );
    b.delete("artifacts/j/0/a.txt").await.unwrap();
    b.delete("artifacts/j/0/a.txt").await.unwrap();
    assert_eq!(b.list("artifacts/j").await.unwrap().len(), 1);
    assert!(matches!(
        b.get("artifacts/j/0/a.txt").await.err().unwrap(),
        BlobError::NotFound(_)
    ));

    // Keys stay inside the location.
    for bad in ["../x", "/abs", "a//b", "a/./b", "a/../../b", ""] {
        assert!(
            matches!(b.put_bytes(bad, vec![1]).await, Err(BlobError::BadKey(_))),
            "{bad}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let b = Blobs::open(dir.path().to_str().unwrap(), &[]).unwrap();
    suite(&b).await;
    assert!(!b.can_sign());
    assert_eq!(
        b.signed_get("caches/p/one", Duration::from_secs(60))
            .await
            .unwrap(),
        None
    );
    // Nothing was written outside the directory, and no temporary files stay.
    let mut files = Vec::new();
    for entry in walk(dir.path()) {
        files.push(
            entry
                .strip_prefix(dir.path())
                .unwrap()
                .display()
                .to_string(),
        );
    }
    files.sort();
    assert_eq!(files, vec!["artifacts/j/0/dir/b.txt", "caches/p/one"]);
    // `file://` locations work too; relative directories are refused.
    let url = format!("file://{}", dir.path().display());
    assert_eq!(
        read_all(&Blobs::open(&url, &[]).unwrap(), "artifacts/j/0/dir/b.txt").await,
        b"beta"
    );
    let err = Blobs::open("relative/dir", &[]).unwrap_err();
    assert!(err.to_string().contains("absolute path"), "{err}");
    let err = Blobs::open("ftp://x/y", &[]).unwrap_err();
    assert!(err.to_string().contains("unknown scheme `ftp`"), "{err}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_compatible_server() {
    let server = S3Server::start();
    server.create_bucket("orrery");
    let b = Blobs::open("s3://orrery/prefix/here", &server.options()).unwrap();
    suite(&b).await;
    // Everything is under the prefix.
    assert!(b.can_sign());
    let url = b
        .signed_get("caches/p/one", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert!(url.contains("/orrery/prefix/here/caches/p/one"), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let got = std::process::Command::new("curl")
        .args(["-fsS", &url])
        .output()
        .unwrap();
    assert!(got.status.success());
    assert_eq!(got.stdout, data(20 * 1024 * 1024 + 123, 3));
    // A bucket that does not exist is a clear error.
    let missing = Blobs::open("s3://nope/x", &server.options()).unwrap();
    let err = missing.put_bytes("k", vec![1]).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("the bucket or container does not exist"),
        "{err}"
    );
}

/// Hands out its data a few bytes at a time (1 to 61, varying).
struct Trickle {
    data: Vec<u8>,
    at: usize,
    step: usize,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.step = (self.step * 7 + 3) % 61 + 1;
        let n = self
            .step
            .min(self.data.len() - self.at)
            .min(buf.remaining());
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_footer_arriving_in_small_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let b = Blobs::open(dir.path().to_str().unwrap(), &[]).unwrap();
    let options = PutOptions {
        footer: true,
        ..Default::default()
    };
    for len in [0usize, 1, 39, 40, 41, 79, 80, 81, 1000, 70_001] {
        let body = data(len, len as u8);
        let sha: [u8; 32] = Sha256::digest(&body).into();
        let mut sent = body.clone();
        sent.extend_from_slice(&orrery_blob::footer(&sha, len as u64));
        let key = format!("caches/p/trickle-{len}");
        let reader = Trickle {
            data: sent,
            at: 0,
            step: len,
        };
        let stored = b.put(&key, reader, &options).await.unwrap();
        assert_eq!(stored.size, len as u64);
        assert_eq!(read_all(&b, &key).await, body, "{len} bytes");
    }
}
