//! Webhooks: real provider payloads (orrery-vcs's fixtures) rewritten to a
//! local repository's commits, signed with the project's secret, start
//! pipelines; skips, forks, pings and bad signatures do not.

mod common;

use std::path::PathBuf;

use common::{Repo, Resp, TestServer, Who};
use serde_json::{Value, json};

const SLUG: &str = "gh/acme/app";

/// `build` runs on branches; `release` only on `v*` tags; `pr-env` records
/// the pull request variables.
fn config(dir: &std::path::Path) -> String {
    format!(
        "version: 2.1
jobs:
  build:
    machine: true
    steps:
      - run: echo build
      - run: printf '%s|%s' \"$CIRCLE_PULL_REQUEST\" \"$CIRCLE_BRANCH\" > {}/pr-env-$CIRCLE_BUILD_NUM
  release:
    machine: true
    steps: [{{run: echo release}}]
workflows:
  main:
    jobs: [build]
  release:
    jobs:
      - release:
          filters:
            tags: {{only: /^v.*/}}
            branches: {{ignore: /.*/}}
",
        dir.display()
    )
}

fn fixture(path: &str) -> Value {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../orrery-vcs/tests/fixtures")
        .join(path);
    serde_json::from_slice(&std::fs::read(&full).unwrap()).unwrap()
}

struct World {
    s: TestServer,
    repo: Repo,
    project_id: String,
    secret: String,
    out: tempfile::TempDir,
}

async fn world() -> World {
    let s = TestServer::start().await;
    let out = tempfile::tempdir().unwrap();
    let repo = s.repo("app", &config(out.path()));
    let p = s.create_project(SLUG, &repo, json!({})).await;
    World {
        project_id: p["id"].as_str().unwrap().to_string(),
        secret: p["webhook"]["secret"].as_str().unwrap().to_string(),
        s,
        repo,
        out,
    }
}

impl World {
    async fn hook(&self, provider: &str, headers: &[(&str, String)], body: &[u8]) -> Resp {
        let mut req = self
            .s
            .request(
                "post",
                &format!("/hooks/{provider}/{}", self.project_id),
                Who::Anonymous,
            )
            .body(body.to_vec());
        let mut typed = false;
        for (k, v) in headers {
            typed |= k.eq_ignore_ascii_case("content-type");
            req = req.header(*k, v);
        }
        if !typed {
            req = req.header("content-type", "application/json");
        }
        TestServer::send(req).await
    }

    fn sign(&self, body: &[u8]) -> String {
        format!("sha256={}", orrery_vcs::sign(body, &self.secret))
    }

    /// A GitHub event signed with the project's secret.
    async fn github(&self, event: &str, payload: &Value) -> Resp {
        let body = serde_json::to_vec(payload).unwrap();
        self.hook(
            "github",
            &[
                ("X-GitHub-Event", event.to_string()),
                (
                    "X-GitHub-Delivery",
                    "72d3162e-cc78-11e3-81ab-4c9367dc0958".into(),
                ),
                ("X-Hub-Signature-256", self.sign(&body)),
            ],
            &body,
        )
        .await
    }

    async fn pipeline_count(&self) -> usize {
        let r = self
            .s
            .get(&format!("/api/v2/project/{SLUG}/pipeline"))
            .await;
        r.expect(200);
        r.json["items"].as_array().unwrap().len()
    }

    /// The pipeline a webhook created (201 asserted), once its workflows ended.
    async fn created(&self, r: &Resp, workflows: usize) -> (Value, Vec<Value>) {
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.json["id"].as_str().unwrap().to_string();
        let p = self.s.get(&format!("/api/v2/pipeline/{id}")).await;
        p.expect(200);
        let mut wfs = Vec::new();
        if workflows > 0 {
            for wf in self.s.workflows(&id, workflows).await {
                wfs.push(
                    self.s
                        .wait_workflow(wf["id"].as_str().unwrap(), &["success", "failed"])
                        .await,
                );
            }
        }
        let r = self.s.get(&format!("/api/v2/pipeline/{id}/workflow")).await;
        assert_eq!(
            r.json["items"].as_array().unwrap().len(),
            workflows,
            "{}",
            r.json
        );
        (p.json, wfs)
    }
}

