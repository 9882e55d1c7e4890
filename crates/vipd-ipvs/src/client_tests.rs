//! Client state machine against a scripted transport: family resolution, dumps spread over
//! datagrams, stale and interrupted messages, errors, and pipelined batches.

use std::collections::VecDeque;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[path = "../tests/common/mod.rs"]
mod common;
use common::NLM_F_DUMP_INTR;
use common::*;

use super::*;
use crate::attrs::*;
use crate::flags::ServiceFlags;
use crate::protocol::Protocol;
use crate::service::Netmask;
use crate::socket::Transport;
use crate::{Batch, Command, ForwardMethod};

const FAMILY: u16 = 0x23;

/// A request as the fake kernel sees it.
#[derive(Debug, Clone)]
struct Sent {
    msg_type: u16,
    flags: u16,
    seq: u32,
    cmd: u8,
}

type Script = Box<dyn FnMut(&Sent) -> Vec<Vec<u8>> + Send>;
type SendLog = Arc<Mutex<Vec<Vec<Sent>>>>;

struct Fake {
    script: Script,
    queue: VecDeque<Vec<u8>>,
    current: Vec<u8>,
    /// Every datagram sent, as its list of messages.
    log: SendLog,
}

impl Transport for Fake {
    fn send(&mut self, datagram: &[u8]) -> Result<()> {
        let mut msgs = Vec::new();
        let mut rest = datagram;
        while rest.len() >= 20 {
            let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
            let sent = Sent {
                msg_type: u16::from_ne_bytes(rest[4..6].try_into().unwrap()),
                flags: u16::from_ne_bytes(rest[6..8].try_into().unwrap()),
                seq: u32::from_ne_bytes(rest[8..12].try_into().unwrap()),
                cmd: rest[16],
            };
            for reply in (self.script)(&sent) {
                self.queue.push_back(reply);
            }
            msgs.push(sent);
            rest = &rest[len..];
        }
        assert!(rest.is_empty(), "datagram holds whole messages only");
        self.log.lock().unwrap().push(msgs);
        Ok(())
    }

    fn recv(&mut self) -> Result<&[u8]> {
        self.current = self.queue.pop_front().ok_or_else(|| {
            Error::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "fake: nothing queued",
            ))
        })?;
        Ok(&self.current)
    }

    fn set_recv_timeout(&mut self, _: Option<Duration>) -> Result<()> {
        Ok(())
    }
}

/// Answers family resolution, then hands IPVS requests to `ipvs`.
fn fake(
    mut ipvs: impl FnMut(&Sent) -> Vec<Vec<u8>> + Send + 'static,
) -> (Box<dyn Transport>, SendLog) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let script: Script = Box::new(move |s: &Sent| {
        if s.msg_type == 0x10 {
            assert_eq!(s.cmd, 3, "CTRL_CMD_GETFAMILY");
            let attrs = [
                a_str(2, "IPVS"),
                a_u16(1, FAMILY),
                a_u32(3, 1),
                // Some nested junk the resolver must not care about.
                nest(6, &[nest(1, &[a_u32(1, 1), a_u32(2, 0xb)])]),
            ]
            .concat();
            vec![nlmsg(0x10, 0, s.seq, &genl(1, &attrs)), ack(s.seq)]
        } else {
            assert_eq!(s.msg_type, FAMILY);
            ipvs(s)
        }
    });
    let t = Fake {
        script,
        queue: VecDeque::new(),
        current: Vec::new(),
        log: log.clone(),
    };
    (Box::new(t), log)
}

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn svc_msg(seq: u32, flags: u16, port: u16) -> Vec<u8> {
    let attrs = kernel_service_addr(
        2,
        6,
        v4("10.0.0.1"),
        port,
        "rr",
        None,
        0x2,
        0,
        [255; 4],
        None,
    );
    nlmsg(FAMILY, flags, seq, &genl(IPVS_CMD_NEW_SERVICE, &attrs))
}

#[test]
fn connect_resolves_family() {
    let (t, log) = fake(|_| vec![]);
    let c = Client::over(t).unwrap();
    assert_eq!(c.family_id(), FAMILY);
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0][0].flags, 0x5, "NLM_F_REQUEST | NLM_F_ACK");
}

