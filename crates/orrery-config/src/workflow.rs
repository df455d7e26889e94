//! Workflows: job invocations expanded (matrix cells, renamed duplicates),
//! `requires` resolved against the workflow, and the DAG checked.
//!
//! Naming follows CircleCI: an invocation is named by `name:` or the job it
//! invokes; matrix cells default to `<job>-<values>` with values ordered by
//! parameter name; a name used more than once in a workflow, or for different
//! jobs across workflows, is numbered `name-1`, `name-2`, ... and `requires` of
//! the bare name waits for all of them, as it does for a matrix alias.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use indexmap::IndexMap;

use crate::compile::{Compiler, Kind};
use crate::diag::suggest;
use crate::filters::{FilterExpression, Filters, Pattern, PatternFilter};
use crate::job::Invocation;
use crate::params::{Bindings, Namespace, Substituter};
use crate::plan::{
    ConfigVersion, Job, RequiredStatus, Requirement, ScheduleTrigger, Workflow, WorkflowJob,
    WorkflowJobType,
};
use crate::yaml::{Map, Node, SourceId, Span, Value};

/// The name CircleCI gives the workflow of a config without `workflows`.
pub const IMPLICIT_WORKFLOW: &str = "workflow";

const INVOCATION_KEYS: &[&str] = &[
    "requires",
    "name",
    "context",
    "type",
    "filters",
    "matrix",
    "pre-steps",
    "post-steps",
    "serial-group",
    "override-with",
];

struct Inv {
    workflow: usize,
    name: String,
    job_type: WorkflowJobType,
    job: Option<Job>,
    requires: Vec<(String, Vec<RequiredStatus>, Span)>,
    context: Vec<String>,
    filters: Option<Filters>,
    serial_group: Option<String>,
    /// Names that `requires` may use for a group of invocations (matrix alias).
    alias: Option<String>,
    span: Span,
}

struct WorkflowHead {
    name: String,
    span: Span,
    enabled: bool,
    triggers: Vec<ScheduleTrigger>,
    max_auto_reruns: Option<u32>,
}

type Built = (
    IndexMap<String, Job>,
    IndexMap<String, Workflow>,
    bool,
    Option<usize>,
);

pub(crate) fn build(c: &mut Compiler<'_>, root: &Map, root_span: Span) -> Built {
    let root_scope = SourceId(0);
    let workflows = root.get("workflows").filter(|w| !w.is_null());
    let Some(workflows) = workflows else {
        return implicit(c, root, root_span);
    };
    let Some(wf_map) = c.expect_map(workflows, "workflows") else {
        return (IndexMap::new(), IndexMap::new(), false, None);
    };
    let mut heads = Vec::new();
    let mut invs: Vec<Inv> = Vec::new();
    let mut empty_groups = Vec::new();
    let mut version_index = None;
    for entry in wf_map.iter() {
        if &*entry.key == "version" {
            version_index = Some(heads.len());
            continue;
        }
        c.trace
            .push(format!("Error calling workflow: '{}'", entry.key));
        let head = workflow_head(c, &entry.key, &entry.value);
        let idx = heads.len();
        heads.push(head);
        if let Some(jobs) = entry.value.as_map().and_then(|m| m.get("jobs")) {
            match jobs.as_seq() {
                Some([]) => c.error(
                    format!("workflow `{}` must have at least one job", entry.key),
                    jobs.span,
                ),
                Some(items) => {
                    for item in items {
                        invocation(c, root_scope, idx, item, &mut invs, &mut empty_groups);
                    }
                }
                None => c.error(
                    format!(
                        "workflows.{}.jobs: expected type: Sequence, found: {}",
                        entry.key,
                        jobs.type_name()
                    ),
                    jobs.span,
                ),
            }
        } else if entry.value.as_map().is_some() {
            c.error(
                format!("workflow `{}`: required key [jobs] not found", entry.key),
                entry.value.span,
            );
        }
        c.trace.pop();
    }

    let mut groups = rename_duplicates(&mut invs);
    // An invocation that expanded to no jobs satisfies what requires it.
    for key in empty_groups {
        groups.entry(key).or_default();
    }

    // Jobs of the plan, in order of first use.
    let mut jobs: IndexMap<String, Job> = IndexMap::new();
    for inv in &invs {
        if let Some(job) = &inv.job
            && !jobs.contains_key(&inv.name)
        {
            jobs.insert(inv.name.clone(), job.clone());
        }
    }
    if c.version == ConfigVersion::V2_0 {
        add_unreferenced_jobs(c, &mut jobs);
    }

    let mut out = IndexMap::new();
    for (idx, head) in heads.into_iter().enumerate() {
        c.trace
            .push(format!("Error calling workflow: '{}'", head.name));
        let members: Vec<&Inv> = invs.iter().filter(|i| i.workflow == idx).collect();
        let jobs = resolve_requires(c, &head, &members, &groups);
        c.trace.pop();
        out.insert(
            head.name,
            Workflow {
                enabled: head.enabled,
                jobs,
                triggers: head.triggers,
                max_auto_reruns: head.max_auto_reruns,
            },
        );
    }
    (jobs, out, false, version_index)
}

