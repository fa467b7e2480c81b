//! What the SQL engines share: a batch reduced to final upserts and deletes, statement
//! chunks of stable sizes, and scan statements.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use eventkv::{Direction, KeyRange, KvPage, Mutation};
use futures_util::{Stream, TryStreamExt};
use sqlx::Row;

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

/// The statement of a paged scan of `table`, with the values to bind in order (the limit
/// is bound last, after these). `placeholder` writes the engine's next placeholder.
pub(crate) fn scan_statement(
    table: &str,
    range: &KeyRange,
    direction: Direction,
    placeholder: &mut dyn FnMut() -> String,
) -> (String, Vec<Bytes>) {
    let mut conditions = Vec::new();
    let mut binds = Vec::new();
    let mut bound = |bound: &Bound<Bytes>, inclusive: &str, exclusive: &str| {
        let (operator, key) = match bound {
            Bound::Included(key) => (inclusive, key),
            Bound::Excluded(key) => (exclusive, key),
            Bound::Unbounded => return,
        };
        conditions.push(format!("key {operator} {}", placeholder()));
        binds.push(key.clone());
    };
    bound(&range.start, ">=", ">");
    bound(&range.end, "<=", "<");
    let condition = if conditions.is_empty() {
        "TRUE".to_owned()
    } else {
        conditions.join(" AND ")
    };
    let order = match direction {
        Direction::Forward => "ASC",
        Direction::Reverse => "DESC",
    };
    let sql = format!(
        "SELECT key, value FROM {table} WHERE {condition} ORDER BY key {order} LIMIT {}",
        placeholder()
    );
    (sql, binds)
}

/// A scan limit as SQL's signed 64-bit integer.
pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Copies rows of (key, value) into a page as they arrive.
pub(crate) async fn fill_page<R, S>(mut rows: S) -> Result<KvPage, sqlx::Error>
where
    R: Row,
    S: Stream<Item = Result<R, sqlx::Error>> + Unpin,
    for<'r> &'r [u8]: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let mut page = KvPage::default();
    while let Some(row) = rows.try_next().await? {
        page.push(row.try_get(0)?, row.try_get(1)?);
    }
    Ok(page)
}

/// The first column of `row`, as owned bytes.
pub(crate) fn first_bytes<R>(row: Option<R>) -> Result<Option<Bytes>, sqlx::Error>
where
    R: Row,
    for<'r> &'r [u8]: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    row.map(|row| row.try_get::<&[u8], _>(0).map(Bytes::copy_from_slice))
        .transpose()
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
