//! The durable queue of copies into regional buckets: one small JSON file per pending copy in
//! `<data_dir>/copies/pending/`, named by the MD5 of its volume and key (so an object is queued
//! at most once per node), and `<data_dir>/copies/failed/` for copies that ran out of attempts.
//!
//! Crash safety: an entry is written to `<name>.tmp`, synced, renamed into place, and the
//! directory synced; a copy done is one unlink. A `kill -9` at any point leaves either no entry
//! or a whole one (stray `.tmp` files are removed at open). An entry that does not parse (a
//! disk that lost data) is set aside as `<name>.bad` and counted, never fatal.
//!
//! Plain blocking file calls: the copier runs them on tokio's blocking pool, never on a read's
//! path.

use std::{
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};

/// One copy to make: the object, what the source said of it, and where to read it from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub volume: String,
    pub key: String,
    /// The object's size, as the source reported it when the page was filled.
    pub size: u64,
    /// The source's ETag (a plain MD5 for single-part objects: what the copy must match).
    pub etag: Option<String>,
    /// Index in the volume's origin chain of the source that served the fill.
    pub source: usize,
    /// When the copy was queued, in milliseconds since the Unix epoch.
    pub queued_ms: u64,
}

impl Pending {
    /// The entry's file name stem: the hex MD5 of `volume \0 key` (keys never reach a path).
    pub fn id(&self) -> String {
        entry_id(&self.volume, &self.key)
    }
}

/// The file name stem of the entry for `key` of `volume`.
pub fn entry_id(volume: &str, key: &str) -> String {
    let mut md5 = Md5::new();
    md5.update(volume.as_bytes());
    md5.update([0u8]);
    md5.update(key.as_bytes());
    md5.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A queue operation that failed: the read that queued the copy is served all the same.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("copy queue {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("copy queue entry {path} does not parse: {message}")]
    Corrupt { path: PathBuf, message: String },
}

/// What [`CopyQueue::open`] found: the pending copies (failed ones moved back first) and the
/// entries it could not read.
#[derive(Debug, Default)]
pub struct Recovered {
    pub pending: Vec<Pending>,
    /// Failed copies queued again at this start.
    pub requeued: usize,
    pub unreadable: Vec<QueueError>,
}

/// The queue's two directories.
#[derive(Debug, Clone)]
pub struct CopyQueue {
    pending: PathBuf,
    failed: PathBuf,
}

impl CopyQueue {
    /// Opens (creating) the queue under `dir`, removes half-written entries, moves the failed
    /// copies back to pending (a start is a good time to try them again), and reads them all.
    pub fn open(dir: &Path) -> Result<(Self, Recovered), QueueError> {
        let queue = Self { pending: dir.join("pending"), failed: dir.join("failed") };
        for d in [&queue.pending, &queue.failed] {
            fs::create_dir_all(d).map_err(|source| QueueError::Io { path: d.clone(), source })?;
        }
        let mut recovered = Recovered::default();
        for (path, ext) in list(&queue.failed)? {
            if ext == "json" {
                let name = path.file_name().map(ToOwned::to_owned).unwrap_or_default();
                rename(&path, &queue.pending.join(name))?;
                recovered.requeued += 1;
            }
        }
        for (path, ext) in list(&queue.pending)? {
            match ext.as_str() {
                "tmp" => remove(&path)?,
                "json" => match read_entry(&path) {
                    Ok(p) => recovered.pending.push(p),
                    Err(e) => {
                        rename(&path, &path.with_extension("bad"))?;
                        recovered.unreadable.push(e);
                    }
                },
                _ => {}
            }
        }
        sync_dir(&queue.pending)?;
        recovered.pending.sort_by_key(|p| p.queued_ms);
        Ok((queue, recovered))
    }

    /// Writes `entry` durably (temp file, sync, rename, directory sync).
    pub fn push(&self, entry: &Pending) -> Result<(), QueueError> {
        let path = self.pending.join(format!("{}.json", entry.id()));
        let tmp = path.with_extension("tmp");
        let io = |source| QueueError::Io { path: tmp.clone(), source };
        let text = serde_json::to_vec(entry).map_err(|e| io(io::Error::other(e)))?;
        let write = || -> io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&text)?;
            file.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(io(e));
        }
        rename(&tmp, &path)?;
        sync_dir(&self.pending)
    }

    /// The copy is done: its entry goes.
    pub fn remove(&self, id: &str) -> Result<(), QueueError> {
        remove(&self.pending.join(format!("{id}.json")))
    }

    /// The copy ran out of attempts: its entry moves to `failed/` (kept for a resync).
    pub fn fail(&self, id: &str) -> Result<(), QueueError> {
        let name = format!("{id}.json");
        rename(&self.pending.join(&name), &self.failed.join(&name))?;
        sync_dir(&self.failed)
    }

    /// Copies in `failed/` now.
    pub fn failed_count(&self) -> Result<usize, QueueError> {
        Ok(list(&self.failed)?.into_iter().filter(|(_, ext)| ext == "json").count())
    }
}

