//! What the kernel side of a data plane saw of one connection (or UDP flow), as every
//! plane reports it and the health machines take it: an [`Outcome`] in a [`Report`].

use std::{net::SocketAddr, time::Duration};

/// What happened to a connection attempt or connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The handshake completed after `latency` (first SYN to ESTABLISHED); `None` where
    /// the first SYN's time is unknown (the XDP data plane reports the SYN-ACK only).
    Established { latency: Option<Duration> },
    /// The backend answered the SYN with an RST.
    Refused,
    /// The SYN was resent for the `n`th time while the client still waits.
    SynRetransmit(u32),
    /// The client gave up in SYN_SENT without an RST (timeout or close).
    ClientAbort,
    /// An established connection closed.
    Closed { by_peer: bool, reset: bool },
    /// UDP: an ICMP error said the backend could not take a datagram.
    Unreachable(IcmpCode),
    /// UDP: datagrams went to the backend and no reply came for this long. Not made by
    /// the correlator: the IPVS plane reads it from the kernel's traffic counters.
    Silent(Duration),
}

impl Outcome {
    /// As `vipd status` lists it: `established 0.4ms`, `refused`, `syn-retransmit #2`,
    /// `client-abort`, `closed by peer (rst)`, ...
    pub fn describe(&self) -> String {
        match self {
            Outcome::Established {
                latency: Some(latency),
            } => format!("established {:.1}ms", latency.as_secs_f64() * 1e3),
            Outcome::Established { latency: None } => "established".to_owned(),
            Outcome::Refused => "refused".to_owned(),
            Outcome::SynRetransmit(n) => format!("syn-retransmit #{n}"),
            Outcome::ClientAbort => "client-abort".to_owned(),
            Outcome::Closed { by_peer, reset } => format!(
                "closed {}{}",
                if *by_peer { "by peer" } else { "locally" },
                if *reset { " (rst)" } else { "" }
            ),
            Outcome::Unreachable(icmp) => format!("unreachable ({})", icmp.describe()),
            Outcome::Silent(d) => format!("silent for {:.0}ms", d.as_secs_f64() * 1e3),
        }
    }
}

/// An outcome with the connection it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub ts_ns: u64,
    pub client: Option<SocketAddr>,
    pub vip: SocketAddr,
    /// `None`: the outcome could not be attributed to a backend (counted separately).
    pub backend: Option<SocketAddr>,
    pub outcome: Outcome,
    /// When the connection's first SYN was sent (kernel monotonic ns): the start of a
    /// fault such as a blackhole. For UDP outcomes, when the kernel saw the outcome.
    pub syn_ns: u64,
    /// IPPROTO_TCP or IPPROTO_UDP.
    pub protocol: u8,
    /// The fwmark service that scheduled the connection (then `vip` is its real
    /// destination); `None` for a VIP:port service.
    pub fwmark: Option<u32>,
}

/// The type and code of an ICMP or ICMPv6 error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpCode {
    pub v6: bool,
    pub icmp_type: u8,
    pub code: u8,
}

impl IcmpCode {
    /// "port unreachable", "host unreachable", ... ("icmp 3/11" for others).
    pub fn describe(self) -> String {
        let name = match (self.v6, self.icmp_type, self.code) {
            (false, 3, 0) => "network unreachable",
            (false, 3, 1) => "host unreachable",
            (false, 3, 2) => "protocol unreachable",
            (false, 3, 3) => "port unreachable",
            (false, 3, 9 | 10 | 13) => "administratively prohibited",
            (true, 1, 0) => "no route",
            (true, 1, 1) => "administratively prohibited",
            (true, 1, 3) => "address unreachable",
            (true, 1, 4) => "port unreachable",
            (true, 1, 5) => "source address failed policy",
            (true, 1, 6) => "reject route",
            (v6, t, c) => {
                return format!("icmp{} {t}/{c}", if v6 { "v6" } else { "" });
            }
        };
        name.to_owned()
    }
}
