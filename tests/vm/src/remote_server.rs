//! A TCP server that is not a socket of this kernel: a userspace responder on a packet
//! socket, in a network namespace of its own whose interface holds no address (so the
//! kernel there neither answers nor resets). The client side is another namespace,
//! joined to it by a veth pair, with a permanent neighbour entry for the server's
//! address.
//!
//! The responder keeps no state and does what the benchmarks' loopback server does: it
//! answers each SYN with a SYN-ACK, the ACK of that with a FIN (the server closes first
//! and sends nothing), and the client's FIN with an ACK. Only the client's end of each
//! connection is then a kernel socket, as on a client whose servers are other hosts, so
//! hooks on socket events run for that end alone.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::{
    conformance::packet::{fold, ip_header, pseudo_header_sum, sum16},
    packet_socket::{bound_socket, send, FrameReader},
    sh,
};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 2);
const CLIENT_DEV: &str = "rsc0";
const SERVER_DEV: &str = "rss0";
/// The server's initial sequence number, the same for every connection (each has its
/// own client port, and the client checks only that its SYN is acknowledged).
const ISN: u32 = 0x5eed_0000;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;
const TCP: u8 = 6;

/// The two namespaces and the responder's thread; dropping it stops the thread and
/// deletes both namespaces.
pub struct RemoteServer {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// The namespace clients must run in (see [`crate::enter_netns`]).
    pub client_ns: String,
    server_ns: String,
    reader: FrameReader,
}

/// The MAC address of `dev` in namespace `ns`.
fn mac(ns: &str, dev: &str) -> [u8; 6] {
    let text = sh(&format!(
        "ip netns exec {ns} cat /sys/class/net/{dev}/address"
    ));
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("a MAC address"))
        .collect();
    bytes.try_into().expect("six bytes")
}

impl RemoteServer {
    /// Creates the namespaces `<tag>-c` and `<tag>-s` (deleting leftovers of an earlier
    /// run) and starts answering on `port`.
    pub fn start(tag: &str, port: u16) -> RemoteServer {
        let (client_ns, server_ns) = (format!("{tag}-c"), format!("{tag}-s"));
        delete(&client_ns, &server_ns);
        sh(&format!(
            "ip netns add {client_ns} && ip netns add {server_ns} && \
             ip link add {CLIENT_DEV} netns {client_ns} type veth \
                peer name {SERVER_DEV} netns {server_ns} && \
             ip netns exec {client_ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && \
             ip netns exec {server_ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && \
             ip -n {client_ns} link set lo up && \
             ip -n {client_ns} addr add {CLIENT}/24 dev {CLIENT_DEV} && \
             ip -n {client_ns} link set {CLIENT_DEV} up && \
             ip -n {server_ns} link set {SERVER_DEV} up"
        ));
        let server_mac = mac(&server_ns, SERVER_DEV);
        let client_mac = mac(&client_ns, CLIENT_DEV);
        let lladdr: Vec<String> = server_mac.iter().map(|b| format!("{b:02x}")).collect();
        sh(&format!(
            "ip -n {client_ns} neigh replace {SERVER} lladdr {} dev {CLIENT_DEV} nud permanent",
            lladdr.join(":")
        ));
        let (fd, ifindex) = bound_socket(&server_ns, SERVER_DEV);
        // The reader owns the socket; answers go out through a second descriptor of it.
        let out = fd.try_clone().expect("duplicating the packet socket");
        let reader = FrameReader::spawn(fd, 128, move |frame, pkttype, _| {
            if pkttype == libc::PACKET_OUTGOING {
                return;
            }
            if let Some(reply) = answer(frame, port) {
                send(&out, ifindex, client_mac, &reply);
            }
        });
        RemoteServer {
            addr: SocketAddr::new(IpAddr::V4(SERVER), port),
            client_ns,
            server_ns,
            reader,
        }
    }
}

impl Drop for RemoteServer {
    fn drop(&mut self) {
        self.reader.stop();
        delete(&self.client_ns, &self.server_ns);
    }
}

fn delete(client_ns: &str, server_ns: &str) {
    // Deleting a namespace deletes its end of the veth pair, and so the pair.
    let _ = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ip netns del {client_ns} 2>/dev/null; ip netns del {server_ns} 2>/dev/null; true"
        ))
        .status();
}

