//! Host tier: the XDP balancer in a lab of network namespaces (see `xdp_common/lab.rs`):
//! ping, a UDP echo and HTTP with curl through the VIP, flows spread per the weights and
//! stay on their backend, and the backends' stacks accept every checksum. Needs root;
//! fails, never skips, without it.

mod xdp_common;

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};

use vipd::xdp::{
    packet::{PROTO_TCP, PROTO_UDP},
    Dataplane, Sizes, XdpProgram, XdpServiceSpec,
};
use vipd_common::xdp::stat;
use xdp_common::lab::{udp_echo, wait_tcp, Lab, Procs, B1, B2, VIP, VIP6};

fn specs(w1: u32, w2: u32) -> Vec<XdpServiceSpec> {
    let svc = |vip: IpAddr, port, protocol, b1: IpAddr, b2: IpAddr, bport| XdpServiceSpec {
        vip: SocketAddr::new(vip, port),
        protocol,
        backends: vec![
            (SocketAddr::new(b1, bport), w1),
            (SocketAddr::new(b2, bport), w2),
        ],
    };
    let (b1_6, b2_6) = (
        "fd00:18:2::11".parse().unwrap(),
        "fd00:18:2::12".parse().unwrap(),
    );
    vec![
        svc(VIP.into(), 80, PROTO_TCP, B1.into(), B2.into(), 8080),
        svc(VIP.into(), 53, PROTO_UDP, B1.into(), B2.into(), 5353),
        svc(VIP6.into(), 80, PROTO_TCP, b1_6, b2_6, 8080),
        svc(VIP6.into(), 53, PROTO_UDP, b1_6, b2_6, 5353),
    ]
}

/// Counts of each answer in `out`, one per line.
fn tally(out: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in out.lines().filter(|l| !l.is_empty()) {
        *m.entry(l.to_owned()).or_default() += 1;
    }
    m
}

/// Checksum and header errors a namespace's stack counted (IPv4, IPv6, TCP, UDP, ICMP).
fn csum_errors(ns: &xdp_common::Netns) -> u64 {
    let snmp = ns.run("cat /proc/net/snmp");
    let mut total = 0;
    let lines: Vec<&str> = snmp.lines().collect();
    for pair in lines.chunks(2) {
        let [head, vals] = pair else { continue };
        for (k, v) in head.split_whitespace().zip(vals.split_whitespace()) {
            if k == "InCsumErrors" || k == "InHdrErrors" {
                total += v.parse::<u64>().unwrap_or(0);
            }
        }
    }
    // IPv6: one "Name value" per line.
    for l in ns.run("cat /proc/net/snmp6").lines() {
        let mut it = l.split_whitespace();
        if let (Some(k), Some(v)) = (it.next(), it.next()) {
            if k.ends_with("InCsumErrors") || k == "Ip6InHdrErrors" {
                total += v.parse::<u64>().unwrap_or(0);
            }
        }
    }
    total
}

