//! What the socket plane's passive detection covers on this kernel, as `vipd status`
//! shows it. Always `partial` (the `vipd_watcher_mode` label): unconnected UDP's errors
//! and silent UDP backends are left to active checks, and the refusal and ICMP error
//! hooks may be missing where the kernel lacks what they need.

/// What the plane's passive detection covers on this kernel, for `vipd status`: `no_reset`
/// and `no_errors` say why the refusal and the ICMP error hooks are missing, if they are.
pub fn mode(no_reset: Option<&str>, no_errors: Option<&str>) -> String {
    let mut reported = Vec::new();
    let mut active = Vec::new();
    match no_reset {
        None => reported.push("TCP refusals (tcp_receive_reset)".to_owned()),
        Some(why) => active.push(format!("TCP refusals ({why})")),
    }
    reported.push("unanswered SYNs and established connections (sock_ops)".to_owned());
    match no_errors {
        None => {
            reported.push("ICMP errors on connected UDP sockets (inet_sk_error_report)".to_owned());
            active.push("errors of unconnected UDP and UDP backends that stay silent".to_owned());
        }
        Some(why) => active.push(format!("UDP errors ({why})")),
    }
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
        let all = mode(None, None);
        assert!(all.contains("TCP refusals (tcp_receive_reset)"), "{all}");
        assert!(
            all.contains("ICMP errors on connected UDP sockets"),
            "{all}"
        );
        assert!(all.contains("errors of unconnected UDP"), "{all}");
        let none = mode(Some("no sock_cookie"), Some("no BTF"));
        assert!(none.contains("TCP refusals (no sock_cookie)"), "{none}");
        assert!(
            none.contains("UDP errors (no BTF) need active checks"),
            "{none}"
        );
        assert!(!none.contains("inet_sk_error_report"), "{none}");
    }
}
