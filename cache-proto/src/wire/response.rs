//! Response heads. A `Get` or a `Peek` is answered by a [`PageHead`] and `len` raw bytes, a
//! `Status`, `Members`, `Drain` or `Copy` by a JSON payload of `len` bytes, a `Warm` by its outcome, and
//! any of them by an [`ErrorHead`] with a status and a message.

use super::{
    MAX_ETAG_LEN, MAX_MESSAGE_LEN, MAX_RESPONSE_HEAD, MAX_STATUS_PAYLOAD, RESPONSE_PREFIX_LEN, VERSION, WireError,
    cursor::{Cursor, put_str},
    request::RequestKind,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    Ok = 0,
    /// No origin of the volume has the object.
    NotFound = 1,
    /// The token is not the volume's (or the client may not use this node).
    Unauthorized = 2,
    /// The node serves no volume of that name.
    UnknownVolume = 3,
    /// The request was well-formed but cannot be served as asked (e.g. another page size).
    BadRequest = 4,
    /// The origin failed or timed out while filling the page.
    OriginFailed = 5,
    /// The node is overloaded; ask elsewhere.
    Busy = 6,
    Internal = 7,
    /// (Peek) the page is not cached here.
    NotCached = 8,
    /// The client may not ask this (e.g. `Drain` from a certificate that is not an operator's).
    Forbidden = 9,
    /// (Get) Ok, sent while the node still reads the page from the origin: the head's digest is 0,
    /// and the digest follows the `len` bytes as 8 more. A node whose origin fails midway resets
    /// the stream with [`super::RESET_ORIGIN_FAILED`].
    Streamed = 10,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotFound => "not_found",
            Self::Unauthorized => "unauthorized",
            Self::UnknownVolume => "unknown_volume",
            Self::BadRequest => "bad_request",
            Self::OriginFailed => "origin_failed",
            Self::Busy => "busy",
            Self::Internal => "internal",
            Self::NotCached => "not_cached",
            Self::Forbidden => "forbidden",
            Self::Streamed => "streamed",
        }
    }
}

impl TryFrom<u8> for Status {
    type Error = WireError;
    fn try_from(v: u8) -> Result<Self, WireError> {
        Ok(match v {
            0 => Self::Ok,
            1 => Self::NotFound,
            2 => Self::Unauthorized,
            3 => Self::UnknownVolume,
            4 => Self::BadRequest,
            5 => Self::OriginFailed,
            6 => Self::Busy,
            7 => Self::Internal,
            8 => Self::NotCached,
            9 => Self::Forbidden,
            10 => Self::Streamed,
            other => return Err(WireError::UnknownStatus(other)),
        })
    }
}

/// Where the node found the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Tier {
    Memory = 0,
    Disk = 1,
    /// A miss: the node read the origin to answer.
    Origin = 2,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Disk => "disk",
            Self::Origin => "origin",
        }
    }
}

impl TryFrom<u8> for Tier {
    type Error = WireError;
    fn try_from(v: u8) -> Result<Self, WireError> {
        match v {
            0 => Ok(Self::Memory),
            1 => Ok(Self::Disk),
            2 => Ok(Self::Origin),
            other => Err(WireError::UnknownTier(other)),
        }
    }
}

/// The answer to a `Get`: `len` bytes follow, whose digest is `digest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageHead {
    /// Size of the whole object at the origin.
    pub object_size: u64,
    /// [`crate::digest::page_digest`] of the bytes that follow, bound to the request.
    pub digest: u64,
    pub len: u32,
    /// The answering node's ring epoch ([`crate::members::epoch`]): a client whose ring has
    /// another epoch asks for the members again.
    pub epoch: u64,
    pub tier: Tier,
    pub etag: Option<String>,
}

/// Bytes of a page head before its ETag: object size, digest, length, epoch, tier, ETag length.
const PAGE_HEAD_FIXED: usize = 8 + 8 + 4 + 8 + 1 + 1;
/// Largest page head frame (prefix included): what [`encode_page_head`] writes at most.
pub const MAX_PAGE_HEAD_FRAME: usize = RESPONSE_PREFIX_LEN + PAGE_HEAD_FIXED + MAX_ETAG_LEN;

