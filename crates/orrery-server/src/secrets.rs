//! Secrets at rest: AES-256-GCM with a key kept in the data directory
//! (`secret.key`, created on first start, readable by the server's user
//! only), and SHA-256 for tokens, which are only ever stored hashed.

use std::path::Path;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit};
use sha2::{Digest, Sha256};

pub struct Cipher {
    aead: Aes256Gcm,
}

impl Cipher {
    /// Loads the key, creating it on first use.
    pub fn load_or_create(path: &Path) -> std::io::Result<Cipher> {
        let key = match std::fs::read(path) {
            Ok(k) if k.len() == 32 => k,
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{} is not a 32-byte key",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = random_bytes(32);
                write_private(path, &key)?;
                key
            }
            Err(e) => return Err(e),
        };
        Ok(Cipher {
            aead: Aes256Gcm::new_from_slice(&key)
                .map_err(|e| std::io::Error::other(e.to_string()))?,
        })
    }

    /// Nonce (12 bytes) followed by the ciphertext.
    pub fn seal(&self, plaintext: &str) -> Vec<u8> {
        let nonce = random_bytes(12);
        let mut out = nonce.clone();
        let sealed = self
            .aead
            .encrypt(&nonce_of(&nonce), plaintext.as_bytes())
            .expect("AES-GCM encryption does not fail for in-memory data");
        out.extend(sealed);
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Option<String> {
        if sealed.len() < 12 {
            return None;
        }
        let (nonce, data) = sealed.split_at(12);
        let plain = self.aead.decrypt(&nonce_of(nonce), data).ok()?;
        String::from_utf8(plain).ok()
    }
}

impl orrery_engine::Secrets for Cipher {
    fn open(&self, sealed: &[u8]) -> Option<String> {
        Cipher::open(self, sealed)
    }

    fn seal(&self, plain: &str) -> Vec<u8> {
        Cipher::seal(self, plain)
    }
}

fn nonce_of(bytes: &[u8]) -> aes_gcm::Nonce<aes_gcm::aead::consts::U12> {
    let mut n = aes_gcm::Nonce::<aes_gcm::aead::consts::U12>::default();
    n.copy_from_slice(&bytes[..12]);
    n
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

/// Cryptographically random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    out.truncate(n);
    out
}

/// Built-in variables whose values are credentials (a setup job's key to
/// continue its pipeline, which works without an API token). Runners list
/// built-in values in the job's output in clear, and anyone who may read
/// output could use the key; so these travel with the secret variables,
/// which runners mask in the listing and in step output.
pub const SECRET_BUILTINS: &[&str] = &["CIRCLE_CONTINUATION_KEY"];

/// Moves [`SECRET_BUILTINS`] of an assignment to its secret variables, before
/// it is handed to a runner (embedded or remote).
pub fn guard_assignment(a: &mut orrery_core::protocol::Assignment) {
    for name in SECRET_BUILTINS {
        if let Some(value) = a.builtin_env.shift_remove(*name) {
            a.context_env.push((name.to_string(), value));
        }
    }
}

/// A new random token (hex).
pub fn new_token() -> String {
    hex::encode(random_bytes(24))
}

/// What the store keeps of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("secret.key");
        let c = Cipher::load_or_create(&key).unwrap();
        let sealed = c.seal("hunter2-secret");
        assert!(
            !sealed.windows(6).any(|w| w == b"hunter"),
            "no plaintext in the sealed bytes"
        );
        assert_eq!(c.open(&sealed).as_deref(), Some("hunter2-secret"));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(c.open(&tampered), None);
        // The same key is loaded again.
        let again = Cipher::load_or_create(&key).unwrap();
        assert_eq!(again.open(&sealed).as_deref(), Some("hunter2-secret"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_ne!(new_token(), new_token());
        assert_eq!(hash_token("a").len(), 64);
    }
}
