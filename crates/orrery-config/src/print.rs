//! The `process` view of a plan: the compiled config as CircleCI's
//! `circleci config process` prints it.
//!
//! `# Orb '...' resolved to '...'` lines, then `version: 2`, the expanded `jobs`,
//! the `workflows` (with their `version: 2`), and a trailer with the original
//! file as comments. Keys of typed structures print in alphabetical order (as
//! CircleCI's output does); environment maps keep their order. Printing the body
//! and compiling it again gives the same body.

use std::sync::Arc;

use indexmap::IndexMap;

use crate::emit::emit;
use crate::filters::{Filters, PatternFilter};
use crate::plan::{
    AwsAuth, CommandLine, DockerImage, Executor, Job, JobType, Plan, RequiredStatus, Step,
    Workflow, WorkflowJob, WorkflowJobType,
};
use crate::yaml::{Map, Node, Span, Value};

fn sp() -> Span {
    Span::default()
}

fn s(text: &str) -> Node {
    Node::str(text, sp())
}

fn int(i: i64) -> Node {
    Node::new(Value::Int(i), sp())
}

fn boolean(b: bool) -> Node {
    Node::new(Value::Bool(b), sp())
}

fn seq(items: Vec<Node>) -> Node {
    Node::new(Value::Seq(items), sp())
}

/// Builds a map from entries, skipping absent values.
struct MapBuilder(Map);

impl MapBuilder {
    fn new() -> Self {
        MapBuilder(Map::default())
    }

    fn put(mut self, key: &str, value: Node) -> Self {
        self.0.entries.push(crate::yaml::Entry {
            key: Arc::from(key),
            key_span: sp(),
            value,
        });
        self
    }

    fn opt(self, key: &str, value: Option<Node>) -> Self {
        match value {
            Some(v) => self.put(key, v),
            None => self,
        }
    }

    fn opt_str(self, key: &str, value: &Option<String>) -> Self {
        self.opt(key, value.as_deref().map(s))
    }

