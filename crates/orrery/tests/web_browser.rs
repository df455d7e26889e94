//! The web app in a real browser: headless Chromium (Debian's
//! `/usr/bin/chromium`) driven by Playwright (`playwright-core` from npm, in
//! `web-tests/`), acting as a user on a real `orrery server` with a remote
//! `orrery runner`: sign in, add a project from a local git repository, push a
//! commit, watch the pipeline appear and a job's output arrive live, approve,
//! read a failed test, download an artifact, rerun from failed, sign out; a
//! viewer sees no action buttons, and forged form posts are refused.
//!
//! This file starts what needs Rust (the server, the runner, the
//! repositories) and runs `web-tests/flow.mjs`, which does the rest in the
//! browser. Screenshots of the dashboard, a pipeline graph, a job's live
//! output and the tests tab land in `target/web-screenshots/`.
//!
//! Needs git, Node 20, `web-tests/node_modules` (`npm ci`) and Chromium:
//! `scripts/test.sh` installs them.

#[allow(unused_macros)] // on_both_storages: this test runs on the default storage only
mod e2e_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use e2e_support::*;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Where the screenshots go: `target/web-screenshots` of the workspace (or
/// of `CARGO_TARGET_DIR`).
fn screenshot_dir(root: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { root.join(t) })
        .unwrap_or_else(|| root.join("target"));
    target.join("web-screenshots")
}

#[test]
fn a_user_in_a_browser_from_sign_in_to_sign_out() {
    let workspace = workspace_root();
    let web_tests = workspace.join("web-tests");
    assert!(
        web_tests.join("node_modules/playwright-core").is_dir(),
        "web-tests/node_modules has no playwright-core: run scripts/test.sh \
         (or `npm ci` in web-tests/)"
    );
    let chromium =
        std::env::var("ORRERY_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no {chromium}: run scripts/test.sh (it installs Debian's chromium)"
    );
    let shots = screenshot_dir(&workspace);
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();

    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let blobs = BlobStore::new(Storage::Local, root);
    let server = Server::start(root, &[], &blobs);
    let token = server.runner_token();
    let _runner = server.runner(
        &token,
        "browser",
        &root.join("runner"),
        4,
        &root.join("runner.log"),
    );
    // An empty bare repository (the project the browser adds) and a clone to
    // push from; the browser installs the hook with the settings the web app
    // shows.
    let repo = GitRepo::new(root, "webapp");

    let started = Instant::now();
    let out = Command::new("node")
        .arg(web_tests.join("flow.mjs"))
        .current_dir(&web_tests)
        .env("ORRERY_URL", server.url())
        .env("ORRERY_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("BARE_REPO", &repo.bare)
        .env("WORK_REPO", &repo.work)
        .env("RERUN_MARKER", root.join("rerun-marker"))
        .env("OUTPUT_GATE", root.join("output-gate"))
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", &chromium)
        .env_remove("ORRERY_WEBHOOK_URL")
        .env_remove("ORRERY_WEBHOOK_SECRET")
        .output()
        .expect("cannot run node: Node 20 must be installed");
    let took = started.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("--- web-tests/flow.mjs ({took:?}):\n{text}---");
    assert!(
        out.status.success(),
        "the browser flow failed ({}); its output is above, screenshots in {}",
        out.status,
        shots.display()
    );
    for name in [
        "dashboard.png",
        "pipeline-graph.png",
        "job-live-output.png",
        "tests-tab.png",
    ] {
        let p = shots.join(name);
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "no screenshot {}", p.display());
    }
    eprintln!("screenshots in {}", shots.display());

    // What the browser did, as the API sees it.
    let slug = "git/local/webapp";
    let pipelines = server.get(&format!("/api/v2/project/{slug}/pipeline"));
    let items = pipelines["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{pipelines:#}");
    assert_eq!(items[0]["trigger"]["type"], "webhook");
    let pipeline_id = items[0]["id"].as_str().unwrap();
    let workflows = server.get(&format!("/api/v2/pipeline/{pipeline_id}/workflow"));
    let mut runs: Vec<(String, String)> = workflows["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["status"].as_str().unwrap().to_string(),
                w["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    runs.sort();
    assert_eq!(
        runs.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["failed", "success"],
        "the first run and the rerun from failed, nothing forged: {workflows:#}"
    );
    let first = &runs[0].1;
    let hold = server
        .jobs(first)
        .into_iter()
        .find(|j| j["name"] == "hold")
        .unwrap();
    assert_eq!(hold["approved_by"], "admin");
    blobs.check_at_end();
}
