//! Loads the socket data plane from its own eBPF object, sizes its maps (the object's
//! are placeholders), and attaches its cgroup programs (eight address hooks,
//! `sock_ops` and `sock_release`) to one cgroup v2 directory.
//!
//! With a pin directory, the state maps are pinned there (created on first use, reused
//! after) and every program is attached through a link pinned there, so the programs
//! keep balancing after vipd exits. A restarted (or upgraded) vipd finds the pinned link
//! of each program: on the same cgroup, it puts its own program on that link in place
//! (`BPF_LINK_UPDATE`: no moment without a program); on another cgroup (the setting
//! changed), it attaches to the configured one first and then removes the old pin, if it
//! is provably vipd's (see [`super::pins`]).

use std::{
    fs::File,
    os::fd::{AsFd, BorrowedFd},
    path::{Path, PathBuf},
};

use aya::{
    programs::{links::FdLink, CgroupAttachMode, CgroupSockAddrAttachType, Program},
    Ebpf, EbpfLoader,
};

use super::{
    compat::{remove_stale, Recreated},
    error_report,
    link::{cgroup_id, link_info, link_update, obj_get},
    maps::SockMaps,
    pins::{is_our_link, link_pin},
    reset, udp_err, SockError,
};
use crate::kernel::btf::Btf;

/// The socket data plane's kernel object (built by build.rs from `vipd-ebpf`'s
/// `vipd-sock`): its programs and maps only.
pub(crate) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vipd-sock"));

/// Every program of the object and where it attaches.
pub const PROGRAMS: [(&str, CgroupSockAddrAttachType); 8] = [
    ("vipd_sock_connect4", CgroupSockAddrAttachType::Connect4),
    ("vipd_sock_connect6", CgroupSockAddrAttachType::Connect6),
    (
        "vipd_sock_getpeername4",
        CgroupSockAddrAttachType::GetPeerName4,
    ),
    (
        "vipd_sock_getpeername6",
        CgroupSockAddrAttachType::GetPeerName6,
    ),
    ("vipd_sock_sendmsg4", CgroupSockAddrAttachType::UDPSendMsg4),
    ("vipd_sock_sendmsg6", CgroupSockAddrAttachType::UDPSendMsg6),
    ("vipd_sock_recvmsg4", CgroupSockAddrAttachType::UDPRecvMsg4),
    ("vipd_sock_recvmsg6", CgroupSockAddrAttachType::UDPRecvMsg6),
];

/// The `sock_ops` program that reports how translated connections fare.
pub const SOCK_OPS_PROGRAM: &str = "vipd_sock_ops";

/// The `sock_release` program that removes a closed UDP socket's records.
pub const RELEASE_PROGRAM: &str = "vipd_sock_release";

/// Every cgroup program of the object: the address programs, `sock_ops`, then
/// `sock_release`.
pub fn program_names() -> impl Iterator<Item = &'static str> {
    PROGRAMS
        .iter()
        .map(|(name, _)| *name)
        .chain([SOCK_OPS_PROGRAM, RELEASE_PROGRAM])
}

/// What every program's name starts with (and no other program of vipd's).
pub const PROGRAM_PREFIX: &str = "vipd_sock_";

/// Maps that carry state worth keeping across a restart: pinned with a pin directory.
/// The counters are per process; the SYN timeouts are written again at start.
pub const PINNED_MAPS: [&str; 7] = [
    "SOCK_SERVICES",
    "SOCK_BACKENDS",
    "SOCK_PEERS",
    "SOCK_AFFINITY",
    "SOCK_STICKY_TCP",
    "SOCK_UDP_FLOWS",
    "SOCK_UDP_SENT",
];

/// Map sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub services: u32,
    /// Backend ids (id 0 is never used).
    pub backends: u32,
    /// Socket translations (LRU): two per unconnected UDP socket and VIP, one per
    /// connected socket. Also the size of `SOCK_STICKY_TCP` (LRU), one per open TCP
    /// connection of a service with persistence, of `SOCK_UDP_FLOWS` (LRU), one per
    /// unconnected UDP socket and backend it sent to, and of `SOCK_UDP_SENT` (LRU), one
    /// per unconnected UDP socket that sent to a VIP.
    pub peers: u32,
    /// Clients of services with persistence (LRU).
    pub affinity: u32,
    /// Health ring buffer, bytes (a power of two, at least a page).
    pub events_bytes: u32,
}

