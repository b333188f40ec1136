//! Requests: `Get` (one page, or a range inside it), `Status` (the node's counters), `Warm`
//! (fill, check or evict one page at its owner, for `cachectl warmup`), `Peek` (a whole page only
//! if it is cached: how a page's new owner asks its previous owner), `Members` (the ring as the
//! node sees it), `Drain` (an operator takes the node off the ring) and `Copy` (copy an object
//! into the volume's regional copy, or delete one the sources no longer have: `cachectl sync`,
//! see [`super::copy`]).

use std::fmt;

use super::{
    MAX_REQUEST_BODY, MAX_TOKEN_LEN, REQUEST_PREFIX_LEN, VERSION, WireError,
    copy::{Copy, CopyView},
    cursor::{Cursor, put_str},
};
use crate::{
    key::{MAX_KEY_LEN, MAX_VOLUME_LEN, ObjectKey, Volume},
    limits::{MAX_PAGE_SIZE, MIN_PAGE_SIZE},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RequestKind {
    Get = 1,
    Status = 2,
    Warm = 3,
    Peek = 4,
    Members = 5,
    Drain = 6,
    Copy = 7,
}

impl TryFrom<u8> for RequestKind {
    type Error = WireError;
    fn try_from(v: u8) -> Result<Self, WireError> {
        match v {
            1 => Ok(Self::Get),
            2 => Ok(Self::Status),
            3 => Ok(Self::Warm),
            4 => Ok(Self::Peek),
            5 => Ok(Self::Members),
            6 => Ok(Self::Drain),
            7 => Ok(Self::Copy),
            other => Err(WireError::UnknownKind(other)),
        }
    }
}

/// Read bytes `[start, start + len)` of page `page` of `key` in `volume`, where page `p` covers
/// object bytes `[p * page_size, (p + 1) * page_size)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Get {
    pub volume: Volume,
    /// The volume's shared secret; never printed.
    pub token: String,
    pub key: ObjectKey,
    pub page_size: u32,
    pub page: u64,
    pub start: u32,
    pub len: u32,
}

impl fmt::Debug for Get {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Get")
            .field("volume", &self.volume)
            .field("token", &"<redacted>")
            .field("key", &self.key)
            .field("page_size", &self.page_size)
            .field("page", &self.page)
            .field("start", &self.start)
            .field("len", &self.len)
            .finish()
    }
}

/// Checks a request's geometry: a known page size, a non-empty range inside the page, and a
/// page whose byte offsets fit in 64 bits.
fn check_geometry(page_size: u32, page: u64, start: u32, len: u32) -> Result<(), WireError> {
    let ps = u64::from(page_size);
    if !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&ps) {
        return Err(WireError::Range(format!("page size {ps} outside {MIN_PAGE_SIZE}..={MAX_PAGE_SIZE}")));
    }
    if len == 0 || u64::from(start) + u64::from(len) > ps {
        return Err(WireError::Range(format!("[{start}, +{len}) is not inside a page of {ps}")));
    }
    if page.checked_mul(ps).and_then(|o| o.checked_add(ps)).is_none() {
        return Err(WireError::Range(format!("page {page} of size {ps} is past 2^64")));
    }
    Ok(())
}

impl Get {
    /// Checks the geometry (see [`check_geometry`]).
    pub fn check_range(&self) -> Result<(), WireError> {
        check_geometry(self.page_size, self.page, self.start, self.len)
    }

    /// Object byte offset of the first byte asked for.
    pub fn object_offset(&self) -> u64 {
        self.page * u64::from(self.page_size) + u64::from(self.start)
    }
}

/// What a `Warm` request asks of the page's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WarmMode {
    /// Make sure the page is cached (one origin GET if it is not, shared with any reader).
    Fill = 0,
    /// Only say whether the page is cached; fetch nothing.
    Check = 1,
    /// Drop the page from memory and disk.
    Evict = 2,
}

impl TryFrom<u8> for WarmMode {
    type Error = WireError;
    fn try_from(v: u8) -> Result<Self, WireError> {
        match v {
            0 => Ok(Self::Fill),
            1 => Ok(Self::Check),
            2 => Ok(Self::Evict),
            other => Err(WireError::Range(format!("unknown warm mode {other}"))),
        }
    }
}

/// Fill, check or evict page `page` of `key` (the whole page: no range).
#[derive(Clone, PartialEq, Eq)]
pub struct Warm {
    pub volume: Volume,
    pub token: String,
    pub key: ObjectKey,
    pub page_size: u32,
    pub page: u64,
    pub mode: WarmMode,
}

impl fmt::Debug for Warm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Warm")
            .field("volume", &self.volume)
            .field("token", &"<redacted>")
            .field("key", &self.key)
            .field("page_size", &self.page_size)
            .field("page", &self.page)
            .field("mode", &self.mode)
            .finish()
    }
}

