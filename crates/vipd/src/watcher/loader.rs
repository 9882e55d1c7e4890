//! Loads vipd's kernel programs, fills in their offsets, attaches them, and manages the
//! set of VIPs they watch.

use std::{net::SocketAddr, time::Duration};

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    Ebpf, EbpfLoader,
};
use vipd_common::{
    DestKey, FlowKey, IpvsConnOffsets, IpvsConnParamOffsets, SkbOffsets, SockOffsets,
    SockTracepointOffsets, UdpTraffic, VipKey, NO_FIELD,
};

use super::{
    attach::{self, Attachment, Flavour},
    event::{DecodeError, Event},
    syn_rto::SynRto,
    vip_ports::VipPorts,
};
use crate::kernel::{
    btf::{Btf, BtfError},
    offsets::{self, SockTracepoint},
    tracefs::{Format, TracefsError},
};
pub use crate::model::kernel::vip_key;
use crate::{bpf_map::removed, error_line, model::kernel::socket_addr};

/// The watcher's kernel object (built by build.rs from `vipd-ebpf`'s `vipd-watch`): its
/// programs and maps only, none of another data plane's.
pub(crate) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vipd-watch"));

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
    #[error("{hook}: cannot attach as {kind}: {why}")]
    Unsupported {
        hook: &'static str,
        kind: &'static str,
        why: String,
    },
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
    /// UDP: kprobes on `udp_err`/`udpv6_err` and `ip_vs_checksum_complete` (ICMP
    /// errors), `udp_rcv`/`udpv6_rcv` (replies) and IPVS's transmit functions (datagrams
    /// sent). Needs kprobes, the ip_vs module and `ipvs_conn` (the join).
    pub udp: bool,
    /// The cgroup `sock_ops` program that gives VIPs their configured initial SYN
    /// timeout (see [`Probes::set_syn_rto`]): loaded now, attached to the cgroup only
    /// while some VIP has a timeout. Optional even when asked for: a failure is logged
    /// and leaves the kernel's default.
    pub syn_rto: bool,
    /// tp_btf/fentry or classic tracepoints/kprobes for the socket hooks.
    pub flavour: Flavour,
}

impl Hooks {
    /// Every hook: what the connection watcher needs on a kernel with IPVS.
    pub const ALL: Self = Self {
        state_changes: true,
        retransmits: true,
        resets: true,
        connect: true,
        ipvs_conn: true,
        udp: true,
        syn_rto: true,
        flavour: Flavour::Auto,
    };
    /// Everything but the UDP hooks: the fallback when those cannot be attached.
    pub const TCP: Self = Self {
        udp: false,
        ..Self::ALL
    };
    /// The tracepoints only: what works on a kernel without kprobes or IPVS.
    pub const TRACEPOINTS: Self = Self {
        state_changes: true,
        retransmits: true,
        resets: true,
        connect: false,
        ipvs_conn: false,
        udp: false,
        syn_rto: false,
        flavour: Flavour::Auto,
    };
    /// The socket hooks without IPVS: the tracepoints and `tcp_connect` (events carry
    /// source ports but no backend), for a kernel without IPVS.
    pub const SOCKETS: Self = Self {
        connect: true,
        ..Self::TRACEPOINTS
    };

    /// The same hooks in `flavour`.
    pub const fn with_flavour(self, flavour: Flavour) -> Self {
        Self { flavour, ..self }
    }
}

/// One program's run statistics.
#[derive(Debug, Clone)]
pub struct ProgramStats {
    pub program: String,
    pub runs: u64,
    pub run_time: std::time::Duration,
}

/// Loaded and attached programs, with the event stream they feed.
pub struct Probes {
    ebpf: Ebpf,
    events: RingBuf<MapData>,
    lost: PerCpuArray<MapData, u64>,
    vips: HashMap<MapData, VipKey, u32>,
    conns: HashMap<MapData, FlowKey, vipd_common::Backend>,
    udp_traffic: HashMap<MapData, DestKey, UdpTraffic>,
    fwmark_services: Array<MapData, u32>,
    vip_ports: VipPorts,
    /// Whether this kernel's IPVS names a connection's fwmark (`ip_vs_dest.vfwmark`).
    fwmark_supported: bool,
    attached: Vec<Attachment>,
    /// The SYN timeout program, or why it is not attached.
    syn_rto: Result<SynRto, String>,
}