/// GitHub's push example, moved to `branch` at `sha` with `message`.
fn github_push(branch_ref: &str, sha: &str, message: &str) -> Value {
    let mut v = fixture("github/push-branch.json");
    v["ref"] = json!(branch_ref);
    v["after"] = json!(sha);
    v["head_commit"]["id"] = json!(sha);
    v["head_commit"]["message"] = json!(message);
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn github_push_starts_a_pipeline() {
    let w = world().await;
    let sha = w.repo.head();
    let r = w
        .github(
            "push",
            &github_push("refs/heads/main", &sha, "first commit"),
        )
        .await;
    let (p, wfs) = w.created(&r, 1).await;
    assert_eq!(p["trigger"]["type"], "webhook");
    assert_eq!(p["trigger"]["actor"]["login"], "Codertocat");
    assert_eq!(p["vcs"]["branch"], "main");
    assert_eq!(p["vcs"]["revision"], sha.as_str());
    assert_eq!(p["vcs"]["review_id"], Value::Null);
    assert_eq!(p["number"], 1);
    assert_eq!(wfs[0]["name"], "main");
    assert_eq!(wfs[0]["status"], "success");

    // A newer commit, sent as GitHub's default form encoding.
    let newer = w.repo.commit(&[("README", "hi")], "second commit");
    let payload = github_push("refs/heads/main", &newer, "second commit");
    let form = format!(
        "payload={}",
        url_encode(&serde_json::to_string(&payload).unwrap())
    );
    let r = w
        .hook(
            "github",
            &[
                ("X-GitHub-Event", "push".into()),
                ("X-Hub-Signature-256", w.sign(form.as_bytes())),
                (
                    "content-type",
                    "application/x-www-form-urlencoded".to_string(),
                ),
            ],
            form.as_bytes(),
        )
        .await;
    let (p, _) = w.created(&r, 1).await;
    assert_eq!(p["vcs"]["revision"], newer.as_str());
    assert_eq!(p["vcs"]["commit"]["subject"], "second commit");
    assert_eq!(p["number"], 2);

    // A push of a commit that is not the head of the branch builds that commit.
    let r = w
        .github(
            "push",
            &github_push("refs/heads/main", &sha, "first commit"),
        )
        .await;
    let (p, _) = w.created(&r, 1).await;
    assert_eq!(p["vcs"]["revision"], sha.as_str());
    w.s.stop().await;
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn skips_pings_and_ignored_events() {
    let w = world().await;
    let sha = w.repo.commit(&[("docs.md", "x")], "docs [ci skip]");
    for message in ["docs [ci skip]", "docs\n\nbody [skip ci]"] {
        let r = w
            .github("push", &github_push("refs/heads/main", &sha, message))
            .await;
        r.expect(200);
        assert!(r.message().contains("ci skip"), "{}", r.text());
    }
    // Pings, other kinds, deleted branches and non-opening PR actions.
    let r = w.github("ping", &fixture("github/ping.json")).await;
    r.expect(200);
    assert_eq!(r.message(), "pong");
    let r = w
        .github("issues", &fixture("github/issues-opened.json"))
        .await;
    r.expect(200);
    assert!(r.message().starts_with("Ignored"), "{}", r.text());
    let r = w.github("create", &fixture("github/create-tag.json")).await;
    r.expect(200);
    let r = w
        .github("push", &fixture("github/push-tag-deleted.json"))
        .await;
    r.expect(200);
    assert!(r.message().contains("deleted"), "{}", r.text());
    let r = w
        .github(
            "pull_request",
            &fixture("github/pull_request-synchronize.json"),
        )
        .await;
    r.expect(200);
    assert!(r.message().starts_with("Ignored"), "{}", r.text());
    assert_eq!(w.pipeline_count().await, 0);
    // Then a normal push does build.
    let head = w.repo.commit(&[("x", "y")], "build me");
    let r = w
        .github("push", &github_push("refs/heads/main", &head, "build me"))
        .await;
    w.created(&r, 1).await;
    assert_eq!(w.pipeline_count().await, 1);
    w.s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_runs_only_tag_filtered_workflows() {
    let w = world().await;
    let sha = w.repo.head();
    w.repo.git(&["tag", "v1.2.0"]);
    let mut v = fixture("github/push-tag.json");
    v["ref"] = json!("refs/tags/v1.2.0");
    v["after"] = json!(sha);
    v["head_commit"]["id"] = json!(sha);
    let r = w.github("push", &v).await;
    let (p, wfs) = w.created(&r, 1).await;
    assert_eq!(p["vcs"]["tag"], "v1.2.0");
    assert_eq!(p["vcs"]["branch"], Value::Null);
    assert_eq!(wfs[0]["name"], "release");
    assert_eq!(wfs[0]["status"], "success");
    let jobs = w.s.jobs(wfs[0]["id"].as_str().unwrap()).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["name"], "release");

    // A tag the filter does not admit runs nothing.
    w.repo.git(&["tag", "nightly"]);
    v["ref"] = json!("refs/tags/nightly");
    let r = w.github("push", &v).await;
    let (p, _) = w.created(&r, 0).await;
    assert_eq!(p["vcs"]["tag"], "nightly");
    // A branch runs only `main`.
    let r = w
        .github(
            "push",
            &github_push("refs/heads/main", &sha, "first commit"),
        )
        .await;
    let (_, wfs) = w.created(&r, 1).await;
    assert_eq!(wfs[0]["name"], "main");
    w.s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gitlab_gitea_and_generic() {
    let w = world().await;
    let sha = w.repo.head();

    // GitLab: the shared token.
    let mut v = fixture("gitlab/push.json");
    v["ref"] = json!("refs/heads/main");
    v["after"] = json!(sha);
    v["checkout_sha"] = json!(sha);
    let last = v["commits"].as_array().unwrap().len() - 1;
    v["commits"][last]["id"] = json!(sha);
    let body = serde_json::to_vec(&v).unwrap();
    let r = w
        .hook(
            "gitlab",
            &[
                ("X-Gitlab-Event", "Push Hook".into()),
                ("X-Gitlab-Token", "wrong".into()),
            ],
            &body,
        )
        .await;
    r.expect(401);
    r.message();
    let r = w
        .hook(
            "gitlab",
            &[
                ("X-Gitlab-Event", "Push Hook".into()),
                ("X-Gitlab-Token", w.secret.clone()),
            ],
            &body,
        )
        .await;
    let (p, wfs) = w.created(&r, 1).await;
    assert_eq!(p["trigger"]["type"], "webhook");
    assert_eq!(p["vcs"]["revision"], sha.as_str());
    assert_eq!(p["vcs"]["branch"], "main");
    assert_eq!(wfs[0]["status"], "success");
    // GitLab's [ci skip] is in the head commit of the push.
    v["commits"][last]["message"] = json!("fix [ci skip]");
    let body = serde_json::to_vec(&v).unwrap();
    let r = w
        .hook(
            "gitlab",
            &[
                ("X-Gitlab-Event", "Push Hook".into()),
                ("X-Gitlab-Token", w.secret.clone()),
            ],
            &body,
        )
        .await;
    r.expect(200);

    // Gitea: a bare hex signature.
    let mut v = fixture("gitea/push.json");
    v["ref"] = json!("refs/heads/main");
    v["after"] = json!(sha);
    v["head_commit"]["id"] = json!(sha);
    let body = serde_json::to_vec(&v).unwrap();
    let r = w
        .hook(
            "gitea",
            &[
                ("X-Gitea-Event", "push".into()),
                ("X-Gitea-Signature", orrery_vcs::sign(&body, "wrong")),
            ],
            &body,
        )
        .await;
    r.expect(401);
    r.message();
    let r = w
        .hook(
            "gitea",
            &[
                ("X-Gitea-Event", "push".into()),
                ("X-Gitea-Signature", orrery_vcs::sign(&body, &w.secret)),
            ],
            &body,
        )
        .await;
    let (p, _) = w.created(&r, 1).await;
    assert_eq!(p["vcs"]["revision"], sha.as_str());

    // The generic hook of the post-receive script.
    let body = format!(
        r#"{{"ref":"refs/heads/main","before":"{}","after":"{sha}","repository":"{}","name":"app","pusher":"alice","message":"first commit"}}"#,
        "0".repeat(40),
        w.repo.url()
    );
    let r = w
        .hook(
            "generic",
            &[("X-Orrery-Signature", format!("sha256={}", "0".repeat(64)))],
            body.as_bytes(),
        )
        .await;
    r.expect(401);
    r.message();
    let r = w
        .hook(
            "generic",
            &[("X-Orrery-Signature", w.sign(body.as_bytes()))],
            body.as_bytes(),
        )
        .await;
    let (p, _) = w.created(&r, 1).await;
    assert_eq!(p["trigger"]["actor"]["login"], "alice");
    assert_eq!(p["vcs"]["revision"], sha.as_str());
    // A provider's signature checked as another's fails.
    let r = w
        .hook(
            "github",
            &[
                ("X-GitHub-Event", "push".into()),
                ("X-Orrery-Signature", w.sign(body.as_bytes())),
            ],
            body.as_bytes(),
        )
        .await;
    r.expect(401);
    assert_eq!(w.pipeline_count().await, 3);
    w.s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_requests() {
    let w = world().await;
    w.repo.git(&["checkout", "-q", "-b", "feature"]);
    let head = w.repo.commit(&[("feature.txt", "f")], "a feature");
    w.repo.git(&["checkout", "-q", "main"]);

    let mut v = fixture("github/pull_request-opened.json");
    v["pull_request"]["head"]["ref"] = json!("feature");
    v["pull_request"]["head"]["sha"] = json!(head);
    let url = v["pull_request"]["html_url"].as_str().unwrap().to_string();
    let number = v["pull_request"]["number"].as_u64().unwrap();
    let r = w.github("pull_request", &v).await;
    let (p, wfs) = w.created(&r, 1).await;
    assert_eq!(p["trigger"]["type"], "webhook");
    assert_eq!(p["vcs"]["branch"], "feature");
    assert_eq!(p["vcs"]["revision"], head.as_str());
    assert_eq!(p["vcs"]["review_id"], number.to_string());
    assert_eq!(p["vcs"]["review_url"], url.as_str());
    assert_eq!(wfs[0]["status"], "success");
    let n = w.s.job(wfs[0]["id"].as_str().unwrap(), "build").await["job_number"]
        .as_i64()
        .unwrap();
    let env = std::fs::read_to_string(w.out.path().join(format!("pr-env-{n}"))).unwrap();
    assert_eq!(env, format!("{url}|feature"));

    // Reopened builds too; a fork does not, nor does a PR without its head repo.
    v["action"] = json!("reopened");
    let r = w.github("pull_request", &v).await;
    w.created(&r, 1).await;
    let mut fork = v.clone();
    fork["action"] = json!("opened");
    fork["pull_request"]["head"]["repo"]["full_name"] = json!("mallory/Hello-World");
    fork["pull_request"]["head"]["repo"]["id"] = json!(999_999);
    let r = w.github("pull_request", &fork).await;
    r.expect(200);
    assert!(r.message().contains("fork"), "{}", r.text());
    let mut gone = v.clone();
    gone["action"] = json!("opened");
    gone["pull_request"]["head"]["repo"] = Value::Null;
    let r = w.github("pull_request", &gone).await;
    r.expect(200);
    assert_eq!(w.pipeline_count().await, 2);
    w.s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hook_is_bound_to_its_project() {
    let w = world().await;
    let other_repo = w.s.repo(
        "other",
        &common::machine_config(&[("x", "true")], "      - x\n"),
    );
    let other =
        w.s.create_project("gh/acme/other", &other_repo, json!({}))
            .await;
    let other_id = other["id"].as_str().unwrap();
    // Signed for `app`, sent to `other`.
    let sha = w.repo.head();
    let body = serde_json::to_vec(&github_push("refs/heads/main", &sha, "x")).unwrap();
    let r = TestServer::send(
        w.s.request("post", &format!("/hooks/github/{other_id}"), Who::Anonymous)
            .header("X-GitHub-Event", "push")
            .header("X-Hub-Signature-256", w.sign(&body))
            .body(body.clone()),
    )
    .await;
    r.expect(401);
    r.message();
    // API tokens do not authorize webhooks.
    let r = TestServer::send(
        w.s.request(
            "post",
            &format!("/hooks/github/{}", w.project_id),
            Who::Admin,
        )
        .header("X-GitHub-Event", "push")
        .body(body),
    )
    .await;
    r.expect(401);
    // A provider that does not exist, and a project that does not.
    let r = w.hook("svn", &[], b"{}").await;
    r.expect(404);
    r.message();
    let r = TestServer::send(
        w.s.request(
            "post",
            "/hooks/github/0f0f0f0f-1111-4222-8333-444444444444",
            Who::Anonymous,
        )
        .body("{}"),
    )
    .await;
    r.expect(404);
    assert_eq!(w.pipeline_count().await, 0);
    w.s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn large_payloads_up_to_the_providers_cap() {
    // GitHub delivers payloads up to 25 MB (a push of many commits); those
    // over the API's own body limit are still webhooks to take.
    let w = world().await;
    let sha = w.repo.head();
    let mut v = github_push("refs/heads/main", &sha, "big");
    let big = orrery_server::api::MAX_BODY + 1024 * 1024;
    v["padding"] = json!("p".repeat(big));
    let r = w.github("push", &v).await;
    let (p, _) = w.created(&r, 1).await;
    assert_eq!(p["vcs"]["revision"], sha.as_str());
    // Past the providers' cap it is refused, before the signature is checked.
    v["padding"] = json!("p".repeat(orrery_vcs::MAX_BODY_BYTES));
    let r = w.github("push", &v).await;
    r.expect(413);
    r.message();
    w.s.stop().await;
}
