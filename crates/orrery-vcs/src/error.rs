//! Why a webhook was refused.

/// Why [`verify`](crate::verify) or [`parse`](crate::parse) refused a webhook.
///
/// [`WebhookError::is_unauthenticated`] and [`WebhookError::is_too_large`] sort the
/// errors the way an HTTP handler answers them (401, 413, 400 for the rest).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The secret to check the webhook against is empty. Such a webhook would be
    /// accepted from anyone (a GitLab token header may be empty too), so this is a
    /// configuration error, never a pass.
    #[error("no webhook secret is configured, so the webhook cannot be authenticated")]
    NoSecret,
    /// The header carrying the signature or token is absent.
    #[error("the webhook has no `{0}` header")]
    MissingSignature(String),
    /// The signature or token is malformed or does not match.
    #[error("the `{0}` header does not match the body and the secret")]
    BadSignature(String),
    /// The header naming the kind of event is absent.
    #[error("the webhook has no `{0}` header")]
    MissingEventHeader(String),
    /// The event header's value is not an event kind of this provider.
    #[error("unknown event kind `{0}`")]
    UnknownEvent(String),
    /// The body is not a JSON object (or a form whose `payload` field is one).
    #[error("the body is not a JSON object: {0}")]
    InvalidJson(String),
    /// A field the event needs is absent, `null`, of the wrong type or malformed;
    /// `path` is its JSON path (`pull_request.head.sha`).
    #[error("field `{path}` is missing or is not {expected}")]
    MissingField {
        /// The JSON path of the field.
        path: String,
        /// What the field should be (`a string`, `a commit SHA`...).
        expected: &'static str,
    },
    /// The body is larger than [`MAX_BODY_BYTES`](crate::MAX_BODY_BYTES).
    #[error("the body is {size} bytes, more than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The body's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

impl WebhookError {
    /// Whether the webhook failed authentication (a missing or wrong signature or
    /// token, or no secret to check it with).
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            WebhookError::NoSecret
                | WebhookError::MissingSignature(_)
                | WebhookError::BadSignature(_)
        )
    }

    /// Whether the body was refused for its size.
    pub fn is_too_large(&self) -> bool {
        matches!(self, WebhookError::BodyTooLarge { .. })
    }

    pub(crate) fn field(path: impl Into<String>, expected: &'static str) -> Self {
        WebhookError::MissingField {
            path: path.into(),
            expected,
        }
    }
}
