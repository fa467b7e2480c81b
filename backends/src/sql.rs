//! What the SQL engines share: a batch reduced to final upserts and deletes, statement
//! chunks of stable sizes, and scan statements.

use std::ops::Bound;

use bytes::Bytes;
use eventkv::{Direction, KeyRange, KvPage, MAX_SCAN_ENTRIES};
use futures_util::{Stream, TryStreamExt};
use sqlx::Row;

/// sqlx runs on tokio: outside a tokio runtime it would panic, so calls refuse first.
pub(crate) fn require_tokio(engine: &'static str) -> Result<(), String> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => Ok(()),
        Err(_) => Err(format!(
            "the {engine} engine runs on sqlx, which needs a tokio runtime: open and use it inside one (e.g. under #[tokio::main])"
        )),
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

/// A scan limit as SQL's signed 64-bit integer, never above a full page.
pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit.min(MAX_SCAN_ENTRIES)).unwrap_or(i64::MAX)
}

/// Copies rows of (key, value) into a page as they arrive, until the page is full (the
/// rest of the result is not fetched).
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
        if page.is_full() {
            break;
        }
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