impl Default for Sizes {
    fn default() -> Self {
        Sizes {
            services: 4096,
            backends: 8192,
            // Preallocated (an LRU map always is): about 8 MiB of kernel memory.
            peers: 1 << 16,
            // Preallocated too: about 8 MiB (72 bytes of key and value, and the
            // kernel's element header).
            affinity: 1 << 16,
            events_bytes: 1 << 20,
        }
    }
}

/// How a program came to be attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// A new link (no pin, or the pin was on another cgroup).
    New,
    /// Put in place on an earlier vipd's pinned link to the same cgroup.
    Replaced,
}

/// The loaded socket data plane.
pub struct SockProgram {
    ebpf: Ebpf,
    sizes: Sizes,
    /// Why refusals are not reported on this kernel (the tracepoint's record lacks a
    /// field vipd needs); `None`: its program is loaded.
    no_reset: Option<String>,
    /// Why ICMP errors on connected UDP sockets are not reported on this kernel (no BTF,
    /// no `inet_sk_error_report`, or its program was refused); `None`: loaded.
    no_errors: Option<String>,
    /// Why ICMP errors about unconnected UDP datagrams are not reported on this kernel
    /// (no BTF, or the fentry programs were refused); `None`: loaded.
    no_udp_errors: Option<String>,
    /// Links this process holds (with no pin directory: they detach when it exits).
    held: Vec<FdLink>,
    /// Pinned maps of another layout, created afresh by this load.
    recreated: Vec<Recreated>,
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Program, SockError> {
    ebpf.program_mut(name).ok_or(SockError::Missing(name))
}

/// Loads the ICMP error hook against the kernel's BTF; an error says why it cannot run
/// here (the plane goes on without it).
fn load_error_report(ebpf: &mut Ebpf) -> Result<(), String> {
    let btf = aya::Btf::from_sys_fs().map_err(|e| format!("reading the kernel's BTF: {e}"))?;
    let name = error_report::ERROR_PROGRAM;
    match ebpf.program_mut(name) {
        Some(Program::BtfTracePoint(p)) => p
            .load(error_report::TRACEPOINT, &btf)
            .map_err(|e| format!("loading {name} on tp_btf {}: {e}", error_report::TRACEPOINT)),
        _ => Err(format!("the eBPF object has no {name}")),
    }
}

/// Loads program `name`.
fn load_one(ebpf: &mut Ebpf, name: &'static str) -> Result<(), SockError> {
    let p = program(ebpf, name)?;
    match p {
        Program::TracePoint(p) => p.load(),
        Program::SockOps(p) => p.load(),
        Program::CgroupSockAddr(p) => p.load(),
        Program::CgroupSock(p) => p.load(),
        _ => return Err(SockError::Missing(name)),
    }
    .map_err(prog_err(name))
}

/// Attaches program `name` to `cgroup` through a new bpf_link. A cgroup bpf_link takes
/// no attach flags (EINVAL otherwise); the kernel runs it beside the cgroup's other
/// programs, as with BPF_F_ALLOW_MULTI.
fn link_one(ebpf: &mut Ebpf, name: &'static str, cgroup: &File) -> Result<FdLink, SockError> {
    let to_fd = |e: aya::programs::links::LinkError| {
        SockError::Limit(format!("the link of {name} is not a bpf_link: {e}"))
    };
    // Each program type has its own attach and link types; the steps are the same.
    macro_rules! link {
        ($p:expr) => {{
            let id = $p
                .attach(cgroup, CgroupAttachMode::Single)
                .map_err(prog_err(name))?;
            $p.take_link(id)
                .map_err(prog_err(name))?
                .try_into()
                .map_err(to_fd)
        }};
    }
    match program(ebpf, name)? {
        Program::SockOps(p) => link!(p),
        Program::CgroupSockAddr(p) => link!(p),
        Program::CgroupSock(p) => link!(p),
        _ => Err(SockError::Missing(name)),
    }
}

/// Program `name`'s descriptor.
fn fd_of<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<BorrowedFd<'a>, SockError> {
    let fd = match program(ebpf, name)? {
        Program::SockOps(p) => p.fd(),
        Program::CgroupSockAddr(p) => p.fd(),
        Program::CgroupSock(p) => p.fd(),
        _ => return Err(SockError::Missing(name)),
    }
    .map_err(prog_err(name))?;
    Ok(fd.as_fd())
}

