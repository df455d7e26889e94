//! The compiler driver: reads the config, resolves pipeline parameters and orbs,
//! registers definitions per scope, and hands jobs and workflows to
//! [`crate::job`] and [`crate::workflow`].
//!
//! Scopes: the config is one scope and every orb (registry or inline) is another.
//! A scope is identified by the [`SourceId`] of its YAML, and every node carries
//! its source in its span, so a name written in some node is always looked up in
//! the scope that node was written in, however far it travels as an argument.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use indexmap::IndexMap;

use crate::diag::{Diagnostic, Issue, Severity, path_of, suggest};
use crate::orbs::{OrbFetchError, OrbRef, OrbSource};
use crate::params::{self, Bindings, DeclKind, Namespace, ParamDecl, Substituter};
use crate::plan::{ConfigVersion, Plan, ResolvedOrb};
use crate::values::{InputValue, PipelineValues};
use crate::yaml::{self, Map, Node, SourceId, Span, Value};

/// What to compile a config with.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// The file name shown in diagnostics.
    pub file_name: String,
    pub pipeline_values: PipelineValues,
    /// Pipeline parameters the pipeline was triggered with.
    pub pipeline_parameters: IndexMap<String, InputValue>,
}

impl CompileOptions {
    pub fn new(file_name: impl Into<String>) -> Self {
        CompileOptions {
            file_name: file_name.into(),
            ..Default::default()
        }
    }
}

/// The outcome of compiling: a plan when the config is valid, and every
/// diagnostic (errors and warnings) either way.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub plan: Option<Plan>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Compiled {
    pub fn is_valid(&self) -> bool {
        self.plan.is_some()
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| !d.is_error())
    }
}

/// A named definition (job, command or executor) and its parameters.
pub(crate) struct Def {
    pub name: Arc<str>,
    pub node: Node,
    pub params: Vec<ParamDecl>,
}

#[derive(Default)]
pub(crate) struct Scope {
    /// Shown in diagnostics: the file name, or `orb circleci/node@5.1.0`.
    pub file: String,
    /// The YAML of the scope, for finding config paths.
    pub root: Option<Node>,
    /// Prepended to config paths (`orbs.my-orb` for an inline orb).
    pub path_prefix: String,
    /// How the config names this orb's elements: `node` for `node/test`.
    pub qualifier: String,
    pub imports: HashMap<Arc<str>, SourceId>,
    /// Aliases whose orb could not be imported (already reported): names under
    /// them are not reported again.
    pub failed_imports: Vec<Arc<str>>,
    pub commands: HashMap<Arc<str>, Rc<Def>>,
    pub executors: HashMap<Arc<str>, Rc<Def>>,
    pub jobs: IndexMap<Arc<str>, Rc<Def>>,
}

/// The kind of element a name refers to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Command,
    Executor,
    Job,
}

impl Kind {
    pub fn word(self) -> &'static str {
        match self {
            Kind::Command => "command",
            Kind::Executor => "executor",
            Kind::Job => "job",
        }
    }
}

const MAX_ORB_DEPTH: usize = 8;

pub(crate) struct Compiler<'a> {
    pub options: &'a CompileOptions,
    orb_source: &'a dyn OrbSource,
    pub scopes: Vec<Scope>,
    issues: Vec<Issue>,
    pub trace: Vec<String>,
    pub version: ConfigVersion,
    resolved_orbs: Vec<ResolvedOrb>,
    pub pipeline_parameters: Bindings,
    /// Nesting of command expansion, to stop runaway recursion.
    pub expand_depth: usize,
}

