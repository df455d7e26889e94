// Orrery's web app in a real browser: headless Chromium (Debian's
// /usr/bin/chromium) driven by playwright-core, acting as a user from signing
// in to signing out. Started by crates/orrery/tests/web_browser.rs, which
// runs the server and a runner and hands over, in the environment:
//
//   ORRERY_URL           the server (http://127.0.0.1:PORT)
//   ORRERY_ADMIN_TOKEN   the admin's API token (the admin's first password)
//   BARE_REPO            a bare git repository for the project (empty)
//   WORK_REPO            a clone of it to commit in and push from
//   RERUN_MARKER         a file outside the repository: the `flaky` job fails
//                        until it exists
//   OUTPUT_GATE          a file outside the repository: the `slow` job waits
//                        for it halfway through its output
//   SCREENSHOT_DIR       where the screenshots go
//
// Every wait is Playwright's own (auto-waiting locators, waitFor, waitForURL,
// waitForFunction) with a deadline; nothing sleeps for a fixed time. Steps
// run in order; one that fails is reported with its reason, and the steps
// that need it are skipped. The exit status is 0 only when every step passed.

import { chromium } from "playwright-core";
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run this through crates/orrery/tests/web_browser.rs)`);
  return v;
}

const BASE = env("ORRERY_URL").replace(/\/$/, "");
const ADMIN_TOKEN = env("ORRERY_ADMIN_TOKEN");
const BARE = env("BARE_REPO");
const WORK = env("WORK_REPO");
const MARKER = env("RERUN_MARKER");
const GATE = env("OUTPUT_GATE");
const SHOTS = env("SCREENSHOT_DIR");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

const ORG = "local";
const REPO = "webapp";
const SLUG = `git/${ORG}/${REPO}`;
const VIEWER = { login: "vera", password: "viewer-password-0123" };
/// How long one wait may take (the whole flow takes well under a minute).
const WAIT = 20_000;

// ---------------------------------------------------------------- the steps

const results = [];
const started = Date.now();

/// Runs `fn` as the step `name` unless a step it `needs` did not pass.
async function step(name, needs, fn) {
  const missing = needs.filter((n) => !results.some((r) => r.name === n && r.ok));
  if (missing.length) {
    results.push({ name, ok: false, skipped: true, why: `needs ${missing.join(", ")}` });
    console.log(`- skipped  ${name} (needs: ${missing.join(", ")})`);
    return;
  }
  const t = Date.now();
  try {
    await fn();
    results.push({ name, ok: true });
    console.log(`✓ passed   ${name} (${Date.now() - t} ms)`);
  } catch (e) {
    const why = String((e && e.message) || e).split("\n").slice(0, 12).join("\n    ");
    results.push({ name, ok: false, why });
    console.log(`✗ FAILED   ${name} (${Date.now() - t} ms)\n    ${why}`);
    await failureShot(name);
  }
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

/// A screenshot of every open page when a step fails, for the person reading.
async function failureShot(name) {
  const file = name.replace(/[^a-z0-9]+/gi, "-").toLowerCase();
  for (const [who, p] of [["admin", adminPage], ["viewer", viewerPage]]) {
    if (!p || p.isClosed()) continue;
    try {
      await p.screenshot({ path: path.join(SHOTS, `failed-${file}-${who}.png`), fullPage: true, timeout: 5000 });
      console.log(`    (${who}'s page was at ${p.url()}; screenshot failed-${file}-${who}.png)`);
    } catch {}
  }
}

async function shot(page, name) {
  const file = path.join(SHOTS, name);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`    screenshot ${file}`);
}

// ---------------------------------------------------------------- git

function git(args, cwd = WORK) {
  return execFileSync("git", args, {
    cwd,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: "Browser Test",
      GIT_AUTHOR_EMAIL: "browser@example.com",
      GIT_COMMITTER_NAME: "Browser Test",
      GIT_COMMITTER_EMAIL: "browser@example.com",
      GIT_CONFIG_NOSYSTEM: "1",
    },
  });
}

