//! Orb references and where orbs come from.
//!
//! The compiler asks an [`OrbSource`] for `namespace/name@version`; the source
//! answers with the exact version and the orb's YAML. Version requests follow the
//! registry: `1.2.3` exact, `1.2` and `1` the highest matching release,
//! `volatile` the highest release, `dev:label` a development version.
//! [`select_version`] implements the choice so that every source (a directory, a
//! database) picks the same way.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A release version `major.minor.patch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let mut parts = text.split('.');
        let major = parse_number(parts.next()?)?;
        let minor = parse_number(parts.next()?)?;
        let patch = parse_number(parts.next()?)?;
        if parts.next().is_some() {
            return None;
        }
        Some(Version {
            major,
            minor,
            patch,
        })
    }
}

fn parse_number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// What version of an orb a config asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum VersionRequest {
    Exact(Version),
    Minor(u64, u64),
    Major(u64),
    Volatile,
    Dev(String),
}

impl VersionRequest {
    pub fn parse(text: &str) -> Option<VersionRequest> {
        if text == "volatile" {
            return Some(VersionRequest::Volatile);
        }
        if let Some(label) = text.strip_prefix("dev:") {
            let ok = !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            return ok.then(|| VersionRequest::Dev(label.to_string()));
        }
        let parts: Vec<&str> = text.split('.').collect();
        match parts.as_slice() {
            [major] => Some(VersionRequest::Major(parse_number(major)?)),
            [major, minor] => Some(VersionRequest::Minor(
                parse_number(major)?,
                parse_number(minor)?,
            )),
            [_, _, _] => Some(VersionRequest::Exact(Version::parse(text)?)),
            _ => None,
        }
    }

    pub fn matches(&self, v: &Version) -> bool {
        match self {
            VersionRequest::Exact(e) => e == v,
            VersionRequest::Minor(major, minor) => v.major == *major && v.minor == *minor,
            VersionRequest::Major(major) => v.major == *major,
            VersionRequest::Volatile => true,
            VersionRequest::Dev(_) => false,
        }
    }
}

impl fmt::Display for VersionRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionRequest::Exact(v) => write!(f, "{v}"),
            VersionRequest::Minor(a, b) => write!(f, "{a}.{b}"),
            VersionRequest::Major(a) => write!(f, "{a}"),
            VersionRequest::Volatile => f.write_str("volatile"),
            VersionRequest::Dev(label) => write!(f, "dev:{label}"),
        }
    }
}

/// `namespace/name@version` as written in a config's `orbs:`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OrbRef {
    pub namespace: String,
    pub name: String,
    pub version: VersionRequest,
}

impl OrbRef {
    /// Parses `namespace/name@version`.
    pub fn parse(text: &str) -> Result<OrbRef, String> {
        let bad = || {
            format!(
                "invalid orb reference `{text}`: expected `namespace/name@version`, for example `circleci/node@5.1.0`"
            )
        };
        let (full, version) = text.split_once('@').ok_or_else(bad)?;
        let (namespace, name) = full.split_once('/').ok_or_else(bad)?;
        let ident = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        };
        if !ident(namespace) || !ident(name) {
            return Err(bad());
        }
        let version = VersionRequest::parse(version).ok_or_else(|| {
            format!(
                "invalid orb version `{version}` in `{text}`: use `1.2.3`, `1.2`, `1`, `volatile` or `dev:label`"
            )
        })?;
        Ok(OrbRef {
            namespace: namespace.to_string(),
            name: name.to_string(),
            version,
        })
    }

    /// `namespace/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl fmt::Display for OrbRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.namespace, self.name, self.version)
    }
}

/// An orb version that a source holds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AvailableVersion {
    Release(Version),
    Dev(String),
}

impl fmt::Display for AvailableVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AvailableVersion::Release(v) => write!(f, "{v}"),
            AvailableVersion::Dev(label) => write!(f, "dev:{label}"),
        }
    }
}

impl AvailableVersion {
    pub fn parse(text: &str) -> Option<AvailableVersion> {
        match VersionRequest::parse(text)? {
            VersionRequest::Exact(v) => Some(AvailableVersion::Release(v)),
            VersionRequest::Dev(label) => Some(AvailableVersion::Dev(label)),
            _ => None,
        }
    }
}