impl Warm {
    /// The same page as a whole-page `Get` (for the shared checks and lookups).
    pub fn as_get(&self) -> Get {
        Get {
            volume: self.volume.clone(),
            token: self.token.clone(),
            key: self.key.clone(),
            page_size: self.page_size,
            page: self.page,
            start: 0,
            len: self.page_size,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Get(Get),
    Status,
    Warm(Warm),
    /// The whole page `page` of a `Get` (its `start` and `len` are not sent).
    Peek(Get),
    Members,
    Drain,
    Copy(Copy),
}

impl Request {
    pub fn kind(&self) -> RequestKind {
        match self {
            Self::Get(_) => RequestKind::Get,
            Self::Status => RequestKind::Status,
            Self::Warm(_) => RequestKind::Warm,
            Self::Peek(_) => RequestKind::Peek,
            Self::Members => RequestKind::Members,
            Self::Drain => RequestKind::Drain,
            Self::Copy(_) => RequestKind::Copy,
        }
    }

    /// The whole frame: prefix and body.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(64);
        match self {
            Self::Get(g) => {
                put_page_id(&mut body, &g.volume, &g.token, &g.key, g.page_size, g.page);
                body.extend_from_slice(&g.start.to_be_bytes());
                body.extend_from_slice(&g.len.to_be_bytes());
            }
            Self::Warm(w) => {
                put_page_id(&mut body, &w.volume, &w.token, &w.key, w.page_size, w.page);
                body.push(w.mode as u8);
            }
            Self::Peek(g) => put_page_id(&mut body, &g.volume, &g.token, &g.key, g.page_size, g.page),
            Self::Copy(c) => c.put_body(&mut body),
            Self::Status | Self::Members | Self::Drain => {}
        }
        let mut out = Vec::with_capacity(REQUEST_PREFIX_LEN + body.len());
        out.push(VERSION);
        out.push(self.kind() as u8);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Checks the fixed prefix and returns the kind and the body length still to read.
    pub fn parse_prefix(prefix: &[u8; REQUEST_PREFIX_LEN]) -> Result<(RequestKind, usize), WireError> {
        if prefix[0] != VERSION {
            return Err(WireError::Version(prefix[0]));
        }
        let kind = RequestKind::try_from(prefix[1])?;
        let len = u32::from_be_bytes([prefix[2], prefix[3], prefix[4], prefix[5]]) as usize;
        if len > MAX_REQUEST_BODY {
            return Err(WireError::TooLarge { what: "request body", len, max: MAX_REQUEST_BODY });
        }
        Ok((kind, len))
    }

    /// Decodes a body whose length [`Request::parse_prefix`] already checked.
    pub fn decode_body(kind: RequestKind, body: &[u8]) -> Result<Self, WireError> {
        RequestView::decode_body(kind, body)?.to_owned()
    }

    /// Decodes one frame from the front of `buf`: `Ok(None)` while it is incomplete, else the
    /// request and the bytes it used.
    pub fn decode(buf: &[u8]) -> Result<Option<(Self, usize)>, WireError> {
        let Some(prefix) = buf.first_chunk::<REQUEST_PREFIX_LEN>() else { return Ok(None) };
        let (kind, len) = Self::parse_prefix(prefix)?;
        let Some(body) = buf.get(REQUEST_PREFIX_LEN..REQUEST_PREFIX_LEN + len) else { return Ok(None) };
        Ok(Some((Self::decode_body(kind, body)?, REQUEST_PREFIX_LEN + len)))
    }
}

/// A decoded request that borrows its names from the frame: what a node decodes, so answering
/// a hit allocates nothing for the request. Names are validated exactly as the owned types are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestView<'a> {
    Get(GetView<'a>),
    Status,
    Warm(GetView<'a>, WarmMode),
    Peek(GetView<'a>),
    Members,
    Drain,
    Copy(CopyView<'a>),
}

/// A borrowed [`Get`]. For a `Warm` or a `Peek`, the whole page (`start` 0, `len` the page size).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct GetView<'a> {
    pub volume: &'a str,
    pub token: &'a str,
    pub key: &'a str,
    pub page_size: u32,
    pub page: u64,
    pub start: u32,
    pub len: u32,
}

impl fmt::Debug for GetView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetView")
            .field("volume", &self.volume)
            .field("token", &"<redacted>")
            .field("key", &self.key)
            .field("page", &self.page)
            .field("start", &self.start)
            .field("len", &self.len)
            .finish()
    }
}

impl GetView<'_> {
    /// The owned request (this allocates its names).
    pub fn to_owned(&self) -> Result<Get, WireError> {
        Ok(Get {
            volume: Volume::new(self.volume)?,
            token: self.token.to_owned(),
            key: ObjectKey::new(self.key)?,
            page_size: self.page_size,
            page: self.page,
            start: self.start,
            len: self.len,
        })
    }
}

impl<'a> RequestView<'a> {
    /// Decodes and validates a body without allocating.
    pub fn decode_body(kind: RequestKind, body: &'a [u8]) -> Result<Self, WireError> {
        let mut c = Cursor::new(body);
        let view = match kind {
            RequestKind::Status => Self::Status,
            RequestKind::Members => Self::Members,
            RequestKind::Drain => Self::Drain,
            RequestKind::Copy => Self::Copy(CopyView::take(&mut c)?),
            RequestKind::Get => {
                let (volume, token, key, page_size, page) = take_page_id(&mut c)?;
                let (start, len) = (c.u32("start")?, c.u32("len")?);
                check_geometry(page_size, page, start, len)?;
                Self::Get(GetView { volume, token, key, page_size, page, start, len })
            }
            RequestKind::Warm => {
                let (volume, token, key, page_size, page) = take_page_id(&mut c)?;
                let mode = WarmMode::try_from(c.u8("mode")?)?;
                check_geometry(page_size, page, 0, page_size)?;
                Self::Warm(GetView { volume, token, key, page_size, page, start: 0, len: page_size }, mode)
            }
            RequestKind::Peek => {
                let (volume, token, key, page_size, page) = take_page_id(&mut c)?;
                check_geometry(page_size, page, 0, page_size)?;
                Self::Peek(GetView { volume, token, key, page_size, page, start: 0, len: page_size })
            }
        };
        c.finish()?;
        Ok(view)
    }