/// Commits `files` in the work clone and pushes `main`; the bare
/// repository's post-receive hook tells the server. Returns the commit.
let lastPush = "";
function push(files, message) {
  for (const [name, text] of Object.entries(files)) {
    const p = path.join(WORK, name);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, text);
  }
  git(["add", "-A"]);
  git(["commit", "-q", "-m", message]);
  const sha = git(["rev-parse", "HEAD"]).trim();
  // The hook's messages arrive on stderr.
  const pushed = spawnSync("git", ["push", "origin", "main"], {
    cwd: WORK,
    encoding: "utf8",
    env: { ...process.env, GIT_CONFIG_NOSYSTEM: "1" },
  });
  const out = `${pushed.stdout}${pushed.stderr}`;
  check(pushed.status === 0, `git push: ${out}`);
  lastPush = out;
  check(!out.includes("orrery:"), `the post-receive hook complained:\n${out}`);
  return sha;
}

// ---------------------------------------------------------------- the config

const JUNIT = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="calculator" tests="2" failures="1">
    <testcase classname="calculator" name="adds two numbers" time="0.010"/>
    <testcase classname="calculator" name="divides by two" time="0.020">
      <failure message="expected 2 but got 3">assertion failed: expected 2 but got 3 at calc.rs:12</failure>
    </testcase>
  </testsuite>