/// A config without `workflows` runs its `build` job.
fn implicit(c: &mut Compiler<'_>, root: &Map, root_span: Span) -> Built {
    let mut jobs = IndexMap::new();
    let mut workflows = IndexMap::new();
    match c.lookup(SourceId(0), Kind::Job, "build") {
        Some((_, def)) => {
            let job = c.compile_job(
                &def,
                "build",
                &Invocation {
                    args: Vec::new(),
                    pre_steps: None,
                    post_steps: None,
                    at: def.node.span,
                },
            );
            jobs.insert("build".to_string(), job);
            workflows.insert(
                IMPLICIT_WORKFLOW.to_string(),
                Workflow {
                    enabled: true,
                    jobs: vec![WorkflowJob {
                        name: "build".into(),
                        job_type: WorkflowJobType::Build,
                        requires: Vec::new(),
                        context: Vec::new(),
                        filters: None,
                        serial_group: None,
                    }],
                    triggers: Vec::new(),
                    max_auto_reruns: None,
                },
            );
        }
        None => {
            let span = root.entry("jobs").map_or(root_span, |e| e.key_span);
            c.error_hint(
                "Cannot find a job named `build` to run in the `jobs:` section of your configuration file.",
                span,
                Some("add a `workflows:` section that names the jobs to run, or name a job `build`".into()),
            );
        }
    }
    if c.version == ConfigVersion::V2_0 {
        add_unreferenced_jobs(c, &mut jobs);
    }
    (jobs, workflows, true, None)
}

/// Version 2.0 configs keep every job they define in the compiled output.
fn add_unreferenced_jobs(c: &mut Compiler<'_>, jobs: &mut IndexMap<String, Job>) {
    let defs: Vec<_> = c.scopes[0].jobs.values().cloned().collect();
    for def in defs {
        if jobs.contains_key(&*def.name) || Compiler::job_def_type(&def) == Some("approval") {
            continue;
        }
        let job = c.compile_job(
            &def,
            &def.name,
            &Invocation {
                args: Vec::new(),
                pre_steps: None,
                post_steps: None,
                at: def.node.span,
            },
        );
        jobs.insert(def.name.to_string(), job);
    }
}

fn workflow_head(c: &mut Compiler<'_>, name: &str, node: &Node) -> WorkflowHead {
    let mut head = WorkflowHead {
        name: name.to_string(),
        span: node.span,
        enabled: true,
        triggers: Vec::new(),
        max_auto_reruns: None,
    };
    let Some(map) = node.as_map() else {
        c.error(
            format!(
                "workflow `{name}` must be a map with `jobs`, found: {}",
                node.type_name()
            ),
            node.span,
        );
        return head;
    };
    c.check_keys(
        map,
        &["jobs", "triggers", "when", "unless", "max_auto_reruns"],
        &format!("workflow `{name}`"),
    );
    match (map.get("when"), map.get("unless")) {
        (Some(_), Some(u)) => c.error("a workflow may have `when` or `unless`, not both", u.span),
        (Some(w), None) => head.enabled = crate::logic::evaluate(c, w),
        (None, Some(u)) => head.enabled = !crate::logic::evaluate(c, u),
        (None, None) => {}
    }
    if let Some(r) = map.get("max_auto_reruns") {
        match r.value {
            Value::Int(i) if (1..=5).contains(&i) => head.max_auto_reruns = Some(i as u32),
            _ => c.error("max_auto_reruns must be a whole number from 1 to 5", r.span),
        }
    }
    if let Some(triggers) = map.get("triggers") {
        head.triggers = parse_triggers(c, triggers);
    }
    head
}

