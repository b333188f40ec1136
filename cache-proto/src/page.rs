//! Page maths: how a byte range of an object splits into page pieces.
//!
//! Page `p` covers object bytes `[p * page_size, (p + 1) * page_size)`; a JuiceFS block of the
//! default 4 MiB is exactly one page. A read of `[offset, offset + len)` becomes one [`Piece`] per
//! page it touches: the first and last may be partial, a zero-length read has no pieces.

/// Part of one page: bytes `[start, start + len)` inside page `page`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub page: u64,
    pub start: u32,
    pub len: u32,
}

impl Piece {
    /// Object offset of the piece's first byte.
    pub fn offset(&self, page_size: u32) -> u64 {
        self.page * u64::from(page_size) + u64::from(self.start)
    }
}

/// The pieces of `[offset, offset + len)`, in order. `None` if the end overflows 64 bits or the
/// page size is 0.
pub fn pieces(offset: u64, len: u64, page_size: u32) -> Option<impl Iterator<Item = Piece>> {
    let ps = u64::from(page_size);
    let end = offset.checked_add(len)?;
    if ps == 0 {
        return None;
    }
    let mut at = offset;
    Some(std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let page = at / ps;
        let start = at % ps;
        let take = (ps - start).min(end - at);
        at += take;
        // start < ps and take <= ps, and ps fits u32.
        Some(Piece { page, start: start as u32, len: take as u32 })
    }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const PS: u32 = 4 << 20;

    fn split(offset: u64, len: u64) -> Vec<Piece> {
        pieces(offset, len, PS).expect("no overflow").collect()
    }

    #[test]
    fn whole_partial_and_empty_ranges() {
        assert_eq!(split(0, 4 << 20), vec![Piece { page: 0, start: 0, len: PS }]);
        assert_eq!(split(0, 0), vec![]);
        assert_eq!(split(5 << 20, 128 << 10), vec![Piece { page: 1, start: 1 << 20, len: 128 << 10 }]);
        assert_eq!(
            split((4 << 20) - 10, 20),
            vec![Piece { page: 0, start: PS - 10, len: 10 }, Piece { page: 1, start: 0, len: 10 }]
        );
        assert_eq!(split(0, 9 << 20).len(), 3);
        assert!(pieces(u64::MAX, 1, PS).is_none());
        assert!(pieces(0, 1, 0).is_none());
    }

    proptest! {
        #[test]
        fn pieces_tile_the_range(offset in 0u64..(1 << 40), len in 0u64..(64 << 20), shift in 16u32..=24) {
            let ps = 1u32 << shift;
            let mut at = offset;
            for p in pieces(offset, len, ps).expect("no overflow") {
                prop_assert_eq!(p.offset(ps), at);
                prop_assert!(p.len > 0 && u64::from(p.start) + u64::from(p.len) <= u64::from(ps));
                at += u64::from(p.len);
            }
            prop_assert_eq!(at, offset + len);
        }
    }
}