    /// The owned request (allocates its names; names were validated when decoded).
    pub fn to_owned(&self) -> Result<Request, WireError> {
        Ok(match self {
            Self::Get(g) => Request::Get(g.to_owned()?),
            Self::Status => Request::Status,
            Self::Members => Request::Members,
            Self::Drain => Request::Drain,
            Self::Copy(c) => Request::Copy(c.to_owned()?),
            Self::Peek(g) => Request::Peek(g.to_owned()?),
            Self::Warm(g, mode) => {
                let g = g.to_owned()?;
                Request::Warm(Warm {
                    volume: g.volume,
                    token: g.token,
                    key: g.key,
                    page_size: g.page_size,
                    page: g.page,
                    mode: *mode,
                })
            }
        })
    }
}

fn put_page_id(body: &mut Vec<u8>, volume: &Volume, token: &str, key: &ObjectKey, page_size: u32, page: u64) {
    put_str(body, 1, MAX_VOLUME_LEN, volume.as_str());
    put_str(body, 1, MAX_TOKEN_LEN, token);
    put_str(body, 2, MAX_KEY_LEN, key.as_str());
    body.extend_from_slice(&page_size.to_be_bytes());
    body.extend_from_slice(&page.to_be_bytes());
}

type PageId<'a> = (&'a str, &'a str, &'a str, u32, u64);

