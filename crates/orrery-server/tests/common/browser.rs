//! A browser's view of the web app for HTTP-level tests: no redirects
//! followed, the session cookie kept by hand, forms posted url-encoded.

use super::TestServer;

pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: Option<String>,
}

/// What came back.
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookie: Option<String>,
    pub content_type: String,
    /// The body as text (lossy).
    pub body: String,
    pub bytes: Vec<u8>,
}

/// `req` with `form` as its url-encoded body.
pub fn form_post(req: reqwest::RequestBuilder, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
    req.header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap())
}

impl Browser {
    pub fn new(s: &TestServer) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: s.base.clone(),
            cookie: None,
        }
    }

    /// Sends `req` with the session cookie; keeps a new one.
    pub async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = match &self.cookie {
            Some(c) => req.header("cookie", c.clone()),
            None => req,
        };
        let r = req.send().await.unwrap();
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (location, set_cookie) = (header("location"), header("set-cookie"));
        let content_type = header("content-type").unwrap_or_default();
        let status = r.status().as_u16();
        if let Some(c) = &set_cookie {
            let pair = c.split(';').next().unwrap().to_string();
            self.cookie = (!pair.ends_with('=')).then_some(pair);
        }
        let bytes = r.bytes().await.unwrap().to_vec();
        Page {
            status,
            location,
            set_cookie,
            content_type,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let req = self
            .http
            .get(format!("{}{path}", self.base))
            .header("accept", "text/html");
        self.send(req).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let req = form_post(self.http.post(format!("{}{path}", self.base)), form);
        self.send(req).await
    }

    pub async fn sign_in(&mut self, login: &str, password: &str) -> Page {
        self.post("/signin", &[("login", login), ("password", password)])
            .await
    }

    /// The CSRF token of the forms on a page.
    pub fn csrf(page: &Page) -> String {
        let at = page
            .body
            .find("name=\"_csrf\" value=\"")
            .expect("a form with a CSRF token");
        page.body[at + 20..at + 20 + 64].to_string()
    }

    /// The CSRF token of this browser's session (from the pipelines page).
    pub async fn token(&mut self) -> String {
        let page = self.get("/pipelines").await;
        assert_eq!(page.status, 200, "signed in");
        Browser::csrf(&page)
    }
}
