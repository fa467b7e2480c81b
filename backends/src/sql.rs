//! What the SQL engines share: scan statements.

use std::ops::Bound;

use bytes::Bytes;
use eventkv::raw::MAX_SCAN_ENTRIES;
use eventkv::{Direction, KeyRange};

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

/// A scan limit as SQL's signed 64-bit integer, never above a full page.
pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit.min(MAX_SCAN_ENTRIES)).unwrap_or(i64::MAX)
}
