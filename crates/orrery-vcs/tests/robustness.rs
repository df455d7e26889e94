//! Bad input never panics: arbitrary bytes and headers, and the real fixtures
//! with a field replaced by arbitrary JSON or their bytes flipped, all give an
//! event or an error, for every provider. Signatures made with `sign` always
//! verify, and a flipped byte never does.

use orrery_vcs::{Event, Headers, Provider, Push, parse, should_skip, sign, verify};
use proptest::prelude::*;
use serde_json::Value;

const FIXTURES: [(Provider, &str, &[u8]); 14] = [
    (
        Provider::GitHub,
        "push",
        include_bytes!("fixtures/github/push-branch.json"),
    ),
    (
        Provider::GitHub,
        "push",
        include_bytes!("fixtures/github/push-tag.json"),
    ),
    (
        Provider::GitHub,
        "push",
        include_bytes!("fixtures/github/push-tag-deleted.json"),
    ),
    (
        Provider::GitHub,
        "pull_request",
        include_bytes!("fixtures/github/pull_request-opened.json"),
    ),
    (
        Provider::GitHub,
        "pull_request",
        include_bytes!("fixtures/github/pull_request-synchronize.json"),
    ),
    (
        Provider::GitHub,
        "create",
        include_bytes!("fixtures/github/create-tag.json"),
    ),
    (
        Provider::GitHub,
        "ping",
        include_bytes!("fixtures/github/ping.json"),
    ),
    (
        Provider::GitLab,
        "Push Hook",
        include_bytes!("fixtures/gitlab/push.json"),
    ),
    (
        Provider::GitLab,
        "Tag Push Hook",
        include_bytes!("fixtures/gitlab/tag_push.json"),
    ),
    (
        Provider::GitLab,
        "Merge Request Hook",
        include_bytes!("fixtures/gitlab/merge_request.json"),
    ),
    (
        Provider::GitLab,
        "System Hook",
        include_bytes!("fixtures/gitlab/merge_request.json"),
    ),
    (
        Provider::Gitea,
        "push",
        include_bytes!("fixtures/gitea/push.json"),
    ),
    (
        Provider::Gitea,
        "push",
        include_bytes!("fixtures/gitea/push-old.json"),
    ),
    (
        Provider::Gitea,
        "pull_request",
        include_bytes!("fixtures/gitea/pull_request.json"),
    ),
];

const HEADER_NAMES: [&str; 12] = [
    "X-GitHub-Event",
    "X-Gitlab-Event",
    "X-Gitea-Event",
    "X-Forgejo-Event",
    "X-Hub-Signature-256",
    "X-Gitlab-Token",
    "X-Gitea-Signature",
    "X-Forgejo-Signature",
    "X-Orrery-Signature",
    "Content-Type",
    "x-github-event",
    "X-Unrelated",
];

const HEADER_VALUES: [&str; 14] = [
    "push",
    "pull_request",
    "create",
    "ping",
    "Push Hook",
    "Tag Push Hook",
    "Merge Request Hook",
    "System Hook",
    "application/x-www-form-urlencoded",
    "application/json",
    "sha256=",
    "sha256=00",
    "",
    "secret",
];

fn provider() -> impl Strategy<Value = Provider> {
    prop::sample::select(Provider::ALL.to_vec())
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(HEADER_VALUES.to_vec()).prop_map(str::to_string),
        ".{0,80}",
        "sha256=[0-9a-fA-F]{0,70}",
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            prop::sample::select(HEADER_NAMES.to_vec()).prop_map(str::to_string),
            header_value(),
        ),
        0..8,
    )
}

/// Arbitrary JSON, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
        "[0-9a-f]{40}".prop_map(Value::String),
        "refs/(heads|tags|pull)/[a-z./@{}~^-]{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every JSON path (as object keys and array indexes) in `v`.
fn paths(v: &Value, prefix: &mut Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
    out.push(prefix.clone());
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                prefix.push(PathStep::Key(k.clone()));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                prefix.push(PathStep::Index(i));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

#[derive(Clone, Debug)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn replace(v: &mut Value, path: &[PathStep], with: Value) {
    let mut target = v;
    for step in path {
        target = match (step, target) {
            (PathStep::Key(k), Value::Object(m)) => m.get_mut(k).expect("path exists"),
            (PathStep::Index(i), Value::Array(a)) => &mut a[*i],
            _ => unreachable!("paths come from the value"),
        };
    }
    *target = with;
}

