//! The QUIC side of a node: accept connections (mTLS checked by rustls), accept one
//! bidirectional stream per request, read the request frame, let the [`Service`] answer, and
//! write the head and the page bytes (a `Bytes` slice of the cached page: no copy).
//!
//! ```text
//! endpoint.accept ─► connection task ─► stream task: read prefix ─► read body ─► Service::answer
//!                                                    ─► write head ─► write_chunk(page) ─► finish
//! ```
//! Every wait has a deadline; a malformed frame is answered `BadRequest` and the stream closed,
//! and nothing a peer sends can panic the node.

use std::{sync::Arc, time::Duration};

use cache_client::wire::{MAX_REQUEST_BODY, REQUEST_PREFIX_LEN, Request, RequestView, Status};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::service::{Answer, Service};

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
                    service.metrics.error("protocol");
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
    loop {
        let (send, recv) = tokio::select! {
            _ = shutdown.cancelled() => return,
            stream = conn.accept_bi() => match stream {
                Ok(s) => s,
                Err(e) => {
                    tracing::trace!(peer = %conn.remote_address(), error = %e, "connection ended");
                    return;
                }
            },
        };
        let service = service.clone();
        tracker.spawn(async move {
            if let Err(e) = serve_stream(send, recv, &service).await {
                tracing::debug!(error = %e, "stream ended early");
            }
        });
    }
}

#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("client sent no complete request within {REQUEST_DEADLINE:?}")]
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
pub async fn respond(service: &Service, prefix: &[u8; REQUEST_PREFIX_LEN], body: &[u8]) -> Answer {
    let request = Request::parse_prefix(prefix).and_then(|(kind, _)| RequestView::decode_body(kind, body));
    match request {
        Ok(request) => service.answer(request).await,
        Err(e) => service.refuse("protocol", Status::BadRequest, format!("malformed request: {e}")),
    }
}

async fn serve_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    service: &Service,
) -> Result<(), StreamError> {
    let mut prefix = [0u8; REQUEST_PREFIX_LEN];
    let mut body = [0u8; MAX_REQUEST_BODY];
    let read = async {
        recv.read_exact(&mut prefix).await?;
        // A bad prefix is answered by `respond`; read no body for it.
        let len = Request::parse_prefix(&prefix).map_or(0, |(_, len)| len);
        recv.read_exact(&mut body[..len]).await?;
        Ok::<_, StreamError>(len)
    };
    let len = tokio::time::timeout(REQUEST_DEADLINE, read).await.map_err(|_| StreamError::RequestTimeout)??;
    let answer = respond(service, &prefix, &body[..len]).await;
    // We read all we need; tell the peer to stop sending on this stream.
    let _ = recv.stop(0u32.into());
    tokio::time::timeout(RESPONSE_DEADLINE, async {
        send.write_all(answer.head()).await?;
        if !answer.payload.is_empty() {
            send.write_chunk(answer.payload).await?;
        }
        send.finish()?;
        Ok::<_, StreamError>(())
    })
    .await
    .map_err(|_| StreamError::ResponseTimeout)?
}
