//! `circleci agent ...`: what the runner asks of the job's environment.
//!
//! These commands run inside the environment (container or job directory) as
//! the job's user, so files they create belong to that user and paths mean
//! what the job's steps see:
//!
//! - `agent exec` runs a step's command in a process group of its own, and
//!   stops that group (SIGTERM, a grace period, SIGKILL) when the runner
//!   creates the cancel file;
//! - `agent tar` / `agent untar` write and read the archives of caches,
//!   workspaces, artifacts, test results and checkouts; unpacking refuses any
//!   entry that would land outside the target directory;
//! - `agent checksum`, `agent mkdir`, `agent home`, `agent exists` are small
//!   helpers for cache keys, working directories and shell detection.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::args::{self, Spec};
use crate::{Env, Failure, Io, Outcome};

const USAGE: &str = "\
Usage: circleci agent <command>

Commands the runner uses inside a job (not meant to be typed):
  agent keepalive                         sleep until killed
  agent exec [flags] -- COMMAND...        run a step's command in its own process group
  agent tar --root DIR [--glob] PATH...   archive paths (names relative to DIR) to stdout
  agent tar --map PATH NAME               archive a file or directory as NAME to stdout
  agent untar DIR                         unpack an archive from stdin into DIR
  agent checksum FILE                     base64 SHA-256 of a file (cache keys)
  agent mkdir DIR                         create a directory and its parents
  agent home                              print the user's home directory
  agent exists PATH                       exit 0 when PATH exists
  agent prepare [--mkdir DIR] PATH...     spin-up facts: home, which PATHs exist
  agent serve --socket PATH               run the runner's commands sent over a Unix socket
";

/// Runs `agent <sub>`; `keepalive` is handled by the caller.
pub fn command(sub: &str, argv: &[String], io: &mut Io<'_>, env: &Env) -> Outcome {
    match sub {
        "exec" => exec(argv, io, env),
        "tar" => tar(argv, io, env),
        "untar" => untar(argv, io, env),
        "checksum" => checksum(argv, io, env),
        "mkdir" => mkdir(argv, env),
        "home" => home(io, env),
        "exists" => exists(argv, env),
        "prepare" => prepare(argv, io, env),
        "serve" => {
            let parsed = args::parse(
                argv,
                &Spec {
                    values: &["socket"],
                    switches: &[],
                },
            )?;
            let socket = parsed
                .value("socket")
                .ok_or_else(|| Failure::Usage("agent serve needs --socket PATH".into()))?;
            crate::serve::serve(&env.resolve(socket))
                .map_err(|e| Failure::Error(format!("cannot serve on {socket}: {e}")))?;
            Ok(0)
        }
        "help" | "--help" | "-h" => {
            io.stdout
                .write_all(USAGE.as_bytes())
                .map_err(Failure::write)?;
            Ok(0)
        }
        other => Err(Failure::Usage(format!("unknown command \"agent {other}\""))),
    }
}

fn one_positional(argv: &[String], what: &str) -> Result<String, Failure> {
    let parsed = args::parse(
        argv,
        &Spec {
            values: &[],
            switches: &[],
        },
    )?;
    match parsed.positionals.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(Failure::Usage(format!(
            "agent {what} takes exactly one argument"
        ))),
    }
}

