//! What the checker reads and what it must get back, with no I/O: the read shapes ([`Layout::pick`]),
//! the bytes a `pread` of an object returns ([`expected`]), and the comparison ([`judge`]).
//!
//! Object `i` holds [`crate::content`]`(i, size)`, a splitmix64 stream cut at `size`, so any range
//! of it can be recomputed in time proportional to the range ([`content_range`]) without making or
//! keeping the whole object. `judge` is tested, with wrong and short buffers, in
//! `tests/check.rs`.

use rand::Rng;
use serde::Serialize;

/// Object offsets aligned to this are nudged by a byte for [`Shape::Range`] reads.
const ALIGN: u64 = 4096;

/// The kinds of read the checker mixes, uniformly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// `[0, size)`.
    Whole,
    /// `range` bytes (or the whole object if smaller) at a random offset not aligned to 4 KiB.
    Range,
    /// A range with bytes on both sides of a page boundary: one inside the object, or for an
    /// object of one page, the boundary at its end (the read is then cut at the end).
    Crossing,
    /// From a random offset with `len` larger than what remains (cut at the end, like `pread`).
    ToEnd,
}

impl Shape {
    pub const ALL: [Shape; 4] = [Shape::Whole, Shape::Range, Shape::Crossing, Shape::ToEnd];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Whole => "whole",
            Self::Range => "range",
            Self::Crossing => "crossing",
            Self::ToEnd => "to_end",
        }
    }
}

/// One read: object `object`, bytes `[offset, offset + len)` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPlan {
    pub object: u64,
    pub shape: Shape,
    pub offset: u64,
    pub len: u64,
}

/// The objects and the sizes reads are cut by. All fields are at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub objects: u64,
    pub object_size: u64,
    /// The client's page size.
    pub page: u64,
    /// Length of [`Shape::Range`] reads; the extra length of the others.
    pub range: u64,
}

impl Layout {
    /// A uniformly random object and shape, and a range of that shape.
    pub fn pick(&self, rng: &mut impl Rng) -> ReadPlan {
        let object = rng.random_range(0..self.objects);
        let shape = Shape::ALL[rng.random_range(0..Shape::ALL.len())];
        let (offset, len) = self.shape(shape, rng);
        ReadPlan { object, shape, offset, len }
    }

    /// `(offset, len)` of a read of `shape`; the offset is always inside the object.
    pub fn shape(&self, shape: Shape, rng: &mut impl Rng) -> (u64, u64) {
        let size = self.object_size;
        match shape {
            Shape::Whole => (0, size),
            Shape::Range => {
                let len = self.range.min(size);
                let last = size - len;
                let mut offset = rng.random_range(0..=last);
                if offset.is_multiple_of(ALIGN) {
                    offset = if offset < last { offset + 1 } else { offset.saturating_sub(1) };
                }
                (offset, len)
            }
            Shape::Crossing => {
                // Boundaries strictly inside the object are k * page for k in 1..=inner.
                let inner = (size - 1) / self.page;
                let boundary = if inner >= 1 { self.page * rng.random_range(1..=inner) } else { self.page };
                let len = self.range.max(2);
                let before = rng.random_range(1..len).min(boundary);
                let after = len - before;
                let offset = (boundary - before).min(size - 1);
                (offset, boundary + after - offset)
            }
            Shape::ToEnd => {
                let offset = rng.random_range(0..size);
                (offset, size - offset + rng.random_range(1..=self.range))
            }
        }
    }
}

/// Bytes `[offset, offset + len)` of any object with content seed `seed` (the object's bytes for
/// the part below its size): equal to `content(seed, size).slice(offset..offset + len)`.
pub fn content_range(seed: u64, offset: u64, len: u64) -> Vec<u8> {
    let skip = (offset % 8) as usize;
    let want = skip + len as usize;
    let mut out = Vec::with_capacity(want + 8);
    let mut word = offset / 8;
    while out.len() < want {
        // Word w of `content` is splitmix64 of seed + (w + 1) * gamma.
        let mut z = seed.wrapping_add(word.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        word += 1;
    }
    out.truncate(want);
    out.drain(..skip);
    out
}

/// What a `pread` of `plan` must return from objects of `size` bytes: the bytes from `offset` up
/// to `offset + len` or the end, whichever comes first.
pub fn expected(plan: &ReadPlan, size: u64) -> Vec<u8> {
    let start = plan.offset.min(size);
    let end = plan.offset.saturating_add(plan.len).min(size);
    content_range(plan.object, start, end - start)
}

/// How a read's bytes compare to what was due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// A byte differs at this index of the read, or the read is longer than due (index: the due
    /// length).
    WrongBytes {
        at: u64,
    },
    /// Every byte returned is right, but fewer than due.
    ShortRead {
        got: u64,
        want: u64,
    },
}

/// Compares `got` with `want`; a wrong byte outranks a short length.
pub fn judge(got: &[u8], want: &[u8]) -> Verdict {
    if got == want {
        return Verdict::Ok;
    }
    let common = got.len().min(want.len());
    if let Some(at) = got[..common].iter().zip(&want[..common]).position(|(g, w)| g != w) {
        return Verdict::WrongBytes { at: at as u64 };
    }
    if got.len() > want.len() {
        return Verdict::WrongBytes { at: want.len() as u64 };
    }
    Verdict::ShortRead { got: got.len() as u64, want: want.len() as u64 }
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::StdRng};

    use super::*;
    use crate::content;

    #[test]
    fn content_range_is_a_slice_of_content() {
        let whole = content(7, 1000);
        for (offset, len) in [(0, 1000), (0, 0), (1, 7), (3, 13), (8, 8), (999, 1), (517, 300)] {
            let want = &whole[offset as usize..(offset + len) as usize];
            assert_eq!(content_range(7, offset, len), want, "@{offset}+{len}");
        }
        let plan = ReadPlan { object: 7, shape: Shape::ToEnd, offset: 990, len: 100 };
        assert_eq!(expected(&plan, 1000), &whole[990..]);
    }

    #[test]
    fn shapes_stay_in_bounds_and_cross_what_they_claim() {
        let mut rng = StdRng::seed_from_u64(3);
        for (size, page, range) in [(4 << 20, 4 << 20, 128 << 10), (10 << 20, 4 << 20, 1000), (100, 64, 1), (1, 8, 5)] {
            let layout = Layout { objects: 3, object_size: size, page, range };
            for _ in 0..2000 {
                let p = layout.pick(&mut rng);
                assert!(p.object < 3 && p.offset < size && p.len > 0, "{p:?} of {layout:?}");
                let end = p.offset + p.len;
                match p.shape {
                    Shape::Whole => assert_eq!((p.offset, p.len), (0, size)),
                    Shape::Range => {
                        assert!(end <= size && p.len == range.min(size), "{p:?}");
                        assert!(!p.offset.is_multiple_of(ALIGN) || range >= size, "{p:?}");
                    }
                    Shape::Crossing => {
                        let boundary = (p.offset / page + 1) * page;
                        assert!(end > boundary, "{p:?} of {layout:?} crosses no page boundary");
                    }
                    Shape::ToEnd => assert!(end > size && end <= size + range, "{p:?}"),
                }
            }
        }
    }
}
