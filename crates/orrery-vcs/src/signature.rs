//! Webhook authentication: HMAC-SHA256 signatures (GitHub, Gitea/Forgejo, the
//! generic hook) and GitLab's shared token.
//!
//! Every comparison goes through `Mac::verify_slice`, which compares in constant
//! time, so a mismatch does not tell an attacker how many leading bytes were right.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::WebhookError;
use crate::model::Headers;

type HmacSha256 = Hmac<Sha256>;

/// GitHub's signature header: `sha256=<hex>`.
pub(crate) const GITHUB_SIGNATURE: &str = "X-Hub-Signature-256";
/// GitLab's token header: the secret itself.
pub(crate) const GITLAB_TOKEN: &str = "X-Gitlab-Token";
/// Gitea's signature header: bare hex.
pub(crate) const GITEA_SIGNATURE: &str = "X-Gitea-Signature";
/// Forgejo's signature header: bare hex.
pub(crate) const FORGEJO_SIGNATURE: &str = "X-Forgejo-Signature";
/// The generic hook's signature header: `sha256=<hex>`.
pub(crate) const GENERIC_SIGNATURE: &str = "X-Orrery-Signature";

/// The HMAC-SHA256 of `body` under `secret`, as lower-case hex: what a sender puts
/// after `sha256=` in `X-Hub-Signature-256` or `X-Orrery-Signature`.
///
/// ```
/// // RFC 4231, test case 2.
/// assert_eq!(
///     orrery_vcs::sign(b"what do ya want for nothing?", "Jefe"),
///     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
/// );
/// ```
pub fn sign(body: &[u8], secret: &str) -> String {
    let mut mac = mac(secret.as_bytes());
    mac.update(body);
    hex_encode(&mac.finalize().into_bytes())
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (longer ones are hashed first), so this
    // cannot fail; the fallback only keeps the code free of `expect`.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| HmacSha256::new(&Default::default()))
}

/// Checks the header `name`, whose value is the hex HMAC-SHA256 of the body after
/// `prefix` (`sha256=` or nothing).
pub(crate) fn check_hmac(
    headers: &Headers<'_>,
    name: &str,
    prefix: &str,
    body: &[u8],
    secret: &str,
) -> Result<(), WebhookError> {
    let value = headers
        .get(name)
        .ok_or_else(|| WebhookError::MissingSignature(name.to_string()))?;
    check_hmac_value(value, name, prefix, body, secret)
}

/// Checks one signature header's value; `name` is only for the error.
pub(crate) fn check_hmac_value(
    value: &str,
    name: &str,
    prefix: &str,
    body: &[u8],
    secret: &str,
) -> Result<(), WebhookError> {
    let bad = || WebhookError::BadSignature(name.to_string());
    let hex = value.strip_prefix(prefix).ok_or_else(bad)?;
    let tag = hex_decode(hex).ok_or_else(bad)?;
    let mut mac = mac(secret.as_bytes());
    mac.update(body);
    mac.verify_slice(&tag).map_err(|_| bad())
}

/// Checks GitLab's token header, which carries the secret itself.
///
/// Comparing the two strings directly would leak their common prefix (and their
/// lengths) through timing. Instead both are used as HMAC keys over the same
/// fixed message and the fixed-size tags are compared in constant time: equal keys
/// give equal tags, and different keys give different tags except with negligible
/// probability.
pub(crate) fn check_token(headers: &Headers<'_>, secret: &str) -> Result<(), WebhookError> {
    const DOMAIN: &[u8] = b"orrery-vcs gitlab token comparison";
    let token = headers
        .get(GITLAB_TOKEN)
        .ok_or_else(|| WebhookError::MissingSignature(GITLAB_TOKEN.to_string()))?;
    let mut expected = mac(secret.as_bytes());
    expected.update(DOMAIN);
    let expected = expected.finalize().into_bytes();
    let mut given = mac(token.as_bytes());
    given.update(DOMAIN);
    given
        .verify_slice(&expected)
        .map_err(|_| WebhookError::BadSignature(GITLAB_TOKEN.to_string()))
}

fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Decodes hex of either case; `None` for an odd length or a non-hex digit.
fn hex_decode(hex: &str) -> Option<Vec<u8>> {
    let digits = hex.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| {
            let hi = char::from(pair[0]).to_digit(16)?;
            let lo = char::from(pair[1]).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4231_vectors() {
        // Test case 1: a 20-byte key of 0x0b.
        let key = [0x0b_u8; 20];
        let mut m = mac(&key);
        m.update(b"Hi There");
        assert_eq!(
            hex_encode(&m.finalize().into_bytes()),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        // Test case 6: a key longer than the block size.
        let key = [0xaa_u8; 131];
        let mut m = mac(&key);
        m.update(b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(
            hex_encode(&m.finalize().into_bytes()),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex_decode("00ff7Fa0"), Some(vec![0, 255, 127, 160]));
        assert_eq!(hex_encode(&[0, 255, 127, 160]), "00ff7fa0");
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
        assert_eq!(hex_decode("é1"), None);
        assert_eq!(hex_decode(""), Some(vec![]));
    }

    #[test]
    fn tokens_compare_exactly() {
        let h = [("X-Gitlab-Token", "s3cret")];
        assert_eq!(check_token(&Headers(&h), "s3cret"), Ok(()));
        assert!(check_token(&Headers(&h), "s3cre").is_err());
        assert!(check_token(&Headers(&h), "s3cret ").is_err());
        assert!(check_token(&Headers(&h), "S3cret").is_err());
    }
}
