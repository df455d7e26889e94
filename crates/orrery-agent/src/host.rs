//! Host-side file work for steps: archiving a checkout, cloning at a
//! revision, reading collected test results, SSH key archives, permissions.
//! Blocking code, run on the blocking thread pool by the runner.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use orrery_testresults::{TestCase, parse_junit};

use crate::spec::SshKey;

/// Makes a directory tree usable by any user (a job user that is not root
/// must read the in-job binary and write the task files).
pub fn open_permissions(path: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))?;
        for entry in std::fs::read_dir(path)? {
            open_permissions(&entry?.path())?;
        }
    } else if meta.is_file() {
        let mode = meta.permissions().mode();
        let exec = if mode & 0o111 != 0 { 0o755 } else { 0o666 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(exec))?;
    }
    Ok(())
}

fn git(args: &[&str], dir: Option<&Path>) -> Result<String, String> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    let out = cmd
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Clones `url` and checks out `revision`, on `branch` when one is given.
pub fn clone_at(
    url: &str,
    revision: &str,
    branch: Option<&str>,
    tag: Option<&str>,
    dir: &Path,
) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(dir);
    git(
        &[
            "clone",
            "--quiet",
            "--no-checkout",
            url,
            &dir.display().to_string(),
        ],
        None,
    )?;
    match (branch, tag) {
        (Some(b), _) => git(&["checkout", "--quiet", "-B", b, revision], Some(dir))?,
        _ => git(&["checkout", "--quiet", "--detach", revision], Some(dir))?,
    };
    if let Some(t) = tag {
        // Make sure the tag is there even when the clone did not fetch it.
        let _ = git(&["tag", "-f", t, revision], Some(dir));
    }
    Ok(())
}

/// The files of a tree to check out: in a git work tree, the tracked and the
/// untracked-but-not-ignored files as they are now (uncommitted changes
/// included) plus `.git`; elsewhere every file.
fn tree_files(root: &Path) -> Result<Vec<PathBuf>, String> {
    let is_git = root.join(".git").exists();
    let mut files = Vec::new();
    if is_git {
        let listed = git(
            &[
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ],
            Some(root),
        )?;
        for name in listed.split('\0').filter(|n| !n.is_empty()) {
            let p = PathBuf::from(name);
            // Deleted but still in the index: not in the working tree.
            if std::fs::symlink_metadata(root.join(&p)).is_ok() {
                files.push(p);
            }
        }
        walk(root, Path::new(".git"), &mut files)?;
    } else {
        walk(root, Path::new(""), &mut files)?;
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let dir = root.join(rel);
    let entries =
        std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let rel_path = rel.join(entry.file_name());
        let kind = entry.file_type().map_err(|e| e.to_string())?;
        if kind.is_dir() {
            walk(root, &rel_path, out)?;
        } else {
            out.push(rel_path);
        }
    }
    Ok(())
}

/// Archives the files of a tree (see [`tree_files`]) into `target`; returns
/// how many there are.
pub fn archive_tree(root: &Path, target: &Path) -> Result<usize, String> {
    let files = tree_files(root)?;
    let file = std::fs::File::create(target)
        .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
    builder.follow_symlinks(false);
    for rel in &files {
        builder
            .append_path_with_name(root.join(rel), rel)
            .map_err(|e| format!("cannot archive {}: {e}", rel.display()))?;
    }
    builder
        .into_inner()
        .and_then(|mut w| std::io::Write::flush(&mut w))
        .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    Ok(files.len())
}

/// Reads the JUnit XML files of a collected tar (under `results/`): the test
/// cases, and a warning for each file that could not be read.
pub fn read_test_results(tar_path: &Path) -> Result<(Vec<TestCase>, Vec<String>), String> {
    const LIMIT: u64 = 250 * 1024 * 1024;
    let file = std::fs::File::open(tar_path).map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(file);
    let mut cases = Vec::new();
    let mut problems = Vec::new();
    let mut total = 0u64;
    for entry in archive
        .entries()
        .map_err(|e| format!("cannot read the test results: {e}"))?
    {
        let mut entry = entry.map_err(|e| format!("cannot read the test results: {e}"))?;
        let name = entry
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if !entry.header().entry_type().is_file() || !name.ends_with(".xml") {
            continue;
        }
        total += entry.size();
        if total > LIMIT {
            problems.push("test results are larger than 250 MB; the rest are not stored".into());
            break;
        }
        let mut xml = Vec::new();
        entry.read_to_end(&mut xml).map_err(|e| e.to_string())?;
        let source = name.strip_prefix("results/").unwrap_or(&name).to_string();
        match parse_junit(&xml, &source) {
            Ok(mut parsed) => cases.append(&mut parsed),
            Err(e) => problems.push(format!("{source}: {e}")),
        }
    }
    Ok((cases, problems))
}

/// An archive of `.ssh/id_rsa_<fingerprint>` files (mode 600) and a config
/// that offers them, to unpack in the job's home.
pub fn ssh_keys_tar(keys: &[&SshKey], target: &Path) -> Result<(), String> {
    let file = std::fs::File::create(target).map_err(|e| e.to_string())?;
    let mut builder = tar::Builder::new(file);
    let mut config = String::from("Host *\n");
    for key in keys {
        let name = format!("id_rsa_{}", key.fingerprint.replace(':', ""));
        append_bytes(
            &mut builder,
            &format!(".ssh/{name}"),
            key.private_key.as_bytes(),
            0o600,
        )?;
        config.push_str(&format!("  IdentityFile ~/.ssh/{name}\n"));
    }
    append_bytes(&mut builder, ".ssh/config", config.as_bytes(), 0o600)?;
    builder.finish().map_err(|e| e.to_string())
}

fn append_bytes(
    builder: &mut tar::Builder<std::fs::File>,
    name: &str,
    data: &[u8],
    mode: u32,
) -> Result<(), String> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    builder
        .append_data(&mut header, name, data)
        .map_err(|e| e.to_string())
}
