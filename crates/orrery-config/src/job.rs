//! Job expansion: arguments bound and substituted, the executor inlined and
//! merged, commands inlined into steps, `when`/`unless` steps resolved, and the
//! result typed into [`crate::plan::Job`].

use std::sync::Arc;

use indexmap::IndexMap;

use crate::compile::{Compiler, Def, Kind};
use crate::diag::suggest;
use crate::params::{self, unescape};
use crate::plan::{
    AddSshKeys, AttachWorkspace, AwsAuth, Checkout, CommandLine, ConfigVersion, DockerAuth,
    DockerImage, Executor, Job, JobType, Machine, Macos, PersistToWorkspace, RestoreCache, Run,
    SaveCache, SetupRemoteDocker, Step, StepWhen, StoreArtifacts, StoreTestResults, parse_duration,
};
use crate::yaml::{Map, Node, SourceId, Span, Value};

/// How a job is invoked: its arguments and the invocation's extra steps.
pub(crate) struct Invocation<'n> {
    pub args: Vec<(&'n Arc<str>, Span, &'n Node)>,
    pub pre_steps: Option<&'n Node>,
    pub post_steps: Option<&'n Node>,
    pub at: Span,
}

const JOB_KEYS: &[&str] = &[
    "docker",
    "machine",
    "macos",
    "executor",
    "resource_class",
    "parallelism",
    "shell",
    "working_directory",
    "environment",
    "steps",
    "circleci_ip_ranges",
    "retention",
    "type",
    "parameters",
    "description",
    // Deprecated job-level branch filter: accepted and ignored, as CircleCI does
    // for workflows.
    "branches",
];

const MAX_COMMAND_DEPTH: usize = 40;

/// An executor's contribution to a job, before the job's own keys override it.
#[derive(Default)]
struct ExecutorParts {
    executor: Option<Executor>,
    resource_class: Option<String>,
    shell: Option<String>,
    working_directory: Option<String>,
    environment: IndexMap<String, String>,
}