/// Compiles a config. Never panics and never fails: problems are diagnostics.
pub fn compile(config: &str, options: &CompileOptions, orbs: &dyn OrbSource) -> Compiled {
    let mut compiler = Compiler {
        options,
        orb_source: orbs,
        scopes: Vec::new(),
        issues: Vec::new(),
        trace: Vec::new(),
        version: ConfigVersion::V2_1,
        resolved_orbs: Vec::new(),
        pipeline_parameters: Bindings::default(),
        expand_depth: 0,
    };
    let plan = compiler.run(config);
    let has_errors = compiler
        .issues
        .iter()
        .any(|i| i.severity == Severity::Error);
    let diagnostics = compiler.diagnostics();
    Compiled {
        plan: if has_errors { None } else { plan },
        diagnostics,
    }
}

impl<'a> Compiler<'a> {
    pub fn error(&mut self, message: impl Into<String>, span: Span) {
        self.issue(Severity::Error, message.into(), Some(span), None);
    }

    pub fn error_hint(&mut self, message: impl Into<String>, span: Span, hint: Option<String>) {
        self.issue(Severity::Error, message.into(), Some(span), hint);
    }

    pub fn warning(&mut self, message: impl Into<String>, span: Span, hint: Option<String>) {
        self.issue(Severity::Warning, message.into(), Some(span), hint);
    }

    fn issue(
        &mut self,
        severity: Severity,
        message: String,
        span: Option<Span>,
        hint: Option<String>,
    ) {
        // The same problem reached twice (an element used by several jobs) is
        // reported once.
        if self
            .issues
            .iter()
            .any(|i| i.message == message && i.span == span && i.severity == severity)
        {
            return;
        }
        self.issues.push(Issue {
            severity,
            message,
            span,
            hint,
            trace: self.trace.clone(),
        });
    }

    pub fn error_count(&self) -> usize {
        self.issues
            .iter()
            .filter(|i| i.severity == Severity::Error)
            .count()
    }

    pub fn param_problems(&mut self, problems: Vec<params::ParamProblem>) {
        for p in problems {
            self.error_hint(p.message, p.span, p.hint);
        }
    }

    fn diagnostics(&self) -> Vec<Diagnostic> {
        let mut out: Vec<Diagnostic> = self
            .issues
            .iter()
            .map(|issue| {
                let (file, line, column, path) = match issue.span {
                    Some(span) => {
                        let scope = self.scopes.get(span.source.0 as usize);
                        let file = scope.map(|s| s.file.clone());
                        let path = scope.and_then(|s| {
                            let p = s.root.as_ref().and_then(|r| path_of(r, span));
                            match (p, s.path_prefix.is_empty()) {
                                (Some(p), true) => Some(p),
                                (Some(p), false) => Some(format!("{}.{p}", s.path_prefix)),
                                (None, false) => Some(s.path_prefix.clone()),
                                (None, true) => None,
                            }
                        });
                        (file, Some(span.line), Some(span.col), path)
                    }
                    None => (Some(self.options.file_name.clone()), None, None, None),
                };
                Diagnostic {
                    severity: issue.severity,
                    message: issue.message.clone(),
                    file,
                    line,
                    column,
                    path,
                    hint: issue.hint.clone(),
                    trace: issue.trace.clone(),
                }
            })
            .collect();
        // Errors first, then by position.
        out.sort_by(|a, b| {
            (a.severity != Severity::Error)
                .cmp(&(b.severity != Severity::Error))
                .then_with(|| a.file.cmp(&b.file))
                .then_with(|| a.line.cmp(&b.line))
                .then_with(|| a.column.cmp(&b.column))
        });
        out
    }

    fn new_scope(&mut self, file: String, path_prefix: String, qualifier: String) -> SourceId {
        let id = SourceId(self.scopes.len() as u32);
        self.scopes.push(Scope {
            file,
            path_prefix,
            qualifier,
            ..Default::default()
        });
        id
    }

