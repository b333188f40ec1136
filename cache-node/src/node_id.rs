//! A node's stable id: from config, or generated once and kept in `<data_dir>/node-id`, so a
//! restarted node takes its old place on the ring.

use std::{io, path::Path};

use cache_proto::key::NodeId;

/// Returns the configured id, or the one kept in `data_dir`, or a new one that is then kept.
/// A configured id that differs from the kept one is an error: the data dir belongs to another node.
pub fn resolve(configured: Option<&NodeId>, data_dir: &Path) -> io::Result<NodeId> {
    let path = data_dir.join("node-id");
    let kept = match std::fs::read_to_string(&path) {
        Ok(text) => Some(NodeId::new(text.trim()).map_err(|e| invalid(format!("{}: {e}", path.display())))?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    match (configured, kept) {
        (Some(c), Some(k)) if *c != k => {
            Err(invalid(format!("node.id is {c} but {} says this data dir belongs to node {k}", path.display())))
        }
        (_, Some(k)) => Ok(k),
        (configured, None) => {
            let id = match configured {
                Some(c) => c.clone(),
                None => {
                    NodeId::new(&format!("node-{:016x}", rand::random::<u64>())).map_err(|e| invalid(e.to_string()))?
                }
            };
            std::fs::create_dir_all(data_dir)?;
            let tmp = data_dir.join("node-id.tmp");
            std::fs::write(&tmp, format!("{id}\n"))?;
            std::fs::rename(&tmp, &path)?;
            Ok(id)
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_kept_and_guarded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = resolve(None, dir.path()).expect("generates");
        assert_eq!(resolve(None, dir.path()).expect("reads"), first);
        assert_eq!(resolve(Some(&first), dir.path()).expect("same"), first);
        let other = NodeId::new("other").expect("valid");
        let err = resolve(Some(&other), dir.path()).unwrap_err();
        assert!(err.to_string().contains("belongs to node"), "{err}");

        let dir2 = tempfile::tempdir().expect("tempdir");
        assert_eq!(resolve(Some(&other), dir2.path()).expect("kept"), other);
        std::fs::write(dir2.path().join("node-id"), "Not Valid!").expect("write");
        assert!(resolve(None, dir2.path()).is_err());
    }
}