/// IPVS's transmit functions, one per forwarding method and family; the UDP hook counts
/// datagrams sent on every one that this kernel has (masquerade is required).
const IPVS_XMIT: &[(&str, bool)] = &[
    ("ip_vs_nat_xmit", true),
    ("ip_vs_nat_xmit_v6", false),
    ("ip_vs_tunnel_xmit", false),
    ("ip_vs_tunnel_xmit_v6", false),
    ("ip_vs_dr_xmit", false),
    ("ip_vs_dr_xmit_v6", false),
];

fn sock_tp(which: SockTracepoint, on: bool) -> Result<SockTracepointOffsets, WatcherError> {
    if !on {
        return Ok(SockTracepointOffsets::UNSET);
    }
    let (cat, name) = which.category_and_name();
    Ok(offsets::sock_tracepoint(&Format::read(cat, name)?, which)?)
}

/// The VIP and backend of a `UDP_TRAFFIC` key; `None` for an unknown family.
pub fn dest_addrs(key: &DestKey) -> Option<(SocketAddr, SocketAddr)> {
    Some((
        socket_addr(key.family, &key.vip, key.vport).ok()?,
        socket_addr(key.backend_family, &key.backend, key.bport).ok()?,
    ))
}

/// The `UDP_TRAFFIC` key of `backend` behind UDP VIP `vip`.
pub fn dest_key(vip: SocketAddr, backend: SocketAddr) -> DestKey {
    let v = vip_key(vip, vipd_common::IPPROTO_UDP as u8);
    let b = vip_key(backend, vipd_common::IPPROTO_UDP as u8);
    DestKey {
        vip: v.addr,
        backend: b.addr,
        vport: v.port,
        bport: b.port,
        family: v.family,
        backend_family: b.family,
        protocol: vipd_common::IPPROTO_UDP as u8,
        _pad: 0,
    }
}