fn prog_err(program: &'static str) -> impl Fn(aya::programs::ProgramError) -> SockError {
    move |source| SockError::Program { program, source }
}

impl SockProgram {
    /// Loads the object with maps of `sizes`, pinned in `pin_dir` if given.
    pub fn load(sizes: Sizes, pin_dir: Option<&Path>) -> Result<Self, SockError> {
        let mut recreated = Vec::new();
        let pins: Vec<(&'static str, PathBuf)> = match pin_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(SockError::io(format!("creating {}", dir.display())))?;
                recreated = remove_stale(dir, sizes)?;
                PINNED_MAPS.iter().map(|m| (*m, dir.join(m))).collect()
            }
            None => Vec::new(),
        };
        // The kernel's BTF, read once for both tracepoints' socket offsets.
        let btf = Btf::from_sys_fs(None).map_err(|e| e.to_string());
        let btf = btf.as_ref().map_err(String::as_str);
        let reset = reset::offsets(btf);
        let errors = error_report::offsets(btf);
        let udp_errors = udp_err::offsets(btf);
        let mut loader = EbpfLoader::new();
        if let Ok(off) = &reset {
            loader.override_global(reset::OFFSETS_GLOBAL, off, true);
        }
        if let Ok(off) = &errors {
            loader.override_global(error_report::OFFSETS_GLOBAL, off, true);
        }
        if let Ok(off) = &udp_errors {
            loader.override_global(udp_err::OFFSETS_GLOBAL, off, true);
        }
        loader
            .map_max_entries("SOCK_SERVICES", sizes.services)
            .map_max_entries("SOCK_BACKENDS", sizes.backends)
            .map_max_entries("SOCK_PEERS", sizes.peers)
            .map_max_entries("SOCK_AFFINITY", sizes.affinity)
            .map_max_entries("SOCK_STICKY_TCP", sizes.peers)
            .map_max_entries("SOCK_UDP_FLOWS", sizes.peers)
            .map_max_entries("SOCK_UDP_SENT", sizes.peers)
            .map_max_entries("SOCK_SYN_RTO", sizes.services)
            .map_max_entries("SOCK_HEALTH", sizes.events_bytes);
        for (name, path) in &pins {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(OBJECT)?;
        for name in program_names() {
            load_one(&mut ebpf, name)?;
        }
        if reset.is_ok() {
            load_one(&mut ebpf, reset::RESET_PROGRAM)?;
        }
        let no_errors = errors.and_then(|_| load_error_report(&mut ebpf)).err();
        let no_udp_errors = udp_errors.and_then(|_| udp_err::load(&mut ebpf)).err();
        Ok(SockProgram {
            ebpf,
            sizes,
            no_reset: reset.err().map(|e| e.to_string()),
            no_errors,
            no_udp_errors,
            held: Vec::new(),
            recreated,
        })
    }

    pub fn sizes(&self) -> Sizes {
        self.sizes
    }

    /// How many instructions the verifier walked for each program (`None` before 5.16,
    /// which does not say), in [`program_names`] order: what the programs' complexity
    /// costs, against the verifier's limit of a million on every kernel.
    pub fn verified_instructions(&self) -> Vec<(&'static str, Option<u32>)> {
        program_names()
            .map(|name| {
                let info = match self.ebpf.program(name) {
                    Some(Program::SockOps(p)) => p.info().ok(),
                    Some(Program::CgroupSockAddr(p)) => p.info().ok(),
                    Some(Program::CgroupSock(p)) => p.info().ok(),
                    _ => None,
                };
                (name, info.and_then(|i| i.verified_instruction_count()))
            })
            .collect()
    }

    /// The pinned maps an earlier vipd left with another layout, created afresh.
    pub fn recreated(&self) -> &[Recreated] {
        &self.recreated
    }

