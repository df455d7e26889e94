//! What every page shares: the layout (header, navigation, the user's
//! menu), status badges, times and durations, and forms with their CSRF
//! token.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use orrery_store::Millis;

use super::WebUser;

/// A page for a signed-in user. `live` names what the page's live region
/// listens to (a query string for `/app/events`), if anything.
pub fn page(user: &WebUser, title: &str, live: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title)) }
            body data-live=[live] {
                header.top {
                    a.brand href="/" { "Orrery" }
                    nav {
                        a href="/pipelines" { "Pipelines" }
                        a href="/projects" { "Projects" }
                        a href="/insights" { "Insights" }
                        @if user.is_admin() { a href="/admin" { "Admin" } }
                    }
                    div.me {
                        a href="/account" data-testid="signed-in-as" { (user.user.login) " · " (user.user.role.as_str()) }
                        form method="post" action="/signout" {
                            (csrf(user))
                            button.link type="submit" data-testid="signout" { "Sign out" }
                        }
                    }
                }
                main #live { (body) }
                script src="/assets/app.js" defer {}
            }
        }
    }
}

/// A page without the signed-in header (sign-in, errors).
pub fn bare_page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title)) }
            body { (body) }
        }
    }
}

fn head(title: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        title { (title) " · Orrery" }
        link rel="stylesheet" href="/assets/app.css";
    }
}

/// The hidden CSRF field of a form.
pub fn csrf(user: &WebUser) -> Markup {
    html! { input type="hidden" name="_csrf" value=(user.csrf); }
}

/// A one-button form posting to `action`.
pub fn action_button(
    user: &WebUser,
    action: &str,
    label: &str,
    class: &str,
    testid: &str,
) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf(user))
            button type="submit" class=(class) data-testid=(testid) { (label) }
        }
    }
}

/// A coloured status badge.
pub fn status(s: &str) -> Markup {
    let label = s.replace('_', " ");
    html! { span class={"status s-" (s)} data-status=(s) { (label) } }
}

/// A time as `2026-11-28 10:04:05 UTC`, with the exact time as a tooltip
/// (`<time>` for scripts to show it in the reader's time zone).
pub fn when(ms: Millis) -> Markup {
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    html! {
        time datetime=(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)) {
            (t.format("%Y-%m-%d %H:%M:%S UTC"))
        }
    }
}

/// A duration as `1m 05s`, `850ms` or `2h 03m`.
pub fn duration(ms: Millis) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// From `start` to `end` (or to now, for what still runs).
pub fn span(start: Option<Millis>, end: Option<Millis>) -> Option<String> {
    let start = start?;
    Some(duration(end.unwrap_or_else(orrery_store::now_ms) - start))
}

/// Text that is already HTML (from the ANSI renderer, the graph).
pub fn raw(s: String) -> Markup {
    PreEscaped(s)
}

/// A URL path segment, escaped.
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(5_400), "5s");
        assert_eq!(duration(65_000), "1m 05s");
        assert_eq!(duration(7_380_000), "2h 03m");
        assert_eq!(duration(-5), "0ms");
    }

    #[test]
    fn segments() {
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
        assert_eq!(seg("main"), "main");
    }
}
