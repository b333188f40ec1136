//! One origin's ranged GET ([`Origin::get_range`]): the answer's head and each chunk go to the
//! tap as they arrive, a whole object with a plain-MD5 ETag is hashed and checked, a short or
//! long body is [`OriginError::Truncated`], and a range at or past the end costs one HEAD
//! ([`Origin::read_at_end`]).

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use md5::{Digest as _, Md5};
use object_store::{
    GetOptions, GetRange, ObjectStoreExt,
    client::{HttpError, HttpErrorKind},
    path::Path,
};

use super::{Origin, OriginError, OriginEvent, OriginRead, OriginTap};
use cache_proto::key::ObjectKey;

impl Origin {
    /// `Ok(None)`: this origin does not have `key`.
    pub(super) async fn get_range(
        &self,
        index: usize,
        key: &ObjectKey,
        range: Range<u64>,
        tap: Option<&OriginTap>,
    ) -> Result<Option<OriginRead>, OriginError> {
        let path = self.object_path(key).map_err(|e| self.other(key, e))?;
        if range.start >= range.end {
            return self.read_at_end(index, key, &path, range.start, None).await;
        }
        let options = GetOptions::new().with_range(Some(GetRange::Bounded(range.clone())));
        let result = match self.store.get_opts(&path, options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) if is_range_not_satisfiable(&e) => {
                return self.read_at_end(index, key, &path, range.start, Some(e)).await;
            }
            Err(e) => return Err(self.other(key, e)),
        };
        let (size, e_tag) = (result.meta.size, result.meta.e_tag.clone());
        let expected = range.end.min(size).saturating_sub(range.start);
        // Only a whole object can be checked against its ETag.
        let whole = result.range == (0..size);
        let md5_etag = e_tag.as_deref().filter(|_| whole && self.verify_etag).and_then(plain_md5);
        let mut md5 = md5_etag.map(|_| Md5::new());
        // `expected` is at most the caller's range, so this allocation is bounded by the caller.
        let mut bytes = BytesMut::with_capacity(expected as usize);
        // A tap whose receiver is gone only stops being told.
        let tell = |event| {
            if let Some(tap) = tap {
                let _ = tap.send(event);
            }
        };
        tell(OriginEvent::Head { object_size: size, etag: e_tag.clone() });
        let mut body = result.into_stream();
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) if is_stall(&e) => return Err(self.other(key, e)),
                Err(e) => {
                    // object_store resumed the cut body as often as its retries allowed.
                    tracing::debug!(origin = %self.label, %key, error = %e, "origin body cut");
                    let got = bytes.len() as u64;
                    return Err(OriginError::Truncated { key: key.to_string(), expected, got });
                }
            };
            if bytes.len() as u64 + chunk.len() as u64 > expected {
                let got = bytes.len() as u64 + chunk.len() as u64;
                return Err(OriginError::Truncated { key: key.to_string(), expected, got });
            }
            if let Some(md5) = &mut md5 {
                md5.update(&chunk);
            }
            bytes.extend_from_slice(&chunk);
            tell(OriginEvent::Chunk(chunk));
        }
        if bytes.len() as u64 != expected {
            return Err(OriginError::Truncated { key: key.to_string(), expected, got: bytes.len() as u64 });
        }
        if let (Some(md5), Some(want)) = (md5, md5_etag) {
            let got: [u8; 16] = md5.finalize().into();
            if got != want {
                return Err(OriginError::Corrupt {
                    origin: self.label.clone(),
                    key: key.to_string(),
                    etag: e_tag.unwrap_or_default(),
                    md5: hex(&got),
                });
            }
        }
        Ok(Some(OriginRead { bytes: bytes.freeze(), object_size: size, etag: e_tag, origin: index, first: None }))
    }

    /// A range starting at or past the end of the object, or an empty one: one HEAD learns the size.
    /// `get_error` is the GET's own error, returned if the HEAD cannot explain it.
    async fn read_at_end(
        &self,
        index: usize,
        key: &ObjectKey,
        path: &Path,
        start: u64,
        get_error: Option<object_store::Error>,
    ) -> Result<Option<OriginRead>, OriginError> {
        let meta = match self.store.head(path).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.other(key, get_error.unwrap_or(e))),
        };
        if start > meta.size {
            return Err(OriginError::OutOfRange { key: key.to_string(), start, size: meta.size });
        }
        match get_error {
            // The GET refused a start inside the object: it changed in between, or the store misbehaves.
            Some(e) if start < meta.size => Err(self.other(key, e)),
            _ => Ok(Some(OriginRead {
                bytes: Bytes::new(),
                object_size: meta.size,
                etag: meta.e_tag,
                origin: index,
                first: None,
            })),
        }
    }
}

