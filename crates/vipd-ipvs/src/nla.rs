//! Netlink attribute (`struct nlattr`) encoding and decoding.
//!
//! Layout (`include/uapi/linux/netlink.h`): `{ __u16 nla_len; __u16 nla_type; }` in host byte
//! order, then the payload, then zero padding to a 4-byte boundary (`NLA_ALIGNTO`).
//! `nla_len` counts the 4-byte header and the payload, never the padding.
//! The two top bits of `nla_type` are flags (`NLA_F_NESTED`, `NLA_F_NET_BYTEORDER`).

use crate::error::{Error, Result};

/// `NLA_HDRLEN`.
pub const NLA_HDRLEN: usize = 4;
/// `NLA_ALIGNTO`.
pub const NLA_ALIGNTO: usize = 4;
/// `NLA_F_NESTED`.
pub const NLA_F_NESTED: u16 = 1 << 15;
/// `NLA_F_NET_BYTEORDER`.
pub const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
/// `NLA_TYPE_MASK`.
pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

/// `NLA_ALIGN(len)`, saturating instead of overflowing.
pub const fn nla_align(len: usize) -> usize {
    match len.checked_add(NLA_ALIGNTO - 1) {
        Some(l) => l & !(NLA_ALIGNTO - 1),
        None => usize::MAX & !(NLA_ALIGNTO - 1),
    }
}

/// Builds a stream of attributes. Nests are opened with [`NlaWriter::begin_nested`] and
/// closed with [`NlaWriter::end_nested`]; lengths are patched in when a nest closes.
#[derive(Debug, Default)]
pub(crate) struct NlaWriter {
    buf: Vec<u8>,
    overflow: bool,
}

/// Position of an open nest, returned by [`NlaWriter::begin_nested`].
#[derive(Debug)]
#[must_use]
pub(crate) struct Nest(usize);

impl NlaWriter {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn header(&mut self, kind: u16, len: usize) {
        let len = match u16::try_from(len) {
            Ok(l) => l,
            Err(_) => {
                self.overflow = true;
                u16::MAX
            }
        };
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
    }

    fn pad(&mut self) {
        let aligned = nla_align(self.buf.len());
        self.buf.resize(aligned, 0);
    }

    /// An attribute with an arbitrary payload.
    pub(crate) fn put(&mut self, kind: u16, value: &[u8]) {
        self.header(kind, NLA_HDRLEN + value.len());
        self.buf.extend_from_slice(value);
        self.pad();
    }

    pub(crate) fn put_u8(&mut self, kind: u16, v: u8) {
        self.put(kind, &[v]);
    }

    /// Host byte order, like `nla_put_u16`.
    pub(crate) fn put_u16(&mut self, kind: u16, v: u16) {
        self.put(kind, &v.to_ne_bytes());
    }

    /// Network byte order, like `nla_put_be16` (ports).
    pub(crate) fn put_be16(&mut self, kind: u16, v: u16) {
        self.put(kind, &v.to_be_bytes());
    }

    /// Host byte order, like `nla_put_u32`.
    pub(crate) fn put_u32(&mut self, kind: u16, v: u32) {
        self.put(kind, &v.to_ne_bytes());
    }

    /// A NUL-terminated string, like `nla_put_string` (`NLA_NUL_STRING` policies need the
    /// NUL).
    pub(crate) fn put_string(&mut self, kind: u16, s: &str) {
        self.header(kind, NLA_HDRLEN + s.len() + 1);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    /// Opens a nested attribute; `NLA_F_NESTED` is set on its type.
    pub(crate) fn begin_nested(&mut self, kind: u16) -> Nest {
        let at = self.buf.len();
        self.header(kind | NLA_F_NESTED, 0);
        Nest(at)
    }

    /// Closes a nest opened by [`NlaWriter::begin_nested`], writing its length.
    pub(crate) fn end_nested(&mut self, nest: Nest) {
        let Nest(at) = nest;
        let len = self.buf.len().saturating_sub(at);
        let len = match u16::try_from(len) {
            Ok(l) => l,
            Err(_) => {
                self.overflow = true;
                u16::MAX
            }
        };
        if let Some(slot) = self.buf.get_mut(at..at + 2) {
            slot.copy_from_slice(&len.to_ne_bytes());
        }
    }

    /// The encoded attributes, or an error if one of them did not fit `nla_len`'s 16 bits.
    pub(crate) fn finish(self) -> Result<Vec<u8>> {
        if self.overflow {
            return Err(Error::InvalidArgument {
                what: "attribute",
                reason: "longer than 65535 bytes".into(),
            });
        }
        Ok(self.buf)
    }
}

/// One decoded attribute: its type (flags masked off) and payload (padding excluded).
#[derive(Debug, Clone, Copy)]
pub struct Nla<'a> {
    /// `nla_type & NLA_TYPE_MASK`.
    pub kind: u16,
    /// The payload, `nla_len - NLA_HDRLEN` bytes.
    pub value: &'a [u8],
}

/// Iterates over a stream of attributes; yields an error (then stops) on malformed input.
#[derive(Debug, Clone)]
pub struct NlaIter<'a> {
    rest: &'a [u8],
    what: &'static str,
    failed: bool,
}

