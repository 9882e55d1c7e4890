//! Loads vipd's kernel programs, fills in their offsets, attaches them, and manages the
//! set of VIPs they watch.

use std::net::SocketAddr;

use aya::{
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::{KProbe, TracePoint},
    Ebpf, EbpfLoader,
};
use vipd_common::{
    FlowKey, IpvsConnParamOffsets, SockCommonOffsets, SockTracepointOffsets, VipKey, AF_INET,
    AF_INET6,
};

use super::{
    btf::{Btf, BtfError},
    event::{DecodeError, Event},
    offsets::{self, SockTracepoint},
    tracefs::{Format, TracefsError},
};

/// The compiled kernel programs (built by build.rs from `vipd-ebpf`).
pub(crate) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vipd-ebpf"));

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
    /// `sock/inet_sock_set_state` tracepoint.
    pub state_changes: bool,
    /// `tcp/tcp_retransmit_skb` tracepoint.
    pub retransmits: bool,
    /// `tcp/tcp_receive_reset` tracepoint.
    pub resets: bool,
    /// kprobe on `tcp_connect` (needs kprobes).
    pub connect: bool,
    /// kprobe on `ip_vs_conn_new` (needs kprobes and the ip_vs module).
    pub ipvs_conn: bool,
}

impl Hooks {
    /// Every hook: what the connection watcher needs on a kernel with IPVS.
    pub const ALL: Self = Self {
        state_changes: true,
        retransmits: true,
        resets: true,
        connect: true,
        ipvs_conn: true,
    };
    /// The tracepoints only: what works on a kernel without kprobes or IPVS.
    pub const TRACEPOINTS: Self = Self {
        state_changes: true,
        retransmits: true,
        resets: true,
        connect: false,
        ipvs_conn: false,
    };
}

