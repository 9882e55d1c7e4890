//! Incremental Internet checksum updates (RFC 1624, eqn. 3: `HC' = ~(~HC + ~m + m')`).
//!
//! Every 16-bit word is taken as it lies in the packet, read in native byte order: the
//! one's complement sum commutes with a byte swap, so reading the checksum field and the
//! changed words the same (native) way gives the right bytes without any swapping.
//! An update never repairs a wrong checksum: a packet that arrived corrupt leaves corrupt
//! and the receiver drops it, as it would have without us.

/// A sum of changes, applied to one or more checksum fields.
#[derive(Clone, Copy)]
pub struct Delta(u32);

#[inline(always)]
pub fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

#[inline(always)]
fn w(b: &[u8], i: usize) -> u16 {
    u16::from_ne_bytes([b[i], b[i + 1]])
}

impl Delta {
    #[inline(always)]
    pub const fn new() -> Self {
        Delta(0)
    }

    /// One 16-bit word changed from `old` to `new` (both as read from the packet).
    #[inline(always)]
    pub fn word(self, old: u16, new: u16) -> Self {
        Delta(self.0 + u32::from(!old) + u32::from(new))
    }

    /// An address changed (4 bytes for IPv4, 16 for IPv6).
    #[inline(always)]
    pub fn bytes<const N: usize>(self, old: &[u8; N], new: &[u8; N]) -> Self {
        let mut d = self;
        let mut i = 0;
        while i < N {
            d = Delta(fold(d.0) as u32).word(w(old, i), w(new, i));
            i += 2;
        }
        d
    }

    /// The checksum field's new value.
    #[inline(always)]
    pub fn apply(self, check: u16) -> u16 {
        !fold(u32::from(!check) + u32::from(fold(self.0)))
    }

    /// For UDP over IPv4, where 0 means "no checksum": 0 stays 0, and a computed 0 is sent
    /// as 0xffff (RFC 768).
    #[inline(always)]
    pub fn apply_udp(self, check: u16) -> u16 {
        if check == 0 {
            return 0;
        }
        match self.apply(check) {
            0 => 0xffff,
            c => c,
        }
    }
}