</testsuites>
`;
const ARTIFACT_TEXT = "a report made by the browser test's job\n";

const CONFIG = `version: 2.1
jobs:
  slow:
    machine: true
    steps:
      - run:
          name: Slow output
          command: |
            for i in $(seq 1 8); do
              echo "line $i"
              if [ "$i" = 4 ]; then
                # Halfway: wait until the browser has seen lines 1-4 arrive
                # (at most 30 s), so that it can see the rest arrive too.
                n=0
                while [ ! -f '${GATE}' ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done
              fi
              sleep 0.3
            done
  tests:
    machine: true
    steps:
      - checkout
      - run:
          name: Run the tests
          command: |
            mkdir -p results out
            cp junit.xml results/junit.xml
            cp report.txt out/report.txt
      - store_test_results:
          path: results
      - store_artifacts:
          path: out/report.txt
          destination: report.txt
  flaky:
    machine: true
    steps:
      - run:
          name: Needs the marker
          command: |
            echo "looking for the marker"
            test -f '${MARKER}'
workflows:
  main:
    jobs:
      - tests
      - flaky
      - hold:
          type: approval
      - slow:
          requires: [hold]
`;

// ---------------------------------------------------------------- the browser

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const admin = await browser.newContext({ baseURL: BASE, acceptDownloads: true, viewport: { width: 1280, height: 860 } });
admin.setDefaultTimeout(WAIT);
let adminPage = await admin.newPage();
let viewerPage = null;
const page = adminPage;
const consoleErrors = [];
page.on("pageerror", (e) => consoleErrors.push(String(e)));

const api = async (p) => {
  const r = await fetch(`${BASE}${p}`, { headers: { "Circle-Token": ADMIN_TOKEN } });
  check(r.ok, `GET ${p}: ${r.status}`);
  return r.json();
};
const tid = (id) => `[data-testid="${id}"]`;

/// Waits until the page's text of `locator` contains `text`.
async function waitText(locator, text, timeout = WAIT) {
  await locator.filter({ hasText: text }).first().waitFor({ timeout });
}

/// Marks the window: a reload (or a navigation) loses the mark.
async function markWindow(p) {
  await p.evaluate(() => {
    window.__orreryNoReload = true;
  });
}
async function assertNotReloaded(p, what) {
  const still = await p.evaluate(() => window.__orreryNoReload === true);
  check(still, `the page was reloaded while ${what}`);
}

/// The CSRF token of the forms on the page (every signed-in page has one in
/// its sign-out form).
async function csrfOf(p) {
  return p.locator('input[name="_csrf"]').first().inputValue();
}

let pipelineUrl = null;
let workflowId = null;

await step("sign in as admin", [], async () => {
  await page.goto("/");
  await page.waitForURL(/\/signin/);
  // A wrong password is refused with a message.
  await page.locator('input[name="login"]').fill("admin");
  await page.locator('input[name="password"]').fill("not-the-password");
  await page.locator('button[type="submit"]').click();
  await page.locator(tid("signin-error")).waitFor();
  await page.locator('input[name="password"]').fill(ADMIN_TOKEN);
  await page.locator('button[type="submit"]').click();
  await page.waitForURL(/\/pipelines/);
  await waitText(page.locator(tid("signed-in-as")), "admin");
});

await step("create a viewer account in the admin area", ["sign in as admin"], async () => {
  await page.goto("/admin");
  const form = page.locator(tid("new-user-form"));
  await form.waitFor();
  await form.locator('[name="login"]').fill(VIEWER.login);
  const name = form.locator('[name="name"]');
  if (await name.count()) await name.fill("Vera Viewer");
  await form.locator('[name="role"]').selectOption("viewer");
  await form.locator('[name="password"]').fill(VIEWER.password);
  await form.locator('button[type="submit"]').click();
  const row = page.locator(`${tid("user-row")}[data-login="${VIEWER.login}"][data-role="viewer"]`);
  const err = page.locator(tid("error-message"));
  await row.or(err).first().waitFor();
  if (await err.count()) throw new Error(`adding the user failed: ${await err.first().textContent()}`);
});

let webhook = null;
await step("add a project from a local git repository", ["sign in as admin"], async () => {
  await page.goto("/projects");
  const form = page.locator(tid("add-project-form"));
  await form.waitFor();
  const vcs = form.locator('[name="vcs"]');
  const options = await vcs.locator("option").evaluateAll((os) => os.map((o) => o.value));
  check(options.includes("git"), `the vcs choices ${JSON.stringify(options)} have no plain git`);
  await vcs.selectOption("git");
  await form.locator('[name="org"]').fill(ORG);
  await form.locator('[name="repo"]').fill(REPO);
  await form.locator('[name="repo_url"]').fill(BARE);
  await form.locator('[name="default_branch"]').fill("main");
  await form.locator('button[type="submit"]').click();
  const url = page.locator(tid("webhook-url"));
  await url.waitFor();
  const read = async (l) => ((await l.evaluate((e) => ("value" in e ? e.value : e.textContent))) || "").trim();
  webhook = { url: await read(url), secret: await read(page.locator(tid("webhook-secret"))) };
  check(/\/hooks\/generic\/[0-9a-f-]{36}$/.test(webhook.url), `webhook URL: ${webhook.url}`);
  check(webhook.secret.length >= 16, `webhook secret: ${webhook.secret}`);
  // The API knows the project by the slug the form made.
  const p = await api(`/api/v2/project/${SLUG}`);
  check(p.slug === SLUG, `project ${JSON.stringify(p)}`);
  // The repository's hook, as the settings page tells one to install it.
  const hook = await (await fetch(`${BASE}/hooks/post-receive`)).text();
  check(hook.startsWith("#!"), "the hook script");
  fs.writeFileSync(path.join(BARE, "hooks", "post-receive"), hook, { mode: 0o755 });
  git(["config", "orrery.webhookUrl", webhook.url], BARE);
  git(["config", "orrery.webhookSecret", webhook.secret], BARE);
});

await step("push a commit and watch the pipeline appear without reloading", ["add a project from a local git repository"], async () => {
  await page.goto("/pipelines");
  await page.locator(tid("no-pipelines")).waitFor();
  await markWindow(page);
  const sha = push(
    { ".circleci/config.yml": CONFIG, "junit.xml": JUNIT, "report.txt": ARTIFACT_TEXT, "README.md": "web app test\n" },
    "Add the pipeline from the browser test",
  );
  const row = page.locator(`${tid("pipeline-row")}[data-project="${SLUG}"][data-number="1"]`);
  try {
    await row.waitFor();
  } catch (e) {
    // Which part failed: the trigger, or the live update?
    const items = (await api(`/api/v2/project/${SLUG}/pipeline`)).items;
    throw new Error(
      items.length
        ? `the API has the pipeline (${items[0].state}) but the dashboard did not show it without a reload: ${e.message}`
        : `no pipeline was made by the push (git push said: ${lastPush.trim()}): ${e.message}`,
    );
  }
  await waitText(row, sha.slice(0, 7));
  await waitText(row, "Add the pipeline from the browser test");
  // Its workflow shows up too (the pipeline row is re-rendered as it runs).
  await row.locator(".wf").first().waitFor();
  await assertNotReloaded(page, "waiting for the pipeline");
  await shot(page, "dashboard.png");
  pipelineUrl = `/pipelines/${SLUG}/1`;
});

await step("open the pipeline: its graph, a held approval, a failed job", ["push a commit and watch the pipeline appear without reloading"], async () => {
  await page.locator(`${tid("pipeline-row")} a.pipeline-link`).first().click();
  await page.waitForURL((u) => u.pathname === pipelineUrl);
  const wf = page.locator(`${tid("workflow")}[data-workflow="main"]`);
  await wf.waitFor();
  workflowId = ((await wf.getAttribute("id")) || "").replace(/^wf-/, "");
  check(workflowId.length === 36, `workflow id ${workflowId}`);
  // Live: the page follows the jobs without being reloaded.
  await markWindow(page);
  const graph = wf.locator("svg");
  await graph.waitFor();
  for (const job of ["tests", "flaky", "hold", "slow"]) {
    // Each node shows its job's name (drawn, so visible, not only present).
    const label = wf.locator(`${tid("graph-job")}[data-job="${job}"] text`);
    await label.waitFor();
    check((await label.textContent()).trim() === job, `the graph's node of ${job} says ${await label.textContent()}`);
  }
  await wf.locator(`${tid("graph-job")}[data-job="tests"][data-status="success"]`).waitFor();
  await wf.locator(`${tid("graph-job")}[data-job="flaky"][data-status="failed"]`).waitFor();
  await wf.locator(`${tid("graph-job")}[data-job="hold"][data-status="on_hold"]`).waitFor();
  await wf.locator(`${tid("job")}[data-job="hold"] ${tid("approve")}`).waitFor();
  await assertNotReloaded(page, "the jobs ran");
  // Not ended yet: it can be canceled, not rerun.
  check((await wf.locator(tid("cancel")).count()) === 1, "a cancel button while the workflow runs");
  check((await wf.locator(tid("rerun-failed")).count()) === 0, "no rerun-from-failed before the workflow ends");
  await shot(page, "pipeline-graph.png");
});