fn list(dir: &Path) -> Result<Vec<(PathBuf, String)>, QueueError> {
    let io = |source| QueueError::Io { path: dir.to_owned(), source };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_owned();
        out.push((path, ext));
    }
    Ok(out)
}

fn read_entry(path: &Path) -> Result<Pending, QueueError> {
    let bytes = fs::read(path).map_err(|source| QueueError::Io { path: path.to_owned(), source })?;
    serde_json::from_slice(&bytes).map_err(|e| QueueError::Corrupt { path: path.to_owned(), message: e.to_string() })
}

fn rename(from: &Path, to: &Path) -> Result<(), QueueError> {
    fs::rename(from, to).map_err(|source| QueueError::Io { path: from.to_owned(), source })
}

fn remove(path: &Path) -> Result<(), QueueError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(QueueError::Io { path: path.to_owned(), source: e }),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> Result<(), QueueError> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|source| QueueError::Io { path: dir.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, queued_ms: u64) -> Pending {
        Pending { volume: "vol1".into(), key: key.into(), size: 10, etag: Some("\"abc\"".into()), source: 1, queued_ms }
    }

    #[test]
    fn entries_survive_a_reopen_and_leave_when_done_or_failed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (q, found) = CopyQueue::open(dir.path()).expect("open");
        assert!(found.pending.is_empty());
        let (a, b, c) = (entry("a/1", 3), entry("a/2", 1), entry("a/3", 2));
        for e in [&a, &b, &c] {
            q.push(e).expect("push");
        }
        q.push(&a).expect("the same key again replaces its entry");
        // A half-written entry (killed between write and rename) and a garbled one.
        std::fs::write(dir.path().join("pending/x.tmp"), b"{").expect("write");
        std::fs::write(dir.path().join("pending/y.json"), b"not json").expect("write");
        let (q, found) = CopyQueue::open(dir.path()).expect("reopen");
        assert_eq!(found.pending, vec![b.clone(), c.clone(), a.clone()], "oldest first");
        assert_eq!(found.unreadable.len(), 1);
        assert!(!dir.path().join("pending/x.tmp").exists() && dir.path().join("pending/y.bad").exists());

        q.remove(&a.id()).expect("done");
        q.fail(&b.id()).expect("failed");
        assert_eq!(q.failed_count().expect("count"), 1);
        let (q, found) = CopyQueue::open(dir.path()).expect("reopen");
        assert_eq!(found.pending, vec![b, c], "failed copies are queued again at start");
        assert_eq!((found.requeued, q.failed_count().expect("count")), (1, 0));
    }

    #[test]
    fn ids_depend_on_volume_and_key_only() {
        assert_eq!(entry("k", 1).id(), entry("k", 2).id());
        assert_ne!(entry("k", 1).id(), entry("k2", 1).id());
        assert_ne!(entry_id("v", "1/k"), entry_id("v1", "/k"));
        assert_eq!(entry_id("v", "k").len(), 32);
    }

    #[test]
    fn a_queue_that_cannot_be_written_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (q, _) = CopyQueue::open(dir.path()).expect("open");
        std::fs::remove_dir_all(dir.path().join("pending")).expect("rm");
        let err = q.push(&entry("k", 1)).expect_err("no directory");
        assert!(err.to_string().contains("pending"), "{err}");
    }
}