    fn run(&mut self, config: &str) -> Option<Plan> {
        let root_id = self.new_scope(self.options.file_name.clone(), String::new(), String::new());
        let document = match yaml::parse(config, root_id) {
            Ok(d) => d,
            Err(e) => {
                let line_text = config
                    .lines()
                    .nth(e.line.saturating_sub(1) as usize)
                    .unwrap_or("");
                let hint = (line_text.contains("{{") && (line_text.contains('[') || line_text.contains('{')))
                    .then(|| "inside `[...]` or `{...}`, quote values that hold `{{ ... }}` templates: [\"key-{{ .Branch }}\"]".to_string());
                self.error_hint(
                    format!("Error parsing config file: yaml: {}", e.message),
                    Span {
                        source: root_id,
                        line: e.line.max(1),
                        col: e.col.max(1),
                    },
                    hint,
                );
                return None;
            }
        };
        for dup in &document.duplicate_keys {
            self.warning(
                format!("duplicate key `{}`: the later value wins", dup.key),
                dup.span,
                None,
            );
        }
        let root = document.root;
        self.scopes[0].root = Some(root.clone());
        let Some(map) = root.as_map() else {
            let message = if root.is_null() {
                "the config file is empty".to_string()
            } else {
                format!(
                    "the config must be a map of keys (version, jobs, workflows, ...), found: {}",
                    root.type_name()
                )
            };
            self.error(message, root.span);
            return None;
        };
        self.version = self.read_version(map, root.span)?;
        let setup = self.read_setup(map);
        self.check_top_level_keys(map);

        let root = match self.version {
            ConfigVersion::V2_1 => {
                self.read_pipeline_parameters(map.get("parameters"), root.span);
                let substituted = self.substitute_pipeline_in_root(map);
                self.scopes[0].root = Some(Node::new(Value::Map(substituted.clone()), root.span));
                Node::new(Value::Map(substituted), root.span)
            }
            ConfigVersion::V2_0 => {
                for key in ["orbs", "commands", "executors", "parameters"] {
                    if let Some(entry) = map.entry(key) {
                        let span = entry.key_span;
                        self.error_hint(
                            format!("`{key}` requires config version 2.1"),
                            span,
                            Some("change `version: 2` to `version: 2.1`".into()),
                        );
                    }
                }
                root
            }
        };
        let map = root.as_map().expect("root is a map");
        if self.version == ConfigVersion::V2_1
            && let Some(orbs) = map.get("orbs")
        {
            self.import_orbs(root_id, orbs, 0);
        }
        self.register_definitions(root_id, map);
        if self.error_count() > 0 && self.scopes[0].jobs.is_empty() {
            return None;
        }
        let (jobs, workflows, implicit, version_index) =
            crate::workflow::build(self, map, root.span);
        Some(Plan {
            version: self.version,
            setup,
            orbs: std::mem::take(&mut self.resolved_orbs),
            jobs,
            workflows,
            implicit_workflow: implicit,
            workflows_version_index: version_index,
        })
    }

    fn read_version(&mut self, map: &Map, at: Span) -> Option<ConfigVersion> {
        let Some(node) = map.get("version") else {
            self.error_hint(
                "required key [version] not found",
                at,
                Some("start the config with `version: 2.1`".into()),
            );
            return None;
        };
        let text = node.scalar_text().unwrap_or_default();
        match text.as_ref() {
            "2" | "2.0" => Some(ConfigVersion::V2_0),
            "2.1" => Some(ConfigVersion::V2_1),
            _ => {
                self.error_hint(
                    format!("unsupported config version `{text}`: use 2, 2.0 or 2.1"),
                    node.span,
                    Some("`version: 2.1` enables orbs, commands, executors and parameters".into()),
                );
                None
            }
        }
    }

    fn read_setup(&mut self, map: &Map) -> bool {
        let Some(node) = map.get("setup") else {
            return false;
        };
        match node.value {
            Value::Bool(b) => {
                if b && self.version != ConfigVersion::V2_1 {
                    self.error("`setup: true` requires config version 2.1", node.span);
                }
                b
            }
            _ => {
                self.error(
                    format!("setup: expected type: Boolean, found: {}", node.type_name()),
                    node.span,
                );
                false
            }
        }
    }

