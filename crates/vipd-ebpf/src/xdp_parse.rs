//! Bounds-checked access to the packet. Every read and write goes through [`Packet`],
//! which checks `offset + size <= data_end` right before the access, the form the
//! verifier can follow; a failed check is [`Short`] (the packet is shorter than its
//! headers say) and the program passes the packet to the kernel untouched.
//!
//! There is no one-byte read: LLVM turns the check `p + 1 > end` into `p >= end`, from
//! which the verifier learns no readable range, so single bytes are read with the other
//! byte of their 16-bit word (`bytes::<2>`).

use aya_ebpf::programs::XdpContext;

/// The packet is shorter than the header being read.
#[derive(Debug, Clone, Copy)]
pub struct Short;

/// Ethernet header length (no VLAN tags; tagged frames are not ours).
pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;

/// Offsets in an IPv4 header.
pub mod ip4 {
    pub const TOT_LEN: usize = 2;
    pub const FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const CHECK: usize = 10;
    pub const SADDR: usize = 12;
    pub const DADDR: usize = 16;
}

/// Offsets in the IPv6 header (no extension headers).
pub mod ip6 {
    pub const PAYLOAD_LEN: usize = 4;
    /// Next header, then hop limit.
    pub const NEXTHDR: usize = 6;
    pub const SADDR: usize = 8;
    pub const DADDR: usize = 24;
    pub const HLEN: usize = 40;
}

/// Offsets in TCP, UDP and ICMP headers.
pub mod l4 {
    pub const SPORT: usize = 0;
    pub const DPORT: usize = 2;
    pub const TCP_FLAGS: usize = 13;
    pub const TCP_CHECK: usize = 16;
    pub const UDP_CHECK: usize = 6;
    pub const ICMP_CHECK: usize = 2;
    pub const ICMP_ID: usize = 4;
}

pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

pub struct Packet<'a> {
    pub ctx: &'a XdpContext,
}

impl Packet<'_> {
    #[inline(always)]
    fn at(&self, off: usize, len: usize) -> Result<*mut u8, Short> {
        let start = self.ctx.data();
        let end = self.ctx.data_end();
        if start + off + len > end {
            return Err(Short);
        }
        Ok((start + off) as *mut u8)
    }

    /// Whether the packet holds at least `off + len` bytes.
    #[inline(always)]
    pub fn has(&self, off: usize, len: usize) -> bool {
        self.at(off, len).is_ok()
    }

    /// A 16-bit word as it lies in the packet (native order; see `xdp_csum`).
    #[inline(always)]
    pub fn raw16(&self, off: usize) -> Result<u16, Short> {
        let p = self.at(off, 2)?;
        // SAFETY: in bounds, checked just above.
        Ok(unsafe { core::ptr::read_unaligned(p as *const u16) })
    }

    #[inline(always)]
    pub fn set_raw16(&self, off: usize, v: u16) -> Result<(), Short> {
        let p = self.at(off, 2)?;
        // SAFETY: in bounds, checked just above.
        unsafe { core::ptr::write_unaligned(p as *mut u16, v) };
        Ok(())
    }

    /// A big-endian 16-bit field in host order.
    #[inline(always)]
    pub fn be16(&self, off: usize) -> Result<u16, Short> {
        Ok(u16::from_be(self.raw16(off)?))
    }

    #[inline(always)]
    pub fn bytes<const N: usize>(&self, off: usize) -> Result<[u8; N], Short> {
        let p = self.at(off, N)?;
        // SAFETY: in bounds, checked just above.
        Ok(unsafe { core::ptr::read_unaligned(p as *const [u8; N]) })
    }

    #[inline(always)]
    pub fn set_bytes<const N: usize>(&self, off: usize, v: &[u8; N]) -> Result<(), Short> {
        let p = self.at(off, N)?;
        // SAFETY: in bounds, checked just above.
        unsafe { core::ptr::write_unaligned(p as *mut [u8; N], *v) };
        Ok(())
    }

    /// Whether the IPv4 header at `off`, `ihl` bytes long (20..=60), sums to 0xffff.
    #[inline(always)]
    pub fn ipv4_checksum_ok(&self, off: usize, ihl: usize) -> Result<bool, Short> {
        let mut sum: u32 = 0;
        let mut i = 0;
        while i < 60 {
            if i >= ihl {
                break;
            }
            sum += u32::from(self.raw16(off + i)?);
            i += 2;
        }
        Ok(crate::xdp_csum::fold(sum) == 0xffff)
    }
}
