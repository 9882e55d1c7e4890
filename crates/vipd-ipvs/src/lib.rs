//! A client for the Linux IPVS generic-netlink family (`include/uapi/linux/ip_vs.h`).
//!
//! It knows nothing of the program using it. Two layers:
//!
//! * **A pure layer, without a socket.** Typed values ([`Service`] with its [`ServiceKey`],
//!   [`ServiceFlags`] and [`Netmask`]; [`Destination`] with its [`ForwardMethod`];
//!   [`Stats`]; [`Info`]; [`Timeouts`]), the encoding of every `IPVS_CMD_*` into a
//!   [`Request`] (bytes via [`Request::genl_payload`] or [`Request::to_netlink_message`]),
//!   and the decoding of replies ([`decode_reply`] for a whole datagram, or the
//!   `decode_attrs` functions of each type). Decoding never panics on bad input; every
//!   failure is a typed [`Error`].
//! * **A blocking [`Client`]** over a `netlink-sys` socket: [`Client::connect`] resolves the
//!   `"IPVS"` family through `nlctrl`, then offers `info`, `services`, `service`,
//!   `new_service`/`set_service`/`del_service`, `destinations`,
//!   `new_destination`/`set_destination`/`del_destination`, `timeouts`/`set_timeouts`,
//!   `zero_service`/`zero_all_services`, and [`Client::apply`], which sends a [`Batch`] of
//!   writes pipelined and reports each request's outcome by sequence number.
//!
//! `IPVS_CMD_FLUSH` deletes every service in the namespace, including ones this program does
//! not own, so the client cannot send it; only its encoding exists
//! ([`Request::flush_all_services_dangerous`]). The sync-daemon commands
//! (`IPVS_CMD_*_DAEMON`) are not implemented beyond their numbers in [`attrs`].
//!
//! Netlink and generic-netlink headers are handled with `netlink-packet-core` and
//! `netlink-packet-generic`; the IPVS attributes with this crate's own [`nla`] code.
//!
//! ```no_run
//! use std::net::IpAddr;
//! use vipd_ipvs::{Batch, Client, Destination, ForwardMethod, Service, ServiceFlags, ServiceKey};
//!
//! # fn main() -> Result<(), vipd_ipvs::Error> {
//! let mut ipvs = Client::connect()?; // needs CAP_NET_ADMIN and the ip_vs module
//! let info = ipvs.info()?;
//! println!("IPVS {:?}, {} connection buckets", info.version_triplet(), info.conn_table_size);
//!
//! let vip: IpAddr = "192.0.2.10".parse().unwrap();
//! let key = ServiceKey::tcp(vip, 80);
//! let mut svc = Service::new(key, "wrr");
//! svc.flags = ServiceFlags::EMPTY;
//!
//! // One service and two destinations, pipelined.
//! let mut batch = Batch::new();
//! batch.new_service(&svc)?;
//! for backend in ["10.0.0.1", "10.0.0.2"] {
//!     let dest = Destination::new(backend.parse().unwrap(), 8080, ForwardMethod::Masquerade);
//!     batch.new_destination(&key, &dest)?;
//! }
//! let report = ipvs.apply(&batch)?;
//! for failure in report.failures() {
//!     eprintln!("request {} ({}) failed: {:?}", failure.seq, failure.command, failure.result);
//! }
//!
//! for svc in ipvs.services()? {
//!     println!("{} {}", svc.key, svc.scheduler);
//!     for d in ipvs.destinations(&svc.key)? {
//!         println!("  -> {}:{} {:?} weight {}", d.addr, d.port, d.forward, d.weight);
//!     }
//! }
//! ipvs.del_service(&key)?;
//! # Ok(())
//! # }
//! ```

pub mod attrs;
pub mod nla;

mod addr;
mod batch;
mod client;
mod command;
mod dest;
mod error;
mod family;
mod flags;
mod frame;
mod info;
mod pipeline;
mod protocol;
mod reply;
mod request;
mod service;
mod socket;
mod stats;
mod timeouts;

pub use addr::AddressFamily;
pub use batch::{Batch, BatchEntry, BatchReport};
pub use client::{Client, DEFAULT_BATCH_WINDOW, DEFAULT_TIMEOUT};
pub use command::{Command, Operation};
pub use dest::{Destination, ForwardMethod, TunnelKind};
pub use error::{Error, Result};
pub use family::{decode_family_id, resolve_family_request, NLCTRL_FAMILY_ID};
pub use flags::{ServiceFlags, TunnelFlags};
pub use info::Info;
pub use protocol::Protocol;
pub use reply::{decode_ipvs_message, decode_reply, MessageHeader, Reply, ReplyMessage};
pub use request::Request;
pub use service::{Netmask, Service, ServiceKey};
pub use stats::Stats;
pub use timeouts::Timeouts;
