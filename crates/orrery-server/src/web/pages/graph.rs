//! A workflow drawn as SVG: jobs as nodes in columns by depth (the longest
//! chain of requirements before them), requirements as edges, colours by
//! status. Pure: jobs in, markup out.

use std::collections::HashMap;

use maud::{Markup, html};
use orrery_store::Job;

const W: i64 = 190;
const H: i64 = 38;
const COL: i64 = 250;
const ROW: i64 = 54;
const PAD: i64 = 8;

/// The column of every job: 0 for jobs that require nothing, else one more
/// than the deepest requirement. Cycles (which the compiler refuses) and
/// unknown requirements count as nothing.
pub fn columns(jobs: &[Job]) -> Vec<usize> {
    let index: HashMap<&str, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.id.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = jobs
        .iter()
        .map(|j| {
            serde_json::from_str::<Vec<String>>(&j.dependencies)
                .unwrap_or_default()
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    let mut col: Vec<Option<usize>> = vec![None; jobs.len()];
    fn depth(
        i: usize,
        deps: &[Vec<usize>],
        col: &mut [Option<usize>],
        seen: &mut Vec<bool>,
    ) -> usize {
        if let Some(c) = col[i] {
            return c;
        }
        if seen[i] {
            return 0;
        }
        seen[i] = true;
        let c = deps[i]
            .iter()
            .map(|&d| depth(d, deps, col, seen) + 1)
            .max()
            .unwrap_or(0);
        col[i] = Some(c);
        c
    }
    let mut seen = vec![false; jobs.len()];
    (0..jobs.len())
        .map(|i| depth(i, &deps, &mut col, &mut seen))
        .collect()
}

/// The graph of a workflow's jobs (in their config order). `href` gives a
/// job's page, if it has one.
pub fn svg(jobs: &[Job], href: impl Fn(&Job) -> Option<String>) -> Markup {
    let cols = columns(jobs);
    let mut rows_in: Vec<i64> = vec![0; cols.iter().max().map_or(0, |m| m + 1)];
    let mut pos: Vec<(i64, i64)> = Vec::with_capacity(jobs.len());
    for &c in &cols {
        let r = rows_in[c];
        rows_in[c] += 1;
        pos.push((PAD + c as i64 * COL, PAD + r * ROW));
    }
    let width = PAD * 2 + (rows_in.len().max(1) as i64 - 1) * COL + W;
    let height = PAD * 2 + (rows_in.iter().copied().max().unwrap_or(1).max(1) - 1) * ROW + H;
    let index: HashMap<&str, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.id.as_str(), i))
        .collect();
    let mut edges = String::new();
    for (i, j) in jobs.iter().enumerate() {
        for d in serde_json::from_str::<Vec<String>>(&j.dependencies).unwrap_or_default() {
            let Some(&k) = index.get(d.as_str()) else {
                continue;
            };
            let (x1, y1) = (pos[k].0 + W, pos[k].1 + H / 2);
            let (x2, y2) = (pos[i].0, pos[i].1 + H / 2);
            let mid = (x1 + x2) / 2;
            edges.push_str(&format!(
                "<path class=\"edge s-{}\" d=\"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}\"/>",
                jobs[k].status
            ));
        }
    }
    html! {
        svg.graph xmlns="http://www.w3.org/2000/svg" width=(width) height=(height)
            viewBox={"0 0 " (width) " " (height)} role="img" aria-label="Workflow graph" {
            g { (maud::PreEscaped(edges)) }
            @for (i, j) in jobs.iter().enumerate() {
                @let (x, y) = pos[i];
                @let label = short(&j.name, 22);
                @let node = html! {
                    // Closed elements, not `<rect ...>`: inside an HTML page
                    // the parser would nest what follows in them, unseen.
                    rect class={"node s-" (j.status)} x=(x) y=(y) width=(W) height=(H) rx="6" {}
                    circle class={"dot s-" (j.status)} cx=(x + 14) cy=(y + H / 2) r="5" {}
                    text x=(x + 26) y=(y + H / 2 + 5) { (label) }
                    title { (j.name) " — " (j.status.replace('_', " ")) }
                };
                @match href(j) {
                    Some(h) => a href=(h) data-testid="graph-job" data-job=(j.name) data-status=(j.status) { (node) },
                    None => g data-testid="graph-job" data-job=(j.name) data-status=(j.status) { (node) },
                }
            }
        }
    }
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, deps: &[&str]) -> Job {
        Job {
            id: id.into(),
            workflow_id: String::new(),
            pipeline_id: String::new(),
            project_id: String::new(),
            name: id.into(),
            number: None,
            job_type: "build".into(),
            status: "success".into(),
            parallelism: 1,
            job: String::new(),
            contexts: String::new(),
            dependencies: serde_json::to_string(deps).unwrap(),
            created_at: 0,
            queued_at: None,
            started_at: None,
            stopped_at: None,
            approved_by: None,
            approval_request_id: None,
            canceled_by: None,
            position: 0,
        }
    }

    #[test]
    fn columns_follow_the_longest_chain() {
        let jobs = [
            job("a", &[]),
            job("b", &["a"]),
            job("c", &["a", "b"]),
            job("d", &[]),
            job("e", &["zzz"]),
        ];
        assert_eq!(columns(&jobs), [0, 1, 2, 0, 0]);
    }

    #[test]
    fn cycles_do_not_hang() {
        let jobs = [job("a", &["b"]), job("b", &["a"])];
        let c = columns(&jobs);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn names_are_escaped() {
        let mut j = job("x", &[]);
        j.name = "<script>".into();
        let s = svg(&[j], |_| None).into_string();
        assert!(!s.contains("<script>"), "{s}");
        assert!(s.contains("&lt;script&gt;"));
    }
}