#[test]
fn ping_udp_and_http_through_the_vip_spread_per_weights_and_stick() {
    let lab = Lab::new();
    let dir = std::env::temp_dir().join(format!("vipd-xdp-lab-{}", std::process::id()));
    let mut prog = XdpProgram::load(
        Sizes {
            services: 4,
            backends: 64,
            flows: 65536,
            events_bytes: 1 << 16,
        },
        None,
    )
    .expect("loading the XDP program (root?)");
    let mut procs = Procs::default();
    for (ns, addr, name) in lab.backends() {
        let www = dir.join(name);
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("id"), format!("{name}\n")).unwrap();
        procs.spawn(
            ns,
            &format!(
                "python3 -m http.server 8080 --bind :: --directory {}",
                www.display()
            ),
        );
        procs.spawn(ns, &udp_echo(name, 5353));
        wait_tcp(&lab.lb, addr, 8080);
    }
    lab.lb.enter(|| prog.attach("eth0")).unwrap();
    lab.sw.enter(|| prog.attach_pass("p-lb")).unwrap();
    let mut dp = Dataplane::adopt(prog.take_maps().unwrap()).unwrap();
    dp.apply(&specs(1, 3)).unwrap();

    // ping: echo requests to the VIP reach a backend, its replies come back from the VIP.
    let out = lab.cl.run(&format!("ping -c 5 -i 0.2 -W 2 {VIP}"));
    assert!(out.contains("5 received"), "{out}");

    // HTTP with curl.
    let body = lab
        .cl
        .run(&format!("curl -sS --max-time 5 http://{VIP}/id"));
    assert!(body == "b1\n" || body == "b2\n", "curl got {body:?}");

    // Spread: 400 connections (new source port each), weights 1:3.
    let out = lab.cl.run(&format!(
        "python3 -c \"\nimport http.client\nfor i in range(400):\n c=http.client.HTTPConnection(\\\"{VIP}\\\",80,timeout=5); c.request(\\\"GET\\\",\\\"/id\\\"); print(c.getresponse().read().decode().strip()); c.close()\""
    ));
    let t = tally(&out);
    let n: usize = t.values().sum();
    assert_eq!(n, 400, "{t:?}");
    let b1 = *t.get("b1").unwrap_or(&0) as f64 / 400.0;
    assert!(
        (b1 - 0.25).abs() < 0.08,
        "b1 served {b1} of connections, weight share 0.25: {t:?}"
    );

    // UDP: 300 flows spread per weights; one flow of 20 datagrams stays on one backend,
    // also after the weights change.
    let udp_script = format!(
        "python3 -c \"\nimport socket\nfor i in range(300):\n s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(2); s.sendto(b\\\"x\\\",(\\\"{VIP}\\\",53)); print(s.recv(100).decode().split(\\\":\\\")[0]); s.close()\""
    );
    let t = tally(&lab.cl.run(&udp_script));
    assert_eq!(t.values().sum::<usize>(), 300, "{t:?}");
    let b1 = *t.get("b1").unwrap_or(&0) as f64 / 300.0;
    assert!(
        (b1 - 0.25).abs() < 0.09,
        "b1 answered {b1} of UDP flows: {t:?}"
    );

    let sticky = format!(
        "python3 -c \"\nimport socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(2); s.bind((\\\"0.0.0.0\\\",45454))\nfor i in range(20):\n s.sendto(b\\\"x\\\",(\\\"{VIP}\\\",53)); print(s.recv(100).decode().split(\\\":\\\")[0])\""
    );
    let before = tally(&lab.cl.run(&sticky));
    assert_eq!(before.len(), 1, "one flow, one backend: {before:?}");
    dp.apply(&specs(3, 1)).unwrap();
    let after = tally(&lab.cl.run(&sticky));
    assert_eq!(after, before, "the flow moved after a weight change");

    // IPv6: ping, curl, UDP flows, through the IPv6 VIP.
    let out = lab.cl.run(&format!("ping -6 -c 3 -i 0.2 -W 2 {VIP6}"));
    assert!(out.contains("3 received"), "{out}");
    let body = lab
        .cl
        .run(&format!("curl -sS --max-time 5 -g http://[{VIP6}]/id"));
    assert!(
        body == "b1\n" || body == "b2\n",
        "curl over IPv6 got {body:?}"
    );
    let t = tally(&lab.cl.run(&format!(
        "python3 -c \"\nimport socket\nfor i in range(100):\n s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM); s.settimeout(2); s.sendto(b\\\"x\\\",(\\\"{VIP6}\\\",53)); print(s.recv(100).decode().split(\\\":\\\")[0]); s.close()\""
    )));
    assert_eq!(t.values().sum::<usize>(), 100, "{t:?}");
    assert_eq!(t.len(), 2, "IPv6 UDP flows reach both backends: {t:?}");

    let s = dp.maps().stats().unwrap();
    assert!(s[stat::FORWARDED as usize] >= 700, "forwarded {s:?}");
    assert!(s[stat::REPLIED as usize] >= 700, "replied {s:?}");
    for ns in [&lab.b1, &lab.b2, &lab.cl] {
        assert_eq!(csum_errors(ns), 0, "checksum errors in {}", ns.name);
    }
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
}
