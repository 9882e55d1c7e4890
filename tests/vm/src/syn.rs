//! Timestamps every TCP SYN a backend receives on one port, and how the backend answered
//! it (SYN-ACK, RST, or nothing): a packet socket in the backend's network namespace,
//! bound to its `eth0`. Packet sockets see a frame before netfilter does, so SYNs that
//! [`Lab::drop_syns`] drops are seen too (and get no answer). The time of each packet is
//! the kernel's timestamp (`SO_TIMESTAMPNS`), mapped onto [`Instant`].

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use crate::{
    lab::Lab,
    packet_socket::{packet_socket, FrameReader},
};

/// One SYN (without ACK) received by the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syn {
    pub at: Instant,
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// How the backend answered a SYN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// SYN-ACK: a listener took it.
    SynAck,
    /// RST: nothing listens (the connection is refused).
    Rst,
    /// Nothing within a second, before the peer sent another SYN (dropped).
    None,
}

/// A packet the backend sent from the sniffed port: a SYN-ACK or an RST, to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reply {
    at: Instant,
    to: SocketAddr,
    rst: bool,
}

#[derive(Default)]
struct Seen {
    syns: Vec<Syn>,
    replies: Vec<Reply>,
}

pub struct SynSniffer {
    seen: Arc<Mutex<Seen>>,
    reader: FrameReader,
}

impl Lab {
    /// Starts timestamping the SYNs backend `i` receives for `port`.
    pub fn sniff_syns(&self, i: usize, port: u16) -> SynSniffer {
        SynSniffer::start(&self.backends[i].ns, "eth0", port)
    }
}

/// A TCP segment's (source, destination, flags) in an IPv4 or IPv6 packet.
fn parse_tcp(p: &[u8]) -> Option<(SocketAddr, SocketAddr, u8)> {
    let (src, dst, tcp): (IpAddr, IpAddr, &[u8]) = match p.first()? >> 4 {
        4 => {
            let ihl = usize::from(p[0] & 0xf) * 4;
            if p.len() < ihl + 14 || p[9] != libc::IPPROTO_TCP as u8 {
                return None;
            }
            let a = |o: usize| IpAddr::V4(Ipv4Addr::new(p[o], p[o + 1], p[o + 2], p[o + 3]));
            (a(12), a(16), &p[ihl..])
        }
        6 => {
            if p.len() < 40 + 14 || p[6] != libc::IPPROTO_TCP as u8 {
                return None;
            }
            let a = |o: usize| {
                let b: [u8; 16] = p[o..o + 16].try_into().unwrap();
                IpAddr::V6(Ipv6Addr::from(b))
            };
            (a(8), a(24), &p[40..])
        }
        _ => return None,
    };
    let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
    let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    Some((
        SocketAddr::new(src, sport),
        SocketAddr::new(dst, dport),
        tcp[13],
    ))
}

const FIN_SYN_RST_ACK: u8 = 0x17;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// Files a packet: an incoming SYN to `port`, or an outgoing SYN-ACK or RST from it.
fn record(seen: &Mutex<Seen>, p: &[u8], outgoing: bool, port: u16, at: Instant) {
    let Some((src, dst, flags)) = parse_tcp(p) else {
        return;
    };
    let f = flags & FIN_SYN_RST_ACK;
    if !outgoing && dst.port() == port && f == SYN {
        seen.lock().unwrap().syns.push(Syn { at, src, dst });
    } else if outgoing && src.port() == port && (f == SYN | ACK || f & RST != 0) {
        seen.lock().unwrap().replies.push(Reply {
            at,
            to: dst,
            rst: f & RST != 0,
        });
    }
}

impl SynSniffer {
    /// Starts timestamping SYNs to `port` received on `dev` in namespace `ns`, and the
    /// SYN-ACKs and RSTs sent from that port.
    pub fn start(ns: &str, dev: &str, port: u16) -> Self {
        let fd = packet_socket(ns, dev);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let reader = {
            let seen = seen.clone();
            FrameReader::spawn(fd, 128, move |frame, pkttype, at| {
                record(&seen, frame, pkttype == libc::PACKET_OUTGOING, port, at)
            })
        };
        SynSniffer { seen, reader }
    }

    /// Every SYN so far, in arrival order.
    pub fn syns(&self) -> Vec<Syn> {
        self.seen.lock().unwrap().syns.clone()
    }

    /// The first SYN received at or after `t`.
    pub fn first_after(&self, t: Instant) -> Option<Syn> {
        self.syns().into_iter().find(|s| s.at >= t)
    }

    /// The first SYN from address `src` received at or after `t` (e.g. `src` = the
    /// client host's address: connections through a VIP and health checks alike come
    /// from it; to tell a client load's SYNs, see [`SynSniffer::first_matching_after`]).
    pub fn first_from_after(&self, src: IpAddr, t: Instant) -> Option<Syn> {
        self.first_matching_after(t, |s| s.src.ip() == src)
    }

    /// The first SYN received at or after `t` for which `pred` holds (e.g.
    /// [`crate::load::Load::sent`]: one of a client load's SYNs).
    pub fn first_matching_after(&self, t: Instant, pred: impl Fn(&Syn) -> bool) -> Option<Syn> {
        self.syns().into_iter().find(|s| s.at >= t && pred(s))
    }

    /// How the backend answered `syn`: the first SYN-ACK or RST to its source after it
    /// and before that source's next SYN (a retransmit); `Answer::None` if there was none
    /// within a second, None if it is too early to tell.
    pub fn answer(&self, syn: &Syn) -> Option<Answer> {
        let seen = self.seen.lock().unwrap();
        let next = seen
            .syns
            .iter()
            .find(|s| s.src == syn.src && s.at > syn.at)
            .map(|s| s.at);
        let limit = next.unwrap_or(syn.at + Duration::from_secs(1));
        let reply = seen
            .replies
            .iter()
            .find(|r| r.to == syn.src && r.at >= syn.at && r.at < limit);
        match reply {
            Some(r) if r.rst => Some(Answer::Rst),
            Some(_) => Some(Answer::SynAck),
            None if next.is_some() || Instant::now() >= limit => Some(Answer::None),
            None => None,
        }
    }

    /// The first SYN at or after `t` for which `pred` holds (`|_| true`: anyone's) that
    /// the backend answered with `answer`. A SYN whose fate is not known yet ends the
    /// search.
    pub fn first_answered_after(
        &self,
        t: Instant,
        pred: impl Fn(&Syn) -> bool,
        answer: Answer,
    ) -> Option<Syn> {
        for s in self.syns().into_iter().filter(|s| s.at >= t && pred(s)) {
            match self.answer(&s) {
                Some(a) if a == answer => return Some(s),
                Some(_) => {}
                None => return None,
            }
        }
        None
    }

    /// Waits up to `timeout` for a SYN received at or after `t`.
    pub fn wait_first_after(&self, t: Instant, timeout: Duration) -> Option<Syn> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.first_after(t) {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the sniffer; returns every SYN it saw.
    pub fn stop(mut self) -> Vec<Syn> {
        self.reader.stop();
        self.syns()
    }
}
