//! [`KvPage`]: the entries of one read, in one buffer, within the bounds every engine
//! enforces.

use std::fmt;

use super::DisplayKey;

/// The most entries one scan returns, whatever limit the caller passes.
pub const MAX_SCAN_ENTRIES: usize = 4096;
/// The most key and value bytes one scan returns: a page ends with the entry that
/// reaches this (so a page always holds at least one entry when the range has one).
pub const MAX_SCAN_BYTES: usize = 4 * 1024 * 1024;

/// The entries of one scan, in scan order, copied into one buffer: one allocation per
/// page, and borrowed slices per entry.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KvPage {
    data: Vec<u8>,
    /// For each entry: where its key ends and where its value ends in `data`.
    ends: Vec<(usize, usize)>,
}

impl KvPage {
    /// An empty page with room for `entries` entries of `bytes` bytes in all.
    pub fn with_capacity(entries: usize, bytes: usize) -> Self {
        KvPage {
            data: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(entries),
        }
    }

    /// Appends an entry: engines push entries in scan order.
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        self.data.extend_from_slice(key);
        let key_end = self.data.len();
        self.data.extend_from_slice(value);
        self.ends.push((key_end, self.data.len()));
    }

    /// How many entries the page holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// How many key and value bytes the page holds.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Whether the page reached a bound every engine enforces ([`MAX_SCAN_ENTRIES`],
    /// [`MAX_SCAN_BYTES`]): an engine filling a page stops pushing entries once it is.
    pub fn is_full(&self) -> bool {
        self.len() >= MAX_SCAN_ENTRIES || self.bytes() >= MAX_SCAN_BYTES
    }

    /// Pushes the entries of `entries` in order, each through `push`, until `limit`
    /// entries are in the page or it is full: how an engine fills a bounded page.
    pub fn fill<T, E>(
        &mut self,
        entries: impl Iterator<Item = Result<T, E>>,
        limit: usize,
        mut push: impl FnMut(&mut KvPage, T),
    ) -> Result<(), E> {
        for entry in entries {
            if self.len() >= limit || self.is_full() {
                break;
            }
            push(self, entry?);
        }
        Ok(())
    }

    /// Whether a scan asked for `limit` entries may have left entries of its range
    /// unread: it returned `limit` entries or a full page. Continue with
    /// [`KeyRange::after_page`](super::KeyRange::after_page) while this holds.
    pub fn may_have_more(&self, limit: usize) -> bool {
        !self.is_empty() && (self.len() >= limit || self.is_full())
    }

    /// Keeps the first `len` entries (all, when it holds no more).
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len() {
            return;
        }
        let data_end = len
            .checked_sub(1)
            .and_then(|last| self.ends.get(last))
            .map_or(0, |&(_, value_end)| value_end);
        self.data.truncate(data_end);
        self.ends.truncate(len);
    }

    /// Whether the page holds no entry.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The key and value of entry `index`.
    pub fn get(&self, index: usize) -> Option<(&[u8], &[u8])> {
        let &(key_end, value_end) = self.ends.get(index)?;
        let key_start = match index.checked_sub(1) {
            Some(previous) => self.ends.get(previous)?.1,
            None => 0,
        };
        Some((
            self.data.get(key_start..key_end)?,
            self.data.get(key_end..value_end)?,
        ))
    }

    /// The entries, in scan order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + '_ {
        self.ends
            .iter()
            .enumerate()
            .map(|(index, &(key_end, value_end))| {
                let start = index
                    .checked_sub(1)
                    .and_then(|previous| self.ends.get(previous))
                    .map_or(0, |end| end.1);
                let key = self.data.get(start..key_end).unwrap_or_default();
                let value = self.data.get(key_end..value_end).unwrap_or_default();
                (key, value)
            })
    }

    /// The key of the last entry: where the next page of the same scan continues.
    pub fn last_key(&self) -> Option<&[u8]> {
        self.get(self.len().checked_sub(1)?).map(|(key, _)| key)
    }
}

impl fmt::Debug for KvPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self
            .iter()
            .map(|(key, value)| (DisplayKey(key).to_string(), value.len()));
        f.debug_map().entries(entries).finish()
    }
}
