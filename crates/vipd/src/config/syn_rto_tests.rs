//! `[service.health] syn_rto`: accepted values, and each message with where it points.

use std::time::Duration;

use super::{
    tests::{errors, ok},
    AutoRto, SynRto,
};

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
    let fixed = |ms| Some(SynRto::Fixed(Duration::from_millis(ms)));
    assert_eq!(rto("\"200ms\""), fixed(200));
    assert_eq!(rto("\"20ms\""), fixed(20));
    assert_eq!(rto("\"1s\""), fixed(1_000));
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
    let range = "out of range (20ms..=1s, \"auto\", or \"off\" for the kernel's default)";
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
        ["vipd.toml:5:13: `syn_rto` must be a table, found integer 200"]
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

#[test]
fn syn_rto_auto_takes_the_defaults_or_a_table_of_bounds() {
    let rto = |v: &str| ok(&tcp(v)).services[0].health.clone().unwrap().syn_rto;
    let ms = Duration::from_millis;
    assert_eq!(
        rto("\"auto\""),
        Some(SynRto::Auto(AutoRto {
            k: 3,
            floor: ms(50),
            ceiling: ms(1_000)
        }))
    );
    assert_eq!(
        rto("{ k = 4, floor = \"30ms\", ceiling = \"500ms\" }"),
        Some(SynRto::Auto(AutoRto {
            k: 4,
            floor: ms(30),
            ceiling: ms(500)
        }))
    );
    assert_eq!(
        rto("{ floor = \"80ms\" }"),
        Some(SynRto::Auto(AutoRto {
            floor: ms(80),
            ..AutoRto::default()
        }))
    );
}

#[test]
fn syn_rto_auto_bounds_are_checked() {
    assert_eq!(
        errors(&tcp("{ floor = \"300ms\", ceiling = \"200ms\" }")),
        ["vipd.toml:5:23: syn_rto floor 300ms is above its ceiling 200ms"]
    );
    assert_eq!(
        errors(&tcp("{ floor = \"5ms\" }")),
        ["vipd.toml:5:23: syn_rto floor 5ms out of range (20ms..=1s)"]
    );
    assert_eq!(
        errors(&tcp("{ k = 0 }")),
        ["vipd.toml:5:19: syn_rto k 0 out of range (1..=100)"]
    );
    assert_eq!(
        errors(&tcp("{ kk = 3 }")).len(),
        1,
        "an unknown key is refused"
    );
}
