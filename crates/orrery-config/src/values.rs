//! Pipeline values (`<< pipeline.git.branch >>`) and the parameters a pipeline is
//! triggered with, as the compiler receives them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A value given to the compiler from outside the config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InputValue {
    Bool(bool),
    Integer(i64),
    String(String),
}

impl From<&str> for InputValue {
    fn from(s: &str) -> Self {
        InputValue::String(s.to_string())
    }
}

impl From<String> for InputValue {
    fn from(s: String) -> Self {
        InputValue::String(s)
    }
}

impl From<i64> for InputValue {
    fn from(i: i64) -> Self {
        InputValue::Integer(i)
    }
}

impl From<bool> for InputValue {
    fn from(b: bool) -> Self {
        InputValue::Bool(b)
    }
}

/// The `pipeline.*` values a config may reference, by full name
/// (`pipeline.git.branch`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineValues {
    values: BTreeMap<String, InputValue>,
}

/// Every pipeline value name CircleCI documents, with the value used when a
/// pipeline does not provide one (what CircleCI's CLI uses to validate locally).
const KNOWN: &[(&str, Default_)] = &[
    (
        "pipeline.id",
        Default_::Str("00000000-0000-0000-0000-000000000001"),
    ),
    ("pipeline.number", Default_::Int(1)),
    ("pipeline.name", Default_::Str("")),
    ("pipeline.project.git_url", Default_::Str("")),
    ("pipeline.project.type", Default_::Str("github")),
    ("pipeline.project.slug", Default_::Str("")),
    ("pipeline.definition.id", Default_::Str("")),
    ("pipeline.integration_source", Default_::Str("")),
    ("pipeline.git.tag", Default_::Str("")),
    ("pipeline.git.branch", Default_::Str("")),
    ("pipeline.git.branch.is_default", Default_::Bool(false)),
    ("pipeline.git.revision", Default_::Str("")),
    ("pipeline.git.base_revision", Default_::Str("")),
    ("pipeline.git.commit.url", Default_::Str("")),
    ("pipeline.git.commit.subject", Default_::Str("")),
    ("pipeline.git.commit.body", Default_::Str("")),
    ("pipeline.git.commit.author_login", Default_::Str("")),
    ("pipeline.git.commit.author_name", Default_::Str("")),
    ("pipeline.git.commit.author_email", Default_::Str("")),
    ("pipeline.git.commit.author_avatar_url", Default_::Str("")),
    ("pipeline.git.repo_url", Default_::Str("")),
    ("pipeline.git.repo_owner", Default_::Str("")),
    ("pipeline.git.repo_name", Default_::Str("")),
    ("pipeline.git.repo_id", Default_::Str("")),
    ("pipeline.git.ssh_checkout_url", Default_::Str("")),
    ("pipeline.trigger_source", Default_::Str("webhook")),
    ("pipeline.trigger.type", Default_::Str("")),
    ("pipeline.trigger.id", Default_::Str("")),
    ("pipeline.trigger.name", Default_::Str("")),
    ("pipeline.trigger.received_at", Default_::Str("")),
    ("pipeline.schedule.name", Default_::Str("")),
    ("pipeline.schedule.id", Default_::Str("")),
    ("pipeline.event.name", Default_::Str("")),
    ("pipeline.event.action", Default_::Str("")),
    ("pipeline.event.context.github.pr_url", Default_::Str("")),
    ("pipeline.event.github.after", Default_::Str("")),
    ("pipeline.event.github.ref", Default_::Str("")),
    ("pipeline.event.github.head_commit.url", Default_::Str("")),
    ("pipeline.event.github.label.name", Default_::Str("")),
    ("pipeline.event.github.label", Default_::Str("")),
    ("pipeline.event.github.comment.body", Default_::Str("")),
    ("pipeline.event.github.sender.type", Default_::Str("")),
    ("pipeline.event.github.sender.login", Default_::Str("")),
    ("pipeline.event.github.sender.avatar_url", Default_::Str("")),
    ("pipeline.event.github.repository.name", Default_::Str("")),
    ("pipeline.event.github.repository.url", Default_::Str("")),
    (
        "pipeline.event.github.repository.owner.login",
        Default_::Str(""),
    ),
    (
        "pipeline.event.github.pull_request.base.ref",
        Default_::Str(""),
    ),
    (
        "pipeline.event.github.pull_request.base.sha",
        Default_::Str(""),
    ),
    (
        "pipeline.event.github.pull_request.head.ref",
        Default_::Str(""),
    ),
    (
        "pipeline.event.github.pull_request.head.sha",
        Default_::Str(""),
    ),
    (
        "pipeline.event.github.pull_request.draft",
        Default_::Bool(false),
    ),
    (
        "pipeline.event.github.pull_request.title",
        Default_::Str(""),
    ),
    (
        "pipeline.event.github.pull_request.number",
        Default_::Int(0),
    ),
    (
        "pipeline.event.github.pull_request.merged",
        Default_::Bool(false),
    ),
    ("pipeline.event.github.pull_request.url", Default_::Str("")),
    (
        "pipeline.trigger_parameters.webhook.body",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.circleci.trigger_type",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.circleci.event_time",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.circleci.event_type",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.circleci.project_id",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.circleci.actor_id",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.github_app.ref",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.github_app.branch",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.github_app.checkout_sha",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.github_app.commit_sha",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.github_app.commit_title",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.github_app.commit_message",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.github_app.commit_timestamp",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.github_app.commit_author_name",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.github_app.commit_author_email",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.github_app.repo_name",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.github_app.repo_url",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.github_app.total_commits_count",
        Default_::Int(1),
    ),
    (
        "pipeline.trigger_parameters.github_app.user_avatar",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.github_app.user_id",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.github_app.user_name",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.github_app.user_username",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.github_app.web_url",
        Default_::Str(""),
    ),
    ("pipeline.trigger_parameters.gitlab.ref", Default_::Str("")),
    (
        "pipeline.trigger_parameters.gitlab.branch",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.gitlab.checkout_sha",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.gitlab.commit_sha",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.gitlab.commit_title",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.gitlab.commit_message",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.gitlab.commit_timestamp",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.gitlab.commit_author_name",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.gitlab.commit_author_email",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.gitlab.repo_name",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.gitlab.repo_url",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.gitlab.total_commits_count",
        Default_::Int(1),
    ),
    (
        "pipeline.trigger_parameters.gitlab.user_avatar",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.gitlab.user_id",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.gitlab.user_name",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.gitlab.user_username",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.gitlab.web_url",
        Default_::Str(""),
    ),
    ("pipeline.trigger_parameters.gitlab.type", Default_::Str("")),
    (
        "pipeline.trigger_parameters.gitlab.project_id",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.gitlab.default_branch",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.gitlab.x_gitlab_event_id",
        Default_::Str(""),
    ),
    (
        "pipeline.trigger_parameters.gitlab.is_fork_merge_request",
        Default_::Bool(false),
    ),
    ("pipeline.config.repository.name", Default_::Str("")),
    ("pipeline.config.repository.url", Default_::Str("")),
    (
        "pipeline.config.file_path",
        Default_::Str(".circleci/config.yml"),
    ),
    ("pipeline.config.ref", Default_::Str("")),
    ("pipeline.config.sha", Default_::Str("")),
    ("pipeline.deploy.component_name", Default_::Str("")),
    ("pipeline.deploy.environment_name", Default_::Str("")),
    ("pipeline.deploy.target_version", Default_::Str("")),
    ("pipeline.deploy.current_version", Default_::Str("")),
    ("pipeline.deploy.namespace", Default_::Str("")),
    ("pipeline.deploy.reason", Default_::Str("")),
];

enum Default_ {
    Str(&'static str),
    Int(i64),
    Bool(bool),
}

impl Default for PipelineValues {
    /// Every known value at its placeholder, as for a local validation.
    fn default() -> Self {
        let values = KNOWN
            .iter()
            .map(|(k, d)| {
                let v = match d {
                    Default_::Str(s) => InputValue::String((*s).to_string()),
                    Default_::Int(i) => InputValue::Integer(*i),
                    Default_::Bool(b) => InputValue::Bool(*b),
                };
                ((*k).to_string(), v)
            })
            .collect();
        PipelineValues { values }
    }
}

impl PipelineValues {
    /// Sets a value. Names are full (`pipeline.git.branch`); unknown names are
    /// allowed so that newer CircleCI values can be passed through.
    pub fn set(&mut self, name: &str, value: impl Into<InputValue>) -> &mut Self {
        self.values.insert(name.to_string(), value.into());
        self
    }

    pub fn get(&self, name: &str) -> Option<&InputValue> {
        self.values.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &InputValue)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether CircleCI documents a pipeline value of this name.
    pub fn is_known_name(name: &str) -> bool {
        KNOWN.iter().any(|(k, _)| *k == name)
    }
}
