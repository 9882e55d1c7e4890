//! The packet-level scheduler conformance suite: which backend IPVS picks for each of a
//! series of hand-made flows, under services that vipd applies from its config.
//!
//! A [`rig::Rig`] owns three network namespaces ([`topology`]): an injector writes the
//! first packet of chosen flows (TCP SYN or UDP datagram, any source address and port)
//! onto its link to the director ([`inject`]), IPVS in the director forwards it
//! (masquerade or tunnel) towards the backend prefix routed to a sink, and a packet
//! socket there reads where it went ([`capture`]). [`check`] turns the picks into
//! assertions that print the observed sequence and counts when they fail.

pub mod capture;
pub mod check;
pub mod inject;
pub mod packet;
pub mod rig;
pub mod service;
pub mod topology;
