//! `Copy`: `cachectl sync` asks the owner of an object's page 0 to copy the object from one of
//! the volume's sources into its regional copy (`CopyMode::Copy`), or to delete an object the
//! sources no longer have from the regional copy (`CopyMode::DeleteExtra`). The node answers
//! when it is done, with a small JSON [`CopyAnswer`] (as `Status` answers are), or with an error
//! head naming what failed.
//!
//! ```text
//! body = volume (u8 len) | token (u8 len) | key (u16 len) | mode u8 | source u8 | size u64 | etag (u8 len, "" = none)
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{
    MAX_ETAG_LEN, MAX_TOKEN_LEN, WireError,
    cursor::{Cursor, put_str},
};
use crate::key::{MAX_KEY_LEN, MAX_VOLUME_LEN, ObjectKey, Volume};

/// What a `Copy` request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CopyMode {
    /// Copy the object from origin `source` into the regional copy (unless it is there already).
    Copy = 0,
    /// Delete the object from the regional copy, if no source has it.
    DeleteExtra = 1,
}

impl TryFrom<u8> for CopyMode {
    type Error = WireError;
    fn try_from(v: u8) -> Result<Self, WireError> {
        match v {
            0 => Ok(Self::Copy),
            1 => Ok(Self::DeleteExtra),
            other => Err(WireError::Range(format!("unknown copy mode {other}"))),
        }
    }
}

/// Copy (or delete the extra) object `key` of `volume`: what the listing said of it at the
/// source (`size`, `etag`, and the index of the source in the volume's origin chain).
#[derive(Clone, PartialEq, Eq)]
pub struct Copy {
    pub volume: Volume,
    pub token: String,
    pub key: ObjectKey,
    pub mode: CopyMode,
    /// Index of the source in the volume's origin chain (at least 1: 0 is the regional copy).
    pub source: u8,
    pub size: u64,
    pub etag: Option<String>,
}

impl fmt::Debug for Copy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Copy")
            .field("volume", &self.volume)
            .field("token", &"<redacted>")
            .field("key", &self.key)
            .field("mode", &self.mode)
            .field("source", &self.source)
            .field("size", &self.size)
            .field("etag", &self.etag)
            .finish()
    }
}

/// A borrowed [`Copy`], validated as the owned one is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CopyView<'a> {
    pub volume: &'a str,
    pub token: &'a str,
    pub key: &'a str,
    pub mode: CopyMode,
    pub source: u8,
    pub size: u64,
    pub etag: Option<&'a str>,
}

impl fmt::Debug for CopyView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CopyView")
            .field("volume", &self.volume)
            .field("token", &"<redacted>")
            .field("key", &self.key)
            .field("mode", &self.mode)
            .field("source", &self.source)
            .field("size", &self.size)
            .finish()
    }
}

impl Copy {
    pub(super) fn put_body(&self, body: &mut Vec<u8>) {
        put_str(body, 1, MAX_VOLUME_LEN, self.volume.as_str());
        put_str(body, 1, MAX_TOKEN_LEN, &self.token);
        put_str(body, 2, MAX_KEY_LEN, self.key.as_str());
        body.push(self.mode as u8);
        body.push(self.source);
        body.extend_from_slice(&self.size.to_be_bytes());
        put_str(body, 1, MAX_ETAG_LEN, self.etag.as_deref().unwrap_or(""));
    }
}

impl<'a> CopyView<'a> {
    pub(super) fn take(c: &mut Cursor<'a>) -> Result<Self, WireError> {
        let volume = c.str(1, MAX_VOLUME_LEN, "volume")?;
        Volume::check(volume)?;
        let token = c.str(1, MAX_TOKEN_LEN, "token")?;
        let key = c.str(2, MAX_KEY_LEN, "key")?;
        ObjectKey::check(key)?;
        let mode = CopyMode::try_from(c.u8("copy mode")?)?;
        let source = c.u8("source")?;
        if mode == CopyMode::Copy && source == 0 {
            return Err(WireError::Range("a copy's source cannot be origin 0 (the regional copy)".into()));
        }
        let size = c.u64("size")?;
        let etag = c.str(1, MAX_ETAG_LEN, "etag")?;
        Ok(Self { volume, token, key, mode, source, size, etag: (!etag.is_empty()).then_some(etag) })
    }