fn take_page_id<'a>(c: &mut Cursor<'a>) -> Result<PageId<'a>, WireError> {
    let volume = c.str(1, MAX_VOLUME_LEN, "volume")?;
    Volume::check(volume)?;
    let token = c.str(1, MAX_TOKEN_LEN, "token")?;
    let key = c.str(2, MAX_KEY_LEN, "key")?;
    ObjectKey::check(key)?;
    Ok((volume, token, key, c.u32("page size")?, c.u64("page")?))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn get() -> Get {
        Get {
            volume: Volume::new("vol1").expect("valid"),
            token: "secret-token".into(),
            key: ObjectKey::new("jfs/chunks/0/1/1234_0_4194304").expect("valid"),
            page_size: 4 << 20,
            page: 0,
            start: 0,
            len: 4 << 20,
        }
    }

    #[test]
    fn get_round_trips_and_hides_token() {
        let req = Request::Get(get());
        let frame = req.encode();
        assert_eq!(Request::decode(&frame), Ok(Some((req.clone(), frame.len()))));
        assert!(!format!("{req:?}").contains("secret-token"));
        assert_eq!(Request::decode(&Request::Status.encode()).map(|r| r.map(|r| r.0)), Ok(Some(Request::Status)));
    }

    #[test]
    fn warm_round_trips_and_checks_its_mode() {
        let g = get();
        for mode in [WarmMode::Fill, WarmMode::Check, WarmMode::Evict] {
            let w = Warm {
                volume: g.volume.clone(),
                token: g.token.clone(),
                key: g.key.clone(),
                page_size: g.page_size,
                page: 9,
                mode,
            };
            let frame = Request::Warm(w.clone()).encode();
            assert_eq!(Request::decode(&frame), Ok(Some((Request::Warm(w), frame.len()))));
        }
        let w = Warm {
            volume: g.volume.clone(),
            token: g.token.clone(),
            key: g.key,
            page_size: g.page_size,
            page: 0,
            mode: WarmMode::Fill,
        };
        let mut frame = Request::Warm(w).encode();
        *frame.last_mut().expect("mode byte") = 7;
        assert!(matches!(Request::decode(&frame), Err(WireError::Range(_))));
    }

    #[test]
    fn peek_members_and_drain_round_trip() {
        // A peek is always of a whole page: whatever range the caller had, none is sent.
        let peek = Request::Peek(Get { page: 3, ..get() });
        for req in [peek, Request::Members, Request::Drain] {
            let frame = req.encode();
            assert_eq!(Request::decode(&frame), Ok(Some((req, frame.len()))));
        }
        let partial = Request::Peek(Get { start: 10, len: 10, ..get() }).encode();
        assert_eq!(Request::decode(&partial).map(|r| r.map(|r| r.0)), Ok(Some(Request::Peek(get()))));
        // A members request has no body.
        let mut frame = Request::Members.encode();
        frame[2..6].copy_from_slice(&1u32.to_be_bytes());
        frame.push(0);
        assert_eq!(Request::decode(&frame), Err(WireError::Trailing(1)));
    }

    #[test]
    fn every_truncation_is_incomplete() {
        let frame = Request::Get(get()).encode();
        for cut in 0..frame.len() {
            assert_eq!(Request::decode(&frame[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn bad_frames_get_typed_errors() {
        let frame = Request::Get(get()).encode();
        let mut bad = frame.clone();
        bad[0] = 9;
        assert_eq!(Request::decode(&bad), Err(WireError::Version(9)));
        bad = frame.clone();
        bad[1] = 77;
        assert_eq!(Request::decode(&bad), Err(WireError::UnknownKind(77)));
        bad = frame.clone();
        bad[2..6].copy_from_slice(&(1u32 << 30).to_be_bytes());
        assert!(matches!(Request::decode(&bad), Err(WireError::TooLarge { what: "request body", .. })));
        // Body length says one byte more than the fields use.
        bad = frame.clone();
        bad[2..6].copy_from_slice(&((frame.len() - REQUEST_PREFIX_LEN + 1) as u32).to_be_bytes());
        bad.push(0);
        assert_eq!(Request::decode(&bad), Err(WireError::Trailing(1)));
        for (start, len, page) in [(0, 0, 0), (1, 4 << 20, 0), (0, 1, u64::MAX)] {
            let req = Request::Get(Get { start, len, page, ..get() });
            assert!(matches!(Request::decode(&req.encode()), Err(WireError::Range(_))));
        }
        let req = Request::Get(Get { page_size: 1000, len: 10, ..get() });
        assert!(matches!(Request::decode(&req.encode()), Err(WireError::Range(_))));
    }

    #[test]
    fn hostile_names_are_refused() {
        let mut frame = Request::Get(get()).encode();
        // Overwrite the key's first byte with '/', making it an absolute path.
        let key_at = REQUEST_PREFIX_LEN + 1 + 4 + 1 + "secret-token".len() + 2;
        frame[key_at] = b'/';
        assert!(matches!(Request::decode(&frame), Err(WireError::Name(_))));
    }

    proptest! {
        #[test]
        fn any_valid_get_round_trips(
            volume in "[a-z0-9._-]{1,64}",
            token in "[ -~]{0,255}",
            key in "[a-z0-9_]{1,20}(/[a-z0-9_]{1,20}){0,5}",
            shift in 16u32..=24,
            page in 0u64..(1 << 40),
            start_frac in 0.0f64..1.0,
            len_frac in 0.0f64..1.0,
        ) {
            let page_size = 1u32 << shift;
            let start = ((page_size - 1) as f64 * start_frac) as u32;
            let len = 1 + ((page_size - start - 1) as f64 * len_frac) as u32;
            let get = Get {
                volume: Volume::new(&volume).expect("valid"),
                token,
                key: ObjectKey::new(&key).expect("valid"),
                page_size, page, start, len,
            };
            let frame = Request::Get(get.clone()).encode();
            prop_assert_eq!(Request::decode(&frame), Ok(Some((Request::Get(get), frame.len()))));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Request::decode(&bytes);
        }

        #[test]
        fn mutated_frames_never_panic(pos in 0usize..64, byte in any::<u8>()) {
            let mut frame = Request::Get(get()).encode();
            let at = pos % frame.len();
            frame[at] = byte;
            let _ = Request::decode(&frame);
        }
    }
}
