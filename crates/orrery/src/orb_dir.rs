//! Orbs from a directory: `<dir>/<namespace>/<name>@<version>.yml`.
//!
//! The directory is what `orrery orb import` writes and what `--orb-dir` /
//! `ORRERY_ORB_DIR` point at. Version choice is the compiler's
//! [`select_version`], so it picks exactly what any other orb source would.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use orrery_config::orbs::{AvailableVersion, select_version};
use orrery_config::{FetchedOrb, OrbFetchError, OrbRef, OrbSource};

pub struct DirOrbSource {
    dir: PathBuf,
}

impl DirOrbSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirOrbSource { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file an orb version is stored in.
    pub fn path_for(&self, namespace: &str, name: &str, version: &AvailableVersion) -> PathBuf {
        self.dir.join(namespace).join(format!(
            "{name}@{}.yml",
            version.to_string().replace(':', "_")
        ))
    }

    /// The versions of `namespace/name` in the directory.
    pub fn versions(&self, namespace: &str, name: &str) -> io::Result<Vec<AvailableVersion>> {
        let dir = self.dir.join(namespace);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let prefix = format!("{name}@");
        let mut out = Vec::new();
        for entry in entries {
            let file_name = entry?.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            let Some(version) = file_name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(".yml"))
            else {
                continue;
            };
            let version = match version.strip_prefix("dev_") {
                Some(label) => format!("dev:{label}"),
                None => version.to_string(),
            };
            if let Some(v) = AvailableVersion::parse(&version) {
                out.push(v);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every orb in the directory: (namespace/name, versions).
    pub fn list(&self) -> io::Result<Vec<(String, Vec<AvailableVersion>)>> {
        let mut out = Vec::new();
        let namespaces = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for ns in namespaces {
            let ns = ns?;
            if !ns.file_type()?.is_dir() {
                continue;
            }
            let ns_name = ns.file_name().to_string_lossy().into_owned();
            let mut names: Vec<String> = fs::read_dir(ns.path())?
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.split_once('@').map(|(name, _)| name.to_string())
                })
                .collect();
            names.sort();
            names.dedup();
            for name in names {
                let versions = self.versions(&ns_name, &name)?;
                out.push((format!("{ns_name}/{name}"), versions));
            }
        }
        out.sort();
        Ok(out)
    }
}

impl OrbSource for DirOrbSource {
    fn fetch(&self, orb: &OrbRef) -> Result<FetchedOrb, OrbFetchError> {
        let versions = self.versions(&orb.namespace, &orb.name).map_err(|e| {
            OrbFetchError::Unavailable(format!(
                "cannot read the orb directory {}: {e}",
                self.dir.display()
            ))
        })?;
        let Some(chosen) = select_version(&orb.version, &versions) else {
            return Err(OrbFetchError::NotFound {
                available: versions.iter().map(|v| v.to_string()).collect(),
            });
        };
        let path = self.path_for(&orb.namespace, &orb.name, chosen);
        let source = fs::read_to_string(&path).map_err(|e| {
            OrbFetchError::Unavailable(format!("cannot read {}: {e}", path.display()))
        })?;
        Ok(FetchedOrb {
            version: chosen.to_string(),
            source: source.into(),
        })
    }

    fn import_hint(&self, orb: &OrbRef) -> String {
        format!(
            "the orb directory {} has no matching version; import it with `orrery orb import {} <orb.yml>` (packed orb YAML, e.g. from `circleci orb source {}`)",
            self.dir.display(),
            match &orb.version {
                orrery_config::orbs::VersionRequest::Exact(_)
                | orrery_config::orbs::VersionRequest::Dev(_) => orb.to_string(),
                _ => format!("{}@<x.y.z>", orb.full_name()),
            },
            orb
        )
    }
}
