//! Reading payloads: the body (JSON, or a form with a `payload` field), fields by
//! JSON path with errors that name the path, and the checks that make SHAs and ref
//! names safe to hand to git.

use serde_json::Value;

use crate::error::WebhookError;
use crate::model::{Commit, GitRef, Headers};

/// The largest body accepted: 25 MiB, GitHub's own cap on a webhook payload.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// Refuses a body over [`MAX_BODY_BYTES`].
pub(crate) fn check_size(body: &[u8]) -> Result<(), WebhookError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(WebhookError::BodyTooLarge {
            size: body.len(),
            limit: MAX_BODY_BYTES,
        });
    }
    Ok(())
}

/// The body as a JSON object.
///
/// GitHub's default content type (and one of Gitea's) is
/// `application/x-www-form-urlencoded`, with the JSON in the form field
/// `payload`; the signature still covers the raw body. Such a body is decoded
/// when `Content-Type` says so; anything else is read as JSON.
pub(crate) fn decode(headers: &Headers<'_>, body: &[u8]) -> Result<Value, WebhookError> {
    check_size(body)?;
    let is_form = headers.get("Content-Type").is_some_and(|ct| {
        ct.split(';').next().is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    });
    let value: Value = if is_form {
        let json = form_field(body, b"payload").ok_or_else(|| {
            WebhookError::InvalidJson("the form body has no `payload` field".to_string())
        })?;
        serde_json::from_slice(&json)
    } else {
        serde_json::from_slice(body)
    }
    .map_err(|e| WebhookError::InvalidJson(e.to_string()))?;
    if !value.is_object() {
        return Err(WebhookError::InvalidJson(
            "the top level is not an object".to_string(),
        ));
    }
    Ok(value)
}

/// The first value of `key` in an `application/x-www-form-urlencoded` body,
/// percent-decoded (`+` is a space).
fn form_field(body: &[u8], key: &[u8]) -> Option<Vec<u8>> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3).and_then(|h| {
                    let h = std::str::from_utf8(h).ok()?;
                    u8::from_str_radix(h, 16).ok()
                });
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    // A stray `%` stays as it is, as browsers decode it.
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// The value at a dotted path (`pull_request.head.sha`); `None` when a step is
/// missing or not an object. A JSON `null` is returned as `None` too.
pub(crate) fn at<'v>(root: &'v Value, path: &str) -> Option<&'v Value> {
    let mut v = root;
    for key in path.split('.') {
        v = v.as_object()?.get(key)?;
    }
    (!v.is_null()).then_some(v)
}

/// A string at `path`, or `None` when it is absent, `null` or not a string.
pub(crate) fn opt_str<'v>(root: &'v Value, path: &str) -> Option<&'v str> {
    at(root, path)?.as_str()
}

/// A non-empty string at `path`, or `None`.
pub(crate) fn opt_nonempty<'v>(root: &'v Value, path: &str) -> Option<&'v str> {
    opt_str(root, path).filter(|s| !s.is_empty())
}

/// The first of `paths` holding a non-empty string.
pub(crate) fn first_nonempty<'v>(root: &'v Value, paths: &[&str]) -> Option<&'v str> {
    paths.iter().find_map(|p| opt_nonempty(root, p))
}

/// A non-empty string at `path`, or an error naming it.
pub(crate) fn req_str<'v>(root: &'v Value, path: &str) -> Result<&'v str, WebhookError> {
    opt_nonempty(root, path).ok_or_else(|| WebhookError::field(path, "a non-empty string"))
}

/// A non-negative integer at `path`, or an error naming it.
pub(crate) fn req_u64(root: &Value, path: &str) -> Result<u64, WebhookError> {
    at(root, path)
        .and_then(Value::as_u64)
        .ok_or_else(|| WebhookError::field(path, "a non-negative integer"))
}

/// A boolean at `path`; `false` when absent or not a boolean.
pub(crate) fn flag(root: &Value, path: &str) -> bool {
    at(root, path).and_then(Value::as_bool).unwrap_or(false)
}

/// Whether `s` is a commit SHA: 40 hex digits (SHA-1) or 64 (SHA-256).
pub(crate) fn is_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `s` is git's "no object" SHA, which stands for a ref that does not
/// exist (before a creation, after a deletion).
pub(crate) fn is_zero_sha(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b == b'0')
}

/// A commit SHA at `path`, lower-cased, or an error naming it.
pub(crate) fn req_sha(root: &Value, path: &str) -> Result<String, WebhookError> {
    sha_value(opt_str(root, path), path)
}

/// Checks a commit SHA read from `path` and lower-cases it.
pub(crate) fn sha_value(s: Option<&str>, path: &str) -> Result<String, WebhookError> {
    match s {
        Some(s) if is_sha(s) && !is_zero_sha(s) => Ok(s.to_ascii_lowercase()),
        _ => Err(WebhookError::field(
            path,
            "a commit SHA (40 or 64 hex digits)",
        )),
    }
}

/// The `before` SHA at `path`: `None` when absent, all zeros (a new ref) or not
/// a SHA. It is informational, so a malformed one is dropped, not an error.
pub(crate) fn before_sha(root: &Value, path: &str) -> Option<String> {
    opt_str(root, path)
        .filter(|s| is_sha(s) && !is_zero_sha(s))
        .map(str::to_ascii_lowercase)
}

/// Whether `name` is a valid branch or tag name by git's rules
/// (`git check-ref-format`), which also rules out anything git could read as an
/// option (a leading `-`) or a revision expression (`..`, `@{`, `^`, `~`, `:`).
pub(crate) fn is_ref_name(name: &str) -> bool {
    !name.is_empty()
        && name != "@"
        && !name.starts_with('-')
        && !name.starts_with('/')
        && !name.ends_with('/')
        && !name.ends_with('.')
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && !name.chars().any(|c| {
            c.is_ascii_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\')
        })
        && name
            .split('/')
            .all(|part| !part.starts_with('.') && !part.ends_with(".lock"))
}

