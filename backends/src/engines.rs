//! The list of engines: the one place a new engine is named. The URL parser, [`open`],
//! [`open_existing`], the `eventkv` command, the benchmark harness and the conformance
//! tests all read it.
//!
//! [`open`]: crate::open
//! [`open_existing`]: crate::open_existing

use std::fmt;

use eventkv::DynKv;
use eventkv::raw::BoxFuture;

use crate::error::OpenError;
use crate::url::Location;

/// Calls the macro `$then` with the list of engines that have a cargo feature, one line
/// each: `"feature" => module ["scheme", …]`. The feature is also the engine's name and
/// `module` its one file in `backends/src`. For code written once per engine, such as the
/// conformance tests:
///
/// ```ignore
/// macro_rules! per_engine {
///     ($($feature:literal => $module:ident [$($scheme:literal),+]),+ $(,)?) => {
///         $(#[cfg(feature = $feature)] mod $module { /* … */ })+
///     };
/// }
/// eventkv_backends::engines!(per_engine);
/// ```
#[macro_export]
macro_rules! engines {
    ($then:ident) => {
        $then! {
            "sled" => sled ["sled"],
            "redb" => redb ["redb"],
            "sqlite" => sqlite ["sqlite"],
            "postgres" => postgres ["postgres", "postgresql"],
            "etcd" => etcd ["etcd"],
        }
    };
}

/// The modules and re-exports of the engines compiled in, and [`ENGINES`].
macro_rules! declare_engines {
    ($($feature:literal => $module:ident [$($scheme:literal),+]),+ $(,)?) => {
        $(
            #[cfg(feature = $feature)]
            mod $module;
            #[cfg(feature = $feature)]
            pub use $module::*;
        )+

        /// Every engine eventkv knows, compiled in or not, `memory` first.
        pub static ENGINES: &[Engine] = &[
            Engine { name: "memory", schemes: &["memory"], parts: Some(crate::memory::ENTRY) },
            $({
                #[cfg(feature = $feature)]
                let parts = Some(crate::$module::ENTRY);
                #[cfg(not(feature = $feature))]
                let parts = None;
                Engine { name: $feature, schemes: &[$($scheme),+], parts }
            }),+
        ];
    };
}

pub(crate) use declare_engines;

/// One engine of the list.
pub struct Engine {
    /// Its name, which is also the name of its cargo feature.
    pub name: &'static str,
    /// The URL schemes that name it.
    pub schemes: &'static [&'static str],
    /// What its file provides; `None` when its feature is off in this build.
    pub(crate) parts: Option<EngineParts>,
}

/// What an engine's file provides to the list.
#[derive(Clone, Copy)]
pub(crate) struct EngineParts {
    /// The URL forms it accepts, for errors and help.
    pub forms: &'static str,
    /// Parses a URL of one of its schemes (query parameters included).
    pub parse: fn(&str) -> Result<Box<dyn Target>, String>,
    /// Where scratch stores of it live, for tests and benchmarks.
    pub scratch: Scratch,
    /// Whether two processes may use one store at once.
    pub shared_by_processes: bool,
}

/// Where an engine's scratch stores live: new, empty stores for tests and benchmarks.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Scratch {
    /// In memory: `url` is the store's URL.
    Memory {
        /// The URL.
        url: &'static str,
    },
    /// A file or directory: `url(directory, unique)` names one in `directory`.
    Path {
        /// The URL of a store named `unique` in a directory.
        url: fn(&str, &str) -> String,
    },
    /// On a server: `url(server, unique)` names a store of its own there.
    Server {
        /// The environment variable that names the server for tests and benchmarks.
        var: &'static str,
        /// The server when the variable is not set.
        default: &'static str,
        /// The URL of a store named `unique` on the server.
        url: fn(&str, &str) -> String,
    },
}

