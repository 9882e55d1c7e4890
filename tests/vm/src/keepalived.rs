//! keepalived (Debian's 1:2.2.7, copied into the VM by the runner) as a peer to compare
//! with: one `virtual_server` with TCP_CHECK on every real server and
//! `inhibit_on_failure` (a failed real server gets weight 0, as vipd's quarantine does),
//! run in the foreground with only the health-checker subsystem (`--check`, no VRRP).
//! keepalived creates the IPVS service itself and removes it when it stops. Its
//! configuration cannot route the VIP: [`Keepalived::start`] does that as the lab does
//! for ipvsadm-made services ([`crate::lab::route_vip`]), and [`Keepalived::wait_ready`]
//! turns on IPVS's conntrack once the service exists ([`crate::lab::ipvs_conntrack`]), so
//! that the client host's firewall lets replies in.
//!
//! Times in keepalived 2.x's configuration are decimal seconds with up to six decimal
//! places (`read_timer` in lib/parser.c: microseconds, `TIMER_HZ_DIGITS` = 6);
//! `delay_loop` and `connect_timeout` must be at least 1 us.

use std::{
    fmt::Write as _,
    fs,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use vipd_ipvs::{Client, ServiceKey};

/// What to write into keepalived.conf.
#[derive(Clone, Debug)]
pub struct KeepalivedConfig {
    /// The virtual server (routed by [`Keepalived::start`]; not a local address).
    pub vip: SocketAddr,
    /// Real servers, NAT (masquerade), weight 1 each.
    pub backends: Vec<SocketAddr>,
    /// IPVS scheduler (`lb_algo`).
    pub scheduler: String,
    /// Time between two checks of a real server.
    pub delay_loop: Duration,
    /// TCP_CHECK's connect timeout.
    pub connect_timeout: Duration,
    /// Extra attempts before a real server counts as failed (keepalived's default is 1).
    pub retry: u32,
    /// Time between those attempts.
    pub delay_before_retry: Duration,
}

/// keepalived's notation for a time: decimal seconds, microsecond precision.
fn secs(d: Duration) -> String {
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

impl KeepalivedConfig {
    /// TCP_CHECK every `delay_loop`, connect timeout `connect_timeout`, no retry, rr.
    pub fn tcp_check(
        vip: SocketAddr,
        backends: Vec<SocketAddr>,
        delay_loop: Duration,
        connect_timeout: Duration,
    ) -> Self {
        KeepalivedConfig {
            vip,
            backends,
            scheduler: "rr".to_string(),
            delay_loop,
            connect_timeout,
            retry: 0,
            delay_before_retry: delay_loop,
        }
    }

    pub fn render(&self) -> String {
        let mut t = String::new();
        writeln!(t, "global_defs {{\n    router_id vipd_bench\n}}").unwrap();
        writeln!(
            t,
            "virtual_server {} {} {{\n    delay_loop {}\n    lb_algo {}\n    lb_kind NAT\n    protocol TCP",
            self.vip.ip(),
            self.vip.port(),
            secs(self.delay_loop),
            self.scheduler
        )
        .unwrap();
        for b in &self.backends {
            writeln!(
                t,
                "    real_server {} {} {{\n        weight 1\n        inhibit_on_failure\n        TCP_CHECK {{\n            connect_timeout {}\n            retry {}\n            delay_before_retry {}\n        }}\n    }}",
                b.ip(),
                b.port(),
                secs(self.connect_timeout),
                self.retry,
                secs(self.delay_before_retry)
            )
            .unwrap();
        }
        t.push_str("}\n");
        t
    }

    /// The IPVS service keepalived makes.
    pub fn service(&self) -> ServiceKey {
        ServiceKey::tcp(self.vip.ip(), self.vip.port())
    }
}

/// A running keepalived (checker subsystem only). Stopped (SIGTERM, then SIGKILL) when
/// dropped.
pub struct Keepalived {
    pub dir: PathBuf,
    pub config: KeepalivedConfig,
    child: Option<Child>,
}

impl Keepalived {
    /// Routes the VIP ([`crate::lab::route_vip`]), writes the configuration into
    /// `/tmp/keepalived-<name>/` and starts keepalived in the foreground, logging to
    /// `keepalived.log` there.
    pub fn start(name: &str, config: &KeepalivedConfig) -> Keepalived {
        // keepalived must find no service on its VIP: an earlier test (vipd leaves its
        // services in place when it stops, by design) may have left one in this VM.
        crate::sh("ipvsadm -C");
        crate::lab::route_vip(config.vip.ip());
        let dir = PathBuf::from(format!("/tmp/keepalived-{name}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("creating keepalived's directory");
        let conf = dir.join("keepalived.conf");
        fs::write(&conf, config.render()).expect("writing keepalived.conf");
        let log = fs::File::create(dir.join("keepalived.log")).expect("creating the log");
        let child = Command::new("keepalived")
            .arg("--dont-fork")
            .arg("--check")
            .arg("--log-console")
            .arg("--log-detail")
            .arg("--no-syslog")
            .arg("--use-file")
            .arg(&conf)
            .arg("--pid")
            .arg(dir.join("keepalived.pid"))
            .arg("--checkers_pid")
            .arg(dir.join("checkers.pid"))
            .arg("--vrrp_pid")
            .arg(dir.join("vrrp.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting keepalived (is it in the VM image?)");
        Keepalived {
            dir,
            config: config.clone(),
            child: Some(child),
        }
    }

    /// Waits until keepalived has made its service with every real server at weight 1,
    /// then turns on IPVS's conntrack ([`crate::lab::ipvs_conntrack`]). Panics with its
    /// log if that takes longer than `timeout` or it exits.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let key = self.config.service();
        let want = self.config.backends.len();
        let mut client = Client::connect().expect("IPVS netlink client");
        let deadline = Instant::now() + timeout;
        loop {
            let dests = client.destinations(&key).unwrap_or_default();
            if dests.len() == want && dests.iter().all(|d| d.weight == 1) {
                crate::lab::ipvs_conntrack();
                return;
            }
            if let Some(Some(st)) = self.child.as_mut().map(|c| c.try_wait().ok().flatten()) {
                panic!("keepalived exited ({st}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "keepalived did not set up {key:?} within {timeout:?} (dests {dests:?}):\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The pids of keepalived's processes (the parent and its checker child).
    pub fn pids(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.child.iter().map(|c| c.id() as i32).collect();
        if let Ok(p) = fs::read_to_string(self.dir.join("checkers.pid")) {
            if let Ok(p) = p.trim().parse() {
                v.push(p);
            }
        }
        v
    }

    /// CPU time (user + system) keepalived's processes have used so far.
    pub fn cpu_time(&self) -> Duration {
        self.pids()
            .into_iter()
            .map(|pid| crate::proc_cpu::cpu_time(pid as u32))
            .sum()
    }

    /// What keepalived printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("keepalived.log")).unwrap_or_default()
    }

    /// Lines of the log that report a real server going down or up.
    pub fn transitions(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| {
                l.contains("failed")
                    || l.contains("success")
                    || l.contains("Disabling service")
                    || l.contains("Enabling service")
            })
            .map(str::to_owned)
            .collect()
    }

    /// Stops keepalived (SIGTERM: it removes its IPVS service), removes the VIP's route
    /// and returns its log.
    pub fn stop(mut self) -> String {
        self.terminate();
        self.log()
    }

    fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // The VIP goes with keepalived: whatever manages it next routes it its own way.
        crate::lab::unroute_vip(self.config.vip.ip());
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.terminate();
    }
}