/// A branch name (no `refs/heads/` prefix) at `path`, or an error naming it.
pub(crate) fn req_ref_name(root: &Value, path: &str) -> Result<String, WebhookError> {
    match opt_str(root, path) {
        Some(name) if is_ref_name(name) => Ok(name.to_string()),
        _ => Err(WebhookError::field(path, "a valid git branch name")),
    }
}

/// How a full ref read from a payload classifies.
pub(crate) enum RefKind {
    /// A branch or a tag with a valid name.
    Ref(GitRef),
    /// A valid ref outside `refs/heads/` and `refs/tags/` (notes, GitHub's
    /// `refs/pull/...`): nothing to build.
    Other(String),
}

/// Classifies the full ref at `path` (`refs/heads/main`, `refs/tags/v1`).
pub(crate) fn req_full_ref(root: &Value, path: &str) -> Result<RefKind, WebhookError> {
    let invalid = || WebhookError::field(path, "a valid git ref (refs/heads/... or refs/tags/...)");
    let full = opt_str(root, path).ok_or_else(invalid)?;
    if let Some(name) = full.strip_prefix("refs/heads/") {
        return if is_ref_name(name) {
            Ok(RefKind::Ref(GitRef::Branch(name.to_string())))
        } else {
            Err(invalid())
        };
    }
    if let Some(name) = full.strip_prefix("refs/tags/") {
        return if is_ref_name(name) {
            Ok(RefKind::Ref(GitRef::Tag(name.to_string())))
        } else {
            Err(invalid())
        };
    }
    if full.starts_with("refs/") && is_ref_name(full) {
        Ok(RefKind::Other(full.to_string()))
    } else {
        Err(invalid())
    }
}

/// Splits a commit message into its subject (the first non-blank line) and body
/// (the rest, trimmed).
pub(crate) fn split_message(message: &str) -> (String, String) {
    let message = message.trim_start_matches(['\n', '\r']);
    match message.split_once('\n') {
        Some((subject, rest)) => (subject.trim_end().to_string(), rest.trim().to_string()),
        None => (message.trim_end().to_string(), String::new()),
    }
}

/// A [`Commit`] from an object shaped like GitHub's, Gitea's and GitLab's commit
/// objects (`message`, `url`, `timestamp`, `author.name`, `author.email`).
pub(crate) fn commit_from(obj: &Value) -> Commit {
    let (subject, body) = split_message(opt_str(obj, "message").unwrap_or(""));
    Commit {
        subject,
        body,
        url: opt_nonempty(obj, "url").map(str::to_string),
        author_name: opt_nonempty(obj, "author.name").map(str::to_string),
        author_email: opt_nonempty(obj, "author.email").map(str::to_string),
        timestamp: opt_nonempty(obj, "timestamp").map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names_follow_git() {
        for ok in [
            "main",
            "feature/x-1",
            "v1.2.0",
            "release@2",
            "a.b/c_d",
            "ünïcode",
        ] {
            assert!(is_ref_name(ok), "{ok}");
        }
        for bad in [
            "", "-x", "/x", "x/", "x.", "a..b", "a//b", "a@{1}", "@", "a b", "a~1", "a^", "a:b",
            "a?", "a*", "a[", "a\\b", ".hidden", "x/.y", "x.lock", "x.lock/y", "a\tb", "a\u{7f}",
        ] {
            assert!(!is_ref_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn shas() {
        assert!(is_sha(&"a".repeat(40)));
        assert!(is_sha(&"A".repeat(64)));
        assert!(!is_sha(&"a".repeat(41)));
        assert!(!is_sha(&"g".repeat(40)));
        assert!(is_zero_sha(&"0".repeat(40)));
        assert_eq!(
            sha_value(Some(&"AB".repeat(20)), "after"),
            Ok("ab".repeat(20))
        );
        assert!(sha_value(Some(&"0".repeat(40)), "after").is_err());
    }

    #[test]
    fn messages_split() {
        assert_eq!(split_message("one"), ("one".into(), "".into()));
        assert_eq!(split_message("one\n"), ("one".into(), "".into()));
        assert_eq!(
            split_message("\none\r\n\r\ntwo\nthree\n\n"),
            ("one".into(), "two\nthree".into())
        );
        assert_eq!(split_message(""), ("".into(), "".into()));
    }

    #[test]
    fn forms_decode() {
        let body = b"a=1&payload=%7B%22x%22%3A+%22a%2Bb%22%7D&payload=2";
        assert_eq!(
            form_field(body, b"payload").as_deref(),
            Some(&b"{\"x\": \"a+b\"}"[..])
        );
        assert_eq!(form_field(b"x=%zz%", b"x").as_deref(), Some(&b"%zz%"[..]));
        assert_eq!(form_field(b"x", b"x").as_deref(), Some(&b""[..]));
        assert_eq!(form_field(b"", b"x"), None);
    }

    #[test]
    fn paths() {
        let v: Value = serde_json::json!({"a": {"b": {"c": "x"}, "n": null, "k": 7}});
        assert_eq!(opt_str(&v, "a.b.c"), Some("x"));
        assert_eq!(at(&v, "a.n"), None);
        assert_eq!(opt_str(&v, "a.k"), None);
        assert_eq!(req_u64(&v, "a.k"), Ok(7));
        assert_eq!(
            req_str(&v, "a.b.d"),
            Err(WebhookError::field("a.b.d", "a non-empty string"))
        );
        assert_eq!(opt_str(&v, "a.b.c.d"), None);
    }
}
