//! What the SQL engines share: a batch reduced to final upserts and deletes, statement
//! chunks of stable sizes, and scan statements.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use eventkv::{Direction, KeyRange, Mutation};

/// A batch's mutations reduced to the last one per key: disjoint upserts and deletes, so
/// statements may run in any order.
pub(crate) struct FinalMutations {
    pub upserts: Vec<(Bytes, Bytes)>,
    pub deletes: Vec<Bytes>,
}

impl FinalMutations {
    pub(crate) fn new(mutations: Vec<Mutation>) -> Self {
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

/// The bounds of a scan as SQL conditions on `key`, with the values to bind in order.
pub(crate) fn scan_conditions(
    range: &KeyRange,
    placeholder: &mut dyn FnMut() -> String,
) -> (String, Vec<Bytes>) {
    let mut conditions = Vec::new();
    let mut binds = Vec::new();
    let mut bound = |bound: &Bound<Bytes>, inclusive: &str, exclusive: &str| match bound {
        Bound::Included(key) => {
            conditions.push(format!("key {inclusive} {}", placeholder()));
            binds.push(key.clone());
        }
        Bound::Excluded(key) => {
            conditions.push(format!("key {exclusive} {}", placeholder()));
            binds.push(key.clone());
        }
        Bound::Unbounded => {}
    };
    bound(&range.start, ">=", ">");
    bound(&range.end, "<=", "<");
    let condition = if conditions.is_empty() {
        "TRUE".to_owned()
    } else {
        conditions.join(" AND ")
    };
    (condition, binds)
}

/// `ASC` or `DESC`.
pub(crate) fn order(direction: Direction) -> &'static str {
    match direction {
        Direction::Forward => "ASC",
        Direction::Reverse => "DESC",
    }
}

/// A scan limit as SQL's signed 64-bit integer.
pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
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
