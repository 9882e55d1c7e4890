//! The XDP data plane's object (`vipd-xdp`): the balancer and pass programs and the
//! maps they own, health ring buffer included; nothing of the watcher's. Built for
//! `bpfel-unknown-none` by `crates/vipd/build.rs`; vipd's XDP loader loads it with aya.
#![no_std]
#![no_main]

mod object;
mod ring_room;
mod xdp_csum;
mod xdp_fib;
mod xdp_flow;
mod xdp_icmp_err;
mod xdp_lb;
mod xdp_maps;
mod xdp_parse;
mod xdp_rewrite;
