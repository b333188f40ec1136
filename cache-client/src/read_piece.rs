//! One piece of a [`Client::read`]: the page's owner, then the next distinct node on the ring,
//! then the origin.
//!
//! ```text
//!  read_piece      for the owner and the next node:
//!    ask_with_hedge   ask one node; if its answer has not begun (no head) after the node's
//!                     usual head time (`latency.rs`, at most hedge_after), also `hedge` (peek
//!                     the next node, then escalate to a get unless the owner began meanwhile)
//!                     and `wait_set_aside` (give up on a node set aside); a node still silent at
//!                     hedge_after is struck. An answer that has begun is waited for while its
//!                     bytes keep coming, unless it is a cached page that crawls
//!    ask = open       send the request, wait for the head, check the length it gives
//!        + finish     read the bytes as they come, check the digest  -> NodePage or Pass; a
//!                     cached page far slower than the cluster's usual rate is dropped (within
//!                     the hedge budget) and struck, and the read moves to the next node
//!    pass_over        count and trace why a node's answer was not used
//!  origin_piece    the fallback: the origin itself
//! ```
//!
//! A hedge costs at most about one extra request in ten (`hedge.rs`); an owner that does not begin
//! answering within `hedge_after`, or sends a cached page at a crawl, three times in ten seconds
//! is set aside by the pool, and reads waiting on it (with no answer begun) move on. An owner
//! filling a page from a slow origin begins its answer when the origin's head is in and sends at
//! the origin's pace, so it is neither hedged with a second fill nor set aside: one origin GET
//! per page, however slow the origin.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use bytes::Bytes;

use crate::{
    Client,
    chunks::Chunks,
    client::{ClientVolume, PageTrace, ReadError},
    origin::OriginError,
    pool::{Answering, ExchangeError},
    stats::{Fallback, Source},
};
use cache_proto::{
    digest::page_digest_parts,
    key::{ObjectKey, Volume},
    page::Piece,
    ring::{Member, page_point},
    wire::{Get, Request, ResponseHead, Status, Tier, WireError},
};

/// Nodes asked for a page before the origin: the owner and the next one on the ring.
pub const NODE_TRIES: usize = 2;
/// A hedge whose peek missed asks the next node for the page itself after this many
/// `hedge_after`s in all.
const ESCALATE: u32 = 4;
/// How often a read waiting on a slow node checks whether that node has been set aside.
const SET_ASIDE_POLL: Duration = Duration::from_millis(100);

/// One piece of a read, with where it came from.
pub(crate) struct PieceRead {
    pub(crate) bytes: Chunks,
    pub(crate) object_size: u64,
    pub(crate) etag: Option<String>,
    pub(crate) trace: PageTrace,
}

/// A node's checked answer for one piece.
struct NodePage {
    bytes: Chunks,
    object_size: u64,
    tier: Tier,
    etag: Option<String>,
    epoch: u64,
}

/// Why a node's answer was not used.
enum Pass {
    Exchange(ExchangeError),
    Refused {
        status: Status,
        message: String,
    },
    /// A get answered with something that is not a page.
    NotAPage,
    Corrupt,
    /// A cached page whose bytes came far slower than the cluster's usual rate.
    Crawling {
        after: Duration,
    },
}

impl Pass {
    /// The node read the origin and it failed (or has no such object): the next node would only
    /// repeat that GET.
    fn origin_said_no(&self) -> bool {
        matches!(self, Self::Refused { status: Status::NotFound | Status::OriginFailed, .. })
    }
}

/// What is asked of each node for one piece.
struct PieceAsk<'a> {
    volume: &'a Volume,
    key: &'a ObjectKey,
    piece: Piece,
    /// The piece itself.
    get: Request,
    /// A hedge asks for the whole page, and only if it is cached.
    peek: Request,
}

