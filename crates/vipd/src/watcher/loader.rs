//! Loads vipd's kernel programs, fills in their offsets and attaches them.

use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{KProbe, TracePoint},
    Ebpf, EbpfLoader,
};

use super::{
    btf::{Btf, BtfError},
    event::{DecodeError, Event},
    offsets,
    tracefs::{Format, TracefsError},
};

/// The compiled kernel programs (built by build.rs from `vipd-ebpf`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vipd-ebpf"));

#[derive(Debug, thiserror::Error)]
pub enum WatcherError {
    #[error(transparent)]
    Tracefs(#[from] TracefsError),
    #[error(transparent)]
    Btf(#[from] BtfError),
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
    #[error("kernel symbol {symbol} is not available ({why}); is the {module} module loaded?")]
    NoSymbol {
        symbol: &'static str,
        module: &'static str,
        why: String,
    },
}

/// Which hooks to attach.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hooks {
    /// `sock/inet_sock_set_state` (tracepoint; works on any kernel with BPF).
    pub state_changes: bool,
    /// kprobe on `ip_vs_conn_new` (needs kprobes and the ip_vs module).
    pub ipvs_conn: bool,
}

/// Loaded and attached programs, with the event stream they feed.
pub struct Probes {
    _ebpf: Ebpf,
    events: RingBuf<MapData>,
    lost: PerCpuArray<MapData, u64>,
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, WatcherError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf.program_mut(name).ok_or(WatcherError::Missing(name))?;
    p.try_into().map_err(|source| WatcherError::Program {
        program: name,
        source,
    })
}

impl Probes {
    /// Discovers offsets on this kernel, loads the programs and attaches `hooks`.
    pub fn load(hooks: Hooks) -> Result<Self, WatcherError> {
        let state = if hooks.state_changes {
            offsets::inet_sock_set_state(&Format::read("sock", "inet_sock_set_state")?)?
        } else {
            Default::default()
        };
        let ipvs = if hooks.ipvs_conn {
            if !std::path::Path::new("/sys/module/ip_vs").exists() {
                return Err(WatcherError::NoSymbol {
                    symbol: "ip_vs_conn_new",
                    module: "ip_vs",
                    why: "/sys/module/ip_vs does not exist".into(),
                });
            }
            offsets::ip_vs_conn_param(&Btf::from_sys_fs(Some("ip_vs"))?)?
        } else {
            Default::default()
        };

        let mut ebpf = EbpfLoader::new()
            .override_global("STATE_TP", &state, true)
            .override_global("IPVS_PARAM", &ipvs, true)
            .load(OBJECT)?;

        if hooks.state_changes {
            let name = "inet_sock_set_state";
            let p: &mut TracePoint = program(&mut ebpf, name)?;
            p.load().map_err(|source| WatcherError::Program {
                program: name,
                source,
            })?;
            p.attach("sock", name)
                .map_err(|source| WatcherError::Program {
                    program: name,
                    source,
                })?;
        }
        if hooks.ipvs_conn {
            let name = "ip_vs_conn_new";
            let p: &mut KProbe = program(&mut ebpf, name)?;
            p.load().map_err(|source| WatcherError::Program {
                program: name,
                source,
            })?;
            p.attach(name, 0).map_err(|e| WatcherError::NoSymbol {
                symbol: "ip_vs_conn_new",
                module: "ip_vs",
                why: e.to_string(),
            })?;
        }

        let events = ebpf
            .take_map("EVENTS")
            .ok_or(WatcherError::Missing("EVENTS"))?;
        let events = RingBuf::try_from(events).map_err(|source| WatcherError::Map {
            map: "EVENTS",
            source,
        })?;
        let lost = ebpf.take_map("LOST").ok_or(WatcherError::Missing("LOST"))?;
        let lost = PerCpuArray::try_from(lost).map_err(|source| WatcherError::Map {
            map: "LOST",
            source,
        })?;
        Ok(Self {
            _ebpf: ebpf,
            events,
            lost,
        })
    }

    /// The next queued event, if any (non-blocking).
    pub fn next_event(&mut self) -> Option<Result<Event, DecodeError>> {
        self.events.next().map(|item| Event::decode(&item))
    }

    /// Events the kernel programs could not queue because the ring buffer was full.
    pub fn lost_events(&self) -> Result<u64, WatcherError> {
        let per_cpu = self.lost.get(&0, 0).map_err(|source| WatcherError::Map {
            map: "LOST",
            source,
        })?;
        Ok(per_cpu.iter().sum())
    }
}

impl std::os::fd::AsFd for Probes {
    /// The ring buffer's descriptor: readable when events are queued.
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.events.as_fd()
    }
}