await step("approve the held job", ["open the pipeline: its graph, a held approval, a failed job"], async () => {
  const wf = page.locator(`${tid("workflow")}[data-workflow="main"]`);
  await wf.locator(`${tid("job")}[data-job="hold"] ${tid("approve")}`).click();
  await page.waitForURL((u) => u.pathname === pipelineUrl);
  const hold = page.locator(`${tid("job")}[data-job="hold"]`);
  await waitText(hold, "approved by admin");
  check((await page.locator(tid("approve")).count()) === 0, "the approve button is gone");
});

await step("open the running job and see its output lines arrive live", ["approve the held job"], async () => {
  const wf = page.locator(`${tid("workflow")}[data-workflow="main"]`);
  // The job gets its page once it is queued: the graph's node becomes a link.
  const node = wf.locator(`a${tid("graph-job")}[data-job="slow"]`);
  await node.waitFor();
  await node.click();
  await page.waitForURL(/\/workflows\/[^/]+\/jobs\/\d+/);
  await markWindow(page);
  const stepEl = page.locator(`${tid("step")}[data-name="Slow output"]`);
  await stepEl.waitFor();
  // A running step shows its output; open it if it is folded.
  if ((await stepEl.evaluate((e) => e.tagName)) === "DETAILS" && !(await stepEl.evaluate((e) => e.open))) {
    await stepEl.locator("summary").first().click();
  }
  const output = stepEl.locator(tid("step-output"));
  await waitText(output, "line 4");
  const halfway = await output.textContent();
  check(!halfway.includes("line 5"), `the step is halfway through, yet shows: ${halfway}`);
  check((await stepEl.getAttribute("data-status")) === "running", `the step runs: ${await stepEl.getAttribute("data-status")}`);
  await shot(page, "job-live-output.png");
  fs.writeFileSync(GATE, "");
  await waitText(output, "line 8");
  const text = await output.textContent();
  const lines = [...text.matchAll(/line (\d)/g)].map((m) => Number(m[1]));
  check(JSON.stringify(lines) === "[1,2,3,4,5,6,7,8]", `lines in order, once each: ${JSON.stringify(lines)}`);
  await page.locator(`${tid("step")}[data-name="Slow output"][data-status="success"]`).waitFor();
  await assertNotReloaded(page, "the output arrived");
  // Timestamps on demand: every line shows when it arrived, whether it was
  // stored before the page opened or came live.
  await stepEl.locator(tid("timestamps")).or(page.locator(tid("timestamps"))).first().click();
  await page.waitForFunction(() => {
    const ts = [...document.querySelectorAll('[data-name="Slow output"] .ts')].map((e) => e.textContent.trim());
    return ts.length >= 8 && ts.every((t) => /^\d\d:\d\d:\d\d$/.test(t));
  }, null, { timeout: 20000 });
  // The whole log, raw.
  const raw = page.locator(tid("raw-log")).first();
  check((await raw.count()) === 1, "a link to the raw log");
});

