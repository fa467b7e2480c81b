//! [`WriteBatch`]: puts, deletes and checks applied all together or not at all.

use std::collections::BTreeMap;

use bytes::Bytes;

/// A precondition of a batch, evaluated against the state before the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// The key has no value.
    Absent,
    /// The key has a value.
    Present,
    /// The key's value equals this one.
    Equals(Bytes),
}

impl Check {
    /// Whether the check holds for a key whose current value is `current`.
    pub fn holds(&self, current: Option<&[u8]>) -> bool {
        match (self, current) {
            (Check::Absent, current) => current.is_none(),
            (Check::Present, current) => current.is_some(),
            (Check::Equals(expected), Some(current)) => &expected[..] == current,
            (Check::Equals(_), None) => false,
        }
    }
}

/// One operation of a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
    },
    /// Remove `key` (no error if it has no value).
    Delete {
        /// The key.
        key: Bytes,
    },
}

/// Puts, deletes and checks applied all together or not at all.
///
/// Every check is evaluated against the state before the batch, in the order the checks
/// were added; the first that fails rejects the batch with [`KvError::Conflict`](super::KvError::Conflict) naming
/// its key. Mutations are applied in order, so a later one on the same key wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    checks: Vec<(Bytes, Check)>,
    mutations: Vec<Mutation>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> &mut Self {
        self.mutations.push(Mutation::Put {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: impl Into<Bytes>) -> &mut Self {
        self.mutations.push(Mutation::Delete { key: key.into() });
        self
    }

    /// Adds a precondition on `key`.
    pub fn check(&mut self, key: impl Into<Bytes>, check: Check) -> &mut Self {
        self.checks.push((key.into(), check));
        self
    }

    /// The preconditions, in the order they are evaluated.
    pub fn checks(&self) -> &[(Bytes, Check)] {
        &self.checks
    }

    /// The puts and deletes, in the order they are applied.
    pub fn mutations(&self) -> &[Mutation] {
        &self.mutations
    }

    /// Splits the batch into its checks and its mutations.
    pub fn into_parts(self) -> (Vec<(Bytes, Check)>, Vec<Mutation>) {
        (self.checks, self.mutations)
    }

    /// Adds the checks and then the mutations of `other` after this batch's own.
    pub fn extend(&mut self, other: WriteBatch) -> &mut Self {
        self.checks.extend(other.checks);
        self.mutations.extend(other.mutations);
        self
    }

    /// Whether the batch has neither checks nor mutations.
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty() && self.mutations.is_empty()
    }
}

/// A batch's mutations reduced to the last one per key: disjoint upserts and deletes, so
/// an engine may apply them in any order (e.g. as multi-row statements).
pub struct FinalMutations {
    /// The keys to set, with their final values, in key order.
    pub upserts: Vec<(Bytes, Bytes)>,
    /// The keys to remove, in key order.
    pub deletes: Vec<Bytes>,
}

impl FinalMutations {
    /// Reduces `mutations` (in batch order) to the last one per key.
    pub fn new(mutations: Vec<Mutation>) -> Self {
        let mut last: BTreeMap<Bytes, Option<Bytes>> = BTreeMap::new();
        for mutation in mutations {
            match mutation {
                Mutation::Put { key, value } => last.insert(key, Some(value)),
                Mutation::Delete { key } => last.insert(key, None),
            };
        }
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        for (key, value) in last {
            match value {
                Some(value) => upserts.push((key, value)),
                None => deletes.push(key),
            }
        }
        FinalMutations { upserts, deletes }
    }
}

/// The key of the first of `checks` (in order) that fails, if one does. `current` reads
/// a key's value as the engine holds it inside the batch's transaction. Every engine's
/// `write` evaluates its checks through this, then answers [`KvError::Conflict`](super::KvError::Conflict).
pub fn first_failed_check<V: AsRef<[u8]>, E>(
    checks: &[(Bytes, Check)],
    mut current: impl FnMut(&[u8]) -> Result<Option<V>, E>,
) -> Result<Option<&Bytes>, E> {
    for (key, check) in checks {
        let value = current(key)?;
        if !check.holds(value.as_ref().map(AsRef::as_ref)) {
            return Ok(Some(key));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_mutation_of_a_key_wins() {
        let put = |k: &'static [u8], v: &'static [u8]| Mutation::Put {
            key: Bytes::from_static(k),
            value: Bytes::from_static(v),
        };
        let delete = |k: &'static [u8]| Mutation::Delete {
            key: Bytes::from_static(k),
        };
        let reduced = FinalMutations::new(vec![
            put(b"a", b"1"),
            delete(b"a"),
            delete(b"b"),
            put(b"b", b"2"),
            put(b"c", b"3"),
        ]);
        assert_eq!(reduced.deletes, vec![Bytes::from_static(b"a")]);
        assert_eq!(
            reduced.upserts,
            vec![
                (Bytes::from_static(b"b"), Bytes::from_static(b"2")),
                (Bytes::from_static(b"c"), Bytes::from_static(b"3"))
            ]
        );
    }
}
