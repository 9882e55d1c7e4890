//! One run of the native lab's daemon side: the client cgroup, the pin directory, the
//! config for the socket plane, `vipd run` inside the client host's namespace, and the
//! clean-up of all of it at the end, after a panic (the release profile aborts: a
//! panic hook cleans up first), or by a later run after an interrupted one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use vipd::config::SocketSettings;

use super::{cleanup, host, ClientCgroup, PinDir};
use crate::{daemon::Vipd, lab::Place};

/// What a native run made besides the lab itself, by name (so that [`cleanup`] finds it
/// from another process too).
#[derive(Clone, Debug)]
pub struct Names {
    /// The lab's namespace prefix ([`Place::namespaced`]).
    pub prefix: String,
    pub backends: u8,
    /// The client cgroup, a child of the cgroup v2 root.
    pub cgroup: PathBuf,
    /// The daemon's pin directory.
    pub pins: PathBuf,
    /// Where the daemon's process id is kept while it runs.
    pub pid_file: PathBuf,
}

impl Names {
    /// The names of run `name` (the demo, a test): namespaces `<prefix>c`..., cgroup
    /// `vipd-<name>`, pins `/sys/fs/bpf/vipd-<name>`, pid file in /run.
    pub fn of(name: &str, prefix: &str, backends: u8) -> Names {
        Names {
            prefix: prefix.to_string(),
            backends,
            cgroup: SocketSettings::default_cgroup().join(format!("vipd-{name}")),
            pins: PathBuf::from(format!("/sys/fs/bpf/vipd-{name}")),
            pid_file: PathBuf::from(format!("/run/vipd-{name}.pid")),
        }
    }

    /// Removes whatever a run with these names left.
    pub fn cleanup(&self) {
        cleanup(
            &self.prefix,
            self.backends,
            &self.pid_file,
            &self.cgroup,
            &self.pins,
        );
    }

    /// The client host's namespace.
    pub fn client_ns(&self) -> String {
        Place::namespaced(&self.prefix)
            .client_ns
            .expect("a namespaced client host")
    }
}

/// The daemon side of a native run. Create it before the lab: it checks the host and
/// removes what an interrupted run left. On drop it stops the daemon if it still runs,
/// and removes the cgroup and the pins (the lab removes its namespaces).
pub struct Session {
    pub names: Names,
    pub cgroup: ClientCgroup,
    pub pins: PinDir,
}

impl Session {
    /// Checks the host ([`host::require_socket_host`]), removes what an earlier run with
    /// `names` left, creates the client cgroup and the pin directory, and cleans up
    /// before any panic ends the process.
    pub fn start(names: Names) -> Result<Session> {
        let root = names.cgroup.parent().context("the cgroup's parent")?;
        host::require_socket_host(root)?;
        names.cleanup();
        let cgroup_name = names.cgroup.file_name().context("the cgroup's name")?;
        let cgroup = ClientCgroup::create(root, &cgroup_name.to_string_lossy())?;
        let pins = PinDir::new(&names.pins.file_name().unwrap().to_string_lossy());
        let on_panic = names.clone();
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default(info);
            on_panic.cleanup();
        }));
        Ok(Session {
            names,
            cgroup,
            pins,
        })
    }

    /// `config` (IPVS-style, e.g. examples/lab.toml) for the socket plane: `dataplane =
    /// "socket"`, `[socket] cgroup` the client cgroup, and no `scheduler = "rr"` (the
    /// socket plane's only scheduler is its weighted random choice, the default).
    pub fn socket_config(&self, config: &str) -> String {
        let body: String = config
            .lines()
            .filter(|l| l.trim() != "scheduler = \"rr\"")
            .map(|l| format!("{l}\n"))
            .collect();
        format!(
            "dataplane = \"socket\"\n\n[socket]\ncgroup = \"{}\"\n\n{body}",
            self.cgroup.path.display()
        )
    }

    /// Starts `vipd` in the client host's namespace (`nsenter --net`: `ip netns exec`
    /// would hide /sys/fs/bpf and the cgroup mount), with its pins in the session's
    /// directory; remembers its process id for [`cleanup`].
    pub fn start_vipd(&self, vipd: &mut Vipd) -> Result<()> {
        vipd.reset_ipvs = false;
        vipd.env.push((
            "VIPD_SOCKET_PIN_DIR".to_string(),
            self.pins.0.display().to_string(),
        ));
        let ns = Path::new("/run/netns").join(self.names.client_ns());
        vipd.start_under(&["nsenter".to_string(), format!("--net={}", ns.display())]);
        std::fs::write(&self.names.pid_file, vipd.pid().to_string())
            .with_context(|| format!("writing {}", self.names.pid_file.display()))
    }

    /// Moves the calling thread into the client host's namespace (threads it starts
    /// from now on are there too) and this process into the client cgroup: from here
    /// on its connections are the lab's clients'.
    pub fn become_client(&mut self) -> Result<()> {
        crate::enter_netns(&self.names.client_ns())?;
        self.cgroup.join()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        host::stop_daemon(&self.names.pid_file);
        let _ = self.cgroup.leave();
    }
}
