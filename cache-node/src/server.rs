//! The QUIC side of a node: accept connections (mTLS checked by rustls), accept one
//! bidirectional stream per request, read the request frame, let the [`Service`] answer, and
//! write the head and the page bytes (a `Bytes` slice of the cached page: no copy).
//!
//! ```text
//! endpoint.accept ─► connection task ─► stream task: read prefix ─► read body ─► Service::answer
//!                                                    ─► write head ─► write_chunk(page) ─► finish
//! ```
//! Every wait has a deadline; a malformed frame is answered `BadRequest` and the stream closed
//! (so is a frame cut short by the end of the stream, one followed by more bytes, and a request
//! not complete by [`REQUEST_DEADLINE`]), and nothing a peer sends can panic the node.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use cache_client::{node_cert::peer_name, origin::OriginEvent};
use cache_proto::wire::{
    MAX_REQUEST_BODY, REQUEST_PREFIX_LEN, RESET_ORIGIN_FAILED, Request, RequestView, Status, WireError,
};
use futures::FutureExt;
use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    answer::{Answer, Streamed, wanted},
    metrics::ErrorKind,
    service::Service,
};

/// Deadline for a client to send its whole request after opening a stream.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Deadline for the client to take the whole answer (a 16 MiB page at 10 MB/s, with room).
const RESPONSE_DEADLINE: Duration = Duration::from_secs(60);
/// Deadline for a TLS handshake.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// Accepts connections until `shutdown` fires; streams in flight are tracked by `tracker` so
/// shutdown can let them finish.
pub async fn serve(
    endpoint: quinn::Endpoint,
    service: Arc<Service>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let incoming = tokio::select! {
            _ = shutdown.cancelled() => break,
            incoming = endpoint.accept() => match incoming {
                Some(i) => i,
                None => break,
            },
        };
        let (service, shutdown, streams) = (service.clone(), shutdown.clone(), tracker.clone());
        tracker.spawn(async move {
            let conn = match tokio::time::timeout(HANDSHAKE_DEADLINE, incoming).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => {
                    service.metrics().error(ErrorKind::Protocol);
                    tracing::debug!(error = %e, "handshake failed");
                    return;
                }
                Err(_) => return,
            };
            serve_connection(conn, service, shutdown, streams).await;
        });
    }
}

async fn serve_connection(
    conn: quinn::Connection,
    service: Arc<Service>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    // Who the peer is: the name in its certificate (operators may drain), and whether it is a
    // node of this cluster (only nodes are heard on gossip).
    let peer: Option<Arc<str>> = peer_name(&conn).map(Arc::from);
    let gossip = service.gossip.as_ref().filter(|_| service.node_certs.node_id(&conn).is_some());
    if let Some(gossip) = gossip {
        tracker.spawn(read_gossip(conn.clone(), gossip.inbound.clone(), shutdown.clone()));
    }
    let hears_gossip = gossip.is_some();
    loop {
        let (send, recv) = tokio::select! {
            _ = shutdown.cancelled() => return,
            // Datagrams carry gossip, heard from nodes only. Anyone else's are dropped as they
            // come: unread, each connection would keep up to quinn's datagram receive buffer
            // (1.25 MB) of them until it closes.
            datagram = conn.read_datagram(), if !hears_gossip => match datagram {
                Ok(_) => {
                    service.metrics().error(ErrorKind::Protocol);
                    continue;
                }
                Err(_) => return,
            },
            stream = conn.accept_bi() => match stream {
                Ok(s) => s,
                Err(e) => {
                    tracing::trace!(peer = %conn.remote_address(), error = %e, "connection ended");
                    return;
                }
            },
        };
        let (service, peer) = (service.clone(), peer.clone());
        tracker.spawn(async move {
            if let Err(e) = serve_stream(send, recv, &service, peer.as_deref()).await {
                tracing::debug!(error = %e, "stream ended early");
            }
        });
    }
}

#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("no complete request within {REQUEST_DEADLINE:?}")]
    RequestTimeout,
    #[error("client did not take the answer within {RESPONSE_DEADLINE:?}")]
    ResponseTimeout,
    #[error("read: {0}")]
    Read(#[from] quinn::ReadExactError),
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("stream closed: {0}")]
    Closed(#[from] quinn::ClosedStream),
}

/// The answer to one request frame (prefix and body): the node's whole request handling
/// between the socket reads and writes. A malformed frame is answered `BadRequest`.
pub async fn respond<'a>(
    service: &'a Service,
    prefix: &[u8; REQUEST_PREFIX_LEN],
    body: &'a [u8],
    peer: Option<&str>,
) -> Answer<'a> {
    let request = Request::parse_prefix(prefix).and_then(|(kind, _)| RequestView::decode_body(kind, body));
    match request {
        Ok(request) => service.answer(request, peer).await,
        Err(e) => service.refuse(ErrorKind::Protocol, Status::BadRequest, format!("malformed request: {e}")),
    }
}

/// Hands a node's gossip datagrams to the gossip task until the connection ends (a full queue
/// drops them: gossip is lossy by design).
async fn read_gossip(conn: quinn::Connection, inbound: mpsc::Sender<Bytes>, shutdown: CancellationToken) {
    loop {
        let datagram = tokio::select! {
            _ = shutdown.cancelled() => return,
            d = conn.read_datagram() => d,
        };
        match datagram {
            Ok(data) => {
                let _ = inbound.try_send(data);
            }
            Err(_) => return,
        }
    }
}

