//! Projects (the list, adding one), a project's settings (variables, its
//! webhook, build rules), the admin area (users and roles, runners and the
//! queue, the server's configuration and health) and the account page
//! (changing one's password).
//!
//! What each role sees: viewers read (variables masked as the API masks
//! them, no webhook secret, no forms); members and admins change projects;
//! only admins open `/admin`. The handlers check the role again, whatever
//! the page showed.

use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::routing::{get, post};
use maud::{Markup, html};
use orrery_store::{Project, Role, now_ms};
use serde::Deserialize;
use serde_json::Value;

use super::{St, respond};
use crate::AppState;
use crate::api::hooks::{BuildRules, TagRule};
use crate::api::project_by_path;
use crate::api::v2::{CreateProject, create_project, mask, set_envvar, webhook_json};
use crate::error::ApiError;
use crate::secrets::hash_token;
use crate::web::session::{Empty, WebForm, hash_password};
use crate::web::view::{self, csrf, seg, when};
use crate::web::{Html, WebUser, redirect};

/// The shortest password the web app accepts.
pub const MIN_PASSWORD: usize = 12;
/// A runner is online when it was heard from this recently.
const ONLINE: i64 = 60_000;

type Slug = Path<(String, String, String)>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/projects", get(projects).post(add_project))
        .route("/projects/{vcs}/{org}/{repo}/settings", get(settings))
        .route("/projects/{vcs}/{org}/{repo}/settings/env", post(env_add))
        .route(
            "/projects/{vcs}/{org}/{repo}/settings/env/{name}/delete",
            post(env_delete),
        )
        .route(
            "/projects/{vcs}/{org}/{repo}/settings/rules",
            post(rules_save),
        )
        .route("/admin", get(admin))
        .route("/admin/users", post(user_create))
        .route("/admin/users/{id}/role", post(user_role))
        .route("/account", get(account))
        .route("/account/password", post(password_change))
}

fn settings_url(p: &Project) -> String {
    format!("/projects/{}/settings", p.slug)
}

// ---- projects ----

pub async fn projects(state: St, user: WebUser, headers: HeaderMap) -> Html {
    projects_page(&state, &user, &headers, None).await
}

/// The project list and the add form; after adding, the new project's
/// webhook URL and secret (shown this once).
async fn projects_page(
    state: &AppState,
    user: &WebUser,
    headers: &HeaderMap,
    created: Option<(&Project, &str)>,
) -> Html {
    let projects = state.store.projects().await?;
    let body = html! {
        div.page-head { h1 { "Projects" } }
        @if let Some((p, secret)) = created {
            (created_panel(state, p, secret))
        }
        @if projects.is_empty() {
            p.empty data-testid="no-projects" { "No projects yet." }
        } @else {
            table.projects data-testid="projects" {
                thead { tr { th { "Project" } th { "Repository" } th { "Default branch" } th {} } }
                tbody {
                    @for p in &projects {
                        tr data-testid="project-row" data-project=(p.slug) {
                            td { a href={"/pipelines/" (p.slug)} { (p.slug) } }
                            td { code { (p.repo_url) } }
                            td { code { (p.default_branch) } }
                            td {
                                a href=(settings_url(p)) data-testid="settings-link" { "Settings" } " · "
                                a href=(super::insights::insights_url(p)) data-testid="insights-link" { "Insights" }
                            }
                        }
                    }
                }
            }
        }
        @if user.can_write() {
            section.panel {
                h2 { "Add a project" }
                form.stacked method="post" action="/projects" data-testid="add-project-form" {
                    (csrf(user))
                    label { "VCS type "
                        select name="vcs" {
                            option value="gh" { "GitHub (gh)" }
                            option value="gl" { "GitLab (gl)" }
                            option value="gitea" { "Gitea / Forgejo (gitea)" }
                            option value="git" selected { "Plain git (git)" }
                        }
                    }
                    label { "Organization " input name="org" required pattern="[A-Za-z0-9_.\\-]+" placeholder="acme"; }
                    label { "Repository name " input name="repo" required pattern="[A-Za-z0-9_.\\-]+" placeholder="app"; }
                    label { "Repository URL " input name="repo_url" required placeholder="https://git.example.com/acme/app.git, file:///srv/git/app.git or /srv/git/app.git"; }
                    label { "Default branch " input name="default_branch" value="main"; }
                    button.primary type="submit" { "Add project" }
                }
            }
        }
    };
    Ok(respond(user, headers, "Projects", None, body))
}