impl Probes {
    /// Discovers offsets on this kernel, loads the programs and attaches `hooks`. Any
    /// hook that cannot be set up is an error naming what is missing; with
    /// [`Flavour::Auto`] a socket hook whose tp_btf/fentry form fails falls back to its
    /// classic form first (see [`Probes::attachments`]).
    pub fn load(hooks: Hooks) -> Result<Self, WatcherError> {
        let sockets = hooks.state_changes || hooks.retransmits || hooks.resets;
        let btf_wanted = hooks.flavour != Flavour::Classic && (sockets || hooks.connect);
        let classic_wanted = hooks.flavour != Flavour::Btf;
        // Classic tracepoint record offsets; with Auto, a failure only matters if a
        // tp_btf attach fails too.
        let tp = |which, on: bool| {
            if !(on && classic_wanted) {
                return Ok(SockTracepointOffsets::UNSET);
            }
            match sock_tp(which, true) {
                Err(e) if hooks.flavour == Flavour::Classic => Err(e),
                r => Ok(r.unwrap_or(SockTracepointOffsets::UNSET)),
            }
        };
        let state = tp(SockTracepoint::SetState, hooks.state_changes)?;
        let retransmit = tp(SockTracepoint::Retransmit, hooks.retransmits)?;
        let reset = tp(SockTracepoint::ReceiveReset, hooks.resets)?;
        if hooks.ipvs_conn && !std::path::Path::new("/sys/module/ip_vs").exists() {
            return Err(WatcherError::NoSymbol {
                symbol: "ip_vs_conn_new",
                module: "ip_vs",
                why: "/sys/module/ip_vs does not exist".into(),
            });
        }
        let needs_btf = hooks.ipvs_conn || hooks.connect || hooks.udp || btf_wanted;
        let btf = if needs_btf {
            Some(Btf::from_sys_fs(
                (hooks.ipvs_conn || hooks.udp).then_some("ip_vs"),
            )?)
        } else {
            None
        };
        let ipvs = match (&btf, hooks.ipvs_conn) {
            (Some(btf), true) => offsets::ip_vs_conn_param(btf)?,
            _ => IpvsConnParamOffsets::default(),
        };
        // Socket offsets: required by the tcp_connect hook in either form, optional
        // (a reason to fall back) for the tp_btf tracepoints.
        let sock = match &btf {
            Some(btf) if hooks.connect || btf_wanted => match offsets::sock(btf) {
                Ok(off) => Ok(off),
                Err(e) if hooks.connect || hooks.flavour == Flavour::Btf => return Err(e.into()),
                Err(e) => Err(e.to_string()),
            },
            _ => Err("not needed".to_owned()),
        };

        let (skb, ipvs_conn) = match (&btf, hooks.udp) {
            (Some(btf), true) => (offsets::skb(btf)?, offsets::ip_vs_conn(btf)?),
            _ => (SkbOffsets::default(), IpvsConnOffsets::default()),
        };

        let mut ebpf = EbpfLoader::new()
            .override_global("STATE_TP", &state, true)
            .override_global("RETRANSMIT_TP", &retransmit, true)
            .override_global("RESET_TP", &reset, true)
            .override_global("IPVS_PARAM", &ipvs, true)
            .override_global("SOCK", sock.as_ref().unwrap_or(&SockOffsets::UNSET), true)
            .override_global("SKB", &skb, true)
            .override_global("IPVS_CONN", &ipvs_conn, true)
            .load(OBJECT)?;

        let kernel_btf = if btf_wanted {
            aya::Btf::from_sys_fs().map_err(|e| format!("reading /sys/kernel/btf/vmlinux: {e}"))
        } else {
            Err("not needed".to_owned())
        };
        let support = attach::BtfSupport {
            kernel: kernel_btf.as_ref().map_err(Clone::clone),
            sock: sock.as_ref().map(|_| ()).map_err(Clone::clone),
        };
        let mut attached = Vec::new();
        for (on, which, off) in [
            (hooks.state_changes, SockTracepoint::SetState, &state),
            (hooks.retransmits, SockTracepoint::Retransmit, &retransmit),
            (hooks.resets, SockTracepoint::ReceiveReset, &reset),
        ] {
            if on {
                let classic = if off.valid == 1 {
                    Ok(())
                } else {
                    let (cat, name) = which.category_and_name();
                    Err(match sock_tp(which, true) {
                        Err(e) => e.to_string(),
                        Ok(_) => format!("{cat}/{name}: record offsets not read"),
                    })
                };
                attached.push(attach::socket_tracepoint(
                    &mut ebpf,
                    which,
                    hooks.flavour,
                    &support,
                    classic,
                )?);
            }
        }
        if hooks.connect {
            attached.push(attach::tcp_connect(&mut ebpf, hooks.flavour, &support)?);
        }
        if hooks.ipvs_conn {
            attached.push(attach::kprobe(&mut ebpf, "ip_vs_conn_new", "ip_vs")?);
        }
        if hooks.udp {
            for (program, module, symbols) in [
                ("udp_err", "kernel", &[("udp_err", true)][..]),
                ("udpv6_err", "ipv6", &[("udpv6_err", false)]),
                (
                    "udp_rcv",
                    "kernel",
                    &[("udp_rcv", true), ("udpv6_rcv", false)],
                ),
                ("ip_vs_xmit", "ip_vs", IPVS_XMIT),
                // IPv6 only: ICMPv6 errors IPVS drops (see vipd-ebpf's ip_vs_icmp_v6.rs).
                (
                    "ip_vs_out_icmp_v6",
                    "ip_vs",
                    &[("ip_vs_out_icmp_v6", false)],
                ),
            ] {
                attached.extend(attach::kprobes(&mut ebpf, program, module, symbols)?);
            }
        }
        let syn_rto = if hooks.syn_rto {
            match SynRto::load(&mut ebpf, None) {
                Ok(s) => {
                    attached.push(Attachment {
                        hook: "syn_rto",
                        kind: attach::HookKind::SockOps,
                        fallback: None,
                    });
                    Ok(s)
                }
                Err(e) => {
                    let e = error_line::of(&e);
                    tracing::warn!(
                        "syn_rto not available, VIPs keep the kernel's SYN timeout: {e}"
                    );
                    Err(e)
                }
            }
        } else {
            Err("not asked for".to_owned())
        };
        for a in &attached {
            if let Some(why) = &a.fallback {
                tracing::info!("{}: attached as {} ({why})", a.hook, a.kind);
            }
        }

        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(WatcherError::Missing(name));
        let map_err = |map: &'static str| move |source| WatcherError::Map { map, source };
        let events = RingBuf::try_from(take("EVENTS")?).map_err(map_err("EVENTS"))?;
        let lost = PerCpuArray::try_from(take("LOST")?).map_err(map_err("LOST"))?;
        let vips = HashMap::try_from(take("VIPS")?).map_err(map_err("VIPS"))?;
        let conns = HashMap::try_from(take("CONNS")?).map_err(map_err("CONNS"))?;
        let udp_traffic =
            HashMap::try_from(take("UDP_TRAFFIC")?).map_err(map_err("UDP_TRAFFIC"))?;
        let fwmark_services =
            Array::try_from(take("FWMARK_SERVICES")?).map_err(map_err("FWMARK_SERVICES"))?;
        let vip_ports = Array::try_from(take("VIP_PORTS")?).map_err(map_err("VIP_PORTS"))?;
        Ok(Self {
            ebpf,
            events,
            lost,
            vips,
            conns,
            udp_traffic,
            fwmark_services,
            vip_ports: VipPorts::new(vip_ports),
            fwmark_supported: hooks.ipvs_conn && ipvs.dest_vfwmark != NO_FIELD,
            attached,
            syn_rto,
        })
    }