impl<'a> NlaIter<'a> {
    /// Walks `buf`; `what` names the attribute set in errors.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self {
            rest: buf,
            what,
            failed: false,
        }
    }

    fn fail(&mut self, e: Error) -> Option<Result<Nla<'a>>> {
        self.failed = true;
        self.rest = &[];
        Some(Err(e))
    }
}

impl<'a> Iterator for NlaIter<'a> {
    type Item = Result<Nla<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let have = self.rest.len();
        let (Some(len), Some(kind)) = (self.rest.get(0..2), self.rest.get(2..4)) else {
            return self.fail(Error::Truncated {
                what: self.what,
                need: NLA_HDRLEN,
                have,
            });
        };
        let len = usize::from(u16::from_ne_bytes([len[0], len[1]]));
        let kind = u16::from_ne_bytes([kind[0], kind[1]]) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN {
            return self.fail(Error::InvalidLength {
                what: self.what,
                len,
            });
        }
        let Some(value) = self.rest.get(NLA_HDRLEN..len) else {
            return self.fail(Error::Truncated {
                what: self.what,
                need: len,
                have,
            });
        };
        // The last attribute's padding may be missing; never step past the end.
        let advance = nla_align(len).min(have);
        self.rest = self.rest.get(advance..).unwrap_or(&[]);
        Some(Ok(Nla { kind, value }))
    }
}

impl<'a> Nla<'a> {
    fn exact<const N: usize>(&self, what: &'static str) -> Result<[u8; N]> {
        <[u8; N]>::try_from(self.value).map_err(|_| Error::InvalidLength {
            what,
            len: self.value.len(),
        })
    }

    /// An `NLA_U8`.
    pub fn u8(&self, what: &'static str) -> Result<u8> {
        Ok(self.exact::<1>(what)?[0])
    }

    /// An `NLA_U16` in host byte order.
    pub fn u16(&self, what: &'static str) -> Result<u16> {
        Ok(u16::from_ne_bytes(self.exact(what)?))
    }

    /// A `__be16` (ports).
    pub fn be16(&self, what: &'static str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.exact(what)?))
    }

    /// An `NLA_U32` in host byte order.
    pub fn u32(&self, what: &'static str) -> Result<u32> {
        Ok(u32::from_ne_bytes(self.exact(what)?))
    }

    /// An `NLA_U64` in host byte order.
    pub fn u64(&self, what: &'static str) -> Result<u64> {
        Ok(u64::from_ne_bytes(self.exact(what)?))
    }

    /// A counter sent either as `u32` or `u64` (the 32-bit stats nest mixes both).
    pub fn uint(&self, what: &'static str) -> Result<u64> {
        match self.value.len() {
            4 => self.u32(what).map(u64::from),
            8 => self.u64(what),
            len => Err(Error::InvalidLength { what, len }),
        }
    }

    /// A string: the bytes before the first NUL (all of them if there is none).
    pub fn string(&self, what: &'static str) -> Result<String> {
        let end = self
            .value
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.value.len());
        let bytes = self.value.get(..end).unwrap_or(&[]);
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| Error::InvalidString { what })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align() {
        assert_eq!(nla_align(0), 0);
        assert_eq!(nla_align(5), 8);
        assert_eq!(nla_align(8), 8);
        assert_eq!(nla_align(usize::MAX), usize::MAX & !3);
    }

    #[test]
    fn writer_pads_and_nests() {
        let mut w = NlaWriter::new();
        let n = w.begin_nested(1);
        w.put_u8(2, 0xAB);
        w.put_string(3, "rr");
        w.end_nested(n);
        let b = w.finish().unwrap();
        #[rustfmt::skip]
        let want_le: [u8; 20] = [
            20, 0, 1, 0x80,      // nest: len 20, type 1 | NLA_F_NESTED
            5, 0, 2, 0, 0xAB, 0, 0, 0, // u8 + 3 bytes padding
            7, 0, 3, 0, b'r', b'r', 0, 0, // "rr\0" + 1 byte padding
        ];
        if cfg!(target_endian = "little") {
            assert_eq!(b, want_le);
        }
        let outer: Vec<_> = NlaIter::new(&b, "t").collect::<Result<_>>().unwrap();
        assert_eq!(outer.len(), 1);
        assert_eq!(outer[0].kind, 1);
        let inner: Vec<_> = NlaIter::new(outer[0].value, "t")
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(inner[0].u8("x").unwrap(), 0xAB);
        assert_eq!(inner[1].string("x").unwrap(), "rr");
    }

    #[test]
    fn iter_rejects_garbage() {
        assert!(matches!(
            NlaIter::new(&[1, 0], "t").next(),
            Some(Err(Error::Truncated { .. }))
        ));
        assert!(matches!(
            NlaIter::new(&[2, 0, 1, 0], "t").next(),
            Some(Err(Error::InvalidLength { .. }))
        ));
        assert!(matches!(
            NlaIter::new(&[9, 0, 1, 0, 0], "t").next(),
            Some(Err(Error::Truncated { .. }))
        ));
        let mut it = NlaIter::new(&[9, 0, 1, 0, 0], "t");
        assert!(it.next().is_some());
        assert!(it.next().is_none());
    }

    #[test]
    fn last_attribute_without_padding() {
        let b = [5u8, 0, 7, 0, 42];
        let v: Vec<_> = NlaIter::new(&b, "t").collect::<Result<_>>().unwrap();
        assert_eq!(v[0].u8("x").unwrap(), 42);
    }
}