fn created_panel(state: &AppState, p: &Project, secret: &str) -> Markup {
    let hook = webhook_json(state, p, secret);
    let url = hook["url"].as_str().unwrap_or_default().to_string();
    let generic = hook["urls"]["generic"].as_str().unwrap_or_default();
    html! {
        section.panel.created data-testid="project-created" {
            h2 { "Added " a href=(settings_url(p)) { (p.slug) } }
            p { "Point the repository's webhook here. The secret is shown this once; "
                "members and admins find it again on the project's settings page." }
            dl.kv {
                dt { "Webhook URL" } dd { code data-testid="webhook-url" { (url) } }
                dt { "Secret" } dd { code data-testid="webhook-secret" { (secret) } }
            }
            details open[p.vcs_provider == "git"] {
                summary { "A plain git server: the post-receive hook" }
                p { "In the bare repository on the git server:" }
                pre.hint data-testid="post-receive-hint" {
                    "curl -fsS " (state.base_url) "/hooks/post-receive -o hooks/post-receive && chmod +x hooks/post-receive\n"
                    "git config orrery.webhookUrl " (generic) "\n"
                    "git config orrery.webhookSecret " (secret) "\n"
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct AddProject {
    #[serde(default)]
    vcs: String,
    #[serde(default)]
    org: String,
    #[serde(default)]
    repo: String,
    #[serde(default)]
    repo_url: String,
    #[serde(default)]
    default_branch: String,
}

pub async fn add_project(
    state: St,
    headers: HeaderMap,
    WebForm { user, form }: WebForm<AddProject>,
) -> Html {
    user.require_write()?;
    let vcs = form.vcs.trim();
    if !matches!(vcs, "gh" | "gl" | "gitea" | "git") {
        return Err(ApiError::BadRequest(format!(
            "`{vcs}` is not a VCS type: choose gh, gl, gitea or git"
        ))
        .into());
    }
    let branch = form.default_branch.trim();
    let (project, secret) = create_project(
        &state,
        vcs,
        form.org.trim(),
        form.repo.trim(),
        CreateProject {
            repo_url: form.repo_url.trim().to_string(),
            default_branch: (!branch.is_empty()).then(|| branch.to_string()),
            ..CreateProject::default()
        },
    )
    .await?;
    let mut r = projects_page(&state, &user, &headers, Some((&project, &secret))).await?;
    *r.status_mut() = axum::http::StatusCode::CREATED;
    Ok(r)
}

// ---- a project's settings ----

pub async fn settings(state: St, user: WebUser, headers: HeaderMap, Path(path): Slug) -> Html {
    let project = project_by_path(&state, &path.0, &path.1, &path.2).await?;
    let vars = state.store.env(&project.id).await?;
    let latest = state
        .store
        .pipelines(Some(&project.id), None, None, 1)
        .await?
        .into_iter()
        .next();
    let secret =
        if user.can_write() {
            Some(state.cipher.open(&project.webhook_secret).ok_or_else(|| {
                ApiError::Internal("the webhook secret cannot be decrypted".into())
            })?)
        } else {
            None
        };
    let hook = webhook_json(&state, &project, secret.as_deref().unwrap_or_default());
    let rules = BuildRules::of(&project);
    let base = settings_url(&project);
    let title = format!("Settings of {}", project.slug);
    let body = html! {
        div.page-head {
            h1 { a href={"/pipelines/" (project.slug)} { (project.slug) } " · settings" }
        }
        section.panel {
            h2 { "Project" }
            dl.kv {
                dt { "Repository URL" } dd { code data-testid="repo-url" { (project.repo_url) } }
                dt { "Default branch" } dd { code data-testid="default-branch" { (project.default_branch) } }
                dt { "Latest pipeline" }
                dd {
                    @match &latest {
                        Some(p) => {
                            a href={"/pipelines/" (project.slug) "/" (p.number)} { "#" (p.number) } " · "
                            a href={"/pipelines/" (project.slug) "/" (p.number) "/config"} data-testid="latest-config" { "its configuration (source and compiled)" }
                        }
                        None => span.dim { "none yet" },
                    }
                }
            }
        }
        section.panel {
            h2 { "Environment variables" }
            @if vars.is_empty() {
                p.empty data-testid="no-env" { "No variables." }
            } @else {
                table.env data-testid="env-table" {
                    thead { tr { th { "Name" } th { "Value" } th { "Added" } th {} } }
                    tbody {
                        @for v in &vars {
                            tr data-testid="env-row" data-name=(v.name) {
                                td { code { (v.name) } }
                                td { code.masked { (mask(&state.cipher.open(&v.value).unwrap_or_default())) } }
                                td { (when(v.created_at)) }
                                td {
                                    @if user.can_write() {
                                        form.inline method="post" action={(base) "/env/" (seg(&v.name)) "/delete"} {
                                            (csrf(&user))
                                            button.danger type="submit" data-testid="env-delete" { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if user.can_write() {
                form.stacked method="post" action={(base) "/env"} data-testid="env-form" {
                    (csrf(&user))
                    label { "Name " input name="name" required pattern="[A-Za-z_][A-Za-z0-9_]*" autocomplete="off"; }
                    label { "Value " input name="value" type="password" autocomplete="new-password"; }
                    button.primary type="submit" { "Add variable" }
                }
                p.dim { "Values are encrypted at rest and never shown again; a variable with the same name is replaced." }
            }
        }
        section.panel {
            h2 { "Webhook" }
            dl.kv {
                dt { "URL" } dd { code data-testid="webhook-url" { (hook["url"].as_str().unwrap_or_default()) } }
                @if let Some(s) = &secret {
                    dt { "Secret" } dd { code data-testid="webhook-secret" { (s) } }
                    dt { "Generic (post-receive)" } dd { code { (hook["urls"]["generic"].as_str().unwrap_or_default()) } }
                }
            }
            @if secret.is_none() { p.dim { "Members and admins see the webhook's secret." } }
        }
        section.panel {
            h2 { "Build rules" }
            p.dim { "Which pushes webhooks build. Patterns are globs (" code { "*" } " any characters, " code { "?" } " one), one a line. Pipelines triggered from the API or by schedules are not filtered." }
            @if user.can_write() {
                form.stacked method="post" action={(base) "/rules"} data-testid="rules-form" {
                    (csrf(&user))
                    label { "Branches that build (empty: every branch)"
                        textarea name="branches" rows="4" placeholder="main\nrelease/*" { (rules.branches.join("\n")) }
                    }
                    fieldset {
                        legend { "Tags" }
                        @for (value, label) in [(TagRule::All, "every tag"), (TagRule::None, "no tags"), (TagRule::Patterns, "tags matching:")] {
                            label.radio {
                                input type="radio" name="tags" value=(tag_rule_str(value)) checked[rules.tags == value];
                                " " (label)
                            }
                        }
                        textarea name="tag_patterns" rows="3" placeholder="v*" { (rules.tag_patterns.join("\n")) }
                    }
                    button.primary type="submit" { "Save rules" }
                }
            } @else {
                dl.kv data-testid="rules" {
                    dt { "Branches" }
                    dd { @if rules.branches.is_empty() { "every branch" } @else { code { (rules.branches.join(", ")) } } }
                    dt { "Tags" }
                    dd {
                        @match rules.tags {
                            TagRule::All => "every tag",
                            TagRule::None => "no tags",
                            TagRule::Patterns => code { (rules.tag_patterns.join(", ")) },
                        }
                    }
                }
            }
        }
    };
    Ok(respond(&user, &headers, &title, None, body))
}

fn tag_rule_str(r: TagRule) -> &'static str {
    match r {
        TagRule::All => "all",
        TagRule::None => "none",
        TagRule::Patterns => "patterns",
    }
}

#[derive(Deserialize)]
pub struct EnvForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: String,
}

pub async fn env_add(
    state: St,
    Path(path): Slug,
    WebForm { user, form }: WebForm<EnvForm>,
) -> Html {
    user.require_write()?;
    let project = project_by_path(&state, &path.0, &path.1, &path.2).await?;
    set_envvar(&state, &project, form.name.trim(), &form.value).await?;
    Ok(redirect(&settings_url(&project)))
}

pub async fn env_delete(
    state: St,
    Path((vcs, org, repo, name)): Path<(String, String, String, String)>,
    WebForm { user, .. }: WebForm<Empty>,
) -> Html {
    user.require_write()?;
    let project = project_by_path(&state, &vcs, &org, &repo).await?;
    if !state.store.delete_env(&project.id, &name).await? {
        return Err(ApiError::NotFound(format!("There is no variable `{name}`.")).into());
    }
    Ok(redirect(&settings_url(&project)))
}

#[derive(Deserialize)]
pub struct RulesForm {
    #[serde(default)]
    branches: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    tag_patterns: String,
}

pub async fn rules_save(
    state: St,
    Path(path): Slug,
    WebForm { user, form }: WebForm<RulesForm>,
) -> Html {
    user.require_write()?;
    let project = project_by_path(&state, &path.0, &path.1, &path.2).await?;
    let tags = match form.tags.as_str() {
        "" | "all" => TagRule::All,
        "none" => TagRule::None,
        "patterns" => TagRule::Patterns,
        other => {
            return Err(ApiError::BadRequest(format!(
                "`{other}` is not a tag rule: all, none or patterns"
            ))
            .into());
        }
    };
    let rules = BuildRules {
        branches: BuildRules::parse_patterns("branch", &form.branches)?,
        tags,
        tag_patterns: BuildRules::parse_patterns("tag", &form.tag_patterns)?,
    };
    if rules.tags == TagRule::Patterns && rules.tag_patterns.is_empty() {
        return Err(ApiError::BadRequest(
            "Tags matching patterns needs at least one pattern (or choose no tags).".into(),
        )
        .into());
    }
    let mut settings: Value = serde_json::from_str(&project.settings).unwrap_or_default();
    if !settings.is_object() {
        settings = Value::Object(Default::default());
    }
    settings["build_rules"] =
        serde_json::to_value(&rules).map_err(|e| ApiError::Internal(e.to_string()))?;
    state
        .store
        .set_project_settings(&project.id, &settings.to_string())
        .await?;
    Ok(redirect(&settings_url(&project)))
}

// ---- the admin area ----

/// Where objects are kept, without credentials: a directory as it is, an
/// object store as its scheme and bucket.
pub fn blob_place(location: &str) -> String {
    match location.split_once("://") {
        Some((scheme, rest)) if scheme != "file" => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let bucket = host.rsplit('@').next().unwrap_or_default();
            format!("{scheme}://{bucket}")
        }
        _ => location.to_string(),
    }
}

fn days(d: Option<Duration>) -> String {
    match d {
        Some(d) => {
            let days = d.as_secs_f64() / 86_400.0;
            if days.fract() == 0.0 {
                format!("{days:.0} days")
            } else {
                format!("{days:.2} days")
            }
        }
        None => "kept".to_string(),
    }
}

fn role_select(current: Role) -> Markup {
    html! {
        select name="role" {
            @for r in [Role::Admin, Role::Member, Role::Viewer] {
                option value=(r.as_str()) selected[r == current] { (r.as_str()) }
            }
        }
    }
}

pub async fn admin(state: St, user: WebUser, headers: HeaderMap) -> Html {
    user.require_admin()?;
    let users = state.store.users().await?;
    let runners = state.store.runners().await?;
    let classes = state.store.resource_classes().await?;
    let depth = state.store.queue_depth().await?;
    let now = now_ms();
    let mut class_names: Vec<String> = classes.iter().map(|c| c.name.clone()).collect();
    for (c, _) in &depth {
        if !class_names.contains(c) {
            class_names.push(c.clone());
        }
    }
    if !class_names
        .iter()
        .any(|c| c == orrery_engine::DEFAULT_CLASS)
    {
        class_names.insert(0, orrery_engine::DEFAULT_CLASS.to_string());
    }
    class_names.sort();
    let embedded = |r: &orrery_store::Runner| {
        state.embedded_slots > 0
            && r.name == crate::EMBEDDED_RUNNER
            && r.resource_class == orrery_engine::DEFAULT_CLASS
    };
    let online = |r: &orrery_store::Runner| embedded(r) || now - r.last_connected < ONLINE;
    let db_ok = state.store.count_users().await.is_ok();
    let counts = state.store.counts().await.ok();
    let uptime = view::duration(state.started_at.elapsed().as_millis() as i64);
    let r = &state.retention;
    let body = html! {
        div.page-head { h1 { "Admin" } }
        section.panel {
            h2 { "Users" }
            table.users data-testid="users-table" {
                thead { tr { th { "Login" } th { "Name" } th { "Role" } th { "Change role" } } }
                tbody {
                    @for u in &users {
                        tr data-testid="user-row" data-login=(u.login) data-role=(u.role.as_str()) {
                            td { code { (u.login) } @if u.id == user.user.id { " " span.dim { "(you)" } } }
                            td { (u.name) }
                            td { (u.role.as_str()) }
                            td {
                                form.inline method="post" action={"/admin/users/" (u.id) "/role"} data-testid="role-form" {
                                    (csrf(&user))
                                    (role_select(u.role))
                                    button type="submit" { "Change" }
                                }
                            }
                        }
                    }
                }
            }
            p.dim { "Changing a role signs that user out everywhere." }
            h3 { "New user" }
            form.stacked method="post" action="/admin/users" data-testid="new-user-form" {
                (csrf(&user))
                label { "Login " input name="login" required pattern="[A-Za-z0-9_][A-Za-z0-9_.\\-]*" autocomplete="off"; }
                label { "Name " input name="name"; }
                label { "Role " (role_select(Role::Member)) }
                label { "Initial password (at least " (MIN_PASSWORD) " characters) "
                    input name="password" type="password" required minlength=(MIN_PASSWORD) autocomplete="new-password";
                }
                button.primary type="submit" { "Create user" }
            }
        }
        section.panel {
            h2 { "Runners" }
            table.runners data-testid="runners-table" {
                thead { tr { th { "Runner" } th { "Resource class" } th { "Host" } th { "Version" } th { "Last seen" } th { "State" } } }
                tbody {
                    @if runners.is_empty() {
                        tr { td.empty colspan="6" { "No runners have connected." } }
                    }
                    @for rn in &runners {
                        @let on = online(rn);
                        tr data-testid="runner-row" data-online=(on) {
                            td { code { (rn.name) } @if embedded(rn) { " " span.dim { "(embedded, " (state.embedded_slots) " slots)" } } }
                            td { code { (rn.resource_class) } }
                            td { (rn.hostname) }
                            td { (rn.version) }
                            td { (when(rn.last_connected)) }
                            td { @if on { span.status.s-success { "online" } } @else { span.status.s-not_run { "offline" } } }
                        }
                    }
                }
            }
            h3 { "Resource classes and queue depth" }
            table.queue data-testid="queue-depth" {
                thead { tr { th { "Resource class" } th { "Description" } th { "Queued tasks" } th { "Runners online" } } }
                tbody {
                    @for c in &class_names {
                        tr data-class=(c) {
                            td { code { (c) } }
                            td { (classes.iter().find(|rc| &rc.name == c).map(|rc| rc.description.as_str()).unwrap_or("")) }
                            td.num data-testid="queued" { (depth.iter().find(|(n, _)| n == c).map_or(0, |(_, d)| *d)) }
                            td.num { (runners.iter().filter(|rn| &rn.resource_class == c && online(rn)).count()) }
                        }
                    }
                }
            }
        }
        section.panel {
            h2 { "Server" }
            dl.kv data-testid="server-config" {
                dt { "Listening on" } dd { code { (state.listen) } }
                dt { "Public URL" } dd { code { (state.base_url) } }
                dt { "Data directory" } dd { code { (state.data_dir.display()) } }
                dt { "Object storage" } dd { code { (blob_place(state.blobs.location())) } }
                dt { "Embedded runner" } dd {
                    @if state.embedded_slots > 0 { (state.embedded_slots) " slots" } @else { "off" }
                }
                dt { "Retention" } dd {
                    "artifacts " (days(r.artifacts)) ", workspaces " (days(r.workspaces))
                    ", caches " (days(r.caches)) ", test results " (days(r.test_results))
                    ", step output " (days(r.output))
                }
                dt { "Version" } dd { (env!("CARGO_PKG_VERSION")) }
            }
            h3 { "Health" }
            dl.kv data-testid="health" {
                dt { "Database" } dd data-testid="db-health" {
                    @if db_ok { span.status.s-success { "answers" } } @else { span.status.s-failed { "does not answer" } }
                }
                @if let Some((projects, pipelines)) = counts {
                    dt { "Projects" } dd data-testid="count-projects" { (projects) }
                    dt { "Pipelines" } dd data-testid="count-pipelines" { (pipelines) }
                }
                dt { "Up for" } dd { (uptime) }
            }
        }
    };
    Ok(respond(&user, &headers, "Admin", None, body))
}

fn valid_login(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.starts_with(['.', '-'])
}

fn check_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(ApiError::BadRequest(format!(
            "The password must have at least {MIN_PASSWORD} characters."
        )));
    }
    if password.len() > 1024 {
        return Err(ApiError::BadRequest(
            "The password is longer than 1024 bytes.".into(),
        ));
    }
    Ok(())
}

fn parse_role(s: &str) -> Result<Role, ApiError> {
    Role::parse(s).ok_or_else(|| {
        ApiError::BadRequest(format!("`{s}` is not a role: admin, member or viewer"))
    })
}

#[derive(Deserialize)]
pub struct NewUserForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
}

pub async fn user_create(state: St, WebForm { user, form }: WebForm<NewUserForm>) -> Html {
    user.require_admin()?;
    let login = form.login.trim();
    if !valid_login(login) {
        return Err(ApiError::BadRequest(format!(
            "The login `{login}` may only hold letters, digits, `-`, `_` and `.` (at most 64)."
        ))
        .into());
    }
    let role = parse_role(&form.role)?;
    let name = match form.name.trim() {
        "" => login,
        n => n,
    };
    if name.chars().count() > 200 {
        return Err(ApiError::BadRequest("The name is longer than 200 characters.".into()).into());
    }
    check_password(&form.password)?;
    let hash = hash_password(&form.password)?;
    let created = state
        .store
        .create_user(login, name, role)
        .await
        .map_err(|e| match e {
            orrery_store::StoreError::Conflict(_) => {
                ApiError::Conflict(format!("A user named `{login}` exists already."))
            }
            other => other.into(),
        })?;
    state
        .store
        .set_password_hash(&created.id, Some(&hash))
        .await?;
    Ok(redirect("/admin"))
}

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    role: String,
}

pub async fn user_role(
    state: St,
    Path(id): Path<String>,
    WebForm { user, form }: WebForm<RoleForm>,
) -> Html {
    user.require_admin()?;
    let role = parse_role(&form.role)?;
    let target = state
        .store
        .user(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound("User not found".into()))?;
    if target.role == role {
        return Ok(redirect("/admin"));
    }
    if target.role == Role::Admin && state.store.count_admins().await? <= 1 {
        return Err(ApiError::Conflict(format!(
            "{} is the last admin: make another user an admin first.",
            target.login
        ))
        .into());
    }
    state.store.set_role(&target.id, role).await?;
    state.store.delete_sessions_of(&target.id).await?;
    if target.id == user.user.id {
        return Ok(signed_out());
    }
    Ok(redirect("/admin"))
}

/// To the sign-in page, the session cookie cleared.
fn signed_out() -> axum::response::Response {
    let mut r = redirect("/signin");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("orrery_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    r
}

// ---- the account page ----

pub async fn account(user: WebUser, headers: HeaderMap) -> Html {
    let body = html! {
        div.page-head { h1 { "Account" } }
        section.panel {
            dl.kv {
                dt { "Login" } dd { code { (user.user.login) } }
                dt { "Name" } dd { (user.user.name) }
                dt { "Role" } dd { (user.user.role.as_str()) }
            }
        }
        section.panel {
            h2 { "Change my password" }
            form.stacked method="post" action="/account/password" data-testid="password-form" {
                (csrf(&user))
                label { "Current password or API token " input name="current" type="password" required autocomplete="current-password"; }
                label { "New password (at least " (MIN_PASSWORD) " characters) "
                    input name="password" type="password" required minlength=(MIN_PASSWORD) autocomplete="new-password";
                }
                label { "New password again " input name="repeat" type="password" required autocomplete="new-password"; }
                button.primary type="submit" { "Change password" }
            }
            p.dim { "Changing the password signs you out everywhere." }
        }
    };
    Ok(respond(&user, &headers, "Account", None, body))
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    repeat: String,
}

fn password_matches(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

pub async fn password_change(state: St, WebForm { user, form }: WebForm<PasswordForm>) -> Html {
    let hash = state
        .store
        .user_with_password(&user.user.login)
        .await?
        .and_then(|(_, h)| h);
    let by_password = hash.is_some_and(|h| password_matches(&form.current, &h));
    let by_token = !by_password
        && state
            .store
            .user_by_token_hash(&hash_token(form.current.trim()))
            .await?
            .is_some_and(|u| u.id == user.user.id);
    if !by_password && !by_token {
        return Err(ApiError::Forbidden(
            "The current password (or API token) is wrong; the password was not changed.".into(),
        )
        .into());
    }
    check_password(&form.password)?;
    if form.password != form.repeat {
        return Err(ApiError::BadRequest(
            "The two new passwords differ; the password was not changed.".into(),
        )
        .into());
    }
    let hash = hash_password(&form.password)?;
    state
        .store
        .set_password_hash(&user.user.id, Some(&hash))
        .await?;
    state.store.delete_sessions_of(&user.user.id).await?;
    Ok(signed_out())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_places_hide_credentials() {
        assert_eq!(blob_place("/srv/blobs"), "/srv/blobs");
        assert_eq!(blob_place("s3://bucket/prefix"), "s3://bucket");
        assert_eq!(blob_place("s3://key:secret@bucket/p?x=1"), "s3://bucket");
        assert_eq!(blob_place("gs://b"), "gs://b");
    }

    #[test]
    fn logins() {
        assert!(valid_login("alice.b-c_1"));
        assert!(!valid_login(""));
        assert!(!valid_login("-x"));
        assert!(!valid_login("a b"));
    }
}
