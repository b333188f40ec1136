//! The mirrorcache wire protocol, version 1: pure encode and decode, no I/O.
//!
//! One request per bidirectional QUIC stream (ALPN `mirrorcache/1`):
//!
//! ```text
//! client → node   request  = version u8 | kind u8 | body_len u32 | body
//! node → client   response = version u8 | status u8 | head_len u16 | head | payload
//! ```
//!
//! Integers are big-endian. Every length is checked against its limit before anything is
//! allocated ("check, then parse"), and every decode error is typed: bytes from a peer never reach
//! an `unwrap`. [`request`] holds the requests, [`response`] the answer heads, [`status`] and
//! [`members`] the JSON payloads.

pub mod copy;
mod cursor;
pub mod members;
pub mod request;
pub mod response;
pub mod status;

pub use copy::{Copy, CopyAnswer, CopyDone, CopyMode, CopyView};
pub use members::{MemberInfo, MemberState, MembersAnswer};
pub use request::{Get, GetView, Request, RequestKind, RequestView, Warm, WarmMode};
pub use response::{
    ErrorHead, MAX_PAGE_HEAD_FRAME, PageHead, PageHeadRef, ResponseHead, Status, Tier, WarmOutcome, encode_page_head,
    encode_streamed_page_head,
};
pub use status::{NodeStatus, OriginUse, ResyncReport, VolumeUse};

use crate::key::NameError;

/// Protocol version carried in every frame (and in the ALPN).
pub const VERSION: u8 = 1;
/// Bytes before a request body: version, kind, body length.
pub const REQUEST_PREFIX_LEN: usize = 6;
/// Bytes before a response head: version, status, head length.
pub const RESPONSE_PREFIX_LEN: usize = 4;
/// Largest request body (a `Get` with the longest key, volume and token fits with room to spare).
pub const MAX_REQUEST_BODY: usize = 4096;
/// Largest response head (the error message is the variable part).
pub const MAX_RESPONSE_HEAD: usize = 4096;
/// Longest volume token.
pub const MAX_TOKEN_LEN: usize = 255;
/// Longest ETag carried in a page head.
pub const MAX_ETAG_LEN: usize = 255;
/// Longest error message carried in an error head.
pub const MAX_MESSAGE_LEN: usize = 2048;
/// Bytes of the digest after a [`Status::Streamed`] page.
pub const TRAILER_LEN: usize = 8;
/// Stream reset code of a node whose origin failed while it streamed a page: the client treats
/// it as an `OriginFailed` answer.
pub const RESET_ORIGIN_FAILED: u32 = 0x6f66;
/// Largest `Status` payload (JSON).
pub const MAX_STATUS_PAYLOAD: u32 = 1 << 20;

/// Why a frame could not be decoded. The peer sent something this version does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("unsupported protocol version {0} (this side speaks {VERSION})")]
    Version(u8),
    #[error("unknown request kind {0}")]
    UnknownKind(u8),
    #[error("unknown response status {0}")]
    UnknownStatus(u8),
    #[error("unknown tier {0}")]
    UnknownTier(u8),
    #[error("{what} is {len} bytes, more than the limit of {max}")]
    TooLarge { what: &'static str, len: usize, max: usize },
    #[error("frame ends inside {what}")]
    Truncated { what: &'static str },
    #[error("{0} unexpected bytes after the frame")]
    Trailing(usize),
    #[error("{what} is not UTF-8")]
    Utf8 { what: &'static str },
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("bad range: {0}")]
    Range(String),
}
