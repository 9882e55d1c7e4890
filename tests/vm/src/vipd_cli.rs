//! Running the `vipd` binary inside the VM (the runner installs it as /usr/bin/vipd), and
//! reading ipvsadm's listings in a comparable form.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

use vipd::reconcile::ApplySummary;

use crate::sh;

/// A scratch directory with a config file and vipd's state file for one test.
pub struct VipdRun {
    pub dir: PathBuf,
    pub state: PathBuf,
    pub config: PathBuf,
    /// The network namespace vipd runs in (`ip netns exec`); None: the VM's own.
    pub netns: Option<String>,
}

impl VipdRun {
    /// Starts from an empty directory (no ownership record).
    pub fn new(name: &str) -> Self {
        let dir = PathBuf::from(format!("/tmp/vipd-test-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the test directory");
        VipdRun {
            state: dir.join("state.json"),
            config: dir.join("vipd.toml"),
            dir,
            netns: None,
        }
    }

    /// Runs vipd inside network namespace `ns` (its own IPVS table, sysctls and links).
    pub fn in_netns(mut self, ns: &str) -> Self {
        self.netns = Some(ns.to_owned());
        self
    }

    /// `vipd`, inside [`VipdRun::netns`] if set.
    fn command(&self) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "vipd"]);
                c
            }
            None => Command::new("vipd"),
        }
    }

    /// Writes `config` and runs `vipd apply --json` on it.
    pub fn apply_output(&self, config: &str) -> Output {
        self.apply_with(config, &["--json"])
    }

    /// Writes `config` and runs `vipd apply` on it with `extra` arguments.
    pub fn apply_with(&self, config: &str, extra: &[&str]) -> Output {
        std::fs::write(&self.config, config).expect("writing the config");
        self.command()
            .arg("apply")
            .args(extra)
            .arg("--config")
            .arg(&self.config)
            .arg("--state-file")
            .arg(&self.state)
            .output()
            .expect("running vipd apply")
    }

    /// Like [`VipdRun::apply_output`], and panics unless vipd succeeded.
    pub fn apply(&self, config: &str) -> ApplySummary {
        let out = self.apply_output(config);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "vipd apply failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        ApplySummary::from_json(&stdout)
            .unwrap_or_else(|e| panic!("vipd apply --json printed no summary ({e}):\n{stdout}"))
    }

    /// `vipd status` (text).
    pub fn status(&self) -> String {
        let out = self
            .command()
            .arg("status")
            .arg("--state-file")
            .arg(&self.state)
            .output()
            .expect("running vipd status");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn state_text(&self) -> String {
        std::fs::read_to_string(&self.state).unwrap_or_default()
    }
}

/// One service of an ipvsadm listing: its line and its destination lines, white space
/// folded, destinations sorted.
pub type Block = (String, Vec<String>);

/// Parses `ipvsadm -L...` output into blocks, sorted. `keep` selects services by their
/// line. Counters (ActiveConn, InActConn) are dropped when `drop_counts` is set.
pub fn blocks(text: &str, keep: impl Fn(&str) -> bool, drop_counts: bool) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first() {
            Some(&"->") if words.get(1) != Some(&"RemoteAddress:Port") => {
                let mut w = words.clone();
                if drop_counts && w.len() >= 6 {
                    // -> addr fwd weight active inactive [tun...]
                    w.drain(4..6);
                }
                if let Some(b) = out.last_mut() {
                    b.1.push(w.join(" "));
                }
            }
            Some(p) if ["TCP", "UDP", "FWM", "SCTP"].contains(p) => {
                out.push((words.join(" "), Vec::new()))
            }
            _ => {}
        }
    }
    let mut out: Vec<Block> = out.into_iter().filter(|(s, _)| keep(s)).collect();
    for b in &mut out {
        b.1.sort();
    }
    out.sort();
    out
}

/// `ipvsadm -Ln --tun-info` as blocks, counters dropped.
pub fn ipvsadm_blocks(keep: impl Fn(&str) -> bool) -> Vec<Block> {
    blocks(&sh("ipvsadm -Ln --tun-info"), keep, true)
}

/// The value of a sysctl, trimmed.
pub fn sysctl(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/{}", name.replace('.', "/")))
        .unwrap_or_else(|e| panic!("reading sysctl {name}: {e}"))
        .trim()
        .to_owned()
}
