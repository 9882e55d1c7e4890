//! Plain `#[repr(C)]` types shared by vipd's kernel programs (`vipd-ebpf`) and its
//! userspace. No pointers, no enums with invalid bit patterns: every field is an integer
//! or a byte array, so any bytes the kernel hands over are a valid value.
//!
//! The `user` feature adds `aya::Pod` impls so userspace can copy these into maps and
//! program globals.
#![no_std]

pub mod event;
pub mod health;
pub mod keys;
pub mod offsets;
pub mod sock;
pub mod xdp;

pub use event::{ConnEvent, EventKind};
pub use keys::{Backend, DestKey, FlowKey, UdpTraffic, VipKey};
pub use offsets::{
    IpvsConnOffsets, IpvsConnParamOffsets, SkbOffsets, SockOffsets, SockTracepointOffsets, NO_FIELD,
};

/// Address families, as in `linux/socket.h`.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// IP protocol numbers, as in `linux/in.h`.
pub const IPPROTO_TCP: u16 = 6;
pub const IPPROTO_UDP: u16 = 17;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: each type is #[repr(C)], made only of integers and integer arrays, with
    // explicit padding fields, so every bit pattern is valid and there are no holes.
    unsafe impl aya::Pod for crate::ConnEvent {}
    unsafe impl aya::Pod for crate::SockTracepointOffsets {}
    unsafe impl aya::Pod for crate::IpvsConnParamOffsets {}
    unsafe impl aya::Pod for crate::SockOffsets {}
    unsafe impl aya::Pod for crate::VipKey {}
    unsafe impl aya::Pod for crate::FlowKey {}
    unsafe impl aya::Pod for crate::Backend {}
    unsafe impl aya::Pod for crate::DestKey {}
    unsafe impl aya::Pod for crate::UdpTraffic {}
    unsafe impl aya::Pod for crate::SkbOffsets {}
    unsafe impl aya::Pod for crate::IpvsConnOffsets {}
    unsafe impl aya::Pod for crate::xdp::XdpService {}
    unsafe impl aya::Pod for crate::xdp::XdpBackend {}
    unsafe impl aya::Pod for crate::xdp::XdpTuple {}
    unsafe impl aya::Pod for crate::xdp::XdpFlow {}
    unsafe impl aya::Pod for crate::xdp::XdpReply {}
    unsafe impl aya::Pod for crate::xdp::XdpHealthEvent {}
    unsafe impl aya::Pod for crate::sock::SockService {}
    unsafe impl aya::Pod for crate::sock::SockBackend {}
    unsafe impl aya::Pod for crate::sock::SockPeerKey {}
    unsafe impl aya::Pod for crate::sock::SockPeer {}
    unsafe impl aya::Pod for crate::sock::SockAffinityKey {}
    unsafe impl aya::Pod for crate::sock::SockAffinity {}
    unsafe impl aya::Pod for crate::sock::SockStickyConn {}
    unsafe impl aya::Pod for crate::sock::SockUdpFlowKey {}
    unsafe impl aya::Pod for crate::sock::SockUdpSent {}
    unsafe impl aya::Pod for crate::sock::SockSynRto {}
    unsafe impl aya::Pod for crate::sock::SockResetOffsets {}
    unsafe impl aya::Pod for crate::sock::SockErrorOffsets {}
}