    fn check_top_level_keys(&mut self, map: &Map) {
        const KNOWN: &[&str] = &[
            "version",
            "setup",
            "orbs",
            "commands",
            "executors",
            "jobs",
            "workflows",
            "parameters",
            "experimental",
            "job-groups",
        ];
        for entry in map.iter() {
            if KNOWN.contains(&&*entry.key) {
                continue;
            }
            // Other top-level keys are allowed (they hold anchors: `aliases`,
            // `references`, `defaults`); a near miss of a known key is worth a word.
            if let Some(hint) = suggest(&entry.key, KNOWN.iter().copied()) {
                self.warning(
                    format!("unknown top-level key `{}` is ignored", entry.key),
                    entry.key_span,
                    Some(hint),
                );
            }
        }
        if let Some(entry) = map.entry("job-groups") {
            self.error(
                "`job-groups` are not supported by Orrery yet",
                entry.key_span,
            );
        }
    }

    /// Declares pipeline parameters and binds the values the pipeline was
    /// triggered with.
    fn read_pipeline_parameters(&mut self, decls: Option<&Node>, at: Span) {
        let mut problems = Vec::new();
        let decls = params::parse_decls(decls, DeclKind::Pipeline, &mut problems);
        self.param_problems(problems);
        let given: Vec<(Arc<str>, Node)> = self
            .options
            .pipeline_parameters
            .iter()
            .map(|(k, v)| (Arc::from(k.as_str()), input_node(v, at)))
            .collect();
        let args: Vec<(&Arc<str>, Span, &Node)> = given.iter().map(|(k, v)| (k, at, v)).collect();
        let mut problems = Vec::new();
        let bindings = params::bind(&decls, &args, at, &mut problems);
        for p in problems {
            // The values came from the trigger, not the file: say so.
            self.issues.push(Issue {
                severity: Severity::Error,
                message: format!("pipeline parameters: {}", p.message),
                span: None,
                hint: p.hint,
                trace: Vec::new(),
            });
        }
        self.pipeline_parameters = bindings;
    }

    fn pipeline_lookup(&self, name: &str, at: Span, in_orb: bool) -> Option<Node> {
        if let Some(param) = name.strip_prefix("parameters.") {
            if in_orb {
                return None;
            }
            return self.pipeline_parameters.get(param).cloned();
        }
        let full = format!("pipeline.{name}");
        self.options
            .pipeline_values
            .get(&full)
            .map(|v| input_node(v, at))
    }

    /// A pipeline value or parameter for an expression (`pipeline.git.branch`).
    pub fn expression_value(&self, name: &str) -> Option<crate::expr::ExprValue> {
        let rest = name.strip_prefix("pipeline.")?;
        let node = self.pipeline_lookup(rest, Span::default(), false)?;
        Some(match node.value {
            Value::Bool(b) => crate::expr::ExprValue::Bool(b),
            Value::Int(i) => crate::expr::ExprValue::Number(i as f64),
            Value::Float(f) => crate::expr::ExprValue::Number(f.parse().unwrap_or(f64::NAN)),
            Value::Str(s) => crate::expr::ExprValue::Str(s.to_string()),
            _ => crate::expr::ExprValue::Null,
        })
    }

    fn pipeline_known(&self) -> Vec<String> {
        self.options
            .pipeline_values
            .iter()
            .map(|(k, _)| k.to_string())
            .chain(
                self.pipeline_parameters
                    .values
                    .iter()
                    .map(|(k, _)| format!("pipeline.parameters.{k}")),
            )
            .collect()
    }

    /// Replaces `<< pipeline.* >>` everywhere in a tree.
    pub fn substitute_pipeline(&mut self, node: &Node, in_orb: bool) -> Node {
        let known = self.pipeline_known();
        let this = &*self;
        let lookup = |name: &str| this.pipeline_lookup(name, node.span, in_orb);
        let known_fn = || known.clone();
        let mut sub = Substituter {
            ns: Namespace::Pipeline,
            lookup: &lookup,
            known: &known_fn,
            problems: Vec::new(),
        };
        let out = sub.node(node);
        let problems = std::mem::take(&mut sub.problems);
        for p in problems {
            self.error_hint(p.message, p.span, p.hint);
        }
        out
    }