fn parse_triggers(c: &mut Compiler<'_>, node: &Node) -> Vec<ScheduleTrigger> {
    let Some(items) = node.as_seq() else {
        c.error(
            format!(
                "triggers: expected type: Sequence, found: {}",
                node.type_name()
            ),
            node.span,
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let Some(m) = c.expect_map(item, "trigger") else {
            continue;
        };
        c.check_keys(m, &["schedule"], "trigger");
        let Some(schedule) = m.get("schedule") else {
            c.error("trigger: required key [schedule] not found", item.span);
            continue;
        };
        let Some(s) = c.expect_map(schedule, "schedule") else {
            continue;
        };
        c.check_keys(s, &["cron", "filters"], "schedule");
        let Some(cron_node) = s.get("cron") else {
            c.error("schedule: required key [cron] not found", schedule.span);
            continue;
        };
        let Some(cron) = c.text(cron_node, "cron") else {
            continue;
        };
        if let Err(e) = check_cron(&cron) {
            c.error_hint(
                format!("schedule.cron `{cron}`: {e}"),
                cron_node.span,
                Some("use five fields: minute hour day-of-month month day-of-week, in UTC".into()),
            );
            continue;
        }
        let Some(filters_node) = s.get("filters") else {
            c.error_hint(
                "schedule: required key [filters] not found",
                schedule.span,
                Some("a schedule names the branches it runs on: `filters: {branches: {only: [main]}}`".into()),
            );
            continue;
        };
        let Some(filters) = parse_filters(c, filters_node) else {
            continue;
        };
        if filters.branches.is_none() {
            c.error(
                "schedule.filters: required key [branches] not found",
                filters_node.span,
            );
            continue;
        }
        if filters.tags.is_some() {
            c.error(
                "schedule.filters: only `branches` filters apply to schedules",
                filters_node.span,
            );
        }
        out.push(ScheduleTrigger { cron, filters });
    }
    out
}

/// Checks the shape of a 5-field cron expression.
pub fn check_cron(cron: &str) -> Result<(), String> {
    let fields: Vec<&str> = cron.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("expected 5 fields, found {}", fields.len()));
    }
    let ranges = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
    for (field, (lo, hi)) in fields.iter().zip(ranges) {
        for part in field.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (part, None),
            };
            if let Some(step) = step
                && !step.parse::<u32>().is_ok_and(|s| s > 0)
            {
                return Err(format!("`{part}` has an invalid step"));
            }
            if range == "*" {
                continue;
            }
            let bounds: Vec<&str> = range.split('-').collect();
            if bounds.len() > 2 || bounds.iter().any(|b| b.is_empty()) {
                return Err(format!("`{part}` is not a number, range or `*`"));
            }
            for b in bounds {
                let v = match b.parse::<u32>() {
                    Ok(v) => v,
                    Err(_) => name_value(b).ok_or_else(|| format!("`{b}` is not a number"))?,
                };
                if v < lo || v > hi {
                    return Err(format!("`{b}` is outside {lo}-{hi}"));
                }
            }
        }
    }
    Ok(())
}

fn name_value(name: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let lower = name.to_ascii_lowercase();
    MONTHS
        .iter()
        .position(|m| *m == lower)
        .map(|i| i as u32 + 1)
        .or_else(|| DAYS.iter().position(|d| *d == lower).map(|i| i as u32))
}

