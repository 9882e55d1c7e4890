//! Running `vipd run` inside the VM (or in the native lab's client namespace,
//! [`crate::native`]): start it on a config in a scratch directory (the first time with
//! `ip_vs` unloaded, as at a host's boot), ask it for its status over the control
//! socket, read its metrics and log, and stop it the polite way (SIGTERM) or the hard
//! way (`kill -9`).

use std::{
    fs::File,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use vipd::daemon::{
    control,
    view::{BackendView, DaemonView, ServiceView},
};

/// The metrics address the tests give the daemon (loopback only).
pub const METRICS: &str = "127.0.0.1:9477";

/// The config text of one rr TCP service `name` on `vip`, every backend at `weight`, with
/// `health` (lines of `[service.health]`, may be empty).
pub fn tcp_service(
    name: &str,
    vip: std::net::SocketAddr,
    backends: &[std::net::SocketAddr],
    weight: u32,
    health: &str,
) -> String {
    service(name, "tcp", vip, backends, weight, health)
}

/// Like [`tcp_service`], a `protocol = "udp"` service.
pub fn udp_service(
    name: &str,
    vip: std::net::SocketAddr,
    backends: &[std::net::SocketAddr],
    weight: u32,
    health: &str,
) -> String {
    service(name, "udp", vip, backends, weight, health)
}

fn service(
    name: &str,
    protocol: &str,
    vip: std::net::SocketAddr,
    backends: &[std::net::SocketAddr],
    weight: u32,
    health: &str,
) -> String {
    service_text(
        name,
        protocol,
        Some("rr"),
        vip,
        &each_at(backends, weight),
        health,
    )
}

/// A service with no `scheduler` (the data plane's default): `protocol`, each backend
/// with its weight, `health` lines of `[service.health]` (may be empty).
pub fn weighted_service(
    name: &str,
    protocol: &str,
    vip: std::net::SocketAddr,
    backends: &[(std::net::SocketAddr, u32)],
    health: &str,
) -> String {
    service_text(name, protocol, None, vip, backends, health)
}

/// Every backend of `backends` at `weight`.
pub fn each_at(backends: &[std::net::SocketAddr], weight: u32) -> Vec<(std::net::SocketAddr, u32)> {
    backends.iter().map(|b| (*b, weight)).collect()
}

fn service_text(
    name: &str,
    protocol: &str,
    scheduler: Option<&str>,
    vip: std::net::SocketAddr,
    backends: &[(std::net::SocketAddr, u32)],
    health: &str,
) -> String {
    let scheduler = scheduler
        .map(|s| format!("scheduler = \"{s}\"\n"))
        .unwrap_or_default();
    let mut t = format!(
        "[[service]]\nname = \"{name}\"\nvip = \"{vip}\"\nprotocol = \"{protocol}\"\n{scheduler}\n  [service.health]\n{health}\n"
    );
    for (b, w) in backends {
        t.push_str(&format!(
            "  [[service.backend]]\n  address = \"{b}\"\n  weight = {w}\n"
        ));
    }
    t
}

/// A scratch directory (config, ownership record, runtime dir, log) and the daemon.
pub struct Vipd {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub state: PathBuf,
    pub runtime: PathBuf,
    /// Extra environment for `vipd run` (e.g. `NOTIFY_SOCKET`).
    pub env: Vec<(String, String)>,
    /// Whether the first start puts IPVS back as at boot (true, the VM's default; false
    /// on a host whose IPVS and connection tracking are not the test's to reset).
    pub reset_ipvs: bool,
    child: Option<Child>,
    starts: u32,
}

impl Vipd {
    /// A fresh directory for test `name`; nothing running yet.
    pub fn new(name: &str) -> Vipd {
        let dir = PathBuf::from(format!("/tmp/vipd-daemon-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the test directory");
        Vipd {
            config: dir.join("vipd.toml"),
            state: dir.join("state.json"),
            runtime: dir.join("run"),
            dir,
            env: Vec::new(),
            reset_ipvs: true,
            child: None,
            starts: 0,
        }
    }

    pub fn write_config(&self, text: &str) {
        // Write-and-rename, as editors and config management do.
        let tmp = self.dir.join("vipd.toml.new");
        std::fs::write(&tmp, text).expect("writing the config");
        std::fs::rename(&tmp, &self.config).expect("replacing the config");
    }

    /// The log of start number `n` (1-based).
    pub fn log(&self, n: u32) -> String {
        std::fs::read_to_string(self.dir.join(format!("vipd.{n}.log"))).unwrap_or_default()
    }

    /// Starts `vipd run` and waits until its control socket answers. The first start of
    /// a `Vipd` (with [`Vipd::reset_ipvs`]) finds the kernel as a host at boot has it: no IPVS service, `ip_vs` not
    /// loaded ([`crate::lab::unload_ipvs`]); vipd loads what it needs. Later starts (a
    /// restart within a test) keep the kernel's state.
    pub fn start(&mut self) {
        self.start_under(&[]);
    }

    /// Like [`Vipd::start`], with `vipd run ...` run by `launcher` (a program and its
    /// first arguments, e.g. setpriv's), which must exec it.
    pub fn start_under(&mut self, launcher: &[String]) {
        assert!(self.child.is_none(), "vipd already running");
        if self.starts == 0 && self.reset_ipvs {
            crate::lab::unload_ipvs();
        }
        self.starts += 1;
        let log = File::create(self.dir.join(format!("vipd.{}.log", self.starts))).unwrap();
        let mut command = match launcher.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg("vipd");
                c
            }
            None => Command::new("vipd"),
        };
        let child = command
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .arg("--state-file")
            .arg(&self.state)
            .arg("--runtime-dir")
            .arg(&self.runtime)
            .env("VIPD_LOG", "info,vipd=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawning vipd run");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.try_status().is_some() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "vipd run exited during start-up ({status}):\n{}",
                    self.log(self.starts)
                );
            }
            assert!(
                Instant::now() < deadline,
                "vipd run did not answer on its socket within 30 s:\n{}",
                self.log(self.starts)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn try_status(&self) -> Option<DaemonView> {
        control::query_status(&control::socket_path(&self.runtime), Duration::from_secs(2)).ok()
    }

    /// The daemon's status view; panics if it does not answer.
    pub fn status(&self) -> DaemonView {
        control::query_status(&control::socket_path(&self.runtime), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("vipd status: {e}\n{}", self.log(self.starts)))
    }

    /// `vipd status` as a user runs it (text).
    pub fn status_text(&self) -> String {
        crate::sh(&format!(
            "vipd status --runtime-dir {} --state-file {}",
            self.runtime.display(),
            self.state.display()
        ))
    }

    /// Runs `vipd <args>` against this daemon (its runtime directory and ownership
    /// record appended), as an operator would.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut c = Command::new("vipd");
        c.args(args).arg("--runtime-dir").arg(&self.runtime);
        if matches!(args.first(), Some(&"apply") | Some(&"status")) {
            c.arg("--state-file").arg(&self.state);
        }
        c.output().expect("running vipd")
    }

    /// The Prometheus text from the metrics endpoint.
    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(METRICS).expect("connecting to the metrics");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        let (head, body) = body.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        body.to_owned()
    }

    /// The sum of a metric's samples whose line starts with `prefix` (name and labels).
    pub fn metric_sum(&self, prefix: &str) -> f64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Sends SIGHUP.
    pub fn hup(&self) {
        self.signal(libc::SIGHUP);
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = self.child.as_ref().expect("vipd running").id();
        // SAFETY: kill with a valid pid and signal.
        let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill {pid}");
    }

    /// SIGTERM, and waits for a clean exit.
    pub fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        let status = self.child.take().unwrap().wait().unwrap();
        assert!(
            status.success(),
            "vipd exited with {status} on SIGTERM:\n{}",
            self.log(self.starts)
        );
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        let mut c = self.child.take().expect("vipd running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// The running daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("vipd running").id()
    }

    /// CPU time (user + system) the running vipd has used so far.
    pub fn cpu_time(&self) -> Duration {
        crate::proc_cpu::cpu_time(self.pid())
    }

    /// Which start this is (1 for the first).
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// Waits until the status shows `backend` (of any service) in `state`
    /// (`quarantined`, `healthy`, ...).
    pub fn wait_for_backend(
        &self,
        backend: std::net::SocketAddr,
        state: &str,
        timeout: Duration,
    ) -> DaemonView {
        let addr = backend.to_string();
        self.wait_for(&format!("{addr} {state}"), timeout, |v| {
            v.services
                .iter()
                .flat_map(|s| &s.backends)
                .any(|b| b.addr == addr && b.state == state)
        })
    }

    /// Waits until `f(status)` holds; panics with the last status and the log otherwise.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&DaemonView) -> bool,
    ) -> DaemonView {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.status();
            if f(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; status: {v:#?}\nlog:\n{}",
                self.log(self.starts)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Vipd {
    /// Where the socket plane pins its programs and maps: `VIPD_SOCKET_PIN_DIR` of
    /// [`Vipd::env`] if set, else vipd's default.
    pub fn socket_pins(&self) -> PathBuf {
        self.env
            .iter()
            .find(|(k, _)| k == "VIPD_SOCKET_PIN_DIR")
            .map(|(_, v)| PathBuf::from(v))
            .unwrap_or_else(|| PathBuf::from("/sys/fs/bpf/vipd/socket"))
    }
}

impl Drop for Vipd {
    /// Kills the daemon. A socket plane's programs outlive it by design (pinned); the
    /// test made them, so they go too, before a later test's traffic meets them.
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let socket = std::fs::read_to_string(&self.config)
            .is_ok_and(|c| c.contains("dataplane = \"socket\""));
        if socket {
            let _ = std::fs::remove_dir_all(self.socket_pins());
        }
    }
}

/// The view of `backend` in service `s`; panics naming it when the service has no such
/// backend.
pub fn backend_in(s: &ServiceView, backend: std::net::SocketAddr) -> &BackendView {
    let addr = backend.to_string();
    s.backends
        .iter()
        .find(|b| b.addr == addr)
        .unwrap_or_else(|| panic!("service {} has no backend {addr}: {s:?}", s.name))
}