    /// Attaches every program to `cgroup`; with `pin_dir`, through pinned links (see the
    /// module doc). Returns how each one was attached, in [`program_names`] order.
    pub fn attach(
        &mut self,
        cgroup: &Path,
        pin_dir: Option<&Path>,
    ) -> Result<Vec<Attached>, SockError> {
        let dir = File::open(cgroup).map_err(SockError::io(format!(
            "opening the cgroup {}",
            cgroup.display()
        )))?;
        let id = cgroup_id(cgroup).map_err(SockError::io(format!(
            "reading the cgroup {}",
            cgroup.display()
        )))?;
        let mut out = Vec::new();
        for name in program_names() {
            let how = match pin_dir {
                None => {
                    let link = self.new_link(name, &dir)?;
                    self.held.push(link);
                    Attached::New
                }
                Some(pins) => self.attach_pinned(name, &dir, id, &link_pin(pins, name))?,
            };
            out.push(how);
        }
        Ok(out)
    }

    fn new_link(&mut self, name: &'static str, cgroup: &File) -> Result<FdLink, SockError> {
        link_one(&mut self.ebpf, name, cgroup)
    }

    fn attach_pinned(
        &mut self,
        name: &'static str,
        cgroup: &File,
        cgroup_id: u64,
        pin: &Path,
    ) -> Result<Attached, SockError> {
        let old = pin.exists().then(|| obj_get(pin).ok()).flatten();
        if let Some(fd) = &old {
            let same = link_info(fd.as_fd()).is_ok_and(|i| i.cgroup_id == cgroup_id);
            if same && is_our_link(pin) {
                let prog_fd = fd_of(&mut self.ebpf, name)?;
                link_update(fd.as_fd(), prog_fd).map_err(SockError::io(format!(
                    "replacing the program on {}",
                    pin.display()
                )))?;
                return Ok(Attached::Replaced);
            }
        }
        // Attach first, so sockets are balanced throughout; then the old pin goes.
        let link = self.new_link(name, cgroup)?;
        if pin.exists() {
            if is_our_link(pin) {
                std::fs::remove_file(pin)
                    .map_err(SockError::io(format!("removing {}", pin.display())))?;
            } else {
                return Err(SockError::Limit(format!(
                    "{} is not a link vipd pinned: remove it (or pin elsewhere) to attach {name}",
                    pin.display()
                )));
            }
        }
        link.pin(pin).map_err(|e| SockError::Io {
            what: format!("pinning the link of {name} at {}", pin.display()),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Attached::New)
    }

    /// Attaches the refusal tracepoint (held by this process: refusals are reported
    /// while vipd runs). Returns why it is not attached on this kernel, if it is not.
    pub fn attach_reset(&mut self) -> Result<Option<String>, SockError> {
        if let Some(why) = &self.no_reset {
            return Ok(Some(why.clone()));
        }
        let name = reset::RESET_PROGRAM;
        match program(&mut self.ebpf, name)? {
            Program::TracePoint(p) => {
                p.attach(reset::TRACEPOINT.0, reset::TRACEPOINT.1)
                    .map_err(prog_err(name))?;
                Ok(None)
            }
            _ => Err(SockError::Missing(name)),
        }
    }

    /// Attaches the ICMP error tracepoint (held by this process, as the refusal one).
    /// Returns why it is not attached on this kernel, if it is not.
    pub fn attach_error_report(&mut self) -> Result<Option<String>, SockError> {
        if let Some(why) = &self.no_errors {
            return Ok(Some(why.clone()));
        }
        let name = error_report::ERROR_PROGRAM;
        match program(&mut self.ebpf, name)? {
            Program::BtfTracePoint(p) => {
                p.attach().map_err(prog_err(name))?;
                Ok(None)
            }
            _ => Err(SockError::Missing(name)),
        }
    }

    /// Attaches the fentry programs that report ICMP errors about unconnected UDP
    /// datagrams (held by this process, as the refusal tracepoint). Returns why they are
    /// not attached on this kernel, if they are not.
    pub fn attach_udp_errors(&mut self) -> Option<String> {
        if let Some(why) = &self.no_udp_errors {
            return Some(why.clone());
        }
        udp_err::attach(&mut self.ebpf).err()
    }

    /// Takes the maps out of the object (once).
    pub fn take_maps(&mut self) -> Result<SockMaps, SockError> {
        SockMaps::take(&mut self.ebpf, self.sizes)
    }
}
