//! Engine URLs: one string names the engine and where its data lives.

use std::fmt;
use std::path::PathBuf;

use percent_encoding::percent_decode_str;
use url::Url;

use crate::error::OpenError;
use crate::options::{PostgresOptions, RedbDurability, RedbOptions, SqliteSynchronous};

/// The URL forms [`crate::open`] accepts.
pub const ACCEPTED_URLS: &str = "memory:, sled:PATH, redb:PATH[?durability=immediate|none&cache_mib=N], \
     sqlite:PATH[?synchronous=full|normal], sqlite::memory:, \
     postgres://USER@HOST:PORT/DB[?schema=NAME&table=NAME] (or postgresql://)";

/// Where an SQLite database lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SqliteTarget {
    /// A private in-memory database.
    Memory,
    /// A file.
    File(PathBuf),
}

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
        }
    }
}

/// A parsed engine URL. Its `Debug` hides a PostgreSQL password.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineUrl {
    /// `memory:`
    Memory,
    /// `sled:PATH`
    Sled {
        /// The database directory.
        path: PathBuf,
    },
    /// `redb:PATH`
    Redb {
        /// The database file.
        path: PathBuf,
        /// Durability and cache size.
        options: RedbOptions,
    },
    /// `sqlite:PATH` or `sqlite::memory:`
    Sqlite {
        /// The database.
        target: SqliteTarget,
        /// The `synchronous` pragma.
        synchronous: SqliteSynchronous,
    },
    /// `postgres://…` or `postgresql://…`
    Postgres {
        /// The connection URL, without eventkv's own parameters.
        url: String,
        /// Schema and table.
        options: PostgresOptions,
    },
}

impl fmt::Debug for EngineUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineUrl::Memory => f.write_str("Memory"),
            EngineUrl::Sled { path } => f.debug_struct("Sled").field("path", path).finish(),
            EngineUrl::Redb { path, options } => f
                .debug_struct("Redb")
                .field("path", path)
                .field("options", options)
                .finish(),
            EngineUrl::Sqlite {
                target,
                synchronous,
            } => f
                .debug_struct("Sqlite")
                .field("target", target)
                .field("synchronous", synchronous)
                .finish(),
            EngineUrl::Postgres { url, options } => f
                .debug_struct("Postgres")
                .field("url", &redact(url))
                .field("options", options)
                .finish(),
        }
    }
}

impl EngineUrl {
    /// Parses `url`, naming what is wrong and the accepted forms when it is not valid.
    /// Paths and parameters are percent-decoded (`%3F` for a `?` in a path).
    pub fn parse(url: &str) -> Result<Self, OpenError> {
        let malformed = |reason: String| OpenError::Malformed {
            url: redact(url),
            reason,
        };
        let parsed = match Url::parse(url) {
            Ok(parsed) => parsed,
            Err(url::ParseError::RelativeUrlWithoutBase) => {
                return Err(OpenError::UnknownScheme { url: redact(url) });
            }
            Err(error) => {
                return match url.split_once(':').map(|(scheme, _)| scheme) {
                    Some("memory" | "sled" | "redb" | "sqlite" | "postgres" | "postgresql") => {
                        Err(malformed(error.to_string()))
                    }
                    _ => Err(OpenError::UnknownScheme { url: redact(url) }),
                };
            }
        };
        let params = Params::of(&parsed);
        match parsed.scheme() {
            "memory" if parsed.path().is_empty() && !parsed.has_host() => {
                params.only(&[]).map_err(malformed)?;
                Ok(EngineUrl::Memory)
            }
            "memory" => Err(malformed("memory: takes no path".into())),
            "sled" => {
                params.only(&[]).map_err(malformed)?;
                Ok(EngineUrl::Sled {
                    path: file_path(&parsed).map_err(malformed)?,
                })
            }
            "redb" => {
                params
                    .only(&["durability", "cache_mib"])
                    .map_err(malformed)?;
                let durability = match params.get("durability") {
                    None | Some("immediate") => RedbDurability::Immediate,
                    Some("none") => RedbDurability::None,
                    Some(other) => {
                        return Err(malformed(format!(
                            "durability must be immediate or none, not {other:?}"
                        )));
                    }
                };
                let cache_mib = match params.get("cache_mib") {
                    None => RedbOptions::DEFAULT_CACHE_MIB,
                    Some(mib) => mib.parse().ok().filter(|&mib| mib > 0).ok_or_else(|| {
                        malformed(format!(
                            "cache_mib must be a whole number of MiB above 0, not {mib:?}"
                        ))
                    })?,
                };
                Ok(EngineUrl::Redb {
                    path: file_path(&parsed).map_err(malformed)?,
                    options: RedbOptions {
                        durability,
                        cache_mib,
                    },
                })
            }
            "sqlite" => {
                params.only(&["synchronous"]).map_err(malformed)?;
                let synchronous = match params.get("synchronous") {
                    None | Some("full") => SqliteSynchronous::Full,
                    Some("normal") => SqliteSynchronous::Normal,
                    Some(other) => {
                        return Err(malformed(format!(
                            "synchronous must be full or normal, not {other:?}"
                        )));
                    }
                };
                let target = match parsed.path() {
                    ":memory:" if !parsed.has_host() => SqliteTarget::Memory,
                    _ => SqliteTarget::File(file_path(&parsed).map_err(malformed)?),
                };
                Ok(EngineUrl::Sqlite {
                    target,
                    synchronous,
                })
            }
            "postgres" | "postgresql" => parse_postgres(parsed, &params).map_err(malformed),
            _ => Err(OpenError::UnknownScheme { url: redact(url) }),
        }
    }