#[test]
fn family_not_found() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let t = Fake {
        script: Box::new(|s: &Sent| vec![nlmsgerr(s.seq, -libc::ENOENT, NLM_F_CAPPED, &[])]),
        queue: VecDeque::new(),
        current: Vec::new(),
        log,
    };
    assert!(matches!(
        Client::over(Box::new(t)),
        Err(Error::FamilyNotFound)
    ));
}

#[test]
fn dump_across_datagrams_skips_stale_and_noop() {
    let (t, log) = fake(|s| {
        assert_eq!(s.flags, 0x301, "NLM_F_REQUEST | NLM_F_DUMP");
        assert_eq!(s.cmd, IPVS_CMD_GET_SERVICE);
        vec![
            // A leftover from an older request, then two services in one datagram.
            [
                svc_msg(s.seq.wrapping_sub(1), NLM_F_MULTI, 1),
                svc_msg(s.seq, NLM_F_MULTI, 80),
            ]
            .concat(),
            nlmsg(NLMSG_NOOP, 0, s.seq, &[]),
            [svc_msg(s.seq, NLM_F_MULTI, 443), done(s.seq, 0)].concat(),
        ]
    });
    let mut c = Client::over(t).unwrap();
    let services = c.services().unwrap();
    let ports: Vec<_> = services
        .iter()
        .map(|s| match s.key {
            ServiceKey::Addr { port, .. } => port,
            _ => 0,
        })
        .collect();
    assert_eq!(ports, [80, 443]);
    assert!(services[0].flags.contains(ServiceFlags::HASHED));
    assert_eq!(log.lock().unwrap().len(), 2);
}

#[test]
fn dump_interrupted_is_reported() {
    let (t, _) = fake(|s| {
        vec![[
            svc_msg(s.seq, NLM_F_MULTI | NLM_F_DUMP_INTR, 80),
            done(s.seq, 0),
        ]
        .concat()]
    });
    let mut c = Client::over(t).unwrap();
    assert!(matches!(
        c.services(),
        Err(Error::DumpInterrupted {
            op: Operation::Ipvs(Command::GetService)
        })
    ));
}

#[test]
fn dump_done_with_error_code() {
    let (t, _) = fake(|s| vec![done(s.seq, -libc::EINVAL)]);
    let mut c = Client::over(t).unwrap();
    let e = c.services().unwrap_err();
    assert_eq!(e.errno(), Some(libc::EINVAL));
}

#[test]
fn decode_error_drains_the_dump_and_the_socket_stays_usable() {
    let mut n = 0;
    let (t, _) = fake(move |s| {
        n += 1;
        if n == 1 {
            let bad = nlmsg(FAMILY, NLM_F_MULTI, s.seq, &genl(IPVS_CMD_NEW_SERVICE, &[]));
            vec![
                bad,
                [svc_msg(s.seq, NLM_F_MULTI, 80), done(s.seq, 0)].concat(),
            ]
        } else {
            vec![[svc_msg(s.seq, NLM_F_MULTI, 81), done(s.seq, 0)].concat()]
        }
    });
    let mut c = Client::over(t).unwrap();
    assert!(matches!(
        c.services(),
        Err(Error::MissingAttribute {
            attr: "IPVS_CMD_ATTR_SERVICE"
        })
    ));
    assert_eq!(c.services().unwrap().len(), 1);
}

#[test]
fn get_missing_service_is_none() {
    let (t, log) = fake(|s| vec![nlmsgerr(s.seq, -libc::ESRCH, NLM_F_CAPPED, &[])]);
    let mut c = Client::over(t).unwrap();
    assert_eq!(
        c.service(&ServiceKey::tcp(v4("10.0.0.1"), 80)).unwrap(),
        None
    );
    let log = log.lock().unwrap();
    assert_eq!(log[1][0].flags, 0x5);
    assert_eq!(log[1][0].cmd, IPVS_CMD_GET_SERVICE);
}

