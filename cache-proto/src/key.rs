//! Typed names that cross the wire: volume names, object keys and node ids.
//!
//! Each is validated once, where it enters (config or a decoded frame), and is never turned
//! into a file path by this crate: an object key is only ever an object-store key.

use std::{borrow::Borrow, fmt, sync::Arc};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// Longest volume name, in bytes.
pub const MAX_VOLUME_LEN: usize = 64;
/// Longest object key, in bytes (S3's own limit).
pub const MAX_KEY_LEN: usize = 1024;
/// Longest node id, in bytes (a DNS label: node certificates carry it as their name).
pub const MAX_NODE_ID_LEN: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("volume name {0:?} must be 1-{MAX_VOLUME_LEN} bytes of [a-zA-Z0-9._-]")]
    Volume(String),
    #[error(
        "object key must be 1-{MAX_KEY_LEN} bytes without NUL, leading '/', or '.'/'..'/empty segments (got {len} bytes)"
    )]
    Key { len: usize },
    #[error("node id {0:?} must be 1-{MAX_NODE_ID_LEN} bytes of [a-z0-9-] (a DNS label)")]
    NodeId(String),
}

/// The name of a volume (one file system's data), e.g. `jfs-prod`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Volume(Arc<str>);

impl Volume {
    pub fn new(name: &str) -> Result<Self, NameError> {
        Self::check(name).map(|()| Self(name.into()))
    }

    /// Validates a name without allocating (a node's hit path uses the borrowed `&str`).
    pub fn check(name: &str) -> Result<(), NameError> {
        let ok = !name.is_empty()
            && name.len() <= MAX_VOLUME_LEN
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if ok { Ok(()) } else { Err(NameError::Volume(name.to_owned())) }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An object key inside a volume, e.g. `myjfs/chunks/0/1/1234_0_4194304`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(Arc<str>);

impl ObjectKey {
    pub fn new(key: &str) -> Result<Self, NameError> {
        Self::check(key).map(|()| Self(key.into()))
    }

    /// Validates a key without allocating.
    pub fn check(key: &str) -> Result<(), NameError> {
        let ok = !key.is_empty()
            && key.len() <= MAX_KEY_LEN
            && !key.contains('\0')
            && key.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..");
        if ok { Ok(()) } else { Err(NameError::Key { len: key.len() }) }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A cache node's stable identity. It names the node on the ring and in its TLS certificate.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

impl NodeId {
    pub fn new(id: &str) -> Result<Self, NameError> {
        let ok = !id.is_empty()
            && id.len() <= MAX_NODE_ID_LEN
            && !id.starts_with('-')
            && !id.ends_with('-')
            && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok { Ok(Self(id.into())) } else { Err(NameError::NodeId(id.to_owned())) }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! text_impls {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", &*self.0)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <$t>::new(&String::deserialize(d)?).map_err(de::Error::custom)
            }
        }
    };
}
// Hash and Eq of these types are those of the string, so maps keyed by them can be searched
// with a borrowed `&str`.
impl Borrow<str> for Volume {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for ObjectKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Volume {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

text_impls!(Volume);
text_impls!(ObjectKey);
text_impls!(NodeId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_reject_path_tricks_and_oversize() {
        assert!(ObjectKey::new("jfs/chunks/0/1/1234_0_4194304").is_ok());
        for bad in ["", "/abs", "a//b", "a/../b", "./a", "a/", "nul\0byte"] {
            assert!(ObjectKey::new(bad).is_err(), "{bad:?}");
        }
        assert!(ObjectKey::new(&"k".repeat(MAX_KEY_LEN)).is_ok());
        assert_eq!(ObjectKey::new(&"k".repeat(MAX_KEY_LEN + 1)), Err(NameError::Key { len: MAX_KEY_LEN + 1 }));
    }

    #[test]
    fn volumes_and_node_ids_are_restricted() {
        assert!(Volume::new("jfs-prod_1.x").is_ok());
        assert!(Volume::new("a/b").is_err());
        assert!(Volume::new("").is_err());
        assert!(NodeId::new("node-a1").is_ok());
        for bad in ["A", "a.b", "-a", "a-", "", "a_b"] {
            assert!(NodeId::new(bad).is_err(), "{bad:?}");
        }
    }
}
