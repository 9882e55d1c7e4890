//! What the socket plane's passive detection covers on this kernel, as `vipd status`
//! shows it. Always `partial` (the `vipd_watcher_mode` label): UDP backends that stay
//! silent are left to active checks, and the refusal and ICMP error hooks may be missing
//! where the kernel lacks what they need.

/// What the plane's passive detection covers on this kernel, for `vipd status`:
/// `no_reset`, `no_errors` and `no_udp_errors` say why the refusal hook and the hooks for
/// ICMP errors on connected sockets and about unconnected datagrams are missing, if they
/// are.
pub fn mode(
    no_reset: Option<&str>,
    no_errors: Option<&str>,
    no_udp_errors: Option<&str>,
) -> String {
    let mut reported = Vec::new();
    let mut active = Vec::new();
    match no_reset {
        None => reported.push("TCP refusals (tcp_receive_reset)".to_owned()),
        Some(why) => active.push(format!("TCP refusals ({why})")),
    }
    reported.push("unanswered SYNs and established connections (sock_ops)".to_owned());
    match no_errors {
        None => {
            reported.push("ICMP errors on connected UDP sockets (inet_sk_error_report)".to_owned())
        }
        Some(why) => active.push(format!("errors of connected UDP ({why})")),
    }
    match no_udp_errors {
        None => reported.push(
            "ICMP errors about unconnected UDP datagrams (udp_err, icmpv6_notify)".to_owned(),
        ),
        Some(why) => active.push(format!("errors of unconnected UDP ({why})")),
    }
    active.push("UDP backends that stay silent".to_owned());
    format!(
        "partial: the socket plane reports {}; {} need active checks",
        reported.join(", "),
        active.join(" and ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_missing_hook_moves_its_failures_to_active_checks_with_the_reason() {
        let all = mode(None, None, None);
        assert!(all.contains("TCP refusals (tcp_receive_reset)"), "{all}");
        assert!(
            all.contains("ICMP errors on connected UDP sockets"),
            "{all}"
        );
        assert!(
            all.contains("ICMP errors about unconnected UDP datagrams (udp_err"),
            "{all}"
        );
        assert!(
            all.ends_with("; UDP backends that stay silent need active checks"),
            "{all}"
        );
        let none = mode(
            Some("no sock_cookie"),
            Some("no BTF"),
            Some("fentry refused"),
        );
        assert!(none.contains("TCP refusals (no sock_cookie)"), "{none}");
        assert!(
            none.contains(
                "errors of connected UDP (no BTF) and errors of unconnected UDP (fentry refused) and UDP backends that stay silent need active checks"
            ),
            "{none}"
        );
        assert!(!none.contains("inet_sk_error_report"), "{none}");
        assert!(!none.contains("udp_err"), "{none}");
    }
}
