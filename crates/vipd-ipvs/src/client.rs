//! The blocking IPVS client.

use std::net::IpAddr;
use std::time::Duration;

use netlink_packet_core::NLM_F_DUMP_INTR;

use crate::addr::AddressFamily;
use crate::command::Operation;
use crate::dest::Destination;
use crate::error::{Error, Result};
use crate::family::{decode_family_id, resolve_family_request, NLCTRL_FAMILY_ID};
use crate::frame::{Frame, Frames, MessageHeader};
use crate::info::Info;
use crate::reply::{decode_ipvs_message, Reply};
use crate::request::Request;
use crate::service::{Service, ServiceKey};
use crate::socket::{NlSocket, Transport};
use crate::timeouts::Timeouts;

/// Requests per datagram (and acks outstanding) in [`Client::apply`] by default.
pub const DEFAULT_BATCH_WINDOW: usize = 64;

/// Receive timeout set by [`Client::connect`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A blocking client for the IPVS generic-netlink family, on its own netlink socket, in the
/// network namespace of the calling thread at [`Client::connect`] time.
///
/// All IPVS commands need `CAP_NET_ADMIN` (`GENL_ADMIN_PERM`); without it every request
/// fails with [`Error::Kernel`] `EPERM`.
///
/// There is deliberately no way to send `IPVS_CMD_FLUSH` (which deletes services this program
/// does not own) or other arbitrary requests through the client.
pub struct Client {
    pub(crate) sock: Box<dyn Transport>,
    pub(crate) family_id: u16,
    pub(crate) seq: u32,
    pub(crate) batch_window: usize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("family_id", &self.family_id)
            .field("seq", &self.seq)
            .field("batch_window", &self.batch_window)
            .finish_non_exhaustive()
    }
}

/// What one exchange is waiting for.
struct Exchange {
    seq: u32,
    op: Operation,
    data_type: u16,
}

impl Client {
    /// Opens a socket and resolves the `"IPVS"` family. Fails with
    /// [`Error::FamilyNotFound`] when IPVS is not loaded.
    pub fn connect() -> Result<Client> {
        let mut sock = NlSocket::open()?;
        sock.set_recv_timeout(Some(DEFAULT_TIMEOUT))?;
        Client::over(Box::new(sock))
    }

    /// A client on any transport: resolves the family, then is ready.
    pub(crate) fn over(sock: Box<dyn Transport>) -> Result<Client> {
        let mut client = Client {
            sock,
            family_id: 0,
            seq: 0,
            batch_window: DEFAULT_BATCH_WINDOW,
        };
        client.family_id = client.resolve_family()?;
        Ok(client)
    }

    /// The resolved generic-netlink id of the IPVS family.
    pub fn family_id(&self) -> u16 {
        self.family_id
    }