/// `agent exec --cancel-file F [--pgid-file P] [--error-file E] [--grace S] -- COMMAND...`
fn exec(argv: &[String], io: &mut Io<'_>, env: &Env) -> Outcome {
    let parsed = args::parse(
        argv,
        &Spec {
            values: &["cancel-file", "pgid-file", "error-file", "grace"],
            switches: &[],
        },
    )?;
    let Some((program, rest)) = parsed.positionals.split_first() else {
        return Err(Failure::Usage("agent exec needs a command after --".into()));
    };
    let cancel_file = parsed.value("cancel-file").map(PathBuf::from);
    let grace = parsed
        .value("grace")
        .map(|g| {
            g.parse::<u64>()
                .map_err(|_| Failure::Usage(format!("--grace `{g}` is not a number of seconds")))
        })
        .transpose()?
        .unwrap_or(10);
    let mut command = Command::new(program);
    command.args(rest).process_group(0).stdin(Stdio::inherit());
    // The step's stderr goes where its stdout goes, as on a terminal: one
    // stream, in the order the step wrote it.
    if let Ok(out) = std::io::stdout().as_fd().try_clone_to_owned() {
        command.stderr(Stdio::from(out));
    }
    if !env.cwd.as_os_str().is_empty() {
        command.current_dir(&env.cwd);
    }
    let child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            let reason = format!("cannot start `{program}`: {e}");
            if let Some(f) = parsed.value("error-file") {
                let _ = fs::write(f, &reason);
            }
            writeln!(io.stderr, "{reason}").map_err(Failure::write)?;
            return Ok(127);
        }
    };
    let pid = child.id();
    if let Some(f) = parsed.value("pgid-file") {
        let _ = fs::write(f, pid.to_string());
    }
    let group = rustix::process::Pid::from_raw(pid as i32);
    // The child is waited for on its own thread, so the exit is seen at once;
    // this thread watches the cancel file meanwhile.
    let (tx, rx) = std::sync::mpsc::channel();
    let mut child = child;
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let mut stop_started: Option<Instant> = None;
    let mut killed = false;
    loop {
        let tick = if stop_started.is_some() { 20 } else { 50 };
        match rx.recv_timeout(Duration::from_millis(tick)) {
            Ok(Ok(status)) => {
                return Ok(status
                    .code()
                    .or_else(|| status.signal().map(|s| 128 + s))
                    .unwrap_or(1));
            }
            Ok(Err(e)) => return Err(Failure::Error(format!("lost the command: {e}"))),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Failure::Error("lost the command".into()));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if stop_started.is_none() && cancel_file.as_ref().is_some_and(|f| f.exists()) {
            if let Some(g) = group {
                let _ = rustix::process::kill_process_group(g, rustix::process::Signal::TERM);
            }
            stop_started = Some(Instant::now());
        }
        if let Some(t) = stop_started
            && !killed
            && t.elapsed() >= Duration::from_secs(grace)
        {
            if let Some(g) = group {
                let _ = rustix::process::kill_process_group(g, rustix::process::Signal::KILL);
            }
            killed = true;
        }
    }
}

/// Whether a path component list stays below its base.
fn normal_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// `agent tar --root DIR [--glob] PATH...` and `agent tar --map PATH NAME`.
fn tar(argv: &[String], io: &mut Io<'_>, env: &Env) -> Outcome {
    let parsed = args::parse(
        argv,
        &Spec {
            values: &["root", "map"],
            switches: &["glob"],
        },
    )?;
    let mut builder = tar::Builder::new(io::BufWriter::new(&mut *io.stdout));
    builder.follow_symlinks(false);
    let mut warnings = Vec::new();
    if let Some(source) = parsed.value("map") {
        let [name] = parsed.positionals.as_slice() else {
            return Err(Failure::Usage(
                "agent tar --map PATH NAME takes one NAME".into(),
            ));
        };
        let source = env.resolve(source);
        let meta = fs::symlink_metadata(&source)
            .map_err(|e| Failure::Error(format!("{}: {e}", source.display())))?;
        if meta.is_dir() {
            append_dir(&mut builder, &source, Path::new(name))?;
        } else {
            builder
                .append_path_with_name(&source, name)
                .map_err(|e| Failure::Error(format!("cannot archive {}: {e}", source.display())))?;
        }
    } else {
        let root = parsed.value("root").ok_or_else(|| {
            Failure::Usage("agent tar needs --root DIR or --map PATH NAME".into())
        })?;
        let root = env.resolve(root);
        let glob = parsed.value("glob").is_some();
        let mut names: BTreeSet<PathBuf> = BTreeSet::new();
        for path in &parsed.positionals {
            if glob && has_glob(path) {
                let pattern = path.trim_start_matches("./").to_string();
                let matches =
                    crate::glob::glob(&[pattern.clone(), format!("{pattern}/**/*")], &root);
                if matches.is_empty() {
                    warnings.push(format!("no files match {path} in {}", root.display()));
                }
                names.extend(matches.into_iter().map(PathBuf::from));
                continue;
            }
            let abs = if Path::new(path).is_absolute() {
                PathBuf::from(path)
            } else {
                root.join(path)
            };
            let Ok(rel) = abs.strip_prefix(&root) else {
                return Err(Failure::Error(format!(
                    "{} is outside {}",
                    abs.display(),
                    root.display()
                )));
            };
            let Some(rel) = normal_relative(rel) else {
                return Err(Failure::Error(format!("{path} leaves {}", root.display())));
            };
            if fs::symlink_metadata(&abs).is_err() {
                warnings.push(format!("{} does not exist; skipping it", abs.display()));
                continue;
            }
            names.insert(rel);
        }
        for rel in names {
            let abs = root.join(&rel);
            let meta = fs::symlink_metadata(&abs)
                .map_err(|e| Failure::Error(format!("{}: {e}", abs.display())))?;
            if meta.is_dir() {
                append_dir(&mut builder, &abs, &rel)?;
            } else if rel.as_os_str().is_empty() {
                continue;
            } else {
                builder.append_path_with_name(&abs, &rel).map_err(|e| {
                    Failure::Error(format!("cannot archive {}: {e}", abs.display()))
                })?;
            }
        }
    }
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(Failure::write)?;
    for w in warnings {
        writeln!(io.stderr, "Warning: {w}").map_err(Failure::write)?;
    }
    Ok(0)
}