/// Expands one item of a workflow's `jobs` list.
fn invocation(
    c: &mut Compiler<'_>,
    scope: SourceId,
    workflow: usize,
    item: &Node,
    out: &mut Vec<Inv>,
    empty_groups: &mut Vec<(usize, String)>,
) {
    let (job_ref, ref_span, opts) = match &item.value {
        Value::Str(name) => (name.to_string(), item.span, None),
        Value::Map(m) if m.len() == 1 => {
            let e = &m.entries[0];
            let opts = match &e.value.value {
                Value::Map(o) => Some(o),
                Value::Null => None,
                _ => {
                    c.error(
                        format!(
                            "options of workflow job `{}` must be a map, found: {}",
                            e.key,
                            e.value.type_name()
                        ),
                        e.value.span,
                    );
                    return;
                }
            };
            (e.key.to_string(), e.key_span, opts)
        }
        Value::Map(m) => {
            let keys: Vec<&str> = m.keys().collect();
            c.error_hint(
                format!(
                    "a workflow job has exactly one key (the job name), found {}: {}",
                    m.len(),
                    keys.join(", ")
                ),
                item.span,
                Some("indent the job's options (requires, filters, ...) under its name".into()),
            );
            return;
        }
        _ => {
            c.error(
                format!(
                    "a workflow job must be a name or a map, found: {}",
                    item.type_name()
                ),
                item.span,
            );
            return;
        }
    };
    let empty = Map::default();
    let opts = opts.unwrap_or(&empty);
    if c.version == ConfigVersion::V2_0 {
        c.check_keys(
            opts,
            &["requires", "name", "context", "type", "filters"],
            &format!("workflow job `{job_ref}`"),
        );
    }
    if let Some(o) = opts.entry("override-with") {
        let span = o.key_span;
        c.error("`override-with` is not supported by Orrery", span);
    }
    let approval = match opts.get("type") {
        None => false,
        Some(t) => match t.as_str() {
            Some("approval") => true,
            Some("build") => false,
            _ => {
                c.error_hint(
                    format!(
                        "workflow job `{job_ref}`: unknown type `{}`",
                        t.scalar_text().unwrap_or_default()
                    ),
                    t.span,
                    Some("the only type a workflow job takes is `approval`".into()),
                );
                return;
            }
        },
    };
    let def = if approval {
        None
    } else {
        match c.lookup(scope, Kind::Job, &job_ref) {
            Some((_, def)) => Some(def),
            None => {
                // What requires this invocation is not reported again.
                let name = opts
                    .get("name")
                    .and_then(|n| n.scalar_text())
                    .map(|t| t.into_owned());
                empty_groups.push((workflow, name.unwrap_or(job_ref.clone())));
                if c.under_failed_orb(scope, &job_ref) {
                    return;
                }
                let candidates = c.visible_names(scope, Kind::Job);
                let hint = suggest(&job_ref, candidates.iter().map(String::as_str)).or_else(|| {
                    Some(if job_ref.contains('/') {
                        "check the orb alias under `orbs:` and the orb's job names".to_string()
                    } else {
                        "define it under `jobs:`, or add `type: approval` for an approval job"
                            .to_string()
                    })
                });
                c.error_hint(
                    format!("Cannot find a definition for job named {job_ref}"),
                    ref_span,
                    hint,
                );
                return;
            }
        }
    };
    let approval = approval || def.as_deref().and_then(Compiler::job_def_type) == Some("approval");

    // Matrix cells: (bindings, default name suffix).
    let cells = match opts.get("matrix") {
        Some(m) if c.version == ConfigVersion::V2_1 => match matrix_cells(c, m) {
            Some(cells) => Some(cells),
            None => return,
        },
        Some(m) => {
            c.error("`matrix` requires config version 2.1", m.span);
            return;
        }
        None => None,
    };
    if approval && cells.is_some() {
        c.error("an approval job cannot have a matrix", item.span);
        return;
    }
    let alias = opts.get("matrix").map(|m| {
        m.as_map()
            .and_then(|mm| mm.get("alias"))
            .and_then(|a| a.scalar_text().map(|t| t.into_owned()))
            .unwrap_or_else(|| job_ref.clone())
    });

    let cell_list = cells.unwrap_or_else(|| vec![(Bindings::default(), None)]);
    if cell_list.is_empty() {
        empty_groups.push((workflow, alias.clone().unwrap_or_else(|| job_ref.clone())));
    }
    for (bindings, suffix) in cell_list {
        let substituted;
        let opts = if bindings.values.is_empty() {
            opts
        } else {
            substituted = substitute_matrix(c, opts, &bindings);
            &substituted
        };
        let name = match opts.get("name") {
            Some(n) => c.text(n, "name").unwrap_or_else(|| job_ref.clone()),
            None => match &suffix {
                Some(s) => format!("{job_ref}-{s}"),
                None => job_ref.clone(),
            },
        };
        let requires = opts
            .get("requires")
            .map(|r| parse_requires(c, r))
            .unwrap_or_default();
        let context = match opts.get("context") {
            None => Vec::new(),
            Some(ctx) => match &ctx.value {
                Value::Seq(items) => items.iter().filter_map(|i| c.text(i, "context")).collect(),
                _ => c.text(ctx, "context").into_iter().collect(),
            },
        };
        let filters = opts.get("filters").and_then(|f| parse_filters(c, f));
        let serial_group = opts.get("serial-group").and_then(|g| {
            let text = c.text(g, "serial-group")?;
            let ok = !text.trim().is_empty()
                && text.len() <= 512
                && text.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '/' | '_' | '-'));
            if !ok {
                c.error("serial-group must be 1-512 characters of letters, digits, `.`, `/`, `_` and `-`", g.span);
            }
            Some(text)
        });
        let (job_type, job) = if approval {
            let extra: Vec<&str> = opts
                .keys()
                .filter(|k| !INVOCATION_KEYS.contains(k))
                .collect();
            if !extra.is_empty() {
                c.error(
                    format!("Unexpected argument(s): {}", extra.join(", ")),
                    item.span,
                );
            }
            (WorkflowJobType::Approval, None)
        } else {
            let def = def.as_deref().expect("build jobs have a definition");
            let mut args: Vec<(&Arc<str>, Span, &Node)> = opts
                .iter()
                .filter(|e| !INVOCATION_KEYS.contains(&&*e.key))
                .map(|e| (&e.key, e.key_span, &e.value))
                .collect();
            // Matrix values override invocation arguments of the same name.
            args.retain(|(k, _, _)| bindings.get(k).is_none());
            for (k, v) in &bindings.values {
                args.push((k, v.span, v));
            }
            let job = c.compile_job(
                def,
                &name,
                &Invocation {
                    args,
                    pre_steps: opts.get("pre-steps"),
                    post_steps: opts.get("post-steps"),
                    at: ref_span,
                },
            );
            (WorkflowJobType::Build, Some(job))
        };
        out.push(Inv {
            workflow,
            name,
            job_type,
            job,
            requires,
            context,
            filters,
            serial_group,
            alias: alias.clone(),
            span: ref_span,
        });
    }
}