/// The segment that answers `p` (an IPv4 packet the server's interface received), if
/// it is a TCP segment to `port` that needs one.
fn answer(p: &[u8], port: u16) -> Option<Vec<u8>> {
    if p.len() < 20 || p[0] >> 4 != 4 || p[9] != TCP {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]])).min(p.len());
    let t = p.get(ihl..total)?;
    if t.len() < 20 {
        return None;
    }
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let (sport, dport) = (
        u16::from_be_bytes([t[0], t[1]]),
        u16::from_be_bytes([t[2], t[3]]),
    );
    if dst != SERVER || dport != port {
        return None;
    }
    let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    let ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
    let payload = (t.len() - usize::from(t[12] >> 4) * 4) as u32;
    let flags = t[13];
    let (out_seq, out_ack, out_flags) = if flags & RST != 0 {
        return None;
    } else if flags & SYN != 0 && flags & ACK == 0 {
        (ISN, seq.wrapping_add(1), SYN | ACK)
    } else if flags & FIN != 0 {
        (ISN.wrapping_add(2), seq.wrapping_add(payload + 1), ACK)
    } else if flags & ACK != 0 && ack == ISN.wrapping_add(1) && payload == 0 {
        // The handshake's last ACK: close at once.
        (ISN.wrapping_add(1), seq, FIN | ACK)
    } else {
        return None;
    };
    Some(segment(
        (dst, dport),
        (src, sport),
        out_seq,
        out_ack,
        out_flags,
    ))
}

/// A TCP segment without options or payload, in its IPv4 packet.
fn segment(from: (Ipv4Addr, u16), to: (Ipv4Addr, u16), seq: u32, ack: u32, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&from.1.to_be_bytes());
    t[2..4].copy_from_slice(&to.1.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    let (src, dst) = (IpAddr::V4(from.0), IpAddr::V4(to.0));
    let csum = fold(pseudo_header_sum(src, dst, TCP, t.len()) + sum16(&t));
    t[16..18].copy_from_slice(&csum.to_be_bytes());
    ip_header(src, dst, TCP, t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment from the client to the server, as `segment` builds it.
    fn from_client(seq: u32, ack: u32, flags: u8) -> Vec<u8> {
        segment((CLIENT, 40000), (SERVER, 80), seq, ack, flags)
    }

    /// (seq, ack, flags) of an answer.
    fn fields(p: &[u8]) -> (u32, u32, u8) {
        let t = &p[20..];
        (
            u32::from_be_bytes(t[4..8].try_into().unwrap()),
            u32::from_be_bytes(t[8..12].try_into().unwrap()),
            t[13],
        )
    }

    #[test]
    fn a_connection_is_answered_and_closed_by_the_server() {
        let syn_ack = answer(&from_client(100, 0, SYN), 80).unwrap();
        assert_eq!(fields(&syn_ack), (ISN, 101, SYN | ACK));
        // The answer's checksums hold: summed with them, the headers fold to zero.
        assert_eq!(fold(sum16(&syn_ack[..20])), 0);
        let t = &syn_ack[20..];
        let sum = pseudo_header_sum(SERVER.into(), CLIENT.into(), TCP, t.len()) + sum16(t);
        assert_eq!(fold(sum), 0);
        let fin = answer(&from_client(101, ISN + 1, ACK), 80).unwrap();
        assert_eq!(fields(&fin), (ISN + 1, 101, FIN | ACK));
        // The client's ACK of that FIN needs nothing; its own FIN gets an ACK.
        assert!(answer(&from_client(101, ISN + 2, ACK), 80).is_none());
        let last = answer(&from_client(101, ISN + 2, FIN | ACK), 80).unwrap();
        assert_eq!(fields(&last), (ISN + 2, 102, ACK));
    }

    #[test]
    fn other_segments_are_not_answered() {
        assert!(answer(&from_client(1, 0, RST), 80).is_none());
        assert!(answer(&from_client(1, 0, SYN), 81).is_none());
        assert!(answer(&[0x45, 0, 0], 80).is_none());
    }
}