/// What a parsed URL points at: one engine's store.
pub(crate) trait Target: fmt::Debug + Send + Sync {
    /// Where the store's data lives.
    fn location(&self) -> Location;
    /// Opens the store, creating it unless `existing` (then a store that is not there is
    /// [`OpenError::Missing`]; file stores are checked before this is called).
    fn open(&self, existing: bool) -> BoxFuture<'_, Result<DynKv, OpenError>>;
    /// Removes the store and everything in it.
    fn destroy(&self) -> BoxFuture<'_, Result<(), OpenError>>;
}

impl Engine {
    /// Whether this build has the engine (its cargo feature is on).
    pub fn is_compiled_in(&self) -> bool {
        self.parts.is_some()
    }

    /// The URL forms it accepts; `None` when it is compiled out.
    pub fn forms(&self) -> Option<&'static str> {
        self.parts.map(|parts| parts.forms)
    }

    /// Where its scratch stores live; `None` when it is compiled out.
    pub fn scratch(&self) -> Option<Scratch> {
        self.parts.map(|parts| parts.scratch)
    }

    /// Whether two processes may use one of its stores at once (`false` when compiled out).
    pub fn is_shared_by_processes(&self) -> bool {
        self.parts.is_some_and(|parts| parts.shared_by_processes)
    }

    /// The URL of a new scratch store named `unique` (letters, digits and `_`): in
    /// `directory` for file engines, on `server` (or the server its variable names, else
    /// its default) for server engines. `None` when it is compiled out.
    pub fn scratch_url(
        &self,
        directory: &str,
        server: Option<&str>,
        unique: &str,
    ) -> Option<String> {
        Some(match self.scratch()? {
            Scratch::Memory { url } => url.to_owned(),
            Scratch::Path { url } => url(directory, unique),
            Scratch::Server { var, default, url } => match server {
                Some(server) => url(server, unique),
                None => url(
                    &std::env::var(var).unwrap_or_else(|_| default.to_owned()),
                    unique,
                ),
            },
        })
    }
}

impl Engine {
    /// A new scratch store named `unique`, ready for a test or a benchmark: its URL
    /// ([`scratch_url`](Self::scratch_url), on the server its variable names), once a
    /// server engine's server answered within 10 s (the store it opened to find out is
    /// removed again); `Err` says why it did not. `None` when the engine is compiled out.
    pub async fn scratch_store(
        &self,
        directory: &str,
        unique: &str,
    ) -> Option<Result<String, String>> {
        let url = self.scratch_url(directory, None, unique)?;
        if !matches!(self.scratch(), Some(Scratch::Server { .. })) {
            return Some(Ok(url));
        }
        let opened =
            tokio::time::timeout(std::time::Duration::from_secs(10), crate::open(&url)).await;
        Some(match opened {
            Ok(Ok(_)) => crate::destroy(&url)
                .await
                .map(|()| url)
                .map_err(|error| error.to_string()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("no answer within 10 s".to_owned()),
        })
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("name", &self.name)
            .field("compiled_in", &self.is_compiled_in())
            .finish_non_exhaustive()
    }
}

/// The engine named `name` (its feature name), compiled in or not.
pub fn engine(name: &str) -> Option<&'static Engine> {
    crate::ENGINES.iter().find(|engine| engine.name == name)
}

/// The engine a URL scheme names.
pub(crate) fn by_scheme(scheme: &str) -> Option<&'static Engine> {
    crate::ENGINES
        .iter()
        .find(|engine| engine.schemes.contains(&scheme))
}

/// The URL forms this build accepts, and the engines it leaves out: for errors and help.
pub fn accepted_urls() -> String {
    let forms: Vec<&str> = crate::ENGINES.iter().filter_map(Engine::forms).collect();
    let out: Vec<&str> = crate::ENGINES
        .iter()
        .filter(|engine| !engine.is_compiled_in())
        .map(|engine| engine.name)
        .collect();
    if out.is_empty() {
        forms.join(", ")
    } else {
        format!("{} (not compiled in: {})", forms.join(", "), out.join(", "))
    }
}
