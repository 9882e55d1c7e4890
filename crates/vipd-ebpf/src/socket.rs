//! The socket data plane's object (`vipd-sock`): the cgroup programs that translate a
//! VIP to a backend when a socket connects or sends, and back when the application asks
//! for its peer or receives a datagram, the `sock_ops` program that reports how those
//! connections fare, the `sock_release` program that removes a closed UDP socket's
//! records, the tracepoints that report refusals and ICMP errors on connected
//! sockets, the fentry programs that report ICMP errors about unconnected datagrams, and
//! the maps they own; nothing of the other planes'. Built for `bpfel-unknown-none` by
//! `crates/vipd/build.rs`; vipd's socket loader loads it with aya.
#![no_std]
#![no_main]
// The BPF target has no `core::sync::atomic` types; `sock_affinity` counts a client's
// open connections with the atomic add intrinsic (BPF_ATOMIC). The object is built with
// RUSTC_BOOTSTRAP already, for `-Z build-std=core` (crates/vipd/build.rs).
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod global;
// Only `read` (probed reads) is used here; the trait serves the watcher.
#[allow(dead_code)]
mod kernel_read;
mod object;
mod ring_room;
// Only `data` and the header reads are used here; `network_header` serves the watcher.
#[allow(dead_code)]
mod skb;
mod sock_addr;
mod sock_affinity;
mod sock_connect;
mod sock_connect_next;
mod sock_error;
mod sock_getpeername;
mod sock_health;
mod sock_maps;
mod sock_ops;
mod sock_recvmsg;
mod sock_release;
mod sock_reset;
mod sock_select;
mod sock_sendmsg;
mod sock_syn_rto;
mod sock_udp_err;
