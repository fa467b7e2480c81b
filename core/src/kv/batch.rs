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

    /// The bytes of its keys and values, checks' included: what [`WriteLimits::max_bytes`]
    /// bounds.
    pub fn bytes(&self) -> usize {
        let checks = self.checks.iter().map(|(key, check)| {
            key.len()
                + match check {
                    Check::Equals(value) => value.len(),
                    Check::Absent | Check::Present => 0,
                }
        });
        let mutations = self.mutations.iter().map(|mutation| match mutation {
            Mutation::Put { key, value } => key.len() + value.len(),
            Mutation::Delete { key } => key.len(),
        });
        checks.sum::<usize>() + mutations.sum::<usize>()
    }
}

/// The largest batch one [`OrderedKv::write`](super::OrderedKv::write) of an engine
/// applies (a consensus log's entry, a transaction's operations). Writers that batch
/// (group commit, copies, bulk deletes) fill their batches to fit; a batch that exceeds
/// them is refused with [`KvError::TooLarge`](super::KvError::TooLarge), nothing applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteLimits {
    /// The most checks.
    pub max_checks: usize,
    /// The most puts and deletes.
    pub max_mutations: usize,
    /// The most bytes of keys and values ([`WriteBatch::bytes`]).
    pub max_bytes: usize,
}

impl WriteLimits {
    /// No limit: the engines on one machine.
    pub const UNBOUNDED: WriteLimits = WriteLimits {
        max_checks: usize::MAX,
        max_mutations: usize::MAX,
        max_bytes: usize::MAX,
    };

    /// What of these limits `batch` exceeds, said for an error: `None` if it fits.
    pub fn exceeded_by(&self, batch: &WriteBatch) -> Option<String> {
        let (checks, mutations, bytes) = (batch.checks.len(), batch.mutations.len(), batch.bytes());
        if checks > self.max_checks {
            Some(format!("{checks} checks (the most is {})", self.max_checks))
        } else if mutations > self.max_mutations {
            Some(format!(
                "{mutations} puts and deletes (the most is {})",
                self.max_mutations
            ))
        } else if bytes > self.max_bytes {
            Some(format!(
                "{bytes} bytes of keys and values (the most is {})",
                self.max_bytes
            ))
        } else {
            None
        }
    }

    /// An empty batch's room under these limits.
    pub fn room(&self) -> BatchRoom {
        BatchRoom {
            limits: *self,
            checks: 0,
            mutations: 0,
            bytes: 0,
        }
    }
}

impl Default for WriteLimits {
    fn default() -> Self {
        Self::UNBOUNDED
    }
}

/// What a batch being filled holds, against its engine's [`WriteLimits`].
#[derive(Clone, Copy, Debug)]
pub struct BatchRoom {
    limits: WriteLimits,
    checks: usize,
    mutations: usize,
    bytes: usize,
}

impl BatchRoom {
    /// Adds a part of `checks` checks, `mutations` puts and deletes and `bytes` bytes if
    /// it fits; returns whether it was added. The first part is always added (alone, it
    /// is the batch: the engine refuses it if it is too large).
    pub fn admit(&mut self, checks: usize, mutations: usize, bytes: usize) -> bool {
        let fits = self.checks.saturating_add(checks) <= self.limits.max_checks
            && self.mutations.saturating_add(mutations) <= self.limits.max_mutations
            && self.bytes.saturating_add(bytes) <= self.limits.max_bytes;
        let admitted = fits || self.is_empty();
        if admitted {
            self.add(checks, mutations, bytes);
        }
        admitted
    }

    /// Adds a part whether it fits or not (it is in the batch already).
    pub fn add(&mut self, checks: usize, mutations: usize, bytes: usize) {
        self.checks = self.checks.saturating_add(checks);
        self.mutations = self.mutations.saturating_add(mutations);
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// Whether nothing was added yet.
    pub fn is_empty(&self) -> bool {
        self.checks == 0 && self.mutations == 0
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
    fn a_room_admits_what_fits_and_always_a_first_part() {
        let limits = WriteLimits {
            max_checks: 2,
            max_mutations: 3,
            max_bytes: 100,
        };
        let mut room = limits.room();
        assert!(room.admit(5, 9, 1_000), "the first part, alone");
        assert!(!room.admit(0, 1, 1));
        let mut room = limits.room();
        assert!(room.admit(1, 2, 60));
        assert!(!room.admit(1, 2, 10), "mutations");
        assert!(!room.admit(0, 1, 50), "bytes");
        assert!(room.admit(1, 1, 40));
        let mut batch = WriteBatch::new();
        batch.check(&b"k"[..], Check::Equals(Bytes::from_static(b"vv")));
        batch.put(&b"a"[..], &b"bcd"[..]).delete(&b"e"[..]);
        assert_eq!(batch.bytes(), 1 + 2 + 4 + 1);
        assert_eq!(limits.exceeded_by(&batch), None);
        batch.put(&b"f"[..], &b""[..]).put(&b"g"[..], &b""[..]);
        let said = limits.exceeded_by(&batch).expect("4 mutations");
        assert!(
            said.contains("4 puts and deletes (the most is 3)"),
            "{said}"
        );
    }

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
