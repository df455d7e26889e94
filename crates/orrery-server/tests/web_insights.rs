//! The insights pages of the web app over HTTP: a project's workflows (runs,
//! success rate), their jobs, flaky tests, the slowest and the most failing
//! tests, from a failed run and its successful rerun on the same revision;
//! the branch and window filters and their bad values; who may read them;
//! the links to them; the "flaky" badge of the job page's tests tab.

mod common;

use common::{ADMIN_TOKEN, TestServer};
use orrery_store::Role;
use serde_json::{Value, json};

const SLUG: &str = "git/acme/app";

use common::browser::Browser;

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

/// The `data-name`s of the rows with `data-testid="{testid}"`, in order.
fn names(body: &str, testid: &str) -> Vec<String> {
    let mark = format!("data-testid=\"{testid}\" data-name=\"");
    body.match_indices(&mark)
        .map(|(at, _)| {
            let rest = &body[at + mark.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

/// The tag of the row with `data-testid="{testid}"` and `{attr}="{value}"`.
fn row<'a>(body: &'a str, testid: &str, attr: &str, value: &str) -> &'a str {
    let mark = format!("data-testid=\"{testid}\" {attr}=\"{value}\"");
    let at = body
        .find(&mark)
        .unwrap_or_else(|| panic!("{mark} in {body}"));
    let rest = &body[at..];
    &rest[..rest.find('>').unwrap()]
}

#[tokio::test(flavor = "multi_thread")]
async fn insights_pages_and_the_flaky_badge() {
    let s = TestServer::start().await;
    let mut admin = Browser::new(&s);
    assert_eq!(admin.sign_in("admin", ADMIN_TOKEN).await.status, 303);
    let token = s.user_token("vera", Role::Viewer).await;
    let mut viewer = Browser::new(&s);
    assert_eq!(viewer.sign_in("vera", &token).await.status, 303);

    let marker = s.dir.path().join("flaky-marker");
    let repo = s.repo("app", &common::flaky_config(&marker.display().to_string()));
    s.create_project(SLUG, &repo, json!({})).await;
    let path = format!("/insights/{SLUG}");

    // Before anything ran: empty tables.
    let page = admin.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    for part in [
        "data-testid=\"no-workflows\"",
        "data-testid=\"no-flaky-tests\"",
        "data-testid=\"no-tests\"",
        "data-testid=\"no-failing-tests\"",
    ] {
        assert!(page.body.contains(part), "{part} in {}", page.body);
    }

    // A failure, then a successful rerun of the same revision.
    let (p, first) = s.run(SLUG, json!({})).await;
    assert_eq!(first["status"], "failed", "{first}");
    let r = s
        .post(
            &format!("/api/v2/workflow/{}/rerun", id(&first)),
            &json!({"from_failed": true}),
        )
        .await;
    r.expect(202);
    let second_id = r.json["workflow_id"].as_str().unwrap().to_string();
    let second = s.wait_workflow(&second_id, &["success", "failed"]).await;
    assert_eq!(second["status"], "success", "{second}");

    let page = admin.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let b = &page.body;
    assert!(b.contains(&format!("Insights of {SLUG}")), "{b}");
    assert!(b.contains("The last 30 days of all branches"), "{b}");
    // The workflow: two runs, one failed, half successful, last a success.
    let w = row(b, "workflow-row", "data-workflow", "main");
    assert!(w.contains("data-runs=\"2\""), "{w}");
    assert!(w.contains("data-success-rate=\"50%\""), "{w}");
    assert!(
        b.contains("<span class=\"bar warn\" style=\"width:50%\">"),
        "{b}"
    );
    let at = b.find("data-workflow=\"main\" data-runs").unwrap();
    let last = &b[at..at + b[at..].find("</tr>").unwrap()];
    assert!(last.contains("data-status=\"success\""), "{last}");
    // Its job.
    let j = row(b, "job-row", "data-workflow", "main");
    assert!(j.contains("data-job=\"test\""), "{j}");
    assert!(j.contains("data-runs=\"2\""), "{j}");
    assert!(j.contains("data-success-rate=\"50%\""), "{j}");
    // The flaky test, flaked once.
    assert_eq!(names(b, "flaky-test"), ["flaky"]);
    assert!(
        row(b, "flaky-test", "data-name", "flaky").contains("data-times=\"1\""),
        "{b}"
    );
    // Slowest by mean time; most failing by failures.
    assert_eq!(names(b, "slow-test"), ["slow", "broken", "flaky", "stable"]);
    assert!(b.contains("2.500s"), "{b}");
    assert_eq!(names(b, "failing-test"), ["broken", "flaky"]);
    let broken = row(b, "failing-test", "data-name", "broken");
    assert!(
        broken.contains("data-failures=\"2\" data-runs=\"2\""),
        "{broken}"
    );
    let flaky = row(b, "failing-test", "data-name", "flaky");
    assert!(
        flaky.contains("data-failures=\"1\" data-runs=\"2\""),
        "{flaky}"
    );
    assert!(b.contains("class=\"badge flaky\""), "flaky marked: {b}");

    // A viewer reads it too; signed out, it is the sign-in page.
    let page = viewer.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(names(&page.body, "flaky-test"), ["flaky"]);
    let page = Browser::new(&s).get(&path).await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location.as_deref(), Some("/signin"));

    // Filters: the default branch and a shorter window keep the runs;
    // another branch has none.
    let page = admin.get(&format!("{path}?branch=main&days=7")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains("The last 7 days of branch <code>main</code>")
    );
    assert!(row(&page.body, "workflow-row", "data-workflow", "main").contains("data-runs=\"2\""));
    let page = admin.get(&format!("{path}?branch=other&days=")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("data-testid=\"no-workflows\""));
    assert!(page.body.contains("data-testid=\"no-flaky-tests\""));
    assert!(page.body.contains("data-testid=\"no-tests\""));

    // Bad values and unknown projects are error pages.
    for (bad, status) in [
        (format!("{path}?days=0"), 400),
        (format!("{path}?days=-3"), 400),
        (format!("{path}?days=abc"), 400),
        (format!("{path}?days=1000"), 400),
        (format!("{path}?branch=a..b"), 400),
        (format!("{path}?branch=with%20space"), 400),
        (format!("{path}?branch=%00"), 400),
        (format!("{path}?branch=x&days=%%"), 400),
        ("/insights/git/acme/nope".to_string(), 404),
        ("/insights/nope/acme/app".to_string(), 404),
    ] {
        let r = admin.get(&bad).await;
        assert_eq!(r.status, status, "{bad}: {}", r.body);
        assert!(r.body.contains("data-testid=\"error-message\""), "{bad}");
    }

    // The links: the top navigation, the projects list, the project's
    // pipelines, the insights index.
    let page = admin.get("/projects").await;
    assert!(page.body.contains("href=\"/insights\""), "{}", page.body);
    assert!(
        page.body
            .contains(&format!("href=\"{path}\" data-testid=\"insights-link\""))
    );
    let page = admin.get(&format!("/pipelines/{SLUG}")).await;
    assert!(
        page.body
            .contains(&format!("href=\"{path}\" data-testid=\"insights-link\""))
    );
    let page = viewer.get("/insights").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains(&format!("href=\"{path}\" data-testid=\"insights-project\""))
    );

    // The tests tab marks the flaky test, failed or passed, and only it.
    for wf in [&first, &second] {
        let job = s.job(&id(wf), "test").await;
        let tab = format!(
            "/pipelines/{SLUG}/{}/workflows/{}/jobs/{}?tab=tests",
            p["number"],
            id(wf),
            job["job_number"]
        );
        let page = viewer.get(&tab).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert_eq!(
            page.body.matches("data-testid=\"flaky-badge\"").count(),
            1,
            "{}",
            page.body
        );
        let at = page.body.find("data-testid=\"flaky-badge\"").unwrap();
        let before = &page.body[..at];
        let test_at = before
            .rfind("flaky</strong>")
            .or_else(|| before.rfind("suite · flaky"))
            .unwrap_or_else(|| panic!("the badge follows the flaky test: {}", page.body));
        assert!(!before[test_at..].contains("broken"), "{}", page.body);
    }
    s.stop().await;
}
