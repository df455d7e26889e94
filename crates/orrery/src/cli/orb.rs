//! `orrery orb pack|import|list`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use orrery_config::OrbRef;
use orrery_config::orbs::{AvailableVersion, VersionRequest};
use orrery_config::pack::{PackFiles, pack};
use orrery_config::yaml;

use crate::orb_dir::DirOrbSource;

#[derive(Subcommand, Debug)]
pub enum OrbCommand {
    /// Pack an orb source tree (the directory holding @orb.yml) into one orb YAML
    Pack {
        /// The directory holding @orb.yml, usually `src`
        dir: PathBuf,
    },
    /// Add a packed orb to the orb directory under an exact version
    Import {
        /// `namespace/name@x.y.z` (or `@dev:label`)
        reference: String,
        /// The packed orb YAML (`-` reads standard input)
        file: PathBuf,
        /// Directory of imported orbs
        #[arg(long, env = "ORRERY_ORB_DIR", value_name = "DIR")]
        orb_dir: Option<PathBuf>,
        /// Replace a version that is already imported
        #[arg(long)]
        force: bool,
    },
    /// List the orbs in the orb directory
    List {
        #[arg(long, env = "ORRERY_ORB_DIR", value_name = "DIR")]
        orb_dir: Option<PathBuf>,
    },
}

/// Files under a directory, with symlinks and anything outside it ignored.
struct DirFiles {
    root: PathBuf,
    files: Vec<String>,
}

impl DirFiles {
    fn scan(root: &Path) -> anyhow::Result<DirFiles> {
        let mut files = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in
                fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
            {
                let entry = entry?;
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    stack.push(entry.path());
                } else if kind.is_file() {
                    let rel = entry
                        .path()
                        .strip_prefix(root)?
                        .to_string_lossy()
                        .replace('\\', "/");
                    files.push(rel);
                }
            }
        }
        files.sort();
        Ok(DirFiles {
            root: root.to_path_buf(),
            files,
        })
    }
}

impl PackFiles for DirFiles {
    fn files(&self) -> Vec<String> {
        self.files.clone()
    }

    fn read(&self, path: &str) -> Result<String, String> {
        if !self.files.iter().any(|f| f == path) {
            return Err(format!("no such file: {path}"));
        }
        fs::read_to_string(self.root.join(path)).map_err(|e| format!("cannot read {path}: {e}"))
    }
}

pub fn run(cmd: OrbCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        OrbCommand::Pack { dir } => {
            if !dir.is_dir() {
                bail!("{} is not a directory", dir.display());
            }
            let files = DirFiles::scan(&dir)?;
            match pack(&files) {
                Ok(out) => {
                    print!("{out}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    for e in &errors {
                        eprintln!(
                            "{}: error: {}",
                            dir.join(&e.file).display(),
                            match e.line {
                                Some(l) => format!("line {l}: {}", e.message),
                                None => e.message.clone(),
                            }
                        );
                    }
                    Ok(ExitCode::from(1))
                }
            }
        }
        OrbCommand::Import {
            reference,
            file,
            orb_dir,
            force,
        } => import(&reference, &file, orb_dir, force),
        OrbCommand::List { orb_dir } => {
            let source = DirOrbSource::new(super::orb_dir(orb_dir));
            let orbs = source
                .list()
                .with_context(|| format!("cannot read {}", source.dir().display()))?;
            if orbs.is_empty() {
                eprintln!("no orbs in {}", source.dir().display());
            }
            for (name, versions) in orbs {
                let versions: Vec<String> = versions.iter().map(|v| v.to_string()).collect();
                println!("{name} {}", versions.join(" "));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn import(
    reference: &str,
    file: &Path,
    orb_dir: Option<PathBuf>,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let orb = OrbRef::parse(reference).map_err(anyhow::Error::msg)?;
    let version = match &orb.version {
        VersionRequest::Exact(v) => AvailableVersion::Release(*v),
        VersionRequest::Dev(label) => AvailableVersion::Dev(label.clone()),
        other => bail!(
            "import needs an exact version such as {}@1.2.3, not `{other}`",
            orb.full_name()
        ),
    };
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
            .context("cannot read the orb from standard input")?
    } else {
        fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    match yaml::parse(&text, yaml::SourceId(0)) {
        Err(e) => {
            eprintln!(
                "{}:{}:{}: error: not valid YAML: {}",
                file.display(),
                e.line,
                e.col,
                e.message
            );
            return Ok(ExitCode::from(1));
        }
        Ok(doc) if doc.root.as_map().is_none() => {
            eprintln!(
                "{}: error: an orb is a map of keys (commands, jobs, executors, ...)",
                file.display()
            );
            return Ok(ExitCode::from(1));
        }
        Ok(_) => {}
    }
    let source = DirOrbSource::new(super::orb_dir(orb_dir));
    let path = source.path_for(&orb.namespace, &orb.name, &version);
    if path.exists() && !force {
        bail!(
            "{reference} is already imported ({}); orb versions are immutable, use --force to replace it",
            path.display()
        );
    }
    let parent = path.parent().expect("orb path has a parent");
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    // Write then rename, so a reader never sees half an orb.
    let tmp = parent.join(format!(".{}.tmp-{}", orb.name, std::process::id()));
    fs::write(&tmp, &text).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "imported {}/{}@{version} into {}",
        orb.namespace,
        orb.name,
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