    fn substitute_pipeline_in_root(&mut self, map: &Map) -> Map {
        let mut out = Map::default();
        for entry in map.iter() {
            let value = match &*entry.key {
                // Declarations cannot use pipeline values; inline orbs are
                // substituted as orbs, without pipeline parameters.
                "parameters" => entry.value.clone(),
                "orbs" => match entry.value.as_map() {
                    Some(orbs) => {
                        let mut substituted = Map::default();
                        for orb in orbs.iter() {
                            let v = if orb.value.as_str().is_some() {
                                self.substitute_pipeline(&orb.value, false)
                            } else {
                                orb.value.clone()
                            };
                            substituted.insert(orb.key.clone(), orb.key_span, v);
                        }
                        Node::new(Value::Map(substituted), entry.value.span)
                    }
                    None => entry.value.clone(),
                },
                _ => self.substitute_pipeline(&entry.value, false),
            };
            out.entries.push(yaml::Entry {
                key: entry.key.clone(),
                key_span: entry.key_span,
                value,
            });
        }
        out
    }

    /// Resolves the `orbs:` of a scope: registry references and inline orbs.
    fn import_orbs(&mut self, scope: SourceId, orbs: &Node, depth: usize) {
        let Some(map) = orbs.as_map() else {
            if !orbs.is_null() {
                self.error(
                    format!("orbs: expected type: Mapping, found: {}", orbs.type_name()),
                    orbs.span,
                );
            }
            return;
        };
        if depth > MAX_ORB_DEPTH {
            self.error("orbs import each other more than 8 levels deep", orbs.span);
            return;
        }
        for entry in map.iter() {
            let alias = entry.key.clone();
            if !params::valid_element_name(&alias) {
                self.error(
                    format!("invalid orb alias `{alias}`: aliases start with a letter and use letters, digits, `_` and `-`"),
                    entry.key_span,
                );
                continue;
            }
            let parent_qualifier = self.scopes[scope.0 as usize].qualifier.clone();
            let qualifier = if parent_qualifier.is_empty() {
                alias.to_string()
            } else {
                format!("{parent_qualifier}/{alias}")
            };
            let imported = match &entry.value.value {
                Value::Str(reference) => {
                    self.import_registry_orb(reference, &qualifier, entry.value.span, depth)
                }
                Value::Map(_) => self.import_inline_orb(scope, &entry.value, &qualifier, depth),
                _ => {
                    self.error(
                        format!(
                            "orb `{alias}` must be a reference like `circleci/node@5.1.0` or an inline orb (a map), found: {}",
                            entry.value.type_name()
                        ),
                        entry.value.span,
                    );
                    None
                }
            };
            match imported {
                Some(id) => {
                    self.scopes[scope.0 as usize].imports.insert(alias, id);
                }
                None => self.scopes[scope.0 as usize].failed_imports.push(alias),
            }
        }
    }

