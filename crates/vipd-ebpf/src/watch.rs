//! vipd's kernel programs, one file per hook. Built for `bpfel-unknown-none` by
//! `crates/vipd/build.rs`; userspace loads the object with aya.
#![no_std]
#![no_main]

mod emit;
mod flow;
mod inet_sock_set_state;
mod inet_sock_set_state_btf;
mod ip_vs_conn_new;
mod ip_vs_icmp_v6;
mod ip_vs_xmit;
mod kernel_read;
mod maps;
mod skb;
mod sock;
mod sock_tracepoint;
mod tcp_connect;
mod tcp_connect_fentry;
mod tcp_receive_reset;
mod tcp_receive_reset_btf;
mod tcp_retransmit_skb;
mod tcp_retransmit_skb_btf;
mod udp_err;
mod udp_rcv;
mod xdp_csum;
mod xdp_fib;
mod xdp_flow;
mod xdp_icmp_err;
mod xdp_lb;
mod xdp_maps;
mod xdp_parse;
mod xdp_rewrite;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects any program that could reach this; it is never called.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
