//! Reading repositories: a bare mirror per project under the data directory,
//! fetched before each trigger, from which configs and commit details are
//! read at a revision.

use std::path::{Path, PathBuf};

use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct GitError(pub String);

async fn git(dir: Option<&Path>, args: &[&str]) -> Result<String, GitError> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    let out = cmd
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .await
        .map_err(|e| GitError(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        return Err(GitError(format!(
            "git {} failed: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The mirrors of the projects' repositories.
#[derive(Clone, Debug)]
pub struct Repos {
    root: PathBuf,
}

/// A commit's details.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitInfo {
    pub subject: String,
    pub body: String,
    pub author_name: String,
    pub author_email: String,
}

impl Repos {
    pub fn new(root: PathBuf) -> Repos {
        Repos { root }
    }

    fn dir(&self, project_id: &str) -> PathBuf {
        self.root.join(format!("{project_id}.git"))
    }

    /// Brings the project's mirror up to date (cloning it the first time).
    pub async fn fetch(&self, project_id: &str, url: &str) -> Result<PathBuf, GitError> {
        let dir = self.dir(project_id);
        if dir.join("HEAD").exists() {
            git(
                Some(&dir),
                &["fetch", "--prune", "--quiet", "--force", "origin"],
            )
            .await?;
        } else {
            tokio::fs::create_dir_all(&self.root)
                .await
                .map_err(|e| GitError(format!("cannot create {}: {e}", self.root.display())))?;
            let tmp = self
                .root
                .join(format!(".{project_id}.cloning-{}", std::process::id()));
            let _ = tokio::fs::remove_dir_all(&tmp).await;
            git(
                None,
                &[
                    "clone",
                    "--mirror",
                    "--quiet",
                    url,
                    &tmp.display().to_string(),
                ],
            )
            .await
            .map_err(|e| GitError(format!("cannot clone {url}: {}", e.0)))?;
            if tokio::fs::rename(&tmp, &dir).await.is_err() {
                // Another trigger cloned it meanwhile.
                let _ = tokio::fs::remove_dir_all(&tmp).await;
            }
        }
        Ok(dir)
    }

    /// The commit a branch or tag points at.
    pub async fn resolve(
        &self,
        project_id: &str,
        branch: Option<&str>,
        tag: Option<&str>,
    ) -> Result<String, GitError> {
        let dir = self.dir(project_id);
        git(
            Some(&dir),
            &["rev-parse", "--verify", "--quiet", &ref_spec(branch, tag)],
        )
        .await
        .map(|s| s.trim().to_string())
        .map_err(|_| no_such_ref(branch, tag))
    }

    /// The commit a branch or tag points at, with its details: what
    /// [`Repos::resolve`] and [`Repos::commit_info`] give, in one git process.
    pub async fn resolve_commit(
        &self,
        project_id: &str,
        branch: Option<&str>,
        tag: Option<&str>,
    ) -> Result<(String, CommitInfo), GitError> {
        let dir = self.dir(project_id);
        let out = git(
            Some(&dir),
            &[
                "log",
                "-1",
                "--format=%H%x00%s%x00%b%x00%an%x00%ae",
                &ref_spec(branch, tag),
                "--",
            ],
        )
        .await
        .map_err(|_| no_such_ref(branch, tag))?;
        let (sha, rest) = out
            .split_once('\0')
            .ok_or_else(|| no_such_ref(branch, tag))?;
        Ok((sha.trim().to_string(), parse_commit_info(rest)))
    }

    /// A file at a revision, `None` when it does not exist there.
    pub async fn read_file(
        &self,
        project_id: &str,
        revision: &str,
        path: &str,
    ) -> Result<Option<String>, GitError> {
        let dir = self.dir(project_id);
        let spec = format!("{revision}:{path}");
        if let Ok(text) = git(Some(&dir), &["cat-file", "blob", &spec]).await {
            return Ok(Some(text));
        }
        // Distinguish a missing revision from a missing file.
        git(
            Some(&dir),
            &["cat-file", "-e", &format!("{revision}^{{commit}}")],
        )
        .await
        .map_err(|_| GitError(format!("the repository has no commit {revision}")))?;
        Ok(None)
    }

    pub async fn commit_info(
        &self,
        project_id: &str,
        revision: &str,
    ) -> Result<CommitInfo, GitError> {
        let dir = self.dir(project_id);
        let out = git(
            Some(&dir),
            &["log", "-1", "--format=%s%x00%b%x00%an%x00%ae", revision],
        )
        .await?;
        Ok(parse_commit_info(&out))
    }
}

/// The revision a branch or tag names (`HEAD` for neither).
fn ref_spec(branch: Option<&str>, tag: Option<&str>) -> String {
    match (branch, tag) {
        (_, Some(t)) => format!("refs/tags/{t}^{{commit}}"),
        (Some(b), None) => format!("refs/heads/{b}^{{commit}}"),
        (None, None) => "HEAD".to_string(),
    }
}

fn no_such_ref(branch: Option<&str>, tag: Option<&str>) -> GitError {
    GitError(match (branch, tag) {
        (_, Some(t)) => format!("the repository has no tag {t}"),
        (Some(b), None) => format!("the repository has no branch {b}"),
        _ => "the repository has no default branch".to_string(),
    })
}

/// `%s%x00%b%x00%an%x00%ae` output.
fn parse_commit_info(out: &str) -> CommitInfo {
    let mut parts = out.trim_end_matches('\n').split('\0');
    CommitInfo {
        subject: parts.next().unwrap_or_default().to_string(),
        body: parts.next().unwrap_or_default().trim().to_string(),
        author_name: parts.next().unwrap_or_default().to_string(),
        author_email: parts.next().unwrap_or_default().to_string(),
    }
}
