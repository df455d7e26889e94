//! VCS webhooks in, trigger events out.
//!
//! Orrery starts pipelines when GitHub, GitLab or Gitea/Forgejo report a push, a
//! tag or a pull request, and when a plain git server's `post-receive` hook
//! reports a push ([`post_receive_hook_script`]). This crate turns such a request
//! (its headers and body bytes) into a normalised [`Event`]:
//!
//! 1. [`verify`] authenticates it: an HMAC-SHA256 signature of the body (GitHub,
//!    Gitea/Forgejo, the generic hook) or GitLab's shared token, compared in
//!    constant time. An empty secret is refused, never a pass.
//! 2. [`parse`] reads it into an [`Event`]: a [`Push`] of a branch or tag, a
//!    [`PullRequest`], a [`Ping`](Event::Ping), or [`Ignored`](Event::Ignored)
//!    with the reason (issues, stars, deleted branches...).
//!
//! [`verify_and_parse`] does both, in that order. [`should_skip`] applies
//! CircleCI's `[ci skip]` rule to a commit message.
//!
//! The crate does no I/O and never panics on input: whatever the headers and
//! body, the answer is an event or a [`WebhookError`] saying what is wrong (for a
//! missing field, its JSON path). Bodies over [`MAX_BODY_BYTES`] are refused
//! before they are read. SHAs in events are checked to be hex and ref names to be
//! valid git ref names, so both are safe to pass to git.
//!
//! ```
//! use orrery_vcs::{Event, GitRef, Headers, Provider, sign, verify_and_parse};
//!
//! let body = br#"{"ref": "refs/heads/main",
//!     "after": "0123456789abcdef0123456789abcdef01234567",
//!     "repository": "/srv/git/app.git", "message": "Fix the build [ci skip]"}"#;
//! let signature = format!("sha256={}", sign(body, "s3cret"));
//! let headers = [("X-Orrery-Signature", signature.as_str())];
//! let event = verify_and_parse(Provider::Generic, &Headers(&headers), body, "s3cret").unwrap();
//! let Event::Push(push) = event else { panic!("a push") };
//! assert_eq!(push.git_ref, GitRef::Branch("main".into()));
//! assert_eq!(push.repo_full_name, "app");
//! assert!(orrery_vcs::should_skip(&push.commit.unwrap().message()));
//! ```
//!
//! Modules: [`model`] holds the data types; `github`, `gitlab`, `gitea` and
//! `generic` read each provider's payloads; `signature` authenticates;
//! `payload` holds the shared JSON reading and checks.

mod error;
mod generic;
mod gitea;
mod github;
mod gitlab;
pub mod model;
mod payload;
mod signature;

pub use error::WebhookError;
pub use generic::post_receive_hook_script;
pub use model::{Commit, Event, GitRef, Headers, Provider, PullRequest, Push, UnknownProvider};
pub use payload::MAX_BODY_BYTES;
pub use signature::sign;

use signature::{
    FORGEJO_SIGNATURE, GENERIC_SIGNATURE, GITEA_SIGNATURE, GITHUB_SIGNATURE, check_hmac,
    check_hmac_value, check_token,
};

/// Authenticates a webhook from `provider` against the shared `secret`.
///
/// - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(body, secret)>`. The
///   legacy SHA-1 `X-Hub-Signature` is not accepted.
/// - GitLab: `X-Gitlab-Token` must equal the secret.
/// - Gitea/Forgejo: the first present of `X-Forgejo-Signature` and
///   `X-Gitea-Signature` (bare hex) and `X-Hub-Signature-256` (`sha256=` hex).
/// - Generic: `X-Orrery-Signature: sha256=<hex>`.
///
/// Hex digits may be of either case. Errors: [`WebhookError::NoSecret`] for an
/// empty secret, [`WebhookError::MissingSignature`], [`WebhookError::BadSignature`]
/// (malformed or wrong), [`WebhookError::BodyTooLarge`].
pub fn verify(
    provider: Provider,
    headers: &Headers<'_>,
    body: &[u8],
    secret: &str,
) -> Result<(), WebhookError> {
    payload::check_size(body)?;
    if secret.is_empty() {
        return Err(WebhookError::NoSecret);
    }
    match provider {
        Provider::GitHub => check_hmac(headers, GITHUB_SIGNATURE, "sha256=", body, secret),
        Provider::GitLab => check_token(headers, secret),
        Provider::Gitea => {
            let candidates = [
                (FORGEJO_SIGNATURE, ""),
                (GITEA_SIGNATURE, ""),
                (GITHUB_SIGNATURE, "sha256="),
            ];
            let (name, prefix, value) = candidates
                .iter()
                .find_map(|&(name, prefix)| headers.get(name).map(|v| (name, prefix, v)))
                .ok_or_else(|| WebhookError::MissingSignature(GITEA_SIGNATURE.to_string()))?;
            check_hmac_value(value, name, prefix, body, secret)
        }
        Provider::Generic => check_hmac(headers, GENERIC_SIGNATURE, "sha256=", body, secret),
    }
}

/// Reads a webhook from `provider` into an [`Event`], without authenticating it
/// (see [`verify`]).
///
/// The event kind comes from `X-GitHub-Event`, `X-Gitlab-Event`,
/// `X-Forgejo-Event`/`X-Gitea-Event`; the generic webhook is always a push. A
/// kind Orrery does not act on is [`Event::Ignored`]; a header value that is not
/// of the provider's form is [`WebhookError::UnknownEvent`]. The body is JSON,
/// or a form whose `payload` field is JSON when `Content-Type` is
/// `application/x-www-form-urlencoded` (GitHub's default).
pub fn parse(
    provider: Provider,
    headers: &Headers<'_>,
    body: &[u8],
) -> Result<Event, WebhookError> {
    match provider {
        Provider::GitHub => github::parse(headers, body),
        Provider::GitLab => gitlab::parse(headers, body),
        Provider::Gitea => gitea::parse(headers, body),
        Provider::Generic => generic::parse(headers, body),
    }
}

/// [`verify`], then [`parse`]: the one call a webhook endpoint needs.
pub fn verify_and_parse(
    provider: Provider,
    headers: &Headers<'_>,
    body: &[u8],
    secret: &str,
) -> Result<Event, WebhookError> {
    verify(provider, headers, body, secret)?;
    parse(provider, headers, body)
}

/// How many characters of a commit message [`should_skip`] looks at.
pub const SKIP_WINDOW_CHARS: usize = 250;

/// Whether a commit message asks CircleCI not to build: `[ci skip]` or
/// `[skip ci]`, exactly so (case-sensitive), wholly within the message's first
/// 250 characters, in the subject or the body.
///
/// CircleCI applies this to the head commit of a push; the caller decides where
/// it applies.
///
/// ```
/// use orrery_vcs::should_skip;
/// assert!(should_skip("docs: typo [skip ci]"));
/// assert!(should_skip("Subject\n\nBody [ci skip]"));
/// assert!(!should_skip("[CI SKIP] shouting does not count"));
/// assert!(!should_skip(&format!("{}[ci skip]", "x".repeat(250))));
/// ```
pub fn should_skip(commit_message: &str) -> bool {
    let end = commit_message
        .char_indices()
        .nth(SKIP_WINDOW_CHARS)
        .map_or(commit_message.len(), |(i, _)| i);
    let window = &commit_message[..end];
    window.contains("[ci skip]") || window.contains("[skip ci]")
}