/// Writes a page head frame into a stack buffer and returns its length: the answer to a cache
/// hit is encoded without allocating. An ETag over [`MAX_ETAG_LEN`] bytes is cut.
pub fn encode_page_head(out: &mut [u8; MAX_PAGE_HEAD_FRAME], head: &PageHeadRef<'_>) -> usize {
    let etag = head.etag.map_or(&b""[..], |e| &e.as_bytes()[..e.len().min(MAX_ETAG_LEN)]);
    let head_len = PAGE_HEAD_FIXED + etag.len();
    out[0] = VERSION;
    out[1] = Status::Ok as u8;
    out[2..4].copy_from_slice(&(head_len as u16).to_be_bytes());
    out[4..12].copy_from_slice(&head.object_size.to_be_bytes());
    out[12..20].copy_from_slice(&head.digest.to_be_bytes());
    out[20..24].copy_from_slice(&head.len.to_be_bytes());
    out[24..32].copy_from_slice(&head.epoch.to_be_bytes());
    out[32] = head.tier as u8;
    out[33] = etag.len() as u8;
    out[34..34 + etag.len()].copy_from_slice(etag);
    RESPONSE_PREFIX_LEN + head_len
}

/// [`encode_page_head`] for a [`Status::Streamed`] answer: the digest follows the bytes.
pub fn encode_streamed_page_head(out: &mut [u8; MAX_PAGE_HEAD_FRAME], head: &PageHeadRef<'_>) -> usize {
    let len = encode_page_head(out, &PageHeadRef { digest: 0, ..*head });
    out[1] = Status::Streamed as u8;
    len
}

/// A [`PageHead`] with a borrowed ETag, for encoding without allocating.
#[derive(Debug, Clone, Copy)]
pub struct PageHeadRef<'a> {
    pub object_size: u64,
    pub digest: u64,
    pub len: u32,
    pub epoch: u64,
    pub tier: Tier,
    pub etag: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorHead {
    pub status: Status,
    pub message: String,
}

/// What the owner did with a `Warm` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum WarmOutcome {
    /// The page was not cached; the node fetched it from the origin and cached it.
    Filled = 0,
    /// The page was already cached (memory or disk).
    Present = 1,
    /// (Check) the page is not cached.
    Absent = 2,
    /// (Evict) the page was dropped.
    Evicted = 3,
}

impl WarmOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Filled => "filled",
            Self::Present => "present",
            Self::Absent => "absent",
            Self::Evicted => "evicted",
        }
    }
}