/// Appends a directory and everything below it, named under `name`.
fn append_dir<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: &Path,
    name: &Path,
) -> Result<(), Failure> {
    if !name.as_os_str().is_empty() {
        builder
            .append_dir(name, dir)
            .map_err(|e| Failure::Error(format!("cannot archive {}: {e}", dir.display())))?;
    }
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| Failure::Error(format!("cannot read {}: {e}", dir.display())))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let child = name.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| Failure::Error(format!("{}: {e}", path.display())))?;
        if kind.is_dir() {
            append_dir(builder, &path, &child)?;
        } else {
            builder
                .append_path_with_name(&path, &child)
                .map_err(|e| Failure::Error(format!("cannot archive {}: {e}", path.display())))?;
        }
    }
    Ok(())
}

/// Unpacks a tar archive from `reader` into `dest`. Every entry must stay in
/// `dest`: absolute names, `..` components, hard links out of it and writing
/// through a symbolic link are refused before anything is written for that
/// entry.
pub fn unpack(reader: impl Read, dest: &Path) -> Result<usize, String> {
    fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    let mut count = 0;
    let entries = archive
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("corrupt archive: {e}"))?;
        let raw = entry
            .path()
            .map_err(|e| format!("corrupt archive entry name: {e}"))?
            .into_owned();
        let Some(rel) = normal_relative(&raw) else {
            return Err(format!(
                "archive entry {} leaves the target directory {}; refusing to unpack",
                raw.display(),
                dest.display()
            ));
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        // No ancestor inside `dest` may be a symbolic link (one the archive made
        // earlier could point anywhere).
        let mut check = dest.to_path_buf();
        for part in rel.parent().into_iter().flat_map(Path::components) {
            check.push(part);
            if fs::symlink_metadata(&check).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(format!(
                    "archive entry {} goes through the symbolic link {}; refusing to unpack",
                    raw.display(),
                    check.display()
                ));
            }
        }
        let kind = entry.header().entry_type();
        if kind.is_hard_link() {
            let link = entry
                .link_name()
                .map_err(|e| format!("corrupt link in archive: {e}"))?
                .map(|l| l.into_owned())
                .unwrap_or_default();
            if normal_relative(&link).is_none_or(|l| l.as_os_str().is_empty()) {
                return Err(format!(
                    "archive hard link {} points outside the target directory",
                    raw.display()
                ));
            }
        }
        let target = dest.join(&rel);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        if kind.is_dir() && target.is_dir() {
            continue;
        }
        entry
            .unpack_in(dest)
            .map_err(|e| format!("cannot unpack {}: {e}", rel.display()))?;
        count += 1;
    }
    Ok(count)
}

fn untar(argv: &[String], io: &mut Io<'_>, env: &Env) -> Outcome {
    let dest = env.resolve(&one_positional(argv, "untar")?);
    match unpack(&mut *io.stdin, &dest) {
        Ok(_) => Ok(0),
        Err(e) => Err(Failure::Error(e)),
    }
}

