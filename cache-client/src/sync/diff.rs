//! The merge-join of two sorted listings, as plain functions over keys and metadata (no I/O):
//! which side to advance next ([`step`]), and how two listings of one key differ ([`compare`]).

use std::cmp::Ordering;

use crate::origin::{ListedObject, etag_md5};

/// Which head of the two listings comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The sources' key is missing in the regional copy: advance the sources.
    Missing,
    /// The regional copy's key is in no source (an extra object): advance the regional copy.
    Extra,
    /// Both have the key: compare them, advance both.
    Both,
    /// Both listings are done.
    Done,
}

/// The next step given the keys at the head of the sources' and the regional copy's listings.
pub fn step(source: Option<&str>, replica: Option<&str>) -> Step {
    match (source, replica) {
        (None, None) => Step::Done,
        (Some(_), None) => Step::Missing,
        (None, Some(_)) => Step::Extra,
        (Some(s), Some(r)) => match s.cmp(r) {
            Ordering::Less => Step::Missing,
            Ordering::Greater => Step::Extra,
            Ordering::Equal => Step::Both,
        },
    }
}

/// How the regional copy's object differs from the source's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Difference {
    Size {
        source: u64,
        replica: u64,
    },
    /// Same size, but both sides give an MD5 ETag and they differ.
    Checksum,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Size { source, replica } => write!(f, "size {replica}, source {source}"),
            Self::Checksum => f.write_str("checksum (MD5 ETag) differs"),
        }
    }
}

/// `None` when the copy matches the source: same size, and the same MD5 where both ETags are
/// plain MD5s (a multipart ETag, or none, compares by size only).
pub fn compare(source: &ListedObject, replica: &ListedObject) -> Option<Difference> {
    if source.size != replica.size {
        return Some(Difference::Size { source: source.size, replica: replica.size });
    }
    let md5 = |o: &ListedObject| o.etag.as_deref().and_then(etag_md5);
    match (md5(source), md5(replica)) {
        (Some(a), Some(b)) if a != b => Some(Difference::Checksum),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use proptest::prelude::*;

    use super::*;

    fn obj(key: &str, size: u64, etag: Option<&str>) -> ListedObject {
        ListedObject { key: key.into(), size, etag: etag.map(str::to_owned), last_modified: SystemTime::UNIX_EPOCH }
    }

    #[test]
    fn compare_by_size_then_md5() {
        let a = "\"0123456789abcdef0123456789abcdef\"";
        let b = "\"fedcba9876543210fedcba9876543210\"";
        assert_eq!(compare(&obj("k", 1, Some(a)), &obj("k", 1, Some(a))), None);
        assert_eq!(
            compare(&obj("k", 1, Some(a)), &obj("k", 2, Some(a))),
            Some(Difference::Size { source: 1, replica: 2 })
        );
        assert_eq!(compare(&obj("k", 1, Some(a)), &obj("k", 1, Some(b))), Some(Difference::Checksum));
        assert_eq!(compare(&obj("k", 1, Some("\"abc-2\"")), &obj("k", 1, Some(b))), None, "multipart: size only");
        assert_eq!(compare(&obj("k", 1, None), &obj("k", 1, Some(b))), None);
    }

    proptest! {
        /// Walking two sorted, deduplicated key lists with `step` finds exactly the set
        /// differences and the intersection.
        #[test]
        fn step_merge_joins_sorted_lists(
            src in proptest::collection::btree_set("[a-d]{1,3}", 0..30),
            rep in proptest::collection::btree_set("[a-d]{1,3}", 0..30),
        ) {
            let (s, r): (Vec<_>, Vec<_>) = (src.iter().collect(), rep.iter().collect());
            let (mut i, mut j) = (0, 0);
            let (mut missing, mut extra, mut both) = (Vec::new(), Vec::new(), Vec::new());
            loop {
                match step(s.get(i).map(|k| k.as_str()), r.get(j).map(|k| k.as_str())) {
                    Step::Done => break,
                    Step::Missing => { missing.push(s[i].clone()); i += 1; }
                    Step::Extra => { extra.push(r[j].clone()); j += 1; }
                    Step::Both => { both.push(s[i].clone()); i += 1; j += 1; }
                }
            }
            prop_assert_eq!(missing, src.difference(&rep).cloned().collect::<Vec<_>>());
            prop_assert_eq!(extra, rep.difference(&src).cloned().collect::<Vec<_>>());
            prop_assert_eq!(both, src.intersection(&rep).cloned().collect::<Vec<_>>());
        }
    }
}
