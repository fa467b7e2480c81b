//! [`Pages`]: the records of a key range, read a page at a time.

use eventkv::raw::MAX_SCAN_ENTRIES;
use eventkv::{Direction, DynKv, KeyRange, KvPage, OrderedKv};

use crate::CliError;

/// A forward walk over a key range, one page of at most [`MAX_SCAN_ENTRIES`] per call.
pub(crate) struct Pages {
    rest: Option<KeyRange>,
}

impl Pages {
    /// A walk over `range`.
    pub(crate) fn new(range: KeyRange) -> Self {
        Pages { rest: Some(range) }
    }

    /// The next page, or `None` after the last.
    pub(crate) async fn next(&mut self, kv: &DynKv) -> Result<Option<KvPage>, CliError> {
        let Some(range) = self.rest.take() else {
            return Ok(None);
        };
        let page = kv
            .scan(&range, Direction::Forward, MAX_SCAN_ENTRIES)
            .await?;
        if let Some(last) = page.last_key()
            && page.may_have_more(MAX_SCAN_ENTRIES)
        {
            self.rest = Some(range.after_page(last, Direction::Forward));
        }
        Ok(Some(page))
    }
}