    /// The owned request (allocates its names).
    pub fn to_owned(&self) -> Result<Copy, WireError> {
        Ok(Copy {
            volume: Volume::new(self.volume)?,
            token: self.token.to_owned(),
            key: ObjectKey::new(self.key)?,
            mode: self.mode,
            source: self.source,
            size: self.size,
            etag: self.etag.map(str::to_owned),
        })
    }
}

/// What the node did, the JSON payload of the answer to a `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyDone {
    /// Written into the regional copy and verified (size and MD5).
    Copied,
    /// The regional copy already had it (same size and MD5): nothing written.
    AlreadyThere,
    /// (DeleteExtra) removed from the regional copy.
    Deleted,
    /// (DeleteExtra) the regional copy did not have it (any more).
    NotThere,
}

impl CopyDone {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Copied => "copied",
            Self::AlreadyThere => "already_there",
            Self::Deleted => "deleted",
            Self::NotThere => "not_there",
        }
    }
}

/// The answer to a `Copy`: what was done and how many bytes were written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyAnswer {
    pub done: CopyDone,
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::super::{Request, RequestKind, ResponseHead, Status};
    use super::*;

    fn copy(mode: CopyMode, etag: Option<&str>) -> Copy {
        Copy {
            volume: Volume::new("vol1").expect("valid"),
            token: "secret-token".into(),
            key: ObjectKey::new("jfs/chunks/0/1/1234_0_4194304").expect("valid"),
            mode,
            source: 1,
            size: 4 << 20,
            etag: etag.map(str::to_owned),
        }
    }

    #[test]
    fn copies_round_trip_and_hide_the_token() {
        for req in [copy(CopyMode::Copy, Some("\"0123\"")), copy(CopyMode::DeleteExtra, None)] {
            let frame = Request::Copy(req.clone()).encode();
            assert_eq!(Request::decode(&frame), Ok(Some((Request::Copy(req.clone()), frame.len()))));
            assert!(!format!("{req:?}").contains("secret-token"));
            for cut in 0..frame.len() {
                assert_eq!(Request::decode(&frame[..cut]), Ok(None), "cut at {cut}");
            }
        }
    }

    #[test]
    fn bad_copies_get_typed_errors() {
        let frame = Request::Copy(copy(CopyMode::Copy, None)).encode();
        // The mode byte follows the key; the source byte follows the mode.
        let mode_at = frame.len() - 1 - 8 - 1 - 1;
        let mut bad = frame.clone();
        bad[mode_at] = 9;
        assert!(matches!(Request::decode(&bad), Err(WireError::Range(m)) if m.contains("copy mode")));
        bad = frame.clone();
        bad[mode_at + 1] = 0;
        assert!(matches!(Request::decode(&bad), Err(WireError::Range(m)) if m.contains("origin 0")));
        bad = frame.clone();
        bad.push(0);
        bad[2..6].copy_from_slice(&((frame.len() - 6 + 1) as u32).to_be_bytes());
        assert_eq!(Request::decode(&bad), Err(WireError::Trailing(1)));
    }

    #[test]
    fn answers_are_json_payloads() {
        let head = ResponseHead::Status { len: 40 };
        assert_eq!(ResponseHead::decode(RequestKind::Copy, &head.encode()), Ok(Some((head.clone(), 8))));
        let err = ResponseHead::error(Status::OriginFailed, "volume vol1, object k: the regional copy: refused");
        let frame = err.encode();
        assert_eq!(ResponseHead::decode(RequestKind::Copy, &frame), Ok(Some((err, frame.len()))));
        let answer = CopyAnswer { done: CopyDone::AlreadyThere, bytes: 0 };
        let json = serde_json::to_string(&answer).expect("json");
        assert_eq!(json, r#"{"done":"already_there","bytes":0}"#);
        assert_eq!(serde_json::from_str::<CopyAnswer>(&json).expect("parses"), answer);
    }
}