    fn import_registry_orb(
        &mut self,
        reference: &str,
        qualifier: &str,
        at: Span,
        depth: usize,
    ) -> Option<SourceId> {
        let orb_ref = match OrbRef::parse(reference) {
            Ok(r) => r,
            Err(e) => {
                self.error(e, at);
                return None;
            }
        };
        let fetched = match self.orb_source.fetch(&orb_ref) {
            Ok(f) => f,
            Err(OrbFetchError::NotFound { available }) => {
                let mut hint = self.orb_source.import_hint(&orb_ref);
                if !available.is_empty() {
                    hint = format!("available versions: {}; or {hint}", available.join(", "));
                }
                self.error_hint(
                    format!("Cannot find orb {orb_ref}: orb not found"),
                    at,
                    Some(hint),
                );
                return None;
            }
            Err(OrbFetchError::Unavailable(why)) => {
                self.error(format!("Cannot fetch orb {orb_ref}: {why}"), at);
                return None;
            }
        };
        let exact = format!("{}@{}", orb_ref.full_name(), fetched.version);
        if !self.resolved_orbs.iter().any(|o| o.alias == qualifier) {
            self.resolved_orbs.push(ResolvedOrb {
                alias: qualifier.to_string(),
                requested: orb_ref.to_string(),
                resolved: exact.clone(),
            });
        }
        let id = self.new_scope(format!("orb {exact}"), String::new(), qualifier.to_string());
        let document = match yaml::parse(&fetched.source, id) {
            Ok(d) => d,
            Err(e) => {
                self.error(
                    format!(
                        "orb {exact} is not valid YAML: {} (line {}, column {})",
                        e.message, e.line, e.col
                    ),
                    at,
                );
                return None;
            }
        };
        let root = self.substitute_pipeline(&document.root, true);
        self.scopes[id.0 as usize].root = Some(root.clone());
        self.register_orb(id, &root, depth);
        Some(id)
    }

    fn import_inline_orb(
        &mut self,
        parent: SourceId,
        node: &Node,
        qualifier: &str,
        depth: usize,
    ) -> Option<SourceId> {
        let parent_scope = &self.scopes[parent.0 as usize];
        let file = parent_scope.file.clone();
        let prefix = {
            let path = parent_scope
                .root
                .as_ref()
                .and_then(|r| path_of(r, node.span))
                .unwrap_or_else(|| format!("orbs.{qualifier}"));
            if parent_scope.path_prefix.is_empty() {
                path
            } else {
                format!("{}.{path}", parent_scope.path_prefix)
            }
        };
        let id = self.new_scope(file, prefix, qualifier.to_string());
        let mut tree = node.clone();
        retag(&mut tree, id);
        let tree = self.substitute_pipeline(&tree, true);
        self.scopes[id.0 as usize].root = Some(tree.clone());
        self.register_orb(id, &tree, depth);
        Some(id)
    }

    fn register_orb(&mut self, id: SourceId, root: &Node, depth: usize) {
        let Some(map) = root.as_map() else {
            self.error(
                format!(
                    "an orb must be a map of keys (commands, jobs, executors, ...), found: {}",
                    root.type_name()
                ),
                root.span,
            );
            return;
        };
        if let Some(orbs) = map.get("orbs") {
            self.import_orbs(id, orbs, depth + 1);
        }
        self.register_definitions(id, map);
    }

    /// Registers the commands, executors and jobs a scope defines.
    fn register_definitions(&mut self, scope: SourceId, map: &Map) {
        for (key, kind) in [
            ("commands", Kind::Command),
            ("executors", Kind::Executor),
            ("jobs", Kind::Job),
        ] {
            let Some(node) = map.get(key) else { continue };
            let Some(defs) = node.as_map() else {
                if !node.is_null() {
                    self.error(
                        format!("{key}: expected type: Mapping, found: {}", node.type_name()),
                        node.span,
                    );
                }
                continue;
            };
            let mut seen_lower: HashMap<String, Span> = HashMap::new();
            for entry in defs.iter() {
                if kind == Kind::Job
                    && let Some(first) = seen_lower.insert(entry.key.to_lowercase(), entry.key_span)
                    && first != entry.key_span
                {
                    self.error(
                        format!(
                            "job names must be unique ignoring case: `{}` repeats an earlier job",
                            entry.key
                        ),
                        entry.key_span,
                    );
                }
                if kind != Kind::Job && !params::valid_element_name(&entry.key) {
                    self.error(
                        format!(
                            "invalid {} name `{}`: names start with a letter and use letters, digits, `_` and `-`",
                            kind.word(),
                            entry.key
                        ),
                        entry.key_span,
                    );
                }
                let Some(body) = entry.value.as_map() else {
                    self.error(
                        format!(
                            "{} `{}` must be a map, found: {}",
                            kind.word(),
                            entry.key,
                            entry.value.type_name()
                        ),
                        entry.value.span,
                    );
                    continue;
                };
                self.check_definition_keys(kind, &entry.key, body, entry.value.span);
                let mut problems = Vec::new();
                let kind_of_decl = if scope.0 == 0 {
                    DeclKind::Element
                } else {
                    DeclKind::OrbElement
                };
                let decls = if self.version == ConfigVersion::V2_1 {
                    params::parse_decls(body.get("parameters"), kind_of_decl, &mut problems)
                } else {
                    Vec::new()
                };
                self.param_problems(problems);
                let def = Rc::new(Def {
                    name: entry.key.clone(),
                    node: entry.value.clone(),
                    params: decls,
                });
                let s = &mut self.scopes[scope.0 as usize];
                match kind {
                    Kind::Command => {
                        s.commands.insert(entry.key.clone(), def);
                    }
                    Kind::Executor => {
                        s.executors.insert(entry.key.clone(), def);
                    }
                    Kind::Job => {
                        s.jobs.insert(entry.key.clone(), def);
                    }
                }
            }
        }
    }