fn substitute_matrix(c: &mut Compiler<'_>, opts: &Map, bindings: &Bindings) -> Map {
    let lookup = |name: &str| bindings.get(name).cloned();
    let known = || {
        bindings
            .values
            .iter()
            .map(|(k, _)| k.to_string())
            .collect::<Vec<_>>()
    };
    let mut sub = Substituter {
        ns: Namespace::Matrix,
        lookup: &lookup,
        known: &known,
        problems: Vec::new(),
    };
    let mut out = Map::default();
    for e in opts.iter() {
        let value = if &*e.key == "matrix" {
            e.value.clone()
        } else {
            sub.node(&e.value)
        };
        out.insert(e.key.clone(), e.key_span, value);
    }
    for p in sub.problems {
        c.error_hint(p.message, p.span, p.hint);
    }
    out
}

/// The cells of a `matrix`: bindings and the default name suffix of each.
fn matrix_cells(c: &mut Compiler<'_>, node: &Node) -> Option<Vec<(Bindings, Option<String>)>> {
    let m = c.expect_map(node, "matrix")?;
    c.check_keys(m, &["parameters", "exclude", "alias"], "matrix");
    let Some(params_node) = m.get("parameters") else {
        c.error("matrix: required key [parameters] not found", node.span);
        return None;
    };
    let params = c.expect_map(params_node, "matrix.parameters")?;
    if params.is_empty() {
        c.error(
            "matrix.parameters must name at least one parameter",
            params_node.span,
        );
        return None;
    }
    let mut axes: Vec<(Arc<str>, &[Node])> = Vec::new();
    for e in params.iter() {
        match e.value.as_seq() {
            // A parameter with no values (every value commented out) leaves no
            // combinations, as it does on CircleCI.
            None if e.value.is_null() => {
                c.warning(
                    format!("matrix parameter `{}` has no values, so this invocation expands to no jobs", e.key),
                    e.value.span,
                    None,
                );
                axes.push((e.key.clone(), &[]));
            }
            Some([]) | None => {
                c.error(
                    format!(
                        "matrix parameter `{}` must be a non-empty list of values",
                        e.key
                    ),
                    e.value.span,
                );
                return None;
            }
            Some(values) => axes.push((e.key.clone(), values)),
        }
    }
    let mut cells: Vec<Vec<(Arc<str>, Node)>> = vec![Vec::new()];
    for (name, values) in &axes {
        let mut next = Vec::with_capacity(cells.len() * values.len());
        for cell in &cells {
            for v in *values {
                let mut cell = cell.clone();
                cell.push((name.clone(), v.clone()));
                next.push(cell);
            }
        }
        cells = next;
        if cells.is_empty() {
            return Some(Vec::new());
        }
        if cells.len() > 10_000 {
            c.error("matrix expands to more than 10,000 jobs", node.span);
            return None;
        }
    }
    if let Some(exclude) = m.get("exclude") {
        let Some(items) = exclude.as_seq() else {
            c.error(
                "matrix.exclude must be a list of parameter maps",
                exclude.span,
            );
            return None;
        };
        for item in items {
            let Some(ex) = c.expect_map(item, "matrix.exclude item") else {
                continue;
            };
            let before = cells.len();
            cells.retain(|cell| {
                !(ex.len() == cell.len()
                    && ex.iter().all(|e| {
                        cell.iter().any(|(k, v)| {
                            *k == e.key
                                && v.scalar_text().is_some()
                                && v.scalar_text() == e.value.scalar_text()
                        })
                    }))
            });
            if cells.len() == before {
                c.warning(
                    "this matrix.exclude entry matches no combination",
                    item.span,
                    None,
                );
            }
        }
    }
    let out = cells
        .into_iter()
        .map(|cell| {
            let mut sorted: Vec<&(Arc<str>, Node)> = cell.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            let suffix = sorted
                .iter()
                .map(|(_, v)| value_label(v))
                .collect::<Vec<_>>()
                .join("-");
            (Bindings { values: cell }, Some(suffix))
        })
        .collect();
    Some(out)
}

