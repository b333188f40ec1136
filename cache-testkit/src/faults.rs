//! Faults injected into a node through its own constructor ([`cache_node::Hooks`]), never
//! through a switch the product binary reads: the node a user runs cannot be told to misbehave.

use std::sync::Arc;

use bytes::Bytes;
use cache_node::answer::{Answer, AnswerHook, Streamed};

/// An answer hook that flips one byte in the middle of every page answer and keeps its digest,
/// as a node with bad memory would (the checker's own test proves it catches that). A fake by
/// necessity: a real node cannot be made to do this on demand.
pub fn corrupt_answers() -> AnswerHook {
    Arc::new(corrupt)
}

fn flip(bytes: &Bytes) -> Bytes {
    let mut bytes = bytes.to_vec();
    let mid = bytes.len() / 2;
    if let Some(b) = bytes.get_mut(mid) {
        *b ^= 0x01;
    }
    Bytes::from(bytes)
}

fn corrupt(mut answer: Answer<'_>) -> Answer<'_> {
    if !answer.payload.is_empty() {
        answer.payload = flip(&answer.payload);
    }
    // A streamed miss: nothing forwarded early (the events' sender is gone), the piece flipped.
    if let Some(streamed) = answer.streamed.take() {
        let rest = streamed.rest;
        answer.streamed = Some(Streamed {
            events: tokio::sync::mpsc::unbounded_channel().1,
            window: streamed.window,
            rest: Box::pin(async move { rest.await.map(|(piece, digest)| (flip(&piece), digest)) }),
        });
    }
    answer
}
