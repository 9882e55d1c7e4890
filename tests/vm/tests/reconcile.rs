//! The reconciler against the real kernel: a config of 56 services using every option is
//! applied; `ipvsadm -Ln` then shows exactly what ipvsadm itself makes of the same config
//! (translated independently, here, to an `ipvsadm -R` script); a second apply writes
//! nothing; one weight change is one write; an empty config removes everything vipd made.

use std::{fmt::Write as _, net::IpAddr};

use vipd_vmtests::{
    require_vm, sh,
    vipd_cli::{ipvsadm_blocks, sysctl, VipdRun},
};

const SCHEDULERS: [&str; 13] = [
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh",
];
const SERVICES: usize = 56;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Tcp,
    Udp,
    Fwmark,
}

#[derive(Clone, Copy, PartialEq)]
enum Fwd {
    Masq,
    Route,
    Ipip,
    Gue(u16, &'static str),
    Gre(&'static str),
}

struct Backend {
    addr: IpAddr,
    port: Option<u16>,
    weight: u16,
    thresholds: Option<(u32, u32)>,
}

struct Svc {
    i: usize,
    kind: Kind,
    v6: bool,
    sched: &'static str,
    flags: Vec<&'static str>,
    persistence: Option<(u32, u8)>,
    fwd: Fwd,
    backends: Vec<Backend>,
}

impl Svc {
    fn vip(&self) -> IpAddr {
        let i = self.i;
        if self.v6 {
            format!("fd00:18:50::{:x}", 0x100 + i).parse().unwrap()
        } else {
            format!("198.18.50.{}", 100 + i).parse().unwrap()
        }
    }

    fn port(&self) -> u16 {
        1000 + self.i as u16
    }

    fn mark(&self) -> u32 {
        5000 + self.i as u32
    }

    /// `-t 198.18.50.100:1000`, `-u ...`, `-f 5006 -6`.
    fn ipvsadm_key(&self) -> String {
        match self.kind {
            Kind::Tcp => format!("-t {}", self.vip_text()),
            Kind::Udp => format!("-u {}", self.vip_text()),
            Kind::Fwmark if self.v6 => format!("-f {} -6", self.mark()),
            Kind::Fwmark => format!("-f {}", self.mark()),
        }
    }

    /// `198.18.50.100:1000` / `[fd00:18:50::100]:1000`.
    fn vip_text(&self) -> String {
        endpoint(self.vip(), Some(self.port()))
    }
}

fn endpoint(addr: IpAddr, port: Option<u16>) -> String {
    match (addr, port) {
        (IpAddr::V4(a), Some(p)) => format!("{a}:{p}"),
        (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (IpAddr::V4(a), None) => a.to_string(),
        (IpAddr::V6(a), None) => a.to_string(),
    }
}

/// 56 services covering every scheduler (but `twos`, absent from 6.1), TCP, UDP and fwmark
/// in both families, persistence with netmasks, every flag, masq, route and the three
/// tunnel encapsulations with their checksum options, mixed-family tunnel backends,
/// weights (0 included), thresholds, and a service without backends.
fn services() -> Vec<Svc> {
    (0..SERVICES)
        .map(|i| {
            let kind = match i % 7 {
                6 => Kind::Fwmark,
                n if n % 2 == 1 => Kind::Udp,
                _ => Kind::Tcp,
            };
            let v6 = i % 3 == 2;
            let sched = SCHEDULERS[i % SCHEDULERS.len()];
            let mut flags = Vec::new();
            match (sched, i % 3) {
                ("sh", 0) => flags.extend(["sh-fallback", "sh-port"]),
                ("sh", 1) => flags.push("sh-port"),
                ("sh", _) => flags.push("sh-fallback"),
                ("mh", 0) => flags.extend(["mh-fallback", "mh-port"]),
                ("mh", 1) => flags.push("mh-fallback"),
                ("mh", _) => flags.push("mh-port"),
                _ => {}
            }
            if kind != Kind::Tcp && i % 2 == 0 {
                flags.push("one-packet");
            }
            let persistence = (i % 4 == 0).then(|| {
                let prefix = if v6 {
                    64 + (i % 60) as u8
                } else {
                    16 + (i % 17) as u8
                };
                (60 + i as u32, prefix)
            });
            let fwd = match i % 5 {
                0 => Fwd::Masq,
                1 => Fwd::Route,
                2 => Fwd::Ipip,
                3 => Fwd::Gue(6000 + i as u16, ["none", "csum", "remcsum"][i % 3]),
                _ => Fwd::Gre(["none", "csum"][i % 2]),
            };
            let n_backends = if i == 7 { 0 } else { 1 + i % 3 };
            let backends = (0..n_backends)
                .map(|b| {
                    // Tunnels may carry the other family: every third tunnel backend does.
                    let tunnel = matches!(fwd, Fwd::Ipip | Fwd::Gue(..) | Fwd::Gre(_));
                    let b6 = if tunnel && b == 2 { !v6 } else { v6 };
                    let addr: IpAddr = if b6 {
                        format!("fd00:18:51:{i:x}::{}", b + 2).parse().unwrap()
                    } else {
                        format!("198.18.{}.{}", 60 + i / 50, (i % 50) * 4 + b + 2)
                            .parse()
                            .unwrap()
                    };
                    let port = match (kind, fwd) {
                        (Kind::Fwmark, Fwd::Masq) if b == 0 => Some(9000),
                        (Kind::Fwmark, _) => None,
                        (_, Fwd::Masq) => Some(8000 + b as u16),
                        _ => Some(1000 + i as u16),
                    };
                    Backend {
                        addr,
                        port,
                        weight: ((i * 7 + b * 13) % 120) as u16,
                        thresholds: (i % 6 == 0).then_some((100 + b as u32, 10)),
                    }
                })
                .collect();
            Svc {
                i,
                kind,
                v6,
                sched,
                flags,
                persistence,
                fwd,
                backends,
            }
        })
        .collect()
}

fn toml(services: &[Svc], weight_bump: Option<usize>) -> String {
    let mut t = String::from("[daemon]\nvip_interface = \"vipd50\"\ndrain_timeout = \"30s\"\n");
    for s in services {
        writeln!(t, "\n[[service]]\nname = \"svc{}\"", s.i).unwrap();
        match s.kind {
            Kind::Fwmark => {
                let family = if s.v6 { "ipv6" } else { "ipv4" };
                writeln!(t, "fwmark = {}\nfamily = \"{family}\"", s.mark()).unwrap();
            }
            Kind::Tcp => writeln!(t, "vip = \"{}\"", s.vip_text()).unwrap(),
            Kind::Udp => writeln!(t, "vip = \"{}\"\nprotocol = \"udp\"", s.vip_text()).unwrap(),
        }
        writeln!(t, "scheduler = \"{}\"", s.sched).unwrap();
        if !s.flags.is_empty() {
            let f: Vec<String> = s.flags.iter().map(|f| format!("{f:?}")).collect();
            writeln!(t, "flags = [{}]", f.join(", ")).unwrap();
        }
        if let Some((timeout, mask)) = s.persistence {
            writeln!(
                t,
                "persistence = {{ timeout = \"{timeout}s\", netmask = {mask} }}"
            )
            .unwrap();
        }
        match s.fwd {
            Fwd::Masq => writeln!(t, "forwarding = \"masq\"").unwrap(),
            Fwd::Route => writeln!(t, "forwarding = \"route\"").unwrap(),
            Fwd::Ipip => writeln!(t, "forwarding = \"tunnel\"").unwrap(),
            Fwd::Gue(port, csum) => writeln!(
                t,
                "forwarding = \"tunnel\"\ntunnel = {{ type = \"gue\", port = {port}, checksum = \"{csum}\" }}"
            )
            .unwrap(),
            Fwd::Gre(csum) => writeln!(
                t,
                "forwarding = \"tunnel\"\ntunnel = {{ type = \"gre\", checksum = \"{csum}\" }}"
            )
            .unwrap(),
        }
        if s.kind != Kind::Tcp && s.i % 4 == 1 {
            writeln!(t, "udp_stale_flows = \"keep\"").unwrap();
        }
        if s.i % 5 == 0 {
            writeln!(t, "drain_timeout = \"{}s\"", 10 + s.i).unwrap();
        }
        for (b, be) in s.backends.iter().enumerate() {
            let weight = if weight_bump == Some(s.i) && b == 0 {
                be.weight + 1
            } else {
                be.weight
            };
            writeln!(
                t,
                "  [[service.backend]]\n  address = \"{}\"\n  weight = {weight}",
                endpoint(be.addr, be.port)
            )
            .unwrap();
            if let Some((x, y)) = be.thresholds {
                writeln!(t, "  upper_threshold = {x}\n  lower_threshold = {y}").unwrap();
            }
        }
    }
    t
}

/// The same services as an `ipvsadm -R` script, written from ipvsadm's manual, not from
/// vipd's code.
fn ipvsadm_script(services: &[Svc]) -> String {
    let mut t = String::new();
    for s in services {
        let svc = s.ipvsadm_key();
        let mut line = format!("-A {svc} -s {}", s.sched);
        if let Some((timeout, prefix)) = s.persistence {
            let mask = if s.v6 {
                prefix.to_string()
            } else {
                let bits = if prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - prefix)
                };
                std::net::Ipv4Addr::from(bits).to_string()
            };
            write!(line, " -p {timeout} -M {mask}").unwrap();
        }
        let sched_flags: Vec<&str> = s
            .flags
            .iter()
            .copied()
            .filter(|f| *f != "one-packet")
            .collect();
        if !sched_flags.is_empty() {
            write!(line, " -b {}", sched_flags.join(",")).unwrap();
        }
        if s.flags.contains(&"one-packet") {
            line.push_str(" -o");
        }
        writeln!(t, "{line}").unwrap();
        for b in &s.backends {
            let fwd = match s.fwd {
                Fwd::Masq => "-m".to_owned(),
                Fwd::Route => "-g".to_owned(),
                Fwd::Ipip => "-i --tun-type ipip".to_owned(),
                Fwd::Gue(port, csum) => {
                    format!("-i --tun-type gue --tun-port {port}{}", csum_opt(csum))
                }
                Fwd::Gre(csum) => format!("-i --tun-type gre{}", csum_opt(csum)),
            };
            let mut d = format!(
                "-a {svc} -r {} {fwd} -w {}",
                endpoint(b.addr, b.port),
                b.weight
            );
            if let Some((x, y)) = b.thresholds {
                write!(d, " -x {x} -y {y}").unwrap();
            }
            writeln!(t, "{d}").unwrap();
        }
    }
    t
}

fn csum_opt(c: &str) -> &'static str {
    match c {
        "csum" => " --tun-csum",
        "remcsum" => " --tun-remcsum",
        _ => " --tun-nocsum",
    }
}

