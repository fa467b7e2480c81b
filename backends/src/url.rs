//! Engine URLs: one string names the engine and where its data lives.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eventkv::{ContextError, DynKv};
use percent_encoding::percent_decode_str;
use url::Url;

use crate::engines::{Engine, Target, by_scheme};
use crate::error::OpenError;

/// Where a store's data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// In this process's memory: each opening is a new, empty store.
    Memory,
    /// A file or directory.
    Path(PathBuf),
    /// A table on a database server.
    Table {
        /// The server's URL, its password hidden.
        server: String,
        /// The schema.
        schema: String,
        /// The table.
        table: String,
    },
    /// A key prefix on a cluster.
    Prefix {
        /// The cluster's members.
        endpoints: String,
        /// The prefix.
        prefix: String,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Memory => f.write_str("memory"),
            Location::Path(path) => write!(f, "{}", path.display()),
            Location::Table {
                server,
                schema,
                table,
            } => write!(f, "the table {schema}.{table} of {server}"),
            Location::Prefix { endpoints, prefix } => {
                write!(f, "the prefix {prefix:?} of the cluster {endpoints}")
            }
        }
    }
}

/// A parsed engine URL: which engine, and the store it points at. Its `Debug` hides a
/// password.
#[derive(Clone)]
pub struct EngineUrl {
    engine: &'static Engine,
    target: Arc<dyn Target>,
}

impl fmt::Debug for EngineUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.target, f)
    }
}

impl EngineUrl {
    /// Parses `url`, naming what is wrong and the accepted forms when it is not valid.
    /// Paths and parameters are percent-decoded (`%3F` for a `?` in a path). An engine
    /// whose feature is off is [`OpenError::FeatureDisabled`].
    pub fn parse(url: &str) -> Result<Self, OpenError> {
        let malformed = |reason: String| OpenError::Malformed {
            url: redact(url),
            reason,
        };
        let unknown = || OpenError::UnknownScheme { url: redact(url) };
        let scheme = url.split_once(':').map(|(scheme, _)| scheme);
        let engine = scheme.and_then(by_scheme).ok_or_else(unknown)?;
        let Some(parts) = engine.parts else {
            return Err(OpenError::FeatureDisabled {
                engine: engine.name,
                feature: engine.name,
            });
        };
        let target = (parts.parse)(url).map_err(malformed)?;
        Ok(EngineUrl {
            engine,
            target: Arc::from(target),
        })
    }

    /// Where the store's data lives.
    pub fn location(&self) -> Location {
        self.target.location()
    }

    /// The engine's name, which is also the name of its cargo feature.
    pub fn engine(&self) -> &'static str {
        self.engine.name
    }

    /// The engine, in the list of engines.
    pub fn engine_entry(&self) -> &'static Engine {
        self.engine
    }

    /// Opens the store, creating it if it is not there.
    pub(crate) async fn open(&self) -> Result<DynKv, OpenError> {
        tracing::debug!(engine = self.engine.name, "opening engine");
        self.target.open(false).await
    }

    /// Opens the store, which must exist: nothing is created.
    pub(crate) async fn open_existing(&self) -> Result<DynKv, OpenError> {
        if let Location::Path(path) = self.location()
            && !path.exists()
        {
            return Err(OpenError::Missing {
                engine: self.engine.name,
                location: path.display().to_string(),
            });
        }
        tracing::debug!(engine = self.engine.name, "opening existing store");
        self.target.open(true).await
    }

    /// Removes the store and everything in it.
    pub(crate) async fn destroy(&self) -> Result<(), OpenError> {
        self.target.destroy().await
    }
}

