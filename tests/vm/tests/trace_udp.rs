//! `vipd trace --json` on a UDP service: a new flow names the backend IPVS chose, and
//! when that backend's DNS server dies the ICMP error is an `UNREACHABLE` outcome naming
//! the same backend. IPv4 (IPv6 errors take the `ip_vs_out_icmp_v6` path, covered by
//! watcher_udp).

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use vipd_vmtests::{
    daemon::udp_service,
    dns::ask_txt,
    lab::{Family, Lab},
    require_vm, sh,
    vipd_cli::VipdRun,
};

#[test]
fn trace_shows_udp_flows_and_unreachable_backends() {
    require_vm();
    sh("ipvsadm -C; ip link del vipd0 2>/dev/null; true");
    let lab = Lab::new(Family::V4, 2);
    let backends: Vec<SocketAddr> = (0..2).map(|i| lab.serve_dns(i, 53)).collect();
    let vip = SocketAddr::new(lab.vip, 53);
    let run = VipdRun::new("trace-udp");
    let config = udp_service("dns", vip, &backends, 1, "");
    run.apply(&config);
    let mut child = Command::new("vipd")
        .args(["trace", "--json", "--config"])
        .arg(&run.config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting vipd trace");
    let (tx, rx) = mpsc::channel::<serde_json::Value>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                if tx.send(v).is_err() {
                    return;
                }
            }
        }
    });
    let ask = |s: &std::net::UdpSocket| -> std::io::Result<String> {
        let q = vipd_vmtests::dns::wire::query(7, vipd_vmtests::dns::wire::WHICH, 16);
        s.send(&q)?;
        let mut buf = [0u8; 1500];
        let n = s.recv(&mut buf)?;
        let r = vipd_vmtests::dns::wire::parse(&buf[..n]).map_err(std::io::Error::other)?;
        Ok(r.first_txt().unwrap_or_default().to_owned())
    };
    // The programs take a moment to load under emulation: a new flow (a new source
    // port) every 300 ms until trace shows one.
    let mut sockets = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let flow = loop {
        assert!(
            Instant::now() < deadline,
            "vipd trace printed no new UDP flow"
        );
        let port = 40_700 + sockets.len() as u16;
        let sock = std::net::UdpSocket::bind(("0.0.0.0", port)).unwrap();
        sock.connect(vip).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let name = ask(&sock).expect("a query through the VIP");
        sockets.push((port, sock, name));
        let mut found = None;
        while let Ok(v) = rx.recv_timeout(Duration::from_millis(300)) {
            if v["event"]
                .as_str()
                .is_some_and(|e| e.starts_with("new UDP flow"))
            {
                found = Some(v);
                break;
            }
        }
        if let Some(v) = found {
            break v;
        }
    };
    let port: u16 = flow["client"]
        .as_str()
        .and_then(|c| c.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("client port");
    let (_, sock, name) = sockets
        .iter()
        .find(|(p, _, _)| *p == port)
        .expect("the flow of one of our sockets");
    let i: usize = name.trim_start_matches("vb").parse::<usize>().unwrap() - 1;
    let backend = backends[i].to_string();
    assert_eq!(flow["backend"], backend.as_str(), "{flow}");
    assert_eq!(flow["service"], "dns", "{flow}");
    // The flow comes from the client host's own address (the VIP is a route, not an
    // address of the host).
    assert_eq!(
        flow["client"],
        std::net::SocketAddr::new(lab.client_addr(), port)
            .to_string()
            .as_str(),
        "{flow}"
    );
    let wait = |what: &str, f: &dyn Fn(&serde_json::Value) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(v) if f(&v) => return v,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("vipd trace printed no {what}");
    };
    lab.kill_dns(i);
    let _ = ask(sock);
    let bad = wait("UNREACHABLE outcome", &|v| {
        v["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("UNREACHABLE"))
    });
    assert_eq!(bad["backend"], backend.as_str(), "{bad}");
    assert!(
        bad["outcome"]
            .as_str()
            .unwrap()
            .contains("port unreachable"),
        "{bad}"
    );
    let _ = ask_txt(backends[1 - i], Duration::from_secs(1));
    child.kill().unwrap();
    child.wait().unwrap();
}
