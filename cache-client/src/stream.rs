//! [`Client::read_stream`]: a byte range of an object as it arrives, page by page, for callers
//! that pass the bytes on (the S3 gateway): no limit on the range's length, memory bounded by
//! [`PAGES_AHEAD`] pages, and the first byte ready once the first page is in, not the last.
//!
//! ```text
//!  read_stream ─ first piece (read_piece.rs): the object's size and ETag ─► ObjectStream { first }
//!                └ the other pieces, PAGES_AHEAD at a time, in order ─► ObjectStream::rest
//! ```
//! Every page is checked (digest, or read from the origin) before it is handed on, as in
//! [`Client::read`], in the parts it came off the stream in ([`Chunks`]: never copied here). A page that says the object has another size (it changed at the origin
//! between pages) ends the stream with [`ReadError::Changed`]: bytes already handed on cannot be
//! taken back, so a stream never mixes two versions of an object, and its reader sees an error
//! instead of a short or mixed body.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::{
    Client,
    chunks::Chunks,
    client::{PageTrace, ReadError},
};
use cache_proto::{
    key::{ObjectKey, Volume},
    page::pieces,
};

/// Pages read ahead of the one being handed on.
pub const PAGES_AHEAD: usize = 4;

/// A read whose first page is in: what it told of the object, and the bytes to come.
#[derive(Debug)]
pub struct ObjectStream {
    pub object_size: u64,
    pub etag: Option<String>,
    /// The range's length, cut at the object's end: what the stream yields in all.
    pub len: u64,
    /// How the first page was served.
    pub first_trace: PageTrace,
    /// The first piece's bytes (all of them when the range is within one page), in the parts
    /// they came in.
    pub first: Chunks,
    /// The other pieces, in order, each checked; `None` when `first` is all.
    pub rest: Option<Rest>,
}

/// The pieces after the first, read by a task of their own, [`PAGES_AHEAD`] at a time. Dropping
/// it stops the task.
#[derive(Debug)]
pub struct Rest(mpsc::Receiver<Result<Chunks, ReadError>>);

impl Stream for Rest {
    type Item = Result<Chunks, ReadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

impl Client {
    /// Bytes `[offset, offset + len)` of `key`, cut at the object's end, as they arrive: the
    /// first piece is read before this returns (it tells the object's size), the others by a
    /// task, in order. An offset past the end is [`ReadError::OutOfRange`].
    pub async fn read_stream(
        self: &Arc<Self>,
        volume: &Volume,
        key: &ObjectKey,
        offset: u64,
        len: u64,
    ) -> Result<ObjectStream, ReadError> {
        let cv = self.volumes.get(volume).ok_or_else(|| ReadError::UnknownVolume(volume.to_string()))?;
        let mut parts =
            pieces(offset, len, self.page_size).ok_or(ReadError::TooLarge { len, max: u64::MAX - offset })?;
        let Some(first) = parts.next() else {
            let trace = PageTrace { page: 0, source: crate::stats::Source::Origin, passed_over: Vec::new() };
            return Ok(ObjectStream {
                object_size: 0,
                etag: None,
                len: 0,
                first_trace: trace,
                first: Chunks::default(),
                rest: None,
            });
        };
        let head = self.read_piece(volume, cv, key, first).await?;
        let size = head.object_size;
        if offset > size {
            return Err(ReadError::OutOfRange { key: key.to_string(), offset, size });
        }
        let end = offset.saturating_add(len).min(size);
        let page_size = self.page_size;
        let rest: Vec<_> = parts
            .take_while(|p| p.offset(page_size) < end)
            .map(|mut p| {
                p.len = p.len.min((end - p.offset(page_size)) as u32);
                p
            })
            .collect();
        let rest = (!rest.is_empty()).then(|| {
            let (tx, rx) = mpsc::channel(1);
            let (client, volume, key) = (self.clone(), volume.clone(), key.clone());
            tokio::spawn(async move {
                let Some(cv) = client.volumes.get(&volume) else { return };
                let mut reads = futures::stream::iter(rest)
                    .map(|p| {
                        let read = client.read_piece(&volume, cv, &key, p);
                        async move { read.await.map(|r| (r, p.len)) }
                    })
                    .buffered(PAGES_AHEAD);
                while let Some(read) = reads.next().await {
                    let item = match read {
                        Ok((r, want)) if r.object_size == size && r.bytes.len() == want as usize => Ok(r.bytes),
                        Ok(_) => Err(ReadError::Changed { key: key.to_string() }),
                        Err(e) => Err(e),
                    };
                    let failed = item.is_err();
                    // The reader went away, or the stream ends with this error.
                    if tx.send(item).await.is_err() || failed {
                        return;
                    }
                }
            });
            Rest(rx)
        });
        Ok(ObjectStream {
            object_size: size,
            etag: head.etag,
            len: end.saturating_sub(offset),
            first_trace: head.trace,
            first: head.bytes,
            rest,
        })
    }
}
