//! The socket plane's host tests beyond the basics of `socket_plane.rs`, one concern a
//! file.

mod affinity;
mod idle;
mod pinned_layout;
mod syn_rto;
mod udp_errors;
mod upgrade;
mod verifier;
