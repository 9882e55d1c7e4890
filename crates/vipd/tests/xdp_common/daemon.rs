//! `vipd run` in the XDP lab's balancer namespace, and what the host tests and benches
//! that drive it share: a scratch directory, HTTP servers on the backends, curl from the
//! client.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use vipd::daemon::{
    control,
    view::{BackendView, DaemonView},
};

use super::lab::{wait_tcp, Lab, Procs, VIP};

/// `vipd run` in the balancer's namespace, with its own runtime directory (control
/// socket, health record) and log; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub runtime: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(lab: &Lab, cfg: &Path, runtime: &Path, log: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_in(&lab.lb, cfg, runtime, log, env)
    }

    /// `vipd run` in namespace `ns`.
    pub fn start_in(
        ns: &super::Netns,
        cfg: &Path,
        runtime: &Path,
        log: &Path,
        env: &[(&str, &str)],
    ) -> Self {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", ns.name))
            .arg(env!("CARGO_BIN_EXE_vipd"))
            .args(["run", "--config"])
            .arg(cfg)
            // Its own ownership record too: one daemon per record (and none of the
            // host's).
            .arg("--state-file")
            .arg(runtime.with_file_name("state.json"))
            .env("VIPD_RUNTIME_DIR", runtime)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Daemon {
            child: cmd.spawn().unwrap(),
            runtime: runtime.to_owned(),
            log: log.to_owned(),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's view over its control socket, once it answers.
    pub fn status(&self) -> DaemonView {
        let socket = control::socket_path(&self.runtime);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match control::query_status(&socket, Duration::from_secs(2)) {
                Ok(v) => return v,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "no status from vipd: {e}\n{}",
                    self.log()
                ),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `timeout` for a view that `pred` accepts.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&DaemonView) -> bool,
    ) -> DaemonView {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.status();
            if pred(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not seen within {timeout:?}; last status {v:#?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// The lab's service `web` on the XDP plane (interface `eth0`, unpinned): the VIP on
/// port 80, b1 and b2 on port 8080, and `health` as its `[service.health]` lines.
pub fn web_config(health: &str) -> String {
    format!(
        r#"dataplane = "xdp"
[xdp]
interface = "eth0"
pin_maps = false

[[service]]
name = "web"
vip = "{VIP}:80"
  [[service.backend]]
  address = "198.18.2.11:8080"
  [[service.backend]]
  address = "198.18.2.12:8080"
  [service.health]
{health}
"#
    )
}

/// A test's scratch directory, removed when the test ends (also on failure).
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vipd-xdp-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn backend<'a>(v: &'a DaemonView, addr: &str) -> &'a BackendView {
    v.services[0]
        .backends
        .iter()
        .find(|b| b.addr == addr)
        .unwrap_or_else(|| panic!("no backend {addr} in {v:#?}"))
}

pub fn curl(lab: &Lab) -> Option<String> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.cl.name,
            "curl",
            "-s",
            "--max-time",
            "3",
        ])
        .arg(format!("http://{VIP}/id"))
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// HTTP servers on the backends (`/id` answers the backend's name), one `Procs` each.
pub fn http_servers(lab: &Lab, dir: &Path, which: &[usize]) -> Vec<Procs> {
    let mut servers = Vec::new();
    for (i, (ns, addr, name)) in lab.backends().into_iter().enumerate() {
        if !which.contains(&i) {
            continue;
        }
        let www = dir.join(name);
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("id"), format!("{name}\n")).unwrap();
        let mut p = Procs::default();
        p.spawn(
            ns,
            &format!(
                "python3 -m http.server 8080 --bind {addr} --directory {}",
                www.display()
            ),
        );
        servers.push(p);
        wait_tcp(&lab.lb, addr, 8080);
    }
    servers
}

/// SIGKILL: no chance to clean up, like a crash.
pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
