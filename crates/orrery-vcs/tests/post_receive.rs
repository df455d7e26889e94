//! The `post-receive` hook script, run for real: git, awk, openssl and curl send
//! each pushed ref to a small HTTP listener on 127.0.0.1 started by the test, and
//! the bodies received must verify and parse as generic webhooks.
//!
//! Needs `git`, `openssl` and `curl` on the machine (Debian: `apt-get install -y
//! git openssl curl`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use orrery_vcs::{Event, GitRef, Headers, Provider, Push, parse, post_receive_hook_script, verify};

const SECRET: &str = "hook secret with 'quotes' and $dollars";

/// The commit message: quotes, backslashes, a tab and more than one line.
const MESSAGE: &str = "Fix \"quoted\" paths like C:\\temp\\new and 'single' ones\n\n\
                       Second paragraph with a\ttab, a backslash at the end \\\n\
                       and a % sign.\n";

/// One HTTP request as the listener received it.
struct Request {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Verifies and parses the request as the server would.
    fn event(&self) -> Event {
        let pairs: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let headers = Headers(&pairs);
        verify(Provider::Generic, &headers, &self.body, SECRET).expect("the signature verifies");
        parse(Provider::Generic, &headers, &self.body).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&self.body));
        })
    }
}

/// An HTTP listener on 127.0.0.1 that answers 204 to requests whose signature
/// verifies and 401 to the others, and hands each request over. It stops after
/// `limit` requests or 60 seconds.
struct Listener {
    url: String,
    requests: mpsc::Receiver<Request>,
}

impl Listener {
    fn start(limit: usize) -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let url = format!("http://{}/webhooks/generic", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut served = 0;
            while served < limit && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served += 1;
                        if let Some(request) = serve(stream)
                            && tx.send(request).is_err()
                        {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => return,
                }
            }
        });
        Listener { url, requests: rx }
    }

    /// The requests received so far (call after the hook has exited).
    fn received(&self) -> Vec<Request> {
        let mut all = Vec::new();
        while let Ok(r) = self.requests.recv_timeout(Duration::from_millis(500)) {
            all.push(r);
        }
        all
    }
}

