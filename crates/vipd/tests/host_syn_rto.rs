//! Host tier: the `syn_rto` `sock_ops` program, attached to the running kernel's cgroup
//! v2 root, gives connections to a VIP in its map that initial SYN timeout, and leaves
//! every other destination at the kernel's 1 s. The program is linked to the cgroup only
//! while some VIP has a timeout. The destinations are addresses in a
//! network namespace the test creates, on a veth whose peer drops every SYN (they are
//! sent to a MAC address nobody has). Needs root (CAP_BPF, netns); it fails, never skips, without it.

use std::{
    collections::HashMap,
    net::SocketAddr,
    ops::Range,
    process::{Child, Command},
    time::{Duration, Instant},
};

use vipd::watcher::{Event, HookKind, Hooks, Probes, TcpState};
use vipd_common::IPPROTO_TCP;

/// A network namespace with a veth pair whose subnet swallows every packet.
struct Netns(String);

impl Netns {
    fn new(subnet_host: &str) -> Self {
        let name = format!("vipd-synrto-{}", std::process::id());
        let ns = Netns(name.clone());
        run(&["ip", "netns", "add", &name]);
        for cmd in [
            "ip link set lo up",
            "ip link add a0 type veth peer name b0",
            "ip link set b0 up",
            "ip link set a0 up",
            &format!("ip addr add {subnet_host}/24 dev a0"),
        ] {
            let mut args = vec!["ip", "netns", "exec", &name];
            args.extend(cmd.split(' '));
            run(&args);
        }
        ns
    }

    /// Frames to `addr` go out of `a0` to a MAC nobody has: `b0` drops them.
    fn swallow(&self, addr: &str) {
        run(&[
            "ip",
            "netns",
            "exec",
            &self.0,
            "ip",
            "neigh",
            "add",
            addr,
            "lladdr",
            "02:00:00:00:00:01",
            "dev",
            "a0",
            "nud",
            "permanent",
        ]);
    }

    /// Starts a client in the namespace connecting to `dst` for `for_s` seconds.
    fn connect(&self, dst: SocketAddr, for_s: u32) -> Child {
        let script = format!("exec 3<>/dev/tcp/{}/{}", dst.ip(), dst.port());
        Command::new("ip")
            .args(["netns", "exec", &self.0, "timeout", &for_s.to_string()])
            .args(["bash", "-c", &script])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting a client")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(args: &[&str]) {
    let st = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(st.success(), "{args:?}: {st}");
}

/// For each destination: how long after its SYN_SENT the first SYN retransmission came.
fn first_retransmits(
    probes: &mut Probes,
    dsts: &[SocketAddr],
    within: Duration,
) -> HashMap<SocketAddr, Duration> {
    let deadline = Instant::now() + within;
    let mut sent: HashMap<u64, (SocketAddr, u64)> = HashMap::new();
    let mut out = HashMap::new();
    while Instant::now() < deadline && out.len() < dsts.len() {
        match probes.next_event() {
            Some(Ok(Event::StateChange {
                ts_ns,
                sock,
                dst,
                new: TcpState::SynSent,
                ..
            })) => {
                sent.insert(sock, (dst, ts_ns));
            }
            Some(Ok(Event::Retransmit {
                ts_ns,
                sock,
                state: TcpState::SynSent,
                ..
            })) => {
                if let Some(&(dst, t0)) = sent.get(&sock) {
                    out.entry(dst)
                        .or_insert(Duration::from_nanos(ts_ns.saturating_sub(t0)));
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("undecodable event: {e}"),
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    out
}

#[test]
fn syn_rto_sets_the_first_retransmission_of_a_configured_vip_only() {
    let mut probes = Probes::load(Hooks {
        syn_rto: true,
        ..Hooks::TRACEPOINTS
    })
    .unwrap_or_else(|e| panic!("loading the socket hooks (run as root): {e}"));
    assert!(
        probes
            .attachments()
            .iter()
            .any(|a| a.kind == HookKind::SockOps && a.hook == "syn_rto"),
        "syn_rto not loaded: {:?} ({})",
        probes.syn_rto().err(),
        probes.describe()
    );
    assert_eq!(
        probes.syn_rto_kernel_links(),
        Ok(0),
        "linked to a cgroup before any VIP has a timeout"
    );
    let ns = Netns::new("10.253.7.1");
    let fast: SocketAddr = "10.253.7.2:9".parse().unwrap();
    let default: SocketAddr = "10.253.7.3:9".parse().unwrap();
    for (i, vip) in [fast, default].into_iter().enumerate() {
        ns.swallow(&vip.ip().to_string());
        probes.watch(vip, IPPROTO_TCP as u8, i as u32).unwrap();
    }
    probes
        .set_syn_rto(fast, Some(Duration::from_millis(200)))
        .unwrap();
    assert!(probes.syn_rto().unwrap().attached());
    assert_eq!(probes.syn_rto_kernel_links(), Ok(1));
    let entries = probes.syn_rto().unwrap().entries();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].1, Duration::from_millis(200), "{entries:?}");

    let mut clients = vec![ns.connect(fast, 3), ns.connect(default, 3)];
    let seen = first_retransmits(&mut probes, &[fast, default], Duration::from_secs(3));
    for c in &mut clients {
        let _ = c.kill();
        let _ = c.wait();
    }
    eprintln!("first SYN retransmission after: {seen:?}");
    within(&seen, fast, 180..450, "the syn_rto 200ms VIP");
    within(
        &seen,
        default,
        900..1500,
        "a VIP without syn_rto (kernel default 1 s)",
    );

    // Taken off: new connections get the kernel's default again.
    probes.set_syn_rto(fast, None).unwrap();
    assert!(probes.syn_rto().unwrap().entries().is_empty());
    assert!(!probes.syn_rto().unwrap().attached());
    assert_eq!(
        probes.syn_rto_kernel_links(),
        Ok(0),
        "still linked with no VIP left"
    );
    let mut c = ns.connect(fast, 2);
    let seen = first_retransmits(&mut probes, &[fast], Duration::from_secs(2));
    let _ = c.kill();
    let _ = c.wait();
    within(&seen, fast, 900..1500, "the VIP after syn_rto was removed");
}

/// Asserts that `dst`'s first SYN retransmission came within `ms` of its SYN.
fn within(seen: &HashMap<SocketAddr, Duration>, dst: SocketAddr, ms: Range<u64>, what: &str) {
    let d = seen
        .get(&dst)
        .unwrap_or_else(|| panic!("{what}: no SYN retransmission seen toward {dst}"));
    let ms = Duration::from_millis(ms.start)..Duration::from_millis(ms.end);
    assert!(
        ms.contains(d),
        "{what}: first retransmission after {d:?}, expected {ms:?}"
    );
}
