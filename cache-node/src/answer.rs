//! The bytes a node sends back for one request, built without I/O: a head frame (a page head
//! encoded on the stack, so a memory hit allocates nothing, or any other head), then either the
//! payload (a `Bytes` slice of the cached page) or, for a miss this request fills from the
//! origin, the page's bytes as they arrive and the digest after them ([`Streamed`]).
//!
//! An [`AnswerHook`] given to [`crate::Node::build`] in [`Hooks`] sees every answer before it is
//! written: how the test harness injects faults (a node with bad memory) without a switch in
//! the product binary.

use std::{fmt, ops::Range, sync::Arc};

use bytes::Bytes;
use cache_client::origin::OriginEvent;
use cache_proto::{
    digest::page_digest,
    wire::{GetView, MAX_PAGE_HEAD_FRAME, PageHeadRef, ResponseHead, Tier, encode_page_head},
};
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use crate::store::Page;

/// Sees (and may change) every answer before the server writes it. Only tests install one.
pub type AnswerHook = Arc<dyn for<'a> Fn(Answer<'a>) -> Answer<'a> + Send + Sync>;

/// What a test may install in a node it builds: nothing a config file or the environment can
/// turn on, so a product binary cannot be made to misbehave.
#[derive(Default, Clone)]
pub struct Hooks {
    /// Sees every answer before it is written (e.g. the harness's corrupting node).
    pub answer: Option<AnswerHook>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks").field("answer", &self.answer.is_some()).finish()
    }
}

/// The bytes to send back for one request: a head frame, then the payload, or the bytes of a
/// page still being read from the origin and then its digest (`streamed`, payload empty).
#[derive(Debug)]
pub struct Answer<'a> {
    head: Head,
    pub payload: Bytes,
    pub streamed: Option<Streamed<'a>>,
}

/// A head frame: a page head inline (no allocation), any other head in `spilled`.
#[derive(Debug)]
struct Head {
    inline: [u8; MAX_PAGE_HEAD_FRAME],
    len: usize,
    spilled: Vec<u8>,
}

impl Answer<'_> {
    pub(crate) fn other(head: ResponseHead, payload: Bytes) -> Self {
        Self {
            head: Head { inline: [0; MAX_PAGE_HEAD_FRAME], len: 0, spilled: head.encode() },
            payload,
            streamed: None,
        }
    }

    /// A page head frame encoded into a stack buffer (`encode` writes it and returns its length).
    pub(crate) fn page(
        encode: impl FnOnce(&mut [u8; MAX_PAGE_HEAD_FRAME]) -> usize,
        payload: Bytes,
        streamed: Option<Streamed<'_>>,
    ) -> Answer<'_> {
        let mut buf = [0u8; MAX_PAGE_HEAD_FRAME];
        let len = encode(&mut buf);
        Answer { head: Head { inline: buf, len, spilled: Vec::new() }, payload, streamed }
    }

    /// The whole payload, a streamed one run to its end (`None`: its fill failed), for callers
    /// that take an answer at once rather than as it arrives (tests).
    pub async fn into_payload(self) -> Option<Bytes> {
        match self.streamed {
            Some(streamed) => streamed.rest.await.map(|(bytes, _)| bytes),
            None => Some(self.payload),
        }
    }

    pub fn head(&self) -> &[u8] {
        if self.head.spilled.is_empty() { &self.head.inline[..self.head.len] } else { &self.head.spilled }
    }
}

/// The part of an [`Answer`] still to come from the origin.
pub struct Streamed<'a> {
    /// The origin read as it goes: its head, then body chunks from the page's first byte.
    pub events: mpsc::UnboundedReceiver<OriginEvent>,
    /// The bytes of the page this answer carries (the request's piece).
    pub window: Range<usize>,
    /// The rest of the request: the filled piece and its digest, or `None` if the fill failed
    /// or filled a piece of another length than the head announced.
    pub rest: BoxFuture<'a, Option<(Bytes, u64)>>,
}

impl fmt::Debug for Streamed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Streamed").field("window", &self.window).finish_non_exhaustive()
    }
}

/// The part of `chunk` (page bytes `at..at + chunk.len()`) that a piece of the page (`window`)
/// still needs once `sent` of its bytes are out. Chunks arrive in order.
pub fn wanted(window: &Range<usize>, chunk: &Bytes, at: usize, sent: usize) -> Option<Bytes> {
    let from = at.max(window.start + sent);
    let to = (at + chunk.len()).min(window.end);
    (from < to).then(|| chunk.slice(from - at..to - at))
}

/// The asked-for part of a page and its digest: the one computed at fill time for a whole page,
/// else one computed over the part.
pub(crate) fn piece(get: &GetView<'_>, page: &Page) -> (Bytes, u64) {
    let have = page.bytes.len();
    let start = (get.start as usize).min(have);
    let end = (start + get.len as usize).min(have);
    let bytes = page.bytes.slice(start..end);
    let digest = if start == 0 && end == have && have > 0 {
        page.digest
    } else {
        page_digest(get.volume, get.key, get.page, get.start, &bytes)
    };
    (bytes, digest)
}

/// The asked-for part of `page` as a page answer from `tier`, its head encoded on the stack.
pub(crate) fn page_answer(get: &GetView<'_>, page: &Page, tier: Tier, epoch: u64) -> Answer<'static> {
    let (bytes, digest) = piece(get, page);
    let head = PageHeadRef {
        object_size: page.object_size,
        digest,
        len: bytes.len() as u32,
        epoch,
        tier,
        etag: page.etag.as_deref(),
    };
    Answer::page(|buf| encode_page_head(buf, &head), bytes, None)
}

pub(crate) fn json_answer(value: &impl serde::Serialize) -> Answer<'static> {
    let json = serde_json::to_vec(value).unwrap_or_default();
    Answer::other(ResponseHead::Status { len: json.len() as u32 }, Bytes::from(json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_cuts_chunks_to_the_piece_and_skips_what_was_sent() {
        let w = 10..30;
        let chunk = Bytes::from((0u8..16).collect::<Vec<_>>());
        // Page bytes 0..16: the piece starts at 10.
        assert_eq!(wanted(&w, &chunk, 0, 0).as_deref(), Some(&[10u8, 11, 12, 13, 14, 15][..]));
        // Page bytes 16..32, after 6 sent: 16..30.
        assert_eq!(wanted(&w, &chunk, 16, 6).map(|b| b.len()), Some(14));
        // Entirely before the piece, or all of it already sent.
        assert_eq!(wanted(&w, &chunk.slice(..8), 0, 0), None);
        assert_eq!(wanted(&w, &chunk, 16, 20), None);
        // Past the piece's end.
        assert_eq!(wanted(&w, &chunk, 32, 20), None);
    }
}