/// Loaded and attached programs, with the event stream they feed.
pub struct Probes {
    _ebpf: Ebpf,
    events: RingBuf<MapData>,
    lost: PerCpuArray<MapData, u64>,
    vips: HashMap<MapData, VipKey, u32>,
    conns: HashMap<MapData, FlowKey, vipd_common::Backend>,
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

fn sock_tp(which: SockTracepoint, on: bool) -> Result<SockTracepointOffsets, WatcherError> {
    if !on {
        return Ok(SockTracepointOffsets::UNSET);
    }
    let (cat, name) = which.category_and_name();
    Ok(offsets::sock_tracepoint(&Format::read(cat, name)?, which)?)
}

fn attach_tracepoint(ebpf: &mut Ebpf, which: SockTracepoint) -> Result<(), WatcherError> {
    let (cat, name) = which.category_and_name();
    let p: &mut TracePoint = program(ebpf, name)?;
    p.load().map_err(|source| WatcherError::Program {
        program: name,
        source,
    })?;
    p.attach(cat, name)
        .map_err(|source| WatcherError::Program {
            program: name,
            source,
        })?;
    Ok(())
}

fn attach_kprobe(
    ebpf: &mut Ebpf,
    name: &'static str,
    module: &'static str,
) -> Result<(), WatcherError> {
    let p: &mut KProbe = program(ebpf, name)?;
    p.load().map_err(|source| WatcherError::Program {
        program: name,
        source,
    })?;
    p.attach(name, 0).map_err(|e| WatcherError::NoSymbol {
        symbol: name,
        module,
        why: e.to_string(),
    })?;
    Ok(())
}

/// A VIP as the kernel programs key it.
pub fn vip_key(vip: SocketAddr, protocol: u8) -> VipKey {
    let mut key = VipKey {
        port: vip.port(),
        protocol,
        ..Default::default()
    };
    match vip {
        SocketAddr::V4(a) => {
            key.family = AF_INET as u8;
            key.addr[..4].copy_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            key.family = AF_INET6 as u8;
            key.addr = a.ip().octets();
        }
    }
    key
}

impl Probes {
    /// Discovers offsets on this kernel, loads the programs and attaches `hooks`. Any
    /// hook that cannot be set up is an error naming what is missing.
    pub fn load(hooks: Hooks) -> Result<Self, WatcherError> {
        let state = sock_tp(SockTracepoint::SetState, hooks.state_changes)?;
        let retransmit = sock_tp(SockTracepoint::Retransmit, hooks.retransmits)?;
        let reset = sock_tp(SockTracepoint::ReceiveReset, hooks.resets)?;
        let needs_btf = hooks.ipvs_conn || hooks.connect;
        if hooks.ipvs_conn && !std::path::Path::new("/sys/module/ip_vs").exists() {
            return Err(WatcherError::NoSymbol {
                symbol: "ip_vs_conn_new",
                module: "ip_vs",
                why: "/sys/module/ip_vs does not exist".into(),
            });
        }
        let btf = if needs_btf {
            Some(Btf::from_sys_fs(hooks.ipvs_conn.then_some("ip_vs"))?)
        } else {
            None
        };
        let ipvs = match (&btf, hooks.ipvs_conn) {
            (Some(btf), true) => offsets::ip_vs_conn_param(btf)?,
            _ => IpvsConnParamOffsets::default(),
        };
        let sock_common = match (&btf, hooks.connect) {
            (Some(btf), true) => offsets::sock_common(btf)?,
            _ => SockCommonOffsets::default(),
        };

        let mut ebpf = EbpfLoader::new()
            .override_global("STATE_TP", &state, true)
            .override_global("RETRANSMIT_TP", &retransmit, true)
            .override_global("RESET_TP", &reset, true)
            .override_global("IPVS_PARAM", &ipvs, true)
            .override_global("SOCK_COMMON", &sock_common, true)
            .load(OBJECT)?;

        for (on, which) in [
            (hooks.state_changes, SockTracepoint::SetState),
            (hooks.retransmits, SockTracepoint::Retransmit),
            (hooks.resets, SockTracepoint::ReceiveReset),
        ] {
            if on {
                attach_tracepoint(&mut ebpf, which)?;
            }
        }
        if hooks.connect {
            attach_kprobe(&mut ebpf, "tcp_connect", "kernel")?;
        }
        if hooks.ipvs_conn {
            attach_kprobe(&mut ebpf, "ip_vs_conn_new", "ip_vs")?;
        }

        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(WatcherError::Missing(name));
        let map_err = |map: &'static str| move |source| WatcherError::Map { map, source };
        let events = RingBuf::try_from(take("EVENTS")?).map_err(map_err("EVENTS"))?;
        let lost = PerCpuArray::try_from(take("LOST")?).map_err(map_err("LOST"))?;
        let vips = HashMap::try_from(take("VIPS")?).map_err(map_err("VIPS"))?;
        let conns = HashMap::try_from(take("CONNS")?).map_err(map_err("CONNS"))?;
        Ok(Self {
            _ebpf: ebpf,
            events,
            lost,
            vips,
            conns,
        })
    }

    /// Starts producing events for connections to `vip` (`protocol`: IPPROTO_TCP, ...).
    pub fn watch(
        &mut self,
        vip: SocketAddr,
        protocol: u8,
        service_id: u32,
    ) -> Result<(), WatcherError> {
        self.vips
            .insert(vip_key(vip, protocol), service_id, 0)
            .map_err(|source| WatcherError::Map {
                map: "VIPS",
                source,
            })
    }

    /// Stops producing events for `vip`. Not watching it is not an error.
    pub fn unwatch(&mut self, vip: SocketAddr, protocol: u8) -> Result<(), WatcherError> {
        match self.vips.remove(&vip_key(vip, protocol)) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(WatcherError::Map {
                map: "VIPS",
                source,
            }),
        }
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

    /// How many connections the kernel's join map holds now.
    pub fn tracked_connections(&self) -> usize {
        self.conns.keys().filter(Result::is_ok).count()
    }
}

impl std::os::fd::AsFd for Probes {
    /// The ring buffer's descriptor: readable when events are queued.
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.events.as_fd()
    }
}