impl TryFrom<u8> for WarmOutcome {
    type Error = WireError;
    fn try_from(v: u8) -> Result<Self, WireError> {
        match v {
            0 => Ok(Self::Filled),
            1 => Ok(Self::Present),
            2 => Ok(Self::Absent),
            3 => Ok(Self::Evicted),
            other => Err(WireError::Range(format!("unknown warm outcome {other}"))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseHead {
    Page(PageHead),
    /// The answer to `Warm`: what happened, and the object's size when the node knows it
    /// (`Filled` and `Present`), so a warmer learns how many pages an object has.
    Warm {
        outcome: WarmOutcome,
        object_size: Option<u64>,
    },
    /// The answer to `Status`, `Members` or `Drain`: `len` bytes of JSON follow.
    Status {
        len: u32,
    },
    Error(ErrorHead),
}

impl ResponseHead {
    pub fn error(status: Status, message: impl Into<String>) -> Self {
        Self::Error(ErrorHead { status, message: message.into() })
    }

    /// Bytes of payload that follow the head.
    pub fn payload_len(&self) -> u32 {
        match self {
            Self::Page(p) => p.len,
            Self::Status { len } => *len,
            Self::Warm { .. } | Self::Error(_) => 0,
        }
    }

    /// The whole head frame: prefix and head.
    pub fn encode(&self) -> Vec<u8> {
        let mut head = Vec::with_capacity(64);
        let status = match self {
            Self::Page(p) => {
                let mut buf = [0u8; MAX_PAGE_HEAD_FRAME];
                let head = PageHeadRef {
                    object_size: p.object_size,
                    digest: p.digest,
                    len: p.len,
                    epoch: p.epoch,
                    tier: p.tier,
                    etag: p.etag.as_deref(),
                };
                let n = encode_page_head(&mut buf, &head);
                return buf[..n].to_vec();
            }
            Self::Status { len } => {
                head.extend_from_slice(&len.to_be_bytes());
                Status::Ok
            }
            Self::Warm { outcome, object_size } => {
                head.push(*outcome as u8);
                head.extend_from_slice(&object_size.unwrap_or(u64::MAX).to_be_bytes());
                Status::Ok
            }
            Self::Error(e) => {
                // Cut long messages at a character boundary so the frame stays valid UTF-8.
                let mut end = e.message.len().min(MAX_MESSAGE_LEN);
                while !e.message.is_char_boundary(end) {
                    end -= 1;
                }
                put_str(&mut head, 2, MAX_MESSAGE_LEN, &e.message[..end]);
                e.status
            }
        };
        let mut out = Vec::with_capacity(RESPONSE_PREFIX_LEN + head.len());
        out.push(VERSION);
        out.push(status as u8);
        out.extend_from_slice(&(head.len() as u16).to_be_bytes());
        out.extend_from_slice(&head);
        out
    }

    /// Checks the fixed prefix and returns the status and the head length still to read.
    pub fn parse_prefix(prefix: &[u8; RESPONSE_PREFIX_LEN]) -> Result<(Status, usize), WireError> {
        if prefix[0] != VERSION {
            return Err(WireError::Version(prefix[0]));
        }
        let status = Status::try_from(prefix[1])?;
        let len = u16::from_be_bytes([prefix[2], prefix[3]]) as usize;
        if len > MAX_RESPONSE_HEAD {
            return Err(WireError::TooLarge { what: "response head", len, max: MAX_RESPONSE_HEAD });
        }
        Ok((status, len))
    }

    /// Decodes the head of the answer to a request of kind `kind`.
    pub fn decode_head(kind: RequestKind, status: Status, head: &[u8]) -> Result<Self, WireError> {
        let mut c = Cursor::new(head);
        let decoded = match (status, kind) {
            (Status::Ok, RequestKind::Get | RequestKind::Peek) | (Status::Streamed, RequestKind::Get) => {
                let object_size = c.u64("object size")?;
                let digest = c.u64("digest")?;
                let len = c.u32("payload length")?;
                let epoch = c.u64("epoch")?;
                let tier = Tier::try_from(c.u8("tier")?)?;
                let etag = c.str(1, MAX_ETAG_LEN, "etag")?;
                if u64::from(len) > object_size {
                    return Err(WireError::Range(format!("{len} bytes of an object of {object_size}")));
                }
                let etag = (!etag.is_empty()).then(|| etag.to_owned());
                Self::Page(PageHead { object_size, digest, len, epoch, tier, etag })
            }
            (Status::Ok, RequestKind::Status | RequestKind::Members | RequestKind::Drain | RequestKind::Copy) => {
                let len = c.u32("payload length")?;
                if len > MAX_STATUS_PAYLOAD {
                    return Err(WireError::TooLarge {
                        what: "status payload",
                        len: len as usize,
                        max: MAX_STATUS_PAYLOAD as usize,
                    });
                }
                Self::Status { len }
            }
            (Status::Ok, RequestKind::Warm) => {
                let outcome = WarmOutcome::try_from(c.u8("outcome")?)?;
                let size = c.u64("object size")?;
                Self::Warm { outcome, object_size: (size != u64::MAX).then_some(size) }
            }
            (Status::Streamed, kind) => return Err(WireError::Range(format!("a streamed answer to a {kind:?}"))),
            (status, _) => Self::Error(ErrorHead { status, message: c.str(2, MAX_MESSAGE_LEN, "message")?.to_owned() }),
        };
        c.finish()?;
        Ok(decoded)
    }

    /// Decodes one head frame from the front of `buf`: `Ok(None)` while incomplete.
    pub fn decode(kind: RequestKind, buf: &[u8]) -> Result<Option<(Self, usize)>, WireError> {
        let Some(prefix) = buf.first_chunk::<RESPONSE_PREFIX_LEN>() else { return Ok(None) };
        let (status, len) = Self::parse_prefix(prefix)?;
        let Some(head) = buf.get(RESPONSE_PREFIX_LEN..RESPONSE_PREFIX_LEN + len) else { return Ok(None) };
        Ok(Some((Self::decode_head(kind, status, head)?, RESPONSE_PREFIX_LEN + len)))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn page() -> ResponseHead {
        ResponseHead::Page(PageHead {
            object_size: 4 << 20,
            digest: 0xdead_beef,
            len: 1 << 20,
            epoch: 0x1234_5678_9abc,
            tier: Tier::Disk,
            etag: Some("\"abc\"".into()),
        })
    }

    #[test]
    fn heads_round_trip() {
        for (kind, head) in [
            (RequestKind::Get, page()),
            (RequestKind::Status, ResponseHead::Status { len: 300 }),
            (RequestKind::Get, ResponseHead::error(Status::Unauthorized, "bad token for volume vol1")),
            (RequestKind::Status, ResponseHead::error(Status::Internal, "")),
            (RequestKind::Warm, ResponseHead::Warm { outcome: WarmOutcome::Filled, object_size: Some(4 << 20) }),
            (RequestKind::Warm, ResponseHead::Warm { outcome: WarmOutcome::Absent, object_size: None }),
            (RequestKind::Peek, page()),
            (RequestKind::Peek, ResponseHead::error(Status::NotCached, "not here")),
            (RequestKind::Members, ResponseHead::Status { len: 10 }),
            (RequestKind::Drain, ResponseHead::error(Status::Forbidden, "not an operator")),
        ] {
            let frame = head.encode();
            assert_eq!(ResponseHead::decode(kind, &frame), Ok(Some((head, frame.len()))));
        }
    }

    #[test]
    fn truncations_are_incomplete_and_bad_bytes_typed() {
        let frame = page().encode();
        for cut in 0..frame.len() {
            assert_eq!(ResponseHead::decode(RequestKind::Get, &frame[..cut]), Ok(None));
        }
        let mut bad = frame.clone();
        bad[1] = 200;
        assert_eq!(ResponseHead::decode(RequestKind::Get, &bad), Err(WireError::UnknownStatus(200)));
        bad = frame.clone();
        bad[RESPONSE_PREFIX_LEN + 28] = 9;
        assert_eq!(ResponseHead::decode(RequestKind::Get, &bad), Err(WireError::UnknownTier(9)));
        // A payload longer than the object it claims to be part of.
        let lying = ResponseHead::Page(PageHead { object_size: 10, len: 11, ..page_head() });
        assert!(matches!(ResponseHead::decode(RequestKind::Get, &lying.encode()), Err(WireError::Range(_))));
        let huge = ResponseHead::Status { len: MAX_STATUS_PAYLOAD + 1 };
        assert!(matches!(ResponseHead::decode(RequestKind::Status, &huge.encode()), Err(WireError::TooLarge { .. })));
    }

    fn page_head() -> PageHead {
        match page() {
            ResponseHead::Page(p) => p,
            _ => unreachable!(),
        }
    }

    #[test]
    fn streamed_pages_carry_their_digest_after_the_bytes_and_answer_gets_only() {
        let p = page_head();
        let head = PageHeadRef {
            object_size: p.object_size,
            digest: 77,
            len: p.len,
            epoch: 1,
            tier: Tier::Origin,
            etag: None,
        };
        let mut buf = [0u8; MAX_PAGE_HEAD_FRAME];
        let n = encode_streamed_page_head(&mut buf, &head);
        let prefix = buf.first_chunk::<RESPONSE_PREFIX_LEN>().expect("prefix");
        let (status, len) = ResponseHead::parse_prefix(prefix).expect("prefix parses");
        assert_eq!((status, RESPONSE_PREFIX_LEN + len), (Status::Streamed, n));
        let body = &buf[RESPONSE_PREFIX_LEN..n];
        let Ok(ResponseHead::Page(got)) = ResponseHead::decode_head(RequestKind::Get, status, body) else {
            panic!("a streamed page head decodes for a Get");
        };
        assert_eq!((got.digest, got.len), (0, p.len), "the digest comes after the bytes");
        for kind in
            [RequestKind::Peek, RequestKind::Status, RequestKind::Warm, RequestKind::Members, RequestKind::Drain]
        {
            assert!(ResponseHead::decode_head(kind, status, body).is_err(), "{kind:?}");
        }
    }

    #[test]
    fn long_messages_are_cut_on_char_boundaries() {
        let head = ResponseHead::error(Status::OriginFailed, "é".repeat(MAX_MESSAGE_LEN));
        let Ok(Some((ResponseHead::Error(e), _))) = ResponseHead::decode(RequestKind::Get, &head.encode()) else {
            panic!("decodes");
        };
        assert!(e.message.len() <= MAX_MESSAGE_LEN && e.message.len() > MAX_MESSAGE_LEN - 2);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), get in any::<bool>()) {
            let kind = if get { RequestKind::Get } else { RequestKind::Status };
            let _ = ResponseHead::decode(kind, &bytes);
        }

        #[test]
        fn page_heads_round_trip(size in any::<u64>(), digest in any::<u64>(), len in any::<u32>(), etag in "[ -~]{0,255}") {
            let head = ResponseHead::Page(PageHead {
                object_size: size.max(u64::from(len)), digest, len, epoch: digest ^ 7, tier: Tier::Memory,
                etag: (!etag.is_empty()).then_some(etag),
            });
            let frame = head.encode();
            prop_assert_eq!(ResponseHead::decode(RequestKind::Get, &frame), Ok(Some((head, frame.len()))));
        }
    }
}