/// Services of this test, by their ipvsadm line.
fn ours(line: &str) -> bool {
    line.contains("198.18.50.") || line.contains("fd00:18:50::") || {
        let w: Vec<&str> = line.split_whitespace().collect();
        w.first() == Some(&"FWM")
            && w.get(1)
                .and_then(|m| m.parse::<u32>().ok())
                .is_some_and(|m| (5000..5000 + SERVICES as u32).contains(&m))
    }
}

#[test]
fn fifty_six_services_every_option_exactly_then_zero_and_one_write() {
    require_vm();
    let services = services();
    assert!(services.len() >= 50);
    let run = VipdRun::new("fifty");
    let _ = sh("ip link del vipd50 2>/dev/null; true");

    // What ipvsadm makes of the same rules, as the reference.
    let script = run.dir.join("rules.ipvsadm");
    std::fs::write(&script, ipvsadm_script(&services)).unwrap();
    sh(&format!("ipvsadm -R < {}", script.display()));
    let want = ipvsadm_blocks(ours);
    assert_eq!(want.len(), SERVICES, "ipvsadm made {} services", want.len());
    let deletions: String = ipvsadm_script(&services)
        .lines()
        .filter(|l| l.starts_with("-A"))
        .map(|l| l.split(" -s ").next().unwrap().replacen("-A", "-D", 1) + "\n")
        .collect();
    std::fs::write(&script, deletions).unwrap();
    sh(&format!("ipvsadm -R < {}", script.display()));
    let left = ipvsadm_blocks(ours);
    assert!(left.is_empty(), "ipvsadm -R of -D lines left {left:#?}");

    // vipd applies the config from empty.
    let config = toml(&services, None);
    let first = run.apply(&config);
    let backends: usize = services.iter().map(|s| s.backends.len()).sum();
    assert_eq!(
        first.ipvs_writes,
        SERVICES + backends,
        "{:?}",
        first.failures
    );
    let vips = services.iter().filter(|s| s.kind != Kind::Fwmark).count();
    assert_eq!(
        first.rtnetlink_writes,
        1 + vips,
        "dummy interface + one write per VIP"
    );
    let got = ipvsadm_blocks(ours);
    assert_eq!(
        got, want,
        "ipvsadm -Ln after vipd apply differs from ipvsadm's own"
    );
    // A few lines spelled out, in case ipvsadm read its own script wrongly.
    let text: Vec<String> = got.iter().map(|(s, _)| s.clone()).collect();
    for line in [
        "TCP 198.18.50.100:1000 rr persistent 60 mask 255.255.0.0",
        "FWM 5006 dh ops",
        "UDP 198.18.50.133:1033 sh (sh-fallback,sh-port)",
        "UDP [fd00:18:50::108]:1008 sed persistent 68 mask 72 ops",
    ] {
        assert!(text.iter().any(|l| l == line), "no {line:?} in {text:#?}");
    }
    assert_eq!(sysctl("net.ipv4.vs.expire_nodest_conn"), "1");
    assert_eq!(sysctl("net.ipv4.vs.expire_quiescent_template"), "1");

    // Nothing differs: nothing written, not even the ownership record.
    let record = run.state_text();
    let second = run.apply(&config);
    assert_eq!(
        (
            second.netlink_writes,
            second.ipvs_writes,
            second.rtnetlink_writes,
            second.sysctl_writes
        ),
        (0, 0, 0, 0),
        "second apply: {:?}",
        second.ops
    );
    assert_eq!(run.state_text(), record);

    // One backend's weight: one write.
    let bumped = run.apply(&toml(&services, Some(10)));
    assert_eq!(
        bumped.netlink_writes, 1,
        "{:?} {:?}",
        bumped.ops, bumped.reach
    );
    assert_eq!(bumped.ops.len(), 1);
    assert!(
        bumped.ops[0].starts_with("set backend"),
        "{}",
        bumped.ops[0]
    );
    let b = &services[10].backends[0];
    let listed = sh(&format!("ipvsadm -Ln {}", services[10].ipvsadm_key()));
    assert!(
        listed.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.get(1) == Some(&endpoint(b.addr, b.port).as_str())
                && w.get(3) == Some(&(b.weight + 1).to_string().as_str())
        }),
        "{listed}"
    );

    let status = run.status();
    assert!(
        status.contains(&format!("{SERVICES} vipd's")),
        "status:\n{status}"
    );
    assert!(status.contains("[vipd: svc10]"), "status:\n{status}");

    // Everything out of the config: every service, VIP and the interface go.
    let empty = run.apply("[daemon]\nvip_interface = \"vipd50\"\n");
    assert_eq!(
        empty.ipvs_writes, SERVICES,
        "one DEL_SERVICE per service (no connections)"
    );
    assert!(ipvsadm_blocks(ours).is_empty());
    assert!(
        !sh("ip -o link show").contains("vipd50"),
        "vipd's interface left behind"
    );
    assert_eq!(empty.rtnetlink_writes, vips + 1);
}
