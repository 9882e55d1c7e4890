//! `[service.health] syn_rto`: accepted values, and each message with where it points.

use std::time::Duration;

use super::tests::{errors, ok};

/// A service of `keys` (one line each) whose health section sets `syn_rto = value`.
fn service(keys: &str, value: &str) -> String {
    format!("\n[[service]]\n{keys}\n  [service.health]\n  syn_rto = {value}\n")
}

fn tcp(value: &str) -> String {
    service("name = \"web\"\nvip = \"198.18.0.10:80\"", value)
}

#[test]
fn syn_rto_takes_a_duration_in_range_or_off() {
    let rto = |v: &str| ok(&tcp(v)).services[0].health.clone().unwrap().syn_rto;
    assert_eq!(rto("\"200ms\""), Some(Duration::from_millis(200)));
    assert_eq!(rto("\"20ms\""), Some(Duration::from_millis(20)));
    assert_eq!(rto("\"1s\""), Some(Duration::from_secs(1)));
    assert_eq!(rto("\"off\""), None);
    let absent = ok(r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
"#);
    assert_eq!(
        absent.services[0].health.as_ref().and_then(|h| h.syn_rto),
        None
    );
}

#[test]
fn syn_rto_out_of_range_or_of_the_wrong_type_is_refused() {
    let range = "out of range (20ms..=1s, or \"off\" for the kernel's default)";
    assert_eq!(
        errors(&tcp("\"10ms\"")),
        [format!("vipd.toml:5:13: syn_rto 10ms {range}")]
    );
    assert_eq!(
        errors(&tcp("\"2s\"")),
        [format!("vipd.toml:5:13: syn_rto 2s {range}")]
    );
    assert_eq!(
        errors(&tcp("200")),
        ["vipd.toml:5:13: `syn_rto` must be a string, found integer 200"]
    );
}

#[test]
fn syn_rto_is_refused_on_udp_and_fwmark_services() {
    let only = "`syn_rto` only applies to TCP VIP:port services (it is the timeout of the first SYN of a connection to the VIP)";
    let udp = "name = \"dns\"\nvip = \"198.18.0.53:53\"\nprotocol = \"udp\"";
    assert_eq!(
        errors(&service(udp, "\"200ms\"")),
        [format!("vipd.toml:6:13: {only}")]
    );
    let fwmark = "name = \"marked\"\nfwmark = 7\nfamily = \"ipv4\"";
    assert_eq!(
        errors(&service(fwmark, "\"200ms\"")),
        [format!("vipd.toml:6:13: {only}")]
    );
}
