//! Noticing that the config file changed on disk.
//!
//! The file is polled, not watched with inotify: a poll sees in-place writes,
//! rename-replacements (editors, `install`, Kubernetes' symlink swaps) and files
//! on any filesystem alike, and reading a few kilobytes four times a second
//! costs nothing. Its content is compared, not its mtime, so a `touch` or a save
//! without changes reloads nothing; and a change is applied only once the
//! content has stayed the same for one more poll, so an editor's
//! truncate-then-write is one reload, not a rejected empty file and then another.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often the file is read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A config text's identity, to tell a change from a rewrite of the same text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(u64);

impl Fingerprint {
    /// The fingerprint of `text`.
    pub fn of(text: &str) -> Self {
        let mut hasher = DefaultHasher::new();
        text.hash(&mut hasher);
        Fingerprint(hasher.finish())
    }
}

/// The watched file and what was last seen of it.
pub struct ConfigFile {
    path: PathBuf,
    /// The text of the last reload (successful or not).
    applied: Fingerprint,
    /// A changed text seen at the last poll, waiting to be seen once more.
    pending: Option<Fingerprint>,
    /// Polls in a row that could not read the file. The second says so (an
    /// editor's save can leave the path missing for a moment), later ones not.
    unreadable: u32,
}

impl ConfigFile {
    /// Watches `path`, whose text `applied` is the one serving.
    pub fn new(path: &Path, applied: Fingerprint) -> Self {
        ConfigFile {
            path: path.to_path_buf(),
            applied,
            pending: None,
            unreadable: 0,
        }
    }

    /// The watched path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records that a reload read `text`, whatever triggered it, so the same
    /// text is not reloaded again when the poll sees it.
    pub fn applied(&mut self, text: &str) {
        self.applied = Fingerprint::of(text);
        self.pending = None;
    }

    /// One poll: true when the file holds a new text that stayed the same since
    /// the last poll. An unreadable file (mid-replacement, deleted) is not a
    /// change; the next readable text is.
    pub fn poll(&mut self) -> bool {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                self.unreadable = 0;
                text
            }
            Err(e) => {
                self.unreadable = self.unreadable.saturating_add(1);
                if self.unreadable == 2 {
                    log::warn!(
                        "cannot read the config file {}: {e}; the running config keeps serving",
                        self.path.display()
                    );
                }
                return false;
            }
        };
        let seen = Fingerprint::of(&text);
        if seen == self.applied {
            self.pending = None;
            return false;
        }
        if self.pending == Some(seen) {
            return true;
        }
        self.pending = Some(seen);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "switchyard-watch-{}-{}.yaml",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_change_is_reported_once_it_held_for_a_second_poll() {
        let path = temp_file("a: 1\n");
        let mut file = ConfigFile::new(&path, Fingerprint::of("a: 1\n"));
        assert!(!file.poll(), "unchanged");
        std::fs::write(&path, "").unwrap();
        assert!(!file.poll(), "first sight of a truncated file");
        std::fs::write(&path, "a: 2\n").unwrap();
        assert!(!file.poll(), "first sight of the new text");
        assert!(file.poll(), "the new text held");
        file.applied("a: 2\n");
        assert!(!file.poll(), "applied texts are not changes");
        std::fs::remove_file(&path).unwrap();
        assert!(!file.poll(), "a missing file is not a change");
    }

    #[test]
    fn a_rename_replacement_is_a_change_and_a_rewrite_of_the_same_text_is_not() {
        let path = temp_file("a: 1\n");
        let mut file = ConfigFile::new(&path, Fingerprint::of("a: 1\n"));
        let replacement = temp_file("a: 1\n");
        std::fs::rename(&replacement, &path).unwrap();
        assert!(!file.poll() && !file.poll(), "same text, new inode");
        let replacement = temp_file("a: 3\n");
        std::fs::rename(&replacement, &path).unwrap();
        assert!(!file.poll());
        assert!(file.poll());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_reload_by_signal_settles_what_the_poll_had_seen() {
        let path = temp_file("a: 1\n");
        let mut file = ConfigFile::new(&path, Fingerprint::of("a: 1\n"));
        std::fs::write(&path, "a: 2\n").unwrap();
        assert!(!file.poll());
        file.applied("a: 2\n");
        assert!(!file.poll(), "the signal's reload already read it");
        std::fs::remove_file(&path).unwrap();
    }
}
