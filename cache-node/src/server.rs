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

use bytes::Bytes;
use cache_client::wire::{REQUEST_PREFIX_LEN, Request, ResponseHead, Status};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::service::Service;

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

async fn read_request(recv: &mut quinn::RecvStream) -> Result<Result<Request, String>, StreamError> {
    let mut prefix = [0u8; REQUEST_PREFIX_LEN];
    recv.read_exact(&mut prefix).await?;
    let (kind, len) = match Request::parse_prefix(&prefix) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e.to_string())),
    };
    // `len` was checked against MAX_REQUEST_BODY by parse_prefix before this allocation.
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await?;
    Ok(Request::decode_body(kind, &body).map_err(|e| e.to_string()))
}

async fn serve_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    service: &Service,
) -> Result<(), StreamError> {
    let request = tokio::time::timeout(REQUEST_DEADLINE, read_request(&mut recv))
        .await
        .map_err(|_| StreamError::RequestTimeout)??;
    let (head, payload) = match request {
        Ok(request) => service.answer(request).await,
        Err(message) => {
            service.metrics.error("protocol");
            (ResponseHead::error(Status::BadRequest, format!("malformed request: {message}")), Bytes::new())
        }
    };
    // We read all we need; tell the peer to stop sending on this stream.
    let _ = recv.stop(0u32.into());
    tokio::time::timeout(RESPONSE_DEADLINE, async {
        send.write_all(&head.encode()).await?;
        if !payload.is_empty() {
            send.write_chunk(payload).await?;
        }
        send.finish()?;
        Ok::<_, StreamError>(())
    })
    .await
    .map_err(|_| StreamError::ResponseTimeout)?
}