/// Calls both entry points with borrowed headers; panics surface as failures.
fn exercise(provider: Provider, headers: &[(String, String)], body: &[u8]) {
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let headers = Headers(&pairs);
    let _ = verify(provider, &headers, body, "secret");
    let _ = verify(provider, &headers, body, "");
    if let Ok(event) = parse(provider, &headers, body) {
        // Events serialise, and messages feed the skip rule.
        let _ = serde_json::to_string(&event).expect("events serialise");
        if let Event::Push(Push {
            commit: Some(c), ..
        }) = event
        {
            let _ = should_skip(&c.message());
        }
    }
}

fn event_headers(provider: Provider, kind: &str) -> Vec<(String, String)> {
    let name = match provider {
        Provider::GitHub => "X-GitHub-Event",
        Provider::GitLab => "X-Gitlab-Event",
        Provider::Gitea => "X-Gitea-Event",
        Provider::Generic => "X-Unrelated",
    };
    vec![(name.to_string(), kind.to_string())]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_and_headers(provider in provider(), headers in headers(), body in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise(provider, &headers, &body);
    }

    #[test]
    fn arbitrary_json_and_headers(provider in provider(), headers in headers(), body in json()) {
        exercise(provider, &headers, body.to_string().as_bytes());
    }

    #[test]
    fn fixtures_with_a_field_replaced(which in 0..FIXTURES.len(), pick in any::<prop::sample::Index>(), with in json(), form in any::<bool>()) {
        let (provider, kind, bytes) = FIXTURES[which];
        let mut v: Value = serde_json::from_slice(bytes).unwrap();
        let mut all = Vec::new();
        paths(&v, &mut Vec::new(), &mut all);
        let path = pick.get(&all).clone();
        replace(&mut v, &path, with);
        let mut headers = event_headers(provider, kind);
        let body = if form {
            headers.push(("Content-Type".into(), "application/x-www-form-urlencoded".into()));
            format!("payload={}", v.to_string().replace('%', "%25").replace('&', "%26").replace('+', "%2B"))
        } else {
            v.to_string()
        };
        exercise(provider, &headers, body.as_bytes());
        // The generic provider reads any of them as its own body too.
        exercise(Provider::Generic, &headers, body.as_bytes());
    }

    #[test]
    fn fixtures_with_bytes_flipped(which in 0..FIXTURES.len(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let (provider, kind, bytes) = FIXTURES[which];
        let mut body = bytes.to_vec();
        for (at, b) in flips {
            let i = at.index(body.len());
            body[i] = b;
        }
        exercise(provider, &event_headers(provider, kind), &body);
    }

    #[test]
    fn signatures_verify_exactly(body in prop::collection::vec(any::<u8>(), 0..256), secret in ".{1,40}", flip in any::<prop::sample::Index>()) {
        let hex = sign(&body, &secret);
        let prefixed = format!("sha256={hex}");
        for (provider, name, value) in [
            (Provider::GitHub, "X-Hub-Signature-256", prefixed.as_str()),
            (Provider::Gitea, "X-Gitea-Signature", hex.as_str()),
            (Provider::Generic, "X-Orrery-Signature", prefixed.as_str()),
            (Provider::GitLab, "X-Gitlab-Token", secret.trim()),
        ] {
            let headers = [(name, value)];
            if provider == Provider::GitLab && secret.trim() != secret {
                // Header values are trimmed, so a secret with outer spaces cannot match.
                prop_assert!(verify(provider, &Headers(&headers), &body, &secret).is_err());
                continue;
            }
            prop_assert_eq!(verify(provider, &Headers(&headers), &body, &secret), Ok(()));
            if !body.is_empty() && provider != Provider::GitLab {
                let mut tampered = body.clone();
                let i = flip.index(tampered.len());
                tampered[i] ^= 0x01;
                prop_assert!(verify(provider, &Headers(&headers), &tampered, &secret).is_err());
            }
        }
    }

    #[test]
    fn skip_rule_never_panics(message in ".{0,400}") {
        let skip = should_skip(&message);
        let window: String = message.chars().take(250).collect();
        prop_assert_eq!(skip, window.contains("[ci skip]") || window.contains("[skip ci]"));
    }
}