    /// Where the store's data lives.
    pub fn location(&self) -> Location {
        match self {
            EngineUrl::Memory
            | EngineUrl::Sqlite {
                target: SqliteTarget::Memory,
                ..
            } => Location::Memory,
            EngineUrl::Sled { path }
            | EngineUrl::Redb { path, .. }
            | EngineUrl::Sqlite {
                target: SqliteTarget::File(path),
                ..
            } => Location::Path(path.clone()),
            EngineUrl::Postgres { url, options } => Location::Table {
                server: redact(url),
                schema: options.schema.clone(),
                table: options.table.clone(),
            },
        }
    }

    /// Whether this build has the engine (its cargo feature is on).
    pub fn is_compiled_in(&self) -> bool {
        match self {
            EngineUrl::Memory => true,
            EngineUrl::Sled { .. } => cfg!(feature = "sled"),
            EngineUrl::Redb { .. } => cfg!(feature = "redb"),
            EngineUrl::Sqlite { .. } => cfg!(feature = "sqlite"),
            EngineUrl::Postgres { .. } => cfg!(feature = "postgres"),
        }
    }

    /// The engine's name, which is also the name of its cargo feature.
    pub fn engine(&self) -> &'static str {
        match self {
            EngineUrl::Memory => "memory",
            EngineUrl::Sled { .. } => "sled",
            EngineUrl::Redb { .. } => "redb",
            EngineUrl::Sqlite { .. } => "sqlite",
            EngineUrl::Postgres { .. } => "postgres",
        }
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

/// The decoded query parameters of a URL.
struct Params(Vec<(String, String)>);

impl Params {
    fn of(url: &Url) -> Self {
        Params(
            url.query_pairs()
                .map(|(key, value)| (key.into_owned(), value.into_owned()))
                .collect(),
        )
    }