    fn build(self) -> Node {
        Node::new(Value::Map(self.0), sp())
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn env(env: &IndexMap<String, String>) -> Option<Node> {
    if env.is_empty() {
        return None;
    }
    let mut b = MapBuilder::new();
    for (k, v) in env {
        b = b.put(k, s(v));
    }
    Some(b.build())
}

fn string_list(items: &[String]) -> Node {
    seq(items.iter().map(|i| s(i)).collect())
}

fn command_line(c: &CommandLine) -> Node {
    match c {
        CommandLine::String(t) => s(t),
        CommandLine::List(items) => string_list(items),
    }
}

fn docker_image(img: &DockerImage) -> Node {
    let auth = img.auth.as_ref().map(|a| {
        MapBuilder::new()
            .put("password", s(&a.password))
            .put("username", s(&a.username))
            .build()
    });
    let aws_auth = img.aws_auth.as_ref().map(|a| match a {
        AwsAuth::Keys {
            aws_access_key_id,
            aws_secret_access_key,
        } => MapBuilder::new()
            .put("aws_access_key_id", s(aws_access_key_id))
            .put("aws_secret_access_key", s(aws_secret_access_key))
            .build(),
        AwsAuth::Oidc { oidc_role_arn } => MapBuilder::new()
            .put("oidc_role_arn", s(oidc_role_arn))
            .build(),
    });
    MapBuilder::new()
        .put("image", s(&img.image))
        .opt("auth", auth)
        .opt("aws_auth", aws_auth)
        .opt("command", img.command.as_ref().map(command_line))
        .opt("entrypoint", img.entrypoint.as_ref().map(command_line))
        .opt("environment", env(&img.environment))
        .opt_str("name", &img.name)
        .opt_str("user", &img.user)
        .build()
}

fn step(step: &Step) -> Node {
    // A step with no options prints as its bare name.
    let bare_or = |name: &str, b: MapBuilder| {
        if b.is_empty() {
            s(name)
        } else {
            MapBuilder::new().put(name, b.build()).build()
        }
    };
    match step {
        Step::Run(r) => {
            let b = MapBuilder::new()
                .opt_str("auto_rerun_delay", &r.auto_rerun_delay)
                .opt("background", r.background.map(boolean))
                .put("command", s(&r.command))
                .opt("environment", env(&r.environment))
                .opt("max_auto_reruns", r.max_auto_reruns.map(|m| int(m as i64)))
                .opt_str("name", &r.name)
                .opt_str("no_output_timeout", &r.no_output_timeout)
                .opt_str("shell", &r.shell)
                .opt("when", r.when.map(|w| s(w.as_str())))
                .opt_str("working_directory", &r.working_directory);
            MapBuilder::new()
                .put(if r.deploy { "deploy" } else { "run" }, b.build())
                .build()
        }
        Step::Checkout(c) => bare_or(
            "checkout",
            MapBuilder::new()
                .opt("depth", c.depth.map(|d| int(d as i64)))
                .opt_str("method", &c.method)
                .opt_str("name", &c.name)
                .opt_str("path", &c.path),
        ),
        Step::SetupRemoteDocker(r) => bare_or(
            "setup_remote_docker",
            MapBuilder::new()
                .opt("docker_layer_caching", r.docker_layer_caching.map(boolean))
                .opt_str("name", &r.name)
                .opt_str("version", &r.version),
        ),
        Step::AddSshKeys(k) => bare_or(
            "add_ssh_keys",
            MapBuilder::new()
                .opt(
                    "fingerprints",
                    (!k.fingerprints.is_empty()).then(|| string_list(&k.fingerprints)),
                )
                .opt_str("name", &k.name),
        ),
        Step::SaveCache(c) => MapBuilder::new()
            .put(
                "save_cache",
                MapBuilder::new()
                    .put("key", s(&c.key))
                    .opt_str("name", &c.name)
                    .put("paths", string_list(&c.paths))
                    .opt("when", c.when.map(|w| s(w.as_str())))
                    .build(),
            )
            .build(),
        Step::RestoreCache(c) => {
            let b = if c.single_key && c.keys.len() == 1 {
                MapBuilder::new().put("key", s(&c.keys[0]))
            } else {
                MapBuilder::new().put("keys", string_list(&c.keys))
            };
            MapBuilder::new()
                .put("restore_cache", b.opt_str("name", &c.name).build())
                .build()
        }
        Step::StoreArtifacts(a) => MapBuilder::new()
            .put(
                "store_artifacts",
                MapBuilder::new()
                    .opt_str("destination", &a.destination)
                    .opt_str("name", &a.name)
                    .put("path", s(&a.path))
                    .build(),
            )
            .build(),
        Step::StoreTestResults(t) => MapBuilder::new()
            .put(
                "store_test_results",
                MapBuilder::new()
                    .opt_str("name", &t.name)
                    .put("path", s(&t.path))
                    .build(),
            )
            .build(),
        Step::PersistToWorkspace(p) => MapBuilder::new()
            .put(
                "persist_to_workspace",
                MapBuilder::new()
                    .opt_str("name", &p.name)
                    .put("paths", string_list(&p.paths))
                    .put("root", s(&p.root))
                    .build(),
            )
            .build(),
        Step::AttachWorkspace(a) => MapBuilder::new()
            .put(
                "attach_workspace",
                MapBuilder::new()
                    .put("at", s(&a.at))
                    .opt_str("name", &a.name)
                    .build(),
            )
            .build(),
    }
}

fn job(job: &Job) -> Node {
    let mut b = MapBuilder::new().opt("circleci_ip_ranges", job.circleci_ip_ranges.map(boolean));
    if let Some(Executor::Docker(images)) = &job.executor {
        b = b.put("docker", seq(images.iter().map(docker_image).collect()));
    }
    b = b.opt("environment", env(&job.environment));
    match &job.executor {
        Some(Executor::Machine(m)) if m.shorthand => b = b.put("machine", boolean(true)),
        Some(Executor::Machine(m)) => {
            b = b.put(
                "machine",
                MapBuilder::new()
                    .opt("docker_layer_caching", m.docker_layer_caching.map(boolean))
                    .opt_str("image", &m.image)
                    .build(),
            )
        }
        Some(Executor::Macos(m)) => {
            b = b.put("macos", MapBuilder::new().put("xcode", s(&m.xcode)).build())
        }
        _ => {}
    }
    b = b
        .opt("parallelism", job.parallelism.map(|p| int(p as i64)))
        .opt_str("resource_class", &job.resource_class)
        .opt(
            "retention",
            job.retention_caches
                .as_ref()
                .map(|c| MapBuilder::new().put("caches", s(c)).build()),
        )
        .opt_str("shell", &job.shell);
    if job.job_type == JobType::Build || !job.steps.is_empty() {
        b = b.put("steps", seq(job.steps.iter().map(step).collect()));
    }
    if job.job_type == JobType::NoOp {
        b = b.put("type", s("no-op"));
    }
    b.opt_str("working_directory", &job.working_directory)
        .build()
}

fn pattern_filter(f: &PatternFilter) -> Node {
    let list = |items: &[crate::filters::Pattern], scalar: bool| {
        if scalar && items.len() == 1 {
            s(&items[0].to_config_string())
        } else {
            seq(items.iter().map(|p| s(&p.to_config_string())).collect())
        }
    };
    MapBuilder::new()
        .opt(
            "ignore",
            (!f.ignore.is_empty()).then(|| list(&f.ignore, f.ignore_scalar)),
        )
        .opt(
            "only",
            (!f.only.is_empty()).then(|| list(&f.only, f.only_scalar)),
        )
        .build()
}

fn filters(f: &Filters) -> Node {
    if let Some(e) = &f.expression {
        return s(&e.source);
    }
    MapBuilder::new()
        .opt("branches", f.branches.as_ref().map(pattern_filter))
        .opt("tags", f.tags.as_ref().map(pattern_filter))
        .build()
}

fn workflow_job(j: &WorkflowJob) -> Node {
    let requires: Vec<Node> = j
        .requires
        .iter()
        .map(|r| {
            if r.statuses == [RequiredStatus::Success] {
                s(&r.job)
            } else if r.statuses.len() == 1 {
                MapBuilder::new()
                    .put(&r.job, s(r.statuses[0].as_str()))
                    .build()
            } else {
                MapBuilder::new()
                    .put(
                        &r.job,
                        seq(r.statuses.iter().map(|st| s(st.as_str())).collect()),
                    )
                    .build()
            }
        })
        .collect();
    let b = MapBuilder::new()
        .opt(
            "context",
            (!j.context.is_empty()).then(|| string_list(&j.context)),
        )
        .opt("filters", j.filters.as_ref().map(filters))
        .opt("requires", (!requires.is_empty()).then(|| seq(requires)))
        .opt_str("serial-group", &j.serial_group)
        .opt(
            "type",
            (j.job_type == WorkflowJobType::Approval).then(|| s("approval")),
        );
    if b.is_empty() {
        s(&j.name)
    } else {
        MapBuilder::new().put(&j.name, b.build()).build()
    }
}

fn workflow(w: &Workflow) -> Node {
    let triggers = (!w.triggers.is_empty()).then(|| {
        seq(w
            .triggers
            .iter()
            .map(|t| {
                MapBuilder::new()
                    .put(
                        "schedule",
                        MapBuilder::new()
                            .put("cron", s(&t.cron))
                            .put("filters", filters(&t.filters))
                            .build(),
                    )
                    .build()
            })
            .collect())
    });
    MapBuilder::new()
        .put("jobs", seq(w.jobs.iter().map(workflow_job).collect()))
        .opt("max_auto_reruns", w.max_auto_reruns.map(|m| int(m as i64)))
        .opt("triggers", triggers)
        .opt("when", (!w.enabled).then(|| boolean(false)))
        .build()
}

/// The compiled config as a YAML tree.
pub fn to_node(plan: &Plan) -> Node {
    let mut jobs = MapBuilder::new();
    for (name, j) in &plan.jobs {
        jobs = jobs.put(name, job(j));
    }
    let mut b = MapBuilder::new()
        .put("version", int(2))
        .put("jobs", jobs.build());
    if !plan.implicit_workflow {
        let mut wfs = MapBuilder::new();
        let version_at = plan.workflows_version_index.unwrap_or(plan.workflows.len());
        for (i, (name, w)) in plan.workflows.iter().enumerate() {
            if i == version_at {
                wfs = wfs.put("version", int(2));
            }
            wfs = wfs.put(name, workflow(w));
        }
        if version_at >= plan.workflows.len() {
            wfs = wfs.put("version", int(2));
        }
        b = b.put("workflows", wfs.build());
    }
    b.build()
}

/// The compiled config without comments: what compiling it again reproduces.
pub fn render_body(plan: &Plan) -> String {
    emit(&to_node(plan))
}

/// The whole `process` output: orb resolution lines, the compiled config, and the
/// original file as comments.
pub fn render(plan: &Plan, original: &str) -> String {
    let mut out = String::new();
    for orb in &plan.orbs {
        out.push_str(&format!(
            "# Orb '{}' resolved to '{}'\n",
            orb.requested, orb.resolved
        ));
    }
    out.push_str(&render_body(plan));
    out.push_str("\n# Original config.yml file:\n");
    for line in original.lines() {
        if line.is_empty() {
            out.push_str("#\n");
        } else {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Splits `process` output at the trailer: the part a recompile must reproduce.
pub fn body_of(processed: &str) -> &str {
    let start = processed
        .lines()
        .take_while(|l| l.starts_with("# Orb '"))
        .map(|l| l.len() + 1)
        .sum::<usize>();
    let end = processed
        .find("\n# Original config.yml file:\n")
        .map_or(processed.len(), |i| i + 1);
    &processed[start.min(end)..end]
}
