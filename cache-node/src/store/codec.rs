//! How a page and its key are laid out on disk (foyer's `Code`). Decoding checks every length before it allocates: a torn or rotten block on disk
//! is an error, never a panic or an allocation sized by garbage.

use std::io::Read;

use bytes::Bytes;
use cache_proto::key::{ObjectKey, Volume};
use foyer::{Code, HybridCacheEntry};

/// Cache key of one page.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub volume: Volume,
    pub key: ObjectKey,
    pub page: u64,
}

/// One cached page: the bytes and what the origin said about the object.
#[derive(Debug, Clone)]
pub struct Page {
    pub object_size: u64,
    pub etag: Option<String>,
    /// `page_digest(volume, key, page, 0, bytes)`, computed from the origin's bytes at fill time
    /// and checked again whenever the page comes back from disk.
    pub digest: u64,
    pub bytes: Bytes,
}

pub type PageEntry = HybridCacheEntry<PageKey, Page>;

/// Largest page the disk decoder will allocate for (the config allows at most 16 MiB).
const MAX_STORED_PAGE: usize = 16 << 20;
const PAGE_FORMAT: u8 = 1;

fn coding_error(what: &str) -> foyer::Error {
    foyer::Error::new(foyer::ErrorKind::Parse, format!("stored page: {what}"))
}

fn read_u64(r: &mut impl Read) -> foyer::Result<u64> {
    let mut b = [0; 8];
    r.read_exact(&mut b).map_err(foyer::Error::io_error)?;
    Ok(u64::from_be_bytes(b))
}

fn read_str(r: &mut impl Read, max: usize) -> foyer::Result<String> {
    let mut len = [0; 2];
    r.read_exact(&mut len).map_err(foyer::Error::io_error)?;
    let len = u16::from_be_bytes(len) as usize;
    if len > max {
        return Err(coding_error("name too long"));
    }
    let mut buf = vec![0; len];
    r.read_exact(&mut buf).map_err(foyer::Error::io_error)?;
    String::from_utf8(buf).map_err(|_| coding_error("name not UTF-8"))
}

fn write_str(w: &mut impl std::io::Write, s: &str) -> foyer::Result<()> {
    w.write_all(&(s.len() as u16).to_be_bytes()).map_err(foyer::Error::io_error)?;
    w.write_all(s.as_bytes()).map_err(foyer::Error::io_error)
}

impl Code for PageKey {
    fn encode(&self, w: &mut impl std::io::Write) -> foyer::Result<()> {
        write_str(w, self.volume.as_str())?;
        write_str(w, self.key.as_str())?;
        w.write_all(&self.page.to_be_bytes()).map_err(foyer::Error::io_error)
    }

    fn decode(r: &mut impl Read) -> foyer::Result<Self> {
        let volume =
            Volume::new(&read_str(r, cache_proto::key::MAX_VOLUME_LEN)?).map_err(|_| coding_error("volume"))?;
        let key = ObjectKey::new(&read_str(r, cache_proto::key::MAX_KEY_LEN)?).map_err(|_| coding_error("key"))?;
        Ok(Self { volume, key, page: read_u64(r)? })
    }

    fn estimated_size(&self) -> usize {
        4 + self.volume.as_str().len() + self.key.as_str().len() + 8
    }
}

impl Code for Page {
    fn encode(&self, w: &mut impl std::io::Write) -> foyer::Result<()> {
        w.write_all(&[PAGE_FORMAT]).map_err(foyer::Error::io_error)?;
        w.write_all(&self.object_size.to_be_bytes()).map_err(foyer::Error::io_error)?;
        w.write_all(&self.digest.to_be_bytes()).map_err(foyer::Error::io_error)?;
        write_str(w, self.etag.as_deref().unwrap_or(""))?;
        w.write_all(&(self.bytes.len() as u64).to_be_bytes()).map_err(foyer::Error::io_error)?;
        w.write_all(&self.bytes).map_err(foyer::Error::io_error)
    }

    fn decode(r: &mut impl Read) -> foyer::Result<Self> {
        let mut format = [0];
        r.read_exact(&mut format).map_err(foyer::Error::io_error)?;
        if format[0] != PAGE_FORMAT {
            return Err(coding_error("unknown format"));
        }
        let object_size = read_u64(r)?;
        let digest = read_u64(r)?;
        let etag = read_str(r, cache_proto::wire::MAX_ETAG_LEN)?;
        let len = read_u64(r)?;
        if len > MAX_STORED_PAGE as u64 || len > object_size {
            return Err(coding_error("length out of range"));
        }
        // One copy out of foyer's read buffer, into memory that is not zeroed first.
        let mut bytes = Vec::with_capacity(len as usize);
        r.take(len).read_to_end(&mut bytes).map_err(foyer::Error::io_error)?;
        if bytes.len() as u64 != len {
            return Err(coding_error("page cut short"));
        }
        Ok(Self { object_size, etag: (!etag.is_empty()).then_some(etag), digest, bytes: Bytes::from(bytes) })
    }

    fn estimated_size(&self) -> usize {
        1 + 8 + 8 + 2 + self.etag.as_ref().map_or(0, String::len) + 8 + self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_pages_round_trip_and_reject_garbage() {
        let page =
            Page { object_size: 10, etag: Some("\"e\"".into()), digest: 7, bytes: Bytes::from_static(b"0123456789") };
        let mut buf = Vec::new();
        page.encode(&mut buf).expect("encodes");
        let back = Page::decode(&mut &buf[..]).expect("decodes");
        assert_eq!((back.object_size, back.etag, back.digest, back.bytes), (10, page.etag, 7, page.bytes));
        for cut in 0..buf.len() {
            assert!(Page::decode(&mut &buf[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = buf.clone();
        bad[0] = 99;
        assert!(Page::decode(&mut &bad[..]).is_err());
        // A length larger than the object it belongs to.
        let mut lying = buf.clone();
        let len_at = 1 + 8 + 8 + 2 + 3;
        lying[len_at..len_at + 8].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(Page::decode(&mut &lying[..]).is_err());

        let key =
            PageKey { volume: Volume::new("v").expect("valid"), key: ObjectKey::new("a/b").expect("valid"), page: 3 };
        let mut kbuf = Vec::new();
        key.encode(&mut kbuf).expect("encodes");
        assert_eq!(PageKey::decode(&mut &kbuf[..]).expect("decodes"), key);
    }
}
