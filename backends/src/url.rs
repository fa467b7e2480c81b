//! Engine URLs: one string names the engine and where its data lives.

use std::path::PathBuf;

use crate::error::OpenError;
use crate::options::{PostgresOptions, RedbDurability, SqliteSynchronous};

/// The URL forms [`crate::open`] accepts.
pub const ACCEPTED_URLS: &str = "memory:, sled:PATH, redb:PATH[?durability=immediate|none], \
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

/// A parsed engine URL.
#[derive(Clone, Debug, PartialEq, Eq)]
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
        /// When commits are durable.
        durability: RedbDurability,
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

impl EngineUrl {
    /// Parses `url`, naming what is wrong and the accepted forms when it is not valid.
    pub fn parse(url: &str) -> Result<Self, OpenError> {
        let malformed = |reason: String| OpenError::Malformed {
            url: url.to_owned(),
            reason,
        };
        let Some((scheme, rest)) = url.split_once(':') else {
            return Err(OpenError::UnknownScheme {
                url: url.to_owned(),
            });
        };
        match scheme {
            "memory" if rest.is_empty() || rest == "//" => Ok(EngineUrl::Memory),
            "memory" => Err(malformed("memory: takes no path".into())),
            "sled" => {
                let (path, params) = split_params(rest);
                reject_params(&params, &[]).map_err(malformed)?;
                Ok(EngineUrl::Sled {
                    path: file_path(path).map_err(malformed)?,
                })
            }
            "redb" => {
                let (path, params) = split_params(rest);
                reject_params(&params, &["durability"]).map_err(malformed)?;
                let durability = match param(&params, "durability") {
                    None | Some("immediate") => RedbDurability::Immediate,
                    Some("none") => RedbDurability::None,
                    Some(other) => {
                        return Err(malformed(format!(
                            "durability must be immediate or none, not {other:?}"
                        )));
                    }
                };
                Ok(EngineUrl::Redb {
                    path: file_path(path).map_err(malformed)?,
                    durability,
                })
            }
            "sqlite" => {
                let (path, params) = split_params(rest);
                reject_params(&params, &["synchronous"]).map_err(malformed)?;
                let synchronous = match param(&params, "synchronous") {
                    None | Some("full") => SqliteSynchronous::Full,
                    Some("normal") => SqliteSynchronous::Normal,
                    Some(other) => {
                        return Err(malformed(format!(
                            "synchronous must be full or normal, not {other:?}"
                        )));
                    }
                };
                let target = match path {
                    ":memory:" => SqliteTarget::Memory,
                    path => SqliteTarget::File(file_path(path).map_err(malformed)?),
                };
                Ok(EngineUrl::Sqlite {
                    target,
                    synchronous,
                })
            }
            "postgres" | "postgresql" => parse_postgres(url).map_err(malformed),
            _ => Err(OpenError::UnknownScheme {
                url: url.to_owned(),
            }),
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

fn split_params(rest: &str) -> (&str, Vec<(&str, &str)>) {
    match rest.split_once('?') {
        None => (rest, Vec::new()),
        Some((path, query)) => {
            let params = query
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
                .collect();
            (path, params)
        }
    }
}

fn param<'a>(params: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| *value)
}

fn reject_params(params: &[(&str, &str)], known: &[&str]) -> Result<(), String> {
    match params.iter().find(|(key, _)| !known.contains(key)) {
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

fn file_path(path: &str) -> Result<PathBuf, String> {
    let path = path.strip_prefix("//").unwrap_or(path);
    if path.is_empty() {
        Err("the path is missing".into())
    } else {
        Ok(PathBuf::from(path))
    }
}

fn parse_postgres(url: &str) -> Result<EngineUrl, String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let after_scheme = base.split_once("://").map(|(_, rest)| rest);
    match after_scheme {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => {}
        _ => return Err("expected postgres://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE".into()),
    }
    let mut options = PostgresOptions::default();
    let mut passed = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.split_once('=') {
            Some(("schema", value)) => options.schema = value.to_owned(),
            Some(("table", value)) => options.table = value.to_owned(),
            _ => passed.push(pair),
        }
    }
    PostgresOptions::validate_identifier(&options.schema)?;
    PostgresOptions::validate_identifier(&options.table)?;
    let url = if passed.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", passed.join("&"))
    };
    Ok(EngineUrl::Postgres { url, options })
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
                durability: RedbDurability::None
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