    /// Sets how long a receive may block before failing with a timed-out [`Error::Io`]
    /// (`None` waits forever).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.sock.set_recv_timeout(timeout)
    }

    /// Sets how many requests [`Client::apply`] packs into one datagram before reading their
    /// acks (at least 1). Acks wait in the socket's receive buffer meanwhile; a window too
    /// large for it makes the kernel drop acks and the batch fail with `ENOBUFS`.
    pub fn set_batch_window(&mut self, window: usize) {
        self.batch_window = window.max(1);
    }

    pub(crate) fn next_seq(&mut self) -> u32 {
        // Wraps through 0 too, so the numbers of a batch window stay consecutive.
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn resolve_family(&mut self) -> Result<u16> {
        let seq = self.next_seq();
        self.sock.send(&resolve_family_request(seq))?;
        let mut id = None;
        let ex = Exchange {
            seq,
            op: Operation::ResolveFamily,
            data_type: NLCTRL_FAMILY_ID,
        };
        let r = self.receive(&ex, |_, cmd, attrs| {
            id = Some(decode_family_id(cmd, attrs)?);
            Ok(())
        });
        match r {
            Err(Error::Kernel {
                errno: libc::ENOENT,
                ..
            }) => Err(Error::FamilyNotFound),
            Err(e) => Err(e),
            Ok(()) => id.ok_or(Error::MissingAttribute {
                attr: "CTRL_ATTR_FAMILY_ID",
            }),
        }
    }

    /// Reads replies to `ex` until its ack, error or `NLMSG_DONE`, passing each data message
    /// to `on_data`. Messages of other sequence numbers are skipped. Keeps reading after a
    /// message fails to decode (so the rest of a dump is consumed), then returns the first
    /// error.
    fn receive(
        &mut self,
        ex: &Exchange,
        mut on_data: impl FnMut(&MessageHeader, u8, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut first_err: Option<Error> = None;
        loop {
            let datagram = self.sock.recv()?;
            let mut finished = false;
            for frame in Frames::new(datagram) {
                // A datagram that does not even frame cannot be trusted to hold the end of
                // the exchange: give up rather than wait for it. Anything left unread is
                // skipped later by sequence number.
                let frame = match frame {
                    Ok(f) => f,
                    Err(e) => return Err(first_err.unwrap_or(e)),
                };
                match frame {
                    Frame::Genl { header, cmd, attrs } if header.seq == ex.seq => {
                        if header.message_type != ex.data_type {
                            first_err.get_or_insert(Error::UnexpectedMessageType {
                                message_type: header.message_type,
                            });
                        } else if header.flags & NLM_F_DUMP_INTR != 0 {
                            first_err.get_or_insert(Error::DumpInterrupted { op: ex.op });
                        } else if let Err(e) = on_data(&header, cmd, attrs) {
                            first_err.get_or_insert(e);
                        }
                    }
                    Frame::Ack { header } if header.seq == ex.seq => finished = true,
                    Frame::Error {
                        header,
                        errno,
                        message,
                    } if header.seq == ex.seq => {
                        finished = true;
                        first_err.get_or_insert(Error::Kernel {
                            errno,
                            op: ex.op,
                            message,
                        });
                    }
                    Frame::Done { header, code } if header.seq == ex.seq => {
                        finished = true;
                        if code < 0 {
                            first_err.get_or_insert(Error::Kernel {
                                errno: code.checked_abs().unwrap_or(i32::MAX),
                                op: ex.op,
                                message: None,
                            });
                        }
                    }
                    // Stale replies to an earlier request, or NLMSG_NOOP.
                    _ => {}
                }
            }
            if finished {
                return first_err.map_or(Ok(()), Err);
            }
        }
    }

    /// Sends `req` and collects its replies.
    fn exchange(
        &mut self,
        req: &Request,
        on_reply: impl FnMut(Reply) -> Result<()>,
        dest_family: Option<AddressFamily>,
    ) -> Result<()> {
        let mut on_reply = on_reply;
        let seq = self.next_seq();
        self.sock
            .send(&req.to_netlink_message(self.family_id, seq))?;
        let ex = Exchange {
            seq,
            op: Operation::Ipvs(req.command()),
            data_type: self.family_id,
        };
        self.receive(&ex, |_, cmd, attrs| {
            on_reply(decode_ipvs_message(cmd, attrs, dest_family)?)
        })
    }

    /// Sends a request that answers only with an ack.
    fn write(&mut self, req: &Request) -> Result<()> {
        self.exchange(req, |r| Err(unexpected(&r)), None)
    }

    /// `IPVS_CMD_GET_INFO`.
    pub fn info(&mut self) -> Result<Info> {
        let mut out = None;
        self.exchange(
            &Request::get_info(),
            |r| match r {
                Reply::Info(i) => {
                    out = Some(i);
                    Ok(())
                }
                r => Err(unexpected(&r)),
            },
            None,
        )?;
        out.ok_or(Error::MissingAttribute {
            attr: "IPVS_CMD_SET_INFO reply",
        })
    }

    /// Dumps every virtual service (`IPVS_CMD_GET_SERVICE` with `NLM_F_DUMP`).
    pub fn services(&mut self) -> Result<Vec<Service>> {
        let mut out = Vec::new();
        self.exchange(
            &Request::dump_services(),
            |r| match r {
                Reply::Service(s) => {
                    out.push(s);
                    Ok(())
                }
                r => Err(unexpected(&r)),
            },
            None,
        )?;
        Ok(out)
    }

    /// Gets one service; `None` when the kernel answers `ESRCH`.
    pub fn service(&mut self, key: &ServiceKey) -> Result<Option<Service>> {
        let mut out = None;
        let r = self.exchange(
            &Request::get_service(key)?,
            |r| match r {
                Reply::Service(s) => {
                    out = Some(s);
                    Ok(())
                }
                r => Err(unexpected(&r)),
            },
            None,
        );
        match r {
            Err(Error::Kernel {
                errno: libc::ESRCH, ..
            }) => Ok(None),
            Err(e) => Err(e),
            Ok(()) => Ok(out),
        }
    }

    /// `IPVS_CMD_NEW_SERVICE`.
    pub fn new_service(&mut self, service: &Service) -> Result<()> {
        self.write(&Request::new_service(service)?)
    }

    /// `IPVS_CMD_SET_SERVICE`.
    pub fn set_service(&mut self, service: &Service) -> Result<()> {
        self.write(&Request::set_service(service)?)
    }

    /// `IPVS_CMD_DEL_SERVICE`.
    pub fn del_service(&mut self, key: &ServiceKey) -> Result<()> {
        self.write(&Request::del_service(key)?)
    }

    /// Dumps the destinations of a service (`IPVS_CMD_GET_DEST`). The kernel returns an
    /// empty list, not an error, when the service does not exist.
    pub fn destinations(&mut self, key: &ServiceKey) -> Result<Vec<Destination>> {
        let mut out = Vec::new();
        self.exchange(
            &Request::dump_destinations(key)?,
            |r| match r {
                Reply::Destination(d) => {
                    out.push(d);
                    Ok(())
                }
                r => Err(unexpected(&r)),
            },
            Some(key.family()),
        )?;
        Ok(out)
    }

    /// `IPVS_CMD_NEW_DEST`.
    pub fn new_destination(&mut self, service: &ServiceKey, dest: &Destination) -> Result<()> {
        self.write(&Request::new_destination(service, dest)?)
    }

    /// `IPVS_CMD_SET_DEST`.
    pub fn set_destination(&mut self, service: &ServiceKey, dest: &Destination) -> Result<()> {
        self.write(&Request::set_destination(service, dest)?)
    }

    /// `IPVS_CMD_DEL_DEST`.
    pub fn del_destination(&mut self, service: &ServiceKey, addr: IpAddr, port: u16) -> Result<()> {
        self.write(&Request::del_destination(service, addr, port)?)
    }

    /// `IPVS_CMD_GET_CONFIG`.
    pub fn timeouts(&mut self) -> Result<Timeouts> {
        let mut out = None;
        self.exchange(
            &Request::get_timeouts(),
            |r| match r {
                Reply::Timeouts(t) => {
                    out = Some(t);
                    Ok(())
                }
                r => Err(unexpected(&r)),
            },
            None,
        )?;
        out.ok_or(Error::MissingAttribute {
            attr: "IPVS_CMD_SET_CONFIG reply",
        })
    }

    /// `IPVS_CMD_SET_CONFIG`.
    pub fn set_timeouts(&mut self, timeouts: &Timeouts) -> Result<()> {
        self.write(&Request::set_timeouts(timeouts)?)
    }

    /// `IPVS_CMD_ZERO` for one service and its destinations.
    pub fn zero_service(&mut self, key: &ServiceKey) -> Result<()> {
        self.write(&Request::zero_service(key)?)
    }

    /// `IPVS_CMD_ZERO` for **every** service in the namespace, owned by this program or not.
    pub fn zero_all_services(&mut self) -> Result<()> {
        self.write(&Request::zero_all_services())
    }
}

fn unexpected(r: &Reply) -> Error {
    match r {
        Reply::Service(_) => Error::UnexpectedCommand {
            cmd: crate::attrs::IPVS_CMD_NEW_SERVICE,
        },
        Reply::Destination(_) => Error::UnexpectedCommand {
            cmd: crate::attrs::IPVS_CMD_NEW_DEST,
        },
        Reply::Info(_) => Error::UnexpectedCommand {
            cmd: crate::attrs::IPVS_CMD_SET_INFO,
        },
        Reply::Timeouts(_) => Error::UnexpectedCommand {
            cmd: crate::attrs::IPVS_CMD_SET_CONFIG,
        },
        _ => Error::UnexpectedMessageType { message_type: 0 },
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