fn checksum(argv: &[String], io: &mut Io<'_>, env: &Env) -> Outcome {
    let path = env.resolve(&one_positional(argv, "checksum")?);
    let mut file =
        fs::File::open(&path).map_err(|e| Failure::Error(format!("{}: {e}", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Failure::Error(format!("{}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    writeln!(io.stdout, "{}", base64(&hasher.finalize())).map_err(Failure::write)?;
    Ok(0)
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn mkdir(argv: &[String], env: &Env) -> Outcome {
    let dir = env.resolve(&one_positional(argv, "mkdir")?);
    fs::create_dir_all(&dir)
        .map_err(|e| Failure::Error(format!("cannot create {}: {e}", dir.display())))?;
    Ok(0)
}

fn exists(argv: &[String], env: &Env) -> Outcome {
    let path = env.resolve(&one_positional(argv, "exists")?);
    Ok(if fs::symlink_metadata(path).is_ok() {
        0
    } else {
        1
    })
}

/// `agent prepare [--mkdir DIR] [--probe PATH]...`: what the runner needs at
/// spin-up, in one command: prints `home=<home>` and `exists=<path>` for each
/// probed path that exists, after creating DIR (a relative DIR is relative to
/// the home).
fn prepare(argv: &[String], io: &mut Io<'_>, env: &Env) -> Outcome {
    let parsed = args::parse(
        argv,
        &Spec {
            values: &["mkdir"],
            switches: &[],
        },
    )?;
    let home = home_dir(env);
    if let Some(dir) = parsed.value("mkdir") {
        let dir = Path::new(&home).join(dir);
        fs::create_dir_all(&dir)
            .map_err(|e| Failure::Error(format!("cannot create {}: {e}", dir.display())))?;
    }
    writeln!(io.stdout, "home={home}").map_err(Failure::write)?;
    for path in &parsed.positionals {
        if fs::symlink_metadata(path).is_ok() {
            writeln!(io.stdout, "exists={path}").map_err(Failure::write)?;
        }
    }
    Ok(0)
}

/// `$HOME`, else the user's entry in `/etc/passwd`, else `/`.
fn home(io: &mut Io<'_>, env: &Env) -> Outcome {
    writeln!(io.stdout, "{}", home_dir(env)).map_err(Failure::write)?;
    Ok(0)
}

fn home_dir(env: &Env) -> String {
    let home = env.var("HOME").map(str::to_string).or_else(|| {
        let uid = rustix::process::getuid().as_raw();
        let passwd = fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() >= 6 && fields[2].parse::<u32>().ok() == Some(uid))
                .then(|| fields[5].to_string())
        })
    });
    home.unwrap_or_else(|| "/".into())
}

/// Makes a file executable (tests use it to build trees).
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("orrery-task-agent-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn run_cmd(args: &[&str], stdin: &[u8], env: &Env) -> (i32, Vec<u8>, String) {
        let args: Vec<String> = std::iter::once("circleci")
            .chain(args.iter().copied())
            .map(String::from)
            .collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = crate::run(&args, &mut &stdin[..], &mut out, &mut err, env);
        (code, out, String::from_utf8_lossy(&err).into_owned())
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn tar_and_untar_round_trip() {
        let src = temp("src");
        fs::create_dir_all(src.join("a/b")).unwrap();
        fs::write(src.join("a/b/c.txt"), "hello").unwrap();
        fs::write(src.join("top.so"), "lib").unwrap();
        std::os::unix::fs::symlink("b/c.txt", src.join("a/link")).unwrap();
        let env = Env::default();
        let (code, archive, err) = run_cmd(
            &[
                "agent",
                "tar",
                "--root",
                src.to_str().unwrap(),
                "a",
                "missing",
            ],
            b"",
            &env,
        );
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("missing does not exist"), "{err}");
        let dest = temp("dest");
        let (code, _, err) = run_cmd(&["agent", "untar", dest.to_str().unwrap()], &archive, &env);
        assert_eq!(code, 0, "{err}");
        assert_eq!(fs::read_to_string(dest.join("a/b/c.txt")).unwrap(), "hello");
        assert_eq!(
            fs::read_link(dest.join("a/link")).unwrap(),
            Path::new("b/c.txt")
        );
        assert!(!dest.join("top.so").exists());

        let (code, archive, _) = run_cmd(
            &[
                "agent",
                "tar",
                "--root",
                src.to_str().unwrap(),
                "--glob",
                "*.so",
            ],
            b"",
            &env,
        );
        assert_eq!(code, 0);
        let dest2 = temp("dest2");
        assert_eq!(unpack(&archive[..], &dest2).unwrap(), 1);
        assert!(dest2.join("top.so").exists());

        let (code, archive, _) = run_cmd(
            &[
                "agent",
                "tar",
                "--map",
                src.join("top.so").to_str().unwrap(),
                "artifact",
            ],
            b"",
            &env,
        );
        assert_eq!(code, 0);
        let dest3 = temp("dest3");
        unpack(&archive[..], &dest3).unwrap();
        assert_eq!(fs::read_to_string(dest3.join("artifact")).unwrap(), "lib");
    }

    fn raw_tar(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        // Built by hand: the tar crate itself refuses to write `..` names.
        let mut out = Vec::new();
        for (name, kind, link) in entries {
            let mut header = tar::Header::new_old();
            let bytes = header.as_mut_bytes();
            bytes[..name.len()].copy_from_slice(name.as_bytes());
            header.set_mode(0o644);
            header.set_size(if *kind == tar::EntryType::Regular {
                1
            } else {
                0
            });
            header.set_entry_type(*kind);
            if !link.is_empty() {
                header.set_link_name(link).unwrap();
            }
            header.set_cksum();
            out.extend_from_slice(header.as_bytes());
            if *kind == tar::EntryType::Regular {
                let mut block = [0u8; 512];
                block[0] = b'x';
                out.extend_from_slice(&block);
            }
        }
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    #[test]
    fn untar_refuses_to_escape() {
        let dest = temp("escape");
        let outside = dest
            .parent()
            .unwrap()
            .join(format!("orrery-escaped-{}", std::process::id()));
        let _ = fs::remove_file(&outside);
        let cases = [
            raw_tar(&[("../escaped", tar::EntryType::Regular, "")]),
            raw_tar(&[("/tmp/abs-escaped", tar::EntryType::Regular, "")]),
            raw_tar(&[
                ("link", tar::EntryType::Symlink, "/tmp"),
                ("link/escaped", tar::EntryType::Regular, ""),
            ]),
            raw_tar(&[("hard", tar::EntryType::Link, "../../etc/passwd")]),
        ];
        for (i, archive) in cases.iter().enumerate() {
            let err = unpack(&archive[..], &dest).unwrap_err();
            assert!(
                err.contains("refusing") || err.contains("outside"),
                "case {i}: {err}"
            );
        }
        assert!(!outside.exists());
        assert!(!Path::new("/tmp/escaped").exists());
        let err = unpack(&b"definitely not a tar archive, just text"[..], &dest).unwrap_err();
        assert!(!err.is_empty());
    }

    #[test]
    fn checksum_mkdir_exists_home() {
        let dir = temp("misc");
        fs::write(dir.join("f"), "abc").unwrap();
        let env = Env::default();
        let (code, out, _) = run_cmd(
            &["agent", "checksum", dir.join("f").to_str().unwrap()],
            b"",
            &env,
        );
        assert_eq!(code, 0);
        // SHA-256("abc"), base64.
        assert_eq!(
            String::from_utf8(out).unwrap().trim(),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
        let (code, _, err) = run_cmd(
            &["agent", "checksum", dir.join("nope").to_str().unwrap()],
            b"",
            &env,
        );
        assert_eq!(code, 1, "{err}");
        let nested = dir.join("x/y/z");
        assert_eq!(
            run_cmd(&["agent", "mkdir", nested.to_str().unwrap()], b"", &env).0,
            0
        );
        assert!(nested.is_dir());
        assert_eq!(
            run_cmd(&["agent", "exists", nested.to_str().unwrap()], b"", &env).0,
            0
        );
        assert_eq!(
            run_cmd(
                &["agent", "exists", dir.join("no").to_str().unwrap()],
                b"",
                &env
            )
            .0,
            1
        );
        let mut with_home = Env::default();
        with_home.vars.insert("HOME".into(), "/home/me".into());
        assert_eq!(
            run_cmd(&["agent", "home"], b"", &with_home).1,
            b"/home/me\n"
        );
    }

    #[test]
    fn exec_runs_and_stops_on_cancel() {
        let dir = temp("exec");
        let env = Env::default();
        let (code, _, _) = run_cmd(
            &["agent", "exec", "--", "/bin/sh", "-c", "exit 7"],
            b"",
            &env,
        );
        assert_eq!(code, 7);
        let error_file = dir.join("err");
        let (code, _, err) = run_cmd(
            &[
                "agent",
                "exec",
                "--error-file",
                error_file.to_str().unwrap(),
                "--",
                "/no/such/shell",
            ],
            b"",
            &env,
        );
        assert_eq!(code, 127);
        assert!(err.contains("cannot start `/no/such/shell`"), "{err}");
        assert!(
            fs::read_to_string(&error_file)
                .unwrap()
                .contains("/no/such/shell")
        );
        // A command that ignores SIGTERM is killed after the grace period.
        let cancel = dir.join("cancel");
        fs::write(&cancel, "").unwrap();
        let started = Instant::now();
        let (code, _, _) = run_cmd(
            &[
                "agent",
                "exec",
                "--cancel-file",
                cancel.to_str().unwrap(),
                "--grace",
                "1",
                "--",
                "/bin/sh",
                "-c",
                "trap '' TERM; sleep 30",
            ],
            b"",
            &env,
        );
        assert!(code == 128 + 9 || code == 128 + 15, "code {code}");
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}