    fn check_definition_keys(&mut self, kind: Kind, name: &str, body: &Map, at: Span) {
        match kind {
            Kind::Command => {
                self.check_keys(
                    body,
                    &["steps", "parameters", "description"],
                    &format!("command `{name}`"),
                );
                if !body.contains_key("steps") {
                    self.error(
                        format!("command `{name}`: required key [steps] not found"),
                        at,
                    );
                }
            }
            Kind::Executor => {
                self.check_keys(
                    body,
                    &[
                        "docker",
                        "machine",
                        "macos",
                        "windows",
                        "resource_class",
                        "shell",
                        "working_directory",
                        "environment",
                        "parameters",
                        "description",
                    ],
                    &format!("executor `{name}`"),
                );
                if self.version == ConfigVersion::V2_0 && body.contains_key("parameters") {
                    self.error("parameters require config version 2.1", at);
                }
            }
            Kind::Job => {
                if self.version == ConfigVersion::V2_0
                    && let Some(e) = body.entry("parameters")
                {
                    let span = e.key_span;
                    self.error_hint(
                        "job parameters require config version 2.1",
                        span,
                        Some("change `version: 2` to `version: 2.1`".into()),
                    );
                }
            }
        }
    }

    /// Reports keys of `map` that are not in `allowed`, with a suggestion.
    pub fn check_keys(&mut self, map: &Map, allowed: &[&str], what: &str) {
        for entry in map.iter() {
            if !allowed.contains(&&*entry.key) {
                self.error_hint(
                    format!("{what}: extraneous key [{}] is not permitted", entry.key),
                    entry.key_span,
                    suggest(&entry.key, allowed.iter().copied()),
                );
            }
        }
    }

    /// Finds a definition by the name written in `scope`: `name`, `alias/name`,
    /// or deeper `alias/alias/name` through imports.
    pub fn lookup(&self, scope: SourceId, kind: Kind, name: &str) -> Option<(SourceId, Rc<Def>)> {
        let s = self.scopes.get(scope.0 as usize)?;
        // A name of the scope itself wins: compiled configs name orb jobs
        // `alias/job` as plain jobs.
        let own = match kind {
            Kind::Command => s.commands.get(name),
            Kind::Executor => s.executors.get(name),
            Kind::Job => s.jobs.get(name),
        };
        if let Some(def) = own {
            return Some((scope, def.clone()));
        }
        let (alias, rest) = name.split_once('/')?;
        let target = *s.imports.get(alias)?;
        self.lookup(target, kind, rest)
    }