/// Picks the version a request resolves to: the highest matching release, or the
/// dev label itself.
pub fn select_version<'a>(
    request: &VersionRequest,
    available: impl IntoIterator<Item = &'a AvailableVersion>,
) -> Option<&'a AvailableVersion> {
    let mut best: Option<&AvailableVersion> = None;
    for candidate in available {
        let fits = match (request, candidate) {
            (VersionRequest::Dev(want), AvailableVersion::Dev(have)) => want == have,
            (_, AvailableVersion::Release(v)) => request.matches(v),
            _ => false,
        };
        if fits && best.is_none_or(|b| candidate.cmp(b) == Ordering::Greater) {
            best = Some(candidate);
        }
    }
    best
}

/// An orb as a source returns it.
#[derive(Clone, Debug)]
pub struct FetchedOrb {
    /// The exact version, `5.1.0` or `dev:alpha`.
    pub version: String,
    /// The packed orb YAML.
    pub source: Arc<str>,
}

/// Why an orb could not be fetched.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrbFetchError {
    /// No version of this orb matches; `available` lists the versions there are.
    #[error("not found")]
    NotFound { available: Vec<String> },
    #[error("{0}")]
    Unavailable(String),
}

/// Where the compiler gets registry orbs from.
pub trait OrbSource {
    fn fetch(&self, orb: &OrbRef) -> Result<FetchedOrb, OrbFetchError>;

    /// How a user makes a missing orb available, for error hints.
    fn import_hint(&self, orb: &OrbRef) -> String {
        format!("import it with `orrery orb import {orb} <orb.yml>`")
    }
}

/// A source with no orbs at all.
pub struct NoOrbs;

impl OrbSource for NoOrbs {
    fn fetch(&self, _orb: &OrbRef) -> Result<FetchedOrb, OrbFetchError> {
        Err(OrbFetchError::NotFound {
            available: Vec::new(),
        })
    }
}

/// Orbs held in memory: for tests, and for sources that load everything at once.
#[derive(Default, Clone)]
pub struct OrbRegistry {
    orbs: BTreeMap<String, BTreeMap<AvailableVersion, Arc<str>>>,
}

impl OrbRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `namespace/name` at `version` (`1.2.3` or `dev:label`).
    pub fn add(
        &mut self,
        full_name: &str,
        version: &str,
        source: impl Into<Arc<str>>,
    ) -> Result<(), String> {
        let v = AvailableVersion::parse(version)
            .ok_or_else(|| format!("`{version}` is not an orb version (1.2.3 or dev:label)"))?;
        self.orbs
            .entry(full_name.to_string())
            .or_default()
            .insert(v, source.into());
        Ok(())
    }
}

impl OrbSource for OrbRegistry {
    fn fetch(&self, orb: &OrbRef) -> Result<FetchedOrb, OrbFetchError> {
        let Some(versions) = self.orbs.get(&orb.full_name()) else {
            return Err(OrbFetchError::NotFound {
                available: Vec::new(),
            });
        };
        match select_version(&orb.version, versions.keys()) {
            Some(v) => Ok(FetchedOrb {
                version: v.to_string(),
                source: versions[v].clone(),
            }),
            None => Err(OrbFetchError::NotFound {
                available: versions.keys().map(|v| v.to_string()).collect(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r = OrbRef::parse("circleci/node@5.1").unwrap();
        assert_eq!(r.version, VersionRequest::Minor(5, 1));
        assert_eq!(r.to_string(), "circleci/node@5.1");
        assert!(OrbRef::parse("circleci/node").is_err());
        assert!(OrbRef::parse("node@1.0.0").is_err());
        assert!(OrbRef::parse("circleci/node@1.x").is_err());
        assert_eq!(
            OrbRef::parse("circleci/kubernetes@dev:alpha")
                .unwrap()
                .version,
            VersionRequest::Dev("alpha".into())
        );
    }

    #[test]
    fn selects_highest_match() {
        let have: Vec<AvailableVersion> = ["1.0.0", "1.2.0", "1.2.7", "1.10.1", "2.0.0", "dev:x"]
            .iter()
            .map(|v| AvailableVersion::parse(v).unwrap())
            .collect();
        let pick = |req: &str| {
            select_version(&VersionRequest::parse(req).unwrap(), &have).map(|v| v.to_string())
        };
        assert_eq!(pick("1").as_deref(), Some("1.10.1"));
        assert_eq!(pick("1.2").as_deref(), Some("1.2.7"));
        assert_eq!(pick("1.2.0").as_deref(), Some("1.2.0"));
        assert_eq!(pick("volatile").as_deref(), Some("2.0.0"));
        assert_eq!(pick("dev:x").as_deref(), Some("dev:x"));
        assert_eq!(pick("3"), None);
    }
}