async fn serve_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    service: &Service,
    peer: Option<&str>,
) -> Result<(), StreamError> {
    let mut prefix = [0u8; REQUEST_PREFIX_LEN];
    let mut body = [0u8; MAX_REQUEST_BODY];
    let read = async {
        recv.read_exact(&mut prefix).await.map_err(|e| (e, "prefix"))?;
        // A bad prefix is answered by `respond`; read no body for it.
        let len = Request::parse_prefix(&prefix).map_or(0, |(_, len)| len);
        recv.read_exact(&mut body[..len]).await.map_err(|e| (e, "body"))?;
        Ok(len)
    };
    let answer = match tokio::time::timeout(REQUEST_DEADLINE, read).await {
        Ok(Ok(len)) => match trailing_bytes(&mut recv, &prefix) {
            0 => respond(service, &prefix, &body[..len], peer).await,
            n => service.refuse(
                ErrorKind::Protocol,
                Status::BadRequest,
                format!("malformed request: {}", WireError::Trailing(n)),
            ),
        },
        // The peer ended its side inside the frame: it is waiting for an answer, so say why.
        Ok(Err((quinn::ReadExactError::FinishedEarly(_), part))) => service.refuse(
            ErrorKind::Protocol,
            Status::BadRequest,
            format!("malformed request: the stream ended inside the request {part}"),
        ),
        // Reset, or the connection is gone: nobody to answer.
        Ok(Err((e, _))) => return Err(e.into()),
        Err(_) => service.refuse(ErrorKind::Protocol, Status::BadRequest, StreamError::RequestTimeout.to_string()),
    };
    let answer = match &service.hooks.answer {
        Some(hook) => hook(answer),
        None => answer,
    };
    // We read all we need; tell the peer to stop sending on this stream.
    let _ = recv.stop(0u32.into());
    let mut answer = answer;
    let streamed = answer.streamed.take();
    let written = tokio::time::timeout(RESPONSE_DEADLINE, async {
        if let Some(streamed) = streamed {
            return write_streamed(&mut send, answer.head(), streamed).await;
        }
        send.write_all(answer.head()).await?;
        if !answer.payload.is_empty() {
            send.write_chunk(answer.payload).await?;
        }
        send.finish()?;
        Ok::<_, StreamError>(())
    })
    .await;
    written.map_err(|_| {
        // Cut short: a reset, not a finish the client could take for a short answer.
        let _ = send.reset(0u32.into());
        StreamError::ResponseTimeout
    })?
}

/// A streamed page answer: the head, each chunk the origin read delivers as far as the piece
/// needs it, then what the chunks did not cover from the filled piece, then the piece's digest.
/// A failed fill resets the stream with `RESET_ORIGIN_FAILED`. A client that goes away does not
/// stop the fill: it runs to its end, so the page is cached for the next reader.
async fn write_streamed(send: &mut quinn::SendStream, head: &[u8], streamed: Streamed<'_>) -> Result<(), StreamError> {
    let Streamed { mut events, window, mut rest } = streamed;
    let mut done = None;
    let forwarded = async {
        send.write_all(head).await?;
        // Page bytes the tap has delivered, piece bytes written, and whether to keep forwarding.
        let (mut at, mut sent, mut forwarding) = (0usize, 0usize, true);
        loop {
            tokio::select! {
                biased;
                filled = &mut rest => {
                    done = Some(filled);
                    return Ok::<_, StreamError>(sent);
                }
                event = events.recv(), if forwarding => match event {
                    Some(OriginEvent::Chunk(chunk)) => {
                        if let Some(part) = wanted(&window, &chunk, at, sent) {
                            sent += part.len();
                            send.write_chunk(part).await?;
                        }
                        at += chunk.len();
                    }
                    // Another origin took over after the first failed: the filled piece decides.
                    Some(OriginEvent::Head { .. }) => forwarding = at == 0,
                    None => forwarding = false,
                },
            }
        }
    }
    .await;
    let (sent, filled) = match (forwarded, done) {
        (Ok(sent), Some(filled)) => (sent, filled),
        (result, _) => {
            // The client is gone before the fill ended (`rest` has not finished): finish it.
            let _ = rest.await;
            return result.map(drop);
        }
    };
    match filled {
        Some((piece, digest)) if piece.len() == window.len() => {
            if sent < piece.len() {
                send.write_chunk(piece.slice(sent..)).await?;
            }
            send.write_all(&digest.to_be_bytes()).await?;
            send.finish()?;
        }
        _ => {
            let _ = send.reset(quinn::VarInt::from_u32(RESET_ORIGIN_FAILED));
        }
    }
    Ok(())
}

/// Bytes the peer sent after a frame whose prefix was valid (one request per stream: any more is
/// a malformed request). Only what has already arrived is seen: waiting for the end of the
/// stream would cost a hit a round trip when a client does not finish its side at once, so
/// bytes that come later are cut off by `stop` instead.
fn trailing_bytes(recv: &mut quinn::RecvStream, prefix: &[u8; REQUEST_PREFIX_LEN]) -> usize {
    if Request::parse_prefix(prefix).is_err() {
        return 0;
    }
    match recv.read_chunk(usize::MAX, true).now_or_never() {
        Some(Ok(Some(chunk))) => chunk.bytes.len(),
        _ => 0,
    }
}