    /// The last value of `name`.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Refuses parameters not in `known`.
    fn only(&self, known: &[&str]) -> Result<(), String> {
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
fn file_path(url: &Url) -> Result<PathBuf, String> {
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

fn parse_postgres(mut url: Url, params: &Params) -> Result<EngineUrl, String> {
    if !url.has_host() || url.host_str() == Some("") {
        return Err("expected postgres://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE".into());
    }
    let mut options = PostgresOptions::default();
    if let Some(schema) = params.get("schema") {
        schema.clone_into(&mut options.schema);
    }
    if let Some(table) = params.get("table") {
        table.clone_into(&mut options.table);
    }
    PostgresOptions::validate_identifier(&options.schema)?;
    PostgresOptions::validate_identifier(&options.table)?;
    let passed: Vec<&(String, String)> = params
        .0
        .iter()
        .filter(|(key, _)| key != "schema" && key != "table")
        .collect();
    if passed.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(passed);
    }
    Ok(EngineUrl::Postgres {
        url: url.to_string(),
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms_parse() {
        assert_eq!(EngineUrl::parse("memory:").ok(), Some(EngineUrl::Memory));
        assert_eq!(
            EngineUrl::parse("sled:/var/lib/app/events").ok(),
            Some(EngineUrl::Sled {
                path: "/var/lib/app/events".into()
            })
        );
        assert_eq!(
            EngineUrl::parse("redb:data.redb?durability=none").ok(),
            Some(EngineUrl::Redb {
                path: "data.redb".into(),
                options: RedbOptions {
                    durability: RedbDurability::None,
                    cache_mib: RedbOptions::DEFAULT_CACHE_MIB
                }
            })
        );
        assert_eq!(
            EngineUrl::parse("sqlite::memory:").ok(),
            Some(EngineUrl::Sqlite {
                target: SqliteTarget::Memory,
                synchronous: SqliteSynchronous::Full
            })
        );
        assert_eq!(
            EngineUrl::parse("sqlite:///tmp/x.db?synchronous=normal").ok(),
            Some(EngineUrl::Sqlite {
                target: SqliteTarget::File("/tmp/x.db".into()),
                synchronous: SqliteSynchronous::Normal
            })
        );
        let Ok(EngineUrl::Postgres { url, options }) = EngineUrl::parse(
            "postgresql://postgres@127.0.0.1:5432/test?schema=app&sslmode=disable&table=kv",
        ) else {
            panic!("postgres URL must parse");
        };
        assert_eq!(
            url,
            "postgresql://postgres@127.0.0.1:5432/test?sslmode=disable"
        );
        assert_eq!(
            (options.schema.as_str(), options.table.as_str()),
            ("app", "kv")
        );
    }

    #[test]
    fn passwords_never_leave_in_errors_or_debug() {
        let secret = "pa55:w@rd";
        let encoded = "pa55%3Aw%40rd";
        let url = format!("postgres://app:{encoded}@db.internal:5432/events?schema=app");
        let parsed = EngineUrl::parse(&url).expect("parses");
        let shown = format!("{parsed:?}");
        assert!(
            !shown.contains(encoded) && !shown.contains(secret),
            "{shown}"
        );
        assert!(
            shown.contains("postgres://app:***@db.internal:5432/events"),
            "{shown}"
        );
        let EngineUrl::Postgres { url: connect, .. } = parsed else {
            panic!("postgres");
        };
        assert!(
            connect.contains(encoded),
            "the connection keeps its password"
        );
        for bad in [
            format!("postgres://app:{encoded}@db/x?table=bad-name"),
            format!("postgres://app:{encoded}@db/x?password=other&schema=1x"),
            format!("postgres://app:{encoded}@[::1/x"),
        ] {
            let message = EngineUrl::parse(&bad).expect_err(&bad).to_string();
            let debug = format!("{:?}", EngineUrl::parse(&bad).expect_err(&bad));
            for text in [&message, &debug] {
                assert!(
                    !text.contains(encoded) && !text.contains("other"),
                    "{bad}: {text}"
                );
                assert!(text.contains("app:***@"), "{bad}: {text}");
            }
        }
        assert_eq!(
            redact("postgres://u@h/d?password=x&sslmode=disable"),
            "postgres://u@h/d?password=***&sslmode=disable"
        );
    }

    #[test]
    fn paths_are_percent_decoded() {
        assert_eq!(
            EngineUrl::parse("redb:/data/what%3F%20now.redb").ok(),
            Some(EngineUrl::Redb {
                path: "/data/what? now.redb".into(),
                options: RedbOptions::default()
            })
        );
        assert_eq!(
            EngineUrl::parse("sled:relative/dir").ok(),
            Some(EngineUrl::Sled {
                path: "relative/dir".into()
            })
        );
    }

    #[test]
    fn bad_urls_name_the_problem_and_the_accepted_forms() {
        for (url, needle) in [
            ("mongodb://x", "unknown engine URL"),
            ("no-scheme", "unknown engine URL"),
            ("redb:", "the path is missing"),
            (
                "redb:x?durability=sometimes",
                "durability must be immediate or none",
            ),
            ("sled:x?cache=1", "unknown parameter \"cache\""),
            ("sqlite:x?journal=wal", "unknown parameter \"journal\""),
            ("postgres://", "expected postgres://"),
            ("sled://host/x", "a file path has no host"),
            ("redb:x?cache_mib=0", "cache_mib must be a whole number"),
            (
                "postgres://h/db?table=bad-name",
                "not a valid schema or table name",
            ),
            ("memory:/x", "memory: takes no path"),
        ] {
            let message = EngineUrl::parse(url).expect_err(url).to_string();
            assert!(message.contains(needle), "{url}: {message}");
            assert!(
                message.contains("sled:PATH"),
                "{url}: lists the accepted forms: {message}"
            );
        }
    }
}
