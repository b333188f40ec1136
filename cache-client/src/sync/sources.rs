//! The sources' listing: the union of origins 1.. of the chain (the regional copy is origin 0),
//! each streamed in byte order, merged one key at a time. Where two sources hold a key, the
//! earlier one's entry wins (reads fall through the chain in that order). Holds one entry per
//! source, plus each stream's current LIST page.

use futures::StreamExt;

use crate::origin::{ListedObject, ObjectStream, OriginError};

/// A sorted stream of `(source index, object)`.
pub struct Sources {
    /// (origin index, its stream, its next entry, whether it is done)
    streams: Vec<(usize, ObjectStream, Option<ListedObject>, bool)>,
}

impl Sources {
    /// `streams` in chain order, each with its origin index.
    pub fn new(streams: Vec<(usize, ObjectStream)>) -> Self {
        Self { streams: streams.into_iter().map(|(i, s)| (i, s, None, false)).collect() }
    }

    /// The next key in byte order over all sources, with the index of the source it is from.
    pub async fn next(&mut self) -> Result<Option<(usize, ListedObject)>, OriginError> {
        for (_, stream, head, done) in &mut self.streams {
            if head.is_none() && !*done {
                match stream.next().await {
                    Some(object) => *head = Some(object?),
                    None => *done = true,
                }
            }
        }
        let Some(min) = self.streams.iter().filter_map(|s| s.2.as_ref()).map(|o| o.key.clone()).min() else {
            return Ok(None);
        };
        let mut first = None;
        for (index, _, head, _) in &mut self.streams {
            if head.as_ref().is_some_and(|o| o.key == min) {
                let object = head.take();
                if first.is_none() {
                    first = object.map(|o| (*index, o));
                }
            }
        }
        Ok(first)
    }
}
