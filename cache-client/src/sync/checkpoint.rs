//! A sync's checkpoint: a small JSON file naming the volume, the prefix and the key through
//! which every object is done. Listings are sorted, so a resumed sync lists from that key on
//! (`start_after`) and copies nothing again. Written atomically (temp file, sync, rename): a
//! sync killed at any moment leaves the old checkpoint or the new one, never half of one.
//!
//! Default place: `$XDG_STATE_HOME/mirrorcache/sync/` (else `~/.local/state/mirrorcache/sync/`,
//! else `./.mirrorcache-sync/`), one file per volume and prefix: `<volume>-<md5(prefix)>.json`.
//! It depends on no node, so a sync resumes whichever nodes the ring has then.

use std::{
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};

/// Where a sync got to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub volume: String,
    pub prefix: String,
    /// Every key up to and including this one is copied (or was already there).
    pub done_through: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("checkpoint {path} does not parse: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("checkpoint {path} is for volume {volume:?} prefix {prefix:?}, not this sync's")]
    OtherSync { path: PathBuf, volume: String, prefix: String },
}

/// The default checkpoint file of a sync of `prefix` of `volume` (see the module docs).
pub fn default_path(volume: &str, prefix: &str) -> PathBuf {
    let dir = std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".local/state")))
        .map_or_else(|| PathBuf::from(".mirrorcache-sync"), |d| d.join("mirrorcache/sync"));
    let hash: String = Md5::digest(prefix.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{volume}-{hash}.json"))
}

/// The checkpoint at `path` for this volume and prefix (`None`: no file).
pub fn load(path: &Path, volume: &str, prefix: &str) -> Result<Option<Checkpoint>, CheckpointError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CheckpointError::Io { path: path.to_owned(), source }),
    };
    let c: Checkpoint = serde_json::from_slice(&bytes)
        .map_err(|e| CheckpointError::Corrupt { path: path.to_owned(), message: e.to_string() })?;
    if c.volume != volume || c.prefix != prefix {
        return Err(CheckpointError::OtherSync { path: path.to_owned(), volume: c.volume, prefix: c.prefix });
    }
    Ok(Some(c))
}

/// Writes `c` to `path` atomically (creating its directory).
pub fn save(path: &Path, c: &Checkpoint) -> Result<(), CheckpointError> {
    let io = |source| CheckpointError::Io { path: path.to_owned(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_vec(c).map_err(|e| io(io::Error::other(e)))?;
    let write = || -> io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(io)
}

/// Removes the checkpoint (a sync that finished: the next one starts from the beginning).
pub fn remove(path: &Path) -> Result<(), CheckpointError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(CheckpointError::Io { path: path.to_owned(), source: e }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_loads_refuses_another_sync_and_removes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/vol1.json");
        assert!(load(&path, "vol1", "p/").expect("no file").is_none());
        let c = Checkpoint { volume: "vol1".into(), prefix: "p/".into(), done_through: "p/k7".into() };
        save(&path, &c).expect("save");
        assert_eq!(load(&path, "vol1", "p/").expect("load"), Some(c));
        assert!(matches!(load(&path, "vol1", "q/"), Err(CheckpointError::OtherSync { .. })));
        fs::write(&path, b"{").expect("write");
        assert!(matches!(load(&path, "vol1", "p/"), Err(CheckpointError::Corrupt { .. })));
        remove(&path).expect("remove");
        remove(&path).expect("removing twice is fine");
        assert!(default_path("vol1", "p/").to_string_lossy().ends_with(".json"));
    }
}