    /// Whether `name` refers to an orb whose import already failed, so a missing
    /// definition under it needs no second error.
    pub fn under_failed_orb(&self, scope: SourceId, name: &str) -> bool {
        let Some((alias, rest)) = name.split_once('/') else {
            return false;
        };
        let Some(s) = self.scopes.get(scope.0 as usize) else {
            return false;
        };
        if s.failed_imports.iter().any(|a| &**a == alias) {
            return true;
        }
        s.imports
            .get(alias)
            .is_some_and(|target| self.under_failed_orb(*target, rest))
    }

    /// Every name of `kind` visible from `scope`, for hints.
    pub fn visible_names(&self, scope: SourceId, kind: Kind) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_names(scope, kind, "", 0, &mut out);
        out
    }

    fn collect_names(
        &self,
        scope: SourceId,
        kind: Kind,
        prefix: &str,
        depth: usize,
        out: &mut Vec<String>,
    ) {
        let Some(s) = self.scopes.get(scope.0 as usize) else {
            return;
        };
        let names: Vec<&Arc<str>> = match kind {
            Kind::Command => s.commands.keys().collect(),
            Kind::Executor => s.executors.keys().collect(),
            Kind::Job => s.jobs.keys().collect(),
        };
        out.extend(names.into_iter().map(|n| format!("{prefix}{n}")));
        if depth == 0 {
            for (alias, target) in &s.imports {
                self.collect_names(*target, kind, &format!("{prefix}{alias}/"), depth + 1, out);
            }
        }
    }

    /// An element's definition with its arguments substituted, without the
    /// `parameters` and `description` keys.
    pub fn substitute_body(&mut self, def: &Def, bindings: &Bindings) -> Map {
        let Some(map) = def.node.as_map() else {
            return Map::default();
        };
        let lookup = |name: &str| bindings.get(name).cloned();
        let known = || {
            def.params
                .iter()
                .map(|d| d.name.to_string())
                .collect::<Vec<_>>()
        };
        let mut sub = Substituter {
            ns: Namespace::Parameters,
            lookup: &lookup,
            known: &known,
            problems: Vec::new(),
        };
        let mut out = Map {
            entries: Vec::with_capacity(map.len()),
        };
        for e in map.iter() {
            if matches!(&*e.key, "parameters" | "description") {
                continue;
            }
            let value = if self.version == ConfigVersion::V2_0 {
                e.value.clone()
            } else {
                sub.node(&e.value)
            };
            out.entries.push(yaml::Entry {
                key: e.key.clone(),
                key_span: e.key_span,
                value,
            });
        }
        for p in sub.problems {
            self.error_hint(p.message, p.span, p.hint);
        }
        out
    }

    /// Substitutes an element's parameters into its body.
    pub fn substitute_parameters(
        &mut self,
        node: &Node,
        bindings: &Bindings,
        decls: &[ParamDecl],
    ) -> Node {
        if self.version == ConfigVersion::V2_0 {
            return node.clone();
        }
        let lookup = |name: &str| bindings.get(name).cloned();
        let known = || decls.iter().map(|d| d.name.to_string()).collect::<Vec<_>>();
        let mut sub = Substituter {
            ns: Namespace::Parameters,
            lookup: &lookup,
            known: &known,
            problems: Vec::new(),
        };
        let out = sub.node(node);
        for p in sub.problems {
            self.error_hint(p.message, p.span, p.hint);
        }
        out
    }
}

/// Turns a value from outside the config into a node.
pub(crate) fn input_node(value: &InputValue, at: Span) -> Node {
    let v = match value {
        InputValue::Bool(b) => Value::Bool(*b),
        InputValue::Integer(i) => Value::Int(*i),
        InputValue::String(s) => Value::Str(Arc::from(s.as_str())),
    };
    Node::new(v, at)
}

/// Moves a subtree to another source (an inline orb becomes its own scope).
fn retag(node: &mut Node, source: SourceId) {
    node.span.source = source;
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| retag(n, source)),
        Value::Map(map) => {
            for e in &mut map.entries {
                e.key_span.source = source;
                retag(&mut e.value, source);
            }
        }
        _ => {}
    }
}
