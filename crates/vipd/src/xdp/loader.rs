//! Loads the XDP data plane from its own eBPF object: sizes its maps (the object's are
//! placeholders), optionally pins them, loads `vipd_xdp_lb` and attaches it.

use std::{
    os::fd::{AsFd, BorrowedFd},
    path::{Path, PathBuf},
};

use aya::{
    programs::{
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
        Xdp, XdpMode,
    },
    Ebpf, EbpfLoader,
};
use vipd_common::xdp::MAGLEV_M;

use super::maps::XdpMaps;

/// The XDP data plane's kernel object (built by build.rs from `vipd-ebpf`'s `vipd-xdp`):
/// its programs and maps only, none of the connection watcher's.
pub(crate) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vipd-xdp"));

/// The balancer program and the pass-everything program for veth peers.
pub const LB_PROGRAM: &str = "vipd_xdp_lb";
pub const PASS_PROGRAM: &str = "vipd_xdp_pass";

/// Maps that carry state worth keeping across a restart of vipd; pinned when a pin
/// directory is given. The ring buffer and counters are per process.
pub const PINNED_MAPS: [&str; 5] = [
    "XDP_SERVICES",
    "XDP_MAGLEV",
    "XDP_BACKENDS",
    "XDP_FLOWS",
    "XDP_REPLIES",
];

#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {program}: {source}")]
    Program {
        program: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        source: aya::maps::MapError,
    },
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    #[error("attaching XDP to interface {interface:?}: {source}")]
    Attach {
        interface: String,
        source: aya::programs::ProgramError,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Limit(String),
}

/// Map sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Services (one Maglev table of `MAGLEV_M` entries each).
    pub services: u32,
    /// Backend ids.
    pub backends: u32,
    /// Flows in each direction (LRU).
    pub flows: u32,
    /// Health ring buffer, bytes (a power of two, at least a page).
    pub events_bytes: u32,
}

impl Default for Sizes {
    fn default() -> Self {
        Sizes {
            services: 64,
            backends: 4096,
            flows: 1 << 18,
            events_bytes: 1 << 20,
        }
    }
}

/// Mounts bpffs on /sys/fs/bpf unless it is there already (pinning needs it).
pub fn ensure_bpffs() -> Result<(), XdpError> {
    crate::fs_type::ensure_bpffs().map_err(|source| XdpError::Io {
        what: "mounting bpffs on /sys/fs/bpf".into(),
        source,
    })
}

/// The loaded XDP data plane.
pub struct XdpProgram {
    ebpf: Ebpf,
    sizes: Sizes,
    /// (program, interface, link) of every attachment this object made.
    links: Vec<(&'static str, String, XdpLinkId)>,
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp, XdpError> {
    let p = ebpf.program_mut(name).ok_or(XdpError::Missing(name))?;
    p.try_into().map_err(|source| XdpError::Program {
        program: name,
        source,
    })
}

impl XdpProgram {
    /// Loads the object with maps of `sizes`. With `pin_dir`, the flow, reply, service,
    /// Maglev and backend maps are pinned there (created on first use, reused after): a
    /// restarted vipd finds the flows of the one before.
    pub fn load(sizes: Sizes, pin_dir: Option<&Path>) -> Result<Self, XdpError> {
        let maglev = sizes
            .services
            .checked_mul(MAGLEV_M)
            .ok_or_else(|| XdpError::Limit(format!("{} services: too many", sizes.services)))?;
        let pins: Vec<(&'static str, PathBuf)> = match pin_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| XdpError::Io {
                    what: format!("creating {}", dir.display()),
                    source,
                })?;
                PINNED_MAPS.iter().map(|m| (*m, dir.join(m))).collect()
            }
            None => Vec::new(),
        };
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries("XDP_SERVICES", sizes.services * 4)
            .map_max_entries("XDP_MAGLEV", maglev)
            .map_max_entries("XDP_BACKENDS", sizes.backends)
            .map_max_entries("XDP_FLOWS", sizes.flows)
            .map_max_entries("XDP_REPLIES", sizes.flows)
            .map_max_entries("XDP_SYN_WATCH", sizes.services * 4)
            .map_max_entries("XDP_HEALTH", sizes.events_bytes);
        for (name, path) in &pins {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(OBJECT)?;
        for name in [LB_PROGRAM, PASS_PROGRAM] {
            program(&mut ebpf, name)?
                .load()
                .map_err(|source| XdpError::Program {
                    program: name,
                    source,
                })?;
        }
        Ok(XdpProgram {
            ebpf,
            sizes,
            links: Vec::new(),
        })
    }