impl Client {
    /// One piece: the owner and the next node (each with a hedge), then the origin.
    pub(crate) async fn read_piece(
        &self,
        volume: &Volume,
        cv: &ClientVolume,
        key: &ObjectKey,
        piece: Piece,
    ) -> Result<PieceRead, ReadError> {
        let get = Get {
            volume: volume.clone(),
            token: cv.token.clone(),
            key: key.clone(),
            page_size: self.page_size,
            page: piece.page,
            start: piece.start,
            len: piece.len,
        };
        let at = PieceAsk {
            volume,
            key,
            piece,
            peek: Request::Peek(Get { start: 0, len: self.page_size, ..get.clone() }),
            get: Request::Get(get),
        };
        let mut passed_over = Vec::new();
        self.ensure_ring().await;
        let view = self.ring();
        let nodes: Vec<&Member> =
            view.ring.walk(page_point(volume, key, piece.page)).take(NODE_TRIES).map(|i| view.ring.member(i)).collect();
        for (i, &primary) in nodes.iter().enumerate() {
            let backup = nodes.get(i + 1).copied();
            match self.ask_with_hedge(&at, primary, backup, &mut passed_over).await {
                (member, Ok(NodePage { bytes, object_size, tier, etag, epoch })) => {
                    self.note_epoch(epoch, member).await;
                    let source = Source::Node { id: member.id.to_string(), tier };
                    self.stats.record_source(&source);
                    let trace = PageTrace { page: piece.page, source, passed_over };
                    return Ok(PieceRead { bytes, object_size, etag, trace });
                }
                (member, Err(pass)) => {
                    // Ask the origin once ourselves instead (a node is never trusted to fail a
                    // read).
                    let origin_said_no = pass.origin_said_no();
                    self.pass_over(&at, member, pass, &mut passed_over);
                    if origin_said_no {
                        break;
                    }
                }
            }
        }
        self.origin_piece(cv, key, piece, passed_over).await
    }