/// Whether a request failed because a stall deadline passed (object_store reports the HTTP
/// client's timeout as an [`HttpError`] of kind `Timeout` somewhere in the error's sources).
pub(super) fn is_stall(error: &object_store::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<HttpError>().is_some_and(|h| h.kind() == HttpErrorKind::Timeout) {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The MD5 an ETag states, if it is a plain one: 32 hex digits, optionally quoted. Multipart
/// ETags (`"<md5 of the parts' md5s>-<parts>"`) and weak ETags are not.
/// [`plain_md5`], for callers outside the chain (a copy into the regional bucket compares the
/// source's ETag with the one the copy's PUT got).
pub fn etag_md5(etag: &str) -> Option<[u8; 16]> {
    plain_md5(etag)
}

fn plain_md5(etag: &str) -> Option<[u8; 16]> {
    let hex = etag.strip_prefix('"').and_then(|e| e.strip_suffix('"')).unwrap_or(etag);
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a ranged GET failed because the range starts at or past the end of the object. object_store 0.14
/// reports both cases as `Generic` with a private source type, so this reads the messages (S3: the HTTP status
/// `416 Range Not Satisfiable`; LocalFileSystem: `InvalidRange`). A false answer leaves the error as it is; a
/// true one costs a HEAD that confirms it.
fn is_range_not_satisfiable(error: &object_store::Error) -> bool {
    if !matches!(error, object_store::Error::Generic { .. }) {
        return false;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        let text = e.to_string();
        if text.contains("416 Range Not Satisfiable") || text.contains("Requested range was invalid") {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::super::{OriginChain, tests::cfg};
    use super::*;

    #[test]
    fn only_plain_md5_etags_are_checked() {
        let md5 = "9e107d9d372bb6826bd81d3542a419d6";
        let want = plain_md5(md5).expect("plain");
        assert_eq!(hex(&want), md5);
        assert_eq!(plain_md5(&format!("\"{md5}\"")), Some(want));
        assert_eq!(plain_md5(&md5.to_uppercase()), Some(want));
        for not_md5 in [
            "\"9e107d9d372bb6826bd81d3542a419d6-2\"",
            "W/\"9e107d9d372bb6826bd81d3542a419d6\"",
            "9e107d9d372bb6826bd81d3542a419d",
            "9e107d9d372bb6826bd81d3542a419zz",
            "1a2b3c-5f0e-1000",
            "",
        ] {
            assert_eq!(plain_md5(not_md5), None, "{not_md5}");
        }
    }

    #[tokio::test]
    async fn unparsable_key_is_an_error_not_a_panic() {
        let chain = OriginChain::from_config(&[cfg("s3://bucket/p")]).expect("valid chain");
        let key = ObjectKey::new("a/ctl\u{1}char").expect("the key type allows control characters");
        match chain.get_range(&key, 0..10).await {
            Err(e @ OriginError::Other { .. }) => assert!(e.to_string().contains("s3://bucket/p"), "{e}"),
            other => panic!("expected Other, got {other:?}"),
        }
    }
}
