//! The connection watcher's object (`vipd-watch`): the tracepoints, kprobes and fentry
//! programs that observe connection outcomes, the cgroup `sock_ops` program that sets a
//! VIP's initial SYN retransmission timeout, and the maps they share. Built for
//! `bpfel-unknown-none` by `crates/vipd/build.rs`; vipd's watcher loads it with aya.
#![no_std]
#![no_main]

mod emit;
mod flow;
mod global;
mod inet_sock_set_state;
mod inet_sock_set_state_btf;
mod ip_vs_conn_new;
mod ip_vs_icmp_v6;
mod ip_vs_xmit;
mod kernel_read;
mod maps;
mod object;
mod skb;
mod sock;
mod sock_tracepoint;
mod syn_rto;
mod tcp_connect;
mod tcp_connect_fentry;
mod tcp_receive_reset;
mod tcp_receive_reset_btf;
mod tcp_retransmit_skb;
mod tcp_retransmit_skb_btf;
mod transitions;
mod udp_err;
mod udp_rcv;