#[test]
fn get_service_reply_then_ack() {
    let (t, _) = fake(|s| vec![svc_msg(s.seq, 0, 80), ack(s.seq)]);
    let mut c = Client::over(t).unwrap();
    let svc = c
        .service(&ServiceKey::tcp(v4("10.0.0.1"), 80))
        .unwrap()
        .unwrap();
    assert_eq!(svc.scheduler, "rr");
    assert_eq!(svc.netmask, Netmask::V4(std::net::Ipv4Addr::BROADCAST));
}

#[test]
fn kernel_error_carries_extack_message() {
    let (t, _) = fake(|s| {
        let tlv = a_str(1, "service exists");
        vec![nlmsgerr(
            s.seq,
            -libc::EEXIST,
            NLM_F_CAPPED | NLM_F_ACK_TLVS,
            &tlv,
        )]
    });
    let mut c = Client::over(t).unwrap();
    let e = c
        .new_service(&Service::new(ServiceKey::tcp(v4("10.0.0.1"), 80), "rr"))
        .unwrap_err();
    assert!(e.is_already_exists());
    match e {
        Error::Kernel { op, message, .. } => {
            assert_eq!(op, Operation::Ipvs(Command::NewService));
            assert_eq!(message.as_deref(), Some("service exists"));
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn info_and_timeouts() {
    let (t, _) = fake(|s| match s.cmd {
        IPVS_CMD_GET_INFO => vec![
            nlmsg(
                FAMILY,
                0,
                s.seq,
                &genl(
                    IPVS_CMD_SET_INFO,
                    &[a_u32(1, 0x010201), a_u32(2, 4096)].concat(),
                ),
            ),
            ack(s.seq),
        ],
        IPVS_CMD_GET_CONFIG => vec![
            nlmsg(
                FAMILY,
                0,
                s.seq,
                &genl(
                    IPVS_CMD_SET_CONFIG,
                    &[a_u32(4, 900), a_u32(5, 120), a_u32(6, 300)].concat(),
                ),
            ),
            ack(s.seq),
        ],
        IPVS_CMD_SET_CONFIG => vec![ack(s.seq)],
        c => panic!("unexpected command {c}"),
    });
    let mut c = Client::over(t).unwrap();
    let info = c.info().unwrap();
    assert_eq!(info.version_triplet(), (1, 2, 1));
    assert_eq!(info.conn_table_size, 4096);
    let t = c.timeouts().unwrap();
    assert_eq!((t.tcp, t.tcp_fin, t.udp), (Some(900), Some(120), Some(300)));
    c.set_timeouts(&t).unwrap();
}

#[test]
fn destinations_use_the_service_family_when_the_kernel_omits_it() {
    let (t, _) = fake(|s| {
        assert_eq!(s.cmd, IPVS_CMD_GET_DEST);
        assert_eq!(s.flags, 0x301);
        let d = kernel_dest(
            "2001:db8::2".parse().unwrap(),
            8080,
            IP_VS_CONN_F_DROUTE,
            3,
            (0, 0, 0),
            (0, 0),
            (1, 2, 3),
            None,
            None,
        );
        vec![[
            nlmsg(FAMILY, NLM_F_MULTI, s.seq, &genl(IPVS_CMD_NEW_DEST, &d)),
            done(s.seq, 0),
        ]
        .concat()]
    });
    let mut c = Client::over(t).unwrap();
    let key = ServiceKey::tcp("2001:db8::1".parse().unwrap(), 80);
    let d = c.destinations(&key).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].addr, "2001:db8::2".parse::<IpAddr>().unwrap());
    assert_eq!(d[0].forward, ForwardMethod::DirectRoute);
    assert_eq!(d[0].inactive_conns, 2);
}

#[test]
fn batch_is_pipelined_and_reports_per_sequence_number() {
    // Fail every 7th request; deliver each window's acks in one datagram, reversed.
    let pending = Arc::new(Mutex::new(Vec::new()));
    let p = pending.clone();
    let (t, log) = fake(move |s| {
        assert_eq!(s.flags, 0x5);
        let mut p = p.lock().unwrap();
        p.push(if s.seq % 7 == 0 {
            nlmsgerr(s.seq, -libc::ENOENT, NLM_F_CAPPED, &[])
        } else {
            ack(s.seq)
        });
        vec![]
    });
    // Flush the acks of a window when the client starts reading.
    struct Flushing {
        inner: Box<dyn Transport>,
        pending: Arc<Mutex<Vec<Vec<u8>>>>,
        buf: Vec<u8>,
    }
    impl Transport for Flushing {
        fn send(&mut self, d: &[u8]) -> Result<()> {
            self.inner.send(d)
        }
        fn recv(&mut self) -> Result<&[u8]> {
            let mut p = self.pending.lock().unwrap();
            if p.is_empty() {
                drop(p);
                return self.inner.recv();
            }
            p.reverse();
            self.buf = p.concat();
            p.clear();
            Ok(&self.buf)
        }
        fn set_recv_timeout(&mut self, _: Option<Duration>) -> Result<()> {
            Ok(())
        }
    }
    let t = Box::new(Flushing {
        inner: t,
        pending,
        buf: Vec::new(),
    });
    let mut c = Client::over(t).unwrap();
    c.set_batch_window(64);
    let mut batch = Batch::new();
    for i in 0..15u16 {
        let key = ServiceKey::Addr {
            addr: v4("192.0.2.1"),
            protocol: Protocol::Udp,
            port: 1000 + i,
        };
        batch.new_service(&Service::new(key, "rr")).unwrap();
        for j in 0..9u8 {
            let d = Destination::new(v4(&format!("10.0.{i}.{j}")), 53, ForwardMethod::Masquerade);
            batch.new_destination(&key, &d).unwrap();
        }
    }
    assert_eq!(batch.len(), 150);
    let report = c.apply(&batch).unwrap();
    assert_eq!(report.entries.len(), 150);
    let log = log.lock().unwrap();
    // Family resolution, then 64 + 64 + 22 requests.
    let sizes: Vec<_> = log.iter().skip(1).map(Vec::len).collect();
    assert_eq!(sizes, [64, 64, 22]);
    let sent: Vec<u32> = log.iter().skip(1).flatten().map(|s| s.seq).collect();
    for (i, e) in report.entries.iter().enumerate() {
        assert_eq!(e.index, i);
        assert_eq!(e.seq, sent[i]);
        if e.seq % 7 == 0 {
            assert_eq!(e.result.as_ref().unwrap_err().errno(), Some(libc::ENOENT));
        } else {
            assert!(e.result.is_ok(), "{e:?}");
        }
    }
    let failed = report.failures().count();
    assert_eq!(failed, sent.iter().filter(|s| *s % 7 == 0).count());
    let f = report.failures().next().unwrap();
    assert_eq!(report.by_seq(f.seq).unwrap().index, f.index);
    assert!(!report.is_success());
}

#[test]
fn batch_window_survives_sequence_wraparound() {
    let (t, _) = fake(|s| vec![ack(s.seq)]);
    let mut c = Client::over(t).unwrap();
    c.seq = u32::MAX - 2;
    c.set_batch_window(8);
    let mut batch = Batch::new();
    for port in 1..=6 {
        batch
            .del_service(&ServiceKey::tcp(v4("10.0.0.1"), port))
            .unwrap();
    }
    let report = c.apply(&batch).unwrap();
    let seqs: Vec<_> = report.entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [u32::MAX - 1, u32::MAX, 0, 1, 2, 3]);
    assert!(report.is_success());
}

#[test]
fn missing_ack_times_out_instead_of_hanging() {
    let (t, _) = fake(|_| vec![]);
    let mut c = Client::over(t).unwrap();
    let e = c
        .del_service(&ServiceKey::tcp(v4("10.0.0.1"), 80))
        .unwrap_err();
    assert!(matches!(e, Error::Io(ref io) if io.kind() == io::ErrorKind::TimedOut));
}

#[test]
fn client_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Client>();
}

#[test]
fn framing_error_is_returned_without_waiting() {
    let (t, _) = fake(|s| {
        let mut broken = ack(s.seq);
        broken[0] = 0xff; // nlmsg_len beyond the datagram
        vec![broken]
    });
    let mut c = Client::over(t).unwrap();
    let e = c
        .del_service(&ServiceKey::tcp(v4("10.0.0.1"), 80))
        .unwrap_err();
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
}
