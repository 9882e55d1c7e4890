//! The socket plane's hook for ICMP errors about datagrams that unconnected UDP sockets
//! sent through a VIP: `vipd_sock_icmp4` and `vipd_sock_icmp6`, fentry programs on the
//! kernel's `udp_err` and `icmpv6_notify` (`udpv6_err` is not open to ftrace). They
//! read `skb->data` at its offset in this kernel's BTF. A kernel without BTF, or one that refuses fentry programs (BPF
//! trampolines; some kernels close ftrace to BPF and answer EPERM), gets no passive
//! reports of those errors, and the plane says so.

use aya::{
    programs::{FEntry, Program},
    Ebpf,
};
use vipd_common::SkbOffsets;

use crate::{
    error_line,
    kernel::{btf::Btf, offsets},
};

/// The programs and the kernel functions they attach to.
pub const PROGRAMS: [(&str, &str); 2] = [
    ("vipd_sock_icmp4", "udp_err"),
    ("vipd_sock_icmp6", "icmpv6_notify"),
];

/// The global the offsets go into.
pub const OFFSETS_GLOBAL: &str = "SKB";

/// The `struct sk_buff` offsets in the kernel's `btf` (or why it could not be read).
pub fn offsets(btf: Result<&Btf, &str>) -> Result<SkbOffsets, String> {
    offsets::skb(btf?).map_err(|e| e.to_string())
}

fn fentry<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut FEntry, String> {
    match ebpf.program_mut(name) {
        Some(Program::FEntry(p)) => Ok(p),
        _ => Err(format!("the eBPF object has no fentry program {name}")),
    }
}

/// `e` on one line, without the empty verifier log a refused load ends with.
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    tidy(error_line::of(e))
}

fn tidy(line: String) -> String {
    match line.trim_end().strip_suffix("Verifier output:") {
        Some(rest) => rest.trim_end().trim_end_matches('.').to_owned(),
        None => line,
    }
}

/// Loads both programs against the kernel's BTF; an error says why they cannot run here
/// (the plane goes on without them).
pub fn load(ebpf: &mut Ebpf) -> Result<(), String> {
    let btf = aya::Btf::from_sys_fs().map_err(|e| format!("reading the kernel's BTF: {e}"))?;
    for (name, function) in PROGRAMS {
        fentry(ebpf, name)?.load(function, &btf).map_err(|e| {
            format!(
                "loading {name} on fentry {function}: {}",
                error_line::of(&e)
            )
        })?;
    }
    Ok(())
}

/// Attaches both programs (held by this process: errors are reported while vipd runs),
/// or neither: an error says why (the first one is detached again if the second fails).
pub fn attach(ebpf: &mut Ebpf) -> Result<(), String> {
    let [(v4, f4), (v6, f6)] = PROGRAMS;
    let first = fentry(ebpf, v4)?
        .attach()
        .map_err(|e| format!("attaching {v4} to fentry {f4}: {}", cause(&e)))?;
    let second = fentry(ebpf, v6)?
        .attach()
        .map_err(|e| format!("attaching {v6} to fentry {f6}: {}", cause(&e)));
    if let Err(why) = second {
        let _ = fentry(ebpf, v4).map(|p| p.detach(first));
        return Err(why);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_verifier_log_is_left_out() {
        let refused = "the BPF_PROG_LOAD syscall returned Operation not permitted (os error 1). Verifier output: ";
        assert_eq!(
            tidy(refused.to_owned()),
            "the BPF_PROG_LOAD syscall returned Operation not permitted (os error 1)"
        );
        let log =
            "the BPF_PROG_LOAD syscall returned Permission denied. Verifier output: R1 invalid";
        assert_eq!(tidy(log.to_owned()), log);
    }

    #[test]
    fn this_hosts_btf_gives_the_offsets() {
        let btf = Btf::from_sys_fs(None).unwrap();
        assert_eq!(offsets(Ok(&btf)).unwrap().valid, 1);
        assert_eq!(offsets(Err("no BTF")).unwrap_err(), "no BTF");
    }
}
