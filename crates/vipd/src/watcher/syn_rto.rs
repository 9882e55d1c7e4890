//! The per-VIP initial SYN retransmission timeout: the cgroup `sock_ops` program
//! `syn_rto`, attached to the cgroup v2 root so that it sees every local client's
//! connections, and its `SYN_RTO` map (VIP → timeout in jiffies). The program is
//! loaded with the watcher but attached only while some VIP has a timeout, and detached
//! (vipd's own link, nothing else) when none has.

use std::{
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use aya::{
    maps::{HashMap, MapData},
    programs::{loaded_links, sock_ops::SockOpsLinkId, CgroupAttachMode, SockOps},
    Ebpf,
};
use vipd_common::VipKey;

use super::loader::vip_key;
use crate::kernel::tick::{jiffies, kernel_hz};

/// The program and map names in the `vipd-watch` object.
const PROGRAM: &str = "syn_rto";
const MAP: &str = "SYN_RTO";

/// The loaded program's map, the kernel's tick rate to convert timeouts with, and the
/// program's link to the cgroup while it is attached.
pub struct SynRto {
    map: HashMap<MapData, VipKey, u32>,
    hz: u32,
    /// The cgroup the program is attached to while some VIP has a timeout.
    cgroup: PathBuf,
    /// vipd's link, while attached.
    link: Option<SockOpsLinkId>,
}

#[derive(Debug, thiserror::Error)]
pub enum SynRtoError {
    #[error("no cgroup v2 hierarchy is mounted (see /proc/self/mountinfo)")]
    NoCgroup2,
    #[error("opening cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the kernel's tick rate is unknown: {0}")]
    Hz(std::io::Error),
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    #[error("program {PROGRAM}: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error("map {MAP}: {0}")]
    Map(#[from] aya::maps::MapError),
}

impl SynRto {
    /// Loads the program (the verifier runs now, so that an unusable kernel shows at
    /// start) and finds `cgroup` (`None`: the cgroup v2 root); attaches nothing.
    pub fn load(ebpf: &mut Ebpf, cgroup: Option<&Path>) -> Result<Self, SynRtoError> {
        let hz = kernel_hz().map_err(SynRtoError::Hz)?;
        let cgroup = match cgroup {
            Some(p) => p.to_owned(),
            None => cgroup2_root().ok_or(SynRtoError::NoCgroup2)?,
        };
        open(&cgroup)?;
        program(ebpf)?.load()?;
        let map = HashMap::try_from(ebpf.take_map(MAP).ok_or(SynRtoError::Missing(MAP))?)?;
        Ok(Self {
            map,
            hz,
            cgroup,
            link: None,
        })
    }

    /// The cgroup the program is attached to while some VIP has a timeout.
    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    /// Whether vipd's link to the cgroup exists now.
    pub fn attached(&self) -> bool {
        self.link.is_some()
    }

    /// Connections to TCP VIP `vip` start with initial timeout `rto` (`None`: the
    /// kernel's default). The program is attached with the first VIP that has a timeout
    /// and detached when the last one goes.
    pub fn set(
        &mut self,
        ebpf: &mut Ebpf,
        vip: SocketAddr,
        rto: Option<Duration>,
    ) -> Result<(), SynRtoError> {
        let key = vip_key(vip, libc::IPPROTO_TCP as u8);
        match rto {
            Some(rto) => {
                self.map.insert(key, jiffies(rto, self.hz), 0)?;
                self.attach(ebpf)
            }
            None => {
                crate::bpf_map::removed(self.map.remove(&key))?;
                if self.map.keys().next().is_none() {
                    self.detach(ebpf)?;
                }
                Ok(())
            }
        }
    }

    /// Attaches the program to the cgroup as a BPF link, alongside any other `sock_ops`
    /// programs there (the link goes with the process), unless it is.
    fn attach(&mut self, ebpf: &mut Ebpf) -> Result<(), SynRtoError> {
        if self.link.is_some() {
            return Ok(());
        }
        let dir = open(&self.cgroup)?;
        // `Single` is what a BPF link takes (the kernel rejects any flag there); a
        // cgroup link always runs alongside the cgroup's other programs.
        let link = program(ebpf)?.attach(&dir, CgroupAttachMode::Single)?;
        self.link = Some(link);
        tracing::info!(cgroup = %self.cgroup.display(), "syn_rto sock_ops program attached");
        Ok(())
    }

    /// Detaches vipd's link, if there is one; no other program is touched.
    fn detach(&mut self, ebpf: &mut Ebpf) -> Result<(), SynRtoError> {
        let Some(link) = self.link.take() else {
            return Ok(());
        };
        program(ebpf)?.detach(link)?;
        tracing::info!(cgroup = %self.cgroup.display(), "syn_rto sock_ops program detached: no VIP has a SYN timeout");
        Ok(())
    }

    /// Links in the kernel to this program (any cgroup): what `attached` should match.
    pub fn kernel_links(&self, ebpf: &Ebpf) -> Result<usize, SynRtoError> {
        let p: &SockOps = ebpf
            .program(PROGRAM)
            .ok_or(SynRtoError::Missing(PROGRAM))?
            .try_into()?;
        let id = p.info()?.id();
        Ok(loaded_links()
            .filter_map(Result::ok)
            .filter(|l| l.program_id() == id)
            .count())
    }

    /// The VIPs that have a timeout now, and the timeouts as the kernel applies them
    /// (whole jiffies).
    pub fn entries(&self) -> Vec<(VipKey, Duration)> {
        self.map
            .iter()
            .filter_map(Result::ok)
            .map(|(k, j)| {
                (
                    k,
                    Duration::from_nanos(u64::from(j) * 1_000_000_000 / u64::from(self.hz)),
                )
            })
            .collect()
    }
}

/// The `sock_ops` program in `ebpf`.
fn program(ebpf: &mut Ebpf) -> Result<&mut SockOps, SynRtoError> {
    Ok(ebpf
        .program_mut(PROGRAM)
        .ok_or(SynRtoError::Missing(PROGRAM))?
        .try_into()?)
}

fn open(cgroup: &Path) -> Result<File, SynRtoError> {
    File::open(cgroup).map_err(|source| SynRtoError::Cgroup {
        path: cgroup.to_owned(),
        source,
    })
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` in the hybrid layout), from this process's mount table.
pub fn cgroup2_root() -> Option<PathBuf> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    cgroup2_in(&table)
}

/// The first cgroup2 mount point in a `mountinfo` table.
fn cgroup2_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        left.split_whitespace().nth(4).map(PathBuf::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup2_mount_is_found_in_either_layout() {
        let hybrid = "\
25 30 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
";
        assert_eq!(
            cgroup2_in(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "30 1 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_in(unified), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(cgroup2_in("22 1 0:5 / /proc rw - proc proc rw\n"), None);
    }
}