/// `url` with its password (in the user info or a `password` parameter) replaced by
/// `***`: what errors, logs and `Debug` may show.
pub fn redact(url: &str) -> String {
    let Ok(mut parsed) = Url::parse(url) else {
        return redact_unparsed(url);
    };
    if parsed.password().is_some() {
        // Only URLs with a host have a password, and those accept a new one.
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query_pairs().any(|(key, _)| key == "password") {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if key == "password" {
                    "***".into()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// For a string the URL parser refuses: hides whatever stands between `user:` and `@`.
fn redact_unparsed(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        _ => url.to_owned(),
    }
}

/// `text` as a URL, or why it is not one.
pub(crate) fn parse_url(text: &str) -> Result<Url, String> {
    Url::parse(text).map_err(|error| error.to_string())
}

/// The decoded query parameters of a URL.
pub(crate) struct Params(pub(crate) Vec<(String, String)>);

impl Params {
    pub(crate) fn of(url: &Url) -> Self {
        Params(
            url.query_pairs()
                .map(|(key, value)| (key.into_owned(), value.into_owned()))
                .collect(),
        )
    }

    /// The last value of `name`.
    #[allow(
        dead_code,
        reason = "a helper of the engines, any of which may be compiled out"
    )]
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Refuses parameters not in `known`.
    pub(crate) fn only(&self, known: &[&str]) -> Result<(), String> {
        match self
            .0
            .iter()
            .find(|(key, _)| !known.contains(&key.as_str()))
        {
            None => Ok(()),
            Some((key, _)) if known.is_empty() => Err(format!(
                "unknown parameter {key:?} (this engine takes none)"
            )),
            Some((key, _)) => Err(format!(
                "unknown parameter {key:?} (known: {})",
                known.join(", ")
            )),
        }
    }
}

/// The file path of `sled:PATH`, `redb:PATH` or `sqlite:PATH` (also `sqlite:///PATH`),
/// percent-decoded.
#[allow(
    dead_code,
    reason = "a helper of the engines, any of which may be compiled out"
)]
pub(crate) fn file_path(url: &Url) -> Result<PathBuf, String> {
    if url.has_host() && url.host_str() != Some("") {
        return Err(format!(
            "a file path has no host: write {0}:/absolute/path or {0}:relative/path",
            url.scheme()
        ));
    }
    let path = percent_decode_str(url.path())
        .decode_utf8()
        .map_err(|_| "the path is not UTF-8 once percent-decoded".to_owned())?;
    if path.is_empty() {
        Err("the path is missing".into())
    } else {
        Ok(PathBuf::from(path.as_ref()))
    }
}

/// Removes the file or directory of a store, if it is there.
#[allow(
    dead_code,
    reason = "a helper of the engines, any of which may be compiled out"
)]
pub(crate) fn remove_path(engine: &'static str, path: &Path) -> Result<(), OpenError> {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match removed {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(OpenError::engine(
            engine,
            eventkv::ErrorKind::Unexpected,
            ContextError::new(format!("removing {}", path.display()), error),
        )),
        _ => Ok(()),
    }
}

/// Checks that `parse` refuses each URL with a reason holding its needle.
#[cfg(test)]
#[allow(
    dead_code,
    reason = "a helper of the engines' tests, any of which may be compiled out"
)]
pub(crate) fn assert_refused<T: fmt::Debug>(
    parse: impl Fn(&str) -> Result<T, String>,
    cases: &[(&str, &str)],
) {
    for (url, needle) in cases {
        let reason = parse(url).expect_err(url);
        assert!(reason.contains(needle), "{url}: {reason}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_compiled_out_schemes_are_named() {
        for url in ["mongodb://x", "no-scheme", ""] {
            let error = EngineUrl::parse(url).expect_err(url);
            assert!(
                matches!(error, OpenError::UnknownScheme { .. }),
                "{url}: {error}"
            );
            assert!(
                error.to_string().contains("memory:"),
                "{url}: lists the forms: {error}"
            );
        }
        let error = EngineUrl::parse("memory:/x").expect_err("memory takes no path");
        assert!(
            error.to_string().contains("memory: takes no path"),
            "{error}"
        );
    }

    #[test]
    fn passwords_never_leave_in_errors() {
        let encoded = "pa55%3Aw%40rd";
        for bad in [
            format!("unknown://app:{encoded}@db/x"),
            format!("unknown://app:{encoded}@[::1/x"),
        ] {
            let error = EngineUrl::parse(&bad).expect_err(&bad);
            for text in [error.to_string(), format!("{error:?}")] {
                assert!(!text.contains(encoded), "{bad}: {text}");
                assert!(text.contains("app:***@"), "{bad}: {text}");
            }
        }
        assert_eq!(
            redact("postgres://u@h/d?password=x&sslmode=disable"),
            "postgres://u@h/d?password=***&sslmode=disable"
        );
    }

    #[test]
    fn query_parameters_outside_the_known_ones_are_named() {
        let url = Url::parse("x:y?a=1&b=2").expect("url");
        let params = Params::of(&url);
        assert_eq!(params.get("b"), Some("2"));
        let message = params.only(&["a"]).expect_err("b is unknown");
        assert!(
            message.contains("\"b\"") && message.contains("known: a"),
            "{message}"
        );
        let message = params.only(&[]).expect_err("none known");
        assert!(message.contains("takes none"), "{message}");
    }
}
