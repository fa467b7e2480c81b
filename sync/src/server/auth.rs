//! Who may read and write what: bearer tokens mapped to principals, each allowed to read
//! and write a set of aggregate types. [`Tokens`] reads them from a small JSON file;
//! apps with their own sign-in implement [`Authenticate`].

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use axum::http::{HeaderMap, header};
use serde::Deserialize;

/// A set of aggregate types: all of them, or those named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeSet {
    /// Every aggregate type (`"*"` in a token file).
    All,
    /// Only these.
    Only(BTreeSet<String>),
}

impl TypeSet {
    /// The set of `names`; `"*"` among them means all.
    pub fn of<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Self {
        let mut only = BTreeSet::new();
        for name in names {
            if name.as_ref() == "*" {
                return TypeSet::All;
            }
            only.insert(name.as_ref().to_owned());
        }
        TypeSet::Only(only)
    }

    /// Whether `aggregate_type` is in the set.
    pub fn contains(&self, aggregate_type: &str) -> bool {
        match self {
            TypeSet::All => true,
            TypeSet::Only(names) => names.contains(aggregate_type),
        }
    }

    /// Whether the set holds no type.
    pub fn is_empty(&self) -> bool {
        matches!(self, TypeSet::Only(names) if names.is_empty())
    }

    /// The names, `["*"]` for all.
    pub fn names(&self) -> Vec<String> {
        match self {
            TypeSet::All => vec!["*".to_owned()],
            TypeSet::Only(names) => names.iter().cloned().collect(),
        }
    }
}

/// Who a request comes from and what it may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// A name for logs and `GET /info`.
    pub name: String,
    /// The aggregate types it may pull.
    pub read: TypeSet,
    /// The aggregate types it may push.
    pub write: TypeSet,
}

impl Principal {
    /// Anyone, reading and writing everything: a server without authentication.
    pub fn anyone() -> Self {
        Principal {
            name: "anyone".to_owned(),
            read: TypeSet::All,
            write: TypeSet::All,
        }
    }
}

/// Tells who a request comes from. `None`: nobody it knows (answered 401).
pub trait Authenticate: Send + Sync + 'static {
    /// The principal behind a request with these headers.
    fn authenticate(&self, headers: &HeaderMap) -> Option<Principal>;
}

/// No authentication: every request is [`Principal::anyone`]. Serve it on loopback only.
#[derive(Clone, Copy, Debug, Default)]
pub struct Anyone;

impl Authenticate for Anyone {
    fn authenticate(&self, _: &HeaderMap) -> Option<Principal> {
        Some(Principal::anyone())
    }
}

/// The bearer token of `Authorization: Bearer TOKEN`, if there is one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// The shortest token a token file takes: a guessable token is no protection.
pub const MIN_TOKEN_LEN: usize = 16;

/// Bearer tokens mapped to principals, e.g. from a JSON file:
///
/// ```json
/// {"principals": [
///   {"name": "alice", "tokens": ["…at least 16 characters…"], "read": ["Ledger"], "write": ["Ledger"]},
///   {"name": "auditor", "tokens": ["…"], "read": ["*"], "write": []}
/// ]}
/// ```
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    principals: HashMap<String, Principal>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    principals: Vec<PrincipalEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalEntry {
    name: String,
    tokens: Vec<String>,
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    write: Vec<String>,
}

impl Tokens {
    /// No tokens yet.
    pub fn new() -> Self {
        Tokens::default()
    }

    /// Accepts `token` for `principal`. Refuses a token shorter than [`MIN_TOKEN_LEN`]
    /// or one already given to another principal.
    pub fn insert(&mut self, token: &str, principal: Principal) -> Result<(), String> {
        if token.chars().count() < MIN_TOKEN_LEN || token.chars().any(char::is_whitespace) {
            return Err(format!(
                "a token of {:?} is too short or holds spaces: tokens are at least {MIN_TOKEN_LEN} characters, without spaces",
                principal.name
            ));
        }
        if let Some(other) = self.principals.get(token) {
            return Err(format!(
                "a token of {:?} is also a token of {:?}: each token names one principal",
                principal.name, other.name
            ));
        }
        self.principals.insert(token.to_owned(), principal);
        Ok(())
    }

    /// The tokens of a JSON token file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: TokenFile = serde_json::from_str(text).map_err(|error| error.to_string())?;
        let mut tokens = Tokens::new();
        for entry in file.principals {
            if entry.name.is_empty() {
                return Err("a principal has an empty name".to_owned());
            }
            if entry.tokens.is_empty() {
                return Err(format!("principal {:?} has no token", entry.name));
            }
            let principal = Principal {
                name: entry.name,
                read: TypeSet::of(&entry.read),
                write: TypeSet::of(&entry.write),
            };
            for token in &entry.tokens {
                tokens.insert(token, principal.clone())?;
            }
        }
        Ok(tokens)
    }

    /// The tokens of the JSON token file at `path`.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("reading {}: {error}", path.display()))?;
        Tokens::parse(&text).map_err(|error| format!("{}: {error}", path.display()))
    }

    /// How many tokens are accepted.
    pub fn len(&self) -> usize {
        self.principals.len()
    }

    /// Whether no token is accepted.
    pub fn is_empty(&self) -> bool {
        self.principals.is_empty()
    }
}

impl Authenticate for Tokens {
    fn authenticate(&self, headers: &HeaderMap) -> Option<Principal> {
        self.principals.get(bearer_token(headers)?).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::{Authenticate, Tokens, TypeSet};
    use axum::http::{HeaderMap, HeaderValue, header};

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
        headers.insert(header::AUTHORIZATION, value);
        headers
    }

    #[test]
    fn a_token_file_maps_tokens_to_principals() {
        let tokens = Tokens::parse(
            r#"{"principals": [
                {"name": "alice", "tokens": ["alice-token-0123456789"], "read": ["Ledger"], "write": ["Ledger"]},
                {"name": "auditor", "tokens": ["auditor-token-0123456789"], "read": ["*"]}
            ]}"#,
        )
        .expect("parse");
        let alice = tokens
            .authenticate(&bearer("alice-token-0123456789"))
            .expect("alice");
        assert!(alice.write.contains("Ledger") && !alice.write.contains("Account"));
        let auditor = tokens
            .authenticate(&bearer("auditor-token-0123456789"))
            .expect("auditor");
        assert_eq!(auditor.read, TypeSet::All);
        assert!(auditor.write.is_empty());
        assert!(
            tokens
                .authenticate(&bearer("someone-else-0123456789"))
                .is_none()
        );
        assert!(tokens.authenticate(&HeaderMap::new()).is_none());
    }

    #[test]
    fn weak_or_shared_tokens_are_refused() {
        let short = Tokens::parse(r#"{"principals": [{"name": "a", "tokens": ["short"]}]}"#);
        assert!(short.expect_err("short").contains("at least 16"));
        let shared = Tokens::parse(
            r#"{"principals": [{"name": "a", "tokens": ["same-token-0123456789"]},
                               {"name": "b", "tokens": ["same-token-0123456789"]}]}"#,
        );
        assert!(
            shared
                .expect_err("shared")
                .contains("each token names one principal")
        );
        let unknown = Tokens::parse(r#"{"principals": [], "admins": []}"#);
        assert!(unknown.expect_err("unknown field").contains("admins"));
    }
}
