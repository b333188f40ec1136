//! [`Chunks`]: a page's bytes as they came off the QUIC stream, one shared buffer per datagram,
//! never copied into one buffer unless a caller asks ([`Chunks::into_bytes`]).
//!
//! The gateway hands the chunks to the HTTP body as they are (the socket write gathers them), so
//! a page crosses the gateway without a copy and without a fresh 4 MiB buffer per page; a read
//! through [`crate::Client::read`] joins them once, as it did before.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

/// Bytes in order, as shared parts. Cloning and slicing never copy bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunks {
    parts: Vec<Bytes>,
    len: usize,
}

impl Chunks {
    /// No bytes, room for `parts` parts.
    pub fn with_capacity(parts: usize) -> Self {
        Self { parts: Vec::with_capacity(parts), len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `part` (an empty part is dropped).
    pub fn push(&mut self, part: Bytes) {
        if !part.is_empty() {
            self.len += part.len();
            self.parts.push(part);
        }
    }

    /// The parts, in order; none is empty.
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    pub fn into_parts(self) -> Vec<Bytes> {
        self.parts
    }

    /// Bytes `range` (cut at the end), sharing the parts.
    pub fn slice(&self, range: Range<usize>) -> Self {
        let (start, end) = (range.start.min(self.len), range.end.min(self.len));
        let mut out = Self::default();
        let mut at = 0;
        for part in &self.parts {
            let (from, to) = (at, at + part.len());
            at = to;
            if to <= start {
                continue;
            }
            if from >= end {
                break;
            }
            out.push(part.slice(start.saturating_sub(from)..(end - from).min(part.len())));
        }
        out
    }

    /// The bytes as one buffer: the part itself when there is one, else one copy.
    pub fn into_bytes(self) -> Bytes {
        match <[Bytes; 1]>::try_from(self.parts) {
            Ok([only]) => only,
            Err(parts) => {
                let mut out = BytesMut::with_capacity(self.len);
                for part in &parts {
                    out.extend_from_slice(part);
                }
                out.freeze()
            }
        }
    }

    /// Copies the first `out.len()` bytes into `out`; false if there are fewer.
    pub fn copy_prefix_to(&self, out: &mut [u8]) -> bool {
        let mut at = 0;
        for part in &self.parts {
            if at == out.len() {
                break;
            }
            let n = part.len().min(out.len() - at);
            out[at..at + n].copy_from_slice(&part[..n]);
            at += n;
        }
        at == out.len()
    }
}

impl From<Bytes> for Chunks {
    fn from(bytes: Bytes) -> Self {
        let mut out = Self::default();
        out.push(bytes);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> Chunks {
        let mut c = Chunks::default();
        for p in parts {
            c.push(Bytes::from_static(p));
        }
        c
    }

    #[test]
    fn slices_across_parts_and_joins() {
        let c = chunks(&[b"abc", b"", b"defg", b"h"]);
        assert_eq!(c.len(), 8);
        assert_eq!(c.parts().len(), 3, "empty parts are dropped");
        assert_eq!(c.clone().into_bytes(), Bytes::from_static(b"abcdefgh"));
        for start in 0..=9 {
            for end in start..=9 {
                let want = &b"abcdefgh"[start.min(8)..end.min(8)];
                let got = c.slice(start..end);
                assert_eq!(got.len(), want.len(), "{start}..{end}");
                assert_eq!(got.into_bytes(), Bytes::copy_from_slice(want), "{start}..{end}");
            }
        }
    }

    #[test]
    fn one_part_is_not_copied() {
        let b = Bytes::from(vec![7u8; 100]);
        let joined = Chunks::from(b.clone()).into_bytes();
        assert_eq!(joined.as_ptr(), b.as_ptr());
        assert!(Chunks::default().into_bytes().is_empty());
    }

    #[test]
    fn copies_a_prefix() {
        let c = chunks(&[b"ab", b"cde"]);
        let mut four = [0u8; 4];
        assert!(c.copy_prefix_to(&mut four));
        assert_eq!(&four, b"abcd");
        let mut six = [0u8; 6];
        assert!(!c.copy_prefix_to(&mut six));
    }
}
