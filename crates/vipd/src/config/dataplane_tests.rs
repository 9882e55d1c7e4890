//! `dataplane` and `[xdp]`: the model, and each message with where it points.

use super::*;

fn text(t: &str) -> &str {
    t.strip_prefix('\n').unwrap_or(t)
}

fn errors(t: &str) -> Vec<String> {
    match parse("vipd.toml", text(t)) {
        Ok(cfg) => panic!("expected errors, got {cfg:#?}"),
        Err(d) => d.iter().map(ToString::to_string).collect(),
    }
}

fn ok(t: &str) -> Config {
    parse("vipd.toml", text(t)).unwrap_or_else(|d| panic!("unexpected errors:\n{d}"))
}

#[test]
fn xdp_config_becomes_the_xdp_dataplane_with_maglev() {
    let cfg = ok(r#"
dataplane = "xdp"
[xdp]
interface = "eth1"

[[service]]
name = "web"
vip = "198.18.100.1:80"
scheduler = "maglev"
backend = [{ address = "198.18.2.11:8080", weight = 3 }]

[[service]]
name = "dns"
vip = "198.18.100.1:53"
protocol = "udp"
backend = [{ address = "198.18.2.11:5353" }]
"#);
    assert_eq!(
        cfg.dataplane,
        Dataplane::Xdp(XdpSettings {
            interface: "eth1".into(),
            pin_maps: true,
        })
    );
    assert!(cfg
        .services
        .iter()
        .all(|s| s.scheduler == Scheduler::MaglevHashing));
    assert_eq!(cfg.services[0].backends[0].weight, 3);
}

#[test]
fn ipvs_is_the_default_and_xdp_settings_are_optional_there() {
    let cfg = ok(r#"
[[service]]
name = "web"
vip = "198.18.100.1:80"
"#);
    assert_eq!(cfg.dataplane, Dataplane::Ipvs);
    assert_eq!(cfg.services[0].scheduler, Scheduler::DEFAULT);
    let cfg = ok("dataplane = \"ipvs\"\n");
    assert_eq!(cfg.dataplane, Dataplane::Ipvs);
}

#[test]
fn xdp_needs_an_interface() {
    assert_eq!(
        errors("dataplane = \"xdp\"\n"),
        ["vipd.toml:1:13: dataplane = \"xdp\" needs an [xdp] table with `interface` (the balancer's interface)"]
    );
    assert_eq!(
        errors("dataplane = \"xdp\"\n[xdp]\npin_maps = false\n"),
        ["vipd.toml:2:1: [xdp] needs `interface`: the balancer's interface"]
    );
    assert_eq!(
        errors("dataplane = \"xdp\"\n[xdp]\ninterface = \"a/b\"\n"),
        ["vipd.toml:3:13: invalid interface \"a/b\": contains '/'"]
    );
}

#[test]
fn unknown_dataplanes_and_stray_xdp_tables_are_errors() {
    assert_eq!(
        errors("dataplane = \"xpd\"\n"),
        ["vipd.toml:1:13: unknown dataplane \"xpd\" (expected one of ipvs, xdp, socket)"]
    );
    assert_eq!(
        errors("[xdp]\ninterface = \"eth0\"\n"),
        ["vipd.toml:1:1: [xdp] is only used with dataplane = \"xdp\" (this config uses IPVS)"]
    );
}

#[test]
fn maglev_is_not_an_ipvs_scheduler() {
    assert_eq!(
        errors("[[service]]\nname = \"w\"\nvip = \"198.18.100.1:80\"\nscheduler = \"maglev\"\n"),
        ["vipd.toml:4:13: scheduler \"maglev\" is the XDP data plane's (dataplane = \"xdp\"); IPVS's Maglev hashing is \"mh\""]
    );
}

#[test]
fn options_only_ipvs_has_are_rejected_with_xdp_each_where_written() {
    let e = errors(
        r#"
dataplane = "xdp"
[xdp]
interface = "eth0"

[[service]]
name = "a"
vip = "198.18.100.1:80"
scheduler = "wrr"
forwarding = "route"
persistence = { timeout = "60s" }
flags = ["sh-port"]
  [[service.backend]]
  address = "198.18.2.11:80"
  upper_threshold = 10

[[service]]
name = "b"
fwmark = 5
family = "ipv4"

[[service]]
name = "c"
vip = "[fd00:18::1]:53"
protocol = "udp"
udp_stale_flows = "keep"
"#,
    );
    let want = [
        "vipd.toml:8:13: scheduler \"wrr\" is an IPVS scheduler; the XDP data plane's is \"maglev\" (weighted consistent hashing, the default)",
        "vipd.toml:9:14: the XDP data plane forwards by rewriting addresses only: `forwarding` must be \"masq\" (or left out)",
        "vipd.toml:10:15: `persistence` needs IPVS: with the XDP data plane a flow stays on its backend through the flow table, and there are no client-persistence templates",
        "vipd.toml:11:9: `flags` needs IPVS: they are options of IPVS schedulers; the XDP data plane always hashes the client's address and port (Maglev)",
        "vipd.toml:14:21: `upper_threshold` needs IPVS: the XDP data plane keeps no connection counts per backend",
        "vipd.toml:18:10: `fwmark` needs IPVS: the XDP data plane balances VIP:port services only",
        "vipd.toml:25:19: udp_stale_flows = \"keep\" needs IPVS: the XDP data plane moves the flows of a removed backend at their next packet (\"expire\")",
    ];
    assert_eq!(e, want, "{e:#?}");
}

#[test]
fn socket_config_becomes_the_socket_dataplane_with_random_choice() {
    let cfg = ok(r#"
dataplane = "socket"
[socket]
cgroup = "/sys/fs/cgroup/unified/clients"

[[service]]
name = "web"
vip = "198.18.100.1:80"
scheduler = "random"
backend = [{ address = "198.18.2.11:8080", weight = 3 }]

[[service]]
name = "dns"
vip = "198.18.100.1:53"
protocol = "udp"
backend = [{ address = "198.18.2.11:5353" }]
"#);
    assert_eq!(
        cfg.dataplane,
        Dataplane::Socket(SocketSettings {
            cgroup: "/sys/fs/cgroup/unified/clients".into(),
        })
    );
    assert_eq!(cfg.dataplane.name(), "socket");
    assert_eq!(cfg.services[0].backends[0].weight, 3);
    // Without [socket]: the host's cgroup v2 root.
    let cfg = ok("dataplane = \"socket\"\n");
    assert_eq!(
        cfg.dataplane,
        Dataplane::Socket(SocketSettings {
            cgroup: SocketSettings::default_cgroup(),
        })
    );
}

#[test]
fn socket_settings_are_checked_and_only_used_with_socket() {
    assert_eq!(
        errors("dataplane = \"socket\"\n[socket]\ncgroup = \"clients\"\n"),
        ["vipd.toml:3:10: invalid cgroup \"clients\": not an absolute path (the cgroup v2 directory, e.g. /sys/fs/cgroup/unified)"]
    );
    assert_eq!(
        errors("dataplane = \"socket\"\n[socket]\ncgroup = \"/sys/fs/cgroup/../x\"\n"),
        ["vipd.toml:3:10: invalid cgroup \"/sys/fs/cgroup/../x\": `..` is not allowed"]
    );
    assert_eq!(
        errors("dataplane = \"socket\"\n[socket]\ncgroups = \"/x\"\n"),
        ["vipd.toml:3:1: unknown key `cgroups` in [socket] (expected one of cgroup; did you mean `cgroup`?)"]
    );
    assert_eq!(
        errors("[socket]\ncgroup = \"/x\"\n"),
        ["vipd.toml:1:1: [socket] is only used with dataplane = \"socket\""]
    );
    assert_eq!(
        errors("dataplane = \"socket\"\n[defaults]\nscheduler = \"wlc\"\n"),
        ["vipd.toml:3:13: scheduler \"wlc\": the socket data plane's only scheduler is \"random\" (weighted random choice at connect, the default): leave `scheduler` out of [defaults]"]
    );
}

#[test]
fn options_only_ipvs_has_are_rejected_with_socket_each_where_written() {
    let e = errors(
        r#"
dataplane = "socket"

[[service]]
name = "a"
vip = "198.18.100.1:80"
scheduler = "maglev"
forwarding = "route"
flags = ["sh-port"]
  [[service.backend]]
  address = "198.18.2.11:80"
  upper_threshold = 10

[[service]]
name = "b"
fwmark = 5
family = "ipv4"

[[service]]
name = "c"
vip = "[fd00:18::1]:53"
protocol = "udp"
udp_stale_flows = "expire"

[[service]]
name = "d"
vip = "[fd00:18::1]:54"
protocol = "udp"
udp_stale_flows = "keep"
"#,
    );
    let want = [
        "vipd.toml:6:13: scheduler \"maglev\" needs IPVS; the socket data plane's is \"random\" (weighted random choice at connect, the default)",
        "vipd.toml:7:14: `forwarding` needs IPVS: the socket data plane connects the client's socket straight to the backend (leave `forwarding` out)",
        "vipd.toml:8:9: `flags` needs IPVS: they are options of IPVS schedulers; the socket data plane chooses at random in proportion to the weights",
        "vipd.toml:11:21: `upper_threshold` needs IPVS: the socket data plane keeps no connection counts per backend",
        "vipd.toml:15:10: `fwmark` needs IPVS: the socket data plane translates VIP:port destinations at connect and sendmsg; there are no packets to mark",
    ];
    assert_eq!(e, want, "{e:#?}");
}

#[test]
fn a_socket_service_chooses_among_at_most_256_backends() {
    let backends: Vec<String> = (0..257)
        .map(|i| {
            format!(
                "{{ address = \"198.18.{}.{}:80\" }}",
                2 + i / 200,
                1 + i % 200
            )
        })
        .collect();
    let text = format!(
        "dataplane = \"socket\"\n[[service]]\nname = \"w\"\nvip = \"198.18.100.1:80\"\nbackend = [{}]\n",
        backends.join(", ")
    );
    assert_eq!(
        errors(&text),
        ["vipd.toml:5:11: 257 backends: the socket data plane chooses among at most 256 per service"]
    );
}

#[test]
fn persistence_is_kept_by_the_socket_plane_and_checked_as_for_ipvs() {
    let cfg = ok(r#"
dataplane = "socket"

[[service]]
name = "web"
vip = "198.18.100.1:80"
persistence = { timeout = "300s", netmask = 24 }
backend = [{ address = "198.18.2.11:80" }]

[[service]]
name = "dns"
vip = "[fd00:18::1]:53"
protocol = "udp"
persistence = {}
backend = [{ address = "[fd00:18::2]:53" }]
"#);
    assert_eq!(
        cfg.services[0].persistence,
        Some(Persistence {
            timeout: std::time::Duration::from_secs(300),
            netmask: 24,
        })
    );
    // The defaults: ipvsadm's timeout, the full prefix.
    assert_eq!(
        cfg.services[1].persistence,
        Some(Persistence {
            timeout: std::time::Duration::from_secs(300),
            netmask: 128,
        })
    );
    assert_eq!(
        errors(
            r#"
dataplane = "socket"
[[service]]
name = "web"
vip = "198.18.100.1:80"
persistence = { timeout = "0s", netmask = 33 }
"#
        ),
        [
            "vipd.toml:5:27: persistence timeout 0s must be at least 1s",
            "vipd.toml:5:43: persistence netmask 33 out of range for an IPv4 service (0..=32)",
        ]
    );
}