    pub fn sizes(&self) -> Sizes {
        self.sizes
    }

    /// Attaches the balancer to `interface` (native mode where the driver has it).
    pub fn attach(&mut self, interface: &str) -> Result<(), XdpError> {
        self.attach_program(LB_PROGRAM, interface)
    }

    /// Attaches `vipd_xdp_pass` to `interface`: for the far end of a veth that must
    /// receive frames the balancer sends with XDP_TX or XDP_REDIRECT.
    pub fn attach_pass(&mut self, interface: &str) -> Result<(), XdpError> {
        self.attach_program(PASS_PROGRAM, interface)
    }

    fn attach_program(&mut self, name: &'static str, interface: &str) -> Result<(), XdpError> {
        let id = program(&mut self.ebpf, name)?
            .attach(interface, XdpMode::default())
            .map_err(|source| XdpError::Attach {
                interface: interface.to_owned(),
                source,
            })?;
        self.links.push((name, interface.to_owned(), id));
        Ok(())
    }

    /// Detaches every attachment this object made (not pinned links, which outlive it
    /// by design; see [`XdpProgram::detach_pinned`]).
    pub fn detach_all(&mut self) -> Result<(), XdpError> {
        for (name, _, id) in std::mem::take(&mut self.links) {
            program(&mut self.ebpf, name)?
                .detach(id)
                .map_err(|source| XdpError::Program {
                    program: name,
                    source,
                })?;
        }
        Ok(())
    }

    /// Attaches the balancer to `interface` through a link pinned in `pin_dir`, so the
    /// program stays attached after this process exits. If a pinned link exists (an
    /// earlier vipd's), this program replaces the old one on it atomically: no packet
    /// meets an interface without a balancer.
    pub fn attach_pinned(&mut self, interface: &str, pin_dir: &Path) -> Result<(), XdpError> {
        let pin = pin_dir.join(format!("link_{interface}"));
        let attach_err = |source| XdpError::Attach {
            interface: interface.to_owned(),
            source,
        };
        if pin.exists() {
            let replaced = PinnedLink::from_pin(&pin)
                .ok()
                .map(FdLink::from)
                .and_then(|fd| XdpLink::try_from(fd).ok())
                .map(|link| {
                    program(&mut self.ebpf, LB_PROGRAM)?
                        .attach_to_link(link)
                        .map_err(attach_err)
                });
            match replaced {
                Some(Ok(id)) => {
                    self.links.push((LB_PROGRAM, interface.to_owned(), id));
                    return Ok(());
                }
                // A stale pin (its interface gone, say): start over.
                _ => {
                    let _ = std::fs::remove_file(&pin);
                }
            }
        }
        let p = program(&mut self.ebpf, LB_PROGRAM)?;
        let id = p
            .attach(interface, XdpMode::default())
            .map_err(attach_err)?;
        let link = p.take_link(id).map_err(attach_err)?;
        let fd: FdLink = link
            .try_into()
            .map_err(|e: aya::programs::links::LinkError| {
                XdpError::Limit(format!("XDP link of {interface} is not a bpf_link: {e}"))
            })?;
        fd.pin(&pin).map_err(|e| XdpError::Io {
            what: format!("pinning the XDP link at {}", pin.display()),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(())
    }

    /// Detaches the balancer from `interface` for good: removes the pinned link.
    pub fn detach_pinned(interface: &str, pin_dir: &Path) -> Result<(), XdpError> {
        let pin = pin_dir.join(format!("link_{interface}"));
        match std::fs::remove_file(&pin) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(XdpError::Io {
                what: format!("removing {}", pin.display()),
                source,
            }),
        }
    }

    /// The interfaces the programs are attached to.
    pub fn interfaces(&self) -> impl Iterator<Item = &str> {
        self.links.iter().map(|(_, i, _)| i.as_str())
    }

    /// The balancer program's descriptor (for BPF_PROG_TEST_RUN).
    pub fn lb_fd(&self) -> Result<BorrowedFd<'_>, XdpError> {
        let p: &Xdp = self
            .ebpf
            .program(LB_PROGRAM)
            .ok_or(XdpError::Missing(LB_PROGRAM))?
            .try_into()
            .map_err(|source| XdpError::Program {
                program: LB_PROGRAM,
                source,
            })?;
        let fd = p.fd().map_err(|source| XdpError::Program {
            program: LB_PROGRAM,
            source,
        })?;
        Ok(fd.as_fd())
    }

    /// Takes the maps out of the object (once).
    pub fn take_maps(&mut self) -> Result<XdpMaps, XdpError> {
        XdpMaps::take(&mut self.ebpf, self.sizes)
    }
}