    /// Asks `primary`; if its answer has not begun within `hedge_after`, also hedges to `backup`
    /// and watches for `primary` being set aside. An owner whose answer has begun is waited for
    /// as long as its bytes keep coming: it is filling the page from the origin, and a request
    /// elsewhere would only fill it a second time. The first good answer wins; the member
    /// returned is the one that answered (or failed).
    async fn ask_with_hedge<'m>(
        &self,
        at: &PieceAsk<'_>,
        primary: &'m Member,
        backup: Option<&'m Member>,
        passed_over: &mut Vec<String>,
    ) -> (&'m Member, Result<NodePage, Pass>) {
        self.hedges.earn();
        let sent = self.pool.heard(primary);
        let answering = AtomicBool::new(false);
        let asked = Instant::now();
        let mut first = std::pin::pin!(async {
            let open = self.open(primary, &at.get, at).await?;
            self.pool.note_head(primary, asked.elapsed());
            answering.store(true, Ordering::Relaxed);
            self.finish(primary, open, at, backup.is_some()).await
        });
        let hedge_after = self.timeouts.hedge_after.0;
        let may_wait = !hedge_after.is_zero();
        // After the owner's usual head time (at most `hedge_after`): see `latency.rs`.
        let hedge_at = self.pool.hedge_after(primary, hedge_after);
        tokio::select! {
            r = &mut first => return (primary, r),
            _ = tokio::time::sleep(hedge_at), if may_wait => {}
        }
        if answering.load(Ordering::Relaxed) {
            return (primary, first.await);
        }
        // The owner has not begun to answer. Within the budget the next node is asked
        // (`hedge`); the first good answer wins. If the owner has still not begun by
        // `hedge_after` (and sent nothing at all), that is a strike: enough of them and it is
        // set aside (probed again later), and a read waiting on it gives up on it.
        let Some(backup) = backup else {
            // Setting the last node aside would send every read to the origin.
            return (primary, first.await);
        };
        let strike = async {
            tokio::time::sleep(hedge_after.saturating_sub(hedge_at)).await;
            if !answering.load(Ordering::Relaxed) {
                self.pool.note_slow(primary, sent);
            }
            std::future::pending::<std::convert::Infallible>().await
        };
        tokio::select! {
            r = &mut first => (primary, r),
            page = self.hedge(at, primary, backup, hedge_after, &answering) => {
                self.stats.record_fallback(Fallback::HedgeWon);
                passed_over.push(format!("node {} had not answered within {hedge_at:?}", primary.id));
                (backup, Ok(page))
            }
            () = self.wait_set_aside(primary, &answering) => {
                let node = primary.id.to_string();
                (primary, Err(Pass::Exchange(ExchangeError::SetAside { node })))
            }
            never = strike => match never {},
        }
    }

    /// A hedge to `backup`, within the budget: a peek (the page if cached: no origin GET), then
    /// after `ESCALATE x hedge_after` in all a full get, but only if the owner has neither begun
    /// its answer nor sent anything at all meanwhile (a cold page costs a second origin GET, so
    /// it waits longer, and never races a fill the owner is streaming or has queued behind
    /// others). Never finishes unless it has a good answer.
    async fn hedge(
        &self,
        at: &PieceAsk<'_>,
        owner: &Member,
        backup: &Member,
        hedge_after: Duration,
        answering: &AtomicBool,
    ) -> NodePage {
        if !self.hedges.try_spend() {
            return std::future::pending().await;
        }
        self.stats.record_fallback(Fallback::Hedged);
        let heard = self.pool.heard(owner);
        if let Ok(page) = self.ask(backup, &at.peek, at).await {
            return page;
        }
        tokio::time::sleep(hedge_after * (ESCALATE - 1)).await;
        // ESCALATE - 1 hedge_afters (1.5 s by default) hold a keep-alive of a live owner.
        let owner_busy = answering.load(Ordering::Relaxed) || self.pool.heard_since(owner, heard);
        if owner_busy || !self.hedges.try_spend() {
            return std::future::pending().await;
        }
        self.stats.record_fallback(Fallback::HedgeEscalated);
        match self.ask(backup, &at.get, at).await {
            Ok(page) => page,
            Err(_) => std::future::pending().await,
        }
    }

    /// Finishes once the pool has set `member` aside, unless its answer has begun by then.
    async fn wait_set_aside(&self, member: &Member, answering: &AtomicBool) {
        while !self.pool.is_set_aside(member) || answering.load(Ordering::Relaxed) {
            tokio::time::sleep(SET_ASIDE_POLL).await;
        }
    }

    /// Counts and traces why `member`'s answer was not used.
    fn pass_over(&self, at: &PieceAsk<'_>, member: &Member, pass: Pass, passed_over: &mut Vec<String>) {
        let id = &member.id;
        let (fallback, why) = match pass {
            Pass::Exchange(e) => (e.fallback(), e.to_string()),
            Pass::Refused { status, message } => (Fallback::Refused(status), format!("node {id} refused: {message}")),
            Pass::NotAPage => (Fallback::NotAPage, format!("node {id} refused: status answer to a get")),
            Pass::Corrupt => (Fallback::Corrupt, format!("node {id} sent bytes that fail their digest")),
            Pass::Crawling { after } => {
                (Fallback::Crawling, format!("node {id} had not sent a cached page within {after:?}: too slow"))
            }
        };
        tracing::debug!(volume = %at.volume, key = %at.key, page = at.piece.page, %why, "passing over a node");
        self.stats.record_fallback(fallback);
        passed_over.push(why);
    }

    /// The fallback: `piece` from the volume's origin chain. A piece past the object's end is
    /// empty.
    async fn origin_piece(
        &self,
        cv: &ClientVolume,
        key: &ObjectKey,
        piece: Piece,
        passed_over: Vec<String>,
    ) -> Result<PieceRead, ReadError> {
        let start = piece.offset(self.page_size);
        let after = self.timeouts.origin_timeout.0;
        let (bytes, object_size, etag) =
            match tokio::time::timeout(after, cv.origin.get_range(key, start..start + u64::from(piece.len))).await {
                Err(_) => return Err(ReadError::OriginTimeout { key: key.to_string(), after }),
                Ok(Ok(read)) => (read.bytes, read.object_size, read.etag),
                Ok(Err(OriginError::OutOfRange { size, .. })) => (Bytes::new(), size, None),
                Ok(Err(e)) => return Err(e.into()),
            };
        self.stats.record_source(&Source::Origin);
        let trace = PageTrace { page: piece.page, source: Source::Origin, passed_over };
        Ok(PieceRead { bytes: bytes.into(), object_size, etag, trace })
    }

    /// One node's answer for one piece, checked: [`Self::open`], then [`Self::finish`].
    async fn ask(&self, member: &Member, request: &Request, at: &PieceAsk<'_>) -> Result<NodePage, Pass> {
        let open = self.open(member, request, at).await?;
        self.finish(member, open, at, false).await
    }

    /// Sends `request` and waits for the answer's head (within the page deadline): the length it
    /// gives must be what the object size it reports implies.
    async fn open(&self, member: &Member, request: &Request, at: &PieceAsk<'_>) -> Result<Opened, Pass> {
        let piece = at.piece;
        // A peek answers with the whole page; it is checked whole, then cut to the piece.
        let whole = matches!(request, Request::Peek(_));
        let (start, len) = if whole { (0, self.page_size) } else { (piece.start, piece.len) };
        let offset = piece.page * u64::from(self.page_size) + u64::from(start);
        let expected = |size: u64| size.saturating_sub(offset).min(u64::from(len));
        let accept = |head: &ResponseHead| match head {
            ResponseHead::Page(p) if u64::from(p.len) != expected(p.object_size) => Err(WireError::Range(format!(
                "{} bytes for a piece that should have {}",
                p.len,
                expected(p.object_size)
            ))),
            _ => Ok(()),
        };
        let answering =
            self.pool.request(member, request, self.timeouts.page_timeout.0, accept).await.map_err(Pass::Exchange)?;
        Ok(Opened { answering, whole, start })
    }

    /// The rest of an opened answer: its bytes as long as they keep coming (a gap longer than
    /// the page deadline ends it), checked against the digest, bound to the request. A cached
    /// page that crawls (far below the cluster's usual rate: `latency.rs`) is dropped, within
    /// the hedge budget, so the read moves to the next node (`next`: there is one; the last
    /// node's cached page beats the origin however slowly it comes); a page the node is filling
    /// from the origin comes at the origin's pace and is waited for.
    async fn finish(&self, member: &Member, opened: Opened, at: &PieceAsk<'_>, next: bool) -> Result<NodePage, Pass> {
        let Opened { answering, whole, start } = opened;
        let piece = at.piece;
        let cached = matches!(&answering.head, ResponseHead::Page(p) if p.tier != Tier::Origin);
        let hedge_after = self.timeouts.hedge_after.0;
        let crawling_after = (next && cached && !hedge_after.is_zero())
            .then(|| self.pool.crawling_after(u64::from(answering.head.payload_len()), hedge_after))
            .flatten();
        let began = Instant::now();
        let mut body = std::pin::pin!(answering.payload_chunks(Some(self.timeouts.page_timeout.0)));
        let body = match crawling_after {
            None => body.await,
            Some(after) => tokio::select! {
                r = &mut body => r,
                () = tokio::time::sleep(after) => {
                    if self.hedges.try_spend() {
                        self.pool.note_crawling(member);
                        return Err(Pass::Crawling { after });
                    }
                    body.await
                }
            },
        };
        let (head, payload) = body.map_err(Pass::Exchange)?;
        if cached {
            self.pool.note_payload(member, payload.len() as u64, began.elapsed());
        }
        match head {
            ResponseHead::Page(p) => {
                let parts = payload.parts().iter().map(|b| &b[..]);
                if self.verify_digests && page_digest_parts(at.volume, at.key, piece.page, start, parts) != p.digest {
                    return Err(Pass::Corrupt);
                }
                let bytes = if whole {
                    let from = (piece.start as usize).min(payload.len());
                    payload.slice(from..(from + piece.len as usize).min(payload.len()))
                } else {
                    payload
                };
                Ok(NodePage { bytes, object_size: p.object_size, tier: p.tier, etag: p.etag, epoch: p.epoch })
            }
            ResponseHead::Error(e) => Err(Pass::Refused { status: e.status, message: e.message }),
            ResponseHead::Status { .. } | ResponseHead::Warm { .. } => Err(Pass::NotAPage),
        }
    }
}

/// An answer whose head has arrived and checked out.
struct Opened {
    answering: Answering,
    /// A peek: the whole page, to be cut to the piece.
    whole: bool,
    /// Where in the page the answer's bytes start.
    start: u32,
}
