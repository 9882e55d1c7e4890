//! The address a cgroup `sock_addr` program sees (`user_ip4`/`user_ip6`, `user_port`)
//! as vipd's 16-byte form, and writing a new one back. The kernel lets these fields be
//! read and written 4 bytes at a time; volatile accesses keep the compiler from merging
//! or splitting them.

use aya_ebpf::{
    bindings::{bpf_sock, bpf_sock_addr},
    programs::SockAddrContext,
};

/// An address and port: IPv4 in the first four bytes, the rest zero; port in host order.
#[derive(Clone, Copy)]
pub struct Addr {
    pub addr: [u8; 16],
    pub port: u16,
}

#[inline(always)]
fn sa(ctx: &SockAddrContext) -> *mut bpf_sock_addr {
    ctx.sock_addr
}

/// The socket the call is made on (a full socket in a sock_addr context); read its
/// fields with one 4-byte load each, as the verifier allows.
#[inline(always)]
pub fn sock(ctx: &SockAddrContext) -> *mut bpf_sock {
    // SAFETY: the context pointer is valid for the program's run.
    unsafe { core::ptr::read_volatile(&(*sa(ctx)).__bindgen_anon_1.sk) }
}

/// The socket's protocol (`IPPROTO_TCP`, `IPPROTO_UDP`).
#[inline(always)]
pub fn protocol(ctx: &SockAddrContext) -> u32 {
    // SAFETY: the context pointer is valid for the program's run.
    unsafe { core::ptr::read_volatile(&(*sa(ctx)).protocol) }
}

/// An address read from a context: `v6` the four words at `ip6`, else the word at
/// `ip4` (in the first four bytes, the rest zero). Volatile 4-byte loads, as the
/// verifier allows on contexts and sockets.
///
/// # Safety
/// Both pointers are fields of the program's context (or of a socket it gives).
#[inline(always)]
pub unsafe fn read_addr(v6: bool, ip4: *const u32, ip6: *const [u32; 4]) -> [u8; 16] {
    let mut addr = [0u8; 16];
    // SAFETY: as the caller promises.
    unsafe {
        if v6 {
            let mut i = 0;
            while i < 4 {
                let w = core::ptr::read_volatile(&(*ip6)[i]);
                addr[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
                i += 1;
            }
        } else {
            let w = core::ptr::read_volatile(ip4);
            addr[..4].copy_from_slice(&w.to_ne_bytes());
        }
    }
    addr
}

/// The user's address and port (`v6`: `user_ip6`, else `user_ip4`).
#[inline(always)]
pub fn user(ctx: &SockAddrContext, v6: bool) -> Addr {
    let p = sa(ctx);
    // SAFETY: the context pointer is valid for the program's run; each field is read
    // with one 4-byte load, as the verifier allows.
    unsafe {
        let addr = read_addr(v6, &(*p).user_ip4, &(*p).user_ip6);
        // Network byte order in the low 16 bits.
        let port = u16::from_be(core::ptr::read_volatile(&(*p).user_port) as u16);
        Addr { addr, port }
    }
}

/// Makes `a` the user's address and port.
#[inline(always)]
pub fn set_user(ctx: &SockAddrContext, v6: bool, a: &Addr) {
    let p = sa(ctx);
    let word =
        |i: usize| u32::from_ne_bytes([a.addr[i], a.addr[i + 1], a.addr[i + 2], a.addr[i + 3]]);
    // SAFETY: as in `user`; the hooks this is called from may write these fields.
    unsafe {
        if v6 {
            let mut i = 0;
            while i < 4 {
                core::ptr::write_volatile(&mut (*p).user_ip6[i], word(i * 4));
                i += 1;
            }
        } else {
            core::ptr::write_volatile(&mut (*p).user_ip4, word(0));
        }
        core::ptr::write_volatile(&mut (*p).user_port, u32::from(a.port.to_be()));
    }
}

/// A remote port the kernel gives as a 4-byte word (`bpf_sock_ops.remote_port`,
/// `bpf_sock.dst_port`), host order: it is in network order in the low or the high 16
/// bits depending on the kernel (the other half is zero).
#[inline(always)]
pub fn remote_port(raw: u32) -> u16 {
    if raw & 0xffff == 0 {
        u16::from_be((raw >> 16) as u16)
    } else {
        u16::from_be(raw as u16)
    }
}
