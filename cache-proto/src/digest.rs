//! Page digests: CRC-64/NVME (the checksum S3 offers as `x-amz-checksum-crc64nvme`; tens of GB/s
//! here) over the request's identity and then the bytes. Binding the digest to volume, key, page
//! and offset means a page served for the wrong key fails verification even if its bytes are intact.

use crc_fast::{CrcAlgorithm, Digest};

/// Digest of `bytes`, the bytes at `start` inside page `page` of `key` in `volume` (typed
/// names, or the borrowed names of a decoded request).
pub fn page_digest(
    volume: &(impl AsRef<str> + ?Sized),
    key: &(impl AsRef<str> + ?Sized),
    page: u64,
    start: u32,
    bytes: &[u8],
) -> u64 {
    page_digest_parts(volume, key, page, start, [bytes])
}

/// [`page_digest`] of bytes held in parts (as they came off a stream), without joining them.
pub fn page_digest_parts<'a, P>(
    volume: &(impl AsRef<str> + ?Sized),
    key: &(impl AsRef<str> + ?Sized),
    page: u64,
    start: u32,
    parts: P,
) -> u64
where
    P: IntoIterator<Item = &'a [u8]>,
    P::IntoIter: Clone,
{
    let parts = parts.into_iter();
    let len: usize = parts.clone().map(<[u8]>::len).sum();
    let mut d = Digest::new(CrcAlgorithm::Crc64Nvme);
    for name in [volume.as_ref(), key.as_ref()] {
        d.update(&(name.len() as u16).to_be_bytes());
        d.update(name.as_bytes());
    }
    d.update(&page.to_be_bytes());
    d.update(&start.to_be_bytes());
    d.update(&(len as u64).to_be_bytes());
    for part in parts {
        d.update(part);
    }
    d.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{ObjectKey, Volume};

    fn names(v: &str, k: &str) -> (Volume, ObjectKey) {
        (Volume::new(v).expect("valid"), ObjectKey::new(k).expect("valid"))
    }

    #[test]
    fn digest_binds_every_part() {
        let (v, k) = names("vol", "a/b");
        let base = page_digest(&v, &k, 3, 0, b"hello");
        assert_eq!(base, page_digest(&v, &k, 3, 0, b"hello"));
        let (v2, k2) = names("vol2", "a/c");
        assert_ne!(base, page_digest(&v2, &k, 3, 0, b"hello"));
        assert_ne!(base, page_digest(&v, &k2, 3, 0, b"hello"));
        assert_ne!(base, page_digest(&v, &k, 4, 0, b"hello"));
        assert_ne!(base, page_digest(&v, &k, 3, 1, b"hello"));
        assert_ne!(base, page_digest(&v, &k, 3, 0, b"hellp"));
        assert_ne!(base, page_digest(&v, &k, 3, 0, b"hell"));
        // Parts digest as the bytes they join to.
        assert_eq!(base, page_digest_parts(&v, &k, 3, 0, [&b"he"[..], b"", b"llo"]));
        assert_ne!(base, page_digest_parts(&v, &k, 3, 0, [&b"he"[..], b"llp"]));
        // Moving a byte between volume and key names changes the digest too.
        let (va, ka) = names("ab", "c");
        let (vb, kb) = names("a", "bc");
        assert_ne!(page_digest(&va, &ka, 0, 0, b""), page_digest(&vb, &kb, 0, 0, b""));
        // Typed and borrowed names agree.
        assert_eq!(page_digest("vol", "a/b", 3, 0, b"hello"), base);
    }
}