await step("see a failed test's message in the tests tab", ["push a commit and watch the pipeline appear without reloading"], async () => {
  await page.goto(pipelineUrl);
  const wf = page.locator(`${tid("workflow")}[data-workflow="main"]`);
  await wf.locator(`a${tid("graph-job")}[data-job="tests"]`).click();
  await page.waitForURL(/\/jobs\/\d+/);
  await page.locator(tid("tab-tests")).click();
  const failure = page.locator(tid("test-failure")).first();
  await failure.waitFor();
  await waitText(page.locator(tid("test-failure")), "divides by two");
  await waitText(page.locator(tid("test-failure")), "expected 2 but got 3");
  // Only the failing test is a failure.
  check((await page.locator(tid("test-failure")).count()) === 1, "one failure");
  await shot(page, "tests-tab.png");
});

await step("download an artifact", ["see a failed test's message in the tests tab"], async () => {
  await page.locator(tid("tab-artifacts")).click();
  const link = page.locator(tid("artifact")).filter({ hasText: "report.txt" }).first();
  await link.waitFor();
  const a = (await link.evaluate((e) => e.tagName)) === "A" ? link : link.locator("a").first();
  const href = new URL(await a.getAttribute("href"), BASE).href;
  // A download, or (for a type the browser shows, like this text file) the
  // artifact itself in the tab: either way its bytes, through the session.
  const download = page.waitForEvent("download").catch(() => null);
  const shown = page.waitForURL((u) => u.href === href).then(() => "shown", () => null);
  await a.click();
  const got = await Promise.race([download, shown]);
  check(got, "clicking the artifact neither downloaded nor showed it");
  if (got === "shown") {
    const text = await page.locator("body").innerText();
    check(text.trim() === ARTIFACT_TEXT.trim(), `the artifact shown: ${JSON.stringify(text)}`);
    const r = await page.request.get(href);
    check(r.status() === 200, `GET ${href}: ${r.status()}`);
    const body = await r.text();
    check(body === ARTIFACT_TEXT, `the artifact's bytes: ${JSON.stringify(body)}`);
    console.log(`    the artifact opened in the tab (${r.headers()["content-type"]})`);
    await page.goBack();
  } else {
    const body = fs.readFileSync(await got.path(), "utf8");
    check(body === ARTIFACT_TEXT, `the artifact's bytes: ${JSON.stringify(body)}`);
    check(got.suggestedFilename().endsWith("report.txt"), `named ${got.suggestedFilename()}`);
    console.log(`    the artifact downloaded as ${got.suggestedFilename()}`);
  }
});

await step("the workflow ends failed", ["approve the held job"], async () => {
  // (Lets the slow job finish even when its output step failed early.)
  if (!fs.existsSync(GATE)) fs.writeFileSync(GATE, "");
  await page.goto(pipelineUrl);
  await page.locator(`${tid("workflow")}[data-workflow="main"][data-status="failed"]`).waitFor();
});

// ------------------------------------------------------------ a viewer

await step("a viewer sees the pipeline but no action buttons", ["create a viewer account in the admin area", "the workflow ends failed"], async () => {
  const ctx = await browser.newContext({ baseURL: BASE, viewport: { width: 1280, height: 860 } });
  ctx.setDefaultTimeout(WAIT);
  viewerPage = await ctx.newPage();
  viewerPage.on("pageerror", (e) => consoleErrors.push(String(e)));
  const v = viewerPage;
  await v.goto("/signin");
  await v.locator('input[name="login"]').fill(VIEWER.login);
  await v.locator('input[name="password"]').fill(VIEWER.password);
  await v.locator('button[type="submit"]').click();
  await v.waitForURL(/\/pipelines/);
  await waitText(v.locator(tid("signed-in-as")), "viewer");
  await v.goto(pipelineUrl);
  const wf = v.locator(`${tid("workflow")}[data-workflow="main"][data-status="failed"]`);
  await wf.waitFor();
  await wf.locator(`${tid("graph-job")}[data-job="flaky"]`).waitFor();
  for (const button of ["approve", "rerun", "rerun-failed", "cancel"]) {
    check((await v.locator(tid(button)).count()) === 0, `a viewer sees the ${button} button`);
  }
  // Nor the admin area.
  const admin = await v.goto("/admin");
  check(admin.status() === 403, `a viewer's /admin: ${admin.status()}`);
  await v.goto(pipelineUrl);
  // The admin, on the same page, has them.
  await page.goto(pipelineUrl);
  await page.locator(tid("rerun-failed")).waitFor();
});