/// Reads one request from `stream` and answers it.
fn serve(stream: TcpStream) -> Option<Request> {
    stream.set_nonblocking(false).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    assert!(
        request_line.starts_with("POST /webhooks/generic "),
        "{request_line}"
    );
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let request = Request { headers, body };
    let pairs: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let status = match verify(Provider::Generic, &Headers(&pairs), &request.body, SECRET) {
        Ok(()) => "204 No Content",
        Err(_) => "401 Unauthorized",
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    Some(request)
}

/// A command isolated from the user's and the machine's git configuration and
/// from proxies (the listener is local).
fn command(program: &str, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
        "ORRERY_WEBHOOK_URL",
        "ORRERY_WEBHOOK_SECRET",
        "ORRERY_REPO_URL",
        "ORRERY_REPO_NAME",
        "ORRERY_PUSHER",
        "GL_USER",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", home.join("gitconfig"))
        .env("NO_PROXY", "*")
        .env("GIT_AUTHOR_NAME", "Zoë \"Zed\" O'Brien")
        .env("GIT_AUTHOR_EMAIL", "zoe@example.org")
        .env("GIT_COMMITTER_NAME", "Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.org")
        .env("GIT_AUTHOR_DATE", "2024-05-01T12:00:00+02:00")
        .env("GIT_COMMITTER_DATE", "2024-05-01T12:00:00+02:00");
    cmd
}

/// Runs `git args...` in `dir` and returns its trimmed standard output.
fn git(home: &Path, dir: &Path, args: &[&str]) -> String {
    let out = command("git", home)
        .current_dir(dir)
        .args(args)
        .output()
        .expect("git runs (is git installed?)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn require_tools() {
    for tool in ["git", "openssl", "curl"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
            || Command::new(tool)
                .arg("version")
                .stdout(Stdio::null())
                .status()
                .is_ok();
        assert!(
            found,
            "`{tool}` is needed: apt-get install -y git openssl curl"
        );
    }
}

/// A bare repository with the hook installed, and a work tree with one commit.
struct Repos {
    _tmp: tempfile::TempDir,
    home: std::path::PathBuf,
    bare: std::path::PathBuf,
    work: std::path::PathBuf,
    commit: String,
}

fn repos() -> Repos {
    require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::write(home.join("gitconfig"), "").unwrap();
    let bare = tmp.path().join("app.git");
    let work = tmp.path().join("work");
    git(
        &home,
        tmp.path(),
        &["init", "-q", "--bare", bare.to_str().unwrap()],
    );
    git(&home, tmp.path(), &["init", "-q", work.to_str().unwrap()]);
    let hook = bare.join("hooks/post-receive");
    std::fs::write(&hook, post_receive_hook_script()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(work.join("README"), "hello\n").unwrap();
    std::fs::write(tmp.path().join("message"), MESSAGE).unwrap();
    git(&home, &work, &["add", "README"]);
    git(
        &home,
        &work,
        &["commit", "-q", "--cleanup=verbatim", "-F", "../message"],
    );
    let commit = git(&home, &work, &["rev-parse", "HEAD"]);
    let bare = bare.canonicalize().unwrap();
    Repos {
        _tmp: tmp,
        home,
        bare,
        work,
        commit,
    }
}

fn check_commit(push: &Push) {
    let commit = push.commit.as_ref().expect("the hook sends the message");
    assert_eq!(
        commit.subject,
        "Fix \"quoted\" paths like C:\\temp\\new and 'single' ones"
    );
    assert_eq!(
        commit.body,
        "Second paragraph with a\ttab, a backslash at the end \\\nand a % sign."
    );
    assert_eq!(commit.author_name.as_deref(), Some("Zoë \"Zed\" O'Brien"));
    assert_eq!(commit.author_email.as_deref(), Some("zoe@example.org"));
    assert_eq!(
        commit.timestamp.as_deref(),
        Some("2024-05-01T12:00:00+02:00")
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn hook_reports_a_real_push_of_a_branch_and_an_annotated_tag() {
    let r = repos();
    git(
        &r.home,
        &r.work,
        &["tag", "-a", "v1.0", "-m", "Release \"one\""],
    );
    let listener = Listener::start(2);
    let out = command("git", &r.home)
        .current_dir(&r.work)
        .env("ORRERY_WEBHOOK_URL", &listener.url)
        .env("ORRERY_WEBHOOK_SECRET", SECRET)
        .env("ORRERY_PUSHER", "pat")
        .args(["push", "-q"])
        .arg(&r.bare)
        .args(["HEAD:refs/heads/main", "refs/tags/v1.0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "git push: {}", stderr(&out));
    assert!(!stderr(&out).contains("orrery:"), "{}", stderr(&out));

    let mut pushes: Vec<Push> = listener
        .received()
        .iter()
        .map(|req| {
            assert_eq!(req.header("Content-Type"), Some("application/json"));
            match req.event() {
                Event::Push(p) => p,
                other => panic!("{other:?}"),
            }
        })
        .collect();
    pushes.sort_by_key(|p| p.git_ref.is_tag());
    assert_eq!(pushes.len(), 2, "{pushes:?}");
    for p in &pushes {
        assert_eq!(p.repo_url, r.bare.to_str().unwrap());
        assert_eq!(p.repo_full_name, "app");
        assert_eq!(p.before, None);
        assert_eq!(p.pusher.as_deref(), Some("pat"));
        // The annotated tag is peeled to the commit it tags.
        assert_eq!(p.revision, r.commit);
        check_commit(p);
    }
    assert_eq!(pushes[0].git_ref, GitRef::Branch("main".into()));
    assert_eq!(pushes[1].git_ref, GitRef::Tag("v1.0".into()));
}

#[test]
fn hook_run_by_sh_with_git_config_settings() {
    let r = repos();
    git(
        &r.home,
        &r.work,
        &[
            "push",
            "-q",
            r.bare.to_str().unwrap(),
            "HEAD:refs/heads/main",
        ],
    );
    let listener = Listener::start(2);
    // Settings from the repository's git config, as on a server reached by SSH.
    git(
        &r.home,
        &r.bare,
        &["config", "orrery.webhookUrl", &listener.url],
    );
    git(
        &r.home,
        &r.bare,
        &["config", "orrery.webhookSecret", SECRET],
    );
    git(
        &r.home,
        &r.bare,
        &[
            "config",
            "orrery.repoUrl",
            "ssh://git@git.example.org/app.git",
        ],
    );
    git(&r.home, &r.bare, &["config", "orrery.repoName", "team/app"]);

    let before = "1".repeat(40);
    let zero = "0".repeat(40);
    let input = format!(
        "{before} {commit} refs/heads/main\n\
         {before} {zero} refs/heads/gone\n\
         {zero} {commit} refs/notes/commits\n",
        commit = r.commit
    );
    let mut child = command("sh", &r.home)
        .current_dir(&r.bare)
        .env("GIT_DIR", ".")
        .env("USER", "deploy")
        .arg("hooks/post-receive")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "hook: {}", stderr(&out));

    let events: Vec<Event> = listener.received().iter().map(Request::event).collect();
    assert_eq!(events.len(), 2, "{events:?}");
    let Event::Push(p) = &events[0] else {
        panic!("{:?}", events[0])
    };
    assert_eq!(p.repo_url, "ssh://git@git.example.org/app.git");
    assert_eq!(p.repo_full_name, "team/app");
    assert_eq!(p.git_ref, GitRef::Branch("main".into()));
    assert_eq!(p.revision, r.commit);
    assert_eq!(p.before.as_deref(), Some(before.as_str()));
    assert_eq!(p.pusher.as_deref(), Some("deploy"));
    check_commit(p);
    // The deletion is sent and ignored by the server; the note is not sent.
    assert_eq!(events[1], Event::Ignored("branch `gone` deleted".into()));
}

#[test]
fn hook_reports_a_refused_delivery() {
    let r = repos();
    git(
        &r.home,
        &r.work,
        &[
            "push",
            "-q",
            r.bare.to_str().unwrap(),
            "HEAD:refs/heads/main",
        ],
    );
    let listener = Listener::start(1);
    let mut child = command("sh", &r.home)
        .current_dir(&r.bare)
        .env("GIT_DIR", ".")
        .env("ORRERY_WEBHOOK_URL", &listener.url)
        .env("ORRERY_WEBHOOK_SECRET", "not the secret")
        .arg("hooks/post-receive")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let zero = "0".repeat(40);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{zero} {} refs/heads/main\n", r.commit).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("could not notify"),
        "{}",
        stderr(&out)
    );
    assert_eq!(listener.received().len(), 1);

    // Without settings the hook says so and sends nothing.
    let out = command("sh", &r.home)
        .current_dir(&r.bare)
        .env("GIT_DIR", ".")
        .arg("hooks/post-receive")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("ORRERY_WEBHOOK_URL"),
        "{}",
        stderr(&out)
    );
}
