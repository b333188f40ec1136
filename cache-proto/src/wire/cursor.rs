//! A bounds-checked reader over a byte slice: every read either succeeds or names what was cut off.

use super::WireError;

pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated { what });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.bytes(1, what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let mut a = [0; 4];
        a.copy_from_slice(self.bytes(4, what)?);
        Ok(u32::from_be_bytes(a))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        let mut a = [0; 8];
        a.copy_from_slice(self.bytes(8, what)?);
        Ok(u64::from_be_bytes(a))
    }

    /// A string with a length prefix of `prefix` bytes (1 or 2), at most `max` bytes long.
    pub(crate) fn str(&mut self, prefix: usize, max: usize, what: &'static str) -> Result<&'a str, WireError> {
        let len = if prefix == 1 { self.u8(what)? as usize } else { self.u16(what)? as usize };
        if len > max {
            return Err(WireError::TooLarge { what, len, max });
        }
        std::str::from_utf8(self.bytes(len, what)?).map_err(|_| WireError::Utf8 { what })
    }

    pub(crate) fn finish(self) -> Result<(), WireError> {
        if self.buf.is_empty() { Ok(()) } else { Err(WireError::Trailing(self.buf.len())) }
    }
}

/// Appends a string with a 1- or 2-byte length prefix, cut to `max` bytes. Callers pass values
/// already validated against their limit; the cut only keeps a bad value from corrupting the frame.
pub(crate) fn put_str(out: &mut Vec<u8>, prefix: usize, max: usize, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(max)];
    if prefix == 1 {
        out.push(bytes.len() as u8);
    } else {
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(bytes);
}