await step("a viewer's form post is refused", ["a viewer sees the pipeline but no action buttons"], async () => {
  const csrf = await csrfOf(viewerPage);
  const r = await viewerPage.request.post(`/app/workflows/${workflowId}/rerun`, {
    form: { _csrf: csrf, from_failed: "true" },
    maxRedirects: 0,
  });
  check(r.status() === 403, `a viewer's rerun with the right token: ${r.status()}`);
});

await step("forged form posts are refused", ["the workflow ends failed"], async () => {
  const runs = async () => (await api(`/api/v2/project/${SLUG}/pipeline`)).items[0].id;
  const pid = await runs();
  const count = async () => (await api(`/api/v2/pipeline/${pid}/workflow`)).items.length;
  const before = await count();
  const csrf = await csrfOf(page);
  const url = `/app/workflows/${workflowId}/rerun`;
  for (const [what, form, headers] of [
    ["no token", { from_failed: "true" }, {}],
    ["a wrong token", { _csrf: "0".repeat(64), from_failed: "true" }, {}],
    ["another site's Origin", { _csrf: csrf, from_failed: "true" }, { Origin: "http://evil.example" }],
  ]) {
    const r = await page.request.post(url, { form, headers, maxRedirects: 0 });
    check(r.status() === 403, `a post with ${what}: ${r.status()}`);
  }
  // A real cross-origin page whose form posts to Orrery as soon as it loads.
  const evil = http.createServer((req, res) => {
    res.setHeader("content-type", "text/html");
    res.end(`<!doctype html><form id="f" method="post" action="${BASE}${url}">
      <input type="hidden" name="_csrf" value="${csrf}"><input type="hidden" name="from_failed" value="true">
      </form><script>document.getElementById("f").submit()</script>`);
  });
  await new Promise((ok) => evil.listen(0, "127.0.0.1", ok));
  try {
    const port = evil.address().port;
    const answer = page.waitForResponse((r) => r.url() === `${BASE}${url}` && r.request().method() === "POST");
    await page.goto(`http://127.0.0.1:${port}/`);
    const r = await answer;
    check(r.status() === 403, `the cross-origin form: ${r.status()}`);
    await waitText(page.locator(tid("error-message")), "another site");
  } finally {
    evil.close();
  }
  check((await count()) === before, "a forged post started a rerun");
});

// ------------------------------------------------------------ rerun, sign out

await step("rerun from failed, and it succeeds", ["the workflow ends failed"], async () => {
  await page.goto(pipelineUrl);
  fs.writeFileSync(MARKER, "");
  await page.locator(`${tid("workflow")}[data-workflow="main"] ${tid("rerun-failed")}`).click();
  await page.waitForURL((u) => u.pathname === pipelineUrl);
  await markWindow(page);
  const wf = page.locator(`${tid("workflow")}[data-workflow="main"]`).first();
  await waitText(wf, "a rerun");
  await page.locator(`${tid("workflow")}[data-workflow="main"][data-status="success"]`).first().waitFor();
  await page.locator(`${tid("workflow")}[data-workflow="main"][data-status="success"] ${tid("job")}[data-job="flaky"][data-status="success"]`).waitFor();
  await assertNotReloaded(page, "the rerun ran");
  // The first run is kept below, as an earlier run.
  check((await page.locator(`details.earlier ${tid("workflow")}[data-status="failed"]`).count()) === 1, "the failed run among the earlier runs");
});

await step("sign out", ["sign in as admin"], async () => {
  await page.goto("/pipelines");
  await page.locator(tid("signout")).click();
  await page.waitForURL(/\/signin/);
  await page.goto("/pipelines");
  await page.waitForURL(/\/signin/);
});

await browser.close();

const passed = results.filter((r) => r.ok).length;
const failed = results.filter((r) => !r.ok && !r.skipped);
const skipped = results.filter((r) => r.skipped);
if (consoleErrors.length) console.log(`script errors in the pages:\n  ${consoleErrors.join("\n  ")}`);
console.log(`\nbrowser flow: ${passed} of ${results.length} steps passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
for (const f of failed) console.log(`  failed:  ${f.name}: ${f.why.split("\n")[0]}`);
for (const s of skipped) console.log(`  skipped: ${s.name} (${s.why})`);
console.log(`screenshots in ${SHOTS}`);
process.exit(passed === results.length && !consoleErrors.length ? 0 : 1);