impl Compiler<'_> {
    /// The `type` a job definition declares, if any (`approval` has no body).
    pub fn job_def_type(def: &Def) -> Option<&str> {
        def.node.as_map()?.get("type")?.as_str()
    }

    /// Expands a job definition for one invocation.
    pub fn compile_job(&mut self, def: &Def, name: &str, inv: &Invocation<'_>) -> Job {
        self.trace.push(format!("Error calling job: '{name}'"));
        let job = self.compile_job_inner(def, inv);
        self.trace.pop();
        job
    }

    fn compile_job_inner(&mut self, def: &Def, inv: &Invocation<'_>) -> Job {
        let mut problems = Vec::new();
        let bindings = params::bind(&def.params, &inv.args, inv.at, &mut problems);
        self.param_problems(problems);
        let body = self.substitute_body(def, &bindings);
        let map = &body;
        self.check_keys(map, JOB_KEYS, &format!("job `{}`", def.name));

        let job_type = match map.get("type") {
            None => JobType::Build,
            Some(t) => match t.as_str() {
                Some("build") => JobType::Build,
                Some("no-op") => JobType::NoOp,
                Some(other @ ("release" | "lock" | "unlock")) => {
                    self.error(
                        format!("job type `{other}` is not supported by Orrery"),
                        t.span,
                    );
                    JobType::Build
                }
                _ => {
                    self.error_hint(
                        format!(
                            "job `{}`: unknown type `{}`",
                            def.name,
                            t.scalar_text().unwrap_or_default()
                        ),
                        t.span,
                        Some("job types are build, no-op and approval".into()),
                    );
                    JobType::Build
                }
            },
        };

        let executor_keys: Vec<&crate::yaml::Entry> = ["docker", "machine", "macos", "executor"]
            .iter()
            .filter_map(|k| map.entry(k))
            .collect();
        if executor_keys.len() > 1 {
            let names: Vec<&str> = executor_keys.iter().map(|e| &*e.key).collect();
            let span = executor_keys[1].key_span;
            self.error_hint(
                format!(
                    "job `{}` has more than one executor ({}); use exactly one",
                    def.name,
                    names.join(", ")
                ),
                span,
                Some("an `executor:` can be combined with job keys such as `resource_class` and `environment`, but not with `docker`, `machine` or `macos`".into()),
            );
        }
        let mut parts = match map.get("executor") {
            Some(e) => self.resolve_executor(e),
            None => ExecutorParts::default(),
        };
        if let Some(node) = map.get("docker") {
            parts.executor = self.docker(node);
        }
        if let Some(node) = map.get("machine") {
            parts.executor = self.machine(node, &mut parts.resource_class, &mut parts.shell);
        }
        if let Some(node) = map.get("macos") {
            parts.executor = self.macos(node, &mut parts.resource_class, &mut parts.shell);
        }
        if parts.executor.is_none() && executor_keys.is_empty() && job_type == JobType::Build {
            self.error_hint(
                format!("job `{}` has no executor", def.name),
                def.node.span,
                Some("add one of `docker`, `machine`, `macos` or `executor`".into()),
            );
        }
        if let Some(rc) = map.get("resource_class") {
            parts.resource_class = self.text(rc, "resource_class");
        }
        if let Some(s) = map.get("shell") {
            parts.shell = self.text(s, "shell");
        }
        if let Some(wd) = map.get("working_directory") {
            parts.working_directory = self.text(wd, "working_directory");
        }
        if let Some(env) = map.get("environment") {
            let job_env = self.environment(env);
            parts.environment.extend(job_env);
        }

        let mut steps = Vec::new();
        if let Some(pre) = inv.pre_steps {
            self.expand_steps(pre, &mut steps);
        }
        match map.get("steps") {
            Some(s) => self.expand_steps(s, &mut steps),
            None if job_type == JobType::Build => {
                self.error(
                    format!("job `{}`: required key [steps] not found", def.name),
                    def.node.span,
                );
            }
            None => {}
        }
        if let Some(post) = inv.post_steps {
            self.expand_steps(post, &mut steps);
        }

        let parallelism = map.get("parallelism").and_then(|p| self.parallelism(p));
        let circleci_ip_ranges = map
            .get("circleci_ip_ranges")
            .and_then(|n| self.boolean(n, "circleci_ip_ranges"));
        let retention_caches = map.get("retention").and_then(|r| self.retention(r));

        Job {
            job_type,
            executor: parts.executor,
            resource_class: parts.resource_class,
            parallelism,
            working_directory: parts.working_directory,
            shell: parts.shell,
            environment: parts.environment,
            steps,
            circleci_ip_ranges,
            retention_caches,
        }
    }

    fn parallelism(&mut self, node: &Node) -> Option<u32> {
        let n = match &node.value {
            Value::Int(i) => Some(*i),
            Value::Str(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if (1..=1000).contains(&n) => Some(n as u32),
            _ => {
                self.error(
                    format!(
                        "parallelism must be a whole number from 1 to 1000, found: {}",
                        node.scalar_text()
                            .unwrap_or_else(|| node.type_name().into())
                    ),
                    node.span,
                );
                None
            }
        }
    }

    fn retention(&mut self, node: &Node) -> Option<String> {
        let Some(map) = node.as_map() else {
            self.error(
                format!(
                    "retention: expected type: Mapping, found: {}",
                    node.type_name()
                ),
                node.span,
            );
            return None;
        };
        self.check_keys(map, &["caches"], "retention");
        let caches = map.get("caches")?;
        let Some(text) = caches.as_str() else {
            self.error(
                format!(
                    "retention.caches: expected type: String, found: {}",
                    caches.type_name()
                ),
                caches.span,
            );
            return None;
        };
        let days = text.strip_suffix('d').and_then(|d| d.parse::<u32>().ok());
        if !days.is_some_and(|d| (1..=30).contains(&d)) || text.starts_with('0') {
            self.error(
                format!("retention.caches: string [{text}] does not match pattern ^([1-9]|[12][0-9]|30)d$"),
                caches.span,
            );
            return None;
        }
        Some(text.to_string())
    }

    fn resolve_executor(&mut self, node: &Node) -> ExecutorParts {
        let (name_node, args_map) = match &node.value {
            Value::Str(_) => (node, None),
            Value::Map(m) => match m.get("name") {
                Some(n) => (n, Some(m)),
                None => {
                    self.error("executor: required key [name] not found", node.span);
                    return ExecutorParts::default();
                }
            },
            _ => {
                self.error(
                    format!(
                        "executor must be a name or a map with `name` and arguments, found: {}",
                        node.type_name()
                    ),
                    node.span,
                );
                return ExecutorParts::default();
            }
        };
        let Some(name) = name_node.as_str() else {
            self.error(
                format!(
                    "executor name: expected type: String, found: {}",
                    name_node.type_name()
                ),
                name_node.span,
            );
            return ExecutorParts::default();
        };
        let scope = name_node.span.source;
        let Some((_, def)) = self.lookup(scope, Kind::Executor, name) else {
            if self.under_failed_orb(scope, name) {
                return ExecutorParts::default();
            }
            let candidates = self.visible_names(scope, Kind::Executor);
            self.error_hint(
                format!("Cannot find a definition for executor named {name}"),
                name_node.span,
                suggest(name, candidates.iter().map(String::as_str)).or_else(|| {
                    name.contains('/')
                        .then(|| "check the orb alias under `orbs:`".to_string())
                }),
            );
            return ExecutorParts::default();
        };
        let args: Vec<(&Arc<str>, Span, &Node)> = args_map
            .map(|m| {
                m.iter()
                    .filter(|e| &*e.key != "name")
                    .map(|e| (&e.key, e.key_span, &e.value))
                    .collect()
            })
            .unwrap_or_default();
        self.trace.push(format!("Error calling executor: '{name}'"));
        let mut problems = Vec::new();
        let bindings = params::bind(&def.params, &args, node.span, &mut problems);
        self.param_problems(problems);
        let body = self.substitute_body(&def, &bindings);
        let map = &body;
        let mut parts = ExecutorParts::default();
        let kinds: Vec<&str> = ["docker", "machine", "macos", "windows"]
            .into_iter()
            .filter(|k| map.contains_key(k))
            .collect();
        if kinds.len() != 1 {
            self.error_hint(
                format!(
                    "executor `{name}` must have exactly one of docker, machine or macos{}",
                    if kinds.is_empty() {
                        String::new()
                    } else {
                        format!(" (found {})", kinds.join(", "))
                    }
                ),
                def.node.span,
                None,
            );
        }
        if let Some(rc) = map.get("resource_class") {
            parts.resource_class = self.text(rc, "resource_class");
        }
        if let Some(s) = map.get("shell") {
            parts.shell = self.text(s, "shell");
        }
        if let Some(node) = map.get("docker") {
            parts.executor = self.docker(node);
        }
        if let Some(node) = map.get("machine") {
            parts.executor = self.machine(node, &mut parts.resource_class, &mut parts.shell);
        }
        if let Some(node) = map.get("macos") {
            parts.executor = self.macos(node, &mut parts.resource_class, &mut parts.shell);
        }
        if let Some(node) = map.get("windows") {
            self.error(
                "the `windows` executor key is not supported; use `machine` with a Windows image",
                node.span,
            );
        }
        if let Some(wd) = map.get("working_directory") {
            parts.working_directory = self.text(wd, "working_directory");
        }
        if let Some(env) = map.get("environment") {
            parts.environment = self.environment(env);
        }
        self.trace.pop();
        parts
    }

    fn docker(&mut self, node: &Node) -> Option<Executor> {
        let Some(items) = node.as_seq() else {
            self.error(
                format!(
                    "docker: expected type: Sequence (a list of images), found: {}",
                    node.type_name()
                ),
                node.span,
            );
            return None;
        };
        if items.is_empty() {
            self.error("docker: needs at least one image", node.span);
            return None;
        }
        let mut images = Vec::with_capacity(items.len());
        for item in items {
            let Some(map) = item.as_map() else {
                self.error(
                    format!(
                        "docker image: expected type: Mapping with `image`, found: {}",
                        item.type_name()
                    ),
                    item.span,
                );
                continue;
            };
            self.check_keys(
                map,
                &[
                    "image",
                    "name",
                    "entrypoint",
                    "command",
                    "user",
                    "environment",
                    "auth",
                    "aws_auth",
                ],
                "docker image",
            );
            let Some(image) = map.get("image").and_then(|i| self.text(i, "image")) else {
                if map.get("image").is_none() {
                    self.error("docker image: required key [image] not found", item.span);
                }
                continue;
            };
            let auth = map.get("auth").and_then(|a| {
                let m = self.expect_map(a, "auth")?;
                self.check_keys(m, &["username", "password"], "auth");
                Some(DockerAuth {
                    username: m
                        .get("username")
                        .and_then(|u| self.text(u, "username"))
                        .unwrap_or_default(),
                    password: m
                        .get("password")
                        .and_then(|u| self.text(u, "password"))
                        .unwrap_or_default(),
                })
            });
            let aws_auth = map.get("aws_auth").and_then(|a| {
                let m = self.expect_map(a, "aws_auth")?;
                self.check_keys(
                    m,
                    &[
                        "aws_access_key_id",
                        "aws_secret_access_key",
                        "oidc_role_arn",
                    ],
                    "aws_auth",
                );
                if let Some(arn) = m.get("oidc_role_arn") {
                    return Some(AwsAuth::Oidc {
                        oidc_role_arn: self.text(arn, "oidc_role_arn").unwrap_or_default(),
                    });
                }
                Some(AwsAuth::Keys {
                    aws_access_key_id: m
                        .get("aws_access_key_id")
                        .and_then(|v| self.text(v, "aws_access_key_id"))
                        .unwrap_or_default(),
                    aws_secret_access_key: m
                        .get("aws_secret_access_key")
                        .and_then(|v| self.text(v, "aws_secret_access_key"))
                        .unwrap_or_default(),
                })
            });
            images.push(DockerImage {
                image,
                name: map.get("name").and_then(|n| self.text(n, "name")),
                entrypoint: map
                    .get("entrypoint")
                    .and_then(|e| self.command_line(e, "entrypoint")),
                command: map
                    .get("command")
                    .and_then(|e| self.command_line(e, "command")),
                user: map.get("user").and_then(|u| self.text(u, "user")),
                environment: map
                    .get("environment")
                    .map(|e| self.environment(e))
                    .unwrap_or_default(),
                auth,
                aws_auth,
            });
        }
        Some(Executor::Docker(images))
    }

    fn machine(
        &mut self,
        node: &Node,
        resource_class: &mut Option<String>,
        shell: &mut Option<String>,
    ) -> Option<Executor> {
        match &node.value {
            Value::Bool(true) => Some(Executor::Machine(Machine {
                shorthand: true,
                image: None,
                docker_layer_caching: None,
            })),
            Value::Map(map) => {
                self.check_keys(
                    map,
                    &[
                        "image",
                        "docker_layer_caching",
                        "enabled",
                        "resource_class",
                        "shell",
                    ],
                    "machine",
                );
                if let Some(rc) = map.get("resource_class") {
                    *resource_class = self.text(rc, "resource_class");
                }
                if let Some(s) = map.get("shell") {
                    *shell = self.text(s, "shell");
                }
                Some(Executor::Machine(Machine {
                    shorthand: false,
                    image: map.get("image").and_then(|i| self.text(i, "image")),
                    docker_layer_caching: map
                        .get("docker_layer_caching")
                        .and_then(|d| self.boolean(d, "docker_layer_caching")),
                }))
            }
            _ => {
                self.error(
                    format!(
                        "machine: expected `true` or a map with `image`, found: {}",
                        node.scalar_text()
                            .unwrap_or_else(|| node.type_name().into())
                    ),
                    node.span,
                );
                None
            }
        }
    }

    fn macos(
        &mut self,
        node: &Node,
        resource_class: &mut Option<String>,
        shell: &mut Option<String>,
    ) -> Option<Executor> {
        let map = self.expect_map(node, "macos")?;
        self.check_keys(map, &["xcode", "resource_class", "shell"], "macos");
        if let Some(rc) = map.get("resource_class") {
            *resource_class = self.text(rc, "resource_class");
        }
        if let Some(s) = map.get("shell") {
            *shell = self.text(s, "shell");
        }
        let Some(xcode) = map.get("xcode") else {
            self.error("macos: required key [xcode] not found", node.span);
            return None;
        };
        Some(Executor::Macos(Macos {
            xcode: self.text(xcode, "xcode").unwrap_or_default(),
        }))
    }

    fn command_line(&mut self, node: &Node, what: &str) -> Option<CommandLine> {
        match &node.value {
            Value::Seq(items) => Some(CommandLine::List(
                items.iter().filter_map(|i| self.text(i, what)).collect(),
            )),
            _ => self.text(node, what).map(CommandLine::String),
        }
    }

    pub fn expect_map<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n Map> {
        match node.as_map() {
            Some(m) => Some(m),
            None => {
                self.error(
                    format!(
                        "{what}: expected type: Mapping, found: {}",
                        node.type_name()
                    ),
                    node.span,
                );
                None
            }
        }
    }

    /// A scalar as text; `\<<` escapes are resolved in 2.1 configs.
    pub fn text(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(if self.version == ConfigVersion::V2_1 {
                unescape(s).into_owned()
            } else {
                s.to_string()
            }),
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
                node.scalar_text().map(|t| t.into_owned())
            }
            _ => {
                self.error(
                    format!("{what}: expected type: String, found: {}", node.type_name()),
                    node.span,
                );
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            _ => {
                self.error(
                    format!(
                        "{what}: expected type: Boolean, found: {}",
                        node.type_name()
                    ),
                    node.span,
                );
                None
            }
        }
    }

    fn string_list(&mut self, node: &Node, what: &str) -> Vec<String> {
        match &node.value {
            Value::Seq(items) => items.iter().filter_map(|i| self.text(i, what)).collect(),
            Value::Str(_) => self.text(node, what).into_iter().collect(),
            _ => {
                self.error(
                    format!(
                        "{what}: expected type: Sequence, found: {}",
                        node.type_name()
                    ),
                    node.span,
                );
                Vec::new()
            }
        }
    }

    /// `environment:` as a map, a list of maps, or a list of `NAME=value`.
    pub fn environment(&mut self, node: &Node) -> IndexMap<String, String> {
        let mut out = IndexMap::new();
        match &node.value {
            Value::Map(map) => {
                for entry in map.iter() {
                    let value = match &entry.value.value {
                        Value::Null => String::new(),
                        _ => self
                            .text(&entry.value, &format!("environment.{}", entry.key))
                            .unwrap_or_default(),
                    };
                    out.insert(entry.key.to_string(), value);
                }
            }
            Value::Seq(items) => {
                for item in items {
                    match &item.value {
                        Value::Map(_) => out.extend(self.environment(item)),
                        Value::Str(s) => {
                            let s = if self.version == ConfigVersion::V2_1 {
                                unescape(s).into_owned()
                            } else {
                                s.to_string()
                            };
                            match s.split_once('=') {
                                Some((k, v)) => out.insert(k.to_string(), v.to_string()),
                                None => out.insert(s, String::new()),
                            };
                        }
                        _ => self.error(
                            format!(
                                "environment entry: expected `NAME=value` or a map, found: {}",
                                item.type_name()
                            ),
                            item.span,
                        ),
                    }
                }
            }
            Value::Null => {}
            // A single `NAME=value` string, as a one-item list.
            Value::Str(s) if s.contains('=') => {
                let (k, v) = s.split_once('=').unwrap_or_default();
                out.insert(k.trim().to_string(), v.to_string());
            }
            _ => self.error(
                format!(
                    "environment: expected type: Mapping, found: {}",
                    node.type_name()
                ),
                node.span,
            ),
        }
        out
    }

    /// Expands a list of steps (commands inlined, conditions resolved).
    pub fn expand_steps(&mut self, node: &Node, out: &mut Vec<Step>) {
        match &node.value {
            Value::Seq(items) => {
                for item in items {
                    self.expand_step(item, out);
                }
            }
            Value::Null => {}
            _ => self.error(
                format!(
                    "steps: expected type: Sequence, found: {}",
                    node.type_name()
                ),
                node.span,
            ),
        }
    }

    fn expand_step(&mut self, node: &Node, out: &mut Vec<Step>) {
        match &node.value {
            Value::Str(name) => {
                let scope = node.span.source;
                self.invoke_step(scope, name, None, node.span, out);
            }
            Value::Map(map) if map.len() == 1 => {
                let entry = &map.entries[0];
                let args = if entry.value.is_null() {
                    None
                } else {
                    Some(&entry.value)
                };
                match &*entry.key {
                    "when" | "unless" => self.conditional_step(&entry.key, &entry.value, out),
                    "steps" if self.version == ConfigVersion::V2_1 => {
                        self.expand_steps(&entry.value, out)
                    }
                    name => {
                        self.invoke_step(entry.key_span.source, name, args, entry.key_span, out)
                    }
                }
            }
            // A steps argument used as one item of a list is spliced in.
            Value::Seq(items) => {
                for item in items {
                    self.expand_step(item, out);
                }
            }
            Value::Map(map) => {
                let keys: Vec<&str> = map.keys().collect();
                self.error_hint(
                    format!(
                        "a step has exactly one key (the step or command name), found {}: {}",
                        map.len(),
                        keys.join(", ")
                    ),
                    node.span,
                    Some("indent the step's options under its name, e.g. `- run:` then `    command: ...`".into()),
                );
            }
            _ => self.error(
                format!(
                    "a step must be a name or a map, found: {}",
                    node.type_name()
                ),
                node.span,
            ),
        }
    }

    fn conditional_step(&mut self, key: &str, value: &Node, out: &mut Vec<Step>) {
        if self.version != ConfigVersion::V2_1 {
            self.error(
                format!("`{key}` steps require config version 2.1"),
                value.span,
            );
            return;
        }
        let Some(map) = self.expect_map(value, key) else {
            return;
        };
        self.check_keys(map, &["condition", "steps"], &format!("{key} step"));
        let (Some(condition), Some(steps)) = (map.get("condition"), map.get("steps")) else {
            let missing = if map.get("condition").is_none() {
                "condition"
            } else {
                "steps"
            };
            self.error(
                format!("{key} step: required key [{missing}] not found"),
                value.span,
            );
            return;
        };
        let truth = crate::logic::evaluate(self, condition);
        if truth == (key == "when") {
            self.expand_steps(steps, out);
        }
    }

    /// A step by name: a command of the scope, or a built-in step.
    fn invoke_step(
        &mut self,
        scope: SourceId,
        name: &str,
        args: Option<&Node>,
        at: Span,
        out: &mut Vec<Step>,
    ) {
        if self.version == ConfigVersion::V2_1
            && let Some((_, def)) = self.lookup(scope, Kind::Command, name)
        {
            self.invoke_command(&def, name, args, at, out);
            return;
        }
        if let Some(step) = self.builtin_step(name, args, at) {
            if let Some(step) = step {
                out.push(step);
            }
            return;
        }
        if self.under_failed_orb(scope, name) {
            return;
        }
        let candidates = if self.version == ConfigVersion::V2_1 {
            self.visible_names(scope, Kind::Command)
        } else {
            Vec::new()
        };
        let builtins = BUILTIN_STEPS.iter().map(|s| s.to_string());
        let all: Vec<String> = candidates.into_iter().chain(builtins).collect();
        let hint = suggest(name, all.iter().map(String::as_str)).or_else(|| {
            if name.contains('/') {
                Some("check the orb alias under `orbs:` and the orb's command names".into())
            } else if self.version == ConfigVersion::V2_0 {
                Some("commands require `version: 2.1`".into())
            } else {
                None
            }
        });
        self.error_hint(
            format!("Cannot find a definition for command named {name}"),
            at,
            hint,
        );
    }

    fn invoke_command(
        &mut self,
        def: &Def,
        name: &str,
        args: Option<&Node>,
        at: Span,
        out: &mut Vec<Step>,
    ) {
        if self.expand_depth >= MAX_COMMAND_DEPTH {
            self.error(
                format!("command `{name}` nests more than {MAX_COMMAND_DEPTH} levels deep (does it call itself?)"),
                at,
            );
            return;
        }
        let arg_list: Vec<(&Arc<str>, Span, &Node)> = match args {
            None => Vec::new(),
            Some(node) => match &node.value {
                Value::Map(m) => m.iter().map(|e| (&e.key, e.key_span, &e.value)).collect(),
                _ => {
                    self.error_hint(
                        format!(
                            "arguments of command `{name}` must be a map, found: {}",
                            node.type_name()
                        ),
                        node.span,
                        Some(format!(
                            "write `- {name}:` followed by `parameter: value` lines"
                        )),
                    );
                    return;
                }
            },
        };
        self.trace.push(format!("Error calling command: '{name}'"));
        self.expand_depth += 1;
        let mut problems = Vec::new();
        let bindings = params::bind(&def.params, &arg_list, at, &mut problems);
        self.param_problems(problems);
        if let Some(steps) = def.node.as_map().and_then(|m| m.get("steps")) {
            let steps = self.substitute_parameters(steps, &bindings, &def.params);
            self.expand_steps(&steps, out);
        }
        self.expand_depth -= 1;
        self.trace.pop();
    }

    /// Types a built-in step; `None` when `name` is not one, `Some(None)` when it is
    /// but its arguments are wrong (already reported).
    fn builtin_step(&mut self, name: &str, args: Option<&Node>, at: Span) -> Option<Option<Step>> {
        // CircleCI 2.0 also took the hyphenated spellings of the special steps.
        let name = match name {
            "save-cache" => "save_cache",
            "restore-cache" => "restore_cache",
            "store-artifacts" => "store_artifacts",
            "store-test-results" => "store_test_results",
            "persist-to-workspace" => "persist_to_workspace",
            "attach-workspace" => "attach_workspace",
            "add-ssh-keys" => "add_ssh_keys",
            "setup-remote-docker" => "setup_remote_docker",
            other => other,
        };
        let step = match name {
            "run" | "deploy" => self.run_step(args, at, name == "deploy"),
            "checkout" => self
                .opt_map(args, "checkout", &["name", "path", "method", "depth"])
                .map(|m| {
                    Step::Checkout(Checkout {
                        name: self.field(m, "name"),
                        path: self.field(m, "path"),
                        method: self.field(m, "method"),
                        depth: m.and_then(|m| m.get("depth")).and_then(|d| match d.value {
                            Value::Int(i) if i > 0 => Some(i as u32),
                            _ => {
                                self.error(
                                    "checkout.depth must be a positive whole number",
                                    d.span,
                                );
                                None
                            }
                        }),
                    })
                }),
            "setup_remote_docker" => self
                .opt_map(
                    args,
                    "setup_remote_docker",
                    &[
                        "name",
                        "version",
                        "docker_layer_caching",
                        "reusable",
                        "exclusive",
                    ],
                )
                .map(|m| {
                    Step::SetupRemoteDocker(SetupRemoteDocker {
                        name: self.field(m, "name"),
                        version: self.field(m, "version"),
                        docker_layer_caching: m
                            .and_then(|m| m.get("docker_layer_caching"))
                            .and_then(|d| self.boolean(d, "docker_layer_caching")),
                    })
                }),
            "add_ssh_keys" => self
                .opt_map(args, "add_ssh_keys", &["name", "fingerprints"])
                .map(|m| {
                    Step::AddSshKeys(AddSshKeys {
                        name: self.field(m, "name"),
                        fingerprints: m
                            .and_then(|m| m.get("fingerprints"))
                            .map(|f| self.string_list(f, "fingerprints"))
                            .unwrap_or_default(),
                    })
                }),
            "save_cache" => self
                .req_map(
                    args,
                    at,
                    "save_cache",
                    &["name", "key", "paths", "when"],
                    &["key", "paths"],
                )
                .map(|m| {
                    let key = self.field(Some(m), "key").unwrap_or_default();
                    if key.len() > 900 {
                        self.error("save_cache.key is longer than 900 characters", at);
                    }
                    Step::SaveCache(SaveCache {
                        name: self.field(Some(m), "name"),
                        key,
                        paths: m
                            .get("paths")
                            .map(|p| self.string_list(p, "paths"))
                            .unwrap_or_default(),
                        when: m.get("when").and_then(|w| self.step_when(w)),
                    })
                }),
            "restore_cache" => self
                .req_map(args, at, "restore_cache", &["name", "key", "keys"], &[])
                .and_then(|m| {
                    let mut keys = Vec::new();
                    if let Some(k) = self.field(Some(m), "key") {
                        keys.push(k);
                    }
                    if let Some(list) = m.get("keys") {
                        keys.extend(self.string_list(list, "keys"));
                    }
                    if keys.is_empty() {
                        self.error("restore_cache: required key [key] or [keys] not found", at);
                        return None;
                    }
                    Some(Step::RestoreCache(RestoreCache {
                        name: self.field(Some(m), "name"),
                        single_key: m.contains_key("key") && !m.contains_key("keys"),
                        keys,
                    }))
                }),
            "store_artifacts" => self
                .req_map(
                    args,
                    at,
                    "store_artifacts",
                    &["name", "path", "destination"],
                    &["path"],
                )
                .map(|m| {
                    Step::StoreArtifacts(StoreArtifacts {
                        name: self.field(Some(m), "name"),
                        path: self.field(Some(m), "path").unwrap_or_default(),
                        destination: self.field(Some(m), "destination"),
                    })
                }),
            "store_test_results" => self
                .req_map(args, at, "store_test_results", &["name", "path"], &["path"])
                .map(|m| {
                    Step::StoreTestResults(StoreTestResults {
                        name: self.field(Some(m), "name"),
                        path: self.field(Some(m), "path").unwrap_or_default(),
                    })
                }),
            "persist_to_workspace" => self
                .req_map(
                    args,
                    at,
                    "persist_to_workspace",
                    &["name", "root", "paths"],
                    &["root", "paths"],
                )
                .map(|m| {
                    Step::PersistToWorkspace(PersistToWorkspace {
                        name: self.field(Some(m), "name"),
                        root: self.field(Some(m), "root").unwrap_or_default(),
                        paths: m
                            .get("paths")
                            .map(|p| self.string_list(p, "paths"))
                            .unwrap_or_default(),
                    })
                }),
            "attach_workspace" => self
                .req_map(args, at, "attach_workspace", &["name", "at"], &["at"])
                .map(|m| {
                    Step::AttachWorkspace(AttachWorkspace {
                        name: self.field(Some(m), "name"),
                        at: self.field(Some(m), "at").unwrap_or_default(),
                    })
                }),
            _ => return None,
        };
        Some(step)
    }

    /// Arguments that may be absent (bare `- checkout`) or a map.
    fn opt_map<'n>(
        &mut self,
        args: Option<&'n Node>,
        step: &str,
        allowed: &[&str],
    ) -> Option<Option<&'n Map>> {
        match args {
            None => Some(None),
            Some(node) => {
                let m = self.expect_map(node, step)?;
                self.check_step_keys(m, allowed, step);
                Some(Some(m))
            }
        }
    }

    /// Arguments that must be a map with some keys present.
    fn req_map<'n>(
        &mut self,
        args: Option<&'n Node>,
        at: Span,
        step: &str,
        allowed: &[&str],
        required: &[&str],
    ) -> Option<&'n Map> {
        let Some(node) = args else {
            let needs = if required.is_empty() {
                "arguments".to_string()
            } else {
                required.join(" and ")
            };
            self.error(format!("{step} needs {needs}"), at);
            return None;
        };
        let m = self.expect_map(node, step)?;
        self.check_step_keys(m, allowed, step);
        let mut ok = true;
        for key in required {
            if !m.contains_key(key) {
                self.error(format!("{step}: required key [{key}] not found"), node.span);
                ok = false;
            }
        }
        ok.then_some(m)
    }

    /// Unknown keys of a built-in step are ignored with a warning: CircleCI runs
    /// configs that carry them (`store_artifacts: {when: always}`).
    fn check_step_keys(&mut self, map: &Map, allowed: &[&str], step: &str) {
        for entry in map.iter() {
            if !allowed.contains(&&*entry.key) {
                self.warning(
                    format!("{step}: unknown key [{}] is ignored", entry.key),
                    entry.key_span,
                    suggest(&entry.key, allowed.iter().copied()),
                );
            }
        }
    }

    fn field(&mut self, map: Option<&Map>, key: &str) -> Option<String> {
        let node = map?.get(key)?;
        if node.is_null() {
            return None;
        }
        self.text(node, key)
    }

    fn step_when(&mut self, node: &Node) -> Option<StepWhen> {
        match node.as_str() {
            Some("on_success") => Some(StepWhen::OnSuccess),
            Some("always") => Some(StepWhen::Always),
            Some("on_fail") => Some(StepWhen::OnFail),
            _ => {
                let text = node.scalar_text().unwrap_or_default().into_owned();
                self.error_hint(
                    format!("when: `{text}` is not one of on_success, always, on_fail"),
                    node.span,
                    suggest(&text, ["on_success", "always", "on_fail"]),
                );
                None
            }
        }
    }

    fn run_step(&mut self, args: Option<&Node>, at: Span, deploy: bool) -> Option<Step> {
        let step = if deploy { "deploy" } else { "run" };
        let Some(node) = args else {
            self.error_hint(
                format!("{step} needs a command"),
                at,
                Some(format!(
                    "write `- {step}: <command>` or `- {step}:` with `command:` under it"
                )),
            );
            return None;
        };
        let mut run = Run {
            command: String::new(),
            name: None,
            shell: None,
            environment: IndexMap::new(),
            background: None,
            working_directory: None,
            no_output_timeout: None,
            when: None,
            max_auto_reruns: None,
            auto_rerun_delay: None,
            deploy,
        };
        match &node.value {
            Value::Map(m) => {
                self.check_step_keys(
                    m,
                    &[
                        "command",
                        "name",
                        "shell",
                        "environment",
                        "background",
                        "working_directory",
                        "no_output_timeout",
                        "when",
                        "max_auto_reruns",
                        "auto_rerun_delay",
                    ],
                    step,
                );
                let Some(command) = m.get("command") else {
                    self.error(
                        format!("{step}: required key [command] not found"),
                        node.span,
                    );
                    return None;
                };
                run.command = self.text(command, "command")?;
                run.name = self.field(Some(m), "name");
                run.shell = self.field(Some(m), "shell");
                run.working_directory = self.field(Some(m), "working_directory");
                if let Some(env) = m.get("environment") {
                    run.environment = self.environment(env);
                }
                if let Some(bg) = m.get("background") {
                    run.background = self.boolean(bg, "background");
                }
                if let Some(t) = m.get("no_output_timeout") {
                    let text = self.text(t, "no_output_timeout");
                    match text {
                        Some(t) if parse_duration(&t).is_some() => run.no_output_timeout = Some(t),
                        Some(t) => self.error_hint(
                            format!("no_output_timeout: `{t}` is not a duration"),
                            m.get("no_output_timeout").map_or(at, |n| n.span),
                            Some("use a number with a unit: 30s, 20m, 1.5h".into()),
                        ),
                        None => {}
                    }
                }
                if let Some(w) = m.get("when") {
                    run.when = self.step_when(w);
                }
                if let Some(r) = m.get("max_auto_reruns") {
                    match r.value {
                        Value::Int(i) if (1..=5).contains(&i) => {
                            run.max_auto_reruns = Some(i as u32)
                        }
                        _ => {
                            self.error("max_auto_reruns must be a whole number from 1 to 5", r.span)
                        }
                    }
                }
                if let Some(d) = m.get("auto_rerun_delay") {
                    let text = self.text(d, "auto_rerun_delay");
                    match text.as_deref().and_then(parse_duration) {
                        Some(dur) if dur.as_secs() <= 600 && run.max_auto_reruns.is_some() => {
                            run.auto_rerun_delay = text;
                        }
                        Some(_) if run.max_auto_reruns.is_none() => self.error(
                            "auto_rerun_delay is only allowed with max_auto_reruns",
                            d.span,
                        ),
                        _ => {
                            self.error("auto_rerun_delay must be a duration of at most 10m", d.span)
                        }
                    }
                }
            }
            Value::Seq(_) => {
                self.error(
                    format!("{step}: expected a command string or a map, found: Sequence"),
                    node.span,
                );
                return None;
            }
            _ => {
                run.command = self.text(node, "command")?;
            }
        }
        Some(Step::Run(run))
    }
}

const BUILTIN_STEPS: &[&str] = &[
    "run",
    "checkout",
    "setup_remote_docker",
    "save_cache",
    "restore_cache",
    "store_artifacts",
    "store_test_results",
    "persist_to_workspace",
    "attach_workspace",
    "add_ssh_keys",
    "when",
    "unless",
];