fn value_label(v: &Node) -> String {
    match &v.value {
        Value::Map(m) => m
            .get("name")
            .and_then(|n| n.scalar_text().map(|t| t.into_owned()))
            .unwrap_or_else(|| "map".into()),
        Value::Seq(_) => "list".into(),
        _ => v.scalar_text().unwrap_or_default().into_owned(),
    }
}

fn parse_requires(c: &mut Compiler<'_>, node: &Node) -> Vec<(String, Vec<RequiredStatus>, Span)> {
    let items: Vec<&Node> = match &node.value {
        Value::Seq(items) => items.iter().collect(),
        Value::Str(_) => vec![node],
        Value::Null => Vec::new(),
        _ => {
            c.error(
                format!(
                    "requires: expected type: Sequence, found: {}",
                    node.type_name()
                ),
                node.span,
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for item in items {
        match &item.value {
            Value::Map(m) => {
                for e in m.iter() {
                    let statuses = match &e.value.value {
                        Value::Seq(list) => list
                            .iter()
                            .filter_map(|s| required_status(c, s))
                            .flatten()
                            .collect(),
                        _ => required_status(c, &e.value).unwrap_or_default(),
                    };
                    out.push((e.key.to_string(), statuses, e.key_span));
                }
            }
            _ => {
                if let Some(name) = c.text(item, "requires") {
                    out.push((name, vec![RequiredStatus::Success], item.span));
                }
            }
        }
    }
    out
}

fn required_status(c: &mut Compiler<'_>, node: &Node) -> Option<Vec<RequiredStatus>> {
    let s = match node.as_str() {
        Some("success") => vec![RequiredStatus::Success],
        Some("failed") => vec![RequiredStatus::Failed],
        Some("canceled") => vec![RequiredStatus::Canceled],
        Some("unauthorized") => vec![RequiredStatus::Unauthorized],
        Some("not_run") => vec![RequiredStatus::NotRun],
        Some("terminal") => RequiredStatus::TERMINAL.to_vec(),
        _ => {
            let text = node.scalar_text().unwrap_or_default().into_owned();
            let all = [
                "success",
                "failed",
                "canceled",
                "unauthorized",
                "not_run",
                "terminal",
            ];
            c.error_hint(
                format!(
                    "requires: `{text}` is not a job status ({})",
                    all.join(", ")
                ),
                node.span,
                suggest(&text, all),
            );
            return None;
        }
    };
    Some(s)
}

/// Parses `filters: {branches: {only, ignore}, tags: {only, ignore}}`.
pub(crate) fn parse_filters(c: &mut Compiler<'_>, node: &Node) -> Option<Filters> {
    if let Value::Str(source) = &node.value {
        let result = crate::expr::Expression::parse(source)
            .and_then(|e| e.evaluate(&|name: &str| c.expression_value(name)));
        return match result {
            Ok(v) => Some(Filters {
                expression: Some(FilterExpression {
                    source: source.to_string(),
                    result: v.truthy(),
                }),
                ..Default::default()
            }),
            Err(e) => {
                c.error(format!("filter expression `{source}`: {e}"), node.span);
                None
            }
        };
    }
    let m = c.expect_map(node, "filters")?;
    c.check_keys(m, &["branches", "tags"], "filters");
    let mut filters = Filters::default();
    if let Some(b) = m.get("branches") {
        filters.branches = pattern_filter(c, b, "branches");
    }
    if let Some(t) = m.get("tags") {
        filters.tags = pattern_filter(c, t, "tags");
    }
    Some(filters)
}

fn pattern_filter(c: &mut Compiler<'_>, node: &Node, what: &str) -> Option<PatternFilter> {
    let m = c.expect_map(node, &format!("filters.{what}"))?;
    c.check_keys(m, &["only", "ignore"], &format!("filters.{what}"));
    let mut f = PatternFilter::default();
    for (key, list, scalar) in [
        ("only", &mut f.only, &mut f.only_scalar),
        ("ignore", &mut f.ignore, &mut f.ignore_scalar),
    ] {
        let Some(v) = m.get(key) else { continue };
        let items: Vec<&Node> = match &v.value {
            Value::Seq(items) => items.iter().collect(),
            Value::Null => Vec::new(),
            _ => {
                *scalar = true;
                vec![v]
            }
        };
        for item in items {
            let Some(text) = c.text(item, &format!("filters.{what}.{key}")) else {
                continue;
            };
            match Pattern::parse(&text) {
                Ok(p) => list.push(p),
                Err(e) => c.error(e, item.span),
            }
        }
    }
    Some(f)
}

/// Numbers invocations whose names clash; returns, per workflow, the groups a
/// bare name stands for (renamed duplicates and matrix aliases).
fn rename_duplicates(invs: &mut [Inv]) -> HashMap<(usize, String), Vec<String>> {
    let mut by_name: IndexMap<String, Vec<usize>> = IndexMap::new();
    for (i, inv) in invs.iter().enumerate() {
        by_name.entry(inv.name.clone()).or_default().push(i);
    }
    let mut taken: HashSet<String> = by_name.keys().cloned().collect();
    let mut groups: HashMap<(usize, String), Vec<String>> = HashMap::new();
    for (name, idxs) in &by_name {
        if idxs.len() < 2 {
            continue;
        }
        let mut seen_wf = HashSet::new();
        let twice_in_a_workflow = idxs.iter().any(|i| !seen_wf.insert(invs[*i].workflow));
        let first = &invs[idxs[0]];
        let all_same = idxs
            .iter()
            .all(|i| invs[*i].job_type == first.job_type && invs[*i].job == first.job);
        if !twice_in_a_workflow && all_same {
            continue;
        }
        let mut k = 1;
        for i in idxs {
            let mut candidate = format!("{name}-{k}");
            while taken.contains(&candidate) {
                k += 1;
                candidate = format!("{name}-{k}");
            }
            taken.insert(candidate.clone());
            k += 1;
            let inv = &mut invs[*i];
            groups
                .entry((inv.workflow, name.clone()))
                .or_default()
                .push(candidate.clone());
            inv.name = candidate;
        }
    }
    for inv in invs.iter() {
        if let Some(alias) = &inv.alias {
            groups
                .entry((inv.workflow, alias.clone()))
                .or_default()
                .push(inv.name.clone());
        }
    }
    groups
}

fn resolve_requires(
    c: &mut Compiler<'_>,
    head: &WorkflowHead,
    members: &[&Inv],
    groups: &HashMap<(usize, String), Vec<String>>,
) -> Vec<WorkflowJob> {
    let wf = members.first().map(|m| m.workflow);
    let names: HashSet<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let mut jobs = Vec::with_capacity(members.len());
    for inv in members {
        let mut requires: Vec<Requirement> = Vec::new();
        for (req, statuses, span) in &inv.requires {
            let targets: Vec<String> = if names.contains(req.as_str()) {
                vec![req.clone()]
            } else if let Some(group) = wf.and_then(|w| groups.get(&(w, req.clone()))) {
                group.clone()
            } else {
                let hint = suggest(req, names.iter().copied());
                c.error_hint(
                    format!(
                        "{}: requires job \"{req}\" but \"{req}\" is not part of this workflow.",
                        inv.name
                    ),
                    *span,
                    hint,
                );
                continue;
            };
            for t in targets {
                if t == inv.name {
                    continue;
                }
                if let Some(existing) = requires.iter_mut().find(|r| r.job == t) {
                    for s in statuses {
                        if !existing.statuses.contains(s) {
                            existing.statuses.push(*s);
                        }
                    }
                } else {
                    requires.push(Requirement {
                        job: t,
                        statuses: statuses.clone(),
                    });
                }
            }
            if inv.name == *req {
                c.error(format!("job `{}` requires itself", inv.name), *span);
            }
        }
        jobs.push(WorkflowJob {
            name: inv.name.clone(),
            job_type: inv.job_type,
            requires,
            context: inv.context.clone(),
            filters: inv.filters.clone(),
            serial_group: inv.serial_group.clone(),
        });
    }
    check_dag(c, head, &jobs, members);
    jobs
}

fn check_dag(c: &mut Compiler<'_>, head: &WorkflowHead, jobs: &[WorkflowJob], members: &[&Inv]) {
    if jobs.is_empty() {
        return;
    }
    let index: HashMap<&str, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.name.as_str(), i))
        .collect();
    let mut indegree: Vec<usize> = jobs.iter().map(|j| j.requires.len()).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); jobs.len()];
    for (i, j) in jobs.iter().enumerate() {
        for r in &j.requires {
            if let Some(&d) = index.get(r.job.as_str()) {
                dependents[d].push(i);
            }
        }
    }
    let mut queue: Vec<usize> = (0..jobs.len()).filter(|i| indegree[*i] == 0).collect();
    if queue.is_empty() {
        c.error_hint(
            "At least one job in the workflow must have no dependencies.",
            head.span,
            Some("a job with no `requires` starts the workflow".into()),
        );
        return;
    }
    let mut done = vec![false; jobs.len()];
    while let Some(i) = queue.pop() {
        done[i] = true;
        for &d in &dependents[i] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                queue.push(d);
            }
        }
    }
    let stuck: Vec<&str> = jobs
        .iter()
        .enumerate()
        .filter(|(i, _)| !done[*i])
        .map(|(_, j)| j.name.as_str())
        .collect();
    if !stuck.is_empty() {
        let span = members
            .iter()
            .find(|m| !done[index[m.name.as_str()]])
            .map_or(head.span, |m| m.span);
        c.error_hint(
            format!("The following jobs are unreachable: {}", stuck.join(", ")),
            span,
            Some("their `requires` form a cycle".into()),
        );
    }
}
