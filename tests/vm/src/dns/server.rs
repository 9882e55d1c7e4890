//! A DNS server per lab backend: dnsmasq in the backend's namespace, with no config
//! file, no /etc/hosts, no upstream, answering only for [`WHICH`]: a TXT record with
//! the backend's name (`vb1`, ...) and an A or AAAA record with its address, so a client
//! can tell which backend answered.
//!
//! [`Lab::kill_dns`] SIGKILLs it: its port is closed at once, so the namespace's kernel
//! answers queries with ICMP port unreachable (the client's connected socket gets
//! ECONNREFUSED, rate-limited by the kernel's ICMP limits). [`Lab::restart_dns`] starts it
//! again on the same port. Both, and [`Lab::serve_dns`], return only when the change is
//! visible: the server answers, or its port is gone. The lab stops every server when it
//! is dropped.

use std::{
    net::{SocketAddr, UdpSocket},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::wire::{self, WHICH};
use crate::lab::Lab;

/// A dnsmasq the lab started: where, and its process while it runs.
pub(crate) struct Dnsmasq {
    pub backend: usize,
    pub ns: String,
    pub addr: SocketAddr,
    pub child: Option<Child>,
}

impl Dnsmasq {
    fn spawn(&mut self) {
        let log = format!("/tmp/dnsmasq-{}-{}.log", self.ns, self.addr.port());
        let child = dnsmasq(&self.ns)
            .arg(format!("--port={}", self.addr.port()))
            .arg(format!("--listen-address={}", self.addr.ip()))
            .arg(format!("--log-facility={log}"))
            .arg(format!("--txt-record={WHICH},{}", self.ns))
            .arg(format!("--host-record={WHICH},{}", self.addr.ip()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning dnsmasq (run scripts/setup.sh: dnsmasq-base)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match ask_txt(self.addr, Duration::from_millis(200)) {
                Ok(name) if name == self.ns => return,
                Ok(other) => panic!("dnsmasq at {} answered {other:?}", self.addr),
                Err(_) if Instant::now() < deadline => {}
                Err(e) => {
                    let log = std::fs::read_to_string(&log).unwrap_or_default();
                    panic!(
                        "dnsmasq at {} not answering after 10 s ({e}):\n{log}",
                        self.addr
                    )
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("dnsmasq at {} exited ({status}):\n{log}", self.addr);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap: when this returns the process and its socket are gone.
    fn kill(&mut self) -> bool {
        match self.child.take() {
            Some(mut c) => {
                let _ = c.kill();
                let _ = c.wait();
                true
            }
            None => false,
        }
    }
}

/// dnsmasq in namespace `ns`, in the foreground, with no config file, no /etc/hosts,
/// no upstream and no cache; the caller adds where it listens and what it serves.
pub fn dnsmasq(ns: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "dnsmasq"]).args([
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--keep-in-foreground",
        "--bind-interfaces",
        "--user=root",
        "--group=root",
        "--pid-file=",
        "--cache-size=0",
    ]);
    c
}

/// A DNS server for the `lab.` zone (NXDOMAIN for unknown names in it) in the router's
/// namespace on `listen`:53: hosts from `hosts` (re-read on SIGHUP) with TTL `ttl_s`,
/// no negative cache, the `extra` arguments, its log in `log`. Returns once `probe`
/// (a name) resolves to `expect` (an address).
pub fn lab_zone(
    listen: &str,
    hosts: &str,
    ttl_s: u64,
    extra: &[&str],
    log: &str,
    (probe, expect): (&str, &str),
) -> Child {
    let child = dnsmasq(crate::lab::ROUTER_NS)
        .args(["--no-negcache", "--local=/lab/", "--port=53"])
        .args(extra)
        .arg(format!("--listen-address={listen}"))
        .arg(format!("--addn-hosts={hosts}"))
        .arg(format!("--local-ttl={ttl_s}"))
        .arg(format!("--log-facility={log}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning dnsmasq");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !crate::sh(&format!(
        "dig +short +time=1 +tries=1 @{listen} {probe} A 2>&1; true"
    ))
    .contains(expect)
    {
        assert!(
            Instant::now() < deadline,
            "dnsmasq at {listen} not answering:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// One TXT query for [`WHICH`] to `server` from a fresh socket; the first TXT string.
pub fn ask_txt(server: SocketAddr, timeout: Duration) -> Result<String, String> {
    let any: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let s = UdpSocket::bind(any).map_err(|e| e.to_string())?;
    s.connect(server).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let id = wire::random_id();
    s.send(&wire::query(id, WHICH, wire::TXT))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    loop {
        let n = s.recv(&mut buf).map_err(|e| e.to_string())?;
        let r = wire::parse(&buf[..n])?;
        if r.id != id {
            continue;
        }
        if r.rcode != wire::NOERROR {
            return Err(format!("rcode {}", r.rcode));
        }
        return r
            .first_txt()
            .map(str::to_owned)
            .ok_or_else(|| "no TXT answer".into());
    }
}

impl Lab {
    /// Starts dnsmasq on backend `i` (0-based) at `port`, answering [`WHICH`] with the
    /// backend's name; returns once it answers. Returns its address.
    pub fn serve_dns(&self, i: usize, port: u16) -> SocketAddr {
        let b = &self.backends[i];
        let mut d = Dnsmasq {
            backend: i,
            ns: b.ns.clone(),
            addr: SocketAddr::new(b.addr, port),
            child: None,
        };
        d.spawn();
        let addr = d.addr;
        self.dns.lock().unwrap().push(d);
        addr
    }

    /// SIGKILLs every DNS server on backend `i`: from when this returns, its port is
    /// closed (queries get ICMP port unreachable). Returns how many were running; panics
    /// if none was.
    pub fn kill_dns(&self, i: usize) -> usize {
        let mut dns = self.dns.lock().unwrap();
        let killed = dns
            .iter_mut()
            .filter(|d| d.backend == i)
            .map(Dnsmasq::kill)
            .filter(|k| *k)
            .count();
        assert!(killed > 0, "backend {i} has no running DNS server to kill");
        killed
    }

    /// Starts again every DNS server [`Lab::kill_dns`] killed on backend `i`, on the
    /// same ports; returns once they answer. Returns how many; panics if none was down.
    pub fn restart_dns(&self, i: usize) -> usize {
        let mut dns = self.dns.lock().unwrap();
        let mut started = 0;
        for d in dns
            .iter_mut()
            .filter(|d| d.backend == i && d.child.is_none())
        {
            d.spawn();
            started += 1;
        }
        assert!(
            started > 0,
            "backend {i} has no stopped DNS server to restart"
        );
        started
    }

    /// The ports of the DNS servers started on backend `i` (running or not).
    pub fn dns_ports(&self, i: usize) -> Vec<u16> {
        let dns = self.dns.lock().unwrap();
        dns.iter()
            .filter(|d| d.backend == i)
            .map(|d| d.addr.port())
            .collect()
    }

    /// Kills every DNS server (when the lab is dropped).
    pub(crate) fn stop_dns(&self) {
        for d in self.dns.lock().unwrap().iter_mut() {
            d.kill();
        }
    }
}
