//! Progress bars on standard error, drawn only when it is a terminal.

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar of `total` items (or a counter when the total is unknown).
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar that counts `unit` (e.g. "events") towards `total`.
    pub fn new(total: Option<u64>, unit: &str) -> Self {
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template(&format!(
                    "{{bar:40}} {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, {{eta}} left)"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::no_length().with_style(
                ProgressStyle::with_template(&format!(
                    "{{spinner}} {{human_pos}} {unit} ({{per_sec}})"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        Progress { bar }
    }

    /// A bar that draws nothing.
    pub fn hidden() -> Self {
        Progress {
            bar: ProgressBar::hidden(),
        }
    }

    /// Counts `count` more items.
    pub fn advance(&self, count: u64) {
        self.bar.inc(count);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