    /// Each loaded program's runs and total run time, as the kernel counts them while
    /// BPF statistics are enabled (`aya::sys::enable_stats`; zero otherwise).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.ebpf
            .programs()
            .filter_map(|(name, p)| {
                let info = p.info().ok()?;
                Some(ProgramStats {
                    program: name.to_owned(),
                    runs: info.run_count(),
                    run_time: info.run_time(),
                })
            })
            .collect()
    }

    /// Every hook attached, and how.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attached
    }

    /// A one-line account of the attached hooks, grouped by kind.
    pub fn describe(&self) -> String {
        attach::summary(&self.attached)
    }

    /// Starts producing events for connections to `vip` (`protocol`: IPPROTO_TCP, ...).
    pub fn watch(
        &mut self,
        vip: SocketAddr,
        protocol: u8,
        service_id: u32,
    ) -> Result<(), WatcherError> {
        let key = vip_key(vip, protocol);
        let new = self.vips.get(&key, 0).is_err();
        if new {
            self.vip_ports
                .add(vip.port())
                .map_err(|source| WatcherError::Map {
                    map: "VIP_PORTS",
                    source,
                })?;
        }
        self.vips
            .insert(key, service_id, 0)
            .map_err(|source| WatcherError::Map {
                map: "VIPS",
                source,
            })
    }

    /// Starts producing events for connections that fwmark service `mark` of `family`
    /// (AF_INET, AF_INET6) schedules. An error if this kernel's IPVS does not say which
    /// service scheduled a connection.
    pub fn watch_fwmark(
        &mut self,
        family: u8,
        mark: u32,
        service_id: u32,
    ) -> Result<(), WatcherError> {
        if !self.fwmark_supported {
            return Err(WatcherError::Unsupported {
                hook: "ip_vs_conn_new",
                kind: "fwmark watch",
                why:
                    "IPVS's struct ip_vs_dest has no vfwmark member here (or the IPVS hook is off)"
                        .into(),
            });
        }
        let key = VipKey::fwmark(family, mark);
        let new = self.vips.get(&key, 0).is_err();
        self.vips
            .insert(key, service_id, 0)
            .map_err(|source| WatcherError::Map {
                map: "VIPS",
                source,
            })?;
        if new {
            self.count_fwmark_services(1)?;
        }
        Ok(())
    }

    /// Stops following connections of fwmark service `mark`. Not watching it is not an
    /// error.
    pub fn unwatch_fwmark(&mut self, family: u8, mark: u32) -> Result<(), WatcherError> {
        match removed(self.vips.remove(&VipKey::fwmark(family, mark))) {
            Ok(true) => self.count_fwmark_services(-1),
            Ok(false) => Ok(()),
            Err(source) => Err(WatcherError::Map {
                map: "VIPS",
                source,
            }),
        }
    }

    fn count_fwmark_services(&mut self, delta: i64) -> Result<(), WatcherError> {
        let err = |source| WatcherError::Map {
            map: "FWMARK_SERVICES",
            source,
        };
        let n = self.fwmark_services.get(&0, 0).map_err(err)?;
        let n = (i64::from(n) + delta).max(0) as u32;
        self.fwmark_services.set(0, n, 0).map_err(err)
    }

    /// Connections to TCP VIP `vip` start with initial SYN timeout `rto` (`None`: the
    /// kernel's default). An error if the `sock_ops` program is not attached.
    pub fn set_syn_rto(&mut self, vip: SocketAddr, rto: Option<Duration>) -> Result<(), String> {
        match &mut self.syn_rto {
            Ok(s) => s
                .set(&mut self.ebpf, vip, rto)
                .map_err(|e| error_line::of(&e)),
            Err(why) => Err(format!("the syn_rto program is not attached ({why})")),
        }
    }

    /// The SYN timeout program and its map, or why it is not available.
    pub fn syn_rto(&self) -> Result<&SynRto, &str> {
        self.syn_rto.as_ref().map_err(String::as_str)
    }

    /// How many links the kernel has to the SYN timeout program: 1 while some VIP has
    /// a timeout, else 0.
    pub fn syn_rto_kernel_links(&self) -> Result<usize, String> {
        let s = self.syn_rto.as_ref().map_err(Clone::clone)?;
        s.kernel_links(&self.ebpf).map_err(|e| error_line::of(&e))
    }

    /// Stops producing events for `vip`. Not watching it is not an error.
    pub fn unwatch(&mut self, vip: SocketAddr, protocol: u8) -> Result<(), WatcherError> {
        match removed(self.vips.remove(&vip_key(vip, protocol))) {
            Ok(true) => self
                .vip_ports
                .remove(vip.port())
                .map_err(|source| WatcherError::Map {
                    map: "VIP_PORTS",
                    source,
                }),
            Ok(false) => Ok(()),
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
        self.lost_slot(0)
    }

    /// Events that could fail no backend (successes, closes), not queued while the ring
    /// was three quarters full so that failures always find room.
    pub fn shed_events(&self) -> Result<u64, WatcherError> {
        self.lost_slot(1)
    }

    fn lost_slot(&self, slot: u32) -> Result<u64, WatcherError> {
        let per_cpu = self
            .lost
            .get(&slot, 0)
            .map_err(|source| WatcherError::Map {
                map: "LOST",
                source,
            })?;
        Ok(per_cpu.iter().sum())
    }

    /// Every UDP backend's traffic counters (empty without the UDP hooks).
    pub fn udp_traffic(&self) -> Vec<(DestKey, UdpTraffic)> {
        self.udp_traffic.iter().filter_map(Result::ok).collect()
    }

    /// Forgets that `key`'s backend owes a reply (userspace has acted on its silence).
    /// The kernel may have just updated the entry; losing that update only delays the
    /// next verdict by one datagram.
    pub fn clear_pending(&mut self, key: &DestKey) -> Result<(), WatcherError> {
        let Ok(mut t) = self.udp_traffic.get(key, 0) else {
            return Ok(());
        };
        t.pending_since_ns = 0;
        self.udp_traffic
            .insert(key, t, 0)
            .map_err(|source| WatcherError::Map {
                map: "UDP_TRAFFIC",
                source,
            })
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
